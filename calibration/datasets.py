"""Labelled evaluation data: YOLO txt layout, COCO JSON, or class-named folders (classifiers)."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import numpy.typing as npt

from calibration.images import (
    files_below,
    is_hidden,
    read_image,
    shown_path,
    unusable_reason,
    usable_image_size,
)
from calibration.yolo_layout import YoloLayout, dataset_yaml, yolo_layout
from edge.errors import InputError
from edge.sources.opencv import IMAGE_SUFFIXES
from edge.text_files import read_text
from edge.wording import counted, listed, not_labels_of_the_model

log = logging.getLogger(__name__)

T = TypeVar("T")


@dataclass(frozen=True)
class LabelledImage:
    """One image and its objects: boxes float32 [K, 4] x1 y1 x2 y2 in pixels, class ids [K],
    `difficult` [K] (COCO iscrowd) objects are neither required nor penalised, and matched as
    COCOeval matches crowd regions (`edge.metrics.match_frame`)."""

    path: Path
    boxes: npt.NDArray[np.float32]
    class_ids: npt.NDArray[np.int64]
    difficult: npt.NDArray[np.bool_]
    #: The model's classes the dataset labels, where it names only some (its data.yaml's
    #: `names`, its COCO categories); None: every class. The others' detections say nothing
    #: about the model and are not scored.
    labelled_classes: frozenset[int] | None = None
    #: The image's size, width and height, as its labels give it (a COCO images entry's);
    #: None where they give none (YOLO labels are fractions of the image's size).
    labelled_size: tuple[int, int] | None = None

    def on_image(self, width: int, height: int) -> LabelledImage:
        """This item with its boxes in the pixels of its image as decoded, `width` x `height`:
        scaled where that is its `labelled_size` resized (the same shape within
        `RESIZED_SHAPE_TOLERANCE`), as for images resized after labelling (Ultralytics'
        COCO converter divides the boxes by the size the entry gives); as given otherwise."""
        if self.labelled_size is None or not _resized(self.labelled_size, (width, height)):
            return self
        scale = np.array([width / self.labelled_size[0], height / self.labelled_size[1]] * 2,
                         np.float32)
        return replace(self, boxes=self.boxes * scale, labelled_size=(width, height))


#: How far (a fraction) the aspect ratios of an image and of the size its labels give may
#: differ for the image to count as that size resized (the sides rounded to whole pixels).
RESIZED_SHAPE_TOLERANCE = 0.01


def _resized(labelled: tuple[int, int], decoded: tuple[int, int]) -> bool:
    """Whether an image of size `decoded` is one of size `labelled` resized, not the same."""
    if labelled == decoded or min(*labelled, *decoded) <= 0:
        return False
    ratio = (decoded[0] / labelled[0]) / (decoded[1] / labelled[1])
    return abs(ratio - 1.0) <= RESIZED_SHAPE_TOLERANCE


@dataclass(frozen=True)
class Dataset:
    kind: str  # "yolo", "coco" or "folders"
    items: list[LabelledImage]
    skipped: int = 0
    labels: tuple[str, ...] = ()  # the model's, by class id (for messages)
    #: The images that could not be decoded (left out of the score): those found so at load
    #: (`unreadable_at_load`), then those the last pass of `images()` could not decode
    unreadable: list[Path] = field(default_factory=list)
    unreadable_at_load: tuple[Path, ...] = ()
    root: Path | None = None  # the folder image paths are shown relative to

    def shown(self, path: Path) -> str:
        """`path` as people find it: relative to the dataset's folder (`270/readme.jpg`)."""
        return shown_path(path, self.root)

    def images(self) -> Iterator[tuple[LabelledImage, npt.NDArray[np.uint8]]]:
        """Each item with its decoded image; those that do not decode are left out, and named
        with why and what they held once the last is read (a user check: a truncated JPEG's
        object, or a whole class folder of damaged files, dropped out of the score unsaid)."""
        unreadable: list[LabelledImage] = []
        resized: list[tuple[LabelledImage, tuple[int, int]]] = []
        misshapen: list[tuple[LabelledImage, tuple[int, int]]] = []
        for item in self.items:
            image = read_image(item.path)
            if image is None:
                unreadable.append(item)
                continue
            size = (image.shape[1], image.shape[0])
            placed = item.on_image(*size)
            if placed is not item:
                resized.append((item, size))
            elif item.labelled_size not in (None, size):
                misshapen.append((item, size))
            yield placed, image
        self.unreadable[:] = [*self.unreadable_at_load, *(item.path for item in unreadable)]
        if unreadable:
            say_unreadable([item.path for item in unreadable], self._held(unreadable),
                           self.root)
        self._say_sizes(resized, misshapen)

    def _say_sizes(self, resized: Sequence[tuple[LabelledImage, tuple[int, int]]],
                   misshapen: Sequence[tuple[LabelledImage, tuple[int, int]]]) -> None:
        """Warn about images (with their decoded sizes) that are not the size their labels
        give: `resized` ones, whose boxes were scaled, and `misshapen` ones, taken as given."""
        if resized:
            log.warning("%s of another size than their COCO entries give (%s): their boxes "
                        "are scaled to the image, as for images resized after labelling",
                        counted(len(resized), "image"),
                        self._sizes_named(resized))
        if misshapen:
            log.warning("%s of another shape than their COCO entries give (%s): their boxes are "
                        "taken as they are, in the image's pixels as decoded (turned upright by "
                        "its EXIF orientation, as the device sees it); if they were drawn on "
                        "another size of the image, fix the entries' width and height",
                        counted(len(misshapen), "image"),
                        self._sizes_named(misshapen))

    def _sizes_named(self, items: Sequence[tuple[LabelledImage, tuple[int, int]]]) -> str:
        named = [f"{self.shown(item.path)}: {size[0]}x{size[1]}, its entry "
                 f"{item.labelled_size[0]}x{item.labelled_size[1]}"
                 for item, size in items[:3] if item.labelled_size is not None]
        return "; ".join(named) + ("; ..." if len(items) > 3 else "")

    def _held(self, items: Sequence[LabelledImage]) -> str:
        """What `items` would have been scored on, in words."""
        if self.kind == "folders":
            return "labels " + listed(sorted({self.labels[int(i.class_ids[0])] for i in items}))
        return counted(sum(int((~i.difficult).sum()) for i in items), "object")


def say_unreadable(paths: Sequence[Path], held: str, root: Path | None) -> None:
    """Warn that the images at `paths` are not scored, naming a few with why."""
    named = [f"{shown_path(path, root)} ({unusable_reason(path)})" for path in paths[:3]]
    log.warning("%s not scored, with %s: %s%s", counted(len(paths), "unreadable image"), held,
                "; ".join(named), " ..." if len(paths) > 3 else "")


def unlabelled_frames(path: Path, task: str) -> bool:
    """Whether `path` holds frames without labels, as a camera or a calibration set leaves
    them: a folder of images that is no YOLO dataset (nor, for a classifier, class folders),
    or a file other than a COCO JSON (a video, for `calibration.readers.frames_from`)."""
    if path.is_file():
        return path.suffix.lower() != ".json"
    if not path.is_dir() or yolo_layout(path) is not None:
        return False
    return bool(_folder_images(path)) and not (task == "classify" and _image_folders(path))


def dataset_layout(path: Path, task: str) -> str:
    """'coco', 'folders' (classifiers) or 'yolo', from the paths alone (nothing is decoded);
    an error naming `path` when it is none of them."""
    if not path.exists():
        kind = ("one folder of images per label or a COCO JSON file" if task == "classify"
                else "a YOLO folder (images/ and labels/) or a COCO JSON file")
        raise InputError(f"evaluation data {path} does not exist; pass {kind}")
    if path.is_file() and path.suffix == ".json":
        return "coco"
    if task == "classify" and path.is_dir():
        return "folders"
    if yolo_layout(path) is not None:
        if task == "classify":  # its data.yaml: boxes, of several classes an image
            raise _detection_data_for_a_classifier(path)
        return "yolo"
    if task == "classify":
        raise InputError(f"{path} is neither one folder of images per label nor a COCO JSON "
                         "file, which a classifier is scored on")
    loose = _folder_images(path) if path.is_dir() else []
    folders = _image_folders(path) if path.is_dir() else []
    if loose:  # frames as a camera or calibration left them
        looks = (f"; it holds {counted(len(loose), 'image')} and no labels. Label them to score "
                 "the model (a labelling tool's YOLO export: images/ and labels/ folders); "
                 "edge calibrate already compares INT8 with FP32 on frames without labels, "
                 "and --drift-reference writes a drift profile from them")
    elif folders:
        looks = (f"; its folders of images ({listed([f.name for f in folders])}) are the "
                 "layout that scores a classifier, and this model is a detector: pass its "
                 "labelled boxes (YOLO or COCO)")
    else:
        looks = ""
    raise InputError(f"{path} is neither a YOLO dataset (images/ and labels/ folders, or its "
                     f"data.yaml) nor a COCO JSON file, which a detector is scored on{looks}")


def _image_folders(root: Path) -> list[Path]:
    """The visible folders of `root` that hold images (class folders, by their look)."""
    return [p for p in sorted(root.iterdir())
            if p.is_dir() and not is_hidden(p, root) and _folder_images(p)]


def require_labelled_content(path: Path, layout: str, labels: Sequence[str]) -> None:
    """A cheap look before any work that needs the data, with the errors `dataset_from` would
    give at the end of it: a YOLO dataset with images and at least one labelled object, every
    label line well formed and of one of the model's `labels`; a COCO file with images,
    annotations and only the model's categories; class folders named after its labels; and
    one image that decodes (read until one does: a set of files that all fail was refused
    only after the calibration, a user check)."""
    images: list[Path] = []
    if layout == "yolo":
        split = _yolo_split(path)
        pairs = split.pairs()
        if not pairs:
            raise _no_labelled_images(path, f" (no images in {split.images})")
        classes = len(_yolo_class_ids(path, split, labels))
        keypoints = _declares_keypoints(split)
        objects = [row for _, label in pairs for row in _yolo_rows(label, classes, keypoints)]
        if not objects:
            raise _no_objects(path)
        images = [image for image, _ in pairs]
    elif layout == "coco":
        data, _ = _coco_file(path, labels)
        if not data.get("images") or not data.get("annotations"):
            raise InputError(f"{path} lists no images or no annotations")
        images = [item.path for item in _coco(path, labels, None).items]  # every entry checked
    elif layout == "folders":
        images = [image for folder in _class_folders(path, labels)
                  for image in _class_images(folder)]
        if not images:
            raise _no_class_folders(path)
    if images and not any(usable_image_size(image) for image in images):
        raise _no_labelled_images(path, f" (none of its {counted(len(images), 'image')} "
                                        f"decodes: {images[0].name} is "
                                        f"{unusable_reason(images[0])})")


def _no_labelled_images(path: Path, detail: str = "") -> InputError:
    return InputError(f"{path} holds no usable labelled images{detail}")


def _no_class_folders(path: Path) -> InputError:
    return InputError(f"{path} holds no class folders with images: a classifier is scored on "
                      "one folder per label, named as the model's labels (DIR/cat/1.jpg, "
                      "DIR/dog/2.jpg, ...), or on a COCO JSON file")


def _no_objects(path: Path) -> InputError:
    return InputError(f"the labels in {path} hold no objects, so mAP, precision and recall would "
                      "say nothing; check the label files (YOLO: one 'class cx cy w h' line per "
                      "object)")


def dataset_from(path: Path, labels: Sequence[str], task: str,
                 max_images: int | None = None, images_root: Path | None = None) -> Dataset:
    """Detect the layout at `path` and load it against the model's `labels`. `images_root`:
    the folder a COCO file's `file_name`s are relative to (default: the file's own)."""
    layout = dataset_layout(path, task)
    if layout == "coco":
        dataset = _coco(path, labels, images_root)
        if task == "classify":
            dataset = _one_class_an_image(dataset, path, labels)
    elif layout == "folders":
        dataset = _folders(path, labels)
    else:
        dataset = _yolo(path, labels, max_images)
    if not dataset.items:
        raise _no_class_folders(path) if layout == "folders" else _no_labelled_images(path)
    if task != "classify" and not any((~item.difficult).any() for item in dataset.items):
        raise _no_objects(path)
    if layout != "yolo":  # a YOLO split is spread before its images are read
        _say_spread(len(dataset.items), max_images, path)
    picked = (spread_over_classes(dataset.items, max_images) if layout == "folders"
              else spread(dataset.items, max_images))
    return replace(dataset, items=picked, root=dataset_folder(path))


def dataset_folder(path: Path) -> Path:
    """The folder of the dataset at `path`: itself, or the folder of its data.yaml or COCO
    file."""
    return path if path.is_dir() else path.parent


def _one_class_an_image(dataset: Dataset, path: Path, labels: Sequence[str]) -> Dataset:
    """A COCO file read for a classifier: every image has one category, the one top-1 is
    scored against; images with none are left out (said), one with several is an error."""
    mixed = next((item for item in dataset.items if len(set(item.class_ids.tolist())) > 1),
                 None)
    if mixed is not None:
        names = sorted({labels[int(i)] for i in mixed.class_ids})
        raise InputError(f"{path}: image {mixed.path.name} has annotations of "
                         f"{counted(len(names), 'category')} ({listed(names)}); a classifier is "
                         "scored on one category an image (a detector's COCO file has boxes "
                         "of several)")
    unlabelled = [item.path.name for item in dataset.items if not len(item.class_ids)]
    if unlabelled:
        log.warning("%s: %s without an annotation, so without a category, not scored: %s",
                    path, counted(len(unlabelled), "image"), listed(unlabelled))
    return replace(dataset, items=[item for item in dataset.items if len(item.class_ids)])


def _say_spread(available: int, count: int | None, where: Path) -> None:
    if count is not None and count < available:
        log.info("scoring %d of the %d images in %s, spread evenly over them (--max-images)",
                 count, available, where)


def scored_images(path: Path, task: str) -> Path:
    """Where the images `dataset_from(path, ...)` scores are, for people: a YOLO dataset's
    chosen split (`data/images/val`), else `path` itself."""
    split = yolo_layout(path) if dataset_layout(path, task) == "yolo" else None
    return split.images if split is not None else path


def spread_over_classes(items: Sequence[LabelledImage], count: int | None
                        ) -> list[LabelledImage]:
    """`count` of a class-folder dataset's `items`: at least one image of every folder (of
    `count` folders spread over them, where there are more), the rest shared in proportion
    to the folders' sizes; each share `spread` over its folder, in folder order. Spread alone,
    a folder of one image among two of twenty was never scored (a user check)."""
    if count is None or count >= len(items):
        return list(items)
    folders: dict[int, list[LabelledImage]] = {}
    for item in items:
        folders.setdefault(int(item.class_ids[0]), []).append(item)
    groups = list(folders.values())
    if count < len(groups):
        log.warning("--max-images %d is fewer than the %d class folders: %d of them scored, one "
                    "image each; give at least %d to score every class", count, len(groups),
                    count, len(groups))
        return [group[0] for group in spread(groups, count)]
    spare = [len(group) - 1 for group in groups]
    exact = [(count - len(groups)) * n / sum(spare) for n in spare]
    shares = [1 + int(e) for e in exact]
    by_remainder = sorted(range(len(groups)), key=lambda i: int(exact[i]) - exact[i])
    for i in by_remainder[:count - sum(shares)]:  # the largest remainders
        shares[i] += 1
    return [item for group, share in zip(groups, shares, strict=True)
            for item in spread(group, share)]


def spread(items: Sequence[T], count: int | None) -> list[T]:
    """`count` of `items` evenly spaced over all of them, in order (all of them: None, or as
    many or more): `--max-images` then scores every class folder and every part of a sorted
    split, where the first `count` were one class's images alone (a user check)."""
    if count is None or count >= len(items):
        return list(items)
    return [items[int(i)] for i in np.linspace(0, len(items) - 1, count).round()]


def _yolo_split(path: Path) -> YoloLayout:
    split = yolo_layout(path)
    if split is None:  # dataset_layout said it was one
        raise _no_labelled_images(path)
    return split


def label_files_only(path: Path) -> Path | None:
    """The folder of YOLO label files at `path` when it holds those and no images (a
    labelling tool's export of corrected labels without its images: `labels/*.txt` or the
    `*.txt` themselves, maybe with a classes.txt or data.yaml); else None."""
    if not path.is_dir() or any(p.suffix.lower() in IMAGE_SUFFIXES for p in files_below(path)):
        return None
    folder = path / "labels" if (path / "labels").is_dir() else path
    return folder if any(p.suffix == ".txt" and p.name != "classes.txt"
                         for p in files_below(folder)) else None


def labels_for_images(images: Path, label_folder: Path, labels: Sequence[str]) -> Dataset:
    """The images of the folder `images` that have a label file in `label_folder` (paired by
    name, the label file anywhere below the folder), labelled by it; the class names are
    those of the label folder's dataset (its or its parent's classes.txt or data.yaml), else
    the model's."""
    root = label_folder.parent if label_folder.name == "labels" else label_folder
    split = YoloLayout(root, images, label_folder)
    # by name, wherever below the folder: exports keep them in labels/train/ or CVAT's
    # obj_train_data/ (a user check: paired by relative path, none was found)
    by_name = {path.stem: path for path in files_below(label_folder)
               if path.suffix == ".txt" and path.name != "classes.txt"}
    pairs = [(image, by_name[image.stem]) for image, _ in split.pairs() if image.stem in by_name]
    return _yolo_split_items(split, labels, root, pairs=pairs)


def _yolo(root: Path, labels: Sequence[str], max_images: int | None = None) -> Dataset:
    """The split `root` names, `max_images` of its images spread over it (`spread`; all:
    None) less the unreadable ones, with warnings about what among those does not fit (a
    missing label file) and about label files without an image."""
    split = _yolo_split(root)
    if split.chosen:
        log.info("%s", split.chosen)
    return _yolo_split_items(split, labels, root, max_images)


def listed_yolo_images(root: Path, labels: Sequence[str], images: Sequence[Path]) -> Dataset:
    """The YOLO dataset at `root` read for `images` alone (files of its images folder), each
    with its label file or, without one, no objects: a folder others also put files into,
    such as one `edge collect` writes, whose own list of images is elsewhere (its manifest)."""
    split = _yolo_split(root)
    pairs = [(image, split.labels / image.relative_to(split.images).with_suffix(".txt"))
             for image in images]
    return _yolo_split_items(split, labels, root, pairs=pairs)


def _yolo_split_items(split: YoloLayout, labels: Sequence[str], given: Path,
                      max_images: int | None = None,
                      pairs: list[tuple[Path, Path]] | None = None) -> Dataset:
    """`_yolo` of one split (`given`: the path that named it, for messages); `pairs`: (image,
    label file) to read instead of the split's own (`YoloLayout.pairs`)."""
    class_ids = _yolo_class_ids(given, split, labels)
    if UNKNOWN_CLASS in class_ids:
        named = _split_class_names(split) or []
        unknown = [name for name in named if name not in labels]
        log.warning("%s also names %s, not %s of the model (%s): read as long as no label "
                    "line has %s", given, listed(unknown),
                    "a label" if len(unknown) == 1 else "labels", listed(labels),
                    "it" if len(unknown) == 1 else "them")
    keypoints = _declares_keypoints(split)
    if class_ids != list(range(len(labels))):
        log.info("%s lists the model's classes in another order or in part: paired by name",
                 given)
    labelled = _labelled_classes(class_ids, labels)
    items: list[LabelledImage] = []
    unlabelled = lost_objects = 0
    skipped: list[Path] = []
    pairs = split.pairs() if pairs is None else pairs
    _say_spread(len(pairs), max_images, split.images)
    for image_path, label_path in spread(pairs, max_images):
        size = usable_image_size(image_path)  # a JPEG's header, not a decode
        if size is None:
            skipped.append(image_path)
            lost_objects += len(_yolo_rows(label_path, len(class_ids), keypoints))
            continue
        unlabelled += not label_path.is_file()
        width, height = size
        rows = _yolo_rows(label_path, len(class_ids), keypoints)
        foreign = next((int(r[0]) for r in rows if class_ids[int(r[0])] == UNKNOWN_CLASS), None)
        if foreign is not None:
            name = (_split_class_names(split) or [])[foreign]
            raise InputError(f"{label_path}: class {foreign}, "
                             f"{not_labels_of_the_model([name], labels)}; evaluate on a "
                             "dataset labelled for this model, or leave that class's objects "
                             "out of it")
        boxes = np.zeros((len(rows), 4), np.float32)
        for i, (_, cx, cy, w, h) in enumerate(rows):
            boxes[i] = ((cx - w / 2) * width, (cy - h / 2) * height,
                        (cx + w / 2) * width, (cy + h / 2) * height)
        items.append(LabelledImage(image_path, boxes,
                                   np.array([class_ids[int(r[0])] for r in rows], np.int64),
                                   np.zeros(len(rows), bool), labelled))
    if skipped:
        say_unreadable(skipped, counted(lost_objects, "object"), dataset_folder(given))
    if unlabelled:
        log.warning("%d of the %d images in %s %s no label file in %s: scored as images "
                    "without objects (YOLO's background images); if they show objects, their "
                    "label files are missing and every detection on them counts as false",
                    unlabelled, len(items), split.images, "has" if unlabelled == 1 else "have",
                    split.labels)
    orphans = split.orphans(pairs)
    if orphans:
        log.warning("%d label file(s) in %s have no image in %s, so are not scored: %s",
                    len(orphans), split.labels, split.images,
                    ", ".join(p.name for p in orphans[:3]) + (" ..." if len(orphans) > 3 else ""))
    return Dataset("yolo", items, len(skipped), unreadable=list(skipped),
                   unreadable_at_load=tuple(skipped))


#: A dataset class id's model class where the model has no label of that name.
UNKNOWN_CLASS = -1


def _yolo_class_ids(root: Path, split: YoloLayout, labels: Sequence[str]) -> list[int]:
    """The model's class id for each class id of the dataset at `root`: the same id, or, where
    the dataset names its classes (`data.yaml`, `classes.txt`), the model's label of that name
    (a dataset may list them in another order, or only some). A name the model does not have
    is `UNKNOWN_CLASS`, whose objects are refused where a label line has one (as a COCO
    category is), and names none of which the model has are an error: scored by id, another
    model's dataset would read as a model that finds nothing."""
    named = _split_class_names(split)
    if named is None or list(named) == list(labels):
        return list(range(len(labels)))
    unknown = [name for name in named if name not in labels]
    if unknown and len(unknown) == len(named) > 1:
        raise InputError(f"{root} names its classes {listed(named)}; none of them is a label "
                         f"of the model ({listed(labels)}): evaluate on a dataset labelled for "
                         "this model")
    # an export's extra class that no object has is no reason to refuse the dataset
    return [list(labels).index(name) if name in labels else UNKNOWN_CLASS for name in named]


def _labelled_classes(class_ids: Sequence[int], labels: Sequence[str]) -> frozenset[int] | None:
    """The model's class ids a dataset labels (`class_ids`: the model's id of each of its
    classes), or None where it labels every one."""
    named = frozenset(class_id for class_id in class_ids if class_id != UNKNOWN_CLASS)
    return None if len(named) == len(labels) else named


def _dataset_file(split: YoloLayout) -> Path:
    """The data.yaml that describes `split`'s dataset (a Roboflow split's folder, valid/, has
    it one level up); where there is none, the path one would have."""
    return split.declared or next(
        (folder / "data.yaml" for folder in (split.root, split.root.parent)
         if (folder / "data.yaml").is_file()), split.root / "data.yaml")


def _split_class_names(split: YoloLayout) -> list[str] | None:
    """The class names `split`'s dataset declares (`_yolo_class_names`)."""
    return _yolo_class_names(_dataset_file(split), split.root / "classes.txt")


def _yolo_class_names(yaml_path: Path, text_path: Path) -> list[str] | None:
    """The class names a YOLO dataset declares (its data.yaml's `names`, or a classes.txt), in
    class-id order; None when it declares none."""
    content = _yaml_content(yaml_path)
    names = content.get("names")
    if isinstance(names, dict):
        # quoted ids ("0": circle) are the same ids, as Ultralytics reads them
        names = {_class_id(key): name for key, name in names.items()}
        if set(names) != set(range(len(names))):
            # a user check: `{0: circle, 1: square, 3: star}` read as three names, then each
            # label line of class 3 was "not one of the 3 classes (0..2)"
            raise InputError(f"{yaml_path}: its names use class ids "
                             f"{', '.join(map(str, sorted(names, key=_numeric_first)))}; "
                             "a YOLO dataset's ids run 0.."
                             f"{len(names) - 1} (Ultralytics refuses such a file too): "
                             "renumber the names, and the label files' class ids with them")
        return [str(names[key]) for key in range(len(names))]
    if isinstance(names, list):
        return [str(name) for name in names]
    if text_path.is_file():
        return [line.strip() for line in read_text(text_path, "class names file").splitlines()
                if line.strip()]
    return None


def _class_id(key: object) -> object:
    """A data.yaml `names` key as a class id: a whole number written as text ("0") is that
    number; anything else stays as it is (and is refused as no id)."""
    if isinstance(key, str) and key.strip().isdigit():
        return int(key.strip())
    return key


def _numeric_first(key: object) -> tuple[bool, float, str]:
    """A sort key for a YAML mapping's keys: numbers in their order (11 after 2), then the
    rest by their text."""
    if isinstance(key, (int, float)) and not isinstance(key, bool):
        return (False, float(key), str(key))
    return (True, 0.0, str(key))


def _yaml_content(yaml_path: Path) -> dict[str, Any]:
    """A dataset's data.yaml as a mapping; empty where there is none or it holds no mapping
    (PyYAML missing is an error: `dataset_yaml`)."""
    if not yaml_path.is_file():
        return {}
    try:
        content = dataset_yaml(yaml_path)
    except InputError:  # only to cross-check the names: unread, they are not checked
        return {}
    return content if isinstance(content, dict) else {}


#: Said where a long label line fails as a polygon: a pose dataset's lines (class cx cy w h,
#: then keypoints with visibility flags 0..2) read as polygons without the data.yaml that
#: declares `kpt_shape`.
POSE_HINT = ("; a pose label (class cx cy w h, then its keypoints) is read as one only with "
             "the dataset's data.yaml, which declares kpt_shape")


def _yolo_rows(path: Path, num_classes: int, keypoints: bool = False
               ) -> list[tuple[float, ...]]:
    """(class, cx, cy, w, h) of each line of YOLO label file `path` (none where it is
    missing). A line of more than six values is a segment's polygon (class x1 y1 x2 y2 ...),
    read as its bounding box as Ultralytics reads it, unless the dataset declares keypoints
    (`kpt_shape`: class cx cy w h, then the keypoints). A sixth value alone is refused, as
    Ultralytics refuses it: it is a prediction's confidence, and a file of predictions
    scored as the truth would move every figure without a word."""
    if not path.is_file():
        return []
    rows = []
    for number, line in enumerate(read_text(path, "label file").splitlines(), start=1):
        if not line.strip():
            continue
        where = f"{path}:{number}"
        parts = line.split()
        try:
            values = tuple(float(p) for p in parts)
            if len(parts) < 5 or values[0] != int(values[0]):
                raise ValueError
        except ValueError:
            raise InputError(f"{where}: expected 'class cx cy w h', got {line!r}") from None
        if not 0 <= values[0] < num_classes:
            raise InputError(f"{where}: class {int(values[0])} is not one of the "
                             f"{num_classes} classes (0..{num_classes - 1})")
        if len(values) == 6 and not keypoints:
            raise InputError(f"{where}: 6 values; a YOLO label is 'class cx cy w h', and a "
                             "sixth (a confidence) makes the line a prediction, not a label: "
                             "give the labels without their confidences (or these "
                             "predictions' corrected labels)")
        polygon = len(values) > 6 and not keypoints
        if polygon and len(values) % 2 == 0:
            raise InputError(f"{where}: {len(values) - 1} coordinates after the class: a "
                             "segment's polygon is x y pairs (class x1 y1 x2 y2 ...), a box "
                             f"'class cx cy w h'{POSE_HINT}")
        read = values[1:] if polygon else values[1:5]
        if not all(0.0 <= value <= 1.0 for value in read):
            what = "polygon" if polygon else f"box {' '.join(parts[1:5])}"
            raise InputError(f"{where}: {what} is outside 0..1; YOLO labels give "
                             f"{'x y' if polygon else 'cx cy w h'} as fractions of the image's "
                             "width and height (pixel values: divide them by those)"
                             f"{POSE_HINT if polygon else ''}")
        box = _polygon_box(read) if polygon else read
        if min(box[2:]) <= 0:
            raise InputError(f"{where}: the object's box has no area (width {box[2]:g}, "
                             f"height {box[3]:g}); give its size, or remove the line")
        rows.append((values[0], *box))
    return rows


def _polygon_box(points: Sequence[float]) -> tuple[float, float, float, float]:
    """cx cy w h of the bounding box of x y pairs."""
    xs, ys = points[0::2], points[1::2]
    return ((min(xs) + max(xs)) / 2, (min(ys) + max(ys)) / 2, max(xs) - min(xs),
            max(ys) - min(ys))


def _declares_keypoints(split: YoloLayout) -> bool:
    """Whether `split`'s dataset is a pose dataset (its data.yaml's `kpt_shape`)."""
    return "kpt_shape" in _yaml_content(_dataset_file(split))


def _coco_file(path: Path, labels: Sequence[str]) -> tuple[dict[str, Any], dict[Any, str]]:
    """A COCO annotation file's content and its categories (id -> name), every one a label of
    the model."""
    try:
        data = json.loads(read_text(path, "COCO file"))
    except OSError as exc:
        raise InputError(f"cannot read {path}: {exc.strerror}") from exc
    except json.JSONDecodeError as exc:
        raise InputError(f"{path} is not a COCO annotation file (not JSON: {exc})") from exc
    if not isinstance(data, dict) or not isinstance(data.get("categories"), list):
        raise InputError(f"{path} is not a COCO annotation file: it has no 'categories' list "
                         "(each entry's id and name: the model's labels)")
    for key in ("images", "annotations"):
        if key not in data:
            raise InputError(f"{path} is not a COCO annotation file: it has no '{key}' list")
    categories: dict[Any, str] = {}
    for index, category in enumerate(_entries(path, data, "categories")):
        if "id" not in category or not isinstance(category.get("name"), str):
            lacking = "id" if "id" not in category else "name"
            raise InputError(f"{path}: categories[{index}] has no {lacking}; every COCO "
                             "category needs its id and name")
        categories[category["id"]] = category["name"]
    used = {a.get("category_id") for a in _entries(path, data, "annotations")}
    unused = sorted(name for key, name in categories.items()
                    if name not in labels and key not in used)
    if unused:  # a Roboflow export's supercategory (id 0), a class never drawn
        log.warning("%s: %s %s, which no annotation uses and the model has no label for, "
                    "left out", path, "category" if len(unused) == 1 else "categories",
                    listed(unused))
        categories = {key: name for key, name in categories.items()
                      if name in labels or key in used}
    unknown = sorted({n for n in categories.values() if n not in labels})
    if unknown:
        noun = "category" if len(unknown) == 1 else "categories"
        raise InputError(f"{path}: {noun} {not_labels_of_the_model(unknown, labels)}; name "
                         "each category after its label, or evaluate on a dataset labelled "
                         "for this model")
    return data, categories


def _coco(path: Path, labels: Sequence[str], given_root: Path | None) -> Dataset:
    """The images of COCO file `path` with their objects. InputError naming the entry and the
    field for an image without id or file name, an annotation without a known image or
    category or with a box that is not [x, y, width, height]; images whose file is missing are
    left out with a warning (their objects with them), as a YOLO image without its label."""
    data, categories = _coco_file(path, labels)
    class_of = {cid: labels.index(name) for cid, name in categories.items()}
    images: dict[Any, Path] = {}
    sizes: dict[Any, tuple[int, int]] = {}  # width, height where the file gives them
    entries = _entries(path, data, "images")
    for index, image in enumerate(entries):
        if "id" not in image or not isinstance(image.get("file_name"), str):
            lacking = "id" if "id" not in image else "file_name"
            raise InputError(f"{path}: images[{index}] has no {lacking}; every COCO image "
                             "needs its id and file_name")
    root = given_root or _coco_image_root(path, [image["file_name"] for image in entries])
    for image in entries:
        images[image["id"]] = root / image["file_name"]
        if isinstance(image.get("width"), int) and isinstance(image.get("height"), int):
            sizes[image["id"]] = (image["width"], image["height"])
    objects: dict[Any, list[tuple[list[float], int, bool]]] = {i: [] for i in images}
    for index, annotation in enumerate(_entries(path, data, "annotations")):
        where = f"{path}: annotations[{index}]"
        if annotation.get("image_id") not in images:
            raise InputError(f"{where}: image_id {annotation.get('image_id')!r} is not the id of "
                             "an entry of images")
        if annotation.get("category_id") not in class_of:
            raise InputError(f"{where}: category_id {annotation.get('category_id')!r} is not "
                             "the id of an entry of categories")
        box = annotation.get("bbox")
        if (not isinstance(box, list) or len(box) != 4
                or not all(isinstance(v, (int, float)) for v in box) or min(box[2:]) < 0):
            raise InputError(f"{where}: bbox {box!r} is not [x, y, width, height] in pixels")
        _require_a_box_in(sizes.get(annotation["image_id"]), box, where,
                          images[annotation["image_id"]])
        objects[annotation["image_id"]].append(
            (box, class_of[annotation["category_id"]], bool(annotation.get("iscrowd", 0))))
    missing = [image_id for image_id, file in images.items() if not file.is_file()]
    if missing:
        log.warning("%s of %s not there (%s, looked for under %s): left out, with %s",
                    counted(len(missing), "image"), path,
                    listed([images[i].name for i in missing], 3), root,
                    counted(sum(len(objects[i]) for i in missing), "object"))
    labelled = _labelled_classes(list(class_of.values()), labels)
    items = []
    for image_id in sorted(set(images) - set(missing), key=str):
        found = objects[image_id]
        boxes = np.array([[x, y, x + w, y + h] for (x, y, w, h), _, _ in found],
                         np.float32).reshape(-1, 4)
        items.append(LabelledImage(images[image_id], boxes,
                                   np.array([c for _, c, _ in found], np.int64),
                                   np.array([crowd for _, _, crowd in found], bool),
                                   labelled, sizes.get(image_id)))
    return Dataset("coco", items, skipped=len(missing))


#: File names of a COCO file looked up in each candidate folder to choose its image folder.
COCO_ROOT_SAMPLE = 64


def _coco_image_root(path: Path, file_names: Sequence[str]) -> Path:
    """The folder COCO file `path`'s `file_name`s are relative to: its own, or where exports
    keep the images beside the annotations: `images/` next to the file, the folder above an
    `annotations/` one, or a folder in that or in its `images/` (COCO's own `val2017/`,
    Ultralytics' `images/val2017/`), whichever holds the most of them (a sample of them: the
    search costs a few hundred look-ups). Where none holds any, every folder searched is said."""
    folder = path.parent
    above = [folder.parent, folder.parent / "images"]
    candidates = [folder, folder / "images", *above]
    candidates += [child for root in above if root.is_dir() for child in sorted(root.iterdir())
                   if child.is_dir() and child != folder and not child.name.startswith(".")]
    candidates = list(dict.fromkeys(candidates))
    sample = list(file_names[:COCO_ROOT_SAMPLE])
    found = [sum((root / name).is_file() for name in sample) for root in candidates]
    if sample and not max(found):
        log.warning("none of the images %s names (%s) is in %s", path, listed(sample, 3),
                    listed([str(root) for root in candidates if root.is_dir()], 8))
        return folder
    best = candidates[found.index(max(found))]
    if best != folder:
        log.info("the images of %s are under %s", path, best)
    return best


#: How far past its image's edge a COCO box may reach, as a fraction of the image's side
#: (labelling tools round outlines drawn to the edge outwards); beyond, it is a wrong box.
COCO_EDGE_SLACK = 0.02


def _require_a_box_in(size: tuple[int, int] | None, box: list[float], where: str,
                      image: Path) -> None:
    """An error naming the annotation whose box has no area, or lies past its image (of
    `size`, width and height, as its entry gives them, where it does). A box within the
    image file's own size is let through: the entry's size is what is wrong, and the image
    is named for it when read (`Dataset.images`)."""
    width, height = box[2:]
    if width <= 0 or height <= 0:
        raise InputError(f"{where}: bbox {box!r} has no area (width {width:g}, height "
                         f"{height:g}); give the object's size, or remove the annotation")
    if size is None or not _past(box, size):
        return
    real = usable_image_size(image) if image.is_file() else None
    if real is not None and real != size:
        if not _past(box, real):  # a user check: an entry with width and height swapped
            return
        file_size = f"; the file is {real[0]}x{real[1]}"
    else:
        file_size = ""
    raise InputError(f"{where}: bbox {box!r} lies past its {size[0]}x{size[1]} image (the "
                     f"size its images entry gives{file_size}); COCO boxes are [x, y, width, "
                     "height] in the image's pixels, and that size is the image's own")


def _past(box: list[float], size: tuple[int, int]) -> bool:
    """Whether COCO box `box` reaches past an image of `size` by more than the slack
    labelling tools leave (`COCO_EDGE_SLACK`)."""
    x, y, width, height = box
    slack_x, slack_y = (max(2.0, side * COCO_EDGE_SLACK) for side in size)
    return bool(x < -slack_x or y < -slack_y or x + width > size[0] + slack_x
                or y + height > size[1] + slack_y)


def _entries(path: Path, data: dict[str, Any], key: str) -> list[dict[str, Any]]:
    """COCO file `path`'s list `key` (absent: empty), every entry an object."""
    entries = data.get(key, [])
    if not isinstance(entries, list) or not all(isinstance(e, dict) for e in entries):
        raise InputError(f"{path}: '{key}' is not a list of objects, as COCO gives it")
    return entries


def _class_folders(root: Path, labels: Sequence[str]) -> list[Path]:
    """The folders of `root` (hidden ones aside: .thumbs, .ipynb_checkpoints), each named as
    one of `labels`."""
    folders = sorted(p for p in root.iterdir() if p.is_dir() and not is_hidden(p, root))
    unknown = [f.name for f in folders if f.name not in labels]
    if unknown and _names_a_yolo_dataset(root):
        raise _detection_data_for_a_classifier(root, labels)
    if unknown:
        noun = "folder" if len(unknown) == 1 else "folders"
        raise InputError(f"{root}: {noun} {not_labels_of_the_model(unknown, labels)}; name "
                         "each class folder after its label")
    return folders


def _detection_data_for_a_classifier(path: Path, labels: Sequence[str] = ()) -> InputError:
    named = f", the labels being {listed(labels)}" if labels else ""
    return InputError(f"{path} is a YOLO detection dataset (images/ and labels/); a classifier "
                      f"is scored on one folder of images per label "
                      f"({dataset_folder(path)}/<label>/*.jpg"
                      f"{named}) or a COCO JSON file")


def _names_a_yolo_dataset(root: Path) -> bool:
    try:
        return yolo_layout(root) is not None
    except InputError:  # a YOLO dataset's own fault, said when one is scored as such
        return True


def _folders(root: Path, labels: Sequence[str]) -> Dataset:
    images_of = {folder: _class_images(folder) for folder in _class_folders(root, labels)}
    empty = [folder.name for folder, images in images_of.items() if not images]
    if empty and len(empty) < len(images_of):
        one = len(empty) == 1
        log.warning("the class %s no image: %s not scored",
                    f"folder {empty[0]} holds" if one else f"folders {listed(empty)} hold",
                    "that label is" if one else "those labels are")
    items = [LabelledImage(image, np.zeros((1, 4), np.float32),
                           np.array([labels.index(folder.name)], np.int64), np.zeros(1, bool))
             for folder, images in images_of.items() for image in images]
    loose = _folder_images(root)
    if loose and items:
        log.warning("%d image(s) directly in %s (%s) are in no class folder, so not scored; "
                    "move each into the folder of its label", len(loose), root,
                    ", ".join(p.name for p in loose[:3]) + (", ..." if len(loose) > 3 else ""))
    return Dataset("folders", items, labels=tuple(labels))


def _class_images(folder: Path) -> list[Path]:
    """The images of a class folder, its subfolders' too, as torchvision's ImageFolder reads
    them (a user check: images in `<label>/<batch>/` were "no image" and not scored)."""
    return [p for p in files_below(folder)
            if p.suffix.lower() in IMAGE_SUFFIXES and not is_hidden(p, folder)]


def _folder_images(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir()
                  if p.suffix.lower() in IMAGE_SUFFIXES and not is_hidden(p, folder))

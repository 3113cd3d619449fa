"""Where a YOLO dataset's images and label files are, as Ultralytics lays them out.

The path given (`edge eval --data`, `edge calibrate --eval-data`) may name the dataset
folder (`images/` and `labels/`, with or without split folders such as `images/val`), its
`data.yaml` (or a folder holding one), or one split's image folder (`DIR/images/val`,
Roboflow's `valid/images`). A split's labels are where Ultralytics looks for them: the image
path with its last `images` folder read as `labels`. Only one split is scored: the one
`data.yaml`'s `val` names, else a `val` (or Roboflow's `valid`) split folder; scoring training
images with the rest would flatter the model.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from calibration.images import files_below
from edge.errors import InputError, MissingDependencyError
from edge.sources.opencv import IMAGE_SUFFIXES
from edge.text_files import read_text
from edge.wording import listed

#: Split folders' names as Ultralytics and Roboflow write them; the first present is scored.
VALIDATION_SPLITS = ("val", "valid", "validation")
OTHER_SPLITS = ("train", "test")
YAML_SUFFIXES = (".yaml", ".yml")


@dataclass(frozen=True)
class YoloLayout:
    """One YOLO split: `images` and the `labels` folder that mirrors it, of the dataset in
    `root` (where its data.yaml or classes.txt names the classes); `chosen`, which split was
    picked and why, for the log (None: the folder holds one); `declared`, the dataset file
    that named the split, where one did."""

    root: Path
    images: Path
    labels: Path
    chosen: str | None = None
    declared: Path | None = None

    def pairs(self) -> list[tuple[Path, Path]]:
        """(image, label file) of every image, in order; the label file may be missing (an
        image without objects, in YOLO's convention)."""
        return [(image, self.labels / image.relative_to(self.images).with_suffix(".txt"))
                for image in files_below(self.images) if image.suffix.lower() in IMAGE_SUFFIXES]

    def orphans(self, pairs: list[tuple[Path, Path]]) -> list[Path]:
        """Label files of `labels` that no image of `pairs` reads (classes.txt aside)."""
        read = {label for _, label in pairs}
        return [p for p in files_below(self.labels)
                if p.suffix == ".txt" and p not in read
                and not (p.parent == self.labels and p.name == "classes.txt")]


def yolo_layout(path: Path) -> YoloLayout | None:
    """The YOLO split `path` names, None when it names no YOLO dataset; an error when it names
    one whose split cannot be told (several and no `val`) or whose `data.yaml` points nowhere."""
    if path.is_file():
        return _declared(path, _yaml(path)) if path.suffix.lower() in YAML_SUFFIXES else None
    if not path.is_dir():
        return None
    yaml_path = next((path / f"data{suffix}" for suffix in YAML_SUFFIXES
                      if (path / f"data{suffix}").is_file()), None)
    content = _yaml(yaml_path) if yaml_path is not None else {}
    if yaml_path is not None and "val" in content:
        return _declared(yaml_path, content)
    if path.parent.name == "images" and (path.parent.parent / "labels" / path.name).is_dir():
        return YoloLayout(path.parent.parent, path, path.parent.parent / "labels" / path.name)
    if path.name == "images" and (path.parent / "labels").is_dir():  # Roboflow's valid/images
        return YoloLayout(path.parent, path, path.parent / "labels")
    if (path / "labels").is_dir():
        return _split_of(path, path / "images" if (path / "images").is_dir() else path)
    return _split_folder_of(path)


def _split_of(root: Path, images: Path) -> YoloLayout:
    """The dataset folder's one split: the images themselves, or the validation split folder
    where `images` holds split folders instead (Ultralytics: images/val, labels/val)."""
    splits = sorted(p.name for p in images.iterdir()
                    if p.is_dir() and p.name in (*VALIDATION_SPLITS, *OTHER_SPLITS))
    if not splits or any(p.suffix.lower() in IMAGE_SUFFIXES for p in images.iterdir()):
        return YoloLayout(root, images, root / "labels")
    split, chosen = _validation(root, splits, lambda name: images / name)
    return YoloLayout(root, images / split, root / "labels" / split, chosen)


def _split_folder_of(root: Path) -> YoloLayout | None:
    """Roboflow's layout without its data.yaml: split folders each holding images/ and
    labels/ (valid/images, valid/labels); None where `root` holds none."""
    splits = sorted(p.name for p in root.iterdir()
                    if p.name in (*VALIDATION_SPLITS, *OTHER_SPLITS)
                    and (p / "images").is_dir() and (p / "labels").is_dir())
    if not splits:
        return None
    split, chosen = _validation(root, splits, lambda name: root / name / "images")
    return YoloLayout(root, root / split / "images", root / split / "labels", chosen)


def _validation(root: Path, splits: list[str], images_of: Callable[[str], Path]
                ) -> tuple[str, str]:
    """(the validation split among `splits`, the log line that says it was chosen); an error
    naming the split to pass where there is none."""
    validation = next((name for name in VALIDATION_SPLITS if name in splits), None)
    if validation is None:
        suggested = "test" if "test" in splits else splits[0]
        raise InputError(f"{root} holds the splits {listed(splits)} and no val split; pass the "
                         f"one to score instead, e.g. {images_of(suggested)}")
    others = [name for name in splits if name != validation]
    another = f"; pass {images_of(others[0])} to score another" if others else ""
    return validation, (f"{root} holds the splits {listed(splits)}: scoring {validation} "
                        f"({images_of(validation)}){another}")


def _declared(yaml_path: Path, content: dict[str, Any]) -> YoloLayout:
    """The split a `data.yaml` names as `val`: its folder relative to the file's `path`
    (itself relative to the file's folder), or, as Ultralytics retries, without a leading
    `../` (Roboflow's exports write `val: ../valid/images`). `content`: the file's."""
    split = content.get("val")
    if isinstance(split, list) and len(split) == 1:
        split = split[0]
    if isinstance(split, list):
        raise InputError(f"{yaml_path} names {len(split)} val folders; pass the one to score "
                         "(a split's image folder) instead")
    if not isinstance(split, str):
        raise InputError(f"{yaml_path} names no val split (a 'val: images/val' line); pass the "
                         "dataset folder, or the split's image folder, instead")
    base = yaml_path.parent / str(content.get("path") or "")
    tries = [base / split, yaml_path.parent / split]  # the second: moved from an absolute path
    if split.startswith("../"):
        tries += [base / split[3:], yaml_path.parent / split[3:]]
    images = next((path for path in tries if path.is_dir()), tries[0])
    if images.is_file():
        raise InputError(f"{yaml_path}: its val split {split} is a list of image files; pass "
                         "the folder that holds the split's images instead")
    if not images.is_dir():
        raise InputError(f"{yaml_path}: its val split {split} is not a folder of images "
                         f"({images}); fix the file's 'path' and 'val', or pass the split's "
                         "image folder instead")
    return YoloLayout(yaml_path.parent, images, _labels_beside(images, yaml_path),
                      f"{yaml_path}: scoring its val split ({images})", yaml_path)


def _labels_beside(images: Path, yaml_path: Path) -> Path:
    """The label folder of an image folder: its path with the last `images` read as `labels`
    (Ultralytics' rule)."""
    parts = list(images.resolve().parts)
    if "images" not in parts:
        raise InputError(f"{yaml_path}: its val split {images} has no 'images' folder in its "
                         "path, so its labels cannot be found the way Ultralytics finds them "
                         "(images/... beside labels/...)")
    index = len(parts) - 1 - parts[::-1].index("images")
    parts[index] = "labels"
    return Path(*parts)


def _yaml(path: Path) -> dict[str, Any]:
    """A data.yaml's content (empty where the file holds no mapping)."""
    content = dataset_yaml(path)
    return content if isinstance(content, dict) else {}


def dataset_yaml(path: Path) -> Any:
    """What a dataset's YAML file holds; an error naming the file where it cannot be read as
    YAML, or where PyYAML is missing (a user check: read as holding nothing, a dataset's class
    names went unchecked and its val split unfound, and the scores were silently wrong)."""
    if importlib.util.find_spec("yaml") is None:
        raise MissingDependencyError("yaml", "cpu", f"reading {path}", alone="'pyyaml>=6'")
    import yaml  # noqa: PLC0415 - optional: Ultralytics' dataset files

    try:
        return yaml.safe_load(read_text(path, "dataset file"))
    except (OSError, yaml.YAMLError) as exc:
        raise InputError(f"{path} could not be read as YAML ({exc})") from exc

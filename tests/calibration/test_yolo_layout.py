"""YOLO datasets as Ultralytics lays them out: splits, data.yaml, and labels that do not fit."""

from __future__ import annotations

import logging
import re
import shutil
from pathlib import Path

import pytest

from calibration.datasets import dataset_from, dataset_layout, require_labelled_content
from edge.errors import InputError
from edge.synthetic.dataset import write_yolo_dataset

LABELS = ("circle", "square", "triangle", "star")


def split_dataset(root: Path, splits: dict[str, int], yaml: str | None = None) -> Path:
    """`root/images/<split>` and `root/labels/<split>` with `splits[split]` frames each (each
    split its own seed), and `yaml` as root/data.yaml."""
    for seed, (split, frames) in enumerate(splits.items()):
        scratch = root / f"_{split}"
        write_yolo_dataset(scratch, frames=frames, seed=seed + 1)
        for kind in ("images", "labels"):
            shutil.move(str(scratch / kind), str(root / kind / split))
        shutil.rmtree(scratch)
    if yaml is not None:
        (root / "data.yaml").write_text(yaml)
    return root


def test_of_several_splits_only_val_is_scored(tmp_path, caplog):
    """A train/val layout was scored on both together, training images flattering the model
    (a user check: 360 images where val holds 200)."""
    root = split_dataset(tmp_path / "d", {"train": 5, "val": 3})
    with caplog.at_level(logging.INFO):
        dataset = dataset_from(root, LABELS, "detect")
    assert [item.path.parent for item in dataset.items] == [root / "images" / "val"] * 3
    assert (f"{root} holds the splits train, val: scoring val ({root / 'images' / 'val'}); "
            f"pass {root / 'images' / 'train'} to score another") in caplog.text
    # one split's image folder, as data.yaml names it, scores that split
    train = dataset_from(root / "images" / "train", LABELS, "detect")
    assert {item.path.parent for item in train.items} == {root / "images" / "train"}
    assert len(train.items) == 5
    assert sum(len(item.boxes) for item in train.items) > 0


def test_data_yaml_names_the_split_and_may_be_passed_itself(tmp_path, caplog):
    root = split_dataset(tmp_path / "d", {"train": 4, "test": 2},
                         "path: .\ntrain: images/train\nval: images/test\nnames:\n  0: circle\n"
                         "  1: square\n  2: triangle\n  3: star\n")
    for data in (root, root / "data.yaml"):
        caplog.clear()
        with caplog.at_level(logging.INFO):
            dataset = dataset_from(data, LABELS, "detect")
        assert {item.path.parent for item in dataset.items} == {root / "images" / "test"}
        assert f"scoring its val split ({root / 'images' / 'test'})" in caplog.text
    assert dataset_layout(root / "data.yaml", "detect") == "yolo"
    require_labelled_content(root / "data.yaml", "yolo", LABELS)


def test_a_dataset_moved_from_its_absolute_path_is_still_found(tmp_path):
    """`edge.synthetic.dataset` writes an absolute `path:`, as Ultralytics' own files do."""
    write_yolo_dataset(tmp_path / "first", frames=2, seed=1)
    (tmp_path / "first" / "data.yaml").write_text(
        f"path: {tmp_path / 'first'}\ntrain: images\nval: images\n")
    shutil.move(str(tmp_path / "first"), str(tmp_path / "moved"))
    assert len(dataset_from(tmp_path / "moved", LABELS, "detect").items) == 2


@pytest.mark.parametrize(("splits", "yaml", "message"), [
    ({"train": 2, "test": 2}, None,
     "holds the splits test, train and no val split; pass the one to score instead, e.g. "
     ".*images/test$"),
    ({"train": 2}, "path: .\ntrain: images/train\nval: images/val\n",
     "its val split images/val is not a folder of images"),
])
def test_a_split_that_cannot_be_told_or_found_is_refused(tmp_path, splits, yaml, message):
    root = split_dataset(tmp_path / "d", splits, yaml)
    with pytest.raises(InputError, match=message):
        dataset_from(root, LABELS, "detect")


def roboflow(root: Path, yaml: bool) -> Path:
    """Roboflow's export: train/images, valid/images (each beside its labels/), and a data.yaml
    whose splits are `../train/images` and `../valid/images`."""
    for seed, (split, frames) in enumerate({"train": 4, "valid": 3}.items()):
        write_yolo_dataset(root / split, frames=frames, seed=seed + 1)
    if yaml:
        (root / "data.yaml").write_text("train: ../train/images\nval: ../valid/images\nnc: 4\n"
                                        "names: ['circle', 'square', 'triangle', 'star']\n")
    return root


@pytest.mark.parametrize("yaml", [True, False])
def test_roboflow_exports_score_their_valid_split(tmp_path, yaml):
    """Refused before: `../valid/images` pointed outside the folder (Ultralytics retries it
    without the `../`), and without data.yaml the split folders were not recognised."""
    root = roboflow(tmp_path / "rf", yaml)
    for data in (root, root / "valid" / "images"):
        dataset = dataset_from(data, LABELS, "detect")
        assert {item.path.parent for item in dataset.items} == {root / "valid" / "images"}
        assert len(dataset.items) == 3


def test_val_as_a_one_entry_list_is_read_and_as_a_file_list_is_refused(tmp_path):
    root = split_dataset(tmp_path / "d", {"val": 2}, "val: [images/val]\n")
    assert len(dataset_from(root, LABELS, "detect").items) == 2
    (root / "val.txt").write_text("images/val/000000.png\n")
    (root / "data.yaml").write_text("val: val.txt\n")
    with pytest.raises(InputError, match=re.escape(
            "its val split val.txt is a list of image files; pass the folder that holds the "
            "split's images instead")):
        dataset_from(root, LABELS, "detect")
    (root / "data.yaml").write_text("val: [images/val, images/train]\n")
    with pytest.raises(InputError, match="names 2 val folders; pass the one to score"):
        dataset_from(root, LABELS, "detect")


def test_a_yaml_without_a_val_split_passed_itself_is_refused(tmp_path):
    write_yolo_dataset(tmp_path, frames=2, seed=1)
    (tmp_path / "other.yaml").write_text("train: images\n")
    with pytest.raises(InputError, match="names no val split"):
        dataset_from(tmp_path / "other.yaml", LABELS, "detect")
    assert len(dataset_from(tmp_path, LABELS, "detect").items) == 2  # the folder still reads


def test_images_without_label_files_and_labels_without_images_are_said(tmp_path, caplog):
    """Both were silent: an image whose label file is missing scores every detection on it as
    false (mAP 0.997 -> 0.975 with 5 of 200 missing, a user check)."""
    write_yolo_dataset(tmp_path, frames=6, seed=1)
    labels = sorted((tmp_path / "labels").iterdir())
    labels[0].unlink()
    images = sorted((tmp_path / "images").iterdir())
    images[-1].unlink()
    with caplog.at_level(logging.WARNING):
        dataset = dataset_from(tmp_path, LABELS, "detect")
    assert len(dataset.items) == 5 and len(dataset.items[0].boxes) == 0
    assert (f"1 of the 5 images in {tmp_path / 'images'} has no label file in "
            f"{tmp_path / 'labels'}: scored as images without objects") in caplog.text
    assert (f"1 label file(s) in {tmp_path / 'labels'} have no image in "
            f"{tmp_path / 'images'}, so are not scored: {labels[-1].name}") in caplog.text
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        assert len(dataset_from(tmp_path, LABELS, "detect", max_images=2).items) == 2
    assert f"1 of the 2 images in {tmp_path / 'images'} has no label file" in caplog.text


@pytest.mark.parametrize("row", ["1 1.5 0.5 0.2 0.2", "0 0.5 0.5 -0.1 0.2", "2 120 80 30 40"])
def test_boxes_outside_0_to_1_are_refused_with_file_and_line(tmp_path, row):
    write_yolo_dataset(tmp_path, frames=2, seed=1)
    label = sorted((tmp_path / "labels").iterdir())[1]
    label.write_text("0 0.5 0.5 0.1 0.1\n" + row + "\n")
    with pytest.raises(InputError, match=(
            f"{label}:2: box {' '.join(row.split()[1:])} is outside 0..1; YOLO labels give cx "
            "cy w h as fractions of the image's width and height")):
        dataset_from(tmp_path, LABELS, "detect")


def test_class_folders_given_to_a_detector_are_named_as_a_classifiers_layout(tmp_path):
    """A helper passed a classifier's class folders to a detector: the error listed what a
    detector is scored on, not what the folder looked like."""
    for label in ("cat", "dog"):
        (tmp_path / label).mkdir()
        (tmp_path / label / "1.jpg").write_bytes(b"")
    (tmp_path / "notes").mkdir()  # no images: not a class folder
    with pytest.raises(InputError) as raised:
        dataset_layout(tmp_path, "detect")
    assert str(raised.value) == (
        f"{tmp_path} is neither a YOLO dataset (images/ and labels/ folders, or its data.yaml) "
        "nor a COCO JSON file, which a detector is scored on; its folders of images (cat, dog) "
        "are the layout that scores a classifier, and this model is a detector: pass its "
        "labelled boxes (YOLO or COCO)")
    (tmp_path / "frame.jpg").write_bytes(b"")  # a user check: loose frames, one camera's folder
    with pytest.raises(InputError, match=r"scored on; it holds 1 image and no labels\. Label "
                                         r"them to score the model .*edge calibrate already "
                                         r"compares INT8 with FP32 on frames without labels, "
                                         r"and --drift-reference writes a drift profile from "
                                         r"them$"):
        dataset_layout(tmp_path, "detect")
    (tmp_path / "frame.jpg").unlink()
    (tmp_path / "cat" / "1.jpg").unlink()
    (tmp_path / "dog" / "1.jpg").unlink()
    with pytest.raises(InputError, match=r"which a detector is scored on$"):
        dataset_layout(tmp_path, "detect")

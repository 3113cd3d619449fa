"""Labelled datasets as other tools write them: label files in other encodings, segment
polygons, pose datasets, boxes without area or past their image, images that do not decode,
empty class folders. Each is read as its tool meant it or refused naming the file and line,
and nothing drops out of a score unsaid."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import cv2
import numpy as np
import pytest

from calibration.datasets import dataset_from
from edge.errors import InputError

LABELS = ("circle", "square")


def _yolo(root: Path, lines: str | bytes, yaml: str | None = None) -> Path:
    (root / "images").mkdir(parents=True)
    (root / "labels").mkdir()
    cv2.imwrite(str(root / "images" / "a.jpg"), np.full((100, 200, 3), 120, np.uint8))
    label = root / "labels" / "a.txt"
    label.write_bytes(lines if isinstance(lines, bytes) else lines.encode())
    if yaml is not None:
        (root / "data.yaml").write_text(yaml)
    return root


@pytest.mark.parametrize("content", [
    b"\xef\xbb\xbf1 0.5 0.5 0.2 0.4\r\n",  # UTF-8 with a byte order mark, CRLF
    "1 0.5 0.5 0.2 0.4\n".encode("utf-16"),  # Notepad's "Unicode"
])
def test_label_files_as_windows_tools_save_them_are_read(tmp_path, content):
    """User checks: a byte order mark read as part of the class ("expected 'class cx cy w
    h', got '\\ufeff1 ...'"), and UTF-16 was a UnicodeDecodeError traceback."""
    item = dataset_from(_yolo(tmp_path / "d", content), LABELS, "detect").items[0]
    assert item.class_ids.tolist() == [1]
    np.testing.assert_allclose(item.boxes, [[80, 30, 120, 70]])


def test_data_yaml_names_with_a_gap_in_their_ids_are_refused_naming_the_file(tmp_path):
    """A user check: `names: {0: circle, 1: square, 3: star}` was read as three names, then
    each label line of class 3 was "not one of the 3 classes (0..2)", though data.yaml names
    it. YOLO's ids run 0..n-1 (Ultralytics refuses such a file too): said so, naming it."""
    labels = ("circle", "square", "triangle", "star")
    root = _yolo(tmp_path / "d", "3 0.5 0.5 0.2 0.4\n",
                 "names:\n  0: circle\n  1: square\n  3: star\n")
    with pytest.raises(InputError) as refused:
        dataset_from(root, labels, "detect")
    assert str(refused.value) == (
        f"{root / 'data.yaml'}: its names use class ids 0, 1, 3; a YOLO dataset's ids run 0..2 "
        "(Ultralytics refuses such a file too): renumber the names, and the label files' "
        "class ids with them")
    # ids 0..n-1 in any order are read by id
    (root / "data.yaml").write_text("names:\n  1: star\n  0: circle\n")
    (root / "labels" / "a.txt").write_text("1 0.5 0.5 0.2 0.4\n")
    assert dataset_from(root, labels, "detect").items[0].class_ids.tolist() == [3]  # star


def test_data_yaml_names_under_quoted_ids_are_read_as_those_ids(tmp_path):
    """A user check: `"0": circle` ... was refused as "its names use class ids 0, 1, 2, 3; a YOLO
    dataset's ids run 0..3", which contradicts itself (Ultralytics reads them as ids)."""
    labels = ("circle", "square", "triangle", "star")
    root = _yolo(tmp_path / "d", "1 0.5 0.5 0.2 0.4\n",
                 'names:\n  "1": star\n  "0": circle\n')
    assert dataset_from(root, labels, "detect").items[0].class_ids.tolist() == [3]  # star
    (root / "data.yaml").write_text('names:\n  "0": circle\n  "one": star\n')
    with pytest.raises(InputError, match="its names use class ids 0, one; a YOLO dataset's "
                                         r"ids run 0\.\.1"):
        dataset_from(root, labels, "detect")


def test_files_in_another_encoding_are_refused_naming_them(tmp_path):
    folder = _yolo(tmp_path / "d", "1 0.5 0.5 0.2 0.4\n")
    (folder / "labels" / "a.txt").write_bytes("1 0.5 0.5 0.2 0.4 # café\n".encode("latin-1"))
    with pytest.raises(InputError, match=r"label file .*a\.txt is not UTF-8 text \(byte 23 is "
                                         r"0xe9: Latin-1 .*\); save it as UTF-8"):
        dataset_from(folder, LABELS, "detect")
    (folder / "labels" / "a.txt").write_text("1 0.5 0.5 0.2 0.4\n")
    (folder / "data.yaml").write_bytes("names: [circle, squ\xe9re]\n".encode("latin-1"))
    with pytest.raises(InputError, match=r"dataset file .*data\.yaml is not UTF-8 text"):
        dataset_from(folder, LABELS, "detect")
    coco = tmp_path / "c.json"
    coco.write_bytes(json.dumps({"images": [], "annotations": [], "categories": [
        {"id": 1, "name": "c\xedrcle"}]}, ensure_ascii=False).encode("latin-1"))
    with pytest.raises(InputError, match=r"COCO file .*c\.json is not UTF-8 text"):
        dataset_from(coco, LABELS, "detect")


def test_a_segment_polygon_is_read_as_its_bounding_box(tmp_path):
    """A user check: Ultralytics' segment labels (class x1 y1 x2 y2 ...) were read as
    'class cx cy w h' from their first two points, silently."""
    folder = _yolo(tmp_path / "d", "0 0.2 0.3 0.6 0.3 0.5 0.9 0.3 0.7\n")
    item = dataset_from(folder, LABELS, "detect").items[0]
    np.testing.assert_allclose(item.boxes, [[40, 30, 120, 90]], atol=1e-4)
    (folder / "labels" / "a.txt").write_text("0 0.2 0.3 0.6 0.3 0.5 0.9 0.3\n")
    with pytest.raises(InputError, match=r"a\.txt:1: 7 coordinates after the class: a "
                                         r"segment's polygon is x y pairs"):
        dataset_from(folder, LABELS, "detect")


def test_a_label_line_with_a_confidence_is_refused_as_a_prediction(tmp_path):
    """A user check: `0 0.5 0.5 0.1 0.1 0.9` (a prediction file's line) was scored as a box of
    the truth, moving mAP and recall without a word; Ultralytics refuses such a file."""
    folder = _yolo(tmp_path / "d", "1 0.5 0.5 0.2 0.4\n0 0.5 0.5 0.1 0.1 0.9\n")
    with pytest.raises(InputError, match=r"a\.txt:2: 6 values; a YOLO label is 'class cx cy w "
                                         r"h', and a sixth \(a confidence\) makes the line a "
                                         r"prediction, not a label"):
        dataset_from(folder, LABELS, "detect")


def test_a_pose_dataset_s_keypoints_follow_its_box(tmp_path):
    folder = _yolo(tmp_path / "d", "1 0.5 0.5 0.2 0.4 0.45 0.4 2 0.55 0.4 2\n",
                   "names: [circle, square]\nkpt_shape: [2, 3]\n")
    item = dataset_from(folder, LABELS, "detect").items[0]
    np.testing.assert_allclose(item.boxes, [[80, 30, 120, 70]])
    # without the data.yaml that declares kpt_shape, the line fails as a polygon (visibility
    # 2 is outside 0..1): the error says what makes it a pose label
    (folder / "data.yaml").unlink()
    with pytest.raises(InputError, match=r"a\.txt:1: polygon is outside 0\.\.1; .*; a pose "
                                         r"label \(class cx cy w h, then its keypoints\) is "
                                         r"read as one only with the dataset's data\.yaml, "
                                         r"which declares kpt_shape"):
        dataset_from(folder, LABELS, "detect")


@pytest.mark.parametrize(("line", "message"), [
    ("1 0.5 0.5 0 0.1", r"a\.txt:1: the object's box has no area \(width 0, height 0\.1\); "
                        r"give its size, or remove the line"),
    ("0 0.2 0.3 0.2 0.6 0.2 0.9 0.2 0.5", r"box has no area \(width 0, height 0\.6\)"),
])
def test_a_yolo_box_without_area_is_refused(tmp_path, line, message):
    """A user check: a zero-width box was taken as an object no detection can match, and
    recall dropped silently."""
    with pytest.raises(InputError, match=message):
        dataset_from(_yolo(tmp_path / "d", line + "\n"), LABELS, "detect")


def _coco(tmp_path: Path, box: list[float], **image: object) -> Path:
    cv2.imwrite(str(tmp_path / "a.jpg"), np.full((100, 200, 3), 120, np.uint8))
    path = tmp_path / "c.json"
    path.write_text(json.dumps({
        "images": [{"id": 1, "file_name": "a.jpg", **image}],
        "annotations": [{"id": 1, "image_id": 1, "category_id": 1, "bbox": box}],
        "categories": [{"id": 1, "name": "circle"}]}))
    return path


@pytest.mark.parametrize(("box", "image", "message"), [
    ([10, 10, 0, 5], {}, r"annotations\[0\]: bbox \[10, 10, 0, 5\] has no area \(width 0, "
                         r"height 5\); give the object's size, or remove the annotation"),
    ([10, 10, 5000, 5], {"width": 200, "height": 100},
     r"annotations\[0\]: bbox \[10, 10, 5000, 5\] lies past its 200x100 image"),
])
def test_a_coco_box_without_area_or_past_its_image_is_refused(tmp_path, box, image, message):
    with pytest.raises(InputError, match=message):
        dataset_from(_coco(tmp_path, box, **image), LABELS, "detect")


def test_a_coco_box_drawn_to_the_edge_and_rounded_out_is_taken(tmp_path):
    dataset = dataset_from(_coco(tmp_path, [0, 0, 201, 100.5], width=200, height=100),
                           LABELS, "detect")
    assert len(dataset.items) == 1


@pytest.mark.parametrize(("content", "message"), [
    ({"images": [], "annotations": []}, r"it has no 'categories' list"),
    ({"images": [], "categories": [{"id": 1, "name": "circle"}]}, r"it has no 'annotations' list"),
    ({"annotations": [], "categories": [{"id": 1, "name": "circle"}]}, r"it has no 'images' list"),
    ({"images": [], "annotations": [], "categories": [{"id": 1}]},
     r"categories\[0\] has no name; every COCO category needs its id and name"),
    ({"images": [], "annotations": [{"category_id": 1}],
      "categories": [{"id": 1, "name": "Circle"}]},
     r"category Circle is not a label of the model \(Circle: did you mean circle\?\); its 2 "
     r"labels: circle, square; name each category after its label"),
    ({"images": [], "annotations": [{"category_id": 1}, {"category_id": 2}],
      "categories": [{"id": 1, "name": "Circle"}, {"id": 2, "name": "Box"}]},
     r"categories Box, Circle are not labels of the model \(Circle: did you mean circle\?\)"),
])
def test_a_coco_file_missing_a_part_says_which(tmp_path, content, message):
    """A user check: these read as Python's internals ("('categories')", "('name')")."""
    path = tmp_path / "c.json"
    path.write_text(json.dumps(content))
    with pytest.raises(InputError, match=message):
        dataset_from(path, LABELS, "detect")


def test_categories_and_names_no_object_has_are_left_out_with_a_warning(tmp_path, caplog):
    """A user check: a Roboflow COCO export's supercategory (`{"id": 0, "name":
    "shapes-AbCd"}`), which no annotation uses, refused the whole file as "not a label of the
    model"; so did a data.yaml naming one class more than the model has."""
    path = _coco(tmp_path, [10, 10, 20, 20])
    coco = json.loads(path.read_text())
    coco["categories"] += [{"id": 0, "name": "shapes-AbCd", "supercategory": "none"}]
    path.write_text(json.dumps(coco))
    with caplog.at_level(logging.WARNING):
        dataset = dataset_from(path, LABELS, "detect")
    assert [item.class_ids.tolist() for item in dataset.items] == [[0]]
    assert (f"{path}: category shapes-AbCd, which no annotation uses and the model has no "
            "label for, left out") in caplog.text
    caplog.clear()
    root = _yolo(tmp_path / "y", "1 0.5 0.5 0.2 0.4\n", "names: [circle, square, hexagon]\n")
    with caplog.at_level(logging.WARNING):
        dataset = dataset_from(root, LABELS, "detect")
    assert dataset.items[0].class_ids.tolist() == [1]
    assert ("also names hexagon, not a label of the model (circle, square): read as long as "
            "no label line has it") in caplog.text
    (root / "labels" / "a.txt").write_text("1 0.5 0.5 0.2 0.4\n2 0.3 0.3 0.1 0.1\n")
    with pytest.raises(InputError, match=r"a\.txt: class 2, hexagon is not a label of the "
                                         r"model; its 2 labels: circle, square; evaluate on a "
                                         "dataset labelled for this model"):
        dataset_from(root, LABELS, "detect")


def test_unreadable_images_and_empty_class_folders_are_named(tmp_path, caplog):
    """User checks: a classifier's images that did not decode (a whole class folder of them)
    and an empty class folder left the score without a word: "top-1 1.0000 over 10
    images"."""
    for label, count in (("circle", 2), ("square", 0)):
        (tmp_path / label).mkdir()
        for n in range(count):
            cv2.imwrite(str(tmp_path / label / f"{n}.png"), np.full((32, 32, 3), 9, np.uint8))
    (tmp_path / "circle" / "bad.jpg").write_bytes(b"\xff\xd8 cut")
    with caplog.at_level(logging.WARNING):
        dataset = dataset_from(tmp_path, LABELS, "classify")
        read = list(dataset.images())
    assert len(read) == 2
    assert "the class folder square holds no image: that label is not scored" in caplog.text
    assert ("1 unreadable image not scored, with labels circle: circle/bad.jpg (truncated, "
            "damaged or not an image)") in caplog.text
    assert dataset.unreadable == [tmp_path / "circle" / "bad.jpg"]


@pytest.mark.parametrize(("annotations", "images"), [
    ("ann.json", "images"), ("annotations/ann.json", "images"),
    ("annotations/instances_val2017.json", "val2017"),  # COCO's own download
    ("annotations/instances_val2017.json", "images/val2017"),  # Ultralytics' coco.yaml
])
def test_a_coco_file_finds_its_images_where_exports_keep_them(tmp_path, annotations, images,
                                                             caplog):
    """User checks: a COCO file beside an images/ folder, in annotations/ beside it, or in
    COCO's own layout read every image as "not there" and then "holds no usable labelled
    images", without saying where it looked."""
    (tmp_path / images).mkdir(parents=True)
    (tmp_path / "train2017").mkdir()  # another split's folder, not chosen
    cv2.imwrite(str(tmp_path / images / "a.jpg"), np.full((100, 200, 3), 120, np.uint8))
    path = tmp_path / annotations
    path.parent.mkdir(exist_ok=True)
    path.write_text(json.dumps({
        "images": [{"id": 1, "file_name": "a.jpg"}, {"id": 2, "file_name": "gone.jpg"}],
        "annotations": [{"id": 1, "image_id": 1, "category_id": 1, "bbox": [10, 10, 20, 20]}],
        "categories": [{"id": 1, "name": "circle"}]}))
    with caplog.at_level(logging.INFO):
        dataset = dataset_from(path, LABELS, "detect")
    assert [item.path for item in dataset.items] == [tmp_path / images / "a.jpg"]
    assert (f"1 image of {path} not there (gone.jpg, looked for under {tmp_path / images}): "
            "left out, with 0 objects") in caplog.text


def test_a_coco_file_whose_images_are_nowhere_names_every_folder_searched(tmp_path, caplog):
    (tmp_path / "annotations").mkdir()
    (tmp_path / "pictures").mkdir()
    path = tmp_path / "annotations" / "ann.json"
    path.write_text(json.dumps({
        "images": [{"id": 1, "file_name": "a.jpg"}],
        "annotations": [{"id": 1, "image_id": 1, "category_id": 1, "bbox": [10, 10, 20, 20]}],
        "categories": [{"id": 1, "name": "circle"}]}))
    with caplog.at_level(logging.WARNING), pytest.raises(InputError, match="no usable labelled"):
        dataset_from(path, LABELS, "detect")
    assert (f"none of the images {path} names (a.jpg) is in {tmp_path / 'annotations'}, "
            f"{tmp_path}, {tmp_path / 'pictures'}") in caplog.text


def test_fewer_images_asked_for_than_class_folders_is_said(tmp_path, caplog):
    """A user check: `--max-images 1` over two class folders scored one image in silence."""
    for label in LABELS:
        (tmp_path / label).mkdir()
        for n in range(3):
            cv2.imwrite(str(tmp_path / label / f"{n}.png"), np.full((8, 8, 3), n, np.uint8))
    with caplog.at_level(logging.WARNING):
        dataset = dataset_from(tmp_path, LABELS, "classify", max_images=1)
    assert len(dataset.items) == 1
    assert ("--max-images 1 is fewer than the 2 class folders: 1 of them scored, one image "
            "each; give at least 2 to score every class") in caplog.text


def test_a_class_folder_s_subfolders_are_read(tmp_path, caplog):
    """A user check: images in `<label>/<batch>/` read as an empty class folder, as
    torchvision's ImageFolder reads them."""
    for label in LABELS:
        (tmp_path / label / "batch1").mkdir(parents=True)
        cv2.imwrite(str(tmp_path / label / "batch1" / "0.png"), np.full((8, 8, 3), 5, np.uint8))
    (tmp_path / "square" / "batch1" / "bad.png").write_bytes(b"\x89PNG cut")
    with caplog.at_level(logging.WARNING):
        dataset = dataset_from(tmp_path, LABELS, "classify")
        read = list(dataset.images())
    assert sorted(int(item.class_ids[0]) for item, _ in read) == [0, 1]
    assert "holds no image" not in caplog.text
    assert "1 unreadable image not scored, with labels square: square/batch1/bad.png" in \
        caplog.text


def test_a_class_folder_s_linked_subfolders_are_read(tmp_path):
    """As class folders that are links are (a user check: calibration did not follow them)."""
    stored = tmp_path / "stored"
    stored.mkdir()
    cv2.imwrite(str(stored / "0.png"), np.full((8, 8, 3), 5, np.uint8))
    root = tmp_path / "data"
    for label in LABELS:
        (root / label).mkdir(parents=True)
        (root / label / "linked batch").symlink_to(stored)
    read = list(dataset_from(root, LABELS, "classify").images())
    assert sorted(int(item.class_ids[0]) for item, _ in read) == [0, 1]


def test_a_utf16_file_without_its_byte_order_mark_is_named_as_such(tmp_path):
    """A user check: it read as a malformed line ("got '3\\x00 \\x000\\x00...'")."""
    folder = _yolo(tmp_path / "d", "1 0.5 0.5 0.2 0.4\n".encode("utf-16-le"))
    with pytest.raises(InputError, match=r"label file .*a\.txt holds NUL bytes \(byte 1\): "
                                         r"UTF-16 without a byte order mark"):
        dataset_from(folder, LABELS, "detect")


def test_the_look_before_the_work_finds_a_dataset_of_which_no_image_decodes(tmp_path):
    """A user check: `edge calibrate --report --eval-data` of such a set was refused only after
    calibrating (seconds here, minutes on a large model)."""
    from calibration.datasets import require_labelled_content

    folder = _yolo(tmp_path / "d", "1 0.5 0.5 0.2 0.4\n")
    require_labelled_content(folder, "yolo", LABELS)  # one decodes: taken
    (folder / "images" / "a.jpg").write_bytes(b"\xff\xd8 cut short")
    with pytest.raises(InputError, match=r"holds no usable labelled images \(none of its 1 "
                                         r"image decodes: a\.jpg is truncated, damaged or not "
                                         r"an image\)"):
        require_labelled_content(folder, "yolo", LABELS)


def test_a_coco_image_of_another_shape_than_its_entry_keeps_its_boxes_and_is_named(tmp_path,
                                                                                   caplog):
    """An entry giving 100x200 for a 200x100 image (a phone photo's stored size, say, where
    the image reads turned upright) is no resize: its boxes are taken as they are, and said."""
    (tmp_path / "images").mkdir()
    cv2.imwrite(str(tmp_path / "images" / "a.jpg"), np.full((100, 200, 3), 120, np.uint8))
    (tmp_path / "ann.json").write_text(json.dumps({
        "images": [{"id": 1, "file_name": "a.jpg", "width": 100, "height": 200}],
        "annotations": [{"id": 1, "image_id": 1, "category_id": 1, "bbox": [10, 20, 30, 40]}],
        "categories": [{"id": 1, "name": "square"}]}))
    with caplog.at_level(logging.WARNING):
        ((item, image),) = list(dataset_from(tmp_path / "ann.json", LABELS, "detect").images())
    assert image.shape == (100, 200, 3)
    np.testing.assert_array_equal(item.boxes, [[10, 20, 40, 60]])
    assert ("1 image of another shape than their COCO entries give (images/a.jpg: 200x100, its "
            "entry 100x200): their boxes are taken as they are") in caplog.text


def test_a_swapped_coco_entry_is_named_whichever_way_its_boxes_lie(tmp_path, caplog):
    """A user check: an entry giving 100x200 for a 200x100 image was refused as "lies past its
    100x200 image" where a box lay beyond 100 px across, and taken with a warning where none
    did: the box is checked against the file's own size, and the image named either way; a
    box past both is refused naming both sizes."""
    (tmp_path / "images").mkdir()
    cv2.imwrite(str(tmp_path / "images" / "a.jpg"), np.full((100, 200, 3), 120, np.uint8))

    def coco(box: list[int]) -> Path:
        (tmp_path / "ann.json").write_text(json.dumps({
            "images": [{"id": 1, "file_name": "a.jpg", "width": 100, "height": 200}],
            "annotations": [{"id": 1, "image_id": 1, "category_id": 1, "bbox": box}],
            "categories": [{"id": 1, "name": "square"}]}))
        return tmp_path / "ann.json"

    with caplog.at_level(logging.WARNING):
        ((item, _),) = list(dataset_from(coco([150, 20, 30, 40]), LABELS, "detect").images())
    np.testing.assert_array_equal(item.boxes, [[150, 20, 180, 60]])
    assert ("1 image of another shape than their COCO entries give (images/a.jpg: 200x100, its "
            "entry 100x200)") in caplog.text
    with pytest.raises(InputError, match=r"annotations\[0\]: bbox \[150, 20, 30, 140\] lies past "
                                         r"its 100x200 image \(the size its images entry gives; "
                                         r"the file is 200x100\)"):
        dataset_from(coco([150, 20, 30, 140]), LABELS, "detect")

"""mAP against pycocotools on the same detections, and `edge eval` on datasets."""

from __future__ import annotations

import contextlib
import io
import json
import logging
import re
import shutil
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from calibration.datasets import dataset_from
from edge.detections import Detections
from edge.errors import InputError
from edge.metrics import DetectionScorer
from edge.synthetic.dataset import write_yolo_dataset


def random_scene(rng, images=30, classes=3):
    truth, found = [], []
    for _ in range(images):
        count = int(rng.integers(1, 6))
        xy = rng.uniform(0, 400, (count, 2))
        wh = rng.uniform(10, 80, (count, 2))
        boxes = np.concatenate([xy, xy + wh], 1).astype(np.float32)
        labels = rng.integers(0, classes, count)
        truth.append((boxes, labels))
        jitter = boxes + rng.normal(0, 6, boxes.shape).astype(np.float32)
        extra = np.concatenate([xy[:2] + 200, xy[:2] + 240], 1).astype(np.float32)
        det_boxes = np.concatenate([jitter, extra])
        det_labels = np.concatenate([labels, rng.integers(0, classes, len(extra))])
        found.append(Detections(det_boxes, rng.uniform(0.05, 1, len(det_boxes)).astype(
            np.float32), det_labels.astype(np.int64)))
    return truth, found


def coco_map(truth, found, classes):
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    images = [{"id": i, "width": 640, "height": 480} for i in range(len(truth))]
    annotations, results = [], []
    for i, ((boxes, labels), dets) in enumerate(zip(truth, found, strict=True)):
        for box, label in zip(boxes, labels, strict=True):
            w, h = float(box[2] - box[0]), float(box[3] - box[1])
            annotations.append({"id": len(annotations) + 1, "image_id": i,
                                "category_id": int(label), "bbox": [float(box[0]),
                                                                    float(box[1]), w, h],
                                "area": w * h, "iscrowd": 0})
        for box, score, label in zip(dets.boxes, dets.scores, dets.class_ids, strict=True):
            results.append({"image_id": i, "category_id": int(label), "score": float(score),
                            "bbox": [float(box[0]), float(box[1]), float(box[2] - box[0]),
                                     float(box[3] - box[1])]})
    with contextlib.redirect_stdout(io.StringIO()):
        gt = COCO()
        gt.dataset = {"images": images, "annotations": annotations,
                      "categories": [{"id": c, "name": str(c)} for c in range(classes)]}
        gt.createIndex()
        evaluator = COCOeval(gt, gt.loadRes(results), "bbox")
        evaluator.evaluate()
        evaluator.accumulate()
        evaluator.summarize()
    return evaluator.stats[0], evaluator.stats[1]


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_map_matches_pycocotools(seed):
    rng = np.random.default_rng(seed)
    truth, found = random_scene(rng)
    scorer = DetectionScorer(3, tuple(round(0.5 + 0.05 * i, 2) for i in range(10)))
    for (boxes, labels), dets in zip(truth, found, strict=True):
        scorer.add(dets, boxes, labels.astype(np.int64))
    ap = scorer.average_precision()
    expected_50_95, expected_50 = coco_map(truth, found, 3)
    assert ap[:, 0].mean() == pytest.approx(expected_50, abs=2e-3)
    assert ap.mean() == pytest.approx(expected_50_95, abs=2e-3)


def test_edge_eval_on_a_yolo_dataset(demo_model, tmp_path):
    """A user check: a file named .jpg that is no image was named on the terminal, but its
    JSON read `"unreadable_images": []`."""
    write_yolo_dataset(tmp_path / "data", frames=20, seed=5)
    (tmp_path / "data" / "images" / "fake.jpg").write_text("junk\n")
    result = subprocess.run([sys.executable, "-m", "edge", "eval", str(demo_model), "--data",
                             str(tmp_path / "data"), "--json"], capture_output=True, text=True,
                            timeout=300)
    assert result.returncode == 0, result.stderr
    accuracy = json.loads(result.stdout.strip().splitlines()[-1])
    assert accuracy["images"] == 20 and accuracy["map50"] > 0.9
    assert accuracy["unreadable_images"] == ["images/fake.jpg"]
    assert set(accuracy["per_class_ap50"]) <= {"circle", "square", "triangle", "star"}


def test_phone_photos_stored_sideways_score_as_upright_ones(demo_model, tmp_path):
    """Labels are drawn on the upright photo (as Ultralytics reads it, EXIF orientation
    applied); the same frames stored turned a quarter with orientation 6, as a phone writes
    a portrait photo, score as the upright ones."""
    from calibration.evaluate import evaluate
    from tests.calibration.test_images import _with_orientation

    write_yolo_dataset(tmp_path / "upright", frames=6, seed=5, image_format="jpg")
    stored = tmp_path / "stored"
    (stored / "images").mkdir(parents=True)
    (tmp_path / "upright" / "labels").rename(stored / "labels")
    for path in sorted((tmp_path / "upright" / "images").iterdir()):
        upright = cv2.imread(str(path))
        sideways = cv2.rotate(upright, cv2.ROTATE_90_COUNTERCLOCKWISE)  # 6: turn it back CW
        (stored / "images" / path.name).write_bytes(_with_orientation(sideways, 6, "II"))
        cv2.imwrite(str(path), upright, [cv2.IMWRITE_JPEG_QUALITY, 100])  # the same encoder
    (tmp_path / "upright" / "labels").symlink_to(stored / "labels")
    labels = ("circle", "square", "triangle", "star")
    upright = evaluate(demo_model, dataset_from(tmp_path / "upright", labels, "detect"))
    sideways = evaluate(demo_model, dataset_from(stored, labels, "detect"))
    assert upright.map50 > 0.9
    assert sideways.map50 == pytest.approx(upright.map50, abs=0.02)


def test_classes_a_dataset_does_not_label_are_not_scored(demo_model, tmp_path):
    """A user check: a dataset naming circle, square and triangle (no star) scored the model's
    star detections as false positives, precision 0.72 against 0.95 with stars labelled."""
    from calibration.evaluate import evaluate

    labels = ("circle", "square", "triangle", "star")
    write_yolo_dataset(tmp_path / "full", frames=24, seed=5)  # circles, squares, triangles
    full = evaluate(demo_model, dataset_from(tmp_path / "full", labels, "detect"))
    partial = tmp_path / "partial"
    shutil.copytree(tmp_path / "full", partial)
    triangles = 0
    for label_file in (partial / "labels").glob("*.txt"):
        lines = label_file.read_text().splitlines()
        triangles += sum(line.split()[0] == "2" for line in lines)
        label_file.write_text("".join(f"{line}\n" for line in lines if line.split()[0] != "2"))
    (partial / "classes.txt").unlink()
    (partial / "data.yaml").write_text(f"path: {partial}\ntrain: images\nval: images\n"
                                       "names:\n  0: circle\n  1: square\n")
    assert triangles > 0
    scored = evaluate(demo_model, dataset_from(partial, labels, "detect"))
    assert scored.unlabelled_classes == ["triangle", "star"] and not scored.unscored_classes
    assert scored.objects == (full.objects or 0) - triangles
    assert (scored.detections or 0) < (full.detections or 0)  # the triangles' are left out
    assert full.precision is not None and scored.precision is not None
    assert scored.precision >= full.precision - 0.02 and scored.precision > 0.9
    assert scored.per_class_ap50 == {k: v for k, v in full.per_class_ap50.items()
                                     if k in ("circle", "square")}
    text = subprocess.run([sys.executable, "-m", "edge", "eval", str(demo_model), "--data",
                           str(partial)], capture_output=True, text=True, timeout=300).stdout
    assert ("not labelled in the data (their detections not scored, in mAP or precision): "
            "triangle, star") in text


def test_edge_eval_names_the_classes_left_out_of_map(demo_model, tmp_path):
    """Classes without a ground-truth object have no AP and are not in mAP (COCO's rule):
    the output says which, instead of listing fewer classes without a word."""
    write_yolo_dataset(tmp_path / "data", frames=12, seed=5)
    for labels in (tmp_path / "data" / "labels").glob("*.txt"):  # no triangles, no stars
        kept = [line for line in labels.read_text().splitlines() if line.split()[0] in "01"]
        labels.write_text("".join(f"{line}\n" for line in kept))
    command = [sys.executable, "-m", "edge", "eval", str(demo_model), "--data",
               str(tmp_path / "data")]
    as_json = subprocess.run([*command, "--json"], capture_output=True, text=True, timeout=300)
    accuracy = json.loads(as_json.stdout.strip().splitlines()[-1])
    assert accuracy["unscored_classes"] == ["triangle", "star"]
    assert set(accuracy["per_class_ap50"]) == {"circle", "square"}
    assert accuracy["map50"] == pytest.approx(
        sum(accuracy["per_class_ap50"].values()) / 2, abs=1e-4)
    text = subprocess.run(command, capture_output=True, text=True, timeout=300).stdout
    assert "not in mAP (no ground-truth objects): triangle, star" in text


def test_labels_outside_the_model_are_rejected(tmp_path):
    write_yolo_dataset(tmp_path, frames=2, seed=1)
    label = next((tmp_path / "labels").iterdir())
    label.write_text("7 0.5 0.5 0.1 0.1\n")
    with pytest.raises(InputError, match="class 7 is not one of the 4 classes"):
        dataset_from(tmp_path, ("circle", "square", "triangle", "star"), "detect")


def test_a_detection_dataset_without_objects_is_refused(tmp_path):
    write_yolo_dataset(tmp_path, frames=3, seed=1)
    for label in (tmp_path / "labels").iterdir():
        label.write_text("")
    with pytest.raises(InputError, match="hold no objects, so mAP, precision and recall"):
        dataset_from(tmp_path, ("circle", "square", "triangle", "star"), "detect")


def test_declared_class_names_pair_classes_by_name_or_are_refused(tmp_path):
    write_yolo_dataset(tmp_path, frames=4, seed=1)  # names circle, square, triangle, star
    as_written = dataset_from(tmp_path, ("circle", "square", "triangle", "star"), "detect")
    # the model lists them in another order: each object keeps its class, by name
    reordered = dataset_from(tmp_path, ("square", "star", "circle", "triangle"), "detect")
    renumbered = np.array([2, 0, 3, 1])
    for ours, theirs in zip(as_written.items, reordered.items, strict=True):
        assert np.array_equal(renumbered[ours.class_ids], theirs.class_ids)
    assert any(len(item.class_ids) for item in as_written.items)
    # another model's classes: refused, like a COCO category or a class folder it lacks
    with pytest.raises(InputError, match=re.escape(
            "names its classes circle, square, triangle, star; none of them is a label of the "
            "model (person, car): evaluate on a dataset labelled")):
        dataset_from(tmp_path, ("person", "car"), "detect")
    from calibration.datasets import require_labelled_content

    with pytest.raises(InputError, match="none of them is a label of the model"):
        require_labelled_content(tmp_path, "yolo", ("person", "car"))
    with pytest.raises(InputError, match=re.escape("star is not a label of the model")):
        dataset_from(tmp_path, ("circle", "square", "triangle"), "detect")


def test_edge_eval_refuses_field_options_and_empty_models(demo_model, tmp_path):
    write_yolo_dataset(str(tmp_path / "data"), frames=2, seed=1)  # a str path is a folder too
    (tmp_path / "empty.onnx").write_bytes(b"")
    data = ["--data", str(tmp_path / "data")]
    for args, message in (
            ([str(demo_model), "--report", str(tmp_path / "r"), *data],
             "--report goes with --field"),
            ([str(demo_model), "--labels", str(tmp_path / "labels"), *data],
             "--labels goes with --field (a collected dataset); a model is scored against "
             "--data's own labels"),
            ([str(tmp_path / "empty.onnx"), *data], "empty.onnx is empty (0 bytes)"),
            ([str(demo_model), "--data", str(tmp_path / "nowhere")],
             "nowhere does not exist; pass a YOLO folder (images/ and labels/) or a COCO JSON")):
        result = subprocess.run([sys.executable, "-m", "edge", "eval", *args],
                                capture_output=True, text=True, timeout=120)
        assert result.returncode == 2 and message in result.stderr, result.stderr
    from edge.errors import ModelError
    from edge.spec import spec_from_onnx_file

    with pytest.raises(ModelError, match=re.escape("empty.onnx is empty (0 bytes): the export")):
        spec_from_onnx_file(tmp_path / "empty.onnx")


def test_coco_json_dataset(tmp_path):
    write_yolo_dataset(tmp_path, frames=2, seed=1)
    image = sorted((tmp_path / "images").iterdir())[0]
    coco = {"images": [{"id": 1, "file_name": f"images/{image.name}"}],
            "categories": [{"id": 3, "name": "star"}, {"id": 9, "name": "hexagon"}],
            "annotations": []}
    coco["annotations"] = [{"id": 1, "image_id": 1, "category_id": 9, "bbox": [1, 2, 30, 40]}]
    (tmp_path / "ann.json").write_text(json.dumps(coco))
    with pytest.raises(InputError, match="category hexagon is not a label of the model"):
        dataset_from(tmp_path / "ann.json", ("circle", "square", "triangle", "star"), "detect")
    coco["annotations"] = [{"id": 1, "image_id": 1, "category_id": 3, "bbox": [1, 2, 30, 40]}]
    (tmp_path / "ann.json").write_text(json.dumps(coco))
    dataset = dataset_from(tmp_path / "ann.json", ("circle", "square", "triangle", "star"),
                           "detect")
    np.testing.assert_allclose(dataset.items[0].boxes, [[1, 2, 31, 42]])
    assert dataset.items[0].class_ids.tolist() == [3]


SHAPES = ("circle", "square", "triangle", "star")


@pytest.mark.parametrize(("change", "message"), [
    (lambda c: c["annotations"][0].pop("bbox"), "annotations[0]: bbox None is not [x, y, width, "
                                                "height] in pixels"),
    (lambda c: c["annotations"][0].update(bbox=[1, 2, 3]), "annotations[0]: bbox [1, 2, 3] is "
                                                           "not [x, y, width, height]"),
    (lambda c: c["images"][0].pop("file_name"), "images[0] has no file_name; every COCO image "
                                                "needs its id and file_name"),
    (lambda c: c["images"][0].pop("id"), "images[0] has no id"),
    (lambda c: c["annotations"][0].pop("image_id"), "annotations[0]: image_id None is not the "
                                                    "id of an entry of images"),
    (lambda c: c["annotations"][0].update(category_id=99), "annotations[0]: category_id 99 is "
                                                           "not the id of an entry of categories"),
    (lambda c: c.update(annotations={"a": 1}), "'annotations' is not a list of objects"),
])
def test_a_coco_file_with_a_bad_entry_is_refused_naming_it(tmp_path, change, message):
    """Each of these was a KeyError or IndexError traceback (exit 1), after calibration had
    run when the file was `edge calibrate --eval-data`."""
    from calibration.datasets import require_labelled_content

    write_yolo_dataset(tmp_path, frames=2, seed=1)
    image = sorted((tmp_path / "images").iterdir())[0]
    coco = {"images": [{"id": 1, "file_name": f"images/{image.name}"}],
            "categories": [{"id": 3, "name": "star"}],
            "annotations": [{"id": 1, "image_id": 1, "category_id": 3, "bbox": [1, 2, 30, 40]}]}
    change(coco)
    (tmp_path / "ann.json").write_text(json.dumps(coco))
    with pytest.raises(InputError, match=re.escape(message)):
        require_labelled_content(tmp_path / "ann.json", "coco", SHAPES)


def test_a_coco_image_whose_file_is_missing_is_left_out_with_a_warning(tmp_path, caplog):
    write_yolo_dataset(tmp_path, frames=2, seed=1)
    image = sorted((tmp_path / "images").iterdir())[0]
    coco = {"images": [{"id": 1, "file_name": f"images/{image.name}"},
                       {"id": 2, "file_name": "images/gone.jpg"}],
            "categories": [{"id": 3, "name": "star"}],
            "annotations": [{"id": 1, "image_id": 1, "category_id": 3, "bbox": [1, 2, 30, 40]},
                            {"id": 2, "image_id": 2, "category_id": 3, "bbox": [5, 5, 9, 9]},
                            {"id": 3, "image_id": 2, "category_id": 3, "bbox": [9, 9, 9, 9]}]}
    (tmp_path / "ann.json").write_text(json.dumps(coco))
    with caplog.at_level(logging.WARNING):
        dataset = dataset_from(tmp_path / "ann.json", SHAPES, "detect")
    assert [item.path.name for item in dataset.items] == [image.name]
    assert (f"1 image of {tmp_path / 'ann.json'} not there (gone.jpg, looked for under "
            f"{tmp_path}): left out, with 2 objects") in caplog.text


def test_classifier_top1_on_class_folders(tmp_path, caplog):
    import cv2

    from calibration.evaluate import evaluate
    from converters.convert import ConvertOptions, convert
    from tests.converters.tiny_models import TinyClassifier, export_onnx, seeded

    network = seeded(TinyClassifier(2, softmax=True))
    source = export_onnx(network, tmp_path / "c.onnx", 32, 32)
    convert(source, ConvertOptions(labels=("dark", "bright"))).write(tmp_path / "cls.onnx")
    for label, value in (("dark", 20), ("bright", 230)):
        (tmp_path / "data" / label).mkdir(parents=True)
        for i in range(3):
            cv2.imwrite(str(tmp_path / "data" / label / f"{i}.png"),
                        np.full((40, 40, 3), value + i, np.uint8))
    dataset = dataset_from(tmp_path / "data", ("dark", "bright"), "classify")
    accuracy = evaluate(tmp_path / "cls.onnx", dataset)
    assert accuracy.task == "classify" and accuracy.images == 6
    assert accuracy.unscored_classes == [] and accuracy.unreadable_images == []
    import torch

    from edge.preprocess import letterbox

    hits = 0
    answers: dict[str, list[str]] = {"dark": [], "bright": []}
    for item in dataset.items:  # the same images through the source network, by hand
        image = letterbox(cv2.imread(str(item.path)), 32, 32)[0][..., ::-1] / 255.0
        with torch.no_grad():
            scores = network.double()(torch.from_numpy(image.transpose(2, 0, 1)[None].copy()))
        hits += int(int(scores.argmax()) == int(item.class_ids[0]))
        answers[("dark", "bright")[int(item.class_ids[0])]].append(
            ("dark", "bright")[int(scores.argmax())])
    assert accuracy.top1 == pytest.approx(hits / 6)
    # per true class, with what it was taken for (a user check: top-1 overall only)
    assert accuracy.per_class_images == {"dark": 3, "bright": 3}
    for label, other in (("dark", "bright"), ("bright", "dark")):
        right = answers[label].count(label)
        assert accuracy.per_class_top1[label] == pytest.approx(right / 3, abs=1e-4)
        expected = {other: 3 - right} if right < 3 else None
        assert accuracy.per_class_mistaken_for.get(label) == expected
    (tmp_path / "data" / ".thumbs").mkdir()  # hidden: no class
    cv2.imwrite(str(tmp_path / "data" / "loose.png"), np.full((40, 40, 3), 99, np.uint8))
    with caplog.at_level(logging.WARNING):
        again = dataset_from(tmp_path / "data", ("dark", "bright"), "classify")
    assert len(again.items) == 6
    assert "1 image(s) directly in" in caplog.text and "loose.png" in caplog.text
    (tmp_path / "data" / "cat").mkdir()
    with pytest.raises(InputError, match=re.escape(
            "folder cat is not a label of the model; its 2 labels: dark, bright; name each "
            "class folder after its label")):
        dataset_from(tmp_path / "data", ("dark", "bright"), "classify")
    (tmp_path / "data" / "cat").rmdir()
    (tmp_path / "data" / "Dark").mkdir()  # a user check: a case slip got no hint
    with pytest.raises(InputError, match=re.escape(
            "folder Dark is not a label of the model (Dark: did you mean dark?)")):
        dataset_from(tmp_path / "data", ("dark", "bright"), "classify")


def test_a_yolo_dataset_given_for_a_classifier_is_named_as_one(tmp_path):
    """A user check: `edge eval` of a classifier on a YOLO folder said "folders images, labels
    are not labels of the model", as if two class folders were misnamed."""
    import cv2

    (tmp_path / "data" / "images").mkdir(parents=True)
    (tmp_path / "data" / "labels").mkdir()
    cv2.imwrite(str(tmp_path / "data" / "images" / "a.png"), np.zeros((40, 40, 3), np.uint8))
    (tmp_path / "data" / "labels" / "a.txt").write_text("0 0.5 0.5 0.2 0.2\n")
    with pytest.raises(InputError, match=re.escape(
            f"{tmp_path / 'data'} is a YOLO detection dataset (images/ and labels/); a "
            "classifier is scored on one folder of images per label (")):
        dataset_from(tmp_path / "data", ("dark", "bright"), "classify")
    # its data.yaml, named as the classes: scored as one class an image (each image's first
    # box), 0% top-1 on a user's detection set, and an IndexError on an image without boxes
    (tmp_path / "data" / "data.yaml").write_text(
        "path: .\ntrain: images\nval: images\nnames: {0: dark, 1: bright}\n")
    (tmp_path / "data" / "labels" / "a.txt").write_text("")
    with pytest.raises(InputError, match=re.escape(
            f"{tmp_path / 'data' / 'data.yaml'} is a YOLO detection dataset (images/ and "
            f"labels/); a classifier is scored on one folder of images per label "
            f"({tmp_path / 'data'}/<label>/*.jpg) or a COCO JSON file")):
        dataset_from(tmp_path / "data" / "data.yaml", ("dark", "bright"), "classify")


def test_max_images_spreads_over_every_class_folder_and_the_whole_split(tmp_path, caplog):
    """`edge eval --max-images N` scored the first N images: on class folders, the first
    class's alone (a user check: 20 stars of a sorted dataset, the other classes unscored)."""
    import cv2

    from calibration.datasets import spread

    assert spread(list(range(10)), 4) == [0, 3, 6, 9]
    assert spread(list(range(10)), 1) == [0]
    assert spread(list(range(3)), 5) == [0, 1, 2] and spread([1, 2], None) == [1, 2]
    for label in ("cat", "dog", "owl"):
        (tmp_path / "data" / label).mkdir(parents=True)
        for i in range(10):
            cv2.imwrite(str(tmp_path / "data" / label / f"{i}.png"),
                        np.full((8, 8, 3), i, np.uint8))
    with caplog.at_level(logging.INFO):
        dataset = dataset_from(tmp_path / "data", ("cat", "dog", "owl"), "classify",
                               max_images=6)
    assert sorted(int(item.class_ids[0]) for item in dataset.items) == [0, 0, 1, 1, 2, 2]
    assert (f"scoring 6 of the 30 images in {tmp_path / 'data'}, spread evenly over them "
            "(--max-images)") in caplog.text
    # a folder of one image among folders of twenty is scored too, the rest in proportion
    (tmp_path / "data" / "owl").rename(tmp_path / "owls")
    (tmp_path / "data" / "owl").mkdir()
    (tmp_path / "owls" / "0.png").rename(tmp_path / "data" / "owl" / "0.png")
    for label in ("cat", "dog"):
        for i in range(10, 20):
            cv2.imwrite(str(tmp_path / "data" / label / f"{i}.png"),
                        np.full((8, 8, 3), i, np.uint8))
    for count, expected in ((10, [0] * 5 + [1] * 4 + [2]), (3, [0, 1, 2]), (2, [0, 2])):
        picked = dataset_from(tmp_path / "data", ("cat", "dog", "owl"), "classify",
                              max_images=count).items
        assert sorted(int(item.class_ids[0]) for item in picked) == expected
    write_yolo_dataset(tmp_path / "yolo", frames=9, seed=3)
    names = [item.path.name for item in
             dataset_from(tmp_path / "yolo", ("circle", "square", "triangle", "star"), "detect",
                          max_images=3).items]
    every = sorted(p.name for p in (tmp_path / "yolo" / "images").iterdir())
    assert names == [every[0], every[4], every[8]]


def test_one_scoring_loop_serves_demo_eval_and_selftest(demo_model):
    """The demo detector's held-out evaluation and the hardware selftest's scoring are the same
    loop: on the same frames they report the same mAP@0.5, and the selftest's stage times are
    filled for every frame."""
    from calibration.evaluate import StageTimes, accuracy_from_runner
    from converters.demo_detector.evaluate import held_out_frames
    from edge.runners.onnxruntime import OrtRunner

    times = StageTimes()
    with OrtRunner.from_path(demo_model, slots=1) as runner:
        timed = accuracy_from_runner(runner, held_out_frames(2, 5, 3), times)
        untimed = accuracy_from_runner(runner, held_out_frames(2, 5, 3))
    assert timed == untimed and timed.images == 10 and timed.map50 > 0.5
    assert [len(v) for v in (times.preprocess, times.infer, times.postprocess)] == [10] * 3
    assert all(v > 0 for v in times.medians().values())


def test_scoring_loop_swaps_channels_for_an_rgb_model(tmp_path):
    """An RGB model sees the frame's channels swapped: a classifier of pure red vs pure blue
    frames scores 100% only if the loop feeds it RGB (the selftest's old loop did not)."""
    import torch

    from calibration.evaluate import accuracy_from_runner
    from converters.convert import ConvertOptions, convert
    from edge.runners.onnxruntime import OrtRunner
    from edge.synthetic.scene import GroundTruth
    from tests.converters.tiny_models import export_onnx, seeded

    class RedOrBlue(torch.nn.Module):  # [N, 3, H, W] RGB in 0..1 -> logits (red, blue)
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            mean = x.mean(dim=(2, 3))
            return torch.stack([mean[:, 0] - mean[:, 2], mean[:, 2] - mean[:, 0]], 1)

    source = export_onnx(seeded(RedOrBlue()), tmp_path / "rb.onnx", 16, 16)
    convert(source, ConvertOptions(labels=("red", "blue"), camera_order="RGB",
                                   task="classify")).write(tmp_path / "rb.edge.onnx")
    none = np.zeros((0, 4), np.float32)

    def frames():
        for class_id, bgr in ((0, (0, 0, 255)), (1, (255, 0, 0))):
            truth = GroundTruth(none, np.array([class_id]), np.zeros(1, bool))
            # the frame is what OpenCV delivers (BGR); the model was converted for RGB frames
            yield truth, np.full((20, 20, 3), bgr, np.uint8)

    with OrtRunner.from_path(tmp_path / "rb.edge.onnx", slots=1) as runner:
        assert runner.spec.input.colour_order == "RGB"
        assert accuracy_from_runner(runner, frames()).top1 == 1.0


@pytest.mark.parametrize(("profile", "qdq_in_float"), [("tensorrt", True), ("cpu", False)])
def test_int8_models_are_scored_as_their_target_computes_them(demo_model, tmp_path, profile,
                                                              qdq_in_float):
    """A `tensorrt` profile model is scored with its Q/DQ in float (TensorRT's arithmetic, the
    same on every CPU), a `cpu` profile model through ONNX Runtime's int8 kernels, as deployed."""
    import onnx

    from calibration.evaluate import accuracy_from_runner, evaluate
    from calibration.readers import frames_from
    from converters.quantize import CalibrateOptions, calibrate, load_float_model
    from edge.runners.onnxruntime import OrtRunner

    model, spec = load_float_model(demo_model)
    int8 = calibrate(model, spec, frames_from("synthetic://shapes?seed=5", max_images=16),
                     CalibrateOptions(profile=profile, method="minmax", compare=False,
                                      progress=False)).model
    path = tmp_path / f"{profile}.onnx"
    onnx.save(int8, path)
    write_yolo_dataset(tmp_path / "data", frames=12, seed=6)
    dataset = dataset_from(tmp_path / "data", spec.labels, spec.task)
    scored = evaluate(path, dataset).as_dict()
    with OrtRunner.from_path(path, slots=1, qdq_in_float=qdq_in_float) as runner:
        expected = accuracy_from_runner(runner, dataset.images()).as_dict()
    assert scored["map50"] > 0.7  # 12 frames of a scene the detector knows
    assert {k: v for k, v in scored.items() if "ms" not in k} == \
        {k: v for k, v in expected.items() if "ms" not in k}


def test_models_evaluated_together_score_as_each_alone(demo_model, tmp_path):
    """One pass over the frames for several models (the calibration report's FP32 and INT8)
    gives each the figures it gets evaluated alone; the frames are read once."""
    import onnx

    from calibration.evaluate import evaluate, evaluate_models
    from calibration.readers import frames_from
    from converters.quantize import CalibrateOptions, calibrate, load_float_model

    model, spec = load_float_model(demo_model)
    int8 = calibrate(model, spec, frames_from("synthetic://shapes?seed=5", max_images=16),
                     CalibrateOptions(profile="cpu", method="minmax", compare=False,
                                      progress=False)).model
    onnx.save(int8, tmp_path / "int8.onnx")
    write_yolo_dataset(tmp_path / "data", frames=12, seed=6)
    dataset = dataset_from(tmp_path / "data", spec.labels, spec.task)
    read = []

    def frames():
        for item, image in dataset.images():
            read.append(item.path)
            yield item, image

    together = evaluate_models([demo_model, tmp_path / "int8.onnx"], frames())
    alone = [evaluate(demo_model, dataset), evaluate(tmp_path / "int8.onnx", dataset)]
    assert together == alone and len(read) == 12
    assert together[0].images == 12 and together[0].map50 > 0.7
    assert together[0] != together[1]  # two models, told apart


def test_a_yolo_dataset_sizes_jpegs_from_their_headers_and_skips_unreadable_ones(tmp_path,
                                                                                 caplog):
    """Boxes in pixels of the image's real size, read from the JPEG header without decoding
    (each image is decoded once, when it is scored); files that are no image are skipped with
    a warning."""
    import cv2

    write_yolo_dataset(tmp_path / "data", frames=3, seed=2, image_format="jpg")
    (tmp_path / "data" / "images" / "000009.jpg").write_bytes(b"not a jpeg")
    (tmp_path / "data" / "labels" / "000009.txt").write_text("0 0.5 0.5 0.1 0.1\n")
    with caplog.at_level(logging.WARNING):
        dataset = dataset_from(tmp_path / "data", ("circle", "square", "triangle", "star"),
                               "detect")
    assert len(dataset.items) == 3 and dataset.skipped == 1
    assert ("1 unreadable image not scored, with 1 object: images/000009.jpg (truncated, "
            "damaged or not an image)") in caplog.text
    unreadable = [tmp_path / "data" / "images" / "000009.jpg"]
    assert dataset.unreadable == unreadable  # named in --json and the report (a user check)
    assert len(list(dataset.images())) == 3 and dataset.unreadable == unreadable
    for item in dataset.items:
        height, width = cv2.imread(str(item.path)).shape[:2]
        rows = np.loadtxt(item.path.parent.parent / "labels" / f"{item.path.stem}.txt",
                          ndmin=2)
        expected = np.stack([(rows[:, 1] - rows[:, 3] / 2) * width,
                             (rows[:, 2] - rows[:, 4] / 2) * height,
                             (rows[:, 1] + rows[:, 3] / 2) * width,
                             (rows[:, 2] + rows[:, 4] / 2) * height], 1)
        np.testing.assert_allclose(item.boxes, expected, atol=1e-3)


def test_edge_eval_scores_a_synthetic_scene(demo_model):
    """`--data synthetic://shapes?seed=N`: the demo's scene, every 5th frame, scored through the
    same loop as any dataset (the report's unseen scene can be scored again this way)."""
    from calibration.evaluate import SCENE_FRAME_STEP, evaluate_models, scene_frames

    uri = "synthetic://shapes?seed=10005&width=480&height=360"
    result = subprocess.run([sys.executable, "-m", "edge", "eval", str(demo_model), "--data",
                             uri, "--max-images", "12", "--json"], capture_output=True,
                            text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    accuracy = json.loads(result.stdout.strip().splitlines()[-1])
    expected = evaluate_models([demo_model], scene_frames(uri, 12))[0].as_dict()
    assert {k: v for k, v in accuracy.items() if k != "drift_reference"} == expected
    assert accuracy["images"] == 12 and accuracy["map50"] > 0.7
    _, image = next(scene_frames(uri, 1))
    assert image.shape == (360, 480, 3) and SCENE_FRAME_STEP == 5


@pytest.mark.parametrize(("data", "extra", "message"), [
    ("synthetic://shapes?fps=3", [], "unknown option(s) fps"),
    ("synthetic://cubes", [], "unknown synthetic scene 'cubes'"),
    ("synthetic://shapes?seed=1", ["--field"], "--field scores a folder written by `edge "
                                               "collect`, not synthetic://shapes?seed=1"),
])
def test_edge_eval_refuses_bad_synthetic_data(demo_model, data, extra, message):
    model = [] if extra else [str(demo_model)]
    result = subprocess.run([sys.executable, "-m", "edge", "eval", *model, "--data", data,
                             *extra], capture_output=True, text=True, timeout=120)
    assert result.returncode == 2 and message in result.stderr, result.stderr
    assert "Traceback" not in result.stderr


def test_edge_eval_keeps_another_models_drift_profile_and_models(demo_model, tmp_path):
    """--drift-reference naming another model's profile, or a model (read as "the reference
    model"), wrote the new profile over it."""
    from calibration.drift_reference import drift_reference_from_images
    from edge.synthetic.scene import ShapeScene

    shapes = tmp_path / "shapes.onnx"
    shapes.write_bytes(demo_model.read_bytes())
    profile = tmp_path / "shapes.onnx.drift.json"
    scene = ShapeScene(seed=1)
    drift_reference_from_images(shapes, (scene.next()[0] for _ in range(4)), "scene",
                                threads=1).save(profile)
    kept = {path: path.read_bytes() for path in (shapes, profile)}
    for target, message in ((profile, f"is {shapes}'s own profile path"),
                            (shapes, "names a model or a file that is no drift profile")):
        result = subprocess.run([sys.executable, "-m", "edge", "eval", str(demo_model),
                                 "--data", "synthetic://shapes", "--drift-reference",
                                 str(target)], capture_output=True, text=True, timeout=120)
        assert result.returncode == 2, result.stderr
        assert f"--drift-reference {target} {message}" in result.stderr
    assert {path: path.read_bytes() for path in kept} == kept


def test_edge_eval_refuses_a_synthetic_scene_for_another_model(tmp_path):
    """The scene holds the demo's four shapes: a model of other classes is not scored on it
    (its class ids would be paired with the wrong names)."""
    from edge.spec import InputSpec, ModelSpec
    from tests.onnx_graphs import constant_head_model

    spec = ModelSpec(task="detect", labels=["cat", "dog"], head="anchor_free", output="output0",
                     input=InputSpec(name="images", width=64, height=64))
    model = constant_head_model(tmp_path / "m.onnx", (1, 6, 84), spec)
    result = subprocess.run([sys.executable, "-m", "edge", "eval", str(model), "--data",
                             "synthetic://shapes"], capture_output=True, text=True, timeout=120)
    assert result.returncode == 2, result.stderr
    assert "the synthetic scene holds circle, square, triangle, star" in result.stderr


def test_classifier_accuracy_per_class_names_what_each_class_was_taken_for(capsys):
    from types import SimpleNamespace

    from calibration.evaluate import Accuracy, _TopOne
    from edge.cli.workstation import _print_accuracy
    from edge.preprocess import LetterboxGeometry
    from edge.spec import InputSpec, ModelSpec

    spec = ModelSpec(task="classify", labels=("cat", "dog", "fox"), head="logits",
                     output="out", input=InputSpec(name="in", width=8, height=8))
    scorer = _TopOne(spec)
    geometry = LetterboxGeometry.fit(8, 8, 8, 8)
    # (true class, predicted class): cat 2 of 4 right (once a dog, once a fox), dog 1 of 1,
    # fox 0 of 2 (both taken for dogs)
    for true, predicted in ((0, 0), (0, 0), (0, 1), (0, 2), (1, 1), (2, 1), (2, 1)):
        scores = np.full(3, -4.0, np.float32)
        scores[predicted] = 4.0
        scorer.add(scores, geometry, SimpleNamespace(class_ids=np.array([true])))
    accuracy = scorer.accuracy(7)
    assert accuracy.top1 == pytest.approx(3 / 7, abs=1e-4)
    assert accuracy.per_class_images == {"cat": 4, "dog": 1, "fox": 2}
    assert accuracy.per_class_top1 == {"cat": 0.5, "dog": 1.0, "fox": 0.0}
    assert accuracy.per_class_mistaken_for == {"cat": {"dog": 1, "fox": 1}, "fox": {"dog": 2}}
    assert accuracy.as_dict()["per_class_mistaken_for"]["fox"] == {"dog": 2}  # --json
    _print_accuracy(accuracy, "class folders")
    shown = capsys.readouterr().out.splitlines()
    assert shown[0] == "top-1 0.4286 over 7 images"
    assert shown[1].split() == ["cat", "top-1", "0.5000", "(2", "of", "4", "images;", "taken",
                                "for", "dog", "(1),", "fox", "(1))"]
    assert shown[2].split() == ["dog", "top-1", "1.0000", "(1", "of", "1", "image)"]
    assert shown[3].split() == ["fox", "top-1", "0.0000", "(0", "of", "2", "images;", "taken",
                                "for", "dog", "(2))"]

    many = Accuracy("classify", 13, top1=2 / 13, per_class_images={"a": 13},
                    per_class_top1={"a": 0.1538}, per_class_mistaken_for={
                        "a": {"b": 4, "c": 3, "d": 2, "e": 1, "f": 1}})
    _print_accuracy(many, "class folders")
    # a user check: "..." hid two images, so the counts shown did not add up to 13
    assert ("(2 of 13 images; taken for b (4), c (3), d (2), 2 other classes (2))"
            in capsys.readouterr().out)


def test_a_coco_file_read_for_a_classifier_gives_each_image_one_category(tmp_path, caplog):
    """An image without an annotation ended a classifier's `edge eval` in an IndexError (top-1
    took every image's first class); one with boxes of several categories was scored as its
    first. Now the first is left out, said, and the second refused, named."""
    import cv2

    for name in ("a.png", "b.png", "c.png"):
        cv2.imwrite(str(tmp_path / name), np.zeros((40, 40, 3), np.uint8))
    images = [{"id": i, "file_name": n, "width": 40, "height": 40}
              for i, n in enumerate(("a.png", "b.png", "c.png"), start=1)]
    annotations = [{"id": 1, "image_id": 1, "category_id": 1, "bbox": [0, 0, 10, 10]},
                   {"id": 2, "image_id": 3, "category_id": 2, "bbox": [0, 0, 40, 40]}]
    categories = [{"id": 1, "name": "dark"}, {"id": 2, "name": "bright"}]
    path = tmp_path / "classes.json"
    path.write_text(json.dumps({"images": images, "annotations": annotations,
                                "categories": categories}))
    dataset = dataset_from(path, ("dark", "bright"), "classify")
    assert [(item.path.name, item.class_ids.tolist()) for item in dataset.items] == [
        ("a.png", [0]), ("c.png", [1])]
    assert "1 image without an annotation, so without a category, not scored: b.png" in \
        caplog.text
    annotations.append({"id": 3, "image_id": 3, "category_id": 1, "bbox": [0, 0, 5, 5]})
    path.write_text(json.dumps({"images": images, "annotations": annotations,
                                "categories": categories}))
    with pytest.raises(InputError, match=re.escape(
            "image c.png has annotations of 2 categories (bright, dark); a classifier is scored "
            "on one category an image")):
        dataset_from(path, ("dark", "bright"), "classify")


def test_a_classifiers_unscored_labels_and_unreadable_images_are_named(tmp_path, caplog,
                                                                        capsys):
    """A user check: an empty class folder and an unreadable image were warned about in the
    log only; the accuracy (`--json`, the report) said nothing of either, and the warning
    named the image without its class folder."""
    import cv2

    from calibration.evaluate import evaluate
    from converters.convert import ConvertOptions, convert
    from edge.cli.workstation import _print_accuracy
    from tests.converters.tiny_models import TinyClassifier, export_onnx, seeded

    source = export_onnx(seeded(TinyClassifier(3)), tmp_path / "c.onnx", 32, 32)
    convert(source, ConvertOptions(labels=("dark", "bright", "grey"))).write(
        tmp_path / "cls.onnx")
    for label in ("dark", "bright", "grey"):
        (tmp_path / "data" / label).mkdir(parents=True)
    for i in range(2):
        cv2.imwrite(str(tmp_path / "data" / "dark" / f"{i}.png"), np.full((40, 40, 3), 20,
                                                                          np.uint8))
    (tmp_path / "data" / "dark" / "notes.jpg").write_text("not an image")
    cv2.imwrite(str(tmp_path / "data" / "bright" / "0.png"), np.full((40, 40, 3), 230,
                                                                     np.uint8))
    dataset = dataset_from(tmp_path / "data", ("dark", "bright", "grey"), "classify")
    with caplog.at_level(logging.WARNING):
        accuracy = evaluate(tmp_path / "cls.onnx", dataset)
    assert accuracy.images == 3 and sum(accuracy.per_class_images.values()) == 3
    assert accuracy.unscored_classes == ["grey"]
    assert accuracy.unreadable_images == ["dark/notes.jpg"]
    assert "dark/notes.jpg (truncated, damaged or not an image)" in caplog.text
    assert accuracy.as_dict()["unscored_classes"] == ["grey"]  # --json
    _print_accuracy(accuracy, "class folders")
    shown = capsys.readouterr().out
    assert "  not scored, no image in the data: 1 label: grey\n" in shown
    assert "  not scored, unreadable: 1 image: dark/notes.jpg\n" in shown


def _coco_of(folder: Path, labels: Path, size: tuple[int, int]) -> dict:
    """A COCO file for the images in `folder` from the YOLO labels in `labels`, its entries
    giving `size` and its boxes in the pixels of an image of that size."""
    coco: dict = {"images": [], "annotations": [],
                  "categories": [{"id": i, "name": n} for i, n in enumerate(SHAPES)]}
    width, height = size
    for number, image in enumerate(sorted(folder.iterdir()), 1):
        coco["images"].append({"id": number, "file_name": image.name, "width": size[0],
                               "height": size[1]})
        for line in (labels / f"{image.stem}.txt").read_text().split("\n"):
            if line:
                class_id, cx, cy, w, h = (float(v) for v in line.split())
                coco["annotations"].append({
                    "id": len(coco["annotations"]) + 1, "image_id": number,
                    "category_id": int(class_id), "bbox": [(cx - w / 2) * width,
                                                           (cy - h / 2) * height,
                                                           w * width, h * height]})
    return coco


def test_coco_images_resized_after_labelling_score_as_if_relabelled(demo_model, tmp_path,
                                                                     caplog):
    """A user check: a COCO file whose entries give the size the images were labelled at,
    1920x1080 say, beside images since resized to 1280x720, was scored with the boxes where
    they lay on the larger image. The boxes are scaled to the image, as Ultralytics' converter
    does (it divides them by the entry's size), and said; the score equals that of the same
    boxes converted by hand."""
    from calibration.evaluate import evaluate

    write_yolo_dataset(tmp_path / "full", frames=8, seed=6)
    (tmp_path / "images").mkdir()
    for image in sorted((tmp_path / "full" / "images").iterdir()):
        full = cv2.imread(str(image))
        cv2.imwrite(str(tmp_path / "images" / image.name),
                    cv2.resize(full, (full.shape[1] // 2, full.shape[0] // 2),
                               interpolation=cv2.INTER_AREA))
    height, width = full.shape[:2]
    labels = tmp_path / "full" / "labels"
    (tmp_path / "as_labelled.json").write_text(json.dumps(
        _coco_of(tmp_path / "images", labels, (width, height))))
    (tmp_path / "by_hand.json").write_text(json.dumps(
        _coco_of(tmp_path / "images", labels, (width // 2, height // 2))))
    with caplog.at_level(logging.WARNING):
        resized = evaluate(demo_model, dataset_from(tmp_path / "as_labelled.json", SHAPES,
                                                    "detect")).as_dict()
    by_hand = evaluate(demo_model, dataset_from(tmp_path / "by_hand.json", SHAPES,
                                                "detect")).as_dict()
    assert by_hand["map50"] > 0.5  # the detector still finds the shapes at half size
    assert {k: v for k, v in resized.items() if "ms" not in k} == \
        {k: v for k, v in by_hand.items() if "ms" not in k}
    assert (f"8 images of another size than their COCO entries give (images/000001.png: "
            f"{width // 2}x{height // 2}, its entry {width}x{height}; images/000002.png") \
        in caplog.text
    assert "their boxes are scaled to the image, as for images resized after labelling" in \
        caplog.text

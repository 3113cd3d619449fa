"""Field accuracy: recorded predictions vs corrected labels, Wilson intervals, ratings, CLI."""

from __future__ import annotations

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
from scipy.stats import binomtest

from calibration.datasets import dataset_from
from calibration.field import audit_words, field_accuracy, rated_precision, wilson
from edge.collect.dataset import CollectedDataset, Sample, yolo_lines
from edge.drift import reference_for_model
from edge.errors import InputError
from edge.synthetic.dataset import write_yolo_dataset
from edge.synthetic.scene import SHAPE_LABELS

LABELS = list(SHAPE_LABELS)


@pytest.mark.parametrize(("successes", "trials"), [(8, 10), (0, 5), (5, 5), (37, 120), (1, 1000)])
def test_wilson_matches_scipy(successes, trials):
    reference = binomtest(successes, trials).proportion_ci(0.95, method="wilson")
    low, high = wilson(successes, trials)
    assert (low, high) == pytest.approx((reference.low, reference.high), abs=1e-6)


def make_collected(root: Path) -> Path:
    """Three frames; predictions as the device recorded them, then 'corrected' YOLO labels.

    frame 1 (day 1): circle predicted where a circle is                -> TP
    frame 2 (day 1): square predicted on empty ground; a star missed   -> FP, FN
    frame 3 (day 2, audit): triangle right, circle wrong               -> TP, FP
    """
    dataset = CollectedDataset(root, duplicate_distance=-1)
    image = np.zeros((100, 200, 3), np.uint8)
    frames = [
        (1, "2026-11-28T10:00:00Z", ["interval"], [(0, 0.9, [10, 10, 50, 50])]),
        (2, "2026-11-28T11:00:00Z", ["uncertain"], [(1, 0.4, [100, 20, 140, 60])]),
        (3, "2026-11-29T09:00:00Z", ["audit"], [(2, 0.8, [20, 40, 60, 90]),
                                                 (0, 0.7, [150, 10, 190, 50])]),
    ]
    for frame_id, time, reasons, predictions in frames:
        image[:] = frame_id * 40  # distinct pictures
        ok, jpeg = cv2.imencode(".jpg", image)
        assert ok
        meta = {"frame_id": frame_id, "ts": float(frame_id), "time": time, "model": "shapes",
                "width": 200, "height": 100, "reasons": reasons, "labels": LABELS,
                "predictions": [{"label": LABELS[c], "class_id": c, "score": s, "box": b}
                                for c, s, b in predictions]}
        assert dataset.add(Sample("dev1", "gate", jpeg.tobytes(), meta))
    dataset.export()
    corrected = {1: ["0 0.15 0.3 0.2 0.4"],
                 2: ["3 0.5 0.5 0.1 0.2"],
                 3: ["2 0.2 0.65 0.2 0.5"]}
    for frame_id, lines in corrected.items():
        (root / "labels" / f"dev1_gate_{frame_id:08d}.txt").write_text("\n".join(lines) + "\n")
    return root


def test_field_accuracy_per_day_and_audit_interval(tmp_path):
    report = field_accuracy(make_collected(tmp_path / "c"))
    assert report.images == 3
    assert (report.overall.precision, report.overall.recall) == (0.5, pytest.approx(0.6667))
    day1, day2 = report.per_day["2026-11-28"], report.per_day["2026-11-29"]
    assert (day1.precision, day1.recall, day1.images) == (0.5, 0.5, 2)
    assert (day2.precision, day2.recall, day2.images) == (0.5, 1.0, 1)
    # what each share is of (a user check: the report gave no counts beside its figures)
    assert (report.overall.objects, report.overall.detections) == (3, 4)
    assert (day1.objects, day1.detections, day2.objects, day2.detections) == (2, 2, 1, 2)
    assert report.overall.per_class_objects == {"circle": 1, "square": 0, "triangle": 1,
                                                "star": 1}
    assert report.overall.per_class_detections == {"circle": 2, "square": 1, "triangle": 1,
                                                   "star": 0}
    # every class seen, None where undefined (a user check: a class never predicted read
    # "precision 0.0000" on the terminal, nan in the report, and was left out of --json)
    assert report.overall.per_class_precision == {"circle": 0.5, "square": 0.0, "triangle": 1.0,
                                                  "star": None}
    assert report.overall.per_class_recall == {"circle": 1.0, "square": None, "triangle": 1.0,
                                               "star": 0.0}
    assert report.overall.per_class_ap50["square"] is None
    assert report.overall.per_class_ap50["star"] == 0.0
    audit = report.audit["precision"]
    assert (audit.successes, audit.trials, audit.value) == (1, 2, 0.5)
    assert (audit.low, audit.high) == pytest.approx(wilson(1, 2), abs=1e-4)
    assert report.audit["recall"].trials == 1
    assert (report.audit_collected, report.audit_scored) == (1, 1)
    # frame 1's corrected label is the prediction as recorded; 2 and 3 were changed
    assert (report.unchanged, report.missing_images, report.unlabelled) == (1, 0, 0)
    by_manifest = field_accuracy(tmp_path / "c" / "manifest.jsonl")  # names its folder too
    assert by_manifest.overall == report.overall
    with pytest.raises(InputError, match=r"classes\.txt is a file; field accuracy reads"):
        field_accuracy(tmp_path / "c" / "classes.txt")


def test_corrected_coco_labels_saved_outside_the_folder_are_found(tmp_path):
    """A labelling tool's COCO export saved beside the folder, as people do: its file names
    were taken relative to the file, "156 images not there" and then "no usable labelled
    images"."""
    collected = make_collected(tmp_path / "c")
    truth = dataset_from(collected, SHAPE_LABELS, "detect")
    images = [{"id": n, "file_name": f"images/{item.path.name}", "width": 640, "height": 480}
              for n, item in enumerate(truth.items)]
    annotations = [{"id": len(images) * 100 + k, "image_id": n, "category_id": int(label) + 1,
                    "bbox": [float(x1), float(y1), float(x2 - x1), float(y2 - y1)]}
                   for n, item in enumerate(truth.items)
                   for k, ((x1, y1, x2, y2), label) in enumerate(
                       zip(item.boxes, item.class_ids, strict=True))]
    categories = [{"id": i + 1, "name": name} for i, name in enumerate(SHAPE_LABELS)]
    export = tmp_path / "exports" / "corrected.json"
    export.parent.mkdir()
    export.write_text(json.dumps({"images": images, "annotations": annotations,
                                  "categories": categories}))
    assert field_accuracy(collected, export).overall == field_accuracy(collected).overall


@pytest.mark.parametrize("layout", ["labels", "flat", "labels/train", "obj_train_data"])
def test_corrected_label_files_alone_are_paired_with_the_collected_images(tmp_path, layout):
    """A user check: a folder of corrected YOLO label files without the images (a labelling
    tool's export) was refused: "neither a YOLO dataset ... nor a COCO JSON file", or, as
    labels/ with a classes.txt, "holds no usable labelled images". Its files are paired by
    name with the collected images; an image without one was not corrected, so is left out
    (not scored as an empty frame), and the audit counts say how many were scored."""
    collected = make_collected(tmp_path / "c")
    corrected = tmp_path / "corrected"
    folder = corrected if layout == "flat" else corrected / layout  # as exporters nest them
    folder.mkdir(parents=True)
    # frames 1 and 3 corrected: the square on frame 2's empty ground is not counted
    for frame_id in (1, 3):
        name = f"dev1_gate_{frame_id:08d}.txt"
        shutil.copy(collected / "labels" / name, folder / name)
    (corrected / "classes.txt").write_text("\n".join(LABELS) + "\n")
    report = field_accuracy(collected, corrected)
    assert (report.images, report.unlabelled) == (2, 1)
    # frame 1 TP; frame 3 TP + FP (circle wrong); frame 2's FP and missed star left out
    assert (report.overall.precision, report.overall.recall) == (pytest.approx(0.6667), 1.0)
    assert (report.audit_collected, report.audit_scored) == (1, 1)
    # a folder whose label files name no collected image is said so, not scored as empty
    for path in folder.glob("dev1_*.txt"):
        path.rename(path.with_name("other_" + path.name))
    with pytest.raises(InputError, match=r"none of the 3 images in .*manifest\.jsonl has "
                                         r"corrected labels in .*corrected"):
        field_accuracy(collected, corrected)


@pytest.mark.parametrize("content", [[], ["classes.txt"]])
def test_a_labels_folder_without_label_files_says_so(tmp_path, content):
    """A user check: an empty --labels folder read as "neither a YOLO dataset (images/ and
    labels/ folders...) nor a COCO JSON file", as if images were needed beside the labels."""
    collected = make_collected(tmp_path / "c")
    corrected = tmp_path / "corrected"
    corrected.mkdir()
    for name in content:
        (corrected / name).write_text("\n".join(LABELS) + "\n")
    with pytest.raises(InputError, match=r"--labels .*corrected holds no label files; give the "
                                         r"corrected labels: a folder of YOLO label files"):
        field_accuracy(collected, corrected)


def test_a_listed_image_deleted_by_hand_is_left_out_as_gone_not_as_unlabelled(tmp_path):
    """A user check: with an image removed from images/ and its label file still there, the
    summary said "1 collected image not among the corrected labels": the other way round."""
    collected = make_collected(tmp_path / "c")
    (collected / "images" / "dev1_gate_00000002.jpg").unlink()
    report = field_accuracy(collected)
    assert (report.images, report.missing_images, report.unlabelled) == (2, 1, 0)
    shown = edge("eval", "--field", "--data", str(collected))
    assert shown.returncode == 0, shown.stderr
    first = shown.stdout.splitlines()[0]
    assert first.endswith("; 1 listed image gone from images/, left out)"), first
    assert "not among the corrected labels" not in shown.stdout
    # a gone audit image is no audit image the scores lack (a user check: "68 of the 92")
    (collected / "images" / "dev1_gate_00000003.jpg").unlink()
    report = field_accuracy(collected)
    assert (report.images, report.missing_images, report.audit_collected) == (1, 2, 0)


def test_an_image_put_into_images_by_hand_is_neither_scored_nor_said_to_be(tmp_path, caplog):
    """A user check: a foreign image in images/ (kept, never listed, as the README says) was
    warned about as "1 of the 4 images ... has no label file: scored as images without
    objects", though the field report left it out."""
    collected = make_collected(tmp_path / "c")
    shutil.copy(collected / "images" / "dev1_gate_00000002.jpg",
                collected / "images" / "foreign.jpg")
    with caplog.at_level(logging.WARNING):
        report = field_accuracy(collected)
    assert (report.images, report.unlabelled, report.missing_images) == (3, 0, 0)
    assert "no label file" not in caplog.text, caplog.text


def test_labels_nobody_corrected_are_counted_and_warned_about(tmp_path, caplog):
    """A user check: right after `edge collect`, `edge eval --field` gave precision and
    recall 1.0 "with corrected labels", the device's pre-annotations scored against
    themselves, and nothing said so."""
    collected = make_collected(tmp_path / "c")
    for row in map(json.loads, (collected / "manifest.jsonl").read_text().splitlines()):
        (collected / "labels" / f"{row['id']}.txt").write_text(yolo_lines(row))
    with caplog.at_level("WARNING", logger="calibration.field"):
        report = field_accuracy(collected)
    assert (report.overall.precision, report.overall.recall, report.unchanged) == (1.0, 1.0, 3)
    assert ("all 3 images scored still hold the device's own detections as their labels: if "
            "nobody has corrected them yet, these figures score the model against itself"
            in caplog.text)
    shown = edge("eval", "--field", "--data", str(collected))
    assert ("  pre-annotations: 3 of the 3 scored images unchanged (labels as the device "
            "detected them: not corrected, or the model was right)") in shown.stdout.splitlines()
    # one box moved by 2 px is a correction
    label = collected / "labels" / "dev1_gate_00000001.txt"
    class_id, cx, *rest = label.read_text().split()
    label.write_text(" ".join([class_id, f"{float(cx) + 2 / 200:.6f}", *rest]) + "\n")
    caplog.clear()
    assert field_accuracy(collected).unchanged == 2 and "score the model" not in caplog.text


def test_a_labels_path_that_does_not_exist_is_named_as_labels(tmp_path):
    collected = make_collected(tmp_path / "c")
    with pytest.raises(InputError, match=r"^--labels .*nolabels does not exist; give the "
                                         r"corrected labels: a folder of YOLO label files"):
        field_accuracy(collected, tmp_path / "nolabels")


def test_audit_share_counts_the_collected_audit_images(tmp_path):
    """A user check: with labels for some images only, the audit line read "share of the
    images 0.0079 [0.0014, 0.0436]", the scored audit images over every collected image."""
    collected = make_collected(tmp_path / "c")
    (collected / "labels" / "dev1_gate_00000003.txt").unlink()  # the audit frame: now empty
    corrected = tmp_path / "corrected"
    corrected.mkdir()
    shutil.copy(collected / "labels" / "dev1_gate_00000001.txt", corrected)
    report = field_accuracy(collected, corrected)
    assert (report.images, report.audit_collected, report.audit_scored) == (1, 1, 0)
    assert report.audit == {}
    shown = edge("eval", "--field", "--data", str(collected), "--labels", str(corrected))
    assert shown.returncode == 0, shown.stderr
    assert ("  audit sample: 1 of the 3 collected images, 0 of them with labels "
            "(scored)") in shown.stdout.splitlines()
    assert "share of the images" not in shown.stdout


def test_a_dataset_without_audit_samples_says_so(tmp_path):
    """A user check: with no audit sample collected, the audit line was left out."""
    collected = make_collected(tmp_path / "c")
    manifest = collected / "manifest.jsonl"
    manifest.write_text(manifest.read_text().replace('"audit"', '"interval"'))
    report = field_accuracy(collected)
    assert (report.audit_collected, report.audit) == (0, {})
    assert audit_words(report) == ("none of the 3 collected images (the devices drew none: "
                                   "[sampling] audit_rate)")


def test_an_empty_manifest_is_said_to_list_no_images(tmp_path):
    collected = make_collected(tmp_path / "c")
    (collected / "manifest.jsonl").write_text("")
    with pytest.raises(InputError, match=r"manifest\.jsonl lists no images: nothing was "
                                         r"collected into it yet"):
        field_accuracy(collected)


def test_ratings_name_images_by_id_or_by_file_name(tmp_path, caplog):
    """A user check: rating image files (`x.jpg`, `images/x.jpg`) read as unknown ids, and
    the message did not say what an id is."""
    ratings = tmp_path / "ratings.csv"
    ratings.write_text("image_id,verdict\nimages/a.jpg,match\nb.jpg,miss\nc,match\n"
                       "ghost.jpg,miss\n")
    estimate, unknown = rated_precision(ratings, {"a", "b", "c"})
    assert (estimate.successes, estimate.trials) == (2, 3) and unknown == ["ghost.jpg"]
    assert ("(an id is the manifest's: the image's file name without .jpg, e.g. a)"
            in caplog.text)
    ratings.write_text("image_id,verdict\nghost,match\n")
    with pytest.raises(InputError, match=r"each named by its manifest id \(the image's file "
                                         r"name without \.jpg, e\.g\. a\)"):
        rated_precision(ratings, {"a", "b"})


def test_ratings_give_a_precision_with_its_interval_and_list_unknown_ids(tmp_path, caplog):
    ratings = tmp_path / "ratings.csv"
    ratings.write_text("image_id,verdict\na,match\nb,miss\nc,MATCH\nghost,match\nd,match\n")
    estimate, unknown = rated_precision(ratings, {"a", "b", "c", "d"})
    assert (estimate.successes, estimate.trials, estimate.value) == (3, 4, 0.75)
    assert unknown == ["ghost"]
    assert "ghost" in caplog.text
    ratings.write_text("image_id,verdict\na,match\na,yes\nb,miss\n")  # a rated twice alike
    caplog.clear()
    estimate, _ = rated_precision(ratings, {"a", "b"})
    assert (estimate.successes, estimate.trials) == (1, 2)
    # a user check: 3 rows read as "2 ratings" without a word
    assert f"{ratings}: 1 image rated again alike, counted once: a (lines 2 and 3)" in \
        caplog.text
    # a user check: Excel's "CSV UTF-8" starts with a byte-order mark, and a space may follow
    # the comma; the header read "found \ufeffimage_id, verdict", the same on a terminal
    ratings.write_bytes(b"\xef\xbb\xbfimage_id, verdict\r\na, match\r\nb, miss\r\n")
    estimate, _ = rated_precision(ratings, {"a", "b"})
    assert (estimate.successes, estimate.trials) == (1, 2)


@pytest.mark.parametrize(("text", "expected"), [
    ("image,rating\na,match\n", r"expected a header line of the columns image_id and verdict"),
    ("image_id,verdict\na,perhaps\n", r":2: verdict 'perhaps' is not match or miss; "
                                      r"correct/wrong, yes/no, true/false and 1/0 alike"),
    ("image_id,verdict\n", r"rates no image of the dataset \(it has no rows\)"),
    ("", r"expected a header line .*; the file is empty"),
    # a user check: no header (its first row read as one), or a header alone, was "no rows"
    ("a,match\n", r"image_id and verdict \(match or miss; .*\); found a, match"),
    ("id,result\n", r"; found id, result"),
    ("image_id,verdict\nghost,match\n", r"all 1 rated ids are unknown"),
    ("image_id,verdict\na,match\nb\n", r"r\.csv:3: expected image_id,verdict \(match or miss;"),
    # a user check: a row of too many fields was taken, its extra field dropped
    ("image_id,verdict\na,match,extra\n", r"r\.csv:2: expected image_id,verdict \(.*\); found "
                                         r"3 fields, the header has 2"),
    ("image_id,verdict\na,match\na,miss\n", r"r\.csv:3: a is rated miss here and match on line "
                                         r"2; keep the one that is right"),
    (b"\xff\xd8\xff\xe0 not text", r"is not a CSV file"),
])
def test_bad_ratings(tmp_path, text, expected):
    """Ratings that rate nothing are an error, not a precision of nan from 0 ratings."""
    path = tmp_path / "r.csv"
    path.write_bytes(text if isinstance(text, bytes) else text.encode())
    with pytest.raises(InputError, match=expected):
        rated_precision(path, {"a"})


def test_field_needs_a_collected_folder(tmp_path):
    with pytest.raises(InputError, match=r"has no manifest\.jsonl; .* written by `edge collect`"):
        field_accuracy(tmp_path)
    with pytest.raises(InputError, match=r"nosuch does not exist; field accuracy reads a folder"):
        field_accuracy(tmp_path / "nosuch")


def edge(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "edge", *args], capture_output=True, text=True,
                          timeout=120)


def test_eval_field_cli_writes_the_report(tmp_path):
    collected = make_collected(tmp_path / "c")
    ratings = tmp_path / "ratings.csv"
    ratings.write_text("image_id,verdict\ndev1_gate_00000001,match\nnope,miss\n")
    result = edge("eval", "--field", "--data", str(collected), "--ratings", str(ratings),
                  "--report", str(tmp_path / "report"), "--json")
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout.splitlines()[-1])
    assert summary["overall"]["precision"] == 0.5 and summary["unknown_rated"] == ["nope"]
    assert summary["ratings"]["trials"] == 1
    assert summary["overall"]["per_class_precision"]["star"] is None  # never predicted
    index = (tmp_path / "report" / "index.md").read_text()
    assert "| star | n/a | 0.0000 | 0.0000 | 1 | 0 |" in index and "nan" not in index
    assert "| all | 0.5000 | 0.6667 | " in index and " | 3 | 3 | 4 |" in index
    assert "| 2026-11-28 | 0.5000 | 0.5000 | " in index and " | 2 | 2 | 2 |" in index
    again = edge("eval", "--field", "--data", str(collected), "--report", str(tmp_path / "report"))
    assert again.returncode == 0, again.stderr  # an earlier report is written over
    # a user check: a folder's own index.md was replaced without a word
    notes = tmp_path / "notes"
    notes.mkdir()
    (notes / "index.md").write_text("# my notes\n")
    refused = edge("eval", "--field", "--data", str(collected), "--report", str(notes))
    assert refused.returncode == 2 and "Traceback" not in refused.stderr
    assert (f"--report {notes} holds an index.md that does not start '# Field accuracy' as "
            "an earlier report of this kind does, and writing the report would replace it; "
            "name another folder, or move that file away") in refused.stderr
    assert (notes / "index.md").read_text() == "# my notes\n"
    assert [p.name for p in notes.iterdir()] == ["index.md"]
    assert "2026-11-29" in index and "accuracy_over_time.png" in index
    assert (tmp_path / "report" / "accuracy_over_time.png").stat().st_size > 1000
    with_model = edge("eval", "model.onnx", "--field", "--data", str(collected))
    assert with_model.returncode == 2
    assert "--field scores the predictions a device recorded, not a model: leave model.onnx " \
           "out" in with_model.stderr
    missing = edge("eval", "--data", str(collected))
    assert missing.returncode == 2 and "edge eval needs MODEL" in missing.stderr
    # eval has no --exclude: only its own greedy option is named
    assert ("(give it before --drift-reference, which takes what follows as its value)"
            in missing.stderr and "--exclude" not in missing.stderr)


def test_eval_writes_the_drift_reference_next_to_the_model(tmp_path, demo_model):
    model = tmp_path / "shapes.onnx"
    shutil.copy(demo_model, model)
    data = tmp_path / "val"
    write_yolo_dataset(data, frames=12, seed=3)
    result = edge("eval", str(model), "--data", str(data), "--drift-reference", "--json")
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout.splitlines()[-1])
    assert summary["drift_reference"] == str(tmp_path / "shapes.onnx.drift.json")
    reference = reference_for_model(Path(summary["drift_reference"]), model)
    assert reference.stats.frames == 12 and reference.labels == tuple(LABELS)
    # said when it is written, with the bound the daemon warns at (a user check: a 100-frame
    # profile was written silently, then warned about at the daemon's start)
    assert ("the drift reference comes from 12 frames of " in result.stderr
            and "with fewer than 200 frames" in result.stderr
            and "give it more (a larger folder or video, or a higher --max-images"
            in result.stderr), result.stderr


def test_calibrate_writes_the_drift_reference_of_its_output(tmp_path, demo_model):
    output = tmp_path / "int8.onnx"
    result = edge("calibrate", str(demo_model), "--images", "synthetic://shapes?seed=3",
                  "--max-images", "8", "--min-images", "8", "--profile", "cpu", "-o",
                  str(output), "--drift-reference")
    assert result.returncode == 0, result.stderr
    path = tmp_path / "int8.onnx.drift.json"
    assert f"wrote drift reference {path}" in result.stdout.splitlines()
    # it runs the INT8 model again: how long writing took is said apart from the calibration
    assert re.search(r"^outputs written in \d+\.\d s \(with the drift reference\)$",
                     result.stdout, re.MULTILINE), result.stdout
    assert reference_for_model(path, output).stats.frames == 8  # the INT8 model's, not FP32's


def test_cli_prints_per_class_scores_and_checks_the_report_dependency_first(tmp_path):
    collected = make_collected(tmp_path / "c")
    shown = subprocess.run([sys.executable, "-m", "edge", "eval", "--field", "--data",
                            str(collected)], capture_output=True, text=True, timeout=120)
    assert shown.returncode == 0, shown.stderr
    assert "  circle       precision 0.5000  recall 1.0000" in shown.stdout
    assert "  star         precision n/a  recall 0.0000  AP@0.5 0.0000" in shown.stdout
    assert "  square       precision 0.0000  recall n/a  AP@0.5 n/a  (0 objects, 1 detection)" \
        in shown.stdout
    assert "(3 objects, 4 detections)" in shown.stdout.splitlines()[0]
    assert "(1 image, 1 object, 2 detections)" in shown.stdout
    assert ("audit sample precision 0.5000 [0.0945, 0.9055] (Wilson 95%; 1 of 2 detections)"
            in shown.stdout)
    assert "audit sample recall 1.0000 [0.2065, 1.0000] (Wilson 95%; 1 of 1 object)" in shown.stdout
    code = ("import sys; sys.modules['matplotlib'] = None\nfrom edge.cli import main\n"
            "sys.exit(main(sys.argv[1:]))")
    report = tmp_path / "report"
    refused = subprocess.run([sys.executable, "-c", code, "eval", "--field", "--data",
                              str(collected), "--report", str(report)],
                             capture_output=True, text=True, timeout=120)
    assert refused.returncode == 2 and "pip install" in refused.stderr
    # a user check: the command given was PyTorch's and the convert extra's, for a chart
    assert ("for the field-accuracy report alone, install it with: "
            f"{sys.executable} -m pip install 'matplotlib>=3.7'; for every command of the "
            "'convert' extra") in refused.stderr
    assert "field accuracy over" not in refused.stdout and not report.exists()


def test_the_report_s_matplotlib_requirement_is_the_convert_extra_s():
    if sys.version_info >= (3, 11):
        import tomllib
    else:
        import tomli as tomllib

    from calibration.plotting import MATPLOTLIB_REQUIREMENT

    project = tomllib.loads((Path(__file__).parents[2] / "pyproject.toml").read_text())
    assert f"matplotlib{MATPLOTLIB_REQUIREMENT}" in project["project"]["optional-dependencies"][
        "convert"]


def test_a_share_of_nothing_is_n_a_everywhere_and_json_stays_json(tmp_path):
    """A user check: with 0 detections and 0 objects precision read 1.0000 overall, 0.0000 where
    objects were missed, n/a per class; the audit's 0-of-0 share was NaN in --json (not
    JSON) and `nan` on the terminal and in the report."""
    collected = make_collected(tmp_path / "c")
    # frame 3 (the audit frame): corrected to hold nothing, and its two detections removed
    (collected / "labels" / "dev1_gate_00000003.txt").write_text("")
    manifest = collected / "manifest.jsonl"
    rows = [json.loads(line) for line in manifest.read_text().splitlines()]
    rows[2]["objects"] = []
    manifest.write_text("".join(json.dumps(row) + "\n" for row in rows))
    report = field_accuracy(collected)
    day2 = report.per_day["2026-11-29"]
    assert (day2.precision, day2.recall, day2.map50, day2.objects, day2.detections) == (
        None, None, None, 0, 0)
    assert report.audit["precision"].value is None and report.audit["recall"].value is None
    result = edge("eval", "--field", "--data", str(collected), "--json", "--report",
                  str(tmp_path / "report"))
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout.splitlines()[-1], parse_constant=pytest.fail)
    assert summary["per_day"]["2026-11-29"]["precision"] is None
    assert summary["audit"]["precision"]["value"] is None
    index = (tmp_path / "report" / "index.md").read_text()
    assert "| 2026-11-29 | n/a | n/a | n/a | 1 | 0 | 0 |" in index and "nan" not in index
    assert "- precision: n/a [0.0000, 1.0000] (0/0)" in index
    shown = edge("eval", "--field", "--data", str(collected)).stdout
    assert "  2026-11-29  precision n/a  recall n/a  AP@0.5 n/a  (1 image, 0 objects, " \
        "0 detections)" in shown
    assert "audit sample precision n/a [0.0000, 1.0000] (Wilson 95%; 0 of 0 detections)" in shown
    assert "nan" not in shown

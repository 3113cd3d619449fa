"""`edge collect`: the dataset writer on its own, then the daemon -> Mosquitto -> collector."""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

from calibration.datasets import dataset_from
from calibration.field import field_accuracy
from edge.collect import Collector
from edge.collect.dataset import EXPORTS, CollectedDataset, DiskFullError, Sample, yolo_lines
from edge.collect.phash import dhash, hamming
from edge.config import config_from_dict
from edge.daemon import Daemon
from edge.detections import Detections
from edge.errors import InputError
from edge.metrics import DetectionScorer
from edge.mqtt.subscriber import BrokerSubscription
from edge.synthetic.scene import SHAPE_LABELS, ShapeScene
from edge.timing import rfc3339

LABELS = list(SHAPE_LABELS)


def sample_of(frame_id: int, image: np.ndarray, boxes: list[list[float]], *,
              source_height: int | None = None, reasons=("audit",), camera="gate") -> Sample:
    """A sample as the device sends it: boxes in source pixels, JPEG maybe downsized."""
    ok, jpeg = cv2.imencode(".jpg", image)
    assert ok
    height = source_height or image.shape[0]
    width = round(image.shape[1] * height / image.shape[0])
    meta = {"frame_id": frame_id, "ts": 1_700_000_000.0 + frame_id,
            "time": rfc3339(1_700_000_000.0 + frame_id), "model": "shapes", "width": width,
            "height": height, "reasons": list(reasons), "labels": LABELS,
            "predictions": [{"label": LABELS[i % 4], "class_id": i % 4, "score": 0.5 + 0.1 * i,
                             "box": box} for i, box in enumerate(boxes)]}
    return Sample("dev1", camera, jpeg.tobytes(), meta)


def scene_frames(count: int, step: int = 30, seed: int = 2):
    scene = ShapeScene(seed=seed)
    for _ in range(count):
        for _ in range(step - 1):
            scene.next_truth()
        image, truth = scene.next()
        yield scene.frame_index, image, truth


def test_dhash_ignores_jpeg_noise_and_exposure_but_not_motion():
    (_, a, _), (_, b, _) = list(scene_frames(2, step=45))
    ok, jpeg = cv2.imencode(".jpg", a, [cv2.IMWRITE_JPEG_QUALITY, 50])
    assert ok
    recoded = cv2.imdecode(jpeg, cv2.IMREAD_COLOR)
    brighter = cv2.convertScaleAbs(a, alpha=1.2, beta=5)
    assert hamming(dhash(a), dhash(recoded)) <= 6
    assert hamming(dhash(a), dhash(brighter)) <= 6
    assert hamming(dhash(a), dhash(b)) > 6


def test_dataset_layouts_load_in_pycocotools_and_edge_eval(tmp_path):
    from pycocotools.coco import COCO

    dataset = CollectedDataset(tmp_path / "out", duplicate_distance=-1,
                               image_url_prefix="http://nas/ds/")
    truths = {}
    for frame_id, image, truth in scene_frames(6):
        small = cv2.resize(image, (320, 240), interpolation=cv2.INTER_AREA)
        boxes = truth.boxes.tolist()  # source pixels (480 high); the JPEG is 240 high
        assert dataset.add(sample_of(frame_id, small, boxes, source_height=480))
        truths[f"dev1_gate_{frame_id:08d}"] = truth.boxes / 2
    dataset.export()
    out = tmp_path / "out"
    coco = COCO(str(out / "annotations.coco.json"))
    assert len(coco.getImgIds()) == 6
    assert [c["name"] for c in coco.loadCats(coco.getCatIds())] == LABELS
    image = coco.loadImgs(1)[0]
    assert (image["width"], image["height"]) == (320, 240)
    annotation = coco.loadAnns(coco.getAnnIds(imgIds=[1]))[0]
    x, y, w, h = annotation["bbox"]
    expected = truths[image["edge_id"]][0]
    np.testing.assert_allclose([x, y, x + w, y + h], expected, atol=0.02)
    # The YOLO layout is what `edge eval --data` reads; its boxes match to JPEG rounding.
    yolo = dataset_from(out, LABELS, "detect")
    assert yolo.kind == "yolo" and len(yolo.items) == 6
    for item in yolo.items:
        np.testing.assert_allclose(item.boxes, truths[item.path.stem], atol=0.01)
    for label_file in (out / "labels").glob("*.txt"):  # what Ultralytics' loader accepts
        rows = np.loadtxt(label_file, ndmin=2)
        assert rows.shape[1] == 5 and (rows[:, 1:] >= 0).all() and (rows[:, 1:] <= 1).all()
    from_coco = dataset_from(out / "annotations.coco.json", LABELS, "detect")
    assert len(from_coco.items) == 6
    tasks = json.loads((out / "label-studio.json").read_text())
    first = tasks[0]["predictions"][0]["result"][0]
    assert first["type"] == "rectanglelabels" and first["value"]["rectanglelabels"][0] in LABELS
    assert first["original_width"] == 320 and 0 <= first["value"]["x"] <= 100
    assert tasks[0]["data"]["image"] == f"http://nas/ds/{image['file_name']}"
    header, *rows = (out / "manifest.csv").read_text().splitlines()
    assert header.startswith("id,file,device,camera,frame_id,time") and len(rows) == 6
    assert "data.yaml" in os.listdir(out) and (out / "classes.txt").read_text().split() == LABELS


def test_near_duplicates_are_skipped_per_camera(tmp_path):
    dataset = CollectedDataset(tmp_path / "out")
    (_, image, _), (_, other, _) = list(scene_frames(2, step=60))
    interval = ("interval",)
    assert dataset.add(sample_of(1, image, [], reasons=interval))
    assert not dataset.add(sample_of(2, image, [], reasons=interval))  # the same picture again
    assert dataset.add(sample_of(3, image, [], camera="yard", reasons=interval))  # another camera
    assert dataset.add(sample_of(4, other, [], reasons=interval))
    assert dataset.counts.duplicates == 1 and len(dataset.rows) == 3
    # a user check: near-duplicate audit frames were skipped (16 of 26 in one run), so the
    # audit sample `edge eval --field` scores was no longer the unbiased draw it stands for
    assert dataset.add(sample_of(5, image, [], reasons=("audit",)))
    assert dataset.add(sample_of(6, image, [], reasons=("interval", "audit")))
    assert not dataset.add(sample_of(7, image, [], reasons=interval))
    assert dataset.counts.duplicates == 2 and len(dataset.rows) == 5


def test_resume_keeps_what_was_listed_and_drops_torn_writes(tmp_path):
    out = tmp_path / "out"
    dataset = CollectedDataset(out, duplicate_distance=-1)
    frames = list(scene_frames(4))
    for frame_id, image, truth in frames[:3]:
        dataset.add(sample_of(frame_id, image, truth.boxes.tolist()))
    assert not list(out.rglob(".*.partial"))  # no partial file stays behind a complete write
    # A crash: an image and label written without their row, and a torn last manifest line.
    (out / "images" / ".dev1_gate_99999999.jpg.partial").write_bytes(b"partial")
    (out / "labels" / ".dev1_gate_99999999.txt.partial").write_text("0 0.5 0.5 0.1 0.1\n")
    with (out / "manifest.jsonl").open("a") as handle:
        handle.write('{"id": "dev1_gate_0000')
    resumed = CollectedDataset(out, duplicate_distance=0)
    assert resumed.counts.resumed == 3 and len(resumed.rows) == 3
    assert not list(out.rglob("*.partial"))
    frame_id, image, truth = frames[0]
    again = sample_of(frame_id + 1, image, [], reasons=("interval",))
    assert not resumed.add(again)  # its hash was remembered
    frame_id, image, truth = frames[3]
    assert resumed.add(sample_of(frame_id, image, truth.boxes.tolist()))
    lines = (out / "manifest.jsonl").read_text().splitlines()
    assert [json.loads(line)["frame_id"] for line in lines] == [f[0] for f in frames]
    listed = sorted(Path(json.loads(line)["file"]).name for line in lines)
    assert sorted(p.name for p in (out / "images").iterdir()) == listed


def test_an_image_deleted_by_hand_is_said_when_its_row_is_dropped(tmp_path, caplog):
    """A user check: a resume after `rm images/<one>.jpg` dropped its row (the device's
    recorded predictions) from the manifest and every export without a word."""
    out = tmp_path / "out"
    dataset = CollectedDataset(out, duplicate_distance=-1)
    for frame_id, image, truth in scene_frames(3):
        dataset.add(sample_of(frame_id, image, truth.boxes.tolist()))
    dataset.export()
    dataset.close()
    gone = dataset.rows[1]
    (out / gone["file"]).unlink()
    with caplog.at_level("WARNING", logger="edge.collect.dataset"):
        resumed = CollectedDataset(out)
    said = [r.getMessage() for r in caplog.records if "gone from images/" in r.getMessage()]
    assert said == [f"{out}: 1 listed image gone from images/ ({gone['id']}): its row is "
                    "dropped from manifest.jsonl and the exports; its label file in labels/ is "
                    "kept (delete it too if the image is gone for good)"]
    assert [row["id"] for row in resumed.rows] == [dataset.rows[0]["id"], dataset.rows[2]["id"]]
    assert (out / "labels" / f"{gone['id']}.txt").is_file()


def test_a_resumed_run_keeps_the_label_studio_prefix_an_earlier_run_was_given(tmp_path,
                                                                            caplog):
    """A user check: a rerun without --image-url-prefix rewrote label-studio.json with the
    default prefix, breaking the URLs of tasks imported from it."""
    out = tmp_path / "out"
    frames = list(scene_frames(3))

    def add_one(dataset: CollectedDataset, index: int) -> list[str]:
        frame_id, image, truth = frames[index]
        dataset.add(sample_of(frame_id, image, truth.boxes.tolist()))
        dataset.export()
        dataset.close()
        return [task["data"]["image"] for task in
                json.loads((out / "label-studio.json").read_text())]

    urls = add_one(CollectedDataset(out, image_url_prefix="http://nas/ds/"), 0)
    assert urls == [f"http://nas/ds/images/dev1_gate_{frames[0][0]:08d}.jpg"]
    urls = add_one(CollectedDataset(out), 1)
    assert all(url.startswith("http://nas/ds/images/") for url in urls) and len(urls) == 2
    with caplog.at_level("INFO", logger="edge.collect.dataset"):
        urls = add_one(CollectedDataset(out, image_url_prefix="/data/local-files/?d="), 2)
    assert all(url.startswith("/data/local-files/?d=images/") for url in urls), urls
    assert ("label-studio.json: image URLs now start with /data/local-files/?d= (they started "
            "with http://nas/ds/)") in caplog.text
    fresh = CollectedDataset(tmp_path / "fresh")
    assert fresh.url_prefix == "/data/local-files/?d="


def test_exports_a_killed_run_left_behind_are_caught_up_at_resume(tmp_path, caplog):
    """After a kill -9 the exports listed the images up to the last export (every 50) until
    the next 50 or the end of the next run; a resume that then failed left them so."""
    out = tmp_path / "out"
    dataset = CollectedDataset(out, duplicate_distance=-1)
    frames = list(scene_frames(3))
    dataset.add(sample_of(frames[0][0], frames[0][1], frames[0][2].boxes.tolist()))
    dataset.export()
    for frame_id, image, truth in frames[1:]:  # then killed: no export
        dataset.add(sample_of(frame_id, image, truth.boxes.tolist()))
    coco = json.loads((out / "annotations.coco.json").read_text())
    assert len(coco["images"]) == 1
    with caplog.at_level(logging.INFO):
        resumed = CollectedDataset(out, duplicate_distance=-1)
    assert ("annotations.coco.json, label-studio.json, manifest.csv did not match "
            "manifest.jsonl (a run interrupted between two exports, or files edited by hand): "
            "rewritten") in caplog.text
    coco = json.loads((out / "annotations.coco.json").read_text())
    assert [image["file_name"] for image in coco["images"]] == [r["file"] for r in resumed.rows]
    assert len(resumed.rows) == 3
    assert len((out / "manifest.csv").read_text().splitlines()) == 1 + 3
    caplog.clear()
    with caplog.at_level(logging.INFO):  # up to date now: not rewritten again
        CollectedDataset(out, duplicate_distance=-1)
        CollectedDataset(out, duplicate_distance=-1)  # a resume alone changes nothing
    assert "did not match" not in caplog.text


def test_a_copied_dataset_resumes_without_rewriting_its_exports(tmp_path, caplog):
    """A user check: `cp -r dataset copy` (new file times) then `edge collect --out copy` said
    "the exports did not list every image (a run was interrupted ...)": rewritten, though the
    exports listed every image; so did a dataset whose image was deleted by hand, beside the
    warning that names the deletion."""
    out = tmp_path / "out"
    with CollectedDataset(out, duplicate_distance=-1) as dataset:
        for frame_id, image, truth in scene_frames(3):
            dataset.add(sample_of(frame_id, image, truth.boxes.tolist()))
        dataset.export()
    copy = tmp_path / "copy"
    shutil.copytree(out, copy, copy_function=shutil.copy)  # times not kept, as `cp -r`
    os.utime(copy / "manifest.jsonl")  # newer than every export
    exported = {name: (copy / name).read_bytes() for name in EXPORTS}
    with caplog.at_level(logging.INFO):
        CollectedDataset(copy, duplicate_distance=-1).close()
    assert "did not match" not in caplog.text
    assert {name: (copy / name).read_bytes() for name in EXPORTS} == exported
    gone = sorted((copy / "images").iterdir())[1]
    gone.unlink()
    caplog.clear()
    with caplog.at_level(logging.INFO):
        resumed = CollectedDataset(copy, duplicate_distance=-1)
    assert f"1 listed image gone from images/ ({gone.stem})" in caplog.text
    assert "did not match" not in caplog.text  # the deletion's warning says it all
    coco = json.loads((copy / "annotations.coco.json").read_text())
    assert [image["file_name"] for image in coco["images"]] == [r["file"] for r in resumed.rows]
    assert len(resumed.rows) == 2


@pytest.mark.parametrize("damage", ["not json at all", '{"id": "x"}', "[1, 2]",
                                    '{"id": "dev1_gate_00000001", "file": 7}'])
def test_a_damaged_row_inside_the_manifest_is_refused_not_dropped(tmp_path, damage):
    """A helper's check: a row replaced in the middle of manifest.jsonl was taken for a torn
    write; the resume dropped it and took its image out of every export for good (and a row
    without "file" was a KeyError). Only the last line can be torn."""
    out = tmp_path / "out"
    dataset = CollectedDataset(out, duplicate_distance=-1)
    for frame_id, image, truth in scene_frames(3):
        dataset.add(sample_of(frame_id, image, truth.boxes.tolist()))
    dataset.export()
    dataset.close()
    manifest = out / "manifest.jsonl"
    lines = manifest.read_text().splitlines()
    manifest.write_text("\n".join([lines[0], damage, lines[2]]) + "\n")
    before = {path: path.read_bytes() for path in out.rglob("*") if path.is_file()}
    with pytest.raises(InputError, match=r"manifest.jsonl:2: .*; the file was edited or "
                                         r"damaged: restore the line .* or delete it"):
        CollectedDataset(out, duplicate_distance=-1)
    with pytest.raises(InputError, match=r"manifest.jsonl:2: "):
        field_accuracy(out)
    assert {path: path.read_bytes() for path in out.rglob("*") if path.is_file()} == before


def three_collected_rows(out: Path) -> tuple[Path, list[str]]:
    """A dataset of three scene frames collected into `out`: its manifest and its lines."""
    with CollectedDataset(out, duplicate_distance=-1) as dataset:
        for frame_id, image, truth in scene_frames(3):
            dataset.add(sample_of(frame_id, image, truth.boxes.tolist()))
    manifest = out / "manifest.jsonl"
    return manifest, manifest.read_text().splitlines()


@pytest.mark.parametrize(("edit", "problem"), [
    # a user check: a traceback (ValueError in Detections.from_payload), exit 1
    (lambda row: row["objects"].insert(0, {"label": "dog", "class_id": 1, "score": 0.5,
                                           "box": [1, 2]}),
     r"objects\[0\] 'box' is \[1, 2\], not \[x1, y1, x2, y2\] in pixels"),
    (lambda row: row["objects"].insert(0, {"label": "dog", "class_id": 1, "score": 2,
                                           "box": [1, 2, 3, 4]}),
     r"objects\[0\] 'score' is 2, not between 0 and 1"),
    # ... and rows accepted as they were: a frame id "x", an image counted as an audit draw,
    # a per-day row named "yesterday"
    (lambda row: row["objects"][0].update(box=[300, 300, 100, 100]),
     r"objects\[0\] 'box' is \[300, 300, 100, 100\], not \[x1, y1, x2, y2\] in pixels"),
    (lambda row: row.update(frame_id="x"), r"'frame_id' is 'x'"),
    (lambda row: row.update(reasons="audit"), r"'reasons' is 'audit'"),
    (lambda row: row.update(time="yesterday"),
     r"'time': 'yesterday' is no RFC 3339 date .*UTC, like 2026-11-29T07:14:51\.123Z"),
])
def test_a_row_whose_fields_were_edited_wrong_is_refused_naming_the_field(tmp_path, edit,
                                                                          problem):
    out = tmp_path / "out"
    manifest, lines = three_collected_rows(out)
    row = json.loads(lines[1])
    edit(row)
    manifest.write_text("\n".join([lines[0], json.dumps(row), lines[2]]) + "\n")
    with pytest.raises(InputError, match=rf"manifest.jsonl:2: {problem}; the file was edited "
                                         r"or damaged"):
        field_accuracy(out)
    result = subprocess.run([sys.executable, "-m", "edge", "eval", "--field", "--data",
                             str(out), "--json"], capture_output=True, text=True, timeout=60)
    assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr
    assert json.loads(result.stdout.strip().splitlines()[-1])["exit_code"] == 2


def test_a_row_twice_or_a_class_past_classes_txt_is_refused(tmp_path):
    """A user check: a row copied twice into the manifest counted its image twice (112
    images scored of 111); a class id past classes.txt would end in an IndexError."""
    out = tmp_path / "out"
    manifest, lines = three_collected_rows(out)
    manifest.write_text("\n".join([*lines, lines[1]]) + "\n")
    row_id = json.loads(lines[1])["id"]
    with pytest.raises(InputError, match=rf"manifest.jsonl:4: the row of '{row_id}' again "
                                         r"\(line 2 holds it too\), which would count its "
                                         r"image twice; .* delete one of the two lines"):
        field_accuracy(out)
    row = json.loads(lines[1])
    row["objects"][0]["class_id"] = len(SHAPE_LABELS)
    manifest.write_text("\n".join([lines[0], json.dumps(row), lines[2]]) + "\n")
    # a user check: named without its line, and a resume took it into the COCO export (a
    # category id the export does not define)
    past = (rf"manifest.jsonl:2: objects\[0\] 'class_id' is {len(SHAPE_LABELS)} \(classes.txt "
            rf"holds {len(SHAPE_LABELS)}: 0 to {len(SHAPE_LABELS) - 1}\); the file was edited")
    with pytest.raises(InputError, match=past):
        field_accuracy(out)
    with pytest.raises(InputError, match=past):
        CollectedDataset(out, duplicate_distance=-1)
    row["objects"][0]["class_id"] = 0  # and a label that is not that class's
    row["objects"][0]["label"] = "dog"
    manifest.write_text("\n".join([lines[0], json.dumps(row), lines[2]]) + "\n")
    with pytest.raises(InputError, match=rf"manifest.jsonl:2: objects\[0\] 'label' is 'dog', "
                                         rf"but class 0 is '{SHAPE_LABELS[0]}' in classes.txt"):
        field_accuracy(out)


def test_a_torn_last_row_is_dropped_with_a_warning_by_eval_and_resume(tmp_path, caplog):
    out = tmp_path / "out"
    dataset = CollectedDataset(out, duplicate_distance=-1)
    for frame_id, image, truth in scene_frames(2):
        dataset.add(sample_of(frame_id, image, truth.boxes.tolist()))
    with (out / "manifest.jsonl").open("a") as handle:
        handle.write('{"id": "dev1_gate_0000')
    with caplog.at_level(logging.WARNING):
        assert field_accuracy(out).images == 2
    assert "manifest.jsonl:3: torn last row (an interrupted write) dropped" in caplog.text
    assert len(CollectedDataset(out, duplicate_distance=-1).rows) == 2


def test_exports_follow_the_images_by_time_as_well_as_by_count(tmp_path, monkeypatch):
    """A slow camera (6 samples a minute) gave a labeller no export for 8 minutes: they came
    every 50 images only."""
    out = tmp_path / "out"
    dataset = CollectedDataset(out, duplicate_distance=-1)
    frames = list(scene_frames(4))
    coco = out / "annotations.coco.json"

    def exported() -> int:
        return len(json.loads(coco.read_text())["images"]) if coco.is_file() else 0

    dataset.add(sample_of(frames[0][0], frames[0][1], []))
    assert exported() == 1 and (out / "data.yaml").is_file(), "the first image at once"
    dataset.add(sample_of(frames[1][0], frames[1][1], []))
    assert exported() == 1
    monkeypatch.setattr("edge.collect.dataset.EXPORT_INTERVAL_S", 0.2)
    time.sleep(0.3)
    dataset.export_if_due()  # what the writer does between samples
    assert exported() == 2
    dataset.export_if_due()  # nothing new: not rewritten
    assert exported() == 2


def test_a_row_written_before_its_image_was_renamed_is_dropped_on_resume(tmp_path):
    """A crash between the manifest row and the rename: the row names no file, so it goes,
    with the partial image it was for."""
    out = tmp_path / "out"
    dataset = CollectedDataset(out, duplicate_distance=-1)
    (frame_id, image, truth), (later, other, _) = list(scene_frames(2))
    dataset.add(sample_of(frame_id, image, truth.boxes.tolist()))
    name = dataset.rows[0]["id"]
    (out / "images" / f"{name}.jpg").rename(out / "images" / f".{name}.jpg.partial")
    resumed = CollectedDataset(out)
    assert resumed.rows == [] and not list((out / "images").iterdir())
    assert resumed.add(sample_of(later, other, []))


def test_files_edge_collect_did_not_write_are_never_deleted(tmp_path, caplog):
    """A user's photo and a YOLO split folder put into a collect folder: they were deleted on
    the next run (as a crash's leftovers), and the subfolder raised IsADirectoryError."""
    out = tmp_path / "out"
    dataset = CollectedDataset(out, duplicate_distance=-1)
    (frame_id, image, truth), (later, other, _) = list(scene_frames(2))
    dataset.add(sample_of(frame_id, image, truth.boxes.tolist()))
    (out / "images" / "photo1.jpg").write_bytes(b"my photo")
    (out / "labels" / "photo1.txt").write_text("0 0.5 0.5 0.1 0.1\n")
    (out / "images" / "train").mkdir()
    (out / "images" / "train" / "p2.jpg").write_bytes(b"my split")
    with caplog.at_level("WARNING"):
        resumed = CollectedDataset(out, duplicate_distance=-1)
    assert "2 entries are not in manifest.jsonl (photo1.jpg, train): left as they are" in \
        caplog.text
    assert resumed.add(sample_of(later, other, []))
    resumed.export()
    assert (out / "images" / "photo1.jpg").read_bytes() == b"my photo"
    assert (out / "labels" / "photo1.txt").read_text() == "0 0.5 0.5 0.1 0.1\n"
    assert (out / "images" / "train" / "p2.jpg").read_bytes() == b"my split"
    coco = json.loads((out / "annotations.coco.json").read_text())
    assert [image["file_name"] for image in coco["images"]] == [r["file"] for r in resumed.rows]


def test_allowance_and_reserved_free_space_stop_with_a_clear_error(tmp_path):
    frames = list(scene_frames(3))
    capped = CollectedDataset(tmp_path / "capped", max_bytes=1, duplicate_distance=-1)
    with pytest.raises(DiskFullError, match=r"reached its allowance .* \(--max-mb\) with 0 "
                                             r"images"):
        capped.add(sample_of(frames[0][0], frames[0][1], []))
    free = shutil.disk_usage(tmp_path).free
    with pytest.raises(DiskFullError, match=r"MB free, below the .* to keep free "
                                             r"\(--min-free-mb\)"):
        CollectedDataset(tmp_path / "reserved", min_free_bytes=free + 10**9)  # said at once
    assert not list((tmp_path / "reserved" / "images").iterdir())


def test_a_resumed_dataset_already_past_its_allowance_is_refused_before_any_frame(tmp_path):
    """--max-mb below what a resumed folder holds waited for the next sampled frame (minutes
    under [sampling.limits]) before saying so."""
    first = CollectedDataset(tmp_path / "ds", duplicate_distance=-1)
    for frame_id, image, _ in scene_frames(2):
        assert first.add(sample_of(frame_id, image, []))
    held = first.counts.bytes
    with pytest.raises(DiskFullError, match=r"reached its allowance of .* with 2 images; "
                                             r"raise --max-mb \(a rerun with it resumes this "
                                             r"folder\)"):
        CollectedDataset(tmp_path / "ds", max_bytes=held - 1)
    with pytest.raises(DiskFullError, match=r"reached its allowance"):  # exactly at it: no room
        CollectedDataset(tmp_path / "ds", max_bytes=held)
    assert len(CollectedDataset(tmp_path / "ds", max_bytes=held + 1).rows) == 2  # kept


@pytest.mark.skipif(os.geteuid() != 0 or not shutil.which("mount"),
                    reason="mounting a tiny tmpfs needs root")
def test_a_really_full_disk_stops_cleanly_and_keeps_the_dataset_consistent(tmp_path):
    mount = tmp_path / "small"
    mount.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=400k", "tmpfs", str(mount)]
                      ).returncode != 0:
        pytest.skip("tmpfs cannot be mounted here")
    try:
        written = 0
        # Either the free-space check before a write or ENOSPC during one stops it, said as
        # a full disk: no room is kept (a user check: "below the 0 MB to keep free
        # (--min-free-mb) ... or lower --min-free-mb")
        with pytest.raises(DiskFullError, match=r"is full.* \d+ images are collected and "
                                                 r"consistent; free space") as raised, \
                CollectedDataset(mount / "out", duplicate_distance=-1) as dataset:
            for frame_id, image, truth in scene_frames(40, step=7):
                dataset.add(sample_of(frame_id, image, truth.boxes.tolist()))
                written += 1
        assert written > 0 and "--min-free-mb" not in str(raised.value)
        rows = [json.loads(line) for line in
                (mount / "out" / "manifest.jsonl").read_text().splitlines()]
        assert len(rows) == written
        images = sorted(p.name for p in (mount / "out" / "images").iterdir())
        assert images == sorted(Path(r["file"]).name for r in rows)
    finally:
        subprocess.run(["umount", str(mount)])


def run_collect_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "edge", "collect", *args], capture_output=True,
                          text=True, timeout=60)


#: An unreachable broker and a fresh output folder: what the bad-input cases add to.
UNREACHABLE = ["--mqtt", "mqtt://127.0.0.1:1", "--out", "{tmp}/o"]


@pytest.mark.parametrize(("args", "expected"), [
    (["--mqtt", "http://x", "--out", "{tmp}/o", "--seconds", "1"], r"mqtt://host"),
    (["--mqtt", "mqtt://127.0.0.1:1", "--out", "{tmp}/no/such/o", "--seconds", "1"],
     r"output directory .*no/such \(of --out .*no/such/o\) does not exist; create it or "
     r"choose another folder"),
    (["--mqtt", "mqtt://127.0.0.1:1", "--out", "/proc/o", "--seconds", "1"],
     r"output directory /proc \(of --out /proc/o\) cannot be written into \(no file can be "
     r"made there: a virtual file system, as /proc is\); choose another output path"),
    ([*UNREACHABLE, "--max-mb", "0"], r"--max-mb: '0' must be a number > 0"),
    # not a number: a traceback (NaN to an int) or, for --seconds, a run that never ends
    ([*UNREACHABLE, "--max-mb", "nan"], r"--max-mb: 'nan' must be a number > 0"),
    ([*UNREACHABLE, "--max-mb", "inf"], r"--max-mb: 'inf' must be a number > 0"),
    ([*UNREACHABLE, "--seconds", "nan"], r"--seconds: 'nan' must be a number > 0"),
    ([*UNREACHABLE, "--min-free-mb", "nan"], r"--min-free-mb: 'nan' must be a number >= 0"),
    ([*UNREACHABLE, "--max-mb", "1e-7"], r"--max-mb 1e-07 is below 0.001 MB, less than one "
                                         r"sampled frame"),
    ([*UNREACHABLE, "--min-free-mb", "-3"], r"--min-free-mb: '-3' must be a number >= 0"),
    ([*UNREACHABLE, "--min-free-mb", "1e12"],  # before the broker is tried
     r"MB free, below the 1000000000000 MB to keep free \(--min-free-mb\); free space or "
     r"lower --min-free-mb$"),
    ([*UNREACHABLE, "--duplicate-distance", "999"],
     r"--duplicate-distance must be -1 \(keep every frame\) or 0 to 256"),
    ([*UNREACHABLE, "--prefix", "edge/#"],
     r"prefix 'edge/#': use edge/<device_id> for one device or edge/\+"),
    # a `+` inside a level: paho's thread raised on the filter and the broker was then
    # reported unreachable; a `+` before the device level read camera topics as devices
    ([*UNREACHABLE, "--prefix", "edge/gate+"],
     r"prefix 'edge/gate\+': .*'\+' only as the whole last level, no '#'"),
    ([*UNREACHABLE, "--prefix", "edge/+/cam1"], r"prefix 'edge/\+/cam1': use edge/<device_id>"),
    ([*UNREACHABLE, "--seconds", "30"],
     r"could not reach the MQTT broker at mqtt://127.0.0.1:1: connection refused: is the "
     r"broker running"),
    ([*UNREACHABLE, "--ca-file", "{tmp}/ca.pem"], r"--ca-file .*ca.pem is not a file"),
    (["--mqtt", "mqtt://127.0.0.1:1", "--out", "{tmp}/ds", "--certfile", __file__],
     r"--ca-file, --certfile and --keyfile are for TLS: give an mqtts:// broker URL"),
    (["--mqtt", "mqtts://127.0.0.1:1", "--out", "{tmp}/ds", "--certfile", __file__],
     r"--certfile and --keyfile go together"),
])
def test_collect_cli_bad_input_exits_2(tmp_path, args, expected):
    result = run_collect_cli(*[a.replace("{tmp}", str(tmp_path)) for a in args])
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    assert re.search(expected, result.stderr), result.stderr
    assert not (tmp_path / "o").exists()  # a run that never started leaves no dataset
    assert "images in" not in result.stdout  # and no summary of nothing


def test_a_folder_of_the_users_own_files_is_refused_and_left_as_it_was(tmp_path):
    """`--out` pointed at a folder of photos, labels and exports that edge collect did not
    write: every file not in a manifest was deleted (and the exports rewritten), before the
    broker was even reached, a wrong password's exit 2 included."""
    out = tmp_path / "mine"
    (out / "images").mkdir(parents=True)
    (out / "labels").mkdir()
    (out / "images" / "photo1.jpg").write_bytes(b"my photo")
    (out / "labels" / "photo1.txt").write_text("0 0.5 0.5 0.1 0.1\n")
    (out / "annotations.coco.json").write_text('{"mine": 1}')
    before = {path: path.read_bytes() for path in out.rglob("*") if path.is_file()}
    result = run_collect_cli("--mqtt", "mqtt://127.0.0.1:1", "--out", str(out), "--seconds", "1")
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert re.search(r"--out .*mine already holds files that edge collect did not write "
                     r"\(annotations.coco.json, images/, labels/\) and no manifest.jsonl; "
                     r"collect into a new or empty folder", result.stderr), result.stderr
    assert {path: path.read_bytes() for path in out.rglob("*") if path.is_file()} == before
    empty = tmp_path / "empty"
    (empty / "images").mkdir(parents=True)  # made ahead of the run (a user check: refused)
    (empty / ".DS_Store").write_bytes(b"")
    CollectedDataset(empty)  # an empty folder (hidden files, empty folders aside) is taken
    assert (empty / "manifest.jsonl").is_file()



def test_two_collectors_on_one_broker_keep_their_own_sessions(tmp_path, mosquitto):
    first = Collector(mosquitto.url, "edge/+", CollectedDataset(tmp_path / "a"))
    second = Collector(mosquitto.url, "edge/+", CollectedDataset(tmp_path / "b"))
    first.start()
    second.start()
    try:
        assert first.subscription.subscribed.wait(10) and second.subscription.subscribed.wait(10)
        connects = (first.subscription.connects, second.subscription.connects)
        time.sleep(2.0)  # a shared client id would make the broker drop one, and it reconnect
        assert (first.subscription.connects, second.subscription.connects) == connects == (1, 1)
    finally:
        first.stop()
        second.stop()


def test_a_frame_meta_that_is_no_json_object_is_counted_unpaired(tmp_path):
    """`[[[[...` raised RecursionError on paho's thread, a list AttributeError: neither may
    reach it. Each is one unpaired sample; a good pair after them is still collected."""
    collector = Collector("mqtt://127.0.0.1:1", "edge/+", CollectedDataset(tmp_path / "o"))
    for payload in (b"[" * 200_000, b"[1]", b"\xff\xfe", b"1" * 5000):
        collector._message("edge/d1/gate/frame", b"\xff\xd8jpeg", False)
        collector._message("edge/d1/gate/frame/meta", payload, False)
    assert collector.unpaired == 4 and collector.received == 0
    collector._message("edge/d1/gate/frame", b"\xff\xd8jpeg", False)
    collector._message("edge/d1/gate/frame/meta", json.dumps({"bytes": 6}).encode(), False)
    assert collector.received == 1 and collector._queue.get_nowait().jpeg == b"\xff\xd8jpeg"


def test_metas_that_keep_coming_without_their_jpeg_are_said(tmp_path, caplog):
    """A user check: a broker that dropped the JPEGs (or an ACL that hid them) read as
    devices that sample no frame."""
    collector = Collector("mqtt://127.0.0.1:1", "edge/+", CollectedDataset(tmp_path / "o"))
    with caplog.at_level("WARNING", logger="edge"):
        for frame_id in range(1, 5):
            collector._message("edge/d1/gate/frame/meta",
                               json.dumps({"frame_id": frame_id, "bytes": 6}).encode(), False)
    assert collector.received == 4 and collector.unpaired == 4
    said = [r.getMessage() for r in caplog.records]
    assert len(said) == 1 and said[0].startswith(
        "edge collect: 3 frame/meta messages of d1/gate in a row came without their JPEG "
        "(edge/d1/gate/frame): the JPEGs do not reach the broker or are dropped there"), said


@pytest.mark.parametrize("warn_after_s", [0.5, 60.0])
def test_a_prefix_that_matches_no_frame_is_warned_about_once(tmp_path, mosquitto, caplog,
                                                            monkeypatch, warn_after_s):
    """A user check: `--prefix edge/dev1/cam/frame` (a topic pasted in) or a device that is
    not there collected nothing and exited 0 without a word."""
    import edge.collect

    monkeypatch.setattr(edge.collect, "NO_FRAMES_WARNING_S", warn_after_s)
    collector = Collector(mosquitto.url, "edge/dev1/cam/frame", CollectedDataset(tmp_path / "o"))
    with caplog.at_level("WARNING", logger="edge.collect"):
        collector.run(1.5, threading.Event())
    said = [r.getMessage() for r in caplog.records if "no sampled frame came" in r.getMessage()]
    assert len(said) == 1, said
    assert re.fullmatch(r"no sampled frame came under edge/dev1/cam/frame in [012] s \(its "
                        r"topics are edge/dev1/cam/frame/<camera>/frame/meta\); check that "
                        r"--prefix names devices \(edge/\+ for every one, edge/<device> for "
                        r"one, not a camera or a topic\) and that they sample frames "
                        r"\(frames.interval_s or \[sampling\] in their config\)", said[0])


DEVICE_STATUS = {"v": 1, "state": "online", "version": "0.1", "model": "m",
                 "cameras": ["gate"], "started_at": "2026-12-03T08:00:00Z"}


def retain_statuses(port: int, device: str, device_state: str) -> list[str]:
    """A running device's retained statuses (its own and its camera's); the topics, to clear."""
    from paho.mqtt import publish

    statuses = {f"edge/{device}/status": {**DEVICE_STATUS, "state": device_state},
                f"edge/{device}/gate/status": {"v": 1, "camera": "gate", "state": "streaming"}}
    for topic, status in statuses.items():
        publish.single(topic, json.dumps(status), qos=1, retain=True, hostname="127.0.0.1",
                       port=port)
    return list(statuses)


def clear_retained(port: int, topics: list[str]) -> None:
    from paho.mqtt import publish

    for topic in topics:
        publish.single(topic, b"", qos=1, retain=True, hostname="127.0.0.1", port=port)


@pytest.mark.parametrize(("prefix", "fix"), [
    ("edge", r"--prefix edge: edge/pf1/status is device pf1's status message: the prefix 'edge' "
             r"stops before the device level; use edge/\+ for every device or edge/pf1 for "
             r"this one"),
    ("edge/pf1/gate", r"--prefix edge/pf1/gate: edge/pf1/gate/status is device pf1's "
                      r"camera_status message: the prefix 'edge/pf1/gate' goes a level past "
                      r"the device \('gate'\); use edge/pf1"),
    # user checks: a level that names no camera, and `+` alone, ran on with exit 0
    ("edge/pf1/yard", r"--prefix edge/pf1/yard: edge/pf1/(gate/)?status is device pf1's "
                      r"(camera_)?status message: the prefix 'edge/pf1/yard' goes a level past "
                      r"the device \('yard'\); use edge/pf1"),
    ("+", r"--prefix \+: edge/pf1/status is device pf1's status message: the prefix '\+' "
          r"stops before the device level; use edge/\+ for every device or edge/pf1 for this "
          r"one"),
])
@pytest.mark.parametrize("device_state", ["online", "failed"])
def test_collect_with_a_prefix_a_level_off_exits_2_with_the_fix(tmp_path, mosquitto, prefix,
                                                                fix, device_state):
    """A user check: a camera-level --prefix waited its minute and then said only that no
    frame came, where `edge monitor` names the fix. The retained statuses show it at once;
    the folder it made is not left behind empty."""
    topics = retain_statuses(mosquitto.port, "pf1", device_state)
    out = tmp_path / "o"
    try:
        began = time.monotonic()
        result = run_collect_cli("--mqtt", mosquitto.url, "--out", str(out), "--prefix",
                                 prefix, "--seconds", "30")
        took = time.monotonic() - began
    finally:
        clear_retained(mosquitto.port, topics)
    assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr
    assert re.search(fix, result.stderr), result.stderr
    assert "no sampled frame came" not in result.stderr
    assert took < 20 and not out.exists()


def no_frame_warnings(mosquitto, tmp_path: Path, caplog, running: str, prefix: str,
                      seconds: float) -> tuple[Collector, list[str]]:
    """A collector run under `prefix` while device `running` has its retained statuses on
    the broker and samples nothing; the collector and its "no sampled frame" warnings."""
    topics = retain_statuses(mosquitto.port, running, "online")
    try:
        collector = Collector(mosquitto.url, prefix, CollectedDataset(tmp_path / "o"))
        with caplog.at_level("WARNING", logger="edge.collect"):
            collector.run(seconds, threading.Event())
    finally:
        clear_retained(mosquitto.port, topics)
    return collector, [r.getMessage() for r in caplog.records
                       if "no sampled frame came" in r.getMessage()]


def test_a_device_that_samples_no_frame_is_named_in_the_warning(tmp_path, mosquitto, caplog,
                                                               monkeypatch):
    """The right prefix, a device there, no frame sampled: the warning says the device is
    there (and its state), not to check the prefix."""
    import edge.collect

    monkeypatch.setattr(edge.collect, "NO_FRAMES_WARNING_S", 0.5)
    collector, said = no_frame_warnings(mosquitto, tmp_path, caplog, "pf2", "edge/pf2", 1.5)
    assert len(said) == 1, said
    assert re.fullmatch(r"no sampled frame came under edge/pf2 in [012] s, though its devices "
                        r"are there: pf2 \(online\); check that they sample frames "
                        r"\(frames.interval_s or \[sampling\] in their config\) and run, that "
                        r"\[sampling.limits\] leaves room \(their stats' sampling "
                        r"`refused` and `over_budget` count samples the caps held back\), and "
                        r"that the broker's ACL lets this user read edge/pf2/\+/frame and "
                        r"frame/meta \(Mosquitto hides what a client may not read without a "
                        r"word\)", said[0])
    assert collector.error is None and collector.devices == {"pf2": "online"}


def test_a_device_that_is_not_there_has_the_devices_beside_it_named(tmp_path, mosquitto,
                                                                    caplog):
    """A user check: `--prefix edge/gate-02` while only gate-01 runs warned to check the
    prefix without naming the device that is there."""
    collector, said = no_frame_warnings(mosquitto, tmp_path, caplog, "pf3", "edge/pf4", 1.0)
    assert len(said) == 1, said
    assert re.fullmatch(r"no sampled frame came under edge/pf4 in [01] s and no device's "
                        r"status is there; the devices under edge/\+ are pf3 \(online\): "
                        r"--prefix edge/<device> for one of them, edge/\+ for every one",
                        said[0])
    assert collector.devices == {} and collector.beside == {"pf3": "online"}
    assert collector.error is None


def test_a_second_collect_into_a_folder_being_collected_into_is_refused(tmp_path, mosquitto):
    """A user check: two runs into one folder both exited 0, each deleting the other's
    unfinished files at its start (tracebacks), the manifest listing 23 rows of 16 images."""
    out = tmp_path / "ds"
    first = subprocess.Popen([sys.executable, "-m", "edge", "collect", "--mqtt", mosquitto.url,
                              "--out", str(out), "--seconds", "20"], stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True)
    try:
        lock = out / ".edge-collect.lock"
        deadline = time.monotonic() + 20
        while not (lock.is_file() and lock.read_text()) and time.monotonic() < deadline:
            time.sleep(0.05)
        second = run_collect_cli("--mqtt", mosquitto.url, "--out", str(out), "--seconds", "1")
    finally:
        first.terminate()
        first.communicate(timeout=30)
    assert second.returncode == 2 and "Traceback" not in second.stderr, second.stderr
    assert re.search(rf"--out {re.escape(str(out))} is being collected into by another edge "
                     rf"collect \(process {first.pid}\); stop that one first or collect into "
                     r"another folder", second.stderr), second.stderr
    assert first.returncode == 0
    # the lock went with the first run, its file too (a user check: a hidden file left behind
    # in the dataset): the folder is resumed by the next one
    assert not lock.exists()
    resumed = CollectedDataset(out)
    assert lock.read_text() == str(os.getpid())
    resumed.close()
    assert not lock.exists()


def test_a_run_that_collects_nothing_leaves_no_empty_dataset_it_made(tmp_path, mosquitto):
    """A user check: a run under a prefix no device samples left a new folder of empty
    exports. One it made is removed; a folder that was there stays."""
    made, given = tmp_path / "made", tmp_path / "given"
    given.mkdir()
    said = {}
    for out in (made, given):
        result = run_collect_cli("--mqtt", mosquitto.url, "--out", str(out), "--prefix",
                                 "edge/nodevice", "--seconds", "1")
        assert result.returncode == 0 and "0 images in" in result.stdout, result.stderr
        said[out] = result.stdout
    assert not made.exists() and (given / "manifest.jsonl").is_file()
    assert f"{made}, made by this run, was removed: it would hold no image" in said[made]
    assert "removed" not in said[given]


def replay_truths(seed: int, frame_ids: list[int]):
    scene = ShapeScene(seed=seed)
    for frame_id in sorted(frame_ids):
        while scene.frame_index < frame_id:
            truth = scene.next_truth()
        yield frame_id, truth


def test_daemon_to_collector_end_to_end(tmp_path, mosquitto, demo_model):
    seed, band = 4, (0.15, 0.4)  # reaches below the model's 0.25 threshold
    config = config_from_dict({
        "device_id": "dev1", "model": {"path": str(demo_model), "threads": 1},
        "cameras": [{"name": "gate", "source": f"synthetic://shapes?fps=15&seed={seed}"}],
        "mqtt": {"url": mosquitto.url},
        "frames": {"interval_s": 0, "max_height": 240, "draw": True},
        "sampling": {"audit_rate": 0.4, "seed": 3, "uncertain_band": list(band),
                     "limits": {"per_minute": 400}},
    }, "test")
    messages: dict[int, Detections] = {}

    def on_detections(topic: str, payload: bytes, retained: bool) -> None:
        message = json.loads(payload)
        messages[int(message["frame_id"])] = Detections.from_payload(message["detections"])

    watcher = BrokerSubscription(mosquitto.url, [("edge/dev1/+/detections", 1)], on_detections)
    out = tmp_path / "dataset"
    collector = Collector(mosquitto.url, "edge/+", CollectedDataset(out, duplicate_distance=-1))
    watcher.start()
    stop = threading.Event()
    thread = threading.Thread(target=collector.run, args=(None, stop))
    thread.start()
    assert collector.subscription.subscribed.wait(10) and watcher.subscribed.wait(10)
    daemon = Daemon(config)
    daemon.start()
    daemon.run(threading.Event(), duration=14.0)
    time.sleep(1.0)
    stop.set()
    thread.join(20)
    watcher.stop()
    sampler = daemon.workers[0].sampler
    rows = collector.dataset.rows
    assert len(rows) >= 40, collector.summary()
    assert collector.unpaired <= 2
    # Every frame sampled as uncertain has a detection inside the band.
    uncertain = [r for r in rows if "uncertain" in r["reasons"]]
    assert uncertain
    for row in uncertain:  # the published objects, or one below the threshold in the band
        assert any(band[0] <= o["score"] <= band[1] for o in row["objects"] + row["below"]), row
    assert any(row["below"] for row in uncertain)  # the band did see below the threshold
    assert all(o["score"] >= 0.25 for row in rows for o in row["objects"])
    # The audit sample's size matches its rate within the binomial interval.
    n, drawn = sampler.audit.frames, sampler.audit.drawn
    assert n >= 100
    assert abs(drawn - 0.4 * n) <= 3 * (n * 0.4 * 0.6) ** 0.5
    audited = sum("audit" in r["reasons"] for r in rows)
    assert audited <= drawn and audited >= drawn - 4 - FramePublisherSlack.dropped(daemon)
    # Pre-annotations (COCO, boxes in the 240-high JPEG) scored against the scene's ground truth
    # give the same precision/recall as the detection messages of the same frames.
    from pycocotools.coco import COCO

    coco = COCO(str(out / "annotations.coco.json"))
    by_frame = {img["edge_id"]: img["id"] for img in coco.loadImgs(coco.getImgIds())}
    collected, published = DetectionScorer(4), DetectionScorer(4)
    ids = [r["frame_id"] for r in rows]
    for frame_id, truth in replay_truths(seed, ids):
        anns = coco.loadAnns(coco.getAnnIds(imgIds=[by_frame[f"dev1_gate_{frame_id:08d}"]]))
        boxes = np.array([[a["bbox"][0], a["bbox"][1], a["bbox"][0] + a["bbox"][2],
                           a["bbox"][1] + a["bbox"][3]] for a in anns], np.float32).reshape(-1, 4)
        found = Detections(boxes * 2, np.array([a["score"] for a in anns], np.float32),
                           np.array([a["category_id"] - 1 for a in anns], np.int64))
        collected.add(found, truth.boxes, truth.class_ids, truth.difficult)
        published.add(messages[frame_id], truth.boxes, truth.class_ids, truth.difficult)
    np.testing.assert_allclose(collected.precision_recall(), published.precision_recall(),
                               atol=0.005)


class FramePublisherSlack:
    @staticmethod
    def dropped(daemon: Daemon) -> int:
        return daemon.workers[0].frame_publisher.dropped


def test_a_file_of_the_users_with_a_name_collect_would_use_is_not_written_over(tmp_path):
    """Images copied in from another collection, named as collect names its own, were
    replaced with new frames and their hand-written labels with the model's predictions."""
    out = tmp_path / "out"
    dataset = CollectedDataset(out, duplicate_distance=-1)
    (first, image, _), (second, other, truth) = list(scene_frames(2))
    dataset.add(sample_of(first, image, []))
    stem = f"dev1_gate_{second:08d}"
    (out / "images" / f"{stem}.jpg").write_bytes(b"my photo")
    (out / "labels" / f"{stem}.txt").write_text("2 0.5 0.5 0.3 0.3\n")
    (out / "labels" / f"{stem}_{int((1_700_000_000.0 + second) * 1000)}.txt").write_text("x\n")
    assert dataset.add(sample_of(second, other, truth.boxes.tolist()))
    assert (out / "images" / f"{stem}.jpg").read_bytes() == b"my photo"
    assert (out / "labels" / f"{stem}.txt").read_text() == "2 0.5 0.5 0.3 0.3\n"
    written = dataset.rows[-1]["id"]
    assert written == f"{stem}_{int((1_700_000_000.0 + second) * 1000)}_2"
    assert (out / "images" / f"{written}.jpg").is_file()
    assert (out / "labels" / f"{written}.txt").read_text() == yolo_lines(dataset.rows[-1])


def test_a_restarted_device_reusing_frame_ids_does_not_overwrite_images(tmp_path):
    dataset = CollectedDataset(tmp_path / "out", duplicate_distance=-1)
    (_, first, _), (_, second, _) = list(scene_frames(2))
    assert dataset.add(sample_of(7, first, []))
    again = sample_of(7, second, [])
    again.meta["ts"] += 3600  # the same frame id an hour later, after a restart
    assert dataset.add(again)
    files = sorted(p.name for p in (tmp_path / "out" / "images").iterdir())
    assert len(files) == 2 and files[0] == "dev1_gate_00000007.jpg"


def test_collect_cli_stops_at_its_allowance_with_exit_2_and_a_consistent_dataset(
        tmp_path, mosquitto, demo_model):
    config = config_from_dict({
        "device_id": "dev1", "model": {"path": str(demo_model), "threads": 1},
        "cameras": [{"name": "gate", "source": "synthetic://shapes?fps=15&seed=5"}],
        "mqtt": {"url": mosquitto.url},
        "frames": {"interval_s": 0.5, "draw": False}}, "test")
    out = tmp_path / "ds"
    collect = subprocess.Popen(
        [sys.executable, "-m", "edge", "collect", "--mqtt", mosquitto.url, "--out", str(out),
         "--max-mb", "0.12", "--seconds", "30", "--json"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    time.sleep(2.0)  # subscribed before the first sample
    daemon = Daemon(config)
    daemon.start()
    stop = threading.Event()
    runner = threading.Thread(target=daemon.run, args=(stop,), kwargs={"duration": 25.0})
    runner.start()
    try:
        stdout, stderr = collect.communicate(timeout=40)
    finally:
        stop.set()
        runner.join(10)
    assert collect.returncode == 2, stderr
    assert "reached its allowance of 0.12 MB (--max-mb)" in stderr and "Traceback" not in stderr
    assert stdout.startswith(f"connected to {mosquitto.url}, collecting from edge/+\n")
    summary = json.loads(stdout.splitlines()[-1])
    rows = (out / "manifest.jsonl").read_text().splitlines()
    assert summary["images"] == len(rows) >= 1
    assert summary["bytes"] <= 120_000
    assert len(list((out / "images").iterdir())) == len(rows)
    coco = json.loads((out / "annotations.coco.json").read_text())
    assert len(coco["images"]) == len(rows)  # the exports were refreshed at the stop


def test_yolo_labels_clip_boxes_to_the_frame_and_drop_those_outside():
    row = {"width": 100, "height": 50, "objects": [
        {"class_id": 2, "box": [-10.0, 10.0, 30.0, 60.0], "score": 0.9},
        {"class_id": 1, "box": [120.0, 0.0, 140.0, 10.0], "score": 0.8}]}
    assert yolo_lines(row) == "2 0.150000 0.600000 0.300000 0.800000\n"


def test_a_lock_file_removed_under_a_waiting_run_is_not_taken_for_the_lock(tmp_path):
    """A run's close removes its lock file: a run that had opened that file just before
    would lock a file no one else can see, so the lock is taken on the path's own file."""
    from edge.collect.dataset import LOCK, _lock_against_other_writers, _same_file

    path = tmp_path / LOCK
    path.write_text("")
    stale = os.open(path, os.O_RDWR)
    path.unlink()
    path.write_text("")
    try:
        assert not _same_file(stale, path)
        handle = _lock_against_other_writers(tmp_path)
        assert _same_file(handle, path) and path.read_text() == str(os.getpid())
        os.close(handle)
    finally:
        os.close(stale)

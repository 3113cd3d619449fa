"""Ultralytics segmentation and pose exports convert with no options, as the detectors they
contain: the converted model's output is exactly the detector's rows of the source's first
output, and the mask branch and prototypes are gone from the graph. Oriented-box exports are
refused."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest

from edge.spec import spec_from_model
from tests.converters.cli_results import assert_refused
from tests.converters.tiny_models import TinySegment, export_onnx

SIZE = 64
NAMES = ("person", "car", "dog")


def _export(path: Path, task: str, network: TinySegment | None = None,
            end_to_end: bool = False, names: tuple[str, ...] = NAMES,
            metadata: bool = True, keypoints: str | None = None) -> Path:
    network = network or TinySegment()
    props = {"names": str(dict(enumerate(names))), "imgsz": str([SIZE, SIZE]), "stride": "4",
             "task": task, **({"end2end": "True"} if end_to_end else {}),
             **({"kpt_shape": keypoints} if keypoints else {})} if metadata else None
    return export_onnx(network, path, SIZE, SIZE, props,
                       outputs=1 if network.prototypes is None else 2)


def _outputs(path: Path, frame: np.ndarray, uint8_input: bool) -> list[np.ndarray]:
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    feed = frame if uint8_input else (frame[..., ::-1].transpose(0, 3, 1, 2) / 255.0)
    return session.run(None, {session.get_inputs()[0].name: feed.astype(
        np.uint8 if uint8_input else np.float32)})


ROWS = (slice(None), slice(0, 7))  # [N, 4+nc, A]: boxes and 3 classes


@pytest.mark.parametrize(("task", "network", "end_to_end", "kept", "convs"), [
    ("segment", TinySegment(), False, ROWS, 3),
    # not a Concat at the end: cut by a Slice, the coefficients still computed
    ("segment", TinySegment(sliced=True), False, ROWS, 4),
    ("pose", TinySegment(extra=51, prototypes=False), False, ROWS, 3),
    # shape inference cannot size its TopK rows: a Slice again
    ("segment", TinySegment(end_to_end=True), True, (slice(None), slice(None), slice(0, 6)), 4),
], ids=["segment", "segment-sliced", "pose", "segment-end-to-end"])
def test_a_segment_or_pose_export_converts_as_its_detector(tmp_path, edge, task, network,
                                                           end_to_end, kept, convs):
    source = _export(tmp_path / "yolo-seg.onnx", task, network, end_to_end)
    out = tmp_path / "seg.edge.onnx"
    result = edge("convert", source, "-o", out)
    assert result.returncode == 0, result.stderr
    assert f"an Ultralytics {task} export: read as its detector" in result.stdout + result.stderr
    model = onnx.load(str(out))
    spec = spec_from_model(model, str(out))
    assert spec.labels == NAMES
    assert spec.head == ("end_to_end" if end_to_end else "anchor_free")
    assert [o.name for o in model.graph.output] == ["output0"]
    frame = np.random.default_rng(1).integers(0, 256, (1, SIZE, SIZE, 3), np.uint8)
    converted = _outputs(out, frame, uint8_input=True)
    original = _outputs(source, frame, uint8_input=False)
    assert len(converted) == 1 and len(original) == (2 if network.prototypes else 1)
    np.testing.assert_allclose(converted[0], original[0][kept], atol=1e-5)
    # the prototypes (and, where the head ends in a Concat, the mask coefficients) do not run
    # on the device: their convolutions are gone; the detector's body has 3
    names = [n.name for n in model.graph.node if n.op_type == "Conv"]
    assert len(names) == convs, names


def test_an_oriented_box_export_is_refused(tmp_path, edge):
    source = _export(tmp_path / "yolo-obb.onnx", "obb", TinySegment(extra=1, prototypes=False))
    assert_refused(edge("convert", source, "-o", tmp_path / "x.onnx"),
                   "Ultralytics oriented-box export (task=obb)", "export a detection model")


@pytest.mark.parametrize(("task", "network", "keypoints"), [
    ("segment", TinySegment(), None),
    ("pose", TinySegment(extra=51, prototypes=False), "[17, 3]"),
])
def test_metadata_naming_another_class_count_than_the_rows_hold_is_not_used(
        tmp_path, edge, task, network, keypoints):
    """The rows less the extra ones (the prototypes' channels, kpt_shape's values) say 3
    classes; names of 5 would read 2 mask coefficients or keypoint values as classes."""
    source = _export(tmp_path / "wrong-names.onnx", task, network,
                     names=("a", "b", "c", "d", "e"), keypoints=keypoints)
    out = tmp_path / "x.onnx"
    assert_refused(edge("convert", source, "-o", out),
                   f"this Ultralytics {task} export's metadata names 5 classes, but output0 holds "
                   "3", "the names are not used; pass --labels with its 3 class names")
    result = edge("convert", source, "-o", out, "--labels", "person,car,dog")
    assert result.returncode == 0, result.stderr
    assert "Its metadata names 5 classes, but output0 holds 3" in result.stdout
    spec = spec_from_model(onnx.load(str(out)), str(out))
    assert (spec.labels, spec.head) == (NAMES, "anchor_free")
    frame = np.random.default_rng(1).integers(0, 256, (1, SIZE, SIZE, 3), np.uint8)
    np.testing.assert_allclose(_outputs(out, frame, True)[0],
                               _outputs(source, frame, False)[0][ROWS], atol=1e-5)


def test_a_segment_export_without_metadata_converts_with_its_labels(tmp_path, edge):
    source = _export(tmp_path / "bare-seg.onnx", "segment", metadata=False)
    out = tmp_path / "x.onnx"
    structure = ("outputs output0 (39 x 256 a frame) and output1 (32 x 16 x 16 a frame) look "
                 "like an Ultralytics segmentation export without its metadata: 4 box rows, 3 "
                 "class rows and 32 mask coefficients")
    assert_refused(edge("convert", source, "-o", out), structure,
                   "pass --labels with its 3 class names")
    assert_refused(edge("convert", source, "-o", out, "--labels", "a,b"),
                   "2 labels were given", structure)
    result = edge("convert", source, "-o", out, "--labels", "person,car,dog")
    assert result.returncode == 0, result.stderr
    assert "read as its detector (rows 0..6 of output0)" in result.stdout
    model = onnx.load(str(out))
    assert [o.name for o in model.graph.output] == ["output0"]
    frame = np.random.default_rng(1).integers(0, 256, (1, SIZE, SIZE, 3), np.uint8)
    np.testing.assert_allclose(_outputs(out, frame, True)[0],
                               _outputs(source, frame, False)[0][ROWS], atol=1e-5)
    # labels for every row but the boxes: the mask coefficients would be read as scores
    many = ",".join(f"c{i}" for i in range(35))
    assert_refused(edge("convert", source, "-o", tmp_path / "all-rows.onnx", "--labels", many),
                   "output output0's class scores run from ",
                   "(mask coefficients, keypoints), pass --labels with the class names alone")
    assert not (tmp_path / "all-rows.onnx").exists()


def test_cropping_a_detectors_frames_is_said_to_leave_their_sides_out(tmp_path, edge):
    result = edge("convert", _export(tmp_path / "seg.onnx", "segment"), "-o",
                  tmp_path / "x.onnx", "--resize", "crop")
    assert result.returncode == 0, result.stderr
    assert "--resize crop on a detector: only the centre of each frame" in result.stdout
    lines = edge("convert", _export(tmp_path / "seg.onnx", "segment"), "-o",
                 tmp_path / "y.onnx", "--resize", "text-line")
    assert lines.returncode == 0, lines.stderr
    assert ("--resize text-line on a detector: frames are made as PaddleOCR makes text lines"
            in lines.stdout)


@pytest.mark.parametrize(("keypoint_values", "if_pose"), [(51, "3 or 20"), (34, "3")])
def test_a_pose_export_without_metadata_converts_with_its_labels(tmp_path, edge,
                                                                 keypoint_values, if_pose):
    """[N, 4+nc+K, A]: with --labels naming nc classes, the rest is 17 keypoints of 3 (or 2)
    values, and the model reads as its detector; before, 3 labels were refused as not the
    output's 3 + K "classes"."""
    network = TinySegment(extra=keypoint_values, prototypes=False)
    source = _export(tmp_path / "bare-pose.onnx", "pose", network, metadata=False)
    out = tmp_path / "x.onnx"
    # without labels the rows cannot tell keypoints from classes: both readings are offered
    assert_refused(edge("convert", source, "-o", out),
                   f"pass --labels (a file or a comma list) with its {3 + keypoint_values} class "
                   "names; or, for an Ultralytics pose export stripped of its metadata, its own "
                   f"{if_pose} class names (the 17 keypoints' values after them are then cut)")
    result = edge("convert", source, "-o", out, "--labels", "person,car,dog")
    assert result.returncode == 0, result.stderr
    values = "x, y and visibility" if keypoint_values == 51 else "x and y"
    assert (f"output output0 ({7 + keypoint_values} x 256 a frame) with 3 class(es) looks like "
            "an Ultralytics pose export without its metadata: 4 box rows, 3 class row(s) and "
            f"{keypoint_values} keypoint values (17 keypoints of {values}): read as its "
            "detector (rows 0..6); the keypoints are left out") in result.stdout
    spec = spec_from_model(onnx.load(str(out)), str(out))
    assert (spec.labels, spec.head) == (NAMES, "anchor_free")
    frame = np.random.default_rng(1).integers(0, 256, (1, SIZE, SIZE, 3), np.uint8)
    np.testing.assert_allclose(_outputs(out, frame, True)[0],
                               _outputs(source, frame, False)[0][ROWS], atol=1e-5)
    # labels for every row but the boxes: the keypoints would be read as scores
    many = ",".join(f"c{i}" for i in range(3 + keypoint_values))
    assert_refused(edge("convert", source, "-o", tmp_path / "all-rows.onnx", "--labels", many),
                   "output output0's class scores run from ",
                   "(mask coefficients, keypoints), pass --labels with the class names alone")

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
            end_to_end: bool = False) -> Path:
    network = network or TinySegment()
    props = {"names": str(dict(enumerate(NAMES))), "imgsz": str([SIZE, SIZE]), "stride": "4",
             "task": task, **({"end2end": "True"} if end_to_end else {})}
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

"""YOLOX's own ONNX export writes raw grid offsets ([N, A, 5+nc]: x y offsets and log w h in
cells), which read as the `yolov5` layout would put every box in the top-left corner without
an error. `edge convert` recognises them and appends the grid decode; the converted output is
checked here against a decode written out level by level."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import torch

from converters.qdq_cpu import unfolded_batchnorms
from edge.spec import spec_from_model
from tests.converters.cli_results import assert_refused
from tests.converters.tiny_models import TinyDetector, TinyYolox, export_onnx

SIZE = 64


def _decoded_by_hand(raw: np.ndarray) -> np.ndarray:
    """[N, A, 5+nc] raw -> cx cy w h in pixels, level by level, cell by cell."""
    out = raw.astype(np.float64).copy()
    anchor = 0
    for stride in (8, 16, 32):
        for row in range(SIZE // stride):
            for column in range(SIZE // stride):
                out[:, anchor, 0] = (raw[:, anchor, 0] + column) * stride
                out[:, anchor, 1] = (raw[:, anchor, 1] + row) * stride
                out[:, anchor, 2:4] = np.exp(raw[:, anchor, 2:4]) * stride
                anchor += 1
    assert anchor == raw.shape[1]
    return out


def _frames() -> np.ndarray:
    return np.random.default_rng(0).integers(0, 256, (3, SIZE, SIZE, 3), np.uint8)


def test_a_yolox_export_with_raw_grid_offsets_gets_its_decode(tmp_path, edge):
    torch.manual_seed(0)
    network = TinyYolox().eval()
    source = export_onnx(network, tmp_path / "yolox.onnx", SIZE, SIZE)
    out = tmp_path / "converted.onnx"
    result = edge("convert", source, "-o", out, "--labels", "a,b,c")
    assert result.returncode == 0, result.stderr
    assert ("note: output output0 holds raw grid offsets (YOLOX's export without "
            "--decode_in_inference): appended the grid decode (strides 8, 16, 32)"
            in result.stdout)
    # a user check: YOLOX's own preprocessing read as applied, next to the assumed note
    assert ("YOLOX's own models take BGR pixels 0..255 as they are, letterboxed at the top "
            "left, which is not what is assumed here" in result.stdout)
    assert "note: assumed the network takes RGB channel order" in result.stdout
    given = edge("convert", source, "-o", tmp_path / "yolox-own.onnx", "--labels", "a,b,c",
                 "--network-order", "BGR", "--mean", "0", "--std", "0.00392157", "--resize",
                 "letterbox-top-left")
    assert given.returncode == 0, given.stderr
    assert "appended the grid decode" in given.stdout
    assert "YOLOX's own models" not in given.stdout and "assumed" not in given.stdout
    spec = spec_from_model(onnx.load(str(out)), str(out))
    assert (spec.head, spec.output) == ("yolov5", "output0")
    session = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    for frame in _frames():
        rgb = torch.from_numpy(frame[None, ..., ::-1].copy()).permute(0, 3, 1, 2).float() / 255
        with torch.no_grad():
            expected = _decoded_by_hand(network(rgb).numpy())
        converted = session.run(None, {spec.input.name: frame[None]})[0]
        np.testing.assert_allclose(converted, expected, rtol=1e-4, atol=1e-3)
        assert converted[0, :, 0].max() > SIZE / 2  # centres reach across the input
    # the decode's stride Mul after the grid Add is no BatchNorm for the cpu profile to name
    assert not unfolded_batchnorms(onnx.load(str(out)))


def test_a_decoded_export_of_the_same_anchor_count_is_left_as_it_is(tmp_path, edge):
    torch.manual_seed(0)
    source = export_onnx(TinyYolox(decoded=True), tmp_path / "decoded.onnx", SIZE, SIZE)
    out = tmp_path / "converted.onnx"
    result = edge("convert", source, "-o", out, "--labels", "a,b,c")
    assert result.returncode == 0, result.stderr
    assert "raw grid offsets" not in result.stdout
    assert not any("__grid" in n.name for n in onnx.load(str(out)).graph.node)


def test_head_yolox_is_refused_where_the_output_is_no_raw_yolox_head(tmp_path, edge):
    torch.manual_seed(0)
    decoded = export_onnx(TinyYolox(decoded=True), tmp_path / "decoded.onnx", SIZE, SIZE)
    assert_refused(edge("convert", decoded, "-o", tmp_path / "x.onnx", "--labels", "a,b,c",
                        "--head", "yolox"),
                   "--head yolox: the box centres in output output0 reach",
                   "px, so they are decoded already (raw offsets stay within a few cells); "
                   "leave --head out")
    other = export_onnx(TinyDetector(3, "yolov5"), tmp_path / "v5.onnx", SIZE, SIZE)
    assert_refused(edge("convert", other, "-o", tmp_path / "x.onnx", "--labels", "a,b,c",
                        "--head", "yolox"),
                   "--head yolox: output output0 has 256 anchors, but a YOLOX head at 64x64 "
                   "has 84 (one a cell at strides 8, 16, 32)")
    assert not (tmp_path / "x.onnx").exists()


def test_a_raw_yolox_head_counts_its_classes_from_its_columns(tmp_path, edge):
    """One label too many (a COCO list with __background__) would fit [N, A, 4+nc] and read
    the raw offsets as pixels; no labels would leave two layouts to choose from."""
    torch.manual_seed(0)
    source = export_onnx(TinyYolox(), tmp_path / "yolox.onnx", SIZE, SIZE)
    assert_refused(edge("convert", source, "-o", tmp_path / "x.onnx", "--labels",
                        "__background__,a,b,c"),
                   "4 labels were given but the model's output output0 (84 x 8 a frame) has 3 "
                   "classes; pass exactly 3 labels")
    assert_refused(edge("convert", source, "-o", tmp_path / "x.onnx"),
                   "the model's labels are unknown; pass --labels (a file or a comma list) with "
                   "its 3 class names")


def test_a_decoded_yolox_calibrates_with_its_decode_in_float(tmp_path, edge):
    torch.manual_seed(0)
    fp32 = tmp_path / "fp32.onnx"
    assert edge("convert", export_onnx(TinyYolox(), tmp_path / "yolox.onnx", SIZE, SIZE),
                "-o", fp32, "--labels", "a,b,c").returncode == 0
    int8 = tmp_path / "int8.onnx"
    result = edge("calibrate", fp32, "--images", "synthetic://shapes", "-o", int8,
                  "--max-images", "16", "--method", "minmax")
    assert result.returncode == 0, result.stderr
    graph = onnx.load(str(int8)).graph
    producers = {o: n.op_type for n in graph.node for o in n.output}
    for node in graph.node:
        if "__grid" in node.name:
            assert all(producers.get(i) != "DequantizeLinear" for i in node.input), node.name


def test_head_yolox_on_another_layout_is_told_in_its_own_words(tmp_path, edge):
    other = export_onnx(TinyDetector(3, "anchor_free"), tmp_path / "v8.onnx", SIZE, SIZE)
    result = edge("convert", other, "-o", tmp_path / "x.onnx", "--labels", "a,b,c",
                  "--head", "yolox")
    assert_refused(result, "--head yolox: no output is a YOLOX head ([N, A, 5+nc]; outputs: "
                           "output0 [1, 7, 256]); leave --head out")
    assert "'yolov5'" not in result.stderr

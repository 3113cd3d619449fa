"""A PP-PicoDet-style GFL head (2 outputs per level: sigmoid class scores and box-side
distributions) is folded into one anchor-free output that matches the exporter's own decode,
and its PaddlePaddle labels are read from the `character` metadata."""

from __future__ import annotations

import math

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from converters.convert import ConvertOptions, convert
from converters.gfl_head import OUTPUT, fold_gfl_head, gfl_levels
from converters.labels import labels_from_paddle_metadata

HEIGHT, WIDTH, CLASSES, BINS = 64, 96, 3, 8
STRIDES = (8, 16, 32, 64)
LABELS = ("text", "title", "figure")


def picodet_like(classes: int = CLASSES) -> onnx.ModelProto:
    """Per stride: a 1x1 strided Conv to [1, C, rows, cols], to [1, rows*cols, C]; scores get a
    Sigmoid, boxes 4 * BINS channels (what paddle2onnx writes for PicoDet, minus the backbone)."""
    rng = np.random.default_rng(0)
    nodes, initializers, outputs = [], [], []
    for level, stride in enumerate(STRIDES):
        rows, cols = math.ceil(HEIGHT / stride), math.ceil(WIDTH / stride)
        for kind, channels in (("scores", classes), ("boxes", 4 * BINS)):
            weight = f"w_{kind}{level}"
            initializers += [
                numpy_helper.from_array(rng.normal(0, 2, (channels, 3, 1, 1)).astype(np.float32),
                                        weight),
                numpy_helper.from_array(np.array([1, rows * cols, channels], np.int64),
                                        f"shape_{kind}{level}")]
            conv, moved = f"conv_{kind}{level}", f"moved_{kind}{level}"
            nodes += [helper.make_node("Conv", ["image", weight], [conv], strides=[stride] * 2),
                      helper.make_node("Transpose", [conv], [moved], perm=[0, 2, 3, 1])]
            name = f"{kind}{level}"
            if kind == "scores":
                nodes += [helper.make_node("Sigmoid", [moved], [f"sig{level}"]),
                          helper.make_node("Reshape", [f"sig{level}", f"shape_{kind}{level}"],
                                           [name])]
            else:
                nodes.append(helper.make_node("Reshape", [moved, f"shape_{kind}{level}"], [name]))
            outputs.append(helper.make_tensor_value_info(name, TensorProto.FLOAT,
                                                         [1, rows * cols, channels]))
    graph = helper.make_graph(nodes, "picodet", [helper.make_tensor_value_info(
        "image", TensorProto.FLOAT, [1, 3, HEIGHT, WIDTH])], outputs, initializers)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.metadata_props.add(key="character", value="\n".join(LABELS[:classes]))
    return model


def exporter_decode(raw: dict[str, np.ndarray]) -> np.ndarray:
    """PicoDet's post-processing as the rapid-layout package writes it, to cx cy w h + scores."""
    rows_out = []
    for level, stride in enumerate(STRIDES):
        scores, boxes = raw[f"scores{level}"][0], raw[f"boxes{level}"][0]
        dist = boxes.reshape(-1, BINS).astype(np.float64)
        prob = np.exp(dist - dist.max(1, keepdims=True))
        prob /= prob.sum(1, keepdims=True)
        sides = (prob * np.arange(BINS)).sum(1).reshape(-1, 4) * stride
        hh, ww = np.meshgrid(np.arange(HEIGHT / stride), np.arange(WIDTH / stride),
                             indexing="ij")
        centre = np.stack([(ww.ravel() + 0.5) * stride, (hh.ravel() + 0.5) * stride] * 2, 1)
        corners = centre + np.array([-1, -1, 1, 1]) * sides
        cxcywh = np.concatenate([(corners[:, :2] + corners[:, 2:]) / 2,
                                 corners[:, 2:] - corners[:, :2]], 1)
        rows_out.append(np.concatenate([cxcywh, scores], 1))
    return np.concatenate(rows_out)


def test_the_folded_head_matches_the_exporters_decode():
    model = picodet_like()
    levels = gfl_levels(model)
    assert levels is not None
    assert [(lv.stride, lv.rows, lv.columns, lv.bins) for lv in levels] == [
        (8, 8, 12, 8), (16, 4, 6, 8), (32, 2, 3, 8), (64, 1, 2, 8)]
    folded = fold_gfl_head(model, levels)
    onnx.checker.check_model(folded, full_check=True)
    image = np.random.default_rng(1).uniform(-1, 1, (1, 3, HEIGHT, WIDTH)).astype(np.float32)
    raw_session = ort.InferenceSession(model.SerializeToString(),
                                       providers=["CPUExecutionProvider"])
    raw = dict(zip([o.name for o in raw_session.get_outputs()],
                   raw_session.run(None, {"image": image}), strict=True))
    (out,) = ort.InferenceSession(folded.SerializeToString(),
                                  providers=["CPUExecutionProvider"]).run([OUTPUT],
                                                                          {"image": image})
    assert out.shape == (1, 96 + 24 + 6 + 2, 4 + CLASSES)
    np.testing.assert_allclose(out[0], exporter_decode(raw), rtol=1e-5, atol=1e-3)


def test_models_that_are_not_a_gfl_head_are_left_alone():
    model = picodet_like()
    for node in model.graph.node:  # without the sigmoid, nothing says which output scores
        if node.op_type == "Sigmoid":
            node.op_type = "Relu"
    assert gfl_levels(model) is None
    one_output = picodet_like()
    del one_output.graph.output[1:]
    assert gfl_levels(one_output) is None


def test_convert_folds_the_head_and_reads_paddle_labels(tmp_path):
    source = tmp_path / "picodet.onnx"
    onnx.save(picodet_like(), str(source))
    converted = convert(source, ConvertOptions())
    assert converted.spec.head == "anchor_free_transposed"
    assert converted.spec.labels == LABELS and converted.spec.task == "detect"
    assert any("folded the GFL (PicoDet) head" in note for note in converted.notes)


def test_a_folded_head_is_not_mistaken_for_yolov5_by_one_label_too_few(tmp_path):
    """The folded [N, A, 4+3] output is also YOLOv5's [N, A, 5+2] by shape: two labels used to
    make it a YOLOv5 head whose first class was read as objectness. The converter built the
    output, so its layout is known and the label count is checked against it."""
    from converters.errors import ConversionError

    source = tmp_path / "picodet.onnx"
    onnx.save(picodet_like(), str(source))
    # a user check: the output's name alone meant nothing beside the model's own outputs
    with pytest.raises(ConversionError, match=r"2 labels were given but the output "
                       rf"{OUTPUT}, the one edge convert builds from its GFL head's outputs, "
                       r".* has 3 classes; pass exactly 3 labels"):
        convert(source, ConvertOptions(labels=LABELS[:2]))
    with pytest.raises(ConversionError, match=r"--head yolov5: .* builds from its GFL head, "
                       r"anchor_free_transposed .* leave --head out"):
        convert(source, ConvertOptions(head="yolov5"))
    named = convert(source, ConvertOptions(labels=("a", "b", "c"),
                                           head="anchor_free_transposed"))
    assert named.spec.labels == ("a", "b", "c") and named.spec.head == "anchor_free_transposed"


@pytest.mark.parametrize(("text", "labels"), [
    ("text\ntitle\n", ("text", "title")),
    ("", None),
    ("a\na\n", None),  # not class names: repeated
])
def test_paddle_labels_from_metadata(text, labels):
    model = picodet_like()
    del model.metadata_props[:]
    model.metadata_props.add(key="character", value=text)
    assert labels_from_paddle_metadata(model) == labels


def test_metadata_labels_that_miss_a_class_are_named_as_the_metadata(tmp_path):
    """No --labels given: the count that does not fit is the `character` metadata's."""
    from converters.convert import ConvertOptions, convert
    from converters.errors import ConversionError

    model = picodet_like()
    del model.metadata_props[:]
    model.metadata_props.add(key="character", value="text\ntitle\n")  # 2 names, 3 classes
    source = tmp_path / "picodet.onnx"
    onnx.save(model, str(source))
    with pytest.raises(ConversionError, match=r"the model's metadata names 2 classes but the "
                       rf"output {OUTPUT}, the one edge convert builds from its GFL head's "
                       r"outputs, .* has 3 classes; pass exactly 3 labels with "
                       "--labels"):
        convert(source, ConvertOptions())

"""The int8 stem on pixel quads computes what the float stem it replaces computes.

Each case builds the `cpu` profile's stem by hand (uint8 NHWC frame -> Transpose -> Gather ->
Cast -> normalisation -> float Conv -> Relu -> QuantizeLinear -> int8 Conv) with first-conv
weights that the stem's int8 weights (within +-64) represent exactly, so any difference after
the rewrite would come from the re-indexing, which must be exact, padding included. The frames
are full-range uint8 and the first conv's weights reach the limit, so on a CPU that multiplies
uint8 by int8 with saturation (x86 without VNNI) these fail if the limit is wrong. The second
conv's weights stay within it too: saturating there, the original and the re-indexed conv would
clip different pairs of products, which says nothing about the re-indexing.
"""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from converters.pixel_stem import pixel_stem
from converters.weights import U8S8_WEIGHT_LIMIT

HEIGHT, WIDTH = 24, 32
STEM, SECOND = 8, 16  # output channels of the two convs
ACTIVATION_SCALE = 0.05  # of the stem's uint8 output, zero point 0


def stem_model(first_kernel: int = 3, first_pad: int = 1, second_kernel: int = 3,
               second_pad: int = 1, mean: tuple[float, ...] = (0.0,), scale: float = 1.0,
               first_stride: int = 2, width: int = WIDTH, activation: str = "relu",
               seed: int = 0) -> onnx.ModelProto:
    rng = np.random.default_rng(seed)
    limit = U8S8_WEIGHT_LIMIT
    w_scale = rng.uniform(0.5, 1.5, STEM).astype(np.float32) / limit / scale
    steps = rng.integers(-limit, limit + 1, (STEM, 3, first_kernel, first_kernel))
    steps[:, 0, 0, 0] = limit  # the largest step sets the scale, so int8 holds these exactly
    first_weight = (steps * w_scale[:, None, None, None]).astype(np.float32)
    first_bias = (rng.integers(-300, 300, STEM) * w_scale * scale).astype(np.float32)
    second_weight = rng.integers(-limit, limit + 1, (SECOND, STEM, second_kernel, second_kernel),
                                 np.int8)
    constants = {
        "swap": np.array([2, 1, 0], np.int64),
        "mean": np.array(mean, np.float32).reshape(1, -1, 1, 1),
        "scale": np.array(scale, np.float32),
        "w0": first_weight, "b0": first_bias,
        "a_scale": np.array(ACTIVATION_SCALE, np.float32), "a_zero": np.array(0, np.uint8),
        "w1": second_weight, "w1_scale": np.full(SECOND, 0.002, np.float32),
        "w1_zero": np.zeros(SECOND, np.int8),
        "b1": rng.integers(-500, 500, SECOND).astype(np.int32),
        "b1_scale": np.full(SECOND, 0.002 * ACTIVATION_SCALE, np.float32),
        "b1_zero": np.zeros(SECOND, np.int32),
        "y_scale": np.array(0.1, np.float32), "y_zero": np.array(0, np.uint8),
        "c_scale": np.array(0.08, np.float32), "c_zero": np.array(128, np.uint8),
        "s_scale": np.array(1 / 255, np.float32),
    }
    nodes = [
        helper.make_node("Transpose", ["images"], ["nchw"], perm=[0, 3, 1, 2]),
        helper.make_node("Gather", ["nchw", "swap"], ["rgb"], axis=1),
        helper.make_node("Cast", ["rgb"], ["pixels"], to=TensorProto.FLOAT),
        helper.make_node("Sub", ["pixels", "mean"], ["centred"]),
        helper.make_node("Mul", ["centred", "scale"], ["normalised"]),
        helper.make_node("Conv", ["normalised", "w0", "b0"], ["c0"], name="stem0",
                         kernel_shape=[first_kernel, first_kernel],
                         strides=[first_stride, first_stride], pads=[first_pad] * 4),
        *(_relu() if activation == "relu" else _silu()),
        helper.make_node("DequantizeLinear", ["q0", "a_scale", "a_zero"], ["d0"]),
        helper.make_node("DequantizeLinear", ["w1", "w1_scale", "w1_zero"], ["w1f"], axis=0),
        helper.make_node("DequantizeLinear", ["b1", "b1_scale", "b1_zero"], ["b1f"], axis=0),
        helper.make_node("Conv", ["d0", "w1f", "b1f"], ["c1"], name="stem1",
                         kernel_shape=[second_kernel, second_kernel], strides=[2, 2],
                         pads=[second_pad] * 4),
        helper.make_node("QuantizeLinear", ["c1", "y_scale", "y_zero"], ["q1"]),
        helper.make_node("DequantizeLinear", ["q1", "y_scale", "y_zero"], ["features"]),
    ]
    graph = helper.make_graph(
        nodes, "stem", [helper.make_tensor_value_info("images", TensorProto.UINT8,
                                                      [1, HEIGHT, width, 3])],
        [helper.make_tensor_value_info("features", TensorProto.FLOAT, ["n", "c", "h", "w"])],
        [numpy_helper.from_array(value, name) for name, value in constants.items()
         if any(name in node.input for node in nodes)])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model


def _relu() -> list[onnx.NodeProto]:
    return [helper.make_node("Relu", ["c0"], ["r0"]),
            helper.make_node("QuantizeLinear", ["r0", "a_scale", "a_zero"], ["q0"])]


def _silu() -> list[onnx.NodeProto]:
    """SiLU as ONNX Runtime's QDQ quantizer writes it: x * sigmoid(x), each tensor quantized."""
    return [
        helper.make_node("QuantizeLinear", ["c0", "c_scale", "c_zero"], ["cq"]),
        helper.make_node("DequantizeLinear", ["cq", "c_scale", "c_zero"], ["cd"]),
        helper.make_node("Sigmoid", ["cd"], ["s"]),
        helper.make_node("QuantizeLinear", ["s", "s_scale", "a_zero"], ["sq"]),
        helper.make_node("DequantizeLinear", ["sq", "s_scale", "a_zero"], ["sd"]),
        helper.make_node("Mul", ["cd", "sd"], ["m"]),
        helper.make_node("QuantizeLinear", ["m", "a_scale", "a_zero"], ["q0"]),
    ]


def run(model: onnx.ModelProto, frame: np.ndarray) -> np.ndarray:
    options = ort.SessionOptions()
    options.log_severity_level = 3
    session = ort.InferenceSession(model.SerializeToString(), options,
                                   providers=["CPUExecutionProvider"])
    return np.asarray(session.run(None, {"images": frame})[0])


@pytest.mark.parametrize("first_kernel, first_pad, second_kernel, second_pad, mean, activation", [
    (3, 1, 3, 1, (0.0,), "relu"),  # the demo detector
    (3, 1, 3, 1, (0.0,), "silu"),  # Ultralytics YOLOv8/11
    (6, 2, 3, 1, (0.0,), "silu"),  # YOLOv5 v6+
    (5, 2, 1, 0, (0.0,), "relu"),
    (2, 0, 3, 1, (0.0,), "relu"),
    (3, 1, 3, 1, (128.0, 128.0, 128.0), "relu"),  # a whole-pixel mean: the input zero point
])
def test_rewrite_computes_the_same_features(first_kernel, first_pad, second_kernel, second_pad,
                                            mean, activation):
    model = stem_model(first_kernel, first_pad, second_kernel, second_pad, mean,
                       activation=activation)
    rewritten = onnx.ModelProto()
    rewritten.CopyFrom(model)
    assert pixel_stem(rewritten) == ""
    onnx.checker.check_model(rewritten, full_check=True)
    ops = [n.op_type for n in rewritten.graph.node]
    assert "Cast" not in ops and "Gather" not in ops and ops[:2] == ["Reshape", "Transpose"]
    used = {name for node in rewritten.graph.node for name in node.input}
    assert {i.name for i in rewritten.graph.initializer} <= used  # the float stem's are gone
    frame = np.random.default_rng(1).integers(0, 256, (1, HEIGHT, WIDTH, 3), np.uint8)
    expected, got = run(model, frame), run(rewritten, frame)
    assert got.shape == expected.shape == (1, SECOND, HEIGHT // 4, WIDTH // 4)
    steps = np.abs(got - expected) / 0.1
    assert steps.max() <= 1.0 + 1e-6  # float vs integer accumulation may round one step apart
    assert (steps < 0.5).mean() > 0.99
    assert expected.std() > 1.0  # the features are not trivially saturated


def test_normalisation_and_channel_swap_fold_into_the_weights():
    model = stem_model(scale=1 / 255)
    rewritten = onnx.ModelProto()
    rewritten.CopyFrom(model)
    assert pixel_stem(rewritten) == ""
    frame = np.random.default_rng(2).integers(0, 256, (1, HEIGHT, WIDTH, 3), np.uint8)
    frame[..., 0] = 0  # blue off: a swap applied the wrong way round would show
    expected, got = run(model, frame), run(rewritten, frame)
    assert np.abs(got - expected).max() <= 0.1 + 1e-6


@pytest.mark.parametrize("changes, keep_float, reason", [
    ({"width": 30}, (), "multiple of 4"),
    ({"mean": (123.7, 116.3, 103.5)}, (), "whole pixel value"),
    ({"first_stride": 1}, (), "stride 2 across"),
    ({}, ("stem1",), "to stay float"),
])
def test_stems_it_cannot_rewrite_are_left_untouched(changes, keep_float, reason):
    model = stem_model(**changes)
    before = model.SerializeToString()
    assert reason in pixel_stem(model, keep_float=keep_float)
    assert model.SerializeToString() == before


def test_a_pooling_stem_is_left_untouched():
    """ResNet-style: conv, ReLU, then MaxPool; the pair layout would feed the pool mixed pixels."""
    model = stem_model()
    second = next(n for n in model.graph.node if n.name == "stem1")
    model.graph.node.insert(list(model.graph.node).index(second), helper.make_node(
        "MaxPool", ["d0"], ["pooled"], kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1]))
    second.input[0] = "pooled"
    before = model.SerializeToString()
    assert "reaches MaxPool" in pixel_stem(model)
    assert model.SerializeToString() == before


@pytest.mark.parametrize("activation", ["relu", "silu"])
def test_tensors_in_the_pair_layout_are_renamed(activation):
    """A tensor that kept its FP32 name in another shape was compared with the FP32 one by name
    (layer SQNR for --keep-float and the report: a broadcast error on a YOLOv8n)."""
    model = stem_model(activation=activation)
    rewritten = onnx.ModelProto()
    rewritten.CopyFrom(model)
    assert pixel_stem(rewritten) == ""
    before = {o for n in model.graph.node for o in n.output}
    after = {o for n in rewritten.graph.node for o in n.output}
    frame = np.random.default_rng(2).integers(0, 256, (1, HEIGHT, WIDTH, 3), np.uint8)
    shared = sorted((before & after) - {"features", "c1", "q1", "w1f", "b1f"})
    assert shared == []  # nothing between the two convs keeps its name (weights aside)
    (first,) = [n.output[0] for n in rewritten.graph.node if n.name == "stem0"]
    assert first.endswith("_pairs") and "q0_pairs" in after
    exposed = onnx.ModelProto()
    exposed.CopyFrom(rewritten)
    exposed.graph.output.append(helper.make_tensor_value_info(first, TensorProto.FLOAT, None))
    session = ort.InferenceSession(exposed.SerializeToString(), providers=["CPUExecutionProvider"])
    pairs = session.run([first], {"images": frame})[0]
    assert pairs.shape == (1, 2 * STEM, HEIGHT // 2, WIDTH // 4)

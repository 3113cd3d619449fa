"""Per-channel arithmetic an exporter left behind a conv or a dense layer (an unfused
BatchNorm, Caffe's Scale, Keras' Dense -> BatchNorm) is folded into the layer: the same
function, one op where there were up to five."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from converters.affine_folding import affine_folded_into_layers

RNG = np.random.default_rng(7)


def _model(tail: list[tuple[str, np.ndarray]], channels_last: bool = False,
           extra_reader: bool = False, bias: bool = True) -> onnx.ModelProto:
    """x [1, 3, 8, 8] -> Conv(4) [-> Transpose to NHWC] -> each (op, constant) of `tail` ->
    y; `extra_reader` makes the conv's output a second graph output too."""
    weights = [numpy_helper.from_array(RNG.normal(0, 1, (4, 3, 3, 3)).astype(np.float32), "w")]
    conv_inputs = ["x", "w"]
    if bias:
        weights.append(numpy_helper.from_array(RNG.normal(0, 1, (4,)).astype(np.float32), "b"))
        conv_inputs.append("b")
    nodes = [helper.make_node("Conv", conv_inputs, ["conv"], name="conv", pads=[1] * 4)]
    current = "conv"
    if channels_last:
        nodes.append(helper.make_node("Transpose", ["conv"], ["nhwc"], name="to_nhwc",
                                      perm=[0, 2, 3, 1]))
        current = "nhwc"
    for index, (op, constant) in enumerate(tail):
        weights.append(numpy_helper.from_array(constant.astype(np.float32), f"c{index}"))
        out = "y" if index == len(tail) - 1 else f"t{index}"
        nodes.append(helper.make_node(op, [current, f"c{index}"], [out], name=f"{op}{index}"))
        current = out
    shape = [1, 8, 8, 4] if channels_last else [1, 4, 8, 8]
    outputs = [helper.make_tensor_value_info("y", TensorProto.FLOAT, shape)]
    if extra_reader:
        outputs.append(helper.make_tensor_value_info("conv", TensorProto.FLOAT, [1, 4, 8, 8]))
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info(
        "x", TensorProto.FLOAT, [1, 3, 8, 8])], outputs, weights)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def _run(model: onnx.ModelProto, x: np.ndarray) -> np.ndarray:
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return session.run(["y"], {"x": x})[0]


def _vector(shape: tuple[int, ...], low: float = 0.1, high: float = 3.0) -> np.ndarray:
    return RNG.uniform(low, high, shape)


@pytest.mark.parametrize(("tail", "channels_last", "bias"), [
    # tf2onnx/Caffe: Mul then Add per channel, as [C, 1, 1] and [1, C, 1, 1]
    ([("Mul", _vector((4, 1, 1))), ("Add", _vector((1, 4, 1, 1), -1, 1))], False, True),
    # a conv without bias, a scalar Mul, a Sub of a mean
    ([("Sub", _vector((4, 1, 1))), ("Mul", np.array(0.5))], False, False),
    # open-nsfw's PyTorch re-export: NHWC behind a Transpose, bias, mean, scale, shift
    ([("Add", _vector((1, 1, 1, 4))), ("Sub", _vector((1, 1, 1, 4))),
      ("Mul", _vector((1, 1, 1, 4))), ("Add", _vector((4,)))], True, True),
])
def test_per_channel_arithmetic_behind_a_conv_is_folded_into_it(tail, channels_last, bias):
    model = _model(tail, channels_last, bias=bias)
    folded, count = affine_folded_into_layers(model)
    assert count == len(tail)
    assert [n.op_type for n in folded.graph.node] == (
        ["Conv", "Transpose"] if channels_last else ["Conv"])
    onnx.checker.check_model(folded, full_check=True)
    x = RNG.normal(0, 1, (1, 3, 8, 8)).astype(np.float32)
    np.testing.assert_allclose(_run(folded, x), _run(model, x), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize(("tail", "kwargs"), [
    ([("Mul", _vector((8,)))], {}),                  # broadcasts over W, not the channels
    ([("Mul", _vector((1, 4, 8, 8)))], {}),          # one factor per value, not per channel
    ([("Mul", _vector((4, 1, 1)))], {"extra_reader": True}),  # the raw output is read too
    ([("Mul", _vector((1, 1, 8, 1)))], {"channels_last": True}),  # NHWC: over W, not C
])
def test_arithmetic_that_is_not_per_channel_or_not_alone_stays(tail, kwargs):
    model = _model(tail, **kwargs)
    folded, count = affine_folded_into_layers(model)
    assert count == 0
    assert [n.op_type for n in folded.graph.node] == [n.op_type for n in model.graph.node]


def test_a_sub_from_a_constant_is_not_a_shift():
    model = _model([("Sub", _vector((4, 1, 1)))])
    sub = model.graph.node[-1]
    sub.input[:] = [sub.input[1], sub.input[0]]  # c - conv: a negation, not a bias
    assert affine_folded_into_layers(model)[1] == 0


def _dense(layer: str, tail: list[tuple[str, np.ndarray]], **attributes: float) -> onnx.ModelProto:
    """x [2, 6] -> `layer` ("matmul", "matmul+bias", "gemm", "gemm+bias", "gemm_t+bias": B
    transposed) to 5 outputs -> each (op, constant) of `tail` -> y."""
    weight = RNG.normal(0, 1, (5, 6) if layer.startswith("gemm_t") else (6, 5))
    initializers = [numpy_helper.from_array(weight.astype(np.float32), "w"),
                    numpy_helper.from_array(RNG.normal(0, 1, (5,)).astype(np.float32), "b")]
    with_bias = layer.endswith("+bias")
    if layer.startswith("matmul"):
        nodes = [helper.make_node("MatMul", ["x", "w"], ["dense"], name="dense")]
        if with_bias:
            nodes.append(helper.make_node("Add", ["dense", "b"], ["biased"], name="bias"))
    else:
        nodes = [helper.make_node("Gemm", ["x", "w", "b"] if with_bias else ["x", "w"],
                                  ["dense"], name="dense",
                                  transB=int(layer.startswith("gemm_t")), **attributes)]
    current = nodes[-1].output[0]
    for index, (op, constant) in enumerate(tail):
        initializers.append(numpy_helper.from_array(constant.astype(np.float32), f"c{index}"))
        out = "y" if index == len(tail) - 1 else f"t{index}"
        nodes.append(helper.make_node(op, [current, f"c{index}"], [out], name=f"{op}{index}"))
        current = out
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info(
        "x", TensorProto.FLOAT, [2, 6])], [helper.make_tensor_value_info(
            "y", TensorProto.FLOAT, [2, 5])], initializers)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


KERAS_BN = [("Mul", _vector((5,))), ("Add", _vector((1, 5), -1, 1))]


@pytest.mark.parametrize(("layer", "tail", "left"), [
    ("matmul+bias", KERAS_BN, ["MatMul", "Add"]),  # tf2onnx's Dense -> BatchNorm
    ("matmul", [("Mul", _vector((1, 5)))], ["MatMul"]),
    ("gemm+bias", KERAS_BN, ["Gemm"]),
    ("gemm_t+bias", [*KERAS_BN, ("Sub", _vector((5,)))], ["Gemm"]),
    ("gemm", KERAS_BN, ["Gemm"]),  # a bias made for the shift
])
def test_per_channel_arithmetic_behind_a_dense_layer_is_folded_into_it(layer, tail, left):
    model = _dense(layer, tail)
    folded, count = affine_folded_into_layers(model)
    assert count == len(tail)
    assert [n.op_type for n in folded.graph.node] == left
    onnx.checker.check_model(folded, full_check=True)
    x = RNG.normal(0, 1, (2, 6)).astype(np.float32)
    np.testing.assert_allclose(_run(folded, x), _run(model, x), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize(("layer", "tail", "attributes"), [
    ("matmul", [("Add", _vector((5,)))], {}),  # an Add right behind a MatMul is its bias
    ("matmul+bias", [("Mul", _vector((1, 1, 5)))], {}),  # would add a dimension
    ("matmul+bias", [("Mul", _vector((2, 5)))], {}),  # per row, not per channel
    ("gemm+bias", [("Mul", _vector((5,)))], {"beta": 0.5}),  # a scaled bias: left alone
])
def test_dense_arithmetic_that_cannot_fold_stays(layer, tail, attributes):
    model = _dense(layer, tail, **attributes)
    assert affine_folded_into_layers(model)[1] == 0


@pytest.mark.parametrize("bias", [(2, 1), (2, 5)])
def test_a_gemm_bias_per_row_is_no_bias_to_fold_into(bias):
    """C of one value per batch row (a fixed batch of 2) is no per-channel bias: folding a
    shift into it crashed, or with as many outputs as rows folded wrongly."""
    model = _dense("gemm+bias", [("Mul", _vector((5,))), ("Add", _vector((5,)))])
    c = next(i for i in model.graph.initializer if i.name == "b")
    c.CopyFrom(numpy_helper.from_array(RNG.normal(0, 1, bias).astype(np.float32), "b"))
    folded, count = affine_folded_into_layers(model)
    assert count == 0
    x = RNG.normal(0, 1, (2, 6)).astype(np.float32)
    np.testing.assert_allclose(_run(folded, x), _run(model, x), rtol=1e-6)

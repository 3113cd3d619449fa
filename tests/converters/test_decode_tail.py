"""The decode tail both profiles keep in float starts after the last learned layer; a
distribution integral (a weighted layer over softmax probabilities, YOLOv8's DFL) belongs to
it when nothing learned follows."""

from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from calibration.ranges import TensorRange, TensorRanges, range_method
from calibration.stats import TensorStats
from converters.qdq_tensorrt import (
    decode_tail,
    distribution_integrals,
    head_outputs,
    qdq_for_tensorrt,
    quantizable_inputs,
)


def _initializer(name: str, array: np.ndarray) -> onnx.TensorProto:
    return numpy_helper.from_array(array.astype(np.float32), name)


def dfl_head() -> onnx.ModelProto:
    """image -> conv -> relu -> 1x1 conv (4 sides x 16 bins per cell) -> reshape -> transpose
    -> softmax over the bins -> 1x1 conv with weights 0..15 (the integral) -> distances."""
    rng = np.random.default_rng(0)
    nodes = [
        helper.make_node("Conv", ["image", "w1"], ["f1"], name="stem", pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["f1"], ["a1"], name="act"),
        helper.make_node("Conv", ["a1", "w2"], ["box"], name="box_conv"),
        helper.make_node("Reshape", ["box", "bins_shape"], ["bins"], name="reshape"),
        helper.make_node("Transpose", ["bins"], ["bins_first"], name="transpose",
                         perm=[0, 2, 1, 3]),
        helper.make_node("Softmax", ["bins_first"], ["probabilities"], name="softmax", axis=1),
        helper.make_node("Conv", ["probabilities", "integral_weights"], ["distances"],
                         name="dfl"),
    ]
    initializers = [
        _initializer("w1", rng.normal(0, 0.3, (16, 3, 3, 3))),
        _initializer("w2", rng.normal(0, 0.3, (64, 16, 1, 1))),
        numpy_helper.from_array(np.array([1, 4, 16, 64], np.int64), "bins_shape"),
        _initializer("integral_weights", np.arange(16).reshape(1, 16, 1, 1)),
    ]
    graph = helper.make_graph(
        nodes, "dfl", [helper.make_tensor_value_info("image", TensorProto.FLOAT, [1, 3, 8, 8])],
        [helper.make_tensor_value_info("distances", TensorProto.FLOAT, [1, 1, 4, 64])],
        initializers)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def attention_in_the_middle() -> onnx.ModelProto:
    """features -> gemm -> softmax -> matmul (weighted sum) -> gemm: the softmax-reading
    matmul feeds a learned layer, so it is not part of any tail."""
    rng = np.random.default_rng(1)
    nodes = [
        helper.make_node("Gemm", ["x", "w1"], ["scores"], name="scoring"),
        helper.make_node("Softmax", ["scores"], ["weights"], name="softmax", axis=1),
        helper.make_node("MatMul", ["weights", "values"], ["mixed"], name="mix"),
        helper.make_node("Gemm", ["mixed", "w2"], ["logits"], name="classifier"),
    ]
    initializers = [_initializer("w1", rng.normal(0, 0.3, (8, 8))),
                    _initializer("values", rng.normal(0, 0.3, (8, 8))),
                    _initializer("w2", rng.normal(0, 0.3, (8, 4)))]
    graph = helper.make_graph(
        nodes, "mid", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 8])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, [1, 4])], initializers)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def test_a_dfl_integral_ends_the_learned_layers_and_stays_float():
    model = dfl_head()
    assert distribution_integrals(model) == {"dfl"}
    assert {"reshape", "transpose", "softmax", "dfl"} <= decode_tail(model)
    assert not {"stem", "box_conv"} & decode_tail(model)
    plan = quantizable_inputs(model)
    assert set(plan) == {"stem", "box_conv"}
    ranges = TensorRanges("test", 1, {name: TensorRange(-4.0, 4.0, 4.0)
                                      for name in ("image", "a1")})
    quantized = qdq_for_tensorrt(model, ranges)
    nodes = {node.name: node for node in quantized.graph.node}
    assert list(nodes["dfl"].input) == ["probabilities", "integral_weights"]  # all float
    assert nodes["box_conv"].input[0] == "a1__dequantized"
    assert nodes["box_conv"].input[1] == "w2__dequantized"


def test_a_softmax_reading_layer_that_feeds_learned_layers_is_quantized():
    model = attention_in_the_middle()
    assert distribution_integrals(model) == {"mix"}
    assert not decode_tail(model) & {"scoring", "softmax", "mix", "classifier"}
    assert {"scoring", "mix", "classifier"} <= set(quantizable_inputs(model))


def test_a_weight_shared_by_several_layers_is_quantized_once():
    """A detection head applied at every level with one weight (RetinaNet, FCOS) made the
    `tensorrt` profile write that weight's int8 copy twice: an invalid graph, a traceback."""
    rng = np.random.default_rng(2)
    nodes = [
        helper.make_node("Conv", ["image", "stem_w"], ["p3"], name="stem", pads=[1, 1, 1, 1]),
        helper.make_node("MaxPool", ["p3"], ["p4"], name="down", kernel_shape=[2, 2],
                         strides=[2, 2]),
        helper.make_node("Conv", ["p3", "head_w"], ["out3"], name="head_p3"),
        helper.make_node("Conv", ["p4", "head_w"], ["out4"], name="head_p4"),
        helper.make_node("Flatten", ["out3"], ["flat3"], name="flatten3"),
        helper.make_node("Flatten", ["out4"], ["flat4"], name="flatten4"),
        helper.make_node("Concat", ["flat3", "flat4"], ["scores"], name="concat", axis=1),
    ]
    graph = helper.make_graph(
        nodes, "shared", [helper.make_tensor_value_info("image", TensorProto.FLOAT, [1, 3, 8, 8])],
        [helper.make_tensor_value_info("scores", TensorProto.FLOAT, [1, 80])],
        [_initializer("stem_w", rng.normal(0, 0.3, (4, 3, 3, 3))),
         _initializer("head_w", rng.normal(0, 0.3, (1, 4, 1, 1)))])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    ranges = TensorRanges("test", 1, {name: TensorRange(-4.0, 4.0, 4.0)
                                      for name in ("image", "p3", "p4")})
    quantized = qdq_for_tensorrt(model, ranges)  # checked by onnx.checker inside
    nodes_by_name = {node.name: node for node in quantized.graph.node}
    assert nodes_by_name["head_p3"].input[1] == nodes_by_name["head_p4"].input[1] == \
        "head_w__dequantized"
    assert [i.name for i in quantized.graph.initializer].count("head_w__int8") == 1


def test_the_head_outputs_are_what_the_last_learned_layers_hand_on():
    """The box distributions a DFL tail reads, and the logits a graph output is; not the
    tensors between learned layers, nor those inside the tail."""
    assert head_outputs(dfl_head()) == {"box"}
    assert head_outputs(attention_in_the_middle()) == {"logits"}


def test_every_range_method_keeps_the_head_outputs_whole_range():
    """Entropy clipped a classifier's logits to +-2 of +-5.9 and every frame then read the
    same; a tensor named in `full_range` keeps its observed range under any method."""
    rng = np.random.default_rng(3)
    stats = {}
    for name in ("a1", "box"):
        tensor = TensorStats(name)
        tensor.update(rng.laplace(0, 0.3, 200_000).astype(np.float32) * (8.0 if name == "box"
                                                                         else 1.0))
        stats[name] = tensor
    clipped = TensorRanges.from_stats(stats, range_method("entropy"), 1)
    kept = TensorRanges.from_stats(stats, range_method("entropy"), 1, head_outputs(dfl_head()))
    assert clipped.ranges["box"].amax < stats["box"].abs_max
    assert kept.ranges["box"].amax == stats["box"].abs_max
    assert kept.ranges["a1"] == clipped.ranges["a1"]

"""Element types of a model's tensors (`calibration.tensor_types`): shape inference runs on a
stand-in without the weights' values, and must find what it finds on the whole model."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from calibration.tensor_types import _without_weight_values, tensor_types

DEMO_MODEL = Path(__file__).resolve().parents[2] / "edge" / "models" / "shapes.onnx"


def _inferred(model: onnx.ModelProto) -> dict[str, tuple[int, str]]:
    inferred = onnx.shape_inference.infer_shapes(model)
    return {v.name: (v.type.tensor_type.elem_type, str(v.type.tensor_type.shape))
            for v in list(inferred.graph.value_info) + list(inferred.graph.output)}


def _model_reading_values() -> onnx.ModelProto:
    """Conv with a 16x3x3x3 weight, then operators whose output shapes come from initializer
    values: Reshape (int64 shape), Resize (float scales), Slice (int64 bounds)."""
    rng = np.random.default_rng(0)
    initializers = [
        numpy_helper.from_array(rng.standard_normal((16, 3, 3, 3)).astype(np.float32), "w"),
        numpy_helper.from_array(rng.standard_normal(16).astype(np.float32), "b"),
        numpy_helper.from_array(np.array([1.0, 1.0, 2.0, 2.0], np.float32), "scales"),
        numpy_helper.from_array(np.array([1, 16, 64, 4], np.int64), "shape"),
        numpy_helper.from_array(np.array([0], np.int64), "start"),
        numpy_helper.from_array(np.array([8], np.int64), "end"),
        numpy_helper.from_array(np.array([1], np.int64), "axis"),
    ]
    nodes = [
        helper.make_node("Conv", ["x", "w", "b"], ["c"], pads=[1, 1, 1, 1]),
        helper.make_node("Resize", ["c", "", "scales"], ["up"], mode="nearest"),
        helper.make_node("Reshape", ["up", "shape"], ["r"]),
        helper.make_node("Slice", ["r", "start", "end", "axis"], ["s"]),
        helper.make_node("Cast", ["s"], ["y"], to=TensorProto.FLOAT16),
    ]
    graph = helper.make_graph(
        nodes, "reads-values", [helper.make_tensor_value_info("x", TensorProto.FLOAT,
                                                              [1, 3, 8, 8])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT16, None)], initializers)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def test_the_stand_in_infers_what_the_whole_model_does():
    for model in (_model_reading_values(), onnx.load(str(DEMO_MODEL))):
        assert _inferred(_without_weight_values(model)) == _inferred(model)


def test_types_are_found_past_value_reading_operators():
    types = tensor_types(_model_reading_values())
    assert types == {"c": TensorProto.FLOAT, "up": TensorProto.FLOAT, "r": TensorProto.FLOAT,
                     "s": TensorProto.FLOAT, "y": TensorProto.FLOAT16}
    shapes = _inferred(_model_reading_values())
    assert shapes["s"][1] == str(onnx.TensorShapeProto(dim=[
        onnx.TensorShapeProto.Dimension(dim_value=v) for v in (1, 8, 64, 4)]))


def test_the_stand_in_carries_no_weight_values_and_leaves_the_model_whole():
    model = onnx.load(str(DEMO_MODEL))
    before = model.SerializeToString()
    light = _without_weight_values(model)
    weights = [t for t in light.graph.initializer if t.data_type == TensorProto.FLOAT
               and int(np.prod(t.dims)) > 256]
    assert weights
    assert all(not t.raw_data and not t.float_data for t in weights)
    assert len(light.SerializeToString()) < len(before) / 10
    assert model.SerializeToString() == before

"""Tiny ONNX graphs built with onnx.helper for runner and validation tests."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from edge.spec import SPEC_KEY, ModelSpec


def constant_head_model(path: Path, output_shape: tuple[int, ...], spec: ModelSpec | None,
                        size: int = 64, input_dtype: int = TensorProto.UINT8,
                        batch: int = 1) -> Path:
    """uint8 [batch, size, size, 3] -> Cast -> ReduceMean -> Expand to `output_shape` (float)."""
    shape = numpy_helper.from_array(np.array(output_shape, np.int64), "shape")
    nodes = [
        helper.make_node("Cast", ["images"], ["f"], to=TensorProto.FLOAT),
        helper.make_node("ReduceMean", ["f"], ["m"], keepdims=0),
        helper.make_node("Expand", ["m", "shape"], ["output0"]),
    ]
    graph = helper.make_graph(
        nodes, "tiny",
        [helper.make_tensor_value_info("images", input_dtype, [batch, size, size, 3])],
        [helper.make_tensor_value_info("output0", TensorProto.FLOAT, list(output_shape))],
        initializer=[shape])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    if spec is not None:
        entry = model.metadata_props.add()
        entry.key, entry.value = SPEC_KEY, spec.to_json()
    onnx.checker.check_model(model)
    onnx.save(model, path)
    return path

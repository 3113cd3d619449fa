"""Tiny converted models (uint8 NHWC image in, anchor-free head out, edge spec in the metadata)
for the contract checks: a float one and a QDQ INT8 one. Built with onnx.helper; ONNX Runtime
runs both, so a device install without `onnx` can read their spec through a session."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from edge.spec import SPEC_KEY, InputSpec, ModelSpec, Quantization

SIZE = 32
LABELS = ("a", "b")


def tiny_spec(quantization: Quantization | None, batch: int | None = 1) -> ModelSpec:
    return ModelSpec(task="detect", labels=LABELS, head="anchor_free", output="output0",
                     input=InputSpec(name="images", width=SIZE, height=SIZE, batch=batch),
                     name="tiny", quantization=quantization)


def tiny_model(path: Path, qdq: bool, batch: int | None = 1,
               recorded: Quantization | Literal["graph"] | None = "graph") -> Path:
    """images uint8 [N, 32, 32, 3] -> Cast -> Transpose -> (Q/DQ) -> 1x1 Conv -> [N, 6, 1024].
    `recorded`: the spec's quantization ("graph": what the graph is; None: not recorded)."""
    channels = 4 + len(LABELS)
    weights = np.linspace(-1, 1, channels * 3, dtype=np.float32).reshape(channels, 3, 1, 1)
    nodes = [helper.make_node("Cast", ["images"], ["float"], to=TensorProto.FLOAT),
             helper.make_node("Transpose", ["float"], ["nchw"], perm=[0, 3, 1, 2])]
    initializers = [numpy_helper.from_array(np.array([-1, channels, SIZE * SIZE], np.int64),
                                            "shape")]
    conv_input = "nchw"
    if qdq:
        initializers += [numpy_helper.from_array(np.array(2.0, np.float32), "scale"),
                         numpy_helper.from_array(np.array(0, np.int8), "zero")]
        nodes += [helper.make_node("QuantizeLinear", ["nchw", "scale", "zero"], ["q"]),
                  helper.make_node("DequantizeLinear", ["q", "scale", "zero"], ["dq"])]
        conv_input = "dq"
    initializers.append(numpy_helper.from_array(weights, "weights"))
    nodes += [helper.make_node("Conv", [conv_input, "weights"], ["conv"]),
              helper.make_node("Reshape", ["conv", "shape"], ["output0"])]
    rows = batch if batch is not None else "N"
    graph = helper.make_graph(
        nodes, "tiny",
        [helper.make_tensor_value_info("images", TensorProto.UINT8, [rows, SIZE, SIZE, 3])],
        [helper.make_tensor_value_info("output0", TensorProto.FLOAT,
                                       [rows, channels, SIZE * SIZE])],
        initializers)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    if recorded == "graph":
        recorded = "int8-qdq" if qdq else "float"
    entry = model.metadata_props.add()
    entry.key, entry.value = SPEC_KEY, tiny_spec(recorded, batch).to_json()
    onnx.save(model, str(path))
    return path

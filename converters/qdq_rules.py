"""Validator for TensorRT's QDQ rules; run on every `tensorrt`-profile model before it is
written (and before an engine build)."""

from __future__ import annotations

import numpy as np
import onnx
from onnx import numpy_helper

from calibration.layers import WEIGHTED_OPS
from converters.errors import ConversionError
from converters.qdq_tensorrt import POOLING_OPS, weight_axis

#: Ops a dequantized activation may feed under TensorRT's placement rules.
QUANTIZED_CONSUMERS = WEIGHTED_OPS | POOLING_OPS | {"Add"}


def tensorrt_qdq_violations(model: onnx.ModelProto) -> list[str]:
    """Every way `model` breaks TensorRT's QDQ rules, one line each (empty when it follows them)."""
    graph = model.graph
    initializers = {i.name: numpy_helper.to_array(i) for i in graph.initializer}
    consumers: dict[str, list[onnx.NodeProto]] = {}
    for node in graph.node:
        for name in node.input:
            consumers.setdefault(name, []).append(node)
    problems = []
    for node in graph.node:
        if node.op_type not in ("QuantizeLinear", "DequantizeLinear"):
            continue
        zero_point = initializers.get(node.input[2]) if len(node.input) > 2 else None
        if zero_point is not None and (zero_point.dtype != np.int8 or np.any(zero_point)):
            problems.append(f"{node.name}: zero point must be int8 0 (symmetric), found "
                            f"{zero_point.dtype} {zero_point.ravel()[:4].tolist()}")
        scale = initializers.get(node.input[1])
        is_weight = node.op_type == "DequantizeLinear" and node.input[0] in initializers
        if scale is None:
            problems.append(f"{node.name}: scale must be a constant initializer")
        elif not is_weight and scale.size != 1:
            problems.append(f"{node.name}: activations must be quantized per tensor, found "
                            f"{scale.size} scales")
        if node.op_type == "DequantizeLinear" and not is_weight:
            for user in consumers.get(node.output[0], []):
                if user.op_type not in QUANTIZED_CONSUMERS:
                    problems.append(f"{node.name}: dequantized activation feeds {user.op_type} "
                                    f"{user.name}; Q/DQ belongs on inputs of "
                                    "Conv/Gemm/MatMul/pooling/Add only")
        if is_weight:
            problems += _weight_problems(node, consumers.get(node.output[0], []), initializers)
    problems += _mixed_precision_problems(graph, initializers)
    return problems


def _weight_problems(dq: onnx.NodeProto, users: list[onnx.NodeProto],
                     initializers: dict[str, np.ndarray]) -> list[str]:
    problems = []
    axis = next((a.i for a in dq.attribute if a.name == "axis"), 1)
    scale = initializers[dq.input[1]]
    weight = initializers[dq.input[0]]
    for user in users:
        if user.op_type not in WEIGHTED_OPS:
            continue
        expected = weight_axis(user)
        if scale.size > 1 and axis != expected:
            problems.append(f"{dq.name}: per-channel weight axis {axis} for {user.op_type} "
                            f"{user.name}; TensorRT needs axis {expected}")
        if scale.size not in (1, weight.shape[expected]):
            problems.append(f"{dq.name}: {scale.size} weight scales for "
                            f"{weight.shape[expected]} output channels")
    return problems


def _mixed_precision_problems(graph: onnx.GraphProto,
                              initializers: dict[str, np.ndarray]) -> list[str]:
    dequantized = {n.output[0] for n in graph.node if n.op_type == "DequantizeLinear"}
    problems = []
    for node in graph.node:
        if node.op_type not in WEIGHTED_OPS or len(node.input) < 2:
            continue
        weight_q = node.input[1] in dequantized
        activation_q = node.input[0] in dequantized
        if weight_q != activation_q:
            problems.append(f"{node.op_type} {node.name}: weights are "
                            f"{'quantized' if weight_q else 'float'} but its input is "
                            f"{'quantized' if activation_q else 'float'}; quantize both or "
                            "neither")
    return problems


#: The origin `edge calibrate` names its own output by; advice for it must not send the user
#: back to `edge calibrate --profile tensorrt`.
OUR_OUTPUT = "the quantized model"


def check_tensorrt_qdq(model: onnx.ModelProto, origin: str = "the model") -> None:
    problems = tensorrt_qdq_violations(model)
    if problems:
        listing = "\n  ".join(problems[:20])
        more = f"\n  (+{len(problems) - 20} more)" if len(problems) > 20 else ""
        advice = ("keep the nodes named above in float with `edge calibrate --exclude NODE ...` "
                  "(and report it: the tensorrt profile should never write this)"
                  if origin == OUR_OUTPUT else
                  "quantize its FP32 model with `edge calibrate --profile tensorrt`")
        raise ConversionError(f"{origin} breaks TensorRT's QDQ rules:\n  {listing}{more}\n"
                              f"{advice}")

"""Weighted layers: the nodes whose weights INT8 quantizes, and those still in float."""

from __future__ import annotations

import onnx

#: Ops whose second input, when an initializer, is a layer's weights.
WEIGHTED_OPS = frozenset({"Conv", "ConvTranspose", "Gemm", "MatMul"})


def weighted_nodes(model: onnx.ModelProto) -> list[onnx.NodeProto]:
    """Conv, Gemm and MatMul nodes whose second input is a float weight initializer (not, say,
    a Gather's int64 indices, whose output is no activation). In a quantized model these are
    the layers left in float: a quantized layer reads its weights from a DequantizeLinear (QDQ)
    or is a QLinear op (QOperator)."""
    weights = {i.name for i in model.graph.initializer if i.data_type == onnx.TensorProto.FLOAT}
    return [n for n in model.graph.node
            if n.op_type in WEIGHTED_OPS and len(n.input) > 1 and n.input[1] in weights]

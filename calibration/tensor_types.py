"""Element types of a model's tensors, also past operators ONNX's shape inference does not know.

ONNX's shape inference stops at operators outside the ONNX domain (com.microsoft's Gelu, say):
their outputs and everything computed from them come out untyped, so they would be neither
observed nor quantized. ONNX Runtime types them when it loads the model.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Sequence

import onnx
import onnxruntime as ort
from onnx import TensorProto, helper

_ORT_ELEMENT_TYPES = {f"tensor({name})": value for name, value in (
    ("float", TensorProto.FLOAT), ("float16", TensorProto.FLOAT16),
    ("double", TensorProto.DOUBLE), ("int64", TensorProto.INT64),
    ("int32", TensorProto.INT32), ("int8", TensorProto.INT8), ("uint8", TensorProto.UINT8),
    ("bool", TensorProto.BOOL))}


#: Initializers of these types with more elements than `_KEPT_WHOLE` reach shape inference as
#: name, type and dims only (`_without_weight_values`).
_WEIGHT_TYPES = {TensorProto.FLOAT, TensorProto.FLOAT16, TensorProto.DOUBLE, TensorProto.BFLOAT16}
_KEPT_WHOLE = 256


def tensor_types(model: onnx.ModelProto) -> dict[str, int]:
    """Element type (TensorProto enum) of every node output, by name."""
    types, untyped = _inferred_types(model)
    if untyped:
        types.update(_types_from_onnxruntime(model, untyped))
    return types


def with_value_types(model: onnx.ModelProto) -> onnx.ModelProto:
    """`model`, with a value_info (element type only) for each node output that ONNX's shape
    inference cannot type (the same model when there is none): tools that read types from the
    graph, ONNX Runtime's quantizer among them, then see these tensors as what they are."""
    _, untyped = _inferred_types(model)
    if not untyped:
        return model
    typed = copy.deepcopy(model)
    typed.graph.value_info.extend(
        helper.make_tensor_value_info(name, element, None)
        for name, element in _types_from_onnxruntime(model, untyped).items() if element)
    return typed


def _inferred_types(model: onnx.ModelProto) -> tuple[dict[str, int], list[str]]:
    """(types ONNX's shape inference finds, node outputs it leaves untyped)."""
    inferred = onnx.shape_inference.infer_shapes(_without_weight_values(model))
    types = {v.name: v.type.tensor_type.elem_type
             for v in list(inferred.graph.value_info) + list(inferred.graph.output)
             if v.type.tensor_type.elem_type}
    untyped = [name for node in model.graph.node for name in node.output
               if name and name not in types]
    return types, untyped


def _without_weight_values(model: onnx.ModelProto) -> onnx.ModelProto:
    """A shallow stand-in for `model` whose large floating-point initializers keep their name,
    element type and dims but no values. Shape inference reads no more of a weight, while
    handing megabytes of weights to ONNX's C++ and back was most of its time (YOLOv8n, 12 MB
    of weights: 38-51 ms -> 2 ms). Small and integer initializers, which operators such as
    Reshape, Slice or Resize read as values, are kept whole."""
    light = onnx.ModelProto(ir_version=model.ir_version, opset_import=model.opset_import,
                            functions=model.functions)
    graph = model.graph
    light.graph.CopyFrom(onnx.GraphProto(name=graph.name, node=graph.node, input=graph.input,
                                         output=graph.output, value_info=graph.value_info,
                                         sparse_initializer=graph.sparse_initializer))
    light.graph.initializer.extend(
        onnx.TensorProto(name=t.name, data_type=t.data_type, dims=t.dims)
        if t.data_type in _WEIGHT_TYPES and math.prod(t.dims) > _KEPT_WHOLE else t
        for t in graph.initializer)
    return light


def _types_from_onnxruntime(model: onnx.ModelProto, names: Sequence[str]) -> dict[str, int]:
    """The element types ONNX Runtime gives `names` made graph outputs without a type."""
    exposed = copy.deepcopy(model)
    present = {o.name for o in exposed.graph.output}
    exposed.graph.output.extend(onnx.ValueInfoProto(name=name) for name in names
                                if name not in present)
    options = ort.SessionOptions()
    options.log_severity_level = 3
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    session = ort.InferenceSession(exposed.SerializeToString(), options,
                                   providers=["CPUExecutionProvider"])
    wanted = set(names)
    return {o.name: _ORT_ELEMENT_TYPES.get(o.type, TensorProto.UNDEFINED)
            for o in session.get_outputs() if o.name in wanted}

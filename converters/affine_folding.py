"""Per-channel Mul, Add and Sub by constants right after a Conv or a dense layer, folded into
its weights and bias.

Some exporters leave a BatchNorm, or Caffe's BatchNorm + Scale pair, as arithmetic behind the
layer: a Mul by one factor per output channel and an Add (or Sub) of one offset per channel
(open-nsfw's PyTorch re-export: 53 of them, each behind an NCHW -> NHWC Transpose; tf2onnx
writes Keras' Dense -> BatchNorm the same way behind the MatMul and its bias Add). ONNX Runtime
folds such a Mul or Add right behind a conv when it runs the FP32 model (not behind a
Transpose, nor behind a dense layer), but a quantizer sees them as they are: it quantizes the
layer's output before the BatchNorm has evened out its channels, with one scale for all of
them, and runs the Mul and Add as extra int8 steps. Folded, the layer computes the same
function (up to float rounding, checked by the converter's parity run) and its output is the
normalised tensor: open-nsfw's FP32 model ran 24.0 ms a frame instead of 28.2, its `cpu` INT8
model at 0.66x of that instead of 0.84x, 44.1 dB output SQNR instead of 34.9.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import onnx
from onnx import numpy_helper

from converters.weights import drop_unused_initializers

_FOLDED_OPS = frozenset({"Mul", "Add", "Sub"})

Vector = npt.NDArray[np.float32]


@dataclass(frozen=True)
class _Layer:
    """A weighted layer whose output a folded op reads: `weighted` (Conv, Gemm or MatMul),
    its weight's output-channel axis, where its bias is (node and input position; None where
    it has none), the node whose output the op reads, and where that output's channels are."""

    weighted: onnx.NodeProto
    out_axis: int
    bias: tuple[onnx.NodeProto, int] | None
    last: onnx.NodeProto
    channels: int
    channel_axis: int  # of the output the op reads; -1: the last, whatever its rank
    rank: int  # of that output, or 2: a dense layer's is at least [N, channels]


def affine_folded_into_layers(model: onnx.ModelProto) -> tuple[onnx.ModelProto, int]:
    """A copy of `model` with every per-channel Mul, Add or Sub by a constant that follows a
    Conv or a dense layer (and is the only reader of its output) folded into that layer, and
    how many were."""
    folded_model = onnx.ModelProto()
    folded_model.CopyFrom(model)
    graph = folded_model.graph
    count = 0
    while _fold_one(graph):
        count += 1
    if count:
        drop_unused_initializers(graph)
    return folded_model, count


class _Graph:
    """Lookups over a graph, made afresh for each fold."""

    def __init__(self, graph: onnx.GraphProto) -> None:
        self.graph = graph
        self.constants = {i.name: i for i in graph.initializer}
        self.readers = Counter(name for node in graph.node for name in node.input)
        self.outputs = {o.name for o in graph.output}
        self.producers = {out: node for node in graph.node for out in node.output}

    def only_reader(self, tensor: str) -> bool:
        return self.readers[tensor] == 1 and tensor not in self.outputs

    def array(self, name: str) -> npt.NDArray[np.float32]:
        return numpy_helper.to_array(self.constants[name]).astype(np.float32)

    def producer(self, tensor: str) -> onnx.NodeProto | None:
        node = self.producers.get(tensor)
        return node if node is not None and self.only_reader(tensor) else None


def _fold_one(graph: onnx.GraphProto) -> bool:
    """Folds the first foldable node into its layer; False when none is left."""
    lookup = _Graph(graph)
    for node in graph.node:
        if node.op_type not in _FOLDED_OPS or len(node.input) != 2:
            continue
        source = next((n for n in node.input if n not in lookup.constants), None)
        other = next((n for n in node.input if n in lookup.constants), None)
        if source is None or other is None or (node.op_type == "Sub"
                                                and source != node.input[0]):
            continue
        layer = _layer_of(lookup, source)
        if layer is None or (node.op_type != "Mul" and layer.bias is None
                             and layer.weighted.op_type == "MatMul"):
            continue  # an Add right behind a MatMul is its bias already
        factors = _per_channel(lookup.array(other), layer)
        if factors is None:
            continue
        _fold(lookup, layer, node.op_type, factors)
        layer.last.output[0] = node.output[0]
        graph.node.remove(node)
        return True
    return False


def _layer_of(lookup: _Graph, tensor: str) -> _Layer | None:
    """The layer whose output, read by nothing else, is `tensor`: a Conv (also behind an NCHW
    -> NHWC Transpose), a Gemm, or a MatMul with or without its bias Add; constant weights and
    bias only."""
    node = lookup.producer(tensor)
    if node is not None and node.op_type == "Transpose" and _to_channels_last(node):
        conv = lookup.producer(node.input[0])
        layer = _conv(lookup, conv) if conv is not None else None
        return None if layer is None else _Layer(layer.weighted, 0, layer.bias, node,
                                                 layer.channels, layer.rank - 1, layer.rank)
    if node is None:
        return None
    if node.op_type == "Conv":
        return _conv(lookup, node)
    if node.op_type == "Gemm":
        return _gemm(lookup, node)
    if node.op_type == "MatMul":
        return _matmul(lookup, node, None, node)
    if node.op_type == "Add":
        inner = next((lookup.producer(n) for n in node.input if n not in lookup.constants), None)
        constant = [i for i, n in enumerate(node.input) if n in lookup.constants]
        if inner is not None and inner.op_type == "MatMul" and len(constant) == 1:
            return _matmul(lookup, inner, (node, constant[0]), node)
    return None


def _weight(lookup: _Graph, node: onnx.NodeProto) -> npt.NDArray[np.float32] | None:
    if len(node.input) < 2 or node.input[1] not in lookup.constants:
        return None
    return lookup.array(node.input[1])


def _conv(lookup: _Graph, node: onnx.NodeProto) -> _Layer | None:
    weight = _weight(lookup, node)
    if weight is None or (len(node.input) > 2 and node.input[2]
                          and node.input[2] not in lookup.constants):
        return None
    bias = (node, 2) if len(node.input) > 2 and node.input[2] else None
    return _Layer(node, 0, bias, node, weight.shape[0], 1, weight.ndim)


def _gemm(lookup: _Graph, node: onnx.NodeProto) -> _Layer | None:
    weight = _weight(lookup, node)
    attributes = {a.name: a for a in node.attribute}
    transposed_input = "transA" in attributes and attributes["transA"].i
    scaled_bias = "beta" in attributes and attributes["beta"].f != 1.0
    if (weight is None or weight.ndim != 2 or transposed_input or scaled_bias
            or (len(node.input) > 2 and node.input[2] and node.input[2] not in lookup.constants)):
        return None
    out_axis = 0 if "transB" in attributes and attributes["transB"].i else 1
    bias = (node, 2) if len(node.input) > 2 and node.input[2] else None
    if bias is not None and _per_axis(lookup.array(node.input[2]), weight.shape[out_axis], -1,
                                      2) is None:
        return None  # C per row, not per channel: nothing to fold into
    return _Layer(node, out_axis, bias, node, weight.shape[out_axis], -1, 2)


def _matmul(lookup: _Graph, node: onnx.NodeProto, bias: tuple[onnx.NodeProto, int] | None,
            last: onnx.NodeProto) -> _Layer | None:
    weight = _weight(lookup, node)
    if weight is None or weight.ndim != 2:
        return None
    if bias is not None:
        value = lookup.array(bias[0].input[bias[1]])
        if _per_axis(value, weight.shape[1], -1, 2) is None:
            return None
    return _Layer(node, 1, bias, last, weight.shape[1], -1, 2)


def _to_channels_last(transpose: onnx.NodeProto) -> bool:
    perm = next((list(a.ints) for a in transpose.attribute if a.name == "perm"), None)
    return perm == [0, 2, 3, 1]


def _per_channel(value: npt.NDArray[np.float32], layer: _Layer) -> Vector | None:
    return _per_axis(value, layer.channels, layer.channel_axis, layer.rank)


def _per_axis(value: npt.NDArray[np.float32], channels: int, axis: int, rank: int
              ) -> Vector | None:
    """`value` as one number per channel when it broadcasts that way over an output of `rank`
    dimensions with `channels` on `axis` (-1: the last; for a dense layer `rank` is its least,
    2, so a constant of more dimensions, which would add some, is refused); else None."""
    if value.size == 1 and value.ndim <= rank:
        return np.full(channels, float(value.ravel()[0]), np.float32)
    if value.ndim > rank:
        return None
    shape = (1,) * (rank - value.ndim) + value.shape
    at = axis % rank
    if shape[at] != channels or any(d != 1 for i, d in enumerate(shape) if i != at):
        return None
    result: Vector = value.astype(np.float32).reshape(channels)
    return result


def _fold(lookup: _Graph, layer: _Layer, op: str, factors: Vector) -> None:
    """Folds `op` (Mul, Add or Sub by `factors`) into `layer`'s weights and bias (a bias made
    for a Conv or Gemm that had none)."""
    node = layer.weighted
    bias = (lookup.array(layer.bias[0].input[layer.bias[1]]).reshape(-1) if layer.bias
            else np.zeros(1, np.float32))
    bias = np.broadcast_to(bias, factors.shape).astype(np.float32)
    if op == "Mul":
        weight = lookup.array(node.input[1])
        shape = [1] * weight.ndim
        shape[layer.out_axis] = -1
        _set_input(lookup, node, 1, weight * factors.reshape(shape))
        bias = bias * factors
    else:
        bias = bias + factors if op == "Add" else bias - factors
    if layer.bias is not None:
        _set_input(lookup, layer.bias[0], layer.bias[1], bias)
    elif op != "Mul":  # a Conv or Gemm without bias gets one
        while len(node.input) < 3:
            node.input.append("")
        _set_input(lookup, node, 2, bias)


def _set_input(lookup: _Graph, node: onnx.NodeProto, position: int, value: Vector) -> None:
    """`node.input[position]` now reads `value`: overwritten in place where only this node
    reads the initializer, else a new one."""
    old = node.input[position]
    if old and lookup.readers[old] == 1:
        lookup.constants[old].CopyFrom(numpy_helper.from_array(np.ascontiguousarray(value), old))
        return
    base = f"{node.name or node.output[0]}_{'weight' if position == 1 else 'bias'}_folded"
    name, number = base, 1
    while name in lookup.constants:
        number += 1
        name = f"{base}_{number}"
    lookup.graph.initializer.append(numpy_helper.from_array(np.ascontiguousarray(value), name))
    lookup.constants[name] = lookup.graph.initializer[-1]
    if old:
        lookup.readers[old] -= 1
    lookup.readers[name] += 1
    node.input[position] = name

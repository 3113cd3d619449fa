"""Explicit INT8 quantization the way TensorRT wants it (the `tensorrt` profile).

Rules (TensorRT's QDQ placement guidance): symmetric int8 everywhere (zero point 0);
per-channel weights (Conv axis 0, ConvTranspose axis 1, Gemm/MatMul along the output
features); per-tensor activations; Q/DQ on the inputs of Conv/ConvTranspose/Gemm/MatMul, pooling
and residual Add, never on outputs. For a residual Add only the skip input is quantized: the
branch coming from a Conv is left alone so TensorRT can fuse the Add into that Conv.
"""

from __future__ import annotations

import difflib
from collections.abc import Collection
from dataclasses import dataclass, field

import numpy as np
import onnx
from onnx import helper, numpy_helper

from calibration.layers import WEIGHTED_OPS
from calibration.ranges import TensorRanges
from converters.errors import ConversionError
from converters.weights import drop_unused_initializers, quantize_weight

POOLING_OPS = {"MaxPool", "AveragePool", "GlobalAveragePool", "GlobalMaxPool"}
#: Ops whose output a following Add can be fused into by TensorRT.
FUSIBLE_PRODUCERS = {"Conv", "ConvTranspose", "Gemm", "MatMul"}
#: Ops that rearrange values without changing them.
LAYOUT_OPS = {"Reshape", "Transpose", "Squeeze", "Unsqueeze", "Flatten", "Identity"}


def weight_axis(node: onnx.NodeProto) -> int:
    """The output-channel axis of a weighted node's weight tensor."""
    if node.op_type == "ConvTranspose":
        return 1
    if node.op_type == "Gemm":
        trans_b = next((a.i for a in node.attribute if a.name == "transB"), 0)
        return 0 if trans_b else 1
    if node.op_type == "MatMul":
        return 1
    return 0


@dataclass
class _Inserter:
    model: onnx.ModelProto
    ranges: TensorRanges
    new_nodes: list[onnx.NodeProto] = field(default_factory=list)
    new_initializers: list[onnx.TensorProto] = field(default_factory=list)
    dequantized: dict[str, str] = field(default_factory=dict)
    weights: dict[tuple[str, int], str] = field(default_factory=dict)

    def activation(self, tensor: str) -> str:
        """Name of the dequantized copy of activation `tensor` (one Q/DQ pair per tensor)."""
        if tensor in self.dequantized:
            return self.dequantized[tensor]
        if tensor not in self.ranges.ranges:
            raise _no_range_for(tensor)
        scale = self.ranges.ranges[tensor].scale
        self.new_initializers += [
            numpy_helper.from_array(np.array(scale, np.float32), f"{tensor}__scale"),
            numpy_helper.from_array(np.array(0, np.int8), f"{tensor}__zero_point")]
        quantized, dequantized = f"{tensor}__quantized", f"{tensor}__dequantized"
        self.new_nodes += [
            helper.make_node("QuantizeLinear", [tensor, f"{tensor}__scale",
                                                f"{tensor}__zero_point"], [quantized],
                             name=f"{tensor}__QuantizeLinear"),
            helper.make_node("DequantizeLinear", [quantized, f"{tensor}__scale",
                                                  f"{tensor}__zero_point"], [dequantized],
                             name=f"{tensor}__DequantizeLinear")]
        self.dequantized[tensor] = dequantized
        return dequantized

    def weight(self, node: onnx.NodeProto, initializer: onnx.TensorProto) -> str:
        """Name of the dequantized int8 copy of `initializer`, the weight of `node`; a weight
        several nodes share (a detection head applied at every level) is quantized once."""
        axis = weight_axis(node)
        if (initializer.name, axis) in self.weights:
            return self.weights[initializer.name, axis]
        quantized, scale = quantize_weight(numpy_helper.to_array(initializer), axis)
        name = initializer.name if not any(shared == initializer.name for shared, _ in
                                           self.weights) else f"{initializer.name}__axis{axis}"
        self.weights[initializer.name, axis] = f"{name}__dequantized"
        self.new_initializers += [
            numpy_helper.from_array(quantized, f"{name}__int8"),
            numpy_helper.from_array(scale, f"{name}__scale"),
            numpy_helper.from_array(np.zeros_like(scale, np.int8), f"{name}__zero_point")]
        self.new_nodes.append(helper.make_node(
            "DequantizeLinear", [f"{name}__int8", f"{name}__scale", f"{name}__zero_point"],
            [f"{name}__dequantized"], axis=axis, name=f"{name}__DequantizeLinear"))
        return f"{name}__dequantized"


def decode_tail(model: onnx.ModelProto) -> set[str]:
    """Names of the nodes after the last learned weighted layer (box decoding, sigmoid, concat
    of heads, a distribution integral). They carry pixel coordinates and scores, cost little,
    and lose most from int8, so both profiles keep them in float."""
    producers = {out: node for node in model.graph.node for out in node.output}
    feeding: set[str] = set()
    integrals = distribution_integrals(model)
    stack = [n for n in model.graph.node
             if n.op_type in WEIGHTED_OPS and n.name not in integrals]
    while stack:
        node = stack.pop()
        if node.name in feeding:
            continue
        feeding.add(node.name)
        stack += [producers[name] for name in node.input if name in producers]
    return {n.name for n in model.graph.node} - feeding


def decode_tail_tensors(model: onnx.ModelProto) -> frozenset[str]:
    """The activations the decode tail's nodes write."""
    tail = decode_tail(model)
    return frozenset(out for node in model.graph.node if node.name in tail for out in node.output)


def kept_float_tensors(model: onnx.ModelProto, kept: Collection[str]) -> frozenset[str]:
    """The activations the nodes named `kept` (kept float: --exclude, --keep-float) read and
    write: a TensorRT calibration cache leaves their scales out, so that TensorRT keeps those
    layers out of int8 as the QDQ model does (a user check: the cache held every kept layer's
    scales, so TensorRT's implicit int8 would quantize them all the same)."""
    constants = {i.name for i in model.graph.initializer}
    return frozenset(name for node in model.graph.node if node.name in kept
                     for name in (*node.input, *node.output) if name and name not in constants)


def head_outputs(model: onnx.ModelProto) -> frozenset[str]:
    """The activations the last weighted layers hand to the decode tail or to the graph's
    outputs: logits, score logits, box distributions. They are the model's answers before
    decoding, where a confident frame is an outlier by design, so every range method keeps
    their whole observed range: entropy cut a 2-class classifier's logits from +-5.9 to +-2
    (every frame then read 0.875), and a YOLOv8n's score logits so that every anchor scored
    0.10 or more (`cpu` profile, which quantizes the outputs of its layers; the `tensorrt`
    profile quantizes layer inputs only and never reads these ranges)."""
    tail = decode_tail(model)
    outputs = {o.name for o in model.graph.output}
    read_by_tail = {name for node in model.graph.node if node.name in tail
                    for name in node.input}
    return frozenset(out for node in model.graph.node if node.name not in tail
                     for out in node.output if out in read_by_tail or out in outputs)


def distribution_integrals(model: onnx.ModelProto) -> set[str]:
    """Names of the weighted layers that read a Softmax's probabilities (through layout ops
    at most): a detection head's distribution integral, like YOLOv8's DFL, a 1x1 conv with the
    fixed weights 0..15 that turns 16-bin softmaxes into box distances. That is decoding, not
    a learned layer. In int8 (steps of 1/127) every probability below 0.004 is zeroed: on the
    corpus YOLOv8n, in float it gave 0.2-0.3 dB more box SQNR, and leaving its input
    unobserved made the statistics pass's model run 7% faster."""
    producers = {out: node for node in model.graph.node for out in node.output}
    integrals = set()
    for node in model.graph.node:
        if node.op_type not in WEIGHTED_OPS or not node.input:
            continue
        source = producers.get(node.input[0])
        while source is not None and source.op_type in LAYOUT_OPS and source.input:
            source = producers.get(source.input[0])
        if source is not None and source.op_type == "Softmax":
            integrals.add(node.name)
    return integrals


def check_exclusions(model: onnx.ModelProto, exclude: Collection[str]) -> None:
    """Refuse node names in `exclude` that the model does not have (a typo would otherwise
    quantize the node it meant to keep in float)."""
    names = [n.name for n in model.graph.node]
    unknown = sorted(set(exclude) - set(names))
    if unknown:
        close = [match for name in unknown for match in difflib.get_close_matches(name, names, 1)]
        hint = f"did you mean {', '.join(close)}? " if close else ""
        raise ConversionError(f"--exclude names unknown nodes: {', '.join(unknown)}; {hint}"
                              "`edge inspect MODEL --json` lists every node's name under "
                              "\"nodes\"")


def quantizable_inputs(model: onnx.ModelProto) -> dict[str, list[int]]:
    """Node name -> indices of activation inputs to quantize under TensorRT's rules."""
    initializers = {i.name for i in model.graph.initializer}
    producers = {out: node.op_type for node in model.graph.node for out in node.output}
    tail = decode_tail(model)
    chosen: dict[str, list[int]] = {}
    for node in model.graph.node:
        if node.name in tail:
            continue
        if node.op_type in WEIGHTED_OPS and node.input[0] not in initializers:
            chosen[node.name] = [0]
            if node.op_type == "MatMul" and node.input[1] not in initializers:
                chosen[node.name].append(1)
        elif node.op_type in POOLING_OPS:
            chosen[node.name] = [0]
        elif node.op_type == "Add" and not set(node.input) & initializers:
            fusible = [producers.get(name) in FUSIBLE_PRODUCERS for name in node.input]
            residual = [i for i, f in enumerate(fusible) if not f]
            chosen[node.name] = residual if residual and len(residual) < 2 else (
                [1] if all(fusible) else [0, 1])
    return chosen


def qdq_for_tensorrt(model: onnx.ModelProto, ranges: TensorRanges,
                     exclude: Collection[str] = ()) -> onnx.ModelProto:
    """A QDQ copy of `model` under TensorRT's rules; nodes named in `exclude` stay float."""
    check_exclusions(model, exclude)
    _check_supported(model, exclude)
    quantized = onnx.ModelProto()
    quantized.CopyFrom(model)
    graph = quantized.graph
    initializers = {i.name: i for i in graph.initializer}
    inserter = _Inserter(quantized, ranges)
    plan = quantizable_inputs(quantized)
    for node in graph.node:
        if node.name in exclude or node.name not in plan:
            continue
        for index in plan[node.name]:
            node.input[index] = inserter.activation(node.input[index])
        if node.op_type in WEIGHTED_OPS and len(node.input) > 1 and \
                node.input[1] in initializers:
            node.input[1] = inserter.weight(node, initializers[node.input[1]])
    _insert_topologically(graph, inserter)
    drop_unused_initializers(graph)
    onnx.checker.check_model(quantized)
    return quantized


def activation_scales(quantized: onnx.ModelProto) -> dict[str, str]:
    """Activation tensor -> the initializer holding its scale, in a model `qdq_for_tensorrt`
    made (weights, quantized ahead, are not listed)."""
    initializers = {i.name for i in quantized.graph.initializer}
    return {node.input[0]: node.input[1] for node in quantized.graph.node
            if node.op_type == "QuantizeLinear" and node.input[0] not in initializers}


def with_activation_ranges(quantized: onnx.ModelProto, ranges: TensorRanges) -> onnx.ModelProto:
    """A copy of `quantized` (made by `qdq_for_tensorrt`) with its activation scales set from
    `ranges`: what `qdq_for_tensorrt` makes of the same model and exclusions with `ranges`, in
    a few milliseconds instead of quantizing every weight and checking the graph again."""
    scales = activation_scales(quantized)
    missing = sorted(set(scales) - set(ranges.ranges))
    if missing:
        raise _no_range_for(missing[0])
    copied = onnx.ModelProto()
    copied.CopyFrom(quantized)
    by_name = {i.name: i for i in copied.graph.initializer}
    for tensor, scale in scales.items():
        by_name[scale].CopyFrom(numpy_helper.from_array(
            np.array(ranges.ranges[tensor].scale, np.float32), scale))
    return copied


def _no_range_for(tensor: str) -> ConversionError:
    return ConversionError(f"no calibration range for tensor {tensor}; recalibrate with the "
                           "same model")


def _check_supported(model: onnx.ModelProto, exclude: Collection[str]) -> None:
    """Refuse, by node name, what this profile cannot quantize or TensorRT cannot parse."""
    foreign = [f"{n.name} ({n.domain}.{n.op_type})" for n in model.graph.node
               if n.domain not in ("", "ai.onnx")]
    if foreign:
        raise ConversionError(
            f"TensorRT's ONNX parser has no ops outside the ONNX domain, and the model has "
            f"{len(foreign)}: {', '.join(foreign[:8])}; quantize it with --profile cpu for ONNX "
            "Runtime, or export the model again without them")
    initializers = {i.name for i in model.graph.initializer}
    plan = quantizable_inputs(model)
    dynamic = [n.name for n in model.graph.node
               if n.op_type in WEIGHTED_OPS - {"MatMul"} and n.name in plan
               and n.name not in exclude and (len(n.input) < 2 or n.input[1] not in initializers)]
    if dynamic:
        raise ConversionError(
            f"the tensorrt profile quantizes weights per channel, but {len(dynamic)} node(s) "
            f"take weights computed in the graph: {', '.join(dynamic)}; keep them in float with "
            f"--exclude {' '.join(dynamic)}")


def _insert_topologically(graph: onnx.GraphProto, inserter: _Inserter) -> None:
    """Place each new node right after whatever produces its input (onnx graphs are stored in
    topological order): weight DQs first, activation Q/DQ pairs after their producer."""
    graph.initializer.extend(inserter.new_initializers)
    pending: dict[str, list[onnx.NodeProto]] = {}
    for node in inserter.new_nodes:
        pending.setdefault(node.input[0], []).append(node)
    ordered: list[onnx.NodeProto] = []

    def emit(tensor: str) -> None:
        for follower in pending.pop(tensor, []):
            ordered.append(follower)
            for output in follower.output:
                emit(output)

    for name in [v.name for v in graph.input] + [i.name for i in graph.initializer]:
        emit(name)
    for node in list(graph.node):
        ordered.append(node)
        for output in node.output:
            emit(output)
    del graph.node[:]
    graph.node.extend(ordered)

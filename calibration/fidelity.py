"""How far an INT8 model strays from its FP32 reference: SQNR of outputs and inner tensors.

Both models run on ONNX Runtime's CPU provider over the same inputs; signal and noise are summed
over every input before the ratio is taken, so one quiet frame cannot dominate.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

import numpy as np
import numpy.typing as npt
import onnx
import onnxruntime as ort

from calibration.layers import weighted_nodes
from calibration.stats import model_exposing
from edge.ort_session import QDQ_IN_FLOAT, intra_op_threads
from edge.postprocess import HEAD_DECODERS, paired_rows
from edge.spec import ModelSpec


def decibels(signal: float, noise: float) -> float:
    return float(10 * np.log10(max(signal, 1e-30) / max(noise, 1e-30)))


class SignalNoise:
    """Signal and error energy (float64 sums of squares) per named tensor or part, summed over
    inputs; `decibels(name)` is their SQNR."""

    def __init__(self) -> None:
        self._sums: dict[str, list[float]] = {}

    def add(self, name: str, reference: npt.NDArray[Any], output: npt.NDArray[Any]) -> None:
        sums = self._sums.setdefault(name, [0.0, 0.0])
        sums[0] += float(np.square(reference, dtype=np.float64).sum())
        sums[1] += float(np.square(reference - output, dtype=np.float64).sum())

    def decibels(self, name: str) -> float:
        signal, noise = self._sums.get(name, [0.0, 0.0])
        return decibels(signal, noise)


def detector_parts(head: str, reference: npt.NDArray[Any], output: npt.NDArray[Any]
                   ) -> Iterator[tuple[str, npt.NDArray[Any], npt.NDArray[Any]]]:
    """("boxes" | "scores", FP32 part, INT8 part) of each batch row of a detector's raw output
    ([N, ...] of the `head` layout). Measured apart because pooled, the box coordinates
    (hundreds of pixels) drown the class scores (0..1). An end-to-end head's rows are compared
    as detections paired across the two (`paired_rows`), not by position."""
    split = HEAD_DECODERS[head]
    for rows in zip(reference, output, strict=True):
        ref_row, out_row = paired_rows(*rows)[:2] if head == "end_to_end" else rows
        yield from zip(("boxes", "scores"), split(ref_row), split(out_row), strict=True)


def tensor_sqnr(reference: onnx.ModelProto, quantized: onnx.ModelProto, names: list[str],
                inputs: Iterable[dict[str, npt.NDArray[Any]]],
                heads: Mapping[str, str] | None = None,
                int8_kernels: bool = True,
                quantized_names: list[str] | None = None) -> dict[str, float]:
    """SQNR (dB) of each named tensor, INT8 vs FP32, accumulated over `inputs`; a tensor in
    `heads` (a detector's raw output: its head layout) as `"<name> boxes"` and
    `"<name> scores"` instead. `quantized_names`: where `quantized` holds those tensors under
    other names (in `names`' order; default the same names).
    `int8_kernels`: `quantized` run through ONNX Runtime's int8 kernels (a `cpu` profile
    model, as it runs), or False: as its QDQ graph defines it (a `tensorrt` profile model:
    TensorRT's arithmetic), as `calibration.selection` judges candidates."""
    heads = heads or {}
    theirs_names = quantized_names or names
    fp32 = quantized_session(model_exposing(reference, names), 0)
    int8 = quantized_session(model_exposing(quantized, theirs_names), 0, int8_kernels)
    energy = SignalNoise()
    for feed in inputs:
        ours, theirs = fp32.run(names, feed), int8.run(theirs_names, feed)
        for name, ref, q in zip(names, ours, theirs, strict=True):
            if name in heads:
                for part, ref_part, q_part in detector_parts(heads[name], ref, q):
                    energy.add(f"{name} {part}", ref_part, q_part)
            else:
                energy.add(name, ref, q)
    keys = [key for name in names
            for key in ((f"{name} boxes", f"{name} scores") if name in heads else (name,))]
    return {key: energy.decibels(key) for key in keys}


def quantized_session(model: onnx.ModelProto, threads: int, int8_kernels: bool = True) -> Any:
    """A CPU session on `model` with `threads` threads. `int8_kernels`: Q/DQ pairs fused into
    ONNX Runtime's int8 kernels, as it deploys a `cpu` profile model; False: every Q/DQ computed
    in float as the graph defines it, the arithmetic TensorRT implements (its int8 layers
    accumulate exactly), the same on every CPU. ONNX Runtime's kernels are not: on x86 without
    VNNI a `tensorrt` profile classifier measured 6.5 dB output SQNR through them and 11.5 dB
    as the graph defines it."""
    options = ort.SessionOptions()
    options.intra_op_num_threads = intra_op_threads(threads)
    options.log_severity_level = 3
    if not int8_kernels:  # weights are dequantized once, when the session is built
        options.add_session_config_entry(*QDQ_IN_FLOAT)
    return ort.InferenceSession(model.SerializeToString(), options,
                                providers=["CPUExecutionProvider"])


def layer_sqnr(reference: onnx.ModelProto, quantized: onnx.ModelProto,
               inputs: Iterable[dict[str, npt.NDArray[Any]]], limit: int = 8,
               int8_kernels: bool = True) -> dict[str, float]:
    """SQNR (dB) of every weighted node's output (FP32 `reference`'s nodes) over the first
    `limit` inputs, by node name; low values mark the layers that suffer most from
    quantization. A layer whose ReLU or Clip ONNX Runtime's quantizer fused (its output then
    carries the activation's name and holds the values before the clamp) is measured after
    that activation, applied again to its output. `int8_kernels` as in `tensor_sqnr`."""
    layers = layer_outputs(reference, quantized)
    measured = _with_fused_activations(quantized, reference, layers)
    by_tensor = tensor_sqnr(reference, measured, [ref for _, ref, _ in layers.values()],
                            itertools.islice(inputs, limit), int8_kernels=int8_kernels,
                            quantized_names=[ours for _, _, ours in layers.values()])
    return {node: by_tensor[ref] for node, (_, ref, _) in layers.items()}


#: Activations ONNX Runtime's QDQ quantizer removes behind a layer whose output it quantizes:
#: the Q/DQ pair's range (from 0, or the Clip's bounds) clamps as the activation did.
FUSED_ACTIVATIONS = frozenset({"Relu", "Clip"})
#: Appended to a fused activation's output name for the copy `layer_sqnr` applies.
REAPPLIED_SUFFIX = "_edge_reapplied"


def layer_outputs(reference: onnx.ModelProto, quantized: onnx.ModelProto
                  ) -> dict[str, tuple[onnx.NodeProto | None, str, str]]:
    """node name -> (the fused activation or None, the FP32 tensor, the tensor of `quantized`
    to compare it with) for each weighted node of `reference` that `quantized` keeps under its
    name, with its output or its fused activation's (a Clip's with constant bounds). Other
    layers (rewritten, say, by the `cpu` profile's pixel stem) are left out."""
    present = {o for n in quantized.graph.node for o in n.output}
    ours = {n.name: n for n in quantized.graph.node}
    constant = {i.name for i in reference.graph.initializer} | {
        n.output[0] for n in reference.graph.node if n.op_type == "Constant"} | {""}
    activation_of = {n.input[0]: n for n in reference.graph.node
                     if n.op_type in FUSED_ACTIVATIONS and n.input
                     and set(n.input[1:]) <= constant}  # a Clip's bounds can be copied
    layers: dict[str, tuple[onnx.NodeProto | None, str, str]] = {}
    for node in weighted_nodes(reference):
        output = node.output[0]
        if output in present:
            layers[node.name] = (None, output, output)
            continue
        quantized_node = ours.get(node.name)
        activation = activation_of.get(output)
        if (quantized_node is not None and activation is not None
                and quantized_node.output[0] == activation.output[0]):
            layers[node.name] = (activation, activation.output[0],
                                 activation.output[0] + REAPPLIED_SUFFIX)
    return layers


def _with_fused_activations(quantized: onnx.ModelProto, reference: onnx.ModelProto,
                            layers: Mapping[str, tuple[onnx.NodeProto | None, str, str]]
                            ) -> onnx.ModelProto:
    """A copy of `quantized` in which each fused activation of `layers` is applied again to
    its layer's output, under the name `layer_outputs` gave it; a Clip's bounds are copied
    from `reference` (initializers or Constant nodes)."""
    fused = [(activation, ours) for activation, _, ours in layers.values() if activation]
    if not fused:
        return quantized
    measured = onnx.ModelProto()
    measured.CopyFrom(quantized)
    initializers = {i.name: i for i in reference.graph.initializer}
    constants = {n.output[0]: n for n in reference.graph.node if n.op_type == "Constant"}
    for activation, ours in fused:
        bounds = []
        for name in activation.input[1:]:
            if not name:
                bounds.append("")
                continue
            copied = name + REAPPLIED_SUFFIX
            if name in initializers:
                bound = onnx.TensorProto()
                bound.CopyFrom(initializers[name])
                bound.name = copied
                measured.graph.initializer.append(bound)
            else:  # a Constant node, copied under the new name
                constant = onnx.NodeProto()
                constant.CopyFrom(constants[name])
                del constant.output[:]
                constant.output.append(copied)
                constant.name = copied
                measured.graph.node.append(constant)
            bounds.append(copied)
        again = onnx.NodeProto()
        again.CopyFrom(activation)
        del again.input[:], again.output[:]
        again.input.extend([activation.output[0], *bounds])
        again.output.append(ours)
        again.name = ours
        measured.graph.node.append(again)
    return measured


def output_sqnr(reference: onnx.ModelProto, quantized: onnx.ModelProto,
                inputs: Iterable[dict[str, npt.NDArray[Any]]],
                spec: ModelSpec | None = None, int8_kernels: bool = True) -> dict[str, float]:
    """SQNR (dB) of each model output, INT8 vs FP32; with the `spec` of a detector, its raw
    output's boxes and class scores apart (`detector_parts`). `int8_kernels` as in
    `tensor_sqnr`."""
    heads = ({spec.output: spec.head} if spec is not None and spec.head in HEAD_DECODERS
             else {})
    return tensor_sqnr(reference, quantized, [o.name for o in reference.graph.output], inputs,
                       heads, int8_kernels)

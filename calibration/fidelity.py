"""How far an INT8 model strays from its FP32 reference: SQNR of outputs and inner tensors.

Both models run on ONNX Runtime's CPU provider over the same inputs; signal and noise are summed
over every input before the ratio is taken, so one quiet frame cannot dominate.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable
from typing import Any

import numpy as np
import numpy.typing as npt
import onnx
import onnxruntime as ort

from calibration.stats import model_exposing


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


def tensor_sqnr(reference: onnx.ModelProto, quantized: onnx.ModelProto, names: list[str],
                inputs: Iterable[dict[str, npt.NDArray[Any]]]) -> dict[str, float]:
    """SQNR (dB) of each named tensor, INT8 vs FP32, accumulated over `inputs`."""

    sessions = [ort.InferenceSession(model_exposing(m, names).SerializeToString(),
                                     providers=["CPUExecutionProvider"])
                for m in (reference, quantized)]
    energy = SignalNoise()
    for feed in inputs:
        ours, theirs = (s.run(names, feed) for s in sessions)
        for name, ref, q in zip(names, ours, theirs, strict=True):
            energy.add(name, ref, q)
    return {name: energy.decibels(name) for name in names}


#: Ops whose second input, when an initializer, is a layer's weights.
WEIGHTED_OPS = frozenset({"Conv", "ConvTranspose", "Gemm", "MatMul"})


def weighted_nodes(model: onnx.ModelProto) -> list[onnx.NodeProto]:
    """Conv, Gemm and MatMul nodes whose second input is a float weight initializer (not, say,
    a Gather's int64 indices, whose output is no activation)."""
    weights = {i.name for i in model.graph.initializer if i.data_type == onnx.TensorProto.FLOAT}
    return [n for n in model.graph.node
            if n.op_type in WEIGHTED_OPS and len(n.input) > 1 and n.input[1] in weights]


def layer_sqnr(reference: onnx.ModelProto, quantized: onnx.ModelProto,
               inputs: Iterable[dict[str, npt.NDArray[Any]]], limit: int = 8) -> dict[str, float]:
    """SQNR (dB) of every weighted node's output (FP32 `reference`'s nodes) over the first
    `limit` inputs, by node name; low values mark the layers that suffer most from
    quantization."""
    present = {o for n in quantized.graph.node for o in n.output}
    node_of = {n.output[0]: n.name for n in weighted_nodes(reference) if n.output[0] in present}
    by_tensor = tensor_sqnr(reference, quantized, list(node_of), itertools.islice(inputs, limit))
    return {node_of[name]: value for name, value in by_tensor.items()}


def output_sqnr(reference: onnx.ModelProto, quantized: onnx.ModelProto,
                inputs: Iterable[dict[str, npt.NDArray[Any]]]) -> dict[str, float]:
    """SQNR (dB) of each model output, INT8 vs FP32."""
    return tensor_sqnr(reference, quantized, [o.name for o in reference.graph.output], inputs)

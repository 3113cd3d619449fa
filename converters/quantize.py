"""`edge calibrate`: a converted FP32 model + calibration frames -> INT8 artifacts.

frames -> streaming statistics -> ranges (one method) -> QDQ model for the chosen profile
(`tensorrt`: TensorRT's rules, validated; `cpu`: fastest on ONNX Runtime) and optionally a
TensorRT calibration cache and the ranges as JSON.
"""

from __future__ import annotations

import itertools
import logging
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import numpy.typing as npt
import onnx
from google.protobuf.message import DecodeError

from calibration.cache import CalibrationCache
from calibration.ranges import TensorRanges, range_method
from calibration.readers import FrameSet, prefetched
from calibration.stats import StatsCollector, TensorStats, float_tensors, model_exposing
from converters.metadata import onnx_with_spec
from converters.model_report import quantization_summary
from converters.qdq_cpu import qdq_for_cpu
from converters.qdq_rules import check_tensorrt_qdq
from converters.qdq_tensorrt import WEIGHTED_OPS, qdq_for_tensorrt, quantizable_inputs
from edge.errors import ModelError
from edge.spec import SPEC_KEY, ModelSpec

log = logging.getLogger(__name__)

Profile = Literal["tensorrt", "cpu"]


@dataclass(frozen=True)
class CalibrateOptions:
    profile: Profile = "tensorrt"
    method: str = "mse"
    percentile: float = 99.99
    exclude: tuple[str, ...] = ()
    keep_float: int = 0  # automatically keep this many worst layers (by SQNR) in float
    with_cache: bool = False  # collect every float tensor, as a TensorRT cache needs
    threads: int = 0
    progress: bool = True


@dataclass
class Calibrated:
    model: onnx.ModelProto
    ranges: TensorRanges
    stats: dict[str, TensorStats]
    excluded: list[str]
    seconds: float
    frames: int
    layer_sqnr: dict[str, float] = field(default_factory=dict)

    def cache(self, trt_version: str, spec: ModelSpec) -> CalibrationCache:
        # The uint8 image input spans 0..255: TensorRT needs its real scale (1.0), not amax/127.
        return CalibrationCache.from_ranges(self.ranges, trt_version, (spec.input.name, 1.0))


def load_float_model(path: Path) -> tuple[onnx.ModelProto, ModelSpec]:
    if not path.is_file():
        raise ModelError(f"model {path} does not exist")
    try:
        model = onnx.load(str(path))
    except (DecodeError, OSError, ValueError) as exc:
        raise ModelError(f"{path} is not an ONNX model ({exc})") from exc
    props = {p.key: p.value for p in model.metadata_props}
    if SPEC_KEY not in props:
        raise ModelError(f"{path} has no edge spec; convert it with `edge convert` first")
    if quantization_summary(model)["quantized"]:
        raise ModelError(f"{path} is already quantized; calibrate the FP32 model it came from")
    return model, ModelSpec.from_json(props[SPEC_KEY], str(path))


def tensors_to_observe(model: onnx.ModelProto, options: CalibrateOptions) -> list[str]:
    """Only what the outputs need: the TensorRT profile needs the inputs it quantizes; the CPU
    profile and a calibration cache need every float activation."""
    if options.profile == "cpu" or options.with_cache:
        return float_tensors(model)
    plan = quantizable_inputs(model)
    wanted = {node.input[i] for node in model.graph.node for i in plan.get(node.name, [])}
    return [name for name in float_tensors(model) if name in wanted]


def _progress(items: Iterable[Any], total: int, enabled: bool) -> Iterator[Any]:
    if not enabled:
        yield from items
        return
    try:
        from tqdm import tqdm
    except ImportError:
        yield from items
        return
    yield from tqdm(items, total=total, desc="calibrating", unit="frame", leave=False)


def calibrate(model: onnx.ModelProto, spec: ModelSpec, frames: FrameSet,
              options: CalibrateOptions) -> Calibrated:
    started = time.perf_counter()
    collector = StatsCollector(model, tensors_to_observe(model, options), options.threads)
    stats = collector.collect(_progress(prefetched(frames.inputs(spec)), frames.count,
                                        options.progress))
    method = range_method(options.method, options.percentile)
    ranges = TensorRanges.from_stats(stats, method, collector.frames)
    excluded = list(options.exclude)
    quantized = _quantize(model, ranges, options, excluded)
    sqnr: dict[str, float] = {}
    if options.keep_float:
        sqnr = layer_sqnr(model, quantized, frames, spec, limit=8)
        worst = sorted((s, n) for n, s in sqnr.items() if n not in excluded)
        excluded += [name for _, name in worst[:options.keep_float]]
        log.info("keeping in float (worst SQNR): %s", ", ".join(excluded))
        quantized = _quantize(model, ranges, options, excluded)
    quantized = onnx_with_spec(quantized, spec)
    return Calibrated(quantized, ranges, stats, excluded, time.perf_counter() - started,
                      collector.frames, sqnr)


def _quantize(model: onnx.ModelProto, ranges: TensorRanges, options: CalibrateOptions,
              exclude: list[str]) -> onnx.ModelProto:
    if options.profile == "tensorrt":
        quantized = qdq_for_tensorrt(model, ranges, exclude)
        check_tensorrt_qdq(quantized, "the quantized model")
        return quantized
    return qdq_for_cpu(model, ranges, exclude)


def tensor_sqnr(reference: onnx.ModelProto, quantized: onnx.ModelProto, names: list[str],
                inputs: Iterable[dict[str, npt.NDArray[Any]]]) -> dict[str, float]:
    """SQNR (dB) of each named tensor, INT8 vs FP32, accumulated over `inputs`."""
    import onnxruntime as ort

    sessions = [ort.InferenceSession(model_exposing(m, names).SerializeToString(),
                                     providers=["CPUExecutionProvider"])
                for m in (reference, quantized)]
    signal = dict.fromkeys(names, 0.0)
    noise = dict.fromkeys(names, 0.0)
    for feed in inputs:
        ours, theirs = (s.run(names, feed) for s in sessions)
        for name, ref, q in zip(names, ours, theirs, strict=True):
            signal[name] += float(np.square(ref, dtype=np.float64).sum())
            noise[name] += float(np.square(ref - q, dtype=np.float64).sum())
    return {name: _decibels(signal[name], noise[name]) for name in names}


def layer_sqnr(reference: onnx.ModelProto, quantized: onnx.ModelProto, frames: FrameSet,
               spec: ModelSpec, limit: int) -> dict[str, float]:
    """SQNR (dB) of every weighted node's output over the first `limit` frames, by node name;
    low values mark the layers that suffer most from quantization."""
    present = {o for n in quantized.graph.node for o in n.output}
    node_of = {n.output[0]: n.name for n in reference.graph.node
               if n.op_type in WEIGHTED_OPS and n.output[0] in present}
    feeds = itertools.islice(frames.inputs(spec), limit)
    by_tensor = tensor_sqnr(reference, quantized, list(node_of), feeds)
    return {node_of[name]: value for name, value in by_tensor.items()}


def _decibels(signal: float, noise: float) -> float:
    return float(10 * np.log10(max(signal, 1e-30) / max(noise, 1e-30)))


def output_sqnr(reference: onnx.ModelProto, quantized: onnx.ModelProto,
                inputs: Iterable[dict[str, npt.NDArray[Any]]]) -> dict[str, float]:
    """SQNR (dB) of each model output, INT8 vs FP32."""
    return tensor_sqnr(reference, quantized, [o.name for o in reference.graph.output], inputs)

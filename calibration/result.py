"""What a calibration produced: the INT8 model, its ranges and the statistics behind them."""

from __future__ import annotations

from dataclasses import dataclass, field

import onnx

from calibration.cache import CalibrationCache, cache_from_ranges
from calibration.latency import LatencyComparison
from calibration.observing import Feed
from calibration.ranges import TensorRanges
from calibration.selection import Fidelity
from calibration.stats import TensorStats
from edge.spec import ModelSpec


@dataclass
class Calibrated:
    model: onnx.ModelProto
    ranges: TensorRanges
    stats: dict[str, TensorStats]
    excluded: list[str]
    seconds: float
    frames: int
    comparison: list[Fidelity] = field(default_factory=list)  # every method on held-out frames
    warning: str | None = None  # what the user should know about the choice (also logged)
    written: Fidelity | None = None  # the written model, where it differs from the chosen one
    phases: dict[str, float] = field(default_factory=dict)  # seconds: statistics, ranges, ...
    requested: str = "auto"  # the method asked for (--method)
    #: Activations of the decode tail, which the INT8 models keep float
    #: (`converters.qdq_tensorrt.decode_tail`)
    decode_tail_tensors: frozenset[str] = frozenset()
    profile: str = "tensorrt"  # `tensorrt` (QDQ by TensorRT's rules) or `cpu` (ONNX Runtime's)
    #: The frames `comparison` was judged on, kept back from the statistics (empty when there
    #: were too few frames to hold any back)
    held_out: list[Feed] = field(default_factory=list)
    #: The written model's latency against FP32's on this CPU (the `cpu` profile only)
    cpu_latency: LatencyComparison | None = None
    #: Nodes of BatchNorms behind activations that the `cpu` profile keeps float by its own
    #: rule (`converters.qdq_cpu.unfolded_batchnorms`), beside `excluded`
    float_batchnorms: list[str] = field(default_factory=list)
    #: The `cpu` profile's stem conv where it stays float (its int8 form did not apply; the
    #: log says why), beside `excluded`
    float_stem: str | None = None
    #: Depthwise and other narrow convs past the stem that the `cpu` profile keeps float by its
    #: own rule (`converters.qdq_cpu.narrow_convs`: no faster in int8), beside `excluded`
    float_narrow_convs: list[str] = field(default_factory=list)
    #: Activations the `excluded` nodes read and write (`converters.qdq_tensorrt.
    #: kept_float_tensors`), which a TensorRT cache leaves out as it does the decode tail's
    excluded_tensors: frozenset[str] = frozenset()

    @property
    def kept_float(self) -> list[str]:
        """Every weighted node the written model keeps float: `excluded`, then the `cpu`
        profile's own (`float_batchnorms`, `float_stem`, `float_narrow_convs`)."""
        return [*self.excluded, *self.float_batchnorms,
                *([self.float_stem] if self.float_stem else []), *self.float_narrow_convs]

    @property
    def int8_kernels(self) -> bool:
        """Whether the model is scored through ONNX Runtime's int8 kernels (`cpu`, as it runs
        there) rather than as its QDQ graph computes (`tensorrt`: TensorRT's arithmetic)."""
        return self.profile == "cpu"

    @property
    def quantized_activations(self) -> int:
        """How many activations the written model quantizes (each read through a
        QuantizeLinear); `ranges` may hold more: a TensorRT cache, asked for, needs every
        float tensor's range."""
        constants = {i.name for i in self.model.graph.initializer}
        return len({node.input[0] for node in self.model.graph.node
                    if node.op_type == "QuantizeLinear" and node.input[0] not in constants})

    @property
    def tensors_words(self) -> str:
        """`68 calibrated tensors, 25 quantized in the model` (more are calibrated than
        quantized where a TensorRT cache was asked for)."""
        quantized = self.quantized_activations
        calibrated = len(self.ranges.ranges)
        return (f"{calibrated} calibrated tensors" if quantized == calibrated else
                f"{calibrated} calibrated tensors, {quantized} quantized in the model")

    def role(self, fidelity: Fidelity) -> str:
        """What `fidelity`'s row is in a comparison table: the written model, the method kept
        ("chosen" by `auto`, else "requested"), or '' for the others."""
        if fidelity is self.written:
            return "written"
        if fidelity.method == self.ranges.method:
            return "chosen" if self.requested == "auto" else "requested"
        return ""

    def cache(self, trt_version: str, spec: ModelSpec) -> CalibrationCache:
        """A TensorRT calibration cache of these ranges. The decode tail's activations, and
        those the `excluded` layers read and write, get no scale, so TensorRT keeps the layers
        reading or writing them out of int8 ("missing scale ... expect fall back to
        non-int8"), as the QDQ models keep them float."""
        left_out = self.decode_tail_tensors | self.excluded_tensors
        ranges = TensorRanges(self.ranges.method, self.ranges.frames, {
            name: tensor_range for name, tensor_range in self.ranges.ranges.items()
            if name not in left_out})
        # The uint8 image input spans 0..255: TensorRT needs its real scale (1.0), not amax/127.
        return cache_from_ranges(ranges, trt_version, (spec.input.name, 1.0))

"""What a calibration produced: the INT8 model, its ranges and the statistics behind them."""

from __future__ import annotations

from dataclasses import dataclass, field

import onnx

from calibration.cache import CalibrationCache, cache_from_ranges
from calibration.ranges import TensorRanges
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
    layer_sqnr: dict[str, float] = field(default_factory=dict)

    def cache(self, trt_version: str, spec: ModelSpec) -> CalibrationCache:
        # The uint8 image input spans 0..255: TensorRT needs its real scale (1.0), not amax/127.
        return cache_from_ranges(self.ranges, trt_version, (spec.input.name, 1.0))

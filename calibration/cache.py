"""TensorRT calibration caches from computed ranges. The file format itself lives in
`edge.tensorrt.calibration_cache`: the device reads it, and `edge` imports nothing from here."""

from __future__ import annotations

from calibration.ranges import TensorRanges
from edge.tensorrt.calibration_cache import (
    ALGORITHM,
    CalibrationCache,
    hex_to_scale,
    scale_to_hex,
    trt_version_number,
)


def cache_from_ranges(ranges: TensorRanges, trt_version: str,
                      input_scale: tuple[str, float] | None = None) -> CalibrationCache:
    """The cache for `ranges` (scale = amax / 127 per tensor); see `CalibrationCache.from_scales`
    for `input_scale`."""
    return CalibrationCache.from_scales({name: r.scale for name, r in ranges.ranges.items()},
                                        trt_version, input_scale)


__all__ = ["ALGORITHM", "CalibrationCache", "cache_from_ranges", "hex_to_scale", "scale_to_hex",
           "trt_version_number"]

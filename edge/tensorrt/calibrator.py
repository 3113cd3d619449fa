"""An INT8 calibrator that serves a calibration cache and never asks for data (TensorRT
8.5-10.x implicit quantization). TensorRT calls `read_calibration_cache` first; a cache that
covers the network means `get_batch` is never needed, and if it is, returning None ends
calibration instead of feeding stale or random data."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from edge.errors import InputError
from edge.tensorrt.calibration_cache import CalibrationCache, trt_version_number

log = logging.getLogger(__name__)


class CacheServer:
    """The calibrator's logic, independent of TensorRT's base class."""

    def __init__(self, cache_path: Path, trt_version: str) -> None:
        self.cache_path = cache_path
        self.expected = trt_version_number(trt_version)
        cache = CalibrationCache.read(cache_path, expected_version=self.expected)  # validates
        self.tensors = len(cache.scales)
        self._bytes = cache_path.read_bytes()
        self.batches_requested = 0

    def get_batch_size(self) -> int:
        return 1

    def get_batch(self, names: list[str]) -> list[int] | None:
        self.batches_requested += 1
        log.warning("TensorRT asked for calibration data although %s was given; the cache does "
                    "not cover tensors %s", self.cache_path, ", ".join(names))
        return None

    def read_calibration_cache(self) -> bytes:
        return self._bytes

    def write_calibration_cache(self, cache: Any) -> None:
        """The cache we serve is the source of truth; TensorRT's rewrite is not kept."""


def _forward(method: Any) -> Any:
    """A method for TensorRT's subclass that calls `method` without `self`."""
    return lambda self, *args: method(*args)


def calibrator_from_cache(trt: Any, cache_path: Path, trt_version: str) -> Any:
    """An `IInt8EntropyCalibrator2` serving `cache_path`; an error on TensorRT >= 11."""
    if not hasattr(trt, "IInt8EntropyCalibrator2"):
        raise InputError(f"TensorRT {trt_version} has no INT8 calibrators; build from the QDQ "
                         "model instead of a calibration cache")
    server = CacheServer(cache_path, trt_version)
    base = trt.IInt8EntropyCalibrator2

    def __init__(self: Any) -> None:  # noqa: N807 - TensorRT's base needs its own __init__
        base.__init__(self)

    methods = {name: _forward(getattr(server, name))
               for name in ("get_batch_size", "get_batch", "read_calibration_cache",
                            "write_calibration_cache")}
    calibrator_class = type("EdgeCacheCalibrator", (base,), {"__init__": __init__, **methods})
    calibrator = calibrator_class()
    calibrator.server = server
    return calibrator

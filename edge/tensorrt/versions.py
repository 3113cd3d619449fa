"""TensorRT versions and what they imply for building.

TensorRT 8.5/8.6/10.x build implicitly quantized or QDQ networks and need the INT8 (and FP16)
builder flags to use int8 kernels for a QDQ model; TensorRT 11 builds strongly typed networks
only: no precision flags, no calibrator.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

from edge.errors import InputError

Precision = Literal["int8", "fp16", "fp32"]
Quantization = Literal["qdq", "calibration-cache", "none"]

SUPPORTED = "TensorRT 8.5 to 11.x"


@dataclass(frozen=True, order=True)
class TrtVersion:
    major: int
    minor: int
    patch: int = 0

    @classmethod
    def parse(cls, text: str) -> TrtVersion:
        match = re.match(r"^\s*(\d+)\.(\d+)(?:\.(\d+))?", text)
        if not match:
            raise InputError(f"{text!r} is not a TensorRT version like 10.3.0")
        version = cls(int(match.group(1)), int(match.group(2)), int(match.group(3) or 0))
        if version < cls(8, 5):
            raise InputError(f"TensorRT {version} is older than 8.5, which edge does not support "
                             f"(it supports {SUPPORTED}; the named-tensor API arrived in 8.5); "
                             "upgrade JetPack")
        if version.major > 11:
            raise InputError(f"TensorRT {version} is newer than edge knows (it supports "
                             f"{SUPPORTED}); upgrade edge or install a supported TensorRT")
        return version

    def __str__(self) -> str:
        return f"{self.major}.{self.minor}.{self.patch}"

    @property
    def strongly_typed_only(self) -> bool:
        return self.major >= 11

    @property
    def supports_calibrators(self) -> bool:
        """Implicit INT8 calibration: deprecated in 10.1, removed in 11."""
        return self.major < 11


@dataclass(frozen=True)
class BuildPlan:
    """What to ask the builder for."""

    strongly_typed: bool
    flags: tuple[str, ...]  # trt.BuilderFlag member names
    uses_calibration_cache: bool


def build_plan(version: TrtVersion, precision: Precision, quantization: Quantization,
               dla: bool = False) -> BuildPlan:
    """Builder settings for `precision` given how the model carries its INT8 scales."""
    if quantization == "calibration-cache" and not version.supports_calibrators:
        raise InputError(f"TensorRT {version} has no implicit INT8 calibration; build from the "
                         "QDQ model (`edge calibrate --profile tensorrt`) instead of a cache")
    if precision == "int8" and quantization == "none":
        raise InputError("an INT8 engine needs a QDQ model or a calibration cache (--cache); "
                         "see `edge calibrate`")
    if version.strongly_typed_only:
        # Types come from the network itself (QDQ -> int8, float weights -> fp32/fp16 casts).
        return BuildPlan(True, ("GPU_FALLBACK",) if dla else (), False)
    flags: list[str] = []
    if precision == "int8":
        flags += ["INT8", "FP16"]  # FP16 for the layers that stay float
    elif precision == "fp16":
        flags.append("FP16")
    if dla:
        flags.append("GPU_FALLBACK")
    return BuildPlan(False, tuple(flags), quantization == "calibration-cache")

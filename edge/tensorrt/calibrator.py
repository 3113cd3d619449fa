"""An INT8 calibrator that serves a calibration cache and never asks for data (TensorRT
8.5-10.x implicit quantization). TensorRT calls `read_calibration_cache` first; a cache that
covers the network means `get_batch` is never needed, and if it is, returning None ends
calibration instead of feeding stale or random data."""

from __future__ import annotations

import importlib.util
import logging
from pathlib import Path
from typing import Any

from edge.errors import InputError
from edge.spec import read_onnx_model
from edge.tensorrt.calibration_cache import CalibrationCache, trt_version_number

log = logging.getLogger(__name__)


#: The share of a calibration cache's tensors that must be tensors of the model it builds:
#: TensorRT's own caches also name tensors its ONNX parser adds ("(Unnamed Layer* 12)..."),
#: ours only the model's; a cache of another model or export matches few or none.
MIN_CACHE_COVERAGE = 0.5
#: The layers whose input activations a calibration cache scales (`edge calibrate` leaves
#: out only those kept in float: a detector's decode tail, --keep-float, --exclude) ...
WEIGHTED_LAYERS = ("Conv", "ConvTranspose", "Gemm", "MatMul")
#: ... and the share of them a cache must scale: one that scales fewer is cut short, or keeps
#: so much in float that an FP16 engine is the better build.
MIN_LAYER_COVERAGE = 0.2


def refuse_a_cache_of_another_model(cache_path: Path, onnx_path: Path) -> None:
    """InputError where most of the tensors `cache_path` scales are not in the ONNX model at
    `onnx_path` (names looked up in its bytes: no onnx needed on the device). TensorRT builds
    such tensors without INT8 scales, in FP16, warning "Missing scale" per tensor, and the
    engine still reads as INT8 (an audit). Likewise where it leaves most of the model's
    weighted layers unscaled (`_refuse_a_partial_cache`)."""
    scales = CalibrationCache.read(cache_path).scales
    names = network_tensors(list(scales))
    model = onnx_path.read_bytes()
    missing = [name for name in names if name.encode() not in model]
    if names and len(missing) > (1.0 - MIN_CACHE_COVERAGE) * len(names):
        # counted as `edge inspect` counts them, and those compared apart (a user check: 45
        # here against inspect's 49, unexplained)
        compared = (f"{len(missing)} of them" if len(names) == len(scales) else
                    f"{len(missing)} of the {len(names)} besides the input and its "
                    "preprocessing")
        raise InputError(
            f"calibration cache {cache_path} scales {len(scales)} tensors, {compared} not in "
            f"{onnx_path} (e.g. {', '.join(missing[:3])}): it was made for another "
            "model, or another export of this one, and TensorRT would build those tensors "
            f"without INT8 scales; make one for this model with `edge calibrate {onnx_path} "
            "--images DIR -o OUT.onnx --cache OUT.cache`")
    _refuse_a_partial_cache(cache_path, onnx_path, scales)


def _refuse_a_partial_cache(cache_path: Path, onnx_path: Path, scales: dict[str, float]
                            ) -> None:
    """InputError where the cache leaves the inputs of more than 4 in 5 of the model's weighted
    layers without a scale (a user check: a cache cut to 7 of its 49 lines was taken, and
    TensorRT would have built most layers in FP16). Needs the onnx package (the jetson extra
    has it); without it, not checked."""
    if importlib.util.find_spec("onnx") is None:
        return
    graph = read_onnx_model(onnx_path).graph
    weights = {initializer.name for initializer in graph.initializer}
    inputs = list(dict.fromkeys(node.input[0] for node in graph.node
                                if node.op_type in WEIGHTED_LAYERS and node.input
                                and node.input[0] not in weights))
    unscaled = [name for name in inputs if name not in scales]
    if inputs and len(unscaled) > (1.0 - MIN_LAYER_COVERAGE) * len(inputs):
        raise InputError(
            f"calibration cache {cache_path} has no scale for the inputs of {len(unscaled)} of "
            f"the {len(inputs)} weighted layers of {onnx_path} (e.g. "
            f"{', '.join(unscaled[:3])}): TensorRT would build those layers without INT8. Lines "
            "lost in copying or editing? Write the whole cache again with `edge calibrate "
            f"{onnx_path} --images DIR -o OUT.onnx --cache OUT.cache`; where edge calibrate "
            "kept that many layers float (--keep-float, --exclude), build it as FP16 "
            "(--precision fp16) instead")


def network_tensors(names: list[str]) -> list[str]:
    """`names` but the input and the preprocessing `edge convert` folds in front of every
    model (`<input>__pre_float`, `<input>__normalised`...), which any other model's cache
    names too (a user check: 5 of a tiny classifier's 9 cached tensors were in the demo model,
    so its cache passed for the demo model's); all of `names` where that leaves none."""
    inputs = {name.split("__pre_")[0] for name in names if "__pre_" in name}
    network = [name for name in names if name not in inputs and "__pre_" not in name
               and not name.endswith("__normalised")]
    return network or names


class CacheServer:
    """The calibrator's logic, independent of TensorRT's base class."""

    def __init__(self, cache_path: Path, trt_version: str) -> None:
        self.cache_path = cache_path
        self.expected = trt_version_number(trt_version)
        cache = CalibrationCache.read(cache_path, expected_version=self.expected)  # validates
        self.tensors = len(cache.scales)
        # TensorRT gets the cache as read and checked, written out again as TensorRT writes
        # one: the lines of a hand-edited file that the reader takes leniently (CRLF ends,
        # spaces around names) are not left for TensorRT to parse otherwise (a user check)
        self._bytes = cache.to_text().encode()
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

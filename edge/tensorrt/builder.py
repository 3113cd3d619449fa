"""Build TensorRT engines from converted ONNX models (`edge build-engine`, and `edge run` on
first start). Engine builds take minutes on a Jetson, so progress and time are reported."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edge.errors import InputError, ModelError
from edge.files import write_bytes_atomic
from edge.spec import ModelSpec
from edge.tensorrt import TensorRTUnavailableError, load_tensorrt
from edge.tensorrt.calibrator import calibrator_from_cache, refuse_a_cache_of_another_model
from edge.tensorrt.precision import precision_for, quantization_of
from edge.tensorrt.versions import BuildPlan, Precision, Quantization, TrtVersion, build_plan

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class BuildOptions:
    precision: Precision = "int8"
    workspace_mb: int = 1024
    calibration_cache: Path | None = None  # FP32 ONNX + cache (TensorRT 8.5-10.x)
    timing_cache: Path | None = None
    max_batch: int = 8  # for dynamic-batch models
    dla_core: int = -1  # Jetson AGX/NX: run on this DLA core, GPU fallback for the rest


@dataclass(frozen=True)
class BuiltEngine:
    data: bytes
    seconds: float
    trt_version: str


class _Progress:
    """Logs TensorRT's build phases (IProgressMonitor exists from TensorRT 10)."""

    def __init__(self) -> None:
        self.started = time.monotonic()

    def phase_start(self, phase_name: str, parent_phase: str | None, num_steps: int) -> None:
        if parent_phase is None:
            log.info("[%5.0fs] %s (%d steps)", time.monotonic() - self.started, phase_name,
                     num_steps)

    def step_complete(self, phase_name: str, step: int) -> bool:
        return True  # never cancel

    def phase_finish(self, phase_name: str) -> None:
        log.debug("[%5.0fs] %s done", time.monotonic() - self.started, phase_name)


def _monitor(trt: Any) -> Any:
    base = getattr(trt, "IProgressMonitor", None)
    if base is None:
        return None
    progress = _Progress()

    def __init__(self: Any) -> None:  # noqa: N807 - the pybind base needs its __init__
        base.__init__(self)

    cls = type("EdgeProgress", (base,), {
        "__init__": __init__,
        "phase_start": lambda self, *a: progress.phase_start(*a),
        "step_complete": lambda self, *a: progress.step_complete(*a),
        "phase_finish": lambda self, *a: progress.phase_finish(*a)})
    return cls()


def engine_from_onnx(onnx_path: Path, options: BuildOptions, spec: ModelSpec,
                     free_gpu_bytes: int | None = None) -> BuiltEngine:
    """Parse, configure and build; raises ModelError/InputError with the reason."""
    trt = load_tensorrt()
    version = TrtVersion.parse(trt.__version__)
    quantization = _plan_quantization(onnx_path, spec, options, version)
    plan = build_plan(version, options.precision, quantization, dla=options.dla_core >= 0)
    if plan.uses_calibration_cache and options.calibration_cache is not None:
        refuse_a_cache_of_another_model(options.calibration_cache, onnx_path)
    batch = spec.input.batch
    workspace = options.workspace_mb << 20
    if free_gpu_bytes is not None and workspace > free_gpu_bytes:
        raise InputError(f"the {options.workspace_mb} MB workspace exceeds the "
                         f"{free_gpu_bytes >> 20} MB of free GPU memory; pass a smaller "
                         "--workspace-mb or stop other GPU users")
    logger = trt.Logger(trt.Logger.WARNING)
    builder = tensorrt_object(trt.Builder, logger, version)
    network = builder.create_network(_network_flags(trt, version, plan))
    parser = trt.OnnxParser(network, logger)
    if not parser.parse(onnx_path.read_bytes()):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise ModelError(f"TensorRT {version} cannot parse {onnx_path}: {errors}")
    # TensorRT keeps raw pointers to the calibrator and the progress monitor: hold them here
    # until the build is done so Python cannot collect them mid-build.
    config, keep_alive = _config(trt, builder, network, plan, options, batch, version)
    started = time.monotonic()
    log.info("building a %s engine from %s with TensorRT %s (this takes minutes on a Jetson)",
             options.precision, onnx_path.name, version)
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise ModelError(f"TensorRT {version} failed to build {onnx_path}; the log above says "
                         "why (often: workspace too small, or an unsupported layer)")
    _save_timing_cache(config, options.timing_cache)
    del keep_alive
    seconds = time.monotonic() - started
    log.info("engine built in %.0f s", seconds)
    return BuiltEngine(bytes(serialized), seconds, str(version))


def tensorrt_object(factory: Any, logger: Any, version: object) -> Any:
    """trt.Builder or trt.Runtime; pybind11 raises TypeError when TensorRT returns no object,
    which happens when it cannot initialise CUDA."""
    try:
        return factory(logger)
    except TypeError as exc:
        raise TensorRTUnavailableError(
            f"TensorRT {version} could not create its {factory.__name__} ({exc}): CUDA cannot "
            "be initialised; check the NVIDIA driver (JetPack) and that a GPU is visible "
            "(nvidia-smi or tegrastats), or set model.backend = \"onnxruntime\"") from exc


def _plan_quantization(onnx_path: Path, spec: ModelSpec, options: BuildOptions,
                       version: TrtVersion) -> Quantization:
    """How the build gets its INT8 scales; refuses a precision the model cannot honestly have."""
    quantization = quantization_of(onnx_path, spec)
    if options.calibration_cache is not None:
        if quantization != "float":
            raise InputError(f"{onnx_path} is already quantized (QDQ); drop --cache")
        return "calibration-cache"
    precision_for(quantization, options.precision, version, onnx_path)
    return "qdq" if quantization == "int8-qdq" else "none"


def _network_flags(trt: Any, version: TrtVersion, plan: BuildPlan) -> int:
    flags = 0
    if plan.strongly_typed:
        flags |= 1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED)
    elif version.major < 10:
        flags |= 1 << int(trt.NetworkDefinitionCreationFlag.EXPLICIT_BATCH)
    return flags


def _config(trt: Any, builder: Any, network: Any, plan: BuildPlan, options: BuildOptions,
            batch: int | None, version: TrtVersion) -> tuple[Any, list[Any]]:
    """The builder config, and the Python objects it points to (keep them alive)."""
    config = builder.create_builder_config()
    keep_alive: list[Any] = []
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, options.workspace_mb << 20)
    for flag in plan.flags:
        config.set_flag(getattr(trt.BuilderFlag, flag))
    if plan.uses_calibration_cache and options.calibration_cache is not None:
        calibrator = calibrator_from_cache(trt, options.calibration_cache, str(version))
        keep_alive.append(calibrator)
        config.int8_calibrator = calibrator
    if options.timing_cache is not None:
        data = options.timing_cache.read_bytes() if options.timing_cache.is_file() else b""
        config.set_timing_cache(config.create_timing_cache(data), ignore_mismatch=True)
    image = network.get_input(0)
    if batch is None:
        _, height, width, channels = image.shape
        profile = builder.create_optimization_profile()
        profile.set_shape(image.name, (1, height, width, channels),
                          (options.max_batch, height, width, channels),
                          (options.max_batch, height, width, channels))
        config.add_optimization_profile(profile)
    if options.dla_core >= 0:
        config.default_device_type = trt.DeviceType.DLA
        config.DLA_core = options.dla_core
    monitor = _monitor(trt)
    if monitor is not None:
        keep_alive.append(monitor)
        config.progress_monitor = monitor
    return config, keep_alive


def _save_timing_cache(config: Any, path: Path | None) -> None:
    if path is None:
        return

    write_bytes_atomic(path, bytes(config.get_timing_cache().serialize()))

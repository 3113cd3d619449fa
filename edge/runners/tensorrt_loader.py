"""From the config to a TrtRunner: engine cache lookup, build when allowed, one rebuild when a
cached engine fails to deserialize (never a stale engine run silently)."""

from __future__ import annotations

import logging

from edge.config import ModelConfig
from edge.errors import ModelError
from edge.gpu.memory import GpuMemory
from edge.gpu.select import gpu_memory
from edge.runners.tensorrt import TrtRunner
from edge.tensorrt import load_tensorrt
from edge.tensorrt.builder import BuildOptions
from edge.tensorrt.precision import check_engine_request, engine_precision
from edge.tensorrt.store import resolve_engine
from edge.tensorrt.versions import Precision, TrtVersion

log = logging.getLogger(__name__)


def trt_runner_from_config(model: ModelConfig, max_batch: int = 1) -> TrtRunner:
    """`max_batch`: the optimization profile of a dynamic-batch model covers 1..max_batch."""
    if model.path.suffix.lower() != ".onnx":
        raise ModelError(f"model.path {model.path} must be the converted .onnx model; the engine "
                         "is built from it and cached (model.engine_dir)")
    # the model's problems before TensorRT's
    check_engine_request(model.path, model.precision, model.calibration_cache)
    trt = load_tensorrt()
    precision = engine_precision(model.path, model.precision, TrtVersion.parse(trt.__version__),
                                 calibration_cache=model.calibration_cache is not None)
    memory = gpu_memory(model.gpu_memory)
    try:
        return _runner(model, precision, max_batch, memory)
    except BaseException:
        # pycuda's context is current on this thread until closed here: a thread that ends
        # with it pushed aborts the process ("context stack was not empty")
        memory.close()
        raise


def _runner(model: ModelConfig, precision: Precision, max_batch: int, memory: GpuMemory
            ) -> TrtRunner:
    info = memory.device()
    options = BuildOptions(precision=precision, calibration_cache=model.calibration_cache,
                           workspace_mb=model.workspace_mb, dla_core=model.dla_core,
                           max_batch=max_batch)
    resolved = resolve_engine(model.path, options, info.identity, model.engine_dir,
                              build=model.build_engine, free_gpu_bytes=memory.free_bytes())
    try:
        return TrtRunner(resolved.data, resolved.sidecar.spec, memory, max_batch=max_batch,
                         dla_core=model.dla_core, precision=resolved.sidecar.key.precision)
    except ModelError as exc:
        if resolved.built or not model.build_engine:
            raise
        log.warning("cached engine %s is unusable (%s); rebuilding", resolved.entry.engine, exc)
    rebuilt = resolve_engine(model.path, options, info.identity, model.engine_dir,
                             free_gpu_bytes=memory.free_bytes(), force=True)
    return TrtRunner(rebuilt.data, rebuilt.sidecar.spec, memory, max_batch=max_batch,
                     dla_core=model.dla_core, precision=rebuilt.sidecar.key.precision)

"""Find a usable cached engine for an ONNX model, or build one (atomically) and say why."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

from edge.errors import ModelError, OutputError
from edge.files import require_output_file, write_bytes_atomic
from edge.spec import ModelSpec, spec_from_onnx_file
from edge.tensorrt import load_tensorrt
from edge.tensorrt.builder import BuildOptions, engine_from_onnx
from edge.tensorrt.engine_cache import (
    CacheEntry,
    EngineKey,
    GpuIdentity,
    Sidecar,
    bytes_sha256,
    check_entry,
    covering_entry,
    file_sha256,
    find_stale,
    profile_rows,
    shape_profile,
)

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ResolvedEngine:
    data: bytes
    sidecar: Sidecar
    entry: CacheEntry
    built: bool
    reason: str


def resolve_engine(onnx_path: Path, options: BuildOptions, gpu: GpuIdentity,
                   cache_dir: Path | None = None, build: bool = True,
                   free_gpu_bytes: int | None = None, force: bool = False) -> ResolvedEngine:
    """A cached engine whose key matches exactly, else a fresh build written to a temporary
    file and renamed. With `build=False` a missing or stale engine is an error naming the key
    parts that differ."""
    trt = load_tensorrt()
    spec = spec_from_onnx_file(onnx_path)
    key = EngineKey.for_build(
        file_sha256(onnx_path), options.precision,
        shape_profile(spec.input.batch, spec.input.height, spec.input.width, options.max_batch),
        str(trt.__version__), gpu, options.dla_core,
        file_sha256(options.calibration_cache)
        if options.calibration_cache is not None and options.calibration_cache.is_file() else "")
    folder = cache_dir or onnx_path.parent
    entry = CacheEntry.for_key(folder, onnx_path.stem, key)
    verdict = check_entry(entry, key)
    if verdict.usable and not force:
        return ResolvedEngine(entry.engine.read_bytes(), Sidecar.read(entry.sidecar), entry,
                              False, verdict.reason)
    covering = None if force else covering_entry(folder, onnx_path.stem, key)
    if covering is not None:
        sidecar = Sidecar.read(covering.sidecar)
        held = profile_rows(sidecar.key.shape_profile)
        return ResolvedEngine(covering.engine.read_bytes(), sidecar, covering, False,
                              f"cached engine for up to {held} rows a batch covers the "
                              f"{options.max_batch} needed")
    stale = find_stale(folder, onnx_path.stem, options.precision, key)
    reason = "; ".join([verdict.reason if not force else "rebuild forced", *stale])
    if not build:
        raise ModelError(f"no usable TensorRT engine for {onnx_path} ({reason}); build one with "
                         f"`edge build-engine {onnx_path}` or allow building at start")
    log.info("building a TensorRT engine: %s", reason)
    return build_into(entry, onnx_path, options, spec, key, free_gpu_bytes, reason)


def build_into(entry: CacheEntry, onnx_path: Path, options: BuildOptions, spec: ModelSpec,
               key: EngineKey, free_gpu_bytes: int | None, reason: str) -> ResolvedEngine:
    """Build the engine and write it with its sidecar; a cache folder that cannot be written
    into is an error before the build (minutes on a Jetson), naming the setting to change."""
    try:
        require_output_file(entry.engine, "engine")
    except OutputError as exc:
        raise OutputError(f"{exc}; engines are cached next to the model unless --engine-dir "
                          "(engine_dir in the config) names another folder") from exc
    built = engine_from_onnx(onnx_path, options, spec, free_gpu_bytes)
    sidecar = Sidecar(key, bytes_sha256(built.data), spec, built.seconds)
    entry.sidecar.unlink(missing_ok=True)  # never leave a sidecar describing the old engine
    write_bytes_atomic(entry.engine, built.data)
    write_bytes_atomic(entry.sidecar, sidecar.to_json().encode())
    return ResolvedEngine(built.data, sidecar, entry, True, reason)

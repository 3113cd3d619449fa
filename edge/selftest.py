"""`edge selftest --hardware`: the acceptance run for a Jetson (or any NVIDIA GPU) owner.

Quantizes the bundled demo detector for TensorRT, builds its INT8 engine, runs it and ONNX
Runtime FP32 on the same synthetic frames, and reports the mAP@0.5 of both against the scene's
ground truth, FPS and per-stage latency of the TensorRT path.
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import onnx

from calibration.evaluate import StageTimes, accuracy_from_runner
from edge.demo import bundled_model
from edge.runners.base import Runner
from edge.runners.onnxruntime import OrtRunner
from edge.synthetic import ShapeScene
from edge.synthetic.scene import GroundTruth


def _scene_frames(frames: int, seed: int) -> Iterator[tuple[GroundTruth, npt.NDArray[np.uint8]]]:
    scene = ShapeScene(seed=seed)
    for _ in range(frames):
        image, truth = scene.next()
        yield truth, image


def _score(runner: Runner, frames: int, seed: int) -> tuple[float, dict[str, float], float]:
    """mAP@0.5, median ms per stage, and FPS of the whole loop."""
    times = StageTimes()
    started = time.perf_counter()
    accuracy = accuracy_from_runner(runner, _scene_frames(frames, seed), times)
    elapsed = time.perf_counter() - started
    return accuracy.map50 or 0.0, times.medians(), frames / elapsed


def hardware_selftest(frames: int = 300, seed: int = 21, workdir: Path | None = None
                      ) -> dict[str, Any]:
    from calibration.readers import frames_from
    from converters.quantize import CalibrateOptions, calibrate, load_float_model
    from edge.gpu.select import gpu_memory
    from edge.runners.tensorrt import TrtRunner
    from edge.tensorrt import load_tensorrt
    from edge.tensorrt.builder import BuildOptions
    from edge.tensorrt.store import resolve_engine

    trt = load_tensorrt()
    memory = gpu_memory("auto")
    info = memory.device()
    with tempfile.TemporaryDirectory(prefix="edge-selftest-") as scratch:
        folder = workdir or Path(scratch)
        model, spec = load_float_model(bundled_model())
        int8 = calibrate(model, spec, frames_from("synthetic://shapes?seed=3", max_images=64),
                         CalibrateOptions(profile="tensorrt", progress=False))
        qdq_path = folder / "shapes.int8.onnx"
        onnx.save(int8.model, qdq_path)
        resolved = resolve_engine(qdq_path, BuildOptions(precision="int8"), info.identity,
                                  folder, free_gpu_bytes=memory.free_bytes())
        with TrtRunner(resolved.data, resolved.sidecar.spec, memory) as trt_runner:
            trt_map, trt_stages, trt_fps = _score(trt_runner, frames, seed)
    with OrtRunner.from_path(bundled_model()) as ort_runner:
        ort_map, ort_stages, ort_fps = _score(ort_runner, frames, seed)
    return {"gpu": info.identity.name, "integrated": info.integrated,
            "tensorrt": str(trt.__version__), "memory_adapter": memory.name,
            "engine_build_seconds": round(resolved.sidecar.build_seconds, 1),
            "frames": frames, "map50_tensorrt_int8": round(trt_map, 4),
            "map50_onnxruntime_fp32": round(ort_map, 4),
            "map50_delta_points": round(100 * (trt_map - ort_map), 2),
            "fps_tensorrt": round(trt_fps, 1), "fps_onnxruntime": round(ort_fps, 1),
            "latency_ms_tensorrt": trt_stages, "latency_ms_onnxruntime": ort_stages}

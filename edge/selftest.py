"""`edge selftest --hardware`: the acceptance run for a Jetson (or any NVIDIA GPU) owner.

Quantizes the bundled demo detector for TensorRT, builds its INT8 engine, runs it and ONNX
Runtime FP32 on the same synthetic frames, and reports the mAP@0.5 of both against the scene's
ground truth, FPS and per-stage latency of the TensorRT path.
"""

from __future__ import annotations

import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import onnx

from edge.demo import bundled_model
from edge.metrics import DetectionScorer
from edge.postprocess import decoder_from_spec
from edge.preprocess import Letterboxer
from edge.runners.base import Runner
from edge.runners.onnxruntime import OrtRunner
from edge.synthetic import SHAPE_LABELS, ShapeScene


def _score(runner: Runner, frames: int, seed: int) -> tuple[float, dict[str, float], float]:
    """mAP@0.5, median ms per stage, and FPS of the whole loop."""
    spec = runner.spec
    decode = decoder_from_spec(spec, spec.postprocess.model_copy(
        update={"score_threshold": 0.001, "max_detections": 100}))
    letterbox = Letterboxer(spec.input.pad_value)
    scorer = DetectionScorer(len(SHAPE_LABELS))
    scene = ShapeScene(seed=seed)
    stages: dict[str, list[float]] = {"preprocess": [], "infer": [], "postprocess": []}
    started = time.perf_counter()
    for _ in range(frames):
        image, truth = scene.next()
        t0 = time.perf_counter()
        geometry = letterbox(image, runner.input_buffer(0))
        t1 = time.perf_counter()
        output = runner.infer(0)
        t2 = time.perf_counter()
        found = decode(output[0], geometry)
        t3 = time.perf_counter()
        scorer.add(found, truth.boxes, truth.class_ids, truth.difficult)
        for stage, seconds in zip(stages, (t1 - t0, t2 - t1, t3 - t2), strict=True):
            stages[stage].append(seconds * 1e3)
    elapsed = time.perf_counter() - started
    return (scorer.mean_average_precision(),
            {k: round(statistics.median(v), 3) for k, v in stages.items()}, frames / elapsed)


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

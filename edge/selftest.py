"""`edge selftest --hardware`: the acceptance run for a Jetson (or any NVIDIA GPU) owner.

It proves on the device what no CI machine can: the bundled demo detector, quantized for
TensorRT here, builds and runs as an INT8 engine; a corrupted engine file is rebuilt; on
TensorRT 8.5-10 an engine also builds from a calibration cache; and the real daemon (two
synthetic cameras sharing the engine through the inference service's thread, an embedded MQTT
broker) detects as well as ONNX Runtime FP32 does on the same scenes. The result is one JSON
object (`--json`: one line) a Jetson owner can paste into an issue.
"""

from __future__ import annotations

import importlib.util
import platform
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from calibration.evaluate import StageTimes, accuracy_from_runner
from edge import __version__
from edge.demo import bundled_model
from edge.errors import EdgeError
from edge.install_hint import DEMO_ALONE, install_packages
from edge.runners.base import Runner
from edge.runners.onnxruntime import OrtRunner
from edge.synthetic import labelled_frames
from edge.tensorrt.versions import TrtVersion

#: Seeds of the daemon run's two synthetic cameras.
CAMERA_SEEDS = (31, 32)
#: The INT8 engine may lose this much against FP32 (mAP@0.5 and daemon recall) and pass.
TOLERANCE = 0.05


def _score(runner: Runner, frames: int, seed: int) -> tuple[float, dict[str, float], float]:
    """mAP@0.5, median ms per stage, and FPS of the whole loop."""
    times = StageTimes()
    started = time.perf_counter()
    accuracy = accuracy_from_runner(runner, labelled_frames(seed, frames), times)
    elapsed = time.perf_counter() - started
    return accuracy.map50 or 0.0, times.medians(), frames / elapsed


def daemon_scores(model: Path, backend: str, seconds: float, url: str,
                  engine_dir: Path | None = None) -> dict[str, Any]:
    """Run the real daemon on two synthetic cameras for `seconds`; score what reaches the
    broker against each scene's ground truth (precision, recall per camera)."""
    from edge.client import DetectionsMessage, Message, Subscriber
    from edge.config import config_from_dict
    from edge.daemon import Daemon
    from edge.detections import Detections
    from edge.synthetic.replay import ReplayScorer

    cameras = {f"cam{i}": seed for i, seed in enumerate(CAMERA_SEEDS)}
    scorers = {name: ReplayScorer(seed) for name, seed in cameras.items()}
    messages = dict.fromkeys(cameras, 0)
    lock = threading.Lock()

    def received(message: Message) -> None:
        if isinstance(message.payload, DetectionsMessage):
            found = Detections.from_payload([d.model_dump() for d in message.payload.detections])
            with lock:
                scorers[message.payload.camera].add(message.payload.frame_id, found)
                messages[message.payload.camera] += 1

    config = config_from_dict({
        "device_id": f"selftest-{backend}",
        "model": {"path": str(model), "backend": backend,
                  **({"engine_dir": str(engine_dir)} if engine_dir else {})},
        "cameras": [{"name": name, "source": f"synthetic://shapes?fps=15&seed={seed}"}
                    for name, seed in cameras.items()],
        "mqtt": {"url": url}, "frames": {"interval_s": 60.0}}, "edge selftest")
    subscriber = Subscriber(url, config.topic_prefix, ["detections"], callback=received,
                            client_id=f"edge-selftest-watch-{backend}",  # not the daemon's
                            log_first_failure=False,
                            silence_hint_s=None)  # its own daemon: a TensorRT build is silent
    subscriber.start()
    try:
        if not subscriber.wait_subscribed(10.0):
            raise EdgeError(f"the selftest could not subscribe to its MQTT broker at {url}")
        daemon = Daemon(config)
        daemon.start()
        summary = daemon.run(threading.Event(), duration=seconds)
        time.sleep(1.0)  # the last messages in flight
    finally:
        subscriber.stop()
    with lock:
        scores = {name: scorer.precision_recall() for name, scorer in scorers.items()}
    return {"backend": daemon.backend.name, "fps": round(summary.fps, 1),
            "frames": summary.frames, "failure": summary.failure, "messages": messages,
            "precision": {n: round(p, 4) for n, (p, _) in scores.items()},
            "recall": {n: round(r, 4) for n, (_, r) in scores.items()}}


def hardware_selftest(frames: int = 300, seed: int = 21, workdir: Path | None = None,
                      daemon_seconds: float = 10.0) -> dict[str, Any]:
    from edge.gpu.presence import GPU_DEVICE_NODES, gpu_present
    from edge.gpu.select import gpu_memory
    from edge.tensorrt import TensorRTUnavailableError, load_tensorrt

    try:  # the clearest errors first: no TensorRT, then no GPU (exit 2)
        trt = load_tensorrt()
    except TensorRTUnavailableError as exc:
        if gpu_present():
            raise
        raise TensorRTUnavailableError(
            f"no NVIDIA GPU here (none of {', '.join(GPU_DEVICE_NODES)}), and {exc.state}: "
            "the hardware self-test is for a Jetson or a machine with an NVIDIA GPU (TensorRT "
            "alone would not help); on this one `edge demo` checks the ONNX Runtime path"
            + ("" if importlib.util.find_spec("motmetrics") else
               f" (it needs motmetrics: {install_packages(DEMO_ALONE['motmetrics'])})")) from exc
    version = TrtVersion.parse(trt.__version__)
    probe = gpu_memory("auto")
    info, adapter = probe.device(), probe.name
    probe.close()
    result: dict[str, Any] = {
        "edge": __version__, "python": platform.python_version(), "machine": platform.machine(),
        "gpu": info.identity.name, "compute_capability": info.identity.compute_capability,
        "integrated": info.integrated, "tensorrt": str(trt.__version__),
        "memory_adapter": adapter, "frames": frames}
    with tempfile.TemporaryDirectory(prefix="edge-selftest-") as scratch:
        folder = workdir or Path(scratch)
        qdq_path, cache_path = _quantized_demo(folder, version)
        result |= _engines(qdq_path, cache_path, folder, frames, seed)
        from edge.broker import EmbeddedBroker

        with EmbeddedBroker() as broker:
            result["daemon_tensorrt"] = daemon_scores(qdq_path, "tensorrt", daemon_seconds,
                                                      broker.url, folder)
            result["daemon_onnxruntime_fp32"] = daemon_scores(
                bundled_model(), "onnxruntime", daemon_seconds, broker.url)
    result["checks"] = _checks(result)
    result["passed"] = all(result["checks"].values())
    return result


def _quantized_demo(folder: Path, version: TrtVersion) -> tuple[Path, Path | None]:
    """The bundled detector as a TensorRT-profile QDQ model, plus its calibration cache for
    TensorRT 8.5-10 (None on 11, which reads no caches)."""
    from calibration.readers import frames_from
    from converters.quantize import CalibrateOptions, calibrate, load_float_model
    from edge.files import write_bytes_atomic

    with_cache = version.supports_calibrators
    model, spec = load_float_model(bundled_model())
    int8 = calibrate(model, spec, frames_from("synthetic://shapes?seed=3", max_images=64),
                     CalibrateOptions(profile="tensorrt", progress=False, with_cache=with_cache))
    qdq_path = folder / "shapes.int8.onnx"
    write_bytes_atomic(qdq_path, int8.model.SerializeToString())
    if not with_cache:
        return qdq_path, None
    cache_path = folder / "shapes.cache"
    int8.cache(str(version), spec).write(cache_path)
    return qdq_path, cache_path


def _engines(qdq_path: Path, cache_path: Path | None, folder: Path, frames: int,
             seed: int) -> dict[str, Any]:
    """Build (and rebuild a corrupted) INT8 engine, build one from the calibration cache, and
    score them and ONNX Runtime FP32 on the same frames, one thread."""
    from edge.gpu.select import gpu_memory
    from edge.runners.tensorrt import TrtRunner
    from edge.tensorrt.builder import BuildOptions
    from edge.tensorrt.store import resolve_engine

    def engine_map(model: Path, options: BuildOptions) -> tuple[Any, float, dict[str, float],
                                                                 float]:
        memory = gpu_memory("auto")
        try:
            resolved = resolve_engine(model, options, memory.device().identity, folder,
                                      free_gpu_bytes=memory.free_bytes())
            runner = TrtRunner(resolved.data, resolved.sidecar.spec, memory,
                               precision=resolved.sidecar.key.precision)
        except BaseException:
            memory.close()  # else pycuda's context stays pushed on this thread
            raise
        with runner:
            return (resolved, *_score(runner, frames, seed))

    built, trt_map, stages, fps = engine_map(qdq_path, BuildOptions(precision="int8"))
    built.entry.engine.write_bytes(built.data[: len(built.data) // 2])  # a torn engine file
    rebuilt = engine_map(qdq_path, BuildOptions(precision="int8"))[0]
    out: dict[str, Any] = {
        "engine_precision": built.sidecar.key.precision,
        "engine_build_seconds": round(built.sidecar.build_seconds, 1),
        "corrupted_engine_rebuilt": rebuilt.built, "map50_tensorrt_int8": round(trt_map, 4),
        "fps_tensorrt": round(fps, 1), "latency_ms_tensorrt": stages}
    if cache_path is not None:
        cached, cache_map, _, _ = engine_map(bundled_model(), BuildOptions(
            precision="int8", calibration_cache=cache_path))
        out["map50_tensorrt_int8_from_cache"] = round(cache_map, 4)
        out["cache_engine_built"] = cached.built
    with OrtRunner.from_path(bundled_model()) as ort_runner:
        ort_map, ort_stages, ort_fps = _score(ort_runner, frames, seed)
    return out | {"map50_onnxruntime_fp32": round(ort_map, 4),
                  "map50_delta_points": round(100 * (trt_map - ort_map), 2),
                  "fps_onnxruntime": round(ort_fps, 1), "latency_ms_onnxruntime": ort_stages}


def _checks(result: dict[str, Any]) -> dict[str, bool]:
    """What must hold for the device to pass (each one named in the JSON)."""
    fp32 = result["map50_onnxruntime_fp32"]
    trt_daemon, ort_daemon = result["daemon_tensorrt"], result["daemon_onnxruntime_fp32"]
    checks = {
        "int8_engine": result["engine_precision"] == "int8",
        "int8_map_close_to_fp32": result["map50_tensorrt_int8"] >= fp32 - TOLERANCE,
        "corrupted_engine_rebuilt": bool(result["corrupted_engine_rebuilt"]),
        "daemon_ran_on_tensorrt": trt_daemon["backend"] == "tensorrt"
        and trt_daemon["failure"] is None and all(trt_daemon["messages"].values()),
        "daemon_fp32_reference_ran": all(ort_daemon["messages"].values()),
        "daemon_recall_close_to_fp32": all(
            trt_daemon["recall"][name] >= ort_daemon["recall"][name] - TOLERANCE
            for name in ort_daemon["recall"]),
    }
    if "map50_tensorrt_int8_from_cache" in result:
        checks["cache_engine_close_to_fp32"] = bool(result["cache_engine_built"]) and \
            result["map50_tensorrt_int8_from_cache"] >= fp32 - TOLERANCE
    return checks

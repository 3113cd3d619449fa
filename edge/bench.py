"""`edge bench MODEL`: what a deployment of MODEL reaches on this machine, measured in one run.

Two figures from one process, same model, same inference threads:

- the backend alone: a letterboxed frame already in the input buffer, `infer` in a loop, at
  batch 1 and at the batch the daemon would use (frames per second, all rows counted);
- the whole daemon: N replay cameras (frames decoded into memory once and served as fast as the
  loop takes them, so the camera is never the bottleneck) through letterboxing, the shared
  inference service, decoding + NMS and publishing to a real MQTT broker.

`ratio` = pipeline FPS / backend FPS at batch 1: the share of the backend's speed the daemon
keeps. Each phase is warmed up first; the backend-alone runner is closed before the daemon
starts, so the daemon's memory is its own.
"""

from __future__ import annotations

import logging
import os
import resource
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edge.broker import EmbeddedBroker, LocalMosquitto, mosquitto_binary
from edge.config import Config, config_from_dict
from edge.daemon import Daemon
from edge.errors import InputError
from edge.kept_warnings import warnings_kept
from edge.mqtt.clearing import clear_what_a_run_left
from edge.mqtt.subscriber import (
    NO_TLS_FILES,
    BrokerSubscription,
    TlsFiles,
    daemon_mqtt_settings,
    unique_client_id,
)
from edge.ort_session import intra_op_threads
from edge.preprocess import letterboxer_from_spec
from edge.redact import redact_uri
from edge.runners import BackendChoice, choose_backend, runner_from_config
from edge.runners.base import Runner
from edge.service import batch_capacity, runner_rows
from edge.sources import source_from_uri
from edge.spec import spec_from_onnx_file
from edge.system import available_memory_bytes, cpu_busy_elsewhere, usable_cores
from edge.timing import percentiles_of

log = logging.getLogger(__name__)

WARMUP_S = 1.0
#: Other processes keeping this share of the CPUs busy before measuring get a warning ...
BUSY_SHARE = 0.5
#: ... sampled over this long, where a program spinning on one core reads 0.95-1.0 of it.
BUSY_SAMPLE_S = 0.5
SAMPLED_SHARE = 0.9
#: What one replay camera holds beside the daemon's own buffers (its decoded frames, 16 of
#: 640x480, 14.7 MB, and its frame pool), measured as peak RSS per camera added: 16.6 MB.
REPLAY_CAMERA_BYTES = 17 * 2**20
#: A ratio above this is the backend-alone phase slowed down, not a loop faster than its backend.
FASTER_THAN_ALONE = 1.05
#: A ratio below this with ONNX Runtime's default threads gets a hint to compare fewer threads.
CONTENDED_RATIO = 0.8
#: The stages of a camera's own work, as a warning names them.
CAMERA_STAGES = {"preprocess": "preprocess (letterboxing)",
                 "postprocess": "postprocess (decoding the model's output, NMS)",
                 "track": "track (tracking, events, counts)"}


@dataclass(frozen=True)
class BenchOptions:
    model: Path
    cameras: int = 1
    seconds: float = 10.0
    threads: int = 0
    backend: str = "auto"
    mqtt: str | None = None
    tls: TlsFiles = NO_TLS_FILES  # of --mqtt's mqtts:// broker
    max_batch: int | None = None
    batch_timeout_ms: float = 4.0
    source: str = "replay://shapes?frames=16"
    #: The rest of a daemon config's model section (precision, engine_dir, dla_core...), for
    #: `edge bench --config`: the keys above are the options'.
    model_settings: Mapping[str, Any] = field(default_factory=dict)
    config: Path | None = None
    #: where a backend other than auto was asked for (said with the backend chosen) ...
    backend_from: str = "--backend"
    #: ... and where the camera count comes from
    cameras_from: str = "--cameras"
    #: The config's camera names, for `edge bench --config`: the replay cameras take them in
    #: order (figures per camera read as the deployment's), any beyond them `cam<i>`.
    camera_names: tuple[str, ...] = ()


def bench_config(options: BenchOptions, mqtt_url: str) -> Config:
    """The daemon config of the whole-loop phase: N replay cameras, one model, one broker
    (a user in `mqtt_url` logs in with the URL's password or $EDGE_MQTT_PASSWORD, as `edge
    monitor` does; `options.tls` the mqtts:// files)."""
    separator = "&" if "?" in options.source else "?"
    cameras = [{"name": name, "source": f"{options.source}{separator}seed={i + 1}"}
               for i, name in enumerate(replay_camera_names(options.cameras,
                                                            options.camera_names))]
    model: dict[str, Any] = {**options.model_settings, "path": str(options.model),
                             "backend": options.backend,
                             "threads": options.threads,
                             "batch_timeout_ms": float(options.batch_timeout_ms)}
    if options.max_batch is not None:
        model["max_batch"] = options.max_batch
    return config_from_dict({"device_id": "bench", "model": model, "cameras": cameras,
                             "mqtt": daemon_mqtt_settings(mqtt_url, options.tls)},
                            "edge bench")


def replay_camera_names(cameras: int, from_config: tuple[str, ...]) -> list[str]:
    """`cameras` distinct names: the config's first, then `cam<i>` (skipping one the config
    has)."""
    names = list(from_config[:cameras])
    index = len(names)
    while len(names) < cameras:
        if f"cam{index}" not in names:
            names.append(f"cam{index}")
        index += 1
    return names


def run_bench(options: BenchOptions, echo: Callable[[str], None] = log.info) -> dict[str, Any]:
    """Both phases; returns the figures (the `--json` line), with the warnings logged on the
    way. A missing or unconverted model is a ModelError before anything starts."""
    spec = spec_from_onnx_file(options.model)
    require_memory_for(options.cameras, options.cameras_from)
    if options.mqtt:
        require_broker(options.mqtt, options.tls)
    with warnings_kept() as warnings:
        result = _measure(options, echo)
    result["quantization"] = spec.quantization or "float"
    result["warnings"] = warnings
    return result


def require_memory_for(cameras: int, asked_in: str = "--cameras") -> None:
    """Refuse (InputError) more replay cameras than half the memory available holds (a user
    check: 1000 took 15 GB and 2 minutes for a 3 s measurement, then said nothing);
    `asked_in` names where the count comes from."""
    available = available_memory_bytes()
    needed = cameras * REPLAY_CAMERA_BYTES
    if available is not None and needed > available / 2:
        raise InputError(f"{cameras} replay cameras ({asked_in}) would hold about "
                         f"{needed / 2**30:.1f} GB of decoded frames "
                         f"({REPLAY_CAMERA_BYTES / 2**20:.0f} MB each), more than half the "
                         f"memory available ({available / 2**30:.1f} GB); give --cameras "
                         f"{max(1, int(available / 2 // REPLAY_CAMERA_BYTES))} or fewer")


def _measure(options: BenchOptions, echo: Callable[[str], None]) -> dict[str, Any]:
    load, elsewhere = warn_if_busy()
    broker = _broker(options.mqtt)
    try:
        config = bench_config(options, options.mqtt or (broker.url if broker else ""))
        choice = choose_backend(config.model, options.backend_from)
        echo(f"backend {choice.name}: {choice.reason}")
        alone = backend_alone(config, choice, options.seconds / 3, echo)
        cleared: int | None = None
        try:
            loop = whole_loop(config, options, echo)
        finally:
            if options.mqtt:
                cleared = clear_what_a_run_left(options.mqtt, options.tls,
                                                   config.topic_prefix, echo)
    finally:
        if broker is not None:
            broker.stop()
    cpu_threads = choice.name == "onnxruntime"
    result = {"model": str(options.model),
              **({"config": str(options.config)} if options.config else {}),
              "backend": choice.name,
              # the inference threads in use (--threads 0 chooses one a physical core); a
              # TensorRT engine has none to choose
              "threads": intra_op_threads(options.threads) if cpu_threads else None,
              "threads_chosen": "auto" if options.threads == 0 else "asked",
              "cameras": options.cameras, **alone, **loop,
              "broker": redact_uri(options.mqtt) if options.mqtt else (
                  "mosquitto" if isinstance(broker, LocalMosquitto) else "embedded")}
    if cleared is not None:
        result["retained_cleared"] = cleared
    result["ratio"] = round(result["pipeline_fps"] / result["inference_fps"], 3)
    result["load_average_before"] = round(load, 2)
    result["cpus_busy_before"] = None if elsewhere is None else round(elsewhere, 2)
    warn_if_faster_than_alone(result["pipeline_fps"], result["inference_fps"],
                              result["inference_fps_max_batch"], result["max_batch"],
                              options.threads)
    if not hint_if_threads_contend(result["ratio"], options.threads, choice.name):
        warn_if_starved(result["ratio"], options.cameras, result["pipeline_fps"],
                        result["latency_ms"])
    result["peak_rss_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
    result["replay_frames_mb"] = round(options.cameras * REPLAY_CAMERA_BYTES / 2**20, 1)
    return result


def warn_if_busy() -> tuple[float, float | None]:
    """The 1-minute load average, and the CPUs other processes keep busy now (sampled over
    `BUSY_SAMPLE_S`; None where not measurable), with a warning when other work keeps half
    the CPUs this process may use busy: every figure is then lower, and the two phases are not
    slowed alike. The load average alone missed a program started a moment before and counted
    the run before (a user check); it is the judge only where the sample cannot be taken."""
    load = os.getloadavg()[0]
    elsewhere = cpu_busy_elsewhere(BUSY_SAMPLE_S)
    cpus = usable_cores()
    busy = load if elsewhere is None else elsewhere / SAMPLED_SHARE
    if busy >= max(1.0, BUSY_SHARE * cpus):
        said = (f"load average {load:.1f}" if elsewhere is None else
                f"other processes keep {elsewhere:.1f} of its CPUs busy")
        log.warning("this machine is busy (%s, on %d CPU(s)): the figures will be lower than on "
                    "an idle machine, and the ratio less meaningful", said, cpus)
    return load, elsewhere


def warn_if_starved(ratio: float, cameras: int, pipeline_fps: float,
                    latency_ms: Mapping[str, Mapping[str, float]]) -> None:
    """A low ratio with the inference threads given: the cameras' own work outweighs what the
    cores left the backend; the slowest of its stages (`latency_ms`: stage -> percentiles) is
    named (a user check: a model of thousands of boxes a frame spent 41 ms decoding them)."""
    if ratio >= CONTENDED_RATIO:
        return
    own = {stage: figures["p50"] for stage, figures in latency_ms.items()
           if stage in CAMERA_STAGES}
    slowest = max(own, key=own.__getitem__) if own else None
    log.warning("the whole loop kept %.2f of the backend's FPS with %d camera(s) (%.1f FPS in "
                "all): the cameras' own work outweighs the cores (%s), or other work shares "
                "them; this machine keeps fewer cameras fed at this rate", ratio, cameras,
                pipeline_fps, "its slowest stage: " + CAMERA_STAGES[slowest] +
                f", {own[slowest]:.1f} ms a frame at p50" if slowest else "")


def warn_if_faster_than_alone(pipeline_fps: float, single_fps: float, batched_fps: float,
                              batch: int, threads: int) -> None:
    """A loop cannot outrun its own backend at its best (batch 1, or the batch its cameras'
    frames share): faster means the backend-alone phase was slowed down, and says so (with
    `threads` inference threads). Against batch 1 alone, three batched cameras 1.10x batch 1
    and below batch 3 were blamed on other work."""
    best, at = max((single_fps, 1), (batched_fps, batch))
    if pipeline_fps <= best * FASTER_THAN_ALONE:
        return
    cause = ("by other work on this machine (run it again on an idle one)" if threads == 1 else
             "by other work on this machine or by its inference threads contending for the "
             "cores (compare --threads 1)")
    log.warning("the whole loop ran faster than the backend alone (%.1f against %.1f FPS at "
                "batch %d): the backend-alone phase was slowed down, %s", pipeline_fps, best,
                at, cause)


def hint_if_threads_contend(ratio: float, threads: int, backend: str) -> bool:
    """A low ratio with ONNX Runtime's default threads (one a core) is often its threads
    contending with the cameras' letterboxing and decoding for the same cores: on 2 cores, 3
    cameras kept 0.52 of the backend's FPS (244 FPS) by default and 0.98 (263 FPS, more in
    all) with one thread. Says so, since `model.threads` is the fix; returns whether it did."""
    if ratio >= CONTENDED_RATIO or threads != 0 or backend != "onnxruntime":
        return False
    log.warning("the whole loop kept %.2f of the backend's FPS: ONNX Runtime's default threads "
                "(one a physical core, %d here) contend with the cameras' own work for the "
                "cores; compare --threads 1 (model.threads in the config), which can be faster "
                "in all", ratio, intra_op_threads(0))
    return True


def require_broker(url: str, tls: TlsFiles = NO_TLS_FILES) -> None:
    """--mqtt: the broker answers before anything is measured; else an EdgeError that says why
    (the daemon would queue every message, and the figures would be of a loop that published
    nothing)."""
    probe = BrokerSubscription(url, [("edge/bench/probe", 0)], lambda *_: None,
                               client_id=unique_client_id("bench-probe"),
                               ca_file=tls.ca_file, certfile=tls.certfile, keyfile=tls.keyfile,
                               log_first_failure=False)
    probe.start()
    try:
        probe.wait_until_subscribed()
    finally:
        probe.stop()


def _broker(url: str | None) -> LocalMosquitto | EmbeddedBroker | None:
    if url:
        return None
    binary = mosquitto_binary()
    return LocalMosquitto(binary).start() if binary else EmbeddedBroker().start()


def backend_alone(config: Config, choice: BackendChoice, seconds: float,
                  echo: Callable[[str], None]) -> dict[str, Any]:
    """Inference FPS with the input already in place, at batch 1 and at the daemon's batch."""
    cameras = len(config.cameras)
    rows = runner_rows(config.model.max_batch, cameras)
    runner = runner_from_config(config.model, choice, max_batch=rows)
    try:
        # the daemon run that follows warns about an ignored max_batch; once is enough
        batch = batch_capacity(runner.spec.input.batch, config.model.max_batch, cameras,
                               warn=False)
        _fill_inputs(runner, config.cameras[0].source)
        single = _infer_fps(runner, 1, seconds)
        echo(f"backend alone, batch 1: {single:.1f} FPS")
        batched = single if batch == 1 else _infer_fps(runner, batch, seconds)
        if batch > 1:
            echo(f"backend alone, batch {batch}: {batched:.1f} FPS")
    finally:
        runner.close()
    return {"max_batch": batch, "inference_fps": round(single, 2),
            "inference_fps_max_batch": round(batched, 2),
            "batch_speedup": round(batched / single, 3)}


def _fill_inputs(runner: Runner, uri: str) -> None:
    """Every row of every slot holds a real letterboxed frame, as in the daemon."""
    source = source_from_uri(uri)
    source.open()
    try:
        letterbox = letterboxer_from_spec(runner.spec)
        for slot in range(runner.slots):
            buffer = runner.input_buffer(slot)
            for row in range(buffer.shape[0]):
                frame = source.read()
                if frame is None:
                    break
                letterbox(frame.image, buffer, row)
    finally:
        source.close()


def _infer_fps(runner: Runner, batch: int, seconds: float) -> float:
    """Frames per second of `infer` on `batch` rows (every row counted), after a warm-up."""
    for _ in range(5):
        runner.infer(0, batch)
    runs, began = 0, time.perf_counter()
    while (elapsed := time.perf_counter() - began) < seconds or runs < 10:
        runner.infer(runs % runner.slots, batch)
        runs += 1
    return runs * batch / elapsed


def whole_loop(config: Config, options: BenchOptions,
               echo: Callable[[str], None]) -> dict[str, Any]:
    """The daemon with replay cameras, measured after a warm-up."""
    daemon = Daemon(config)
    daemon.start()
    began = time.monotonic()
    try:
        time.sleep(WARMUP_S)
        first = {w.name: w.frames for w in daemon.workers}
        batches_before = dict(daemon.service.batch_sizes)
        start = time.perf_counter()
        time.sleep(options.seconds)
        elapsed = time.perf_counter() - start
        last = {w.name: w.frames for w in daemon.workers}
        samples: dict[str, list[float]] = {}
        for worker in daemon.workers:
            for stage, values in worker.times.snapshot().items():
                samples.setdefault(stage, []).extend(values)
        sizes = {size: count - batches_before.get(size, 0)
                 for size, count in daemon.service.batch_sizes.items()}
        failure = daemon.failure
    finally:
        summary = daemon.stop(time.monotonic() - began)
    if failure is not None:
        raise RuntimeError(f"inference failed during the benchmark: {failure}")
    per_camera = {name: round((last[name] - first[name]) / elapsed, 2) for name in last}
    total = sum(per_camera.values())
    echo(f"whole loop, {options.cameras} camera(s): {total:.1f} FPS "
         f"({', '.join(f'{k} {v:.1f}' for k, v in per_camera.items())})")
    frames = sum(size * count for size, count in sizes.items())
    batches = sum(sizes.values())
    return {"pipeline_fps": round(total, 2), "per_camera_fps": per_camera,
            "latency_ms": percentiles_of(samples),
            "batch_sizes": {str(k): v for k, v in sorted(sizes.items()) if v},
            "mean_batch": round(frames / batches, 2) if batches else 0.0,
            "runners": len({id(w.service) for w in daemon.workers}),
            "published": summary.published, "dropped_messages": summary.dropped}

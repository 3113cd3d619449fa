"""One runner shared by every camera: batched results routed right, failures, batch rules."""

from __future__ import annotations

import json
import logging
import os
import re
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from edge.cli import main as edge_main
from edge.client import DeviceStatus, parse_message
from edge.config import config_from_dict
from edge.daemon import Daemon
from edge.detections import Detections
from edge.errors import ConfigError
from edge.runners import onnxruntime as ort_module
from edge.spec import InputSpec, ModelSpec
from edge.synthetic.replay import ReplayScorer
from edge.system import physical_cores
from tests.mqtt_watch import Watcher, retained_status
from tests.onnx_graphs import constant_head_model

DYNAMIC_MODEL = Path(__file__).parents[1] / "edge" / "models" / "shapes-dynamic.onnx"


def daemon_config(model: Path, port: int, cameras: int, **model_keys: object) -> dict[str, object]:
    return {
        "device_id": "shared",
        "model": {"path": str(model), "threads": 1, **model_keys},
        "cameras": [{"name": f"cam{i}", "source": f"synthetic://shapes?fps=20&seed={i + 1}"}
                    for i in range(cameras)],
        "mqtt": {"url": f"mqtt://127.0.0.1:{port}"},
        "frames": {"interval_s": 0.0},
        "stats": {"interval_s": 1.0},
    }


@pytest.fixture
def count_runners(monkeypatch):
    """Counts ONNX Runtime runners built (the real ones)."""
    built: list[object] = []
    original = ort_module.OrtRunner.__init__

    def counting(self, *args, **kwargs):  # type: ignore[no-untyped-def]
        built.append(self)
        original(self, *args, **kwargs)

    monkeypatch.setattr(ort_module.OrtRunner, "__init__", counting)
    return built


@pytest.mark.parametrize("model", [DYNAMIC_MODEL, None], ids=["dynamic-batch", "batch-1"])
def test_four_cameras_share_one_runner_and_get_their_own_detections(
        mosquitto, demo_model, count_runners, model):
    """Each camera's detections are scored against its own scene: a row mixed up between
    cameras in a batch would wreck precision and recall."""
    # Each camera is paced on its own clock at 20 fps, so their frames may stay any phase
    # apart for the whole run; a 30 ms wait (under the 50 ms frame period) makes batching
    # certain whatever phases the cameras start at (4 ms, the default, left it to chance).
    config = config_from_dict(daemon_config(model or demo_model, mosquitto.port, 4,
                                            batch_timeout_ms=30.0), "test")
    daemon = Daemon(config)
    with Watcher(mosquitto.port, "edge/shared/#") as watcher:
        daemon.start()
        stop = threading.Event()
        runner = threading.Thread(target=daemon.run, args=(stop, 6.0))
        runner.start()
        runner.join(30)
        assert not runner.is_alive()
        watcher.wait_for(lambda: bool(watcher.on("/stats")), 5, "stats")
        stats = watcher.on("/stats")[-1].json()
    assert len(count_runners) == 1
    inference = stats["inference"]
    assert inference["runners"] == 1
    assert inference["max_batch"] == (4 if model else 1)
    if model:
        assert inference["mean_batch"] > 1.0  # frames of different cameras ran together
    for camera in range(4):
        messages = [m.json() for m in watcher.on(f"/cam{camera}/detections")]
        assert len(messages) >= 40, (camera, len(messages))
        scorer = ReplayScorer(seed=camera + 1)
        for message in messages:
            assert message["camera"] == f"cam{camera}"
            scorer.add(message["frame_id"], Detections.from_payload(message["detections"]))
        precision, recall = scorer.precision_recall()
        assert precision >= 0.9 and recall >= 0.9, (camera, precision, recall)


def test_a_camera_with_bad_frames_does_not_stall_the_others(mosquitto, demo_model, caplog):
    """A frame that cannot be letterboxed (here: a single-channel image) is skipped and
    counted; its row still runs, so the other cameras' batches never wait on it."""
    config = config_from_dict(daemon_config(DYNAMIC_MODEL, mosquitto.port, 2), "test")
    daemon = Daemon(config)
    bad = daemon.workers[0]
    original = bad._letterbox

    def grey_frames(image, buffer, row):  # type: ignore[no-untyped-def]
        return original(np.ascontiguousarray(image[..., 0]), buffer, row)

    bad._letterbox = grey_frames  # type: ignore[method-assign]
    daemon.start()
    time.sleep(3.0)
    good_frames = daemon.workers[1].frames
    summary = daemon.stop(3.0)
    assert summary.failure is None
    assert bad.bad_frames >= 20 and bad.frames == 0
    assert good_frames >= 40
    assert "frame" in caplog.text and "skipped" in caplog.text


def test_backend_failure_stops_every_camera_and_edge_run_exits_1(
        tmp_path, mosquitto, demo_model, monkeypatch, capsys):
    """The backend raising mid-run: logged once with the cause, status `failed`, exit 1."""
    original = ort_module.OrtRunner.submit
    calls = {"n": 0}

    def failing_submit(self, slot, batch=None):  # type: ignore[no-untyped-def]
        calls["n"] += 1
        if calls["n"] > 20:
            raise RuntimeError("CUDA error 700: an illegal memory access was encountered")
        original(self, slot, batch)

    monkeypatch.setattr(ort_module.OrtRunner, "submit", failing_submit)
    config = tmp_path / "edge.toml"
    config.write_text(f"""
device_id = "shared"
[model]
path = "{demo_model}"
[[cameras]]
name = "a"
source = "synthetic://shapes?fps=30&seed=1"
[[cameras]]
name = "b"
source = "synthetic://shapes?fps=30&seed=2"
[mqtt]
url = "mqtt://127.0.0.1:{mosquitto.port}"
""")
    began = time.monotonic()
    code = edge_main(["run", "--config", str(config), "--seconds", "20", "--json"])
    assert code == 1
    assert time.monotonic() - began < 15  # stopped at the failure, not after 20 s
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert "illegal memory access" in summary["failure"]
    status = retained_status(mosquitto.port, "edge/shared")
    assert status["state"] == "failed" and "illegal memory access" in status["error"]
    # in the contract: subscribers (edge monitor, the Python client) see it as it is
    parsed = parse_message("edge/+", "edge/shared/status", json.dumps(status).encode())
    assert isinstance(parsed.payload, DeviceStatus) and parsed.payload.state == "failed"


def fixed_batch_model(tmp_path: Path, batch: int) -> Path:
    spec = ModelSpec(task="detect", labels=("a", "b", "c", "d"), head="anchor_free",
                     output="output0", input=InputSpec(name="images", width=64, height=64,
                                                       batch=batch))
    return constant_head_model(tmp_path / f"batch{batch}.onnx", (batch, 8, 10), spec,
                               batch=batch)


def test_max_batch_above_a_fixed_batch_is_a_config_error(tmp_path, mosquitto):
    config = config_from_dict(
        daemon_config(fixed_batch_model(tmp_path, 4), mosquitto.port, 2, max_batch=8), "test")
    with pytest.raises(ConfigError, match=r"max_batch = 8 is more than the model's fixed "
                                          r"batch of 4"):
        Daemon(config)


def test_max_batch_on_a_batch_1_model_warns_once_and_runs(mosquitto, demo_model, caplog):
    config = config_from_dict(daemon_config(demo_model, mosquitto.port, 2, max_batch=4),
                              "test")
    daemon = Daemon(config)
    daemon.start()
    time.sleep(1.5)
    summary = daemon.stop(1.5)
    assert daemon.service.max_batch == 1 and summary.frames > 10
    assert caplog.text.count("fixed batch of 1") == 1


def edge_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "edge", *args], capture_output=True,
                          text=True, timeout=120)


def test_bench_reports_backend_alone_and_whole_loop(demo_model):
    result = edge_cli("bench", str(DYNAMIC_MODEL), "--cameras", "2", "--seconds", "2",
                      "--threads", "1", "--json")
    assert result.returncode == 0, result.stderr
    figures = json.loads(result.stdout.strip().splitlines()[-1])
    assert figures["runners"] == 1 and figures["cameras"] == 2
    assert figures["max_batch"] == 2 and figures["inference_fps"] > 0
    assert figures["inference_fps_max_batch"] > 0
    assert set(figures["per_camera_fps"]) == {"cam0", "cam1"}
    assert all(fps > 0 for fps in figures["per_camera_fps"].values())
    assert figures["ratio"] == pytest.approx(
        figures["pipeline_fps"] / figures["inference_fps"], abs=2e-3)
    assert {"preprocess", "infer", "postprocess", "total"} <= set(figures["latency_ms"])
    assert figures["published"] > 0 and figures["peak_rss_mb"] > 0
    assert figures["threads"] == 1 and figures["threads_chosen"] == "asked"
    assert isinstance(figures["warnings"], list)
    # a user check: an INT8 run could be told from an FP32 one only by its file name, and
    # the replay cameras' frames, which live cameras do not hold, were in the RSS unsaid
    assert figures["quantization"] == "float" and figures["replay_frames_mb"] == 34.0


def test_bench_warns_when_the_machine_is_busy_or_the_ratio_cannot_be(monkeypatch, caplog):
    """A helper's `edge bench` beside other work measured the loop at 1.43x its backend alone:
    both figures were slowed, not alike. The CPUs other processes keep busy before measuring
    (else the load average) and a ratio above 1 say so."""
    from edge import bench

    cpus = len(os.sched_getaffinity(0))
    monkeypatch.setattr(bench.os, "getloadavg", lambda: (cpus + 1.9, 1.0, 1.0))
    monkeypatch.setattr(bench, "cpu_busy_elsewhere", lambda seconds: 0.2)
    with caplog.at_level(logging.WARNING, logger="edge.bench"):
        # a high load average from a run just before: not busy now (a user check)
        assert bench.warn_if_busy() == (cpus + 1.9, 0.2)
        bench.warn_if_faster_than_alone(100.0, 100.0, 100.0, 1, 0)
        # three cameras batched: faster than batch 1, not than batch 3 (a helper's check)
        bench.warn_if_faster_than_alone(248.7, 226.7, 260.9, 3, 1)
    assert not caplog.records
    busy = max(1.0, cpus / 2)
    monkeypatch.setattr(bench, "cpu_busy_elsewhere", lambda seconds: busy)
    with caplog.at_level(logging.WARNING, logger="edge.bench"):
        bench.warn_if_busy()
        bench.warn_if_faster_than_alone(143.0, 100.0, 100.0, 1, 0)
        bench.warn_if_faster_than_alone(280.0, 226.7, 260.9, 3, 1)
    monkeypatch.setattr(bench, "cpu_busy_elsewhere", lambda seconds: None)  # no /proc/stat
    with caplog.at_level(logging.WARNING, logger="edge.bench"):
        bench.warn_if_busy()
    assert [r.getMessage() for r in caplog.records] == [
        f"this machine is busy (other processes keep {busy:.1f} of its CPUs busy, on {cpus} "
        "CPU(s)): the figures will be lower than on an idle machine, and the ratio less "
        "meaningful",
        "the whole loop ran faster than the backend alone (143.0 against 100.0 FPS at batch "
        "1): the backend-alone phase was slowed down, by other work on this machine or by its "
        "inference threads contending for the cores (compare --threads 1)",
        "the whole loop ran faster than the backend alone (280.0 against 260.9 FPS at batch "
        "3): the backend-alone phase was slowed down, by other work on this machine (run it "
        "again on an idle one)",
        f"this machine is busy (load average {cpus + 1.9:.1f}, on {cpus} CPU(s)): the figures "
        "will be lower than on an idle machine, and the ratio less meaningful"]


def test_a_program_started_a_moment_before_is_seen_keeping_a_cpu_busy():
    """A user check: a CPU hog started 2 s before the bench left the load average at 0.25,
    and nothing was said while the loop kept 0.68 of the backend's FPS."""
    from edge.system import cpu_busy_elsewhere

    hog = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        time.sleep(0.3)
        busy = cpu_busy_elsewhere(0.5)
    finally:
        hog.kill()
        hog.wait()
    assert busy is not None and busy >= 0.8  # one core's worth, this process's own left out


def test_bench_says_when_the_cameras_starve_with_the_threads_given(caplog):
    from edge import bench

    stages = {"queue": 44.5, "preprocess": 0.2, "infer": 0.9, "result_wait": 43.7,
              "postprocess": 41.2, "track": 2.3, "total": 133.9}
    latency = {stage: {"p50": p50, "p90": p50, "p99": p50} for stage, p50 in stages.items()}
    with caplog.at_level(logging.WARNING, logger="edge.bench"):
        bench.warn_if_starved(0.95, 3, 500.0, latency)
        bench.warn_if_starved(0.01, 1, 7.5, latency)
    # a user check: thousands of boxes a frame spent 41 ms decoding, and the warning named
    # every stage but that one
    assert [r.getMessage() for r in caplog.records] == [
        "the whole loop kept 0.01 of the backend's FPS with 1 camera(s) (7.5 FPS in all): the "
        "cameras' own work outweighs the cores (its slowest stage: postprocess (decoding the "
        "model's output, NMS), 41.2 ms a frame at p50), or other work shares them; this "
        "machine keeps fewer cameras fed at this rate"]


def test_bench_refuses_more_cameras_than_half_the_memory_holds(demo_model, tmp_path):
    """A user check: 1000 replay cameras took 15 GB and 2 minutes for a 3 s measurement."""
    from edge.system import available_memory_bytes

    cameras = int(available_memory_bytes() / (17 * 2**20)) + 1  # past the whole of it
    result = edge_cli("bench", str(demo_model), "--cameras", str(cameras), "--seconds", "1")
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert re.search(rf"{cameras} replay cameras \(--cameras\) would hold about [\d.]+ GB of "
                     r"decoded frames \(17 MB each\), more than half the memory available "
                     r"\([\d.]+ GB\); give --cameras \d+ or fewer", result.stderr)
    assert "backend alone" not in result.stdout  # refused before anything ran
    config = tmp_path / "many.toml"  # a user check: the count was the config's, not an option
    config.write_text(f'[model]\npath = "{demo_model}"\n' + "".join(
        f'[[cameras]]\nname = "c{i}"\nsource = "synthetic://shapes?seed={i}"\n'
        for i in range(cameras)))
    result = edge_cli("bench", "--config", str(config), "--seconds", "1")
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert f"{cameras} replay cameras (the [[cameras]] of {config}) would hold" in result.stderr


def test_bench_killed_outright_takes_its_private_broker_with_it(demo_model, tmp_path):
    """A user check: after `kill -9` (or the OOM killer) the bench's Mosquitto stayed,
    listening, re-parented to PID 1, and its folder stayed in /tmp."""
    from edge.broker import mosquitto_binary

    if mosquitto_binary() is None:
        pytest.skip("Mosquitto is not installed")
    bench = subprocess.Popen([sys.executable, "-m", "edge", "bench", str(demo_model),
                              "--seconds", "30", "--threads", "1"], stdout=subprocess.PIPE,
                             stderr=subprocess.STDOUT, text=True)
    try:
        assert bench.stdout is not None
        for line in bench.stdout:  # the broker is up once the backend-alone phase runs
            if line.startswith("backend alone"):
                break
        keeper = _children(bench.pid)
        assert len(keeper) == 1, keeper
        broker = _children(keeper[0])
        assert len(broker) == 1, broker
        folder = Path(Path(f"/proc/{keeper[0]}/cmdline").read_bytes().split(b"\0")[3].decode())
        assert folder.is_dir()
    finally:
        bench.kill()
        bench.wait()
    deadline = time.monotonic() + 10
    while Path(f"/proc/{broker[0]}").exists() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not Path(f"/proc/{broker[0]}").exists() and not folder.exists()


def _children(pid: int) -> list[int]:
    """The child processes of `pid` (Linux)."""
    found = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        found += [int(child) for child in (task / "children").read_text().split()]
    return found


def test_bench_hints_at_fewer_threads_when_the_loop_keeps_little_of_the_backend(caplog):
    """3 cameras on 2 cores kept 0.52 of the backend's FPS with the default threads and 0.98
    (more FPS in all) with --threads 1, and nothing said so."""
    from edge import bench

    with caplog.at_level(logging.WARNING, logger="edge.bench"):
        bench.hint_if_threads_contend(0.52, 0, "onnxruntime")
        bench.hint_if_threads_contend(0.52, 1, "onnxruntime")  # threads chosen: nothing to add
        bench.hint_if_threads_contend(0.52, 0, "tensorrt")  # no CPU threads to choose
        bench.hint_if_threads_contend(0.95, 0, "onnxruntime")
    assert [r.getMessage() for r in caplog.records] == [
        "the whole loop kept 0.52 of the backend's FPS: ONNX Runtime's default threads (one a "
        f"physical core, {physical_cores()} here) contend with the cameras' own work for the "
        "cores; compare --threads 1 (model.threads in the config), which can be faster in all"]


def test_bench_measures_a_config_with_its_model_settings_and_camera_count(tmp_path):
    """A user check: `edge bench --config edge.toml` was refused; a deployer measures the
    model their config runs, with its settings and as many cameras, options given winning."""
    config = tmp_path / "edge.toml"
    config.write_text(f'[model]\npath = "{DYNAMIC_MODEL}"\nthreads = 1\nmax_batch = 2\n'
                      'backend = "onnxruntime"\n'
                      + "".join(f'[[cameras]]\nname = "c{i}"\nsource = "synthetic://shapes"\n'
                                for i in range(3)))
    result = edge_cli("bench", "--config", str(config), "--seconds", "1", "--json")
    assert result.returncode == 0, result.stderr
    figures = json.loads(result.stdout.strip().splitlines()[-1])
    assert (figures["config"], figures["model"]) == (str(config), str(DYNAMIC_MODEL))
    assert (figures["cameras"], figures["max_batch"]) == (3, 2)
    assert (figures["threads"], figures["threads_chosen"]) == (1, "asked")
    # a user check: the replay cameras were cam0..., not the config's names
    assert set(figures["per_camera_fps"]) == {"c0", "c1", "c2"}
    more = edge_cli("bench", "--config", str(config), "--cameras", "5", "--seconds", "1",
                    "--json")
    assert more.returncode == 0, more.stderr
    assert set(json.loads(more.stdout.strip().splitlines()[-1])["per_camera_fps"]) == {
        "c0", "c1", "c2", "cam3", "cam4"}
    from edge.bench import replay_camera_names
    assert replay_camera_names(4, ("cam3", "door")) == ["cam3", "door", "cam2", "cam4"]
    given = edge_cli("bench", "--config", str(config), "--cameras", "1", "--max-batch", "1",
                     "--seconds", "1")
    assert given.returncode == 0, given.stderr
    assert (f"from {config}: model {DYNAMIC_MODEL}, 1 camera replayed (--cameras) with its "
            "model settings; broker a local one (not the config's)") in given.stdout
    assert "whole loop, 1 camera(s)" in given.stdout
    # a user check: the config's backend was said to be "requested in --backend"
    assert f"backend onnxruntime: requested in {config}: model.backend" in given.stdout
    missing = tmp_path / "other.toml"
    missing.write_text(config.read_text().replace(str(DYNAMIC_MODEL), "gone.onnx"))
    absent = edge_cli("bench", "--config", str(missing), "--seconds", "1", "--json")
    assert absent.returncode == 2 and f"{missing}: model.path: model file " in absent.stderr
    assert "gone.onnx does not exist" in absent.stderr
    neither = edge_cli("bench", "--seconds", "1")
    assert neither.returncode == 2 and "Traceback" not in neither.stderr
    assert ("give the model to measure (edge bench MODEL.onnx) or a daemon config to take it "
            "and its settings from (--config FILE)") in neither.stderr
    config.write_text(config.read_text().replace("threads = 1", "thread = 1"))
    typo = edge_cli("bench", "--config", str(config), "--seconds", "1")
    assert typo.returncode == 2 and "model.thread: unknown key; did you mean threads?" \
        in typo.stderr


def test_bench_warns_once_that_a_batch_1_model_ignores_max_batch(demo_model):
    result = edge_cli("bench", str(demo_model), "--cameras", "2", "--max-batch", "4",
                      "--seconds", "1", "--threads", "1", "--json")
    assert result.returncode == 0, result.stderr
    figures = json.loads(result.stdout.strip().splitlines()[-1])
    assert figures["max_batch"] == 1
    assert result.stderr.count("fixed batch of 1") == 1
    # a script reads the JSON line: the warning is there too, once
    assert sum("fixed batch of 1" in line for line in figures["warnings"]) == 1


@pytest.mark.parametrize(
    ("make", "message"),
    [(lambda tmp: tmp / "absent.onnx", "does not exist; check the path"),
     (lambda tmp: constant_head_model(tmp / "plain.onnx", (1, 8, 10), None),
      "edge convert")],
    ids=["missing", "unconverted"])
def test_bench_on_a_bad_model_exits_2(tmp_path, make, message):
    result = edge_cli("bench", str(make(tmp_path)), "--seconds", "1")
    assert result.returncode == 2
    assert message in result.stderr and "Traceback" not in result.stderr


def test_bench_with_an_unreachable_broker_exits_2_before_measuring(stopped_mosquitto):
    """--mqtt naming a broker that is not there: a clear error at once, not figures of a loop
    that published nothing (the messages were queued, then dropped)."""
    result = edge_cli("bench", str(DYNAMIC_MODEL), "--seconds", "2", "--mqtt",
                      stopped_mosquitto.url)
    assert result.returncode == 2, result.stderr
    assert "could not reach the MQTT broker" in result.stderr and "refused" in result.stderr
    assert "Traceback" not in result.stderr and "ratio" not in result.stdout


def test_bench_publishes_to_the_broker_it_is_given(mosquitto):
    result = edge_cli("bench", str(DYNAMIC_MODEL), "--cameras", "1", "--seconds", "1",
                      "--threads", "1", "--mqtt", mosquitto.url, "--json")
    assert result.returncode == 0, result.stderr
    figures = json.loads(result.stdout.strip().splitlines()[-1])
    assert figures["broker"] == mosquitto.url and figures["published"] > 0
    assert "refused the subscription" not in result.stderr
    # what the run retained (status, stats, counts, snapshots) is gone: runs left up to 140
    # snapshots a camera, and a device `bench` for every later `edge monitor`
    assert figures["retained_cleared"] >= 3  # status, stats, cam0's status at least
    with Watcher(mosquitto.port, "edge/#") as late:
        time.sleep(1.0)
        assert [m.topic for m in late.messages if m.retain] == []

from __future__ import annotations

import json
import logging
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import onnx
import pytest

from calibration.readers import frames_from
from converters.metadata import onnx_with_spec
from converters.quantize import CalibrateOptions, calibrate, load_float_model
from edge.cli.device import events_beyond_objects
from edge.demo import run_demo
from edge.monitor import DETECTIONS_LEGEND
from edge.spec import InputSpec, ModelSpec
from tests.mqtt_tls import login_mosquitto
from tests.onnx_graphs import constant_head_model
from tests.terminal import edge_at_a_terminal


@pytest.mark.slow
def test_demo_with_embedded_broker_scores_against_ground_truth():
    lines: list[str] = []
    summary = run_demo(seconds=8, seed=3, fps=10, threads=1, echo=lines.append)
    assert summary.frames >= 40
    assert summary.published == summary.received > 0
    assert summary.precision >= 0.9 and summary.recall >= 0.9
    assert summary.broker == "embedded"
    assert lines[0] == DETECTIONS_LEGEND and "demo frame" in lines[1]
    assert len(lines) - 1 >= summary.frames - summary.dropped_frames
    assert summary.tracking["idf1"] >= 0.9 and summary.tracking["mota"] >= 0.9
    events = summary.events  # one new and one end per object the scene showed
    assert events["appearances"] >= 2 and events["matched"] == events["appearances"]
    assert events["new"] == events["end"] == events["appearances"]
    assert events["unmatched_tracks"] == 0


@pytest.mark.slow
def test_demo_cli_json_against_mosquitto(mosquitto):
    """Twice on one broker: the second run's subscriber was sent the counts the first left
    retained, which it counted as received (a user check: 179 received of 175 published); and
    what a run retains on the user's broker is cleared at its end (a user check: the demo's
    device stayed there, "stopped", for `edge monitor`)."""
    from edge.mqtt.clearing import clear_retained

    for _ in range(2):
        result = subprocess.run(
            [sys.executable, "-m", "edge", "demo", "--seconds", "5", "--fps", "10", "--threads",
             "1", "--mqtt", mosquitto.url, "--json"], capture_output=True, text=True, timeout=120)
        assert result.returncode == 0, result.stderr
        summary = json.loads(result.stdout.strip().splitlines()[-1])
        assert summary["received"] == summary["published"] > 0
        assert summary["retained_cleared"] > 0  # device and camera status, counts, stats
        assert clear_retained(mosquitto.url, "edge/demo/#") == 0  # nothing left there
    assert {"frames", "fps", "published", "received", "precision", "recall"} <= set(summary)
    assert summary["precision"] >= 0.9 and summary["recall"] >= 0.9
    assert {"idf1", "mota", "id_switches"} <= set(summary["tracking"])
    assert summary["latency_ms_p50"]["track"] < 5.0


def test_demo_logs_in_to_a_broker_that_wants_a_password(tmp_path):
    """`--mqtt mqtt://user@host` was turned into the daemon's config as it was, which refuses
    user info in a URL ("set mqtt.username and mqtt.password_file", options the demo has
    not): the demo could not use a broker that wants a login at all."""
    broker = login_mosquitto(tmp_path, "demo", "s3cret")
    broker.start()
    port = broker.port
    try:
        for password in ("s3cret", "wrong"):
            result = subprocess.run(
                [sys.executable, "-m", "edge", "demo", "--seconds", "2", "--fps", "10",
                 "--threads", "1", "--mqtt", f"mqtt://demo@127.0.0.1:{port}", "--json"],
                capture_output=True, text=True, timeout=120,
                env={**os.environ, "EDGE_MQTT_PASSWORD": password})
            if password == "wrong":
                assert result.returncode == 2, result.stderr
                assert "not authorized: check the user" in result.stderr
                continue
            assert result.returncode == 0, result.stderr
            summary = json.loads(result.stdout.strip().splitlines()[-1])
            assert summary["received"] == summary["published"] > 0
    finally:
        broker.stop()
    assert "s3cret" not in result.stderr


@pytest.mark.slow
def test_a_broker_outage_during_the_demo_is_logged_once(mosquitto, caplog):
    """The demo's daemon and its own subscriber both logged every connection failure under
    `edge.mqtt`: each line twice, 1 ms apart."""
    import threading
    import time

    running = threading.Event()
    demo = threading.Thread(target=run_demo, args=(6,), kwargs={
        "mqtt_url": mosquitto.url, "threads": 1, "echo": lambda line: None,
        "running": running.set})
    with caplog.at_level(logging.INFO, logger="edge"):
        demo.start()
        assert running.wait(30)
        time.sleep(1.0)
        mosquitto.stop()
        time.sleep(1.5)
        mosquitto.start()
        demo.join(60)
    lost = [r.getMessage() for r in caplog.records if "connection lost" in r.getMessage()]
    assert len(lost) == 1, lost
    assert any("connected to MQTT broker" in r.getMessage() and "after" in r.getMessage()
               for r in caplog.records), caplog.text  # and back


def _demo_process(*args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(edge_at_a_terminal("demo", *args), text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)


@pytest.mark.slow
@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_a_signal_while_the_demo_runs_ends_it_early_with_its_summary(signum):
    process = _demo_process("--seconds", "60", "--fps", "10", "--threads", "1", "--json")
    try:
        assert process.stderr is not None
        for line in process.stderr:  # the camera streams: the run is under way
            if "streaming from" in line:
                break
        for line in process.stdout:  # type: ignore[union-attr]
            if "demo frame" in line and int(line.split("frame")[1].split()[0]) >= 10:
                break
        process.send_signal(signum)
        stdout, stderr = process.communicate(timeout=60)
    finally:
        process.kill()
    assert process.returncode == 0, stderr
    assert f"received {signal.Signals(signum).name}; stopping" in stderr
    assert "WARNING" not in stderr and "Traceback" not in stderr
    summary = json.loads(stdout.strip().splitlines()[-1])
    assert 10 <= summary["frames"] < 300  # stopped early, after what it had run
    assert summary["received"] == summary["published"] > 0
    assert summary["precision"] >= 0.9 and summary["recall"] >= 0.9


@pytest.mark.slow
def test_a_demo_whose_reader_goes_away_ends_early_and_quietly():
    """`edge demo | head -3`: 74 logged BrokenPipeError tracebacks, then an uncaught one in the
    summary's print and exit 1."""
    process = _demo_process("--seconds", "60", "--fps", "10", "--threads", "1")
    try:
        assert process.stdout is not None and process.stderr is not None
        for line in process.stdout:
            if "demo frame" in line:
                break
        process.stdout.close()  # as `head` does once it has its lines
        process.wait(timeout=30)
        stderr = process.stderr.read()
    finally:
        process.kill()
    assert process.returncode == 141, stderr  # 128 + SIGPIPE; long before the 60 s
    assert "Traceback" not in stderr and "BrokenPipeError" not in stderr, stderr


@pytest.mark.parametrize("json_line", [False, True])
def test_a_signal_while_the_demo_starts_interrupts_it(json_line):
    """With --json, the last line says so (a user check: a script piping `--json` got
    nothing from an early Ctrl-C)."""
    with socket.create_server(("127.0.0.1", 0)) as silent:  # accepts, never answers MQTT
        process = _demo_process("--seconds", "60", "--mqtt",
                                f"mqtt://127.0.0.1:{silent.getsockname()[1]}",
                                *(["--json"] if json_line else []))
        try:
            silent.settimeout(60)
            connection, _ = silent.accept()  # the demo waits for its broker: still starting
            process.send_signal(signal.SIGINT)
            stdout, stderr = process.communicate(timeout=60)
            connection.close()
        finally:
            process.kill()
    assert process.returncode == 130, stderr
    assert "edge: interrupted" in stderr and "Traceback" not in stderr
    assert "frames" not in stdout  # no summary of a run that never ran
    if json_line:
        assert json.loads(stdout.splitlines()[-1]) == {
            "error": "interrupted (SIGINT) before the command finished", "exit_code": 130}
    else:
        assert stdout == ""


def test_a_demo_too_short_to_score_tracking_says_so():
    result = subprocess.run([sys.executable, "-m", "edge", "demo", "--seconds", "0.01",
                             "--quiet", "--threads", "1"], capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 0, result.stderr
    assert "tracking not scored: no scene object was in view long enough" in result.stdout
    # the embedded broker's free port, and how to watch it
    assert "embedded MQTT broker at mqtt://127.0.0.1:" in result.stderr
    url = result.stderr.split("embedded MQTT broker at ")[1].split(";")[0]
    assert f"edge monitor --mqtt {url}" in result.stderr
    assert "IDF1" not in result.stdout  # no 0.000 for what was never measured


def test_the_demos_lines_are_explained_once_and_its_end_says_what_stays():
    """A user check: the milliseconds and the #3 on each line were explained nowhere, nor that
    the demo leaves nothing behind."""
    result = subprocess.run([sys.executable, "-m", "edge", "demo", "--seconds", "2",
                             "--threads", "1"], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == DETECTIONS_LEGEND and lines.count(DETECTIONS_LEGEND) == 1
    assert lines[1].startswith("[demo] demo frame     1 ")
    assert lines[-1].startswith("nothing was written to disk; the embedded broker")


@pytest.mark.parametrize("events, said", [
    ({"new": 5, "matched": 5, "unmatched_tracks": 0}, ""),
    ({"new": 14, "matched": 13, "unmatched_tracks": 1},
     "; 1 new beyond one per object: 1 track that followed no scene object (a false detection, "
     "tracked)"),
    ({"new": 8, "matched": 5, "unmatched_tracks": 1},
     "; 3 new beyond one per object: 1 track that followed no scene object (a false detection, "
     "tracked), 2 from objects in view too briefly to score or followed by two tracks in turn"),
])
def test_new_events_beyond_one_per_object_are_accounted_for(events, said):
    """A user check: "5 of 5 scene objects ... (6 new, 6 end)" left the sixth unexplained."""
    assert events_beyond_objects(events) == said


def test_demo_with_an_unreachable_broker_exits_2():
    result = subprocess.run(
        [sys.executable, "-m", "edge", "demo", "--seconds", "1", "--mqtt", "mqtt://127.0.0.1:9"],
        capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    assert "could not reach the MQTT broker" in result.stderr
    assert "connection refused" in result.stderr and "WARNING" not in result.stderr  # once


def test_demo_with_a_url_that_is_no_broker_url_names_the_option_once():
    result = subprocess.run(
        [sys.executable, "-m", "edge", "demo", "--mqtt", "tcp://127.0.0.1:18831"],
        capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    assert result.stderr.strip() == ("edge demo: error: broker URL 'tcp://127.0.0.1:18831': "
                                     "expected mqtt://host[:port] or mqtts://host[:port]")


@pytest.mark.slow
def test_demo_runs_an_int8_calibration_of_the_bundled_detector(demo_model, tmp_path):
    model, spec = load_float_model(demo_model)
    int8 = calibrate(model, spec, frames_from("synthetic://shapes?seed=5", max_images=16),
                     CalibrateOptions(profile="cpu", progress=False)).model
    path = tmp_path / "shapes.int8.onnx"
    onnx.save(int8, path)
    summary = run_demo(seconds=6, seed=4, fps=10, threads=1, echo=lambda line: None, model=path)
    assert summary.model == str(path)
    assert summary.published == summary.received > 0
    assert summary.precision >= 0.9 and summary.recall >= 0.9


def _other_labels(path):
    spec = ModelSpec(task="detect", labels=["cat", "dog"], head="anchor_free", output="output0",
                     input=InputSpec(name="images", width=64, height=64))
    return constant_head_model(path, (1, 6, 84), spec)


@pytest.mark.slow
def test_a_tensorrt_profile_model_on_onnx_runtime_gets_a_hint(demo_model, tmp_path, caplog):
    model, spec = load_float_model(demo_model)
    int8 = calibrate(model, spec, frames_from("synthetic://shapes?seed=5", max_images=16),
                     CalibrateOptions(profile="tensorrt", method="minmax", compare=False,
                                      progress=False)).model
    path = tmp_path / "shapes.trt.onnx"
    onnx.save(int8, path)
    with caplog.at_level(logging.INFO, logger="edge.daemon"):
        summary = run_demo(seconds=2, threads=1, echo=lambda line: None, model=path)
    assert summary.frames > 0 and summary.published == summary.received
    assert "calibrated for TensorRT" in caplog.text and "--profile cpu" in caplog.text
    # a user check: nothing said which precision ran, and both models share their name
    assert "running shapes-detector (INT8 Q/DQ, tensorrt profile) on onnxruntime" in caplog.text
    assert _status_precision(path) == "int8"  # what the device status tells a remote watcher
    # a user check: a model quantized after edge convert by another tool keeps the spec's
    # "float", and was said to be "a float model"
    elsewhere = tmp_path / "shapes.elsewhere.onnx"
    onnx.save(onnx_with_spec(int8, spec.model_copy(update={"quantization": "float"})),
              elsewhere)
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="edge.daemon"):
        run_demo(seconds=1, threads=1, echo=lambda line: None, model=elsewhere)
    assert ("running shapes-detector (INT8 Q/DQ, quantized outside edge calibrate) on "
            "onnxruntime") in caplog.text
    assert "spec says it is a float model, but its graph holds Q/DQ nodes" in caplog.text
    assert _status_precision(elsewhere) == "int8"
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="edge.daemon"):
        run_demo(seconds=1, threads=1, echo=lambda line: None, model=demo_model)
    assert "running shapes-detector (a float model)" in caplog.text
    assert "Q/DQ nodes" not in caplog.text
    assert _status_precision(demo_model) == "fp32"


def _status_precision(model: Path) -> str:
    """The `precision` of the device status a daemon running `model` publishes."""
    from edge.client import DeviceStatus
    from edge.config import config_from_dict
    from edge.daemon import Daemon

    daemon = Daemon(config_from_dict({"model": {"path": str(model), "threads": 1}, "cameras": [
        {"name": "gate", "source": "synthetic://shapes"}]}, "test"))
    try:
        status = DeviceStatus.model_validate(daemon._status("online"))
    finally:
        daemon.service.close()
    assert status.precision is not None
    return status.precision



@pytest.mark.parametrize("make, message", [
    (_other_labels, "detects cat, dog; the demo scene holds circle"),
    (lambda path: path.write_bytes(bytes(range(1, 256))) and path, "is not an ONNX model"),
    (lambda path: path.write_text("not a model") and path, "is a text file (it begins 'not a "
                                                           "model'), not a model"),
    (lambda path: path, "does not exist"),
])
def test_demo_model_that_cannot_be_scored_exits_2(tmp_path, make, message):
    model = make(tmp_path / "model.onnx")
    result = subprocess.run(
        [sys.executable, "-m", "edge", "demo", "--seconds", "1", "--model", str(model)],
        capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    assert message in result.stderr and str(model) in result.stderr

"""The daemon end to end against a real Mosquitto broker, as a separate process."""

from __future__ import annotations

import json
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest
from pydantic import BaseModel

from edge.client import parse_message
from edge.detections import Detections
from edge.synthetic import ShapeScene
from edge.synthetic.replay import ReplayScorer
from tests.mqtt_watch import Watcher, retained_status

PREFIX = "edge/test-gate"


def write_config(tmp_path: Path, model: Path, port: int, seed: int = 2) -> Path:
    config = tmp_path / "edge.toml"
    config.write_text(f"""
device_id = "test-gate"
[model]
path = "{model}"
threads = 1
[[cameras]]
name = "gate"
source = "synthetic://shapes?fps=10&seed={seed}"
[mqtt]
url = "mqtt://127.0.0.1:{port}"
reconnect_min_s = 0.5
reconnect_max_s = 1
[frames]
interval_s = 1
max_height = 240
quality = 70
[stats]
interval_s = 1
""")
    return config


def start_daemon(config: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, "-m", "edge", "run", "--config", str(config)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def stop(process: subprocess.Popen[bytes], sig: int) -> tuple[int, str]:
    process.send_signal(sig)
    _, err = process.communicate(timeout=20)
    return process.returncode, err.decode()


def undocumented(model: BaseModel, at: str = "") -> list[str]:
    """Fields of a parsed payload, nested ones included, that its model does not declare."""
    found = [f"{at}{name}" for name in model.model_extra or {}]
    for name in type(model).model_fields:
        value = getattr(model, name)
        values = (value.values() if isinstance(value, dict) else
                  value if isinstance(value, list) else [value])
        for each in values:
            if isinstance(each, BaseModel):
                found += undocumented(each, f"{at}{name}.")
    return found


@pytest.mark.slow
def test_detections_match_truth_and_status_follows_lifecycle(tmp_path, mosquitto, demo_model):
    daemon = start_daemon(write_config(tmp_path, demo_model, mosquitto.port))
    try:
        with Watcher(mosquitto.port, f"{PREFIX}/#") as watcher:
            watcher.wait_for(lambda: len(watcher.on("/detections")) >= 60, 60,
                             "60 detection messages")
            watcher.wait_for(lambda: bool(watcher.on("/frame")) and bool(watcher.on("/stats")),
                             10, "a frame and stats")
            assert retained_status(mosquitto.port, PREFIX)["state"] == "online"
            messages = [m.json() for m in watcher.on("/gate/detections")]
            statuses = [m.json() for m in watcher.on(f"{PREFIX}/status")]
    finally:
        code, err = stop(daemon, signal.SIGTERM)
    assert code == 0, err
    # every field the daemon publishes is in the contract's models (docs/asyncapi.yaml); an
    # operator's check found a dozen that subscribers could only guess at
    kinds = set()
    for received in watcher.messages:
        parsed = parse_message(PREFIX, received.topic, received.payload, received.retain)
        kinds.add(parsed.kind)
        assert undocumented(parsed.payload) == [], (received.topic, undocumented(parsed.payload))
    assert {"detections", "status", "camera_status", "stats", "frame", "frame_meta"} <= kinds

    scorer = ReplayScorer(seed=2)
    for message in messages:
        assert message["v"] == 1 and message["camera"] == "gate"
        assert (message["width"], message["height"]) == (640, 480)
        assert {"ts", "time", "frame_id", "model", "latency_ms"} <= set(message)
        scorer.add(message["frame_id"], Detections.from_payload(message["detections"]))
    precision, recall = scorer.precision_recall()
    assert precision >= 0.9 and recall >= 0.9, (precision, recall)
    frame_ids = [m["frame_id"] for m in messages]
    assert frame_ids == sorted(frame_ids)
    # a camera still opening does not make the device degraded at every start
    assert statuses and {s["state"] for s in statuses} == {"online"}, statuses
    assert statuses[-1]["camera_states"] == {"gate": "streaming"}

    jpeg = watcher.on("/gate/frame")[0].payload
    image = cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR)
    assert image.shape == (240, 320, 3)
    meta = watcher.on("/gate/frame/meta")[0].json()
    assert meta["detections_drawn"] is True and meta["camera"] == "gate"
    stats = watcher.on("/stats")[-1]
    assert stats.json()["cameras"]["gate"]["frames"] > 0
    assert stats.json()["cameras"]["gate"]["keeping_up"] is None  # under a 30 s window
    assert stats.json()["backend"] == "onnxruntime"

    status = retained_status(mosquitto.port, PREFIX)
    assert status["state"] == "stopped"
    assert status["cameras"] == ["gate"] and status["model"] == "shapes-detector"
    assert status["precision"] == "fp32"  # the float demo model (a user check: never said)
    # the last stats are those after the flush, as the run summary counts (they said
    # `outbox 10` while the summary said 0 queued)
    with Watcher(mosquitto.port, f"{PREFIX}/stats") as late:
        late.wait_for(lambda: bool(late.messages), 5, "the retained stats")
    last = late.messages[-1].json()["mqtt"]
    assert last["outbox_depth"] == 0 and last["produced"] == last["published"] > 60, last


@pytest.mark.slow
def test_sigkill_leaves_the_last_will_offline(tmp_path, mosquitto, demo_model):
    daemon = start_daemon(write_config(tmp_path, demo_model, mosquitto.port))
    try:
        with Watcher(mosquitto.port, f"{PREFIX}/#") as watcher:
            watcher.wait_for(lambda: bool(watcher.on("/detections")), 30, "detections")
        assert retained_status(mosquitto.port, PREFIX)["state"] == "online"
    finally:
        daemon.kill()
        daemon.communicate(timeout=10)
    deadline = time.monotonic() + 10
    while (state := retained_status(mosquitto.port, PREFIX)["state"]) != "offline":
        assert time.monotonic() < deadline, f"status stayed {state}"
        time.sleep(0.2)
    # set at connect, the Last Will holds no camera states or time of its own (a killed
    # daemon's said its camera was "starting")
    will = retained_status(mosquitto.port, PREFIX)
    assert will["cameras"] == ["gate"] and will["model"]
    assert not {"camera_states", "ts", "time"} & set(will)


@pytest.mark.slow
def test_unreachable_broker_at_start_is_retried(tmp_path, stopped_mosquitto, demo_model):
    daemon = start_daemon(write_config(tmp_path, demo_model, stopped_mosquitto.port))
    try:
        time.sleep(3)
        assert daemon.poll() is None, "the daemon must keep running without a broker"
        stopped_mosquitto.start()
        with Watcher(stopped_mosquitto.port, f"{PREFIX}/#") as watcher:
            watcher.wait_for(lambda: len(watcher.on("/detections")) >= 5, 30,
                             "detections after the broker came up")
        assert retained_status(stopped_mosquitto.port, PREFIX)["state"] == "online"
    finally:
        code, err = stop(daemon, signal.SIGTERM)
    assert code == 0, err


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda text: text.replace("threads = 1", "threads = 1\ngpu = true"),
         "model.gpu: unknown key"),
        (lambda text: text.replace("synthetic://shapes", "ftp://shapes"), "unknown scheme"),
        (lambda text: text.replace('path = "', 'path = "/missing'), "does not exist"),
    ],
)
def test_bad_config_exits_2_with_the_reason(tmp_path, demo_model, edit, message):
    config = write_config(tmp_path, demo_model, 1)
    config.write_text(edit(config.read_text()))
    result = subprocess.run([sys.executable, "-m", "edge", "run", "--config", str(config)],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    assert message in result.stderr and "Traceback" not in result.stderr


def scene_video(path: Path, frames: int, seed: int, fps: float = 25) -> Path:
    """An MJPG AVI of the synthetic scene, 640x480 at `fps` (25 unless asked)."""
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), fps, (640, 480))
    scene = ShapeScene(seed=seed)
    for _ in range(frames):
        writer.write(scene.next()[0])
    writer.release()
    return path


def config_with_camera(tmp_path: Path, model: Path, port: int, source: str) -> Path:
    """`write_config`'s daemon config with its camera reading `source` instead."""
    config = write_config(tmp_path, model, port)
    config.write_text(config.read_text().replace("synthetic://shapes?fps=10&seed=2", source))
    return config


@pytest.mark.slow
def test_truncated_video_ends_the_camera_cleanly(tmp_path, mosquitto, demo_model):
    """A video that breaks off mid-file: frames up to the damage are published, then the daemon
    stops by itself (status `stopped`, exit 0) instead of crashing."""
    clip = scene_video(tmp_path / "clip.avi", 40, seed=7)
    data = clip.read_bytes()
    clip.write_bytes(data[: len(data) // 2])
    config = config_with_camera(tmp_path, demo_model, mosquitto.port, f"file://{clip}?fps=0")
    with Watcher(mosquitto.port, f"{PREFIX}/#") as watcher:
        result = subprocess.run([sys.executable, "-m", "edge", "run", "--config", str(config)],
                                capture_output=True, text=True, timeout=120)
        assert result.returncode == 0, result.stderr
        assert "Traceback" not in result.stderr
        watcher.wait_for(lambda: len(watcher.on("/detections")) > 0, 5, "detections")
    assert 0 < len(watcher.on("/detections")) < 40
    assert retained_status(mosquitto.port, PREFIX)["state"] == "stopped"


def test_a_broken_clip_fails_the_start_before_another_camera_publishes(tmp_path, mosquitto,
                                                                       demo_model):
    """A user check: with a good clip as the first camera and a truncated one as the second,
    the first camera's detections, counts and a frame went out before the second ended the run.
    Every file is opened before any camera starts: exit 2, the retained status `failed`
    naming the broken camera, and no detection published."""
    good = scene_video(tmp_path / "good.avi", 40, seed=7)
    broken = tmp_path / "broken.mp4"
    broken.write_bytes(scene_video(tmp_path / "whole.mp4", 20, seed=8).read_bytes()[:2000])
    config = config_with_camera(tmp_path, demo_model, mosquitto.port, f"file://{good}")
    config.write_text(config.read_text().replace("[mqtt]", f"""[[cameras]]
name = "yard"
source = "file://{broken}"
[mqtt]""", 1))
    with Watcher(mosquitto.port, f"{PREFIX}/#") as watcher:
        result = subprocess.run([sys.executable, "-m", "edge", "run", "--config", str(config)],
                                capture_output=True, text=True, timeout=120)
        watcher.wait_for(lambda: retained_status(mosquitto.port, PREFIX)["state"] == "failed",
                         10, "the failed status")
    assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr
    assert "cameras.1.source (camera 'yard')" in result.stderr, result.stderr
    assert watcher.on("/detections") == [] and watcher.on("/frame") == []
    status = retained_status(mosquitto.port, PREFIX)
    assert status["camera_states"] == {"gate": "ended", "yard": "failed"}, status
    gate = retained_status(mosquitto.port, f"{PREFIX}/gate")
    assert gate["reason"] == "the daemon stopped before the camera delivered its first frame"


def test_a_clip_at_fps_0_loses_no_frame_and_one_at_its_own_rate_counts_those_it_drops(
        tmp_path, demo_model, mosquitto):
    """Two 40-frame clips: `gate` read with fps=0 has every frame inferred (ids 1-40, none
    dropped: the capture waits for the model); `yard` plays at its own 1000 FPS, faster than
    the model, so newer frames replace waiting ones, as with a live camera. The frames run plus
    the frames dropped account for all 80, in the summary and the last stats message alike
    (the summary's `dropped` counts messages)."""
    every = scene_video(tmp_path / "every.avi", 40, seed=8)
    fast = scene_video(tmp_path / "fast.avi", 40, seed=9, fps=1000)
    config = config_with_camera(tmp_path, demo_model, mosquitto.port, f"file://{every}?fps=0")
    config.write_text(config.read_text().replace("[mqtt]", f"""[[cameras]]
name = "yard"
source = "file://{fast}"
[mqtt]""", 1))
    with Watcher(mosquitto.port, f"{PREFIX}/#") as watcher:
        result = subprocess.run([sys.executable, "-m", "edge", "run", "--config", str(config),
                                 "--json"], capture_output=True, text=True, timeout=120)
        assert result.returncode == 0, result.stderr
        watcher.wait_for(lambda: bool(watcher.on("/stats")), 5, "stats")
        watcher.wait_for(lambda: len(watcher.on("gate/detections")) == 40, 5, "gate's 40")
    ids = sorted(m.json()["frame_id"] for m in watcher.on("gate/detections"))
    assert ids == list(range(1, 41))
    summary = json.loads(result.stdout.strip().splitlines()[-1])
    assert summary["frames"] + summary["frames_dropped"] == 80
    cameras = watcher.on("/stats")[-1].json()["cameras"]
    assert cameras["gate"]["dropped"] == 0
    assert 0 < cameras["yard"]["dropped"] == summary["frames_dropped"]
    dropped = summary["frames_dropped"]
    assert f"{dropped} camera frame{'' if dropped == 1 else 's'} dropped" in result.stderr


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["ultralytics-detector", "classifier"])
def test_converted_models_run_with_no_labels_or_size_in_the_config(tmp_path, mosquitto, kind):
    from converters.convert import ConvertOptions, convert
    from tests.converters.tiny_models import TinyClassifier, TinyDetector, export_onnx, seeded

    if kind == "classifier":
        source = export_onnx(seeded(TinyClassifier(3, softmax=True)), tmp_path / "c.onnx", 64, 64)
        options, names = ConvertOptions(labels=("cat", "dog", "bird")), {"cat", "dog", "bird"}
    else:
        source = export_onnx(seeded(TinyDetector(3)), tmp_path / "y.onnx", 64, 64, metadata={
            "names": "{0: 'person', 1: 'bicycle', 2: 'car'}", "imgsz": "[64, 64]",
            "stride": "4"})
        options, names = ConvertOptions(), {"person", "bicycle", "car"}
    convert(source, options).write(tmp_path / "model.onnx")
    config = _converted_model_config(tmp_path, mosquitto.port)
    with Watcher(mosquitto.port, f"{PREFIX}/gate/detections") as watcher:
        result = subprocess.run([sys.executable, "-m", "edge", "run", "--config", str(config),
                                 "--seconds", "3", "--json"],
                                capture_output=True, text=True, timeout=120)
        assert result.returncode == 0, result.stderr
        watcher.wait_for(lambda: len(watcher.messages) >= 10, 10, "detections")
    labels = {d["label"] for m in watcher.messages for d in m.json()["detections"]}
    assert labels and labels <= names
    if kind == "classifier":
        boxes = {tuple(d["box"]) for m in watcher.messages for d in m.json()["detections"]}
        assert boxes == {(0.0, 0.0, 640.0, 480.0)}


@pytest.mark.slow
def test_a_1000_class_classifier_sets_its_counts_and_discovery_beside_the_outbox(tmp_path,
                                                                                 mosquitto):
    """An ImageNet classifier's first frame set a retained zero count for each of its 1000
    labels, and Home Assistant discovery two configs a label: through the 1000-message outbox
    they dropped its oldest messages and warned of a broker fault. They are retained states
    now, one latest value a topic beside the outbox, and all reach the broker."""
    from converters.convert import ConvertOptions, convert
    from tests.converters.tiny_models import TinyClassifier, export_onnx, seeded

    labels = tuple(f"class{i}" for i in range(1000))
    source = export_onnx(seeded(TinyClassifier(1000, softmax=True)), tmp_path / "c.onnx", 64, 64)
    convert(source, ConvertOptions(labels=labels)).write(tmp_path / "model.onnx")
    summary = _run_for_3_s(tmp_path, mosquitto.port, "[homeassistant]\nenabled = true")
    assert summary["dropped"] == 0 and summary["produced"] == summary["published"] > 10
    # each value once: 1000 zero counts (unchanged at the stop), 3003 configs
    assert summary["states_sent"] == 4003
    # subscribers joining now, the counts at QoS 1 as the contract has them
    with Watcher(mosquitto.port, f"{PREFIX}/gate/+/count") as counts, \
            Watcher(mosquitto.port, "homeassistant/#", qos=0) as discovery:
        counts.wait_for(lambda: len(counts.messages) >= 1000, 10, "1000 retained counts")
        discovery.wait_for(lambda: len(discovery.messages) >= 3003, 10, "3003 configs")
    assert {m.topic for m in counts.messages} == {f"{PREFIX}/gate/{label}/count"
                                                  for label in labels}
    assert {m.payload for m in counts.messages} == {b"0"}  # the camera stopped: nothing there
    assert all(m.retain for m in counts.messages + discovery.messages)
    # 3 a label (count, occupancy, snapshot), 3 for the device
    assert len({m.topic for m in discovery.messages}) == 3003
    # one label in Home Assistant from now on: the 2997 others' configs are cleared (the
    # sweep that finds them read 1015 of 2003 at QoS 1, Mosquitto dropping the rest)
    _run_for_3_s(tmp_path, mosquitto.port,
                 '[homeassistant]\nenabled = true\nlabels = ["class0"]')
    with Watcher(mosquitto.port, "homeassistant/#", qos=0) as discovery:
        time.sleep(1.0)
    assert sorted(m.topic.split("/")[-2] for m in discovery.messages if m.payload) == [
        "connectivity", "gate_class0_count", "gate_class0_occupancy", "gate_class0_snapshot",
        "gate_fps", "gate_frame"]


def _converted_model_config(folder: Path, port: int, more: str = "") -> Path:
    """`folder`/edge.toml: `folder`/model.onnx (the config names neither labels nor size) on
    a synthetic camera at 20 fps, `more` added."""
    config = folder / "edge.toml"
    config.write_text(f"""
device_id = "test-gate"
[model]
path = "model.onnx"
[[cameras]]
name = "gate"
source = "synthetic://shapes?fps=20&seed=1"
[mqtt]
url = "mqtt://127.0.0.1:{port}"
{more}
""")
    return config


def _run_for_3_s(folder: Path, port: int, more: str) -> dict[str, Any]:
    """`edge run --seconds 3 --json` on `_converted_model_config`: its summary, after checking
    it exited 0 with no outbox overflow."""
    config = _converted_model_config(folder, port, more)
    result = subprocess.run([sys.executable, "-m", "edge", "run", "--config", str(config),
                             "--seconds", "3", "--json"], capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 0, result.stderr
    assert "outbox reached its limit" not in result.stderr
    return dict(json.loads(result.stdout.strip().splitlines()[-1]))


def test_a_run_a_clip_ended_early_is_said_to_be_as_long_as_it_was(tmp_path, demo_model):
    """A user check: a 20-frame clip ended a `--seconds 30` run after a second or two, and the
    exit line said the broker "was never reached in the 30 s run"."""
    from edge.broker import free_port

    clip = tmp_path / "clip.avi"
    writer = cv2.VideoWriter(str(clip), cv2.VideoWriter_fourcc(*"MJPG"), 10, (320, 240))
    for index in range(20):
        writer.write(np.full((240, 320, 3), 10 * index, np.uint8))
    writer.release()
    config = write_config(tmp_path, demo_model, free_port())
    config.write_text(config.read_text().replace(
        'source = "synthetic://shapes?fps=10&seed=2"', f'source = "file://{clip}?fps=0"'))
    result = subprocess.run([sys.executable, "-m", "edge", "run", "--config", str(config),
                             "--seconds", "30", "--json"], capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 1, result.stderr
    summary = json.loads(result.stdout.strip().splitlines()[-1])
    assert summary["frames"] == 20 and summary["broker_reached"] is False
    ran = re.search(r"accepted no connection in the (\d+(?:\.\d)?) s run", result.stderr)
    assert ran is not None, result.stderr
    assert float(ran.group(1)) < 30
    assert f"over the {ran.group(1)} s run" in result.stderr  # the stop's own line agrees


def test_a_camera_that_never_delivered_a_frame_is_named_at_the_stop(tmp_path, mosquitto,
                                                                    demo_model):
    """`edge run --seconds 8` on a camera never reached exited 0 with `"frames": 0` and no word
    of the camera (a user check). A timed run is a trial, so it now exits 1 naming the camera
    and why; one that a signal stops first still exits 0, as a service does (systemd would
    count every stop a failure)."""
    config = write_config(tmp_path, demo_model, mosquitto.port)
    config.write_text(config.read_text().replace(
        'source = "synthetic://shapes?fps=10&seed=2"', 'source = "rtsp://127.0.0.1:1/cam"'))
    result = subprocess.run([sys.executable, "-m", "edge", "run", "--config", str(config),
                             "--seconds", "2", "--json"], capture_output=True, text=True,
                            timeout=60)
    assert result.returncode == 1, result.stderr
    assert "WARNING edge.daemon: camera gate never delivered a frame (reconnecting: source " \
           "'rtsp://127.0.0.1:1/cam' could not be opened: 127.0.0.1:1 refused the connection" \
           in result.stderr
    assert re.search(r"ERROR edge: exiting 1: camera gate delivered no frame in the 2\.\d s "
                     "run", result.stderr)
    summary = json.loads(result.stdout.strip().splitlines()[-1])
    assert (summary["frames"], summary["never_streamed"]) == (0, ["gate"])
    # a signal before the time is up (systemd stopping it, Ctrl-C): 0, with or without it
    stopped = subprocess.Popen([sys.executable, "-m", "edge", "run", "--config", str(config),
                                "--seconds", "60"], stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE)
    time.sleep(3)
    code, err = stop(stopped, signal.SIGTERM)
    assert code == 0, err
    assert "camera gate never delivered a frame" in err and "exiting 1" not in err


def test_a_camera_still_opening_at_the_end_of_a_trial_is_told_to_run_longer(
        tmp_path, mosquitto, demo_model):
    """A user check: an RTSP camera still opening when a 3 s trial ended was named with
    "(starting)" alone, and the exit line pointed there for the reason."""
    silent = socket.create_server(("127.0.0.1", 0))  # takes the connection, never answers
    config = write_config(tmp_path, demo_model, mosquitto.port)
    config.write_text(config.read_text().replace(
        'source = "synthetic://shapes?fps=10&seed=2"',
        f'source = "rtsp://127.0.0.1:{silent.getsockname()[1]}/cam"'))
    with silent:
        result = subprocess.run([sys.executable, "-m", "edge", "run", "--config", str(config),
                                 "--seconds", "2"], capture_output=True, text=True, timeout=90)
    assert result.returncode == 1, result.stderr
    assert ("camera gate never delivered a frame (still opening 2 s after the start, without "
            "an error: an RTSP camera can take several seconds to send its first frame; give "
            "a trial run longer (--seconds 15))") in result.stderr
    assert "exiting 1: camera gate delivered no frame in the 2." in result.stderr


@pytest.mark.slow
def test_counts_are_set_again_after_the_broker_restarts_without_them(tmp_path, mosquitto,
                                                                     demo_model):
    """A broker without persistence forgets retained values when it restarts: the camera
    statuses and discovery configs were set again on reconnect, the counts were not (a late
    subscriber saw none until one changed)."""
    from edge.spec import spec_from_onnx_file

    topics = {f"{PREFIX}/gate/{label}/count" for label in spec_from_onnx_file(demo_model).labels}
    daemon = start_daemon(write_config(tmp_path, demo_model, mosquitto.port))
    try:
        assert _retained_topics(mosquitto.port, f"{PREFIX}/gate/+/count", topics, 30) == topics
        mosquitto.stop()
        mosquitto.start()  # `persistence false`: every retained value is gone
        assert _retained_topics(mosquitto.port, f"{PREFIX}/gate/+/count", topics, 30) == topics
    finally:
        code, err = stop(daemon, signal.SIGTERM)
    assert code == 0, err


def _retained_topics(port: int, topic_filter: str, wanted: set[str], timeout: float) -> set[str]:
    """The topics under `topic_filter` holding retained values, read by a new subscriber every
    second until they are `wanted` (or `timeout` s passed)."""
    deadline = time.monotonic() + timeout
    found: set[str] = set()
    while time.monotonic() < deadline and found != wanted:
        with Watcher(port, topic_filter) as late:
            time.sleep(1.0)
            found = {m.topic for m in late.messages if m.retain}
    return found


def test_stopping_with_a_stuck_backend_is_bounded_whatever_the_camera_count(
        mosquitto, demo_model, monkeypatch, caplog):
    """A backend that never returns, under three cameras: stopping waits `CAMERAS_STOP_S` for
    all cameras together and `INFERENCE_STOP_S` for the batch, then flushes and says
    "stopped" (one camera after the other, it took 3 x 5 s + 10 s, and systemd's
    TimeoutStopSec of 30 s would have killed it before the flush)."""
    import edge.daemon
    from edge.config import config_from_dict
    from edge.daemon import Daemon
    from tests.stuck_runner import StuckRunner

    monkeypatch.setattr(edge.daemon, "CAMERAS_STOP_S", 1.0)
    monkeypatch.setattr(edge.daemon, "INFERENCE_STOP_S", 1.0)
    cameras = [{"name": f"cam{i}", "source": f"synthetic://shapes?fps=20&seed={i}"}
               for i in range(3)]
    config = config_from_dict({"device_id": "test-gate", "cameras": cameras,
                               "model": {"path": str(demo_model), "threads": 1},
                               "mqtt": {"url": mosquitto.url}}, "test")
    daemon = Daemon(config)
    runner = StuckRunner(daemon)
    with Watcher(mosquitto.port, f"{PREFIX}/#") as watcher:
        daemon.start()
        try:
            watcher.wait_for(lambda: all(watcher.on(f"/cam{i}/detections") for i in range(3)),
                             30, "detections from every camera")
            runner.hang()
            assert runner.stuck.wait(10), "the runner was never asked again"
            began = time.monotonic()
            summary = daemon.stop(1.0)
            stopping_s = time.monotonic() - began
        finally:
            runner.release()
    assert stopping_s < 1.0 + 1.0 + 3.0, stopping_s  # the two waits and the flush, not 3 x 5 s
    assert "did not stop within 1 s; left behind" in caplog.text
    assert retained_status(mosquitto.port, PREFIX)["state"] == "stopped"
    assert summary.published >= 3 and summary.queued == 0
    assert all(not worker.alive() or worker.finished.is_set() for worker in daemon.workers)


def test_a_camera_that_streamed_to_a_model_that_never_answered_is_not_said_to_be_silent(
        mosquitto, demo_model, monkeypatch, caplog):
    """A camera streaming from the start into a backend stuck from its first batch: no frame
    was inferred, but the camera delivered. The stop said "camera cam never delivered a frame
    (streaming)" and named it in `never_streamed`; the camera is named by what it delivered."""
    import edge.daemon
    from edge.config import config_from_dict
    from edge.daemon import Daemon
    from tests.stuck_runner import StuckRunner

    monkeypatch.setattr(edge.daemon, "CAMERAS_STOP_S", 1.0)
    monkeypatch.setattr(edge.daemon, "INFERENCE_STOP_S", 1.0)
    config = config_from_dict({"device_id": "test-gate", "cameras": [
        {"name": "cam", "source": "synthetic://shapes?fps=20&seed=1"}],
        "model": {"path": str(demo_model), "threads": 1},
        "mqtt": {"url": mosquitto.url}}, "test")
    daemon = Daemon(config)
    runner = StuckRunner(daemon)
    runner.hang()
    try:
        daemon.start()
        assert runner.stuck.wait(20), "the runner was never asked"
        deadline = time.monotonic() + 10
        while daemon.workers[0].supervisor.frames < 5 and time.monotonic() < deadline:
            time.sleep(0.05)
        summary = daemon.stop(1.0)
    finally:
        runner.release()
    assert summary.frames == 0 and daemon.workers[0].supervisor.frames >= 5
    assert summary.never_streamed == ()
    assert "never delivered a frame" not in caplog.text


def test_a_timed_run_that_never_reached_its_broker_exits_1(tmp_path, demo_model):
    """`edge run --seconds 8` against a broker that refused every connection exited 0 with
    every message dropped: a trial run a script checks must fail, as a camera that never
    streamed does."""
    from edge.broker import free_port

    port = free_port()
    config = write_config(tmp_path, demo_model, port)
    # an outbox of 2: the run's events push each other out once no detection is left to drop
    config.write_text(config.read_text().replace("reconnect_min_s", "outbox_size = 2\n"
                                                                    "reconnect_min_s"))
    result = subprocess.run([sys.executable, "-m", "edge", "run", "--config", str(config),
                             "--seconds", "3", "--json"],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 1, result.stderr
    assert re.search(rf"exiting 1: the MQTT broker mqtt://127\.0\.0\.1:{port} accepted no "
                     r"connection in the 3\.\d s run, so nothing was published", result.stderr)
    assert "connection refused" in result.stderr and "Traceback" not in result.stderr
    summary = json.loads(result.stdout.splitlines()[-1])
    assert summary["broker_reached"] is False and summary["published"] == 0
    assert summary["never_streamed"] == []  # the camera itself worked
    assert summary["dropped"] == summary["produced"] > 20  # a memory outbox, never sent
    events = summary["events_dropped"]
    assert events > 0 and f"{summary['dropped']} dropped ({events} event" in result.stderr
    # the summary says it failed, as every command's --json ends on an error (a user check)
    assert summary["exit_code"] == 1
    assert re.fullmatch(rf"the MQTT broker mqtt://127\.0\.0\.1:{port} accepted no connection "
                        r"in the 3\.\d s run, so nothing was published", summary["error"])


def test_a_camera_that_cannot_start_leaves_a_failed_status_that_says_why(tmp_path, mosquitto,
                                                                         demo_model):
    """The broker is connected before the cameras start (a file camera's open once waited
    out an RTSP camera's, while the outbox filled): a camera that then cannot start ends the
    run with exit 2 and the retained status `failed`, its error naming the camera."""
    broken = tmp_path / "clip.mp4"
    broken.write_bytes(b"not a video at all" * 100)
    config = config_with_camera(tmp_path, demo_model, mosquitto.port, f"file://{broken}")
    result = subprocess.run([sys.executable, "-m", "edge", "run", "--config", str(config)],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    status = retained_status(mosquitto.port, PREFIX)
    assert status["state"] == "failed", status
    assert status["error"].startswith("start failed: "), status
    assert "gate" in status["error"] and str(broken) in status["error"], status
    assert status["camera_states"] == {"gate": "failed"}, status  # not still "starting"
    camera = retained_status(mosquitto.port, f"{PREFIX}/gate")
    assert camera["state"] == "failed" and str(broken) in camera["reason"], camera
    parse_message(PREFIX, f"{PREFIX}/status", json.dumps(status).encode())  # the contract

"""The daemon keeps its cameras going: a real RTSP server (tests/rtsp_server.py) is taken away
and brought back under `edge run`, with a real Mosquitto; camera states are read from the
retained `<prefix>/<camera>/status` topics, as a dashboard would."""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

from edge.broker import free_port
from edge.config import load_config
from edge.errors import ConfigError
from tests.mqtt_watch import Watcher, retained_status
from tests.rtsp_server import missing_reason
from tests.test_daemon_mqtt import start_daemon, stop

PREFIX = "edge/test-cams"

rtsp = pytest.mark.skipif(missing_reason() is not None, reason=str(missing_reason()))


def write_config(tmp_path: Path, model: Path, port: int, cameras: dict[str, str],
                 camera_keys: str = "stall_s = 3\nreconnect_max_s = 2\n") -> Path:
    config = tmp_path / "edge.toml"
    blocks = "".join(f'[[cameras]]\nname = "{name}"\nsource = "{source}"\n{camera_keys}'
                     for name, source in cameras.items())
    config.write_text(f"""
device_id = "test-cams"
[model]
path = "{model}"
threads = 1
{blocks}
[mqtt]
url = "mqtt://127.0.0.1:{port}"
reconnect_min_s = 0.5
reconnect_max_s = 1
[frames]
interval_s = 0
[stats]
interval_s = 1
""")
    return config


def camera_states(watcher: Watcher, camera: str) -> list[str]:
    return [m.json()["state"] for m in watcher.on(f"/{camera}/status")]


def detections_of(watcher: Watcher, camera: str) -> int:
    return len(watcher.on(f"/{camera}/detections"))


def last_stats(watcher: Watcher) -> dict:
    return [m.json() for m in watcher.on(f"{PREFIX}/stats")][-1]["cameras"]


def retained_camera_status(port: int, camera: str) -> dict:
    with Watcher(port, f"{PREFIX}/{camera}/status") as watcher:
        watcher.wait_for(lambda: any(m.retain for m in watcher.on("/status")), 5,
                         f"the retained status of camera {camera}")
        return dict([m for m in watcher.on("/status") if m.retain][-1].json())


def test_the_stats_a_stopped_daemon_leaves_retained_keep_the_rate_it_ran_at(
        tmp_path, mosquitto, demo_model):
    """The last retained stats and camera status showed 50 FPS for a camera that ran at 90:
    they were taken after the stop, and the time since the last frame counted as a camera
    dying. Unpaced synthetic frames, so the stop outlasts many frame gaps."""
    config = write_config(tmp_path, demo_model, mosquitto.port,
                          {"fast": "synthetic://shapes?fps=1000&seed=3"})
    daemon = start_daemon(config)
    try:
        with Watcher(mosquitto.port, f"{PREFIX}/#") as watcher:
            watcher.wait_for(lambda: len(watcher.on(f"{PREFIX}/stats")) >= 3, 30,
                             "three stats messages")
            running = [m.json()["cameras"]["fast"]["fps"] for m in watcher.on(f"{PREFIX}/stats")]
    finally:
        code, err = stop(daemon, signal.SIGTERM)
    assert code == 0, err
    with Watcher(mosquitto.port, f"{PREFIX}/stats") as watcher:
        watcher.wait_for(lambda: any(m.retain for m in watcher.on("/stats")), 5,
                         "the retained stats")
        final = watcher.on("/stats")[-1].json()["cameras"]["fast"]
    assert final["fps"] >= 0.8 * min(running[1:]), (final, running)
    assert retained_camera_status(mosquitto.port, "fast")["fps"] >= 0.8 * min(running[1:])


def test_a_camera_whose_source_ended_reads_0_fps_at_once_while_another_runs(
        tmp_path, mosquitto, demo_model):
    """A user check: a clip that had ended still read 8.5 fps, then 8.3, in the stats while
    the other cameras ran (the rate decays over 10 s)."""
    config = write_config(tmp_path, demo_model, mosquitto.port, {
        "short": "synthetic://shapes?fps=10&seed=3&frames=15",
        "long": "synthetic://shapes?fps=10&seed=4"})
    daemon = start_daemon(config)
    try:
        with Watcher(mosquitto.port, f"{PREFIX}/#") as watcher:
            watcher.wait_for(lambda: "ended" in camera_states(watcher, "short"), 30,
                             "the short camera's end")
            ended_at = len(watcher.on(f"{PREFIX}/stats"))
            watcher.wait_for(lambda: len(watcher.on(f"{PREFIX}/stats")) >= ended_at + 2, 10,
                             "two stats messages after the end")
            after = [m.json()["cameras"] for m in watcher.on(f"{PREFIX}/stats")][ended_at + 1:]
    finally:
        code, err = stop(daemon, signal.SIGTERM)
    assert code == 0, err
    assert [cameras["short"]["fps"] for cameras in after] == [0.0] * len(after), after
    assert all(cameras["long"]["fps"] > 5 for cameras in after), after


@rtsp
@pytest.mark.slow
def test_rtsp_camera_comes_back_while_another_keeps_publishing(tmp_path, mosquitto, demo_model,
                                                               rtsp_server):
    rtsp_server.start()
    config = write_config(tmp_path, demo_model, mosquitto.port, {
        "street": rtsp_server.url, "yard": "synthetic://shapes?fps=5&seed=3"})
    daemon = start_daemon(config)
    try:
        with Watcher(mosquitto.port, f"{PREFIX}/#") as watcher:
            watcher.wait_for(lambda: detections_of(watcher, "street") >= 10, 60,
                             "detections from the RTSP camera")
            rtsp_server.stop()
            watcher.wait_for(lambda: "reconnecting" in camera_states(watcher, "street"), 10,
                             "street reconnecting")
            # sent just after the camera's status, on the same connection
            watcher.wait_for(lambda: retained_status(mosquitto.port, PREFIX)["state"]
                             == "degraded", 2, "the device degraded")
            yard_before, street_before = detections_of(watcher, "yard"), detections_of(
                watcher, "street")
            time.sleep(10)
            assert detections_of(watcher, "yard") - yard_before >= 20  # 5 fps for 10 s
            assert detections_of(watcher, "street") - street_before <= 2
            down = retained_camera_status(mosquitto.port, "street")
            assert down["state"] == "reconnecting" and down["attempts"] >= 3
            # a user check: "7.8 fps reconnecting", decaying over 10 s, in stats and journal
            down_stats = [m.json()["cameras"]["street"] for m in watcher.on(f"{PREFIX}/stats")
                          if m.json()["cameras"]["street"]["state"] == "reconnecting"]
            assert down_stats and all(s["fps"] == 0 for s in down_stats), down_stats
            assert last_stats(watcher)["street"]["source_fps"] == 0
            assert last_stats(watcher)["street"]["state"] == "reconnecting"
            assert last_stats(watcher)["yard"]["fps"] > 3

            restarted = time.monotonic()
            rtsp_server.start()
            watcher.wait_for(lambda: detections_of(watcher, "street") > street_before + 5,
                             2 + 5, "street detections within reconnect_max_s + 5 s")
            back_after = time.monotonic() - restarted
            assert camera_states(watcher, "street")[-1] == "streaming"
            watcher.wait_for(lambda: retained_status(mosquitto.port, PREFIX)["state"]
                             == "online", 5, "the device back online")
            assert set(camera_states(watcher, "yard")) <= {"starting", "streaming"}
    finally:
        code, err = stop(daemon, signal.SIGTERM)
    assert code == 0, err
    assert back_after <= 7
    assert "Traceback" not in err


@rtsp
@pytest.mark.slow
def test_a_timed_run_names_a_camera_that_was_down_at_its_end(tmp_path, mosquitto, demo_model,
                                                             rtsp_server):
    """A camera that streamed and then went for good left no word at the end of a timed trial
    (exit 0, `never_streamed` empty: a user check): the stop now says it was down, for how
    long, and why."""
    rtsp_server.start()
    config = write_config(tmp_path, demo_model, mosquitto.port, {"street": rtsp_server.url})
    with Watcher(mosquitto.port, f"{PREFIX}/#") as watcher:
        daemon = subprocess.Popen([sys.executable, "-m", "edge", "run", "--config",
                                   str(config), "--seconds", "12"], stdout=subprocess.PIPE,
                                  stderr=subprocess.PIPE, text=True)
        watcher.wait_for(lambda: detections_of(watcher, "street") >= 3, 30, "detections")
        rtsp_server.stop()
        _, err = daemon.communicate(timeout=60)
    assert daemon.returncode == 0, err
    down = re.search(r"WARNING edge.daemon: camera street was down at the stop, for its last "
                     r"(\d+) s \((.*)\)$", err, re.MULTILINE)
    assert down is not None, err
    assert 2 <= int(down[1]) <= 12 and "refused the connection" in down[2], down[0]
    ended = retained_camera_status(mosquitto.port, "street")  # what a watcher reads afterwards
    assert ended["state"] == "ended" and ended["attempts"] >= 1
    assert ended["reason"].startswith("the daemon stopped while the camera was down (since ")
    # the last cause, then how the outage began
    began = ended["reason"].removesuffix(")").rpartition(" (before that: ")
    assert began[0].endswith(down[2]) and began[2] in ("the stream ended",
                                                        "no frame for 10 s"), ended["reason"]


@rtsp
@pytest.mark.slow
def test_lone_rtsp_camera_unreachable_at_start_waits_for_its_server(tmp_path, mosquitto,
                                                                   demo_model, rtsp_server):
    """With its only camera unreachable the daemon neither exits nor stops retrying."""
    config = write_config(tmp_path, demo_model, mosquitto.port, {"street": rtsp_server.url},
                          "stall_s = 3\nreconnect_max_s = 1\n")
    daemon = start_daemon(config)
    try:
        with Watcher(mosquitto.port, f"{PREFIX}/#") as watcher:
            watcher.wait_for(lambda: "reconnecting" in camera_states(watcher, "street"), 30,
                             "street reconnecting")
            time.sleep(3)
            assert daemon.poll() is None, "the daemon must not exit while a live camera is down"
            status = retained_status(mosquitto.port, PREFIX)
            assert status["state"] == "degraded"
            assert status["camera_states"] == {"street": "reconnecting"}
            assert retained_camera_status(mosquitto.port, "street")["attempts"] >= 2
            rtsp_server.start()
            watcher.wait_for(lambda: detections_of(watcher, "street") >= 5, 1 + 5 + 5,
                             "detections once the server is up")
        states = camera_states(watcher, "street")  # "starting" came before the broker link
        assert states[-1] == "streaming"
        assert set(states) <= {"starting", "reconnecting", "streaming"}
    finally:
        code, err = stop(daemon, signal.SIGTERM)
    assert code == 0, err
    assert retained_camera_status(mosquitto.port, "street")["reason"] == "the daemon stopped"


@pytest.mark.parametrize(
    ("keys", "message"),
    [
        ("stall_s = 0\n", "cameras.0.stall_s"),
        ("reconnect_max_s = -1\n", "cameras.0.reconnect_max_s"),
        ('stall_s = "10"\n', "cameras.0.stall_s"),
        ("reconnect_max_s = 1e9\n", "cameras.0.reconnect_max_s"),
        ("reconnect_min_s = 1\n", "cameras.0.reconnect_min_s: unknown key"),
    ],
)
def test_bad_supervision_settings_are_config_errors_naming_the_key(tmp_path, demo_model, keys,
                                                                   message):
    config = write_config(tmp_path, demo_model, 1, {"yard": "synthetic://shapes"}, keys)
    with pytest.raises(ConfigError, match=re.escape(message)):
        load_config(config)


@pytest.mark.parametrize(
    ("source", "message"),
    [
        ("gopher://camera/1", "unknown scheme 'gopher://'; supported: synthetic://"),
        ("rtps://camera/1", "unknown scheme 'rtps://'; did you mean rtsp://? supported:"),
        ("synthetic://shapes?colour=red", "unknown option"),
        ("file:///no/such/clip.mp4", "does not exist"),
        ("rtsp://camera:port/live", "its port 'port' is not a number from 1 to 65535"),
        ("rtsp://[fe80::1/live", "is not a valid URI (Invalid IPv6 URL)"),
    ],
)
def test_certain_source_errors_exit_2_naming_the_camera(tmp_path, demo_model, source, message):
    config = write_config(tmp_path, demo_model, 1, {
        "yard": "synthetic://shapes?fps=5", "street": source})
    result = subprocess.run([sys.executable, "-m", "edge", "run", "--config", str(config)],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 2, result.stderr
    # named as validation errors name a key: after the config's file (a user check)
    assert f"error: {config}: cameras.1.source (camera 'street'): " in result.stderr
    assert message in result.stderr and "Traceback" not in result.stderr


def test_a_missing_model_exits_2_naming_the_config_key(tmp_path, demo_model):
    config = write_config(tmp_path, demo_model, 1, {"yard": "synthetic://shapes?fps=5"})
    config.write_text(config.read_text().replace(str(demo_model), str(tmp_path / "nope.onnx")))
    result = subprocess.run([sys.executable, "-m", "edge", "run", "--config", str(config)],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 2, result.stderr
    assert result.stderr.strip().endswith(
        f"error: {config}: model.path: model file {tmp_path / 'nope.onnx'} does not exist; "
        "check the "
        "path, or make a model with `edge convert`"), result.stderr


@pytest.mark.slow
def test_the_password_of_an_rtsp_camera_is_never_printed(tmp_path, mosquitto, demo_model):
    closed = free_port()
    config = write_config(tmp_path, demo_model, mosquitto.port, {
        "street": f"rtsp://admin:hunter2@127.0.0.1:{closed}/cam"}, "reconnect_max_s = 0.5\n")
    with Watcher(mosquitto.port, f"{PREFIX}/#") as watcher:
        result = subprocess.run([sys.executable, "-m", "edge", "run", "--config", str(config),
                                 "--seconds", "4", "--json"],
                                capture_output=True, text=True, timeout=60)
        watcher.wait_for(lambda: "ended" in camera_states(watcher, "street"), 5, "street ended")
    assert result.returncode == 1, result.stderr  # a timed run whose camera never streamed
    assert "reopening" in result.stderr and "rtsp://REDACTED@" in result.stderr
    assert f"127.0.0.1:{closed} refused the connection" in result.stderr
    assert "admin:" not in result.stderr
    published = b"".join(m.payload for m in watcher.messages)
    assert b"hunter2" not in published and "hunter2" not in result.stderr + result.stdout
    assert any("rtsp://REDACTED@" in m.json()["reason"] for m in watcher.on("/street/status")
               if m.json()["state"] == "reconnecting")


def test_a_timed_run_says_each_cameras_frames_and_rate_over_its_own_streaming_time(
        tmp_path, mosquitto, demo_model):
    """A user check: `edge run --json` gave one fps and one frames_dropped for all cameras,
    over the whole run, so a camera that ended early or was never reached hid in the sum."""
    config = write_config(tmp_path, demo_model, mosquitto.port, {
        "short": "synthetic://shapes?fps=10&seed=3&frames=15",
        "long": "synthetic://shapes?fps=10&seed=4",
        "gone": f"rtsp://127.0.0.1:{free_port()}/cam"}, "reconnect_max_s = 0.5\n")
    result = subprocess.run([sys.executable, "-m", "edge", "run", "--config", str(config),
                             "--seconds", "6", "--json"], capture_output=True, text=True,
                            timeout=90)
    assert result.returncode == 1, result.stderr  # a timed run with a camera never reached
    summary = json.loads(result.stdout.strip().splitlines()[-1])
    cameras = summary["cameras"]
    assert list(cameras) == ["short", "long", "gone"]
    assert sum(camera["frames"] for camera in cameras.values()) == summary["frames"]
    short, long, gone = cameras["short"], cameras["long"], cameras["gone"]
    assert 10 <= short["frames"] <= 15, short
    assert 1.0 <= short["streaming_s"] <= 3.0, short  # 15 frames at 10 fps, then it ended
    assert 4.0 <= short["fps"] <= 12.0, short  # a busy CI host runs the model slower
    assert 4.0 <= long["streaming_s"] <= 6.5, long
    assert 6.0 <= long["fps"] <= 11.0, long
    assert long["frames"] == pytest.approx(long["fps"] * long["streaming_s"], rel=0.05)
    assert gone == {"frames": 0, "fps": 0.0, "streaming_s": 0.0, "frames_dropped": 0,
                    "reconnects": 0}, gone
    # the whole run's rate counts every camera's frames over the run: well under the sum
    assert summary["fps"] < short["fps"] + long["fps"]
    for name, camera in cameras.items():
        assert re.search(rf"camera {name}: {camera['frames']} frames?, [0-9.]+ FPS over its "
                         rf"[0-9.]+ s streaming", result.stderr), (name, result.stderr[-3000:])


def test_files_that_end_stop_the_daemon_with_exit_0(tmp_path, mosquitto, demo_model):
    from tests.test_sources import write_video

    clip = tmp_path / "clip.avi"
    write_video(clip, 5)
    config = write_config(tmp_path, demo_model, mosquitto.port, {
        "a": f"file://{clip}?fps=20", "b": f"file://{clip}?fps=10"})
    with Watcher(mosquitto.port, f"{PREFIX}/#") as watcher:
        result = subprocess.run([sys.executable, "-m", "edge", "run", "--config", str(config)],
                                capture_output=True, text=True, timeout=60)
        assert result.returncode == 0, result.stderr
        watcher.wait_for(lambda: camera_states(watcher, "b")[-1:] == ["ended"], 5, "b ended")
    assert camera_states(watcher, "a")[-1] == "ended"
    assert retained_camera_status(mosquitto.port, "a")["reason"] == "end of the source"


def test_a_file_camera_that_fails_makes_the_daemon_exit_1(tmp_path, mosquitto, demo_model):
    images = tmp_path / "images"
    images.mkdir()
    for i in range(3):
        cv2.imwrite(str(images / f"{i}.png"), np.full((120, 160, 3), 50 * i, np.uint8))
    config = write_config(tmp_path, demo_model, mosquitto.port, {
        "a": f"file://{images}?fps=10&loop=1"})
    with Watcher(mosquitto.port, f"{PREFIX}/#") as watcher:
        daemon = start_daemon(config)
        watcher.wait_for(lambda: detections_of(watcher, "a") >= 3, 60, "detections")
        for path in images.glob("*.png"):
            path.write_bytes(b"broken")
        _, err = daemon.communicate(timeout=30)
        watcher.wait_for(lambda: "failed" in camera_states(watcher, "a"), 5, "a failed")
    assert daemon.returncode == 1, err
    assert "camera a failed" in err.decode()


from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator

import pytest
from paho.mqtt import publish

from edge import monitor as monitor_module
from edge.client.models import DeviceStats, DeviceStatus
from edge.monitor import format_drift, format_line, format_stats, format_status, run_monitor
from edge.timing import rfc3339
from tests.set_clock import SetClock
from tests.test_daemon_mqtt import write_config


def _watch(url: str, tmp_path, lines: list[str], stop: threading.Event, result: dict,
           **options) -> threading.Thread:
    watcher = threading.Thread(target=lambda: result.update(run_monitor(
        url, "edge/+", None, tmp_path / "frames", lines.append, stop, **options)))
    watcher.start()
    deadline = time.monotonic() + 10
    while not any(line.startswith("connected") for line in lines) and \
            time.monotonic() < deadline:
        time.sleep(0.05)
    return watcher


@pytest.mark.slow
def test_monitor_sees_every_kind_of_message_and_saves_frames(tmp_path, mosquitto, demo_model):
    lines: list[str] = []
    stop = threading.Event()
    result: dict = {}
    watcher = _watch(mosquitto.url, tmp_path, lines, stop, result)
    daemon = subprocess.run([sys.executable, "-m", "edge", "run", "--config",
                             str(write_config(tmp_path, demo_model, mosquitto.port)),
                             "--seconds", "4"], capture_output=True, text=True, timeout=120)
    assert daemon.returncode == 0, daemon.stderr
    publish.single("edge/test-gate/gate/detections", b"{not json", qos=1, hostname="127.0.0.1",
                   port=mosquitto.port)
    time.sleep(1.0)  # the broker has acknowledged it; give the monitor time to receive it
    stop.set()
    watcher.join(timeout=15)
    counts = result["messages"]
    assert counts["status"] >= 2 and counts["stats"] >= 1 and counts["detections"] >= 20
    assert counts["frame"] >= 1 and result["frames_saved"] >= 1
    assert result["malformed"] == 1
    assert lines[0] == f"connected to {mosquitto.url}, watching edge/+"
    assert all(line.startswith("[test-gate] ") for line in lines[1:])  # the device, every line
    assert any(line.startswith("[test-gate] online") for line in lines)
    assert any(line.startswith("[test-gate] stopped") for line in lines)
    assert any("gate frame" in line for line in lines)
    saved = sorted((tmp_path / "frames" / "test-gate" / "gate").glob("*.jpg"))
    assert saved and saved[0].read_bytes()[:2] == b"\xff\xd8"
    sidecar = json.loads(saved[0].with_suffix(".json").read_text())
    assert sidecar["frame_id"] == int(saved[0].stem) and sidecar["device"] == "test-gate"
    assert isinstance(sidecar["detections"], list) and sidecar["detections"]
    assert {"label", "score", "box", "track_id"} <= set(sidecar["detections"][0])
    for jpeg in saved:  # the frame's meta names the same tracks as its detections message
        sidecar = json.loads(jpeg.with_suffix(".json").read_text())
        assert [p["track_id"] for p in sidecar["meta"]["predictions"]] == \
            [d["track_id"] for d in sidecar["detections"]], sidecar


def test_a_quiet_monitor_still_says_its_connection_state(tmp_path, mosquitto):
    """--quiet drops the message lines, not "connected": a watch with nothing on screen would
    not say whether it is connected at all. Messages are still counted."""
    lines: list[str] = []
    stop = threading.Event()
    result: dict = {}
    watcher = _watch(mosquitto.url, tmp_path, lines, stop, result, quiet=True)
    status = {"v": 1, "state": "online", "version": "0.1", "model": "det", "cameras": ["gate"],
              "started_at": "2026-12-01T03:00:00Z"}
    publish.single("edge/pi/status", json.dumps(status), qos=1, hostname="127.0.0.1",
                   port=mosquitto.port)
    time.sleep(1.0)  # the broker has acknowledged it; give the monitor time to receive it
    stop.set()
    watcher.join(timeout=15)
    assert lines == [f"connected to {mosquitto.url}, watching edge/+"]
    assert result["messages"]["status"] == 1


@pytest.mark.slow
def test_monitor_events_mode_shows_events_not_frames(tmp_path, mosquitto, demo_model):
    lines: list[str] = []
    stop = threading.Event()
    result: dict = {}
    watcher = _watch(mosquitto.url, tmp_path, lines, stop, result, events=True)
    daemon = subprocess.run([sys.executable, "-m", "edge", "run", "--config",
                             str(write_config(tmp_path, demo_model, mosquitto.port)),
                             "--seconds", "4"], capture_output=True, text=True, timeout=120)
    assert daemon.returncode == 0, daemon.stderr
    time.sleep(1.0)
    stop.set()
    watcher.join(timeout=15)
    assert not any("gate frame" in line for line in lines)
    news = [line for line in lines if " new " in line]
    ends = [line for line in lines if " end " in line]
    assert news and len(news) == len(ends)
    assert news[0].startswith("[test-gate] gate new ") and " #" in news[0]
    assert any(" count " in line for line in lines)


def test_connected_is_printed_before_the_retained_messages_that_follow_the_suback(mosquitto):
    for n in range(5):
        publish.single(f"edge/dev{n}/gate/circle/count", str(n), qos=1, retain=True,
                       hostname="127.0.0.1", port=mosquitto.port)
    lines: list[str] = []
    run_monitor(mosquitto.url, "edge/+", 1.5, None, echo=lines.append, events=True)
    assert lines[0].startswith(f"connected to {mosquitto.url}"), lines
    assert len(lines) >= 2


@pytest.mark.slow
def test_the_monitor_watches_the_demos_embedded_broker():
    """amqtt (the demo's embedded broker) sends a running device's messages ahead of the
    SUBACK. The monitor used to hold them on paho's network thread until it had printed
    "connected", and that thread then never read the SUBACK: 10 s, then "could not reach the
    MQTT broker"."""
    from edge.broker import EmbeddedBroker
    from edge.demo import run_demo

    with EmbeddedBroker() as broker:
        stop = threading.Event()
        running = threading.Event()
        demo = threading.Thread(target=run_demo, args=(30,), kwargs={
            "mqtt_url": broker.url, "threads": 1, "echo": lambda line: None, "stop": stop,
            "running": running.set})
        demo.start()
        try:
            assert running.wait(30)
            time.sleep(3)  # counts, snapshots and stats retained by then
            lines: list[str] = []
            started = time.monotonic()
            run_monitor(broker.url, "edge/+", 1.0, None, echo=lines.append, events=True)
            watched = time.monotonic() - started
        finally:
            stop.set()
            demo.join(30)
    assert watched < 6, lines[:3]  # 1 s of watching, not a 10 s stall
    assert lines[0].startswith(f"connected to {broker.url}"), lines[:3]
    assert any(line.startswith("[demo] online") for line in lines), lines[:5]
    assert any(" count " in line for line in lines), lines[:5]


def test_monitor_says_when_the_broker_goes_away_and_when_it_is_back(mosquitto, monkeypatch):
    """A watch that went quiet because the broker is gone must not look like a quiet site:
    one line when the connection is lost, one when the subscriptions are granted again, and
    messages published after that arrive. The clock set an hour forward meanwhile (a user
    check: "3607 s after the loss" for 7 s) leaves the outage's length alone."""
    clock = SetClock(monkeypatch)
    with watching(mosquitto.url) as lines:
        mosquitto.stop()
        wait_for_line(lines, "; reconnecting")
        clock.by = 3600.0
        mosquitto.start()
        wait_for_line(lines, f"reconnected to {mosquitto.url}", timeout=15)
        publish.single("edge/dev1/gate/circle/count", "3", qos=1, hostname="127.0.0.1",
                       port=mosquitto.port)
        wait_for_line(lines, "dev1")
    assert [line.split(" ")[0] for line in lines[:3]] == ["connected", "connection",
                                                          "reconnected"], lines
    assert re.match(rf"connection to {mosquitto.url} lost at \d\d:\d\d:\d\d \(", lines[1]) \
        and "connection lost" not in lines[1], lines  # when, with why, said once
    back = re.match(rf"reconnected to {mosquitto.url} at \d\d:\d\d:\d\d, (\d+) s after the "
                    "loss$", lines[2])
    assert back is not None and int(back.group(1)) < 60, lines
    assert "Unspecified error" not in lines[1], lines  # paho's words for a closed socket


@pytest.mark.slow
def test_a_watch_tries_the_broker_again_at_most_every_reconnect_max_s(mosquitto, monkeypatch):
    """paho doubles its wait between attempts up to the subscriber's maximum; at 30 s a
    broker back after a restart of a minute was seen up to 30 s late. Here the maximum is 2 s
    and the broker is away 10 s: the attempts (at 1, 3, 5, 7, 9, 11 s) find it within 3 s of
    its return, where doubling alone (1, 3, 7, 15 s) would wait 5."""
    from edge.mqtt import subscriber

    monkeypatch.setattr(subscriber, "RECONNECT_MAX_S", 2)
    with watching(mosquitto.url) as lines:
        mosquitto.stop()
        wait_for_line(lines, "; reconnecting")
        time.sleep(10)
        mosquitto.start()
        back = time.monotonic()
        wait_for_line(lines, f"reconnected to {mosquitto.url}", timeout=10)
        seen_after = time.monotonic() - back
    assert seen_after < 3.0, (seen_after, lines)


def test_reconnected_is_said_before_what_the_new_connection_brings(mosquitto, monkeypatch):
    """The watch looked at the connection every 0.5 s, so messages of the new connection were
    printed before "reconnected"; and an outage shorter than that went unsaid. Here the watch
    never polls: the first message of the new connection says both lines first."""
    monkeypatch.setattr(monitor_module, "CONNECTION_POLL_S", 3600.0)
    with watching(mosquitto.url) as lines:
        mosquitto.stop()
        mosquitto.start()
        deadline = time.monotonic() + 20
        while not any("dev1" in line for line in lines):
            assert time.monotonic() < deadline, lines
            publish.single("edge/dev1/gate/circle/count", "3", qos=1, hostname="127.0.0.1",
                           port=mosquitto.port)
            time.sleep(0.2)
    assert [line.split(" ")[0] for line in lines[:4]] == ["connected", "connection",
                                                          "reconnected", "[dev1]"], lines


@contextlib.contextmanager
def watching(url: str) -> Iterator[list[str]]:
    """`run_monitor` (events mode) on a thread for the block; its lines, "connected" first."""
    lines: list[str] = []
    stop = threading.Event()
    watch = threading.Thread(target=run_monitor, args=(url, "edge/+", None, None),
                             kwargs={"echo": lines.append, "stop": stop, "events": True})
    watch.start()
    try:
        wait_for_line(lines, "connected to")
        yield lines
    finally:
        stop.set()
        watch.join(10)


def wait_for_line(lines: list[str], text: str, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not any(text in line for line in lines):
        assert time.monotonic() < deadline, f"no line with {text!r} in {lines}"
        time.sleep(0.05)


def test_monitor_exits_0_on_sigterm(mosquitto):
    process = subprocess.Popen([sys.executable, "-m", "edge", "monitor", "--mqtt",
                                mosquitto.url, "--json"], stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True)
    try:
        assert process.stdout is not None
        first = process.stdout.readline()
        assert first.startswith(f"connected to {mosquitto.url}")
        os.kill(process.pid, signal.SIGTERM)
        out, err = process.communicate(timeout=20)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 0, err
    assert json.loads(out.strip().splitlines()[-1])["malformed"] == 0


def test_a_monitor_whose_reader_goes_away_ends_quietly_with_141(mosquitto):
    """`edge monitor | head -2`: once the pipe's reader is gone, every print raised
    BrokenPipeError on paho's thread, one logged traceback per message, and the watch went on
    forever."""
    process = subprocess.Popen([sys.executable, "-m", "edge", "monitor", "--mqtt",
                                mosquitto.url, "--events"],  # which prints counts
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        assert process.stdout is not None and process.stderr is not None
        assert process.stdout.readline().startswith(b"connected to")
        process.stdout.close()  # as `head` does once it has its lines
        deadline = time.monotonic() + 20
        while process.poll() is None and time.monotonic() < deadline:
            publish.single("edge/dev1/gate/circle/count", "3", qos=1, hostname="127.0.0.1",
                           port=mosquitto.port)
            time.sleep(0.2)
        if process.poll() is None:
            process.kill()
        stderr = process.stderr.read().decode()
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 141, stderr  # 128 + SIGPIPE, as a shell reports `yes | head`
    assert "Traceback" not in stderr and "BrokenPipeError" not in stderr, stderr


@pytest.mark.parametrize("url, message", [
    ("mqtt://127.0.0.1:9", "could not reach the MQTT broker at mqtt://127.0.0.1:9"),
    ("mqtts://127.0.0.1", "could not reach the MQTT broker"),  # 8883: nothing listens there
    ("http://broker", "broker URL 'http://broker': expected mqtt://host[:port] or "
                      "mqtts://host[:port]"),
    # a user check: port 0 was tried, and refused, as if a broker could listen there
    ("mqtt://127.0.0.1:0", "bad port in the broker URL; expected mqtt://host[:port] or "
                           "mqtts://host[:port] with a port from 1 to 65535"),
])
def test_monitor_with_a_bad_or_unreachable_broker_exits_2(url, message):
    result = subprocess.run([sys.executable, "-m", "edge", "monitor", "--mqtt", url,
                             "--seconds", "1"], capture_output=True, text=True, timeout=60)
    assert result.returncode == 2 and message in result.stderr
    assert "Traceback" not in result.stderr


def test_a_broker_url_without_its_scheme_is_told_so_beside_tls_files():
    """A user check: `--mqtt localhost:32811 --ca-file ca.pem` was told the TLS files need an
    mqtts:// URL, as if the URL had a scheme; without --ca-file it was told the scheme."""
    result = subprocess.run([sys.executable, "-m", "edge", "monitor", "--mqtt", "127.0.0.1:9",
                             "--ca-file", __file__, "--seconds", "1"],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert ("broker URL '127.0.0.1:9': expected mqtt://host[:port] or mqtts://host[:port]"
            in result.stderr), result.stderr


def test_monitor_with_a_prefix_a_level_off_exits_2_with_the_fix(mosquitto):
    """`--prefix edge` printed "watching edge" and then only warnings that read a device's
    status as a camera's."""
    status = {"v": 1, "state": "online", "version": "0.1", "model": "det", "cameras": ["gate"],
              "started_at": "2026-12-03T08:00:00Z"}
    publish.single("edge/gate-01/status", json.dumps(status), qos=1, retain=True,
                   hostname="127.0.0.1", port=mosquitto.port)
    try:
        result = subprocess.run([sys.executable, "-m", "edge", "monitor", "--mqtt",
                                 mosquitto.url, "--prefix", "edge", "--seconds", "10"],
                                capture_output=True, text=True, timeout=60)
    finally:
        publish.single("edge/gate-01/status", b"", qos=1, retain=True, hostname="127.0.0.1",
                       port=mosquitto.port)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert ("--prefix edge: edge/gate-01/status is device gate-01's status message: the prefix "
            "'edge' stops before the device level; use edge/+ for every device or edge/gate-01 "
            "for this one") in result.stderr
    assert "skipping a message" not in result.stderr
    assert result.stderr.count("stops before the device level") == 1, result.stderr


def test_a_status_names_the_cameras_that_are_not_streaming():
    status = DeviceStatus(v=1, state="degraded", version="0.1", model="det",
                          cameras=["gate", "yard"], started_at="2026-12-01T03:00:00Z",
                          backend="onnxruntime",
                          camera_states={"gate": "streaming", "yard": "reconnecting"})
    assert format_status("pi", status) == (
        "[pi] degraded (yard reconnecting): model det on onnxruntime, cameras gate, yard, "
        "since 2026-12-01T03:00:00Z")
    online = status.model_copy(update={"state": "online",
                                       "camera_states": {"gate": "streaming", "yard": "streaming"}})
    assert format_status("pi", online).startswith("[pi] online: model det")
    # a user check: nothing a watcher saw said whether INT8 ran
    int8 = online.model_copy(update={"precision": "int8", "backend": "tensorrt"})
    assert format_status("pi", int8).startswith("[pi] online: model det (int8) on tensorrt, ")
    # a user check: a retained status was the one line from before the watch not marked so
    assert format_status("pi", online, retained=True).endswith(
        "since 2026-12-01T03:00:00Z (retained)")
    # a user check: a stop read "since" the start
    stopped = online.model_copy(update={"state": "stopped", "time": "2026-12-01T05:00:00Z"})
    assert format_status("pi", stopped).endswith(
        "cameras gate, yard, at 2026-12-01T05:00:00Z, up since 2026-12-01T03:00:00Z")
    offline = online.model_copy(update={"state": "offline", "time": "2026-12-01T03:00:01Z"})
    assert format_status("pi", offline).endswith(", started at 2026-12-01T03:00:00Z")
    # a user check: a retained Last Will read "up since" its start
    assert format_status("pi", offline, retained=True).endswith(
        ", started at 2026-12-01T03:00:00Z, gone at a time its Last Will does not carry "
        "(retained)")
    starting = online.model_copy(update={"camera_states": {"gate": "streaming",
                                                           "yard": "starting"}})
    assert format_status("pi", starting).startswith("[pi] online (yard starting): model det")
    stopped = status.model_copy(update={"state": "stopped"})
    assert format_status("pi", stopped).startswith("[pi] stopped: model det")
    failed = status.model_copy(update={"state": "failed",
                                       "error": "inference failed: CUDA error 700"})
    assert format_status("pi", failed).startswith(
        "[pi] failed (inference failed: CUDA error 700): model det")


def test_a_drift_state_is_a_line_naming_what_drifted_in_an_alert():
    """The monitor showed no drift at all: an alert reached the operator only as a count in
    its --json summary."""
    from edge.client import Drift, parse_message

    ok = Drift(v=1, camera="gate", state="ok", window_s=300, metric="psi", threshold=0.25,
               frames=4500, scores={"all_classes": 0.03}, input={"brightness": 0.01},
               drifted=[], ts=1796094000.0, time="2026-12-01T03:00:00Z")
    assert format_drift("pi", ok) == "[pi] gate drift ok"
    alert = ok.model_copy(update={"state": "alert", "input": {"brightness": 10.5, "contrast": 11},
                                  "drifted": ["input.brightness", "input.contrast"]})
    assert format_drift("pi", alert) == ("[pi] gate drift alert: input.brightness 10.50, "
                                         "input.contrast 11.00 (PSI over 300 s, threshold 0.25)")
    message = parse_message("edge/+", "edge/pi/gate/drift", alert.model_dump_json().encode())
    assert format_line(message, events=False) == format_line(message, events=True) == \
        format_drift("pi", alert)
    # a user check: a drift state the broker kept from before the watch was not marked so
    kept = parse_message("edge/+", "edge/pi/gate/drift", ok.model_dump_json().encode(), True)
    assert format_line(kept, events=False) == \
        "[pi] gate drift ok (retained, as of 2026-12-01T03:00:00Z)"


def test_a_stats_line_says_which_cameras_have_no_frames_yet():
    stats = DeviceStats(v=1, ts=1796094000.0, time="2026-12-01T03:00:00Z", uptime_s=0.5, cameras={
        "gate": {"frames": 0, "fps": 0.0, "dropped": 0},
        "yard": {"frames": 40, "fps": 9.8, "dropped": 1,
                 "latency_ms": {"infer": {"p50": 4.2, "p90": 5.0}}}},
        mqtt={"outbox_depth": 0}, memory_rss_mb=210.0)
    assert format_stats("pi", stats) == (
        "[pi] stats: gate no frames yet; yard 9.8 fps, infer p50 4.2 ms, dropped 1; "
        "outbox 0, memory 210.0 MB, up 0.5 s")
    # kept by the broker from before the watch (maybe from the device's previous run, shown
    # right after its new status as if live): it says when it was sent
    assert format_stats("pi", stats, retained=True).endswith(
        "up 0.5 s (retained, as of 2026-12-01T03:00:00Z)")
    # an outbox that dropped messages says so, and how many were events
    dropped = stats.model_copy(update={"mqtt": {"outbox_depth": 50, "dropped": 938,
                                                "events_dropped": 8}})
    assert "; outbox 50, 938 messages dropped (8 events), memory" in format_stats("pi", dropped)
    # a camera the device cannot keep up with says so (a user check: 80% of the frames
    # dropped, and the line gave only the numbers)
    behind = DeviceStats(v=1, ts=1796094000.0, time="2026-12-01T03:00:00Z", uptime_s=65.0,
                         cameras={"c1": {"frames": 419, "fps": 7.0, "dropped": 1676,
                                         "keeping_up": False,
                                         "latency_ms": {"infer": {"p50": 6.04}}},
                                  "c2": {"frames": 900, "fps": 15.0, "dropped": 0,
                                         "keeping_up": True}},
                         mqtt={"outbox_depth": 0}, memory_rss_mb=560.0)
    assert format_stats("pi", behind).startswith(
        "[pi] stats: c1 7.0 fps (not keeping up), infer p50 6.04 ms, dropped 1676; c2 15.0 fps, "
        "no inference timed yet, dropped 0; ")
    # detections [objects] and masks dropped are counted where some were
    filtering = behind.model_copy(update={"cameras": {"c1": behind.cameras["c2"].model_copy(
        update={"filtered": 613})}})
    assert "c1 15.0 fps, no inference timed yet, dropped 0, 613 detections filtered; " in \
        format_stats("pi", filtering)


def test_retained_camera_states_and_counts_say_so():
    """A user check: after a `kill -9` only the device status turns offline (its Last Will);
    the retained `streaming` and counts then read as live right after it."""
    from edge.client import parse_message

    status = json.dumps({"state": "streaming", "since": "2026-12-01T03:00:00Z"}).encode()
    assert format_line(parse_message("edge/+", "edge/pi/gate/status", status, True),
                       False) == ("[pi] gate camera streaming (retained, since "
                                  "2026-12-01T03:00:00Z)")
    assert format_line(parse_message("edge/+", "edge/pi/gate/status", status), False) == \
        "[pi] gate camera streaming"
    assert format_line(parse_message("edge/+", "edge/pi/gate/door/circle/count", b"2", True),
                       True) == "[pi] gate door/circle count 2 (retained)"


def test_a_retained_topic_published_again_unchanged_is_shown_once(mosquitto):
    """A daemon republishes its cameras' retained statuses on every (re)connect, and amqtt
    delivers a new subscriber's retained counts twice; the watch shows a retained topic's line
    again only when it changed."""
    with watching(mosquitto.url) as lines:
        for state in ("starting", "streaming", "streaming", "reconnecting", "streaming"):
            publish.single("edge/pi/gate/status", json.dumps({"state": state}), qos=1,
                           hostname="127.0.0.1", port=mosquitto.port)
        for count in (0, 1, 1, 2, 0):  # a zero is news once the label was seen
            publish.single("edge/pi/gate/circle/count", str(count), qos=1,
                           hostname="127.0.0.1", port=mosquitto.port)
        for label in ("star", "triangle"):  # labels never seen: their zeros are not shown
            publish.single(f"edge/pi/gate/{label}/count", "0", qos=1, retain=True,
                           hostname="127.0.0.1", port=mosquitto.port)
        publish.single("edge/pi/yard/status", json.dumps({"state": "streaming"}), qos=1,
                       hostname="127.0.0.1", port=mosquitto.port)
        wait_for_line(lines, "yard camera streaming")
    assert [line for line in lines if " camera " in line or " count " in line] == [
        "[pi] gate camera starting", "[pi] gate camera streaming", "[pi] gate camera reconnecting",
        "[pi] gate camera streaming", "[pi] gate circle count 1", "[pi] gate circle count 2",
        "[pi] gate circle count 0", "[pi] yard camera streaming"]


def test_a_retained_value_shown_live_is_not_shown_again_after_a_reconnect():
    """A user check: the monitor saw a device's Last Will live as the broker stopped; after
    the reconnect the broker handed it over again, retained, and the monitor printed it a
    second time as "gone since before this watch", 25 s after showing it go. One that went
    while the watch was away is shown, without claiming when it went."""
    from edge.client import parse_message
    from edge.monitor import _Console

    lines: list[str] = []
    console = _Console(lines.append, events=False, saver=None)
    console.connected("connected")
    will = json.dumps({"v": 1, "state": "offline", "version": "0.1", "model": "det",
                       "cameras": ["gate"], "started_at": "2026-12-01T03:00:00Z",
                       "backend": "onnxruntime"}).encode()
    console.message(parse_message("edge/+", "edge/pi/status", will))
    console.message(parse_message("edge/+", "edge/pi/status", will, retained=True))
    assert lines == ["connected", "[pi] offline: model det on onnxruntime, cameras gate, "
                                  "started at 2026-12-01T03:00:00Z"]
    online = will.replace(b'"offline"', b'"online"')
    console.message(parse_message("edge/+", "edge/pi/status", online))
    console.message(parse_message("edge/+", "edge/pi/status", will, retained=True))
    assert lines[2:] == [
        "[pi] online: model det on onnxruntime, cameras gate, since 2026-12-01T03:00:00Z",
        "[pi] offline: model det on onnxruntime, cameras gate, started at "
        "2026-12-01T03:00:00Z, gone at a time its Last Will does not carry (retained)"]


def _sampled_frame(frame_id: int, objects: int, topic: str = "edge/pi/gate",
                   run_began: float = 1.0, jpeg: bytes = b"\xff\xd8jpeg\xff\xd9") -> list:
    """A sampled frame as the device sends it: the JPEG, then its meta (with `predictions`)."""
    from edge.client import parse_message

    predictions = [{"label": "person", "class_id": 0, "score": 0.9, "box": [1, 2, 30, 40]}]
    meta = {"v": 1, "camera": "gate", "frame_id": frame_id, "ts": run_began + frame_id,
            "time": rfc3339(run_began + frame_id), "width": 64, "height": 48, "detections": objects,
            "detections_drawn": False, "predictions": predictions[:objects]}
    return [parse_message("edge/+", f"{topic}/frame", jpeg),
            parse_message("edge/+", f"{topic}/frame/meta", json.dumps(meta).encode())]


def _detections(frame_id: int, objects: int, run_began: float = 1.0,
                track_id: int = 7) -> object:
    from edge.client import parse_message

    message = {"v": 1, "ts": run_began + frame_id, "time": rfc3339(run_began + frame_id),
               "frame_id": frame_id, "camera": "gate", "model": "det", "width": 64,
               "height": 48, "latency_ms": {"total": 5.0},
               "detections": [{"label": "person", "class_id": 0, "score": 0.9,
                               "box": [1, 2, 30, 40], "track_id": track_id}][:objects]}
    return parse_message("edge/+", "edge/pi/gate/detections", json.dumps(message).encode())


def _sidecar(tmp_path, frame_id: int | str) -> dict:
    return json.loads((tmp_path / "frames" / "pi" / "gate" / f"{frame_id}.json").read_text())


def test_a_restarted_devices_frames_neither_overwrite_nor_borrow_the_earlier_runs(tmp_path):
    """Frame ids start at 1 with each run of the device: its second run's frame 1 is saved
    beside the first run's (named with its capture time), with its own detections, though the
    first run's frame 1 detections are still remembered and its meta comes before them."""
    saver = monitor_module.FrameSaver(tmp_path / "frames")
    saver(_detections(1, objects=1, run_began=1000.0, track_id=7))
    for message in _sampled_frame(1, objects=1, run_began=1000.0, jpeg=b"\xff\xd8first"):
        saver(message)
    for message in _sampled_frame(1, objects=1, run_began=2000.0, jpeg=b"\xff\xd8second"):
        saver(message)
    assert saver.saved == 1  # the second run's frame 1 waits for its own detections
    saver(_detections(1, objects=1, run_began=2000.0, track_id=3))
    assert saver.saved == 2
    folder = tmp_path / "frames" / "pi" / "gate"
    assert sorted(p.name for p in folder.glob("*.jpg")) == ["1.jpg", "1_2001000.jpg"]
    assert (folder / "1.jpg").read_bytes() == b"\xff\xd8first"
    assert (folder / "1_2001000.jpg").read_bytes() == b"\xff\xd8second"
    assert _sidecar(tmp_path, 1)["detections"][0]["track_id"] == 7
    assert _sidecar(tmp_path, "1_2001000")["detections"][0]["track_id"] == 3


def test_a_saved_frame_never_overwrites_a_file_of_either_kind(tmp_path):
    """A user check: a `<frame_id>.json` left without its `.jpg` was overwritten, as the
    check looked at the `.jpg` alone; a capture-time name taken too gets a number."""
    folder = tmp_path / "frames" / "pi" / "gate"
    folder.mkdir(parents=True)
    (folder / "1.json").write_text('{"old": 1}')
    (folder / "1_2001000.jpg").write_bytes(b"older")
    saver = monitor_module.FrameSaver(tmp_path / "frames")
    for message in _sampled_frame(1, objects=0, run_began=2000.0, jpeg=b"\xff\xd8new"):
        saver(message)
    assert saver.saved == 1
    assert (folder / "1.json").read_text() == '{"old": 1}'
    assert (folder / "1_2001000.jpg").read_bytes() == b"older"
    assert (folder / "1_2001000_2.jpg").read_bytes() == b"\xff\xd8new"
    assert _sidecar(tmp_path, "1_2001000_2")["frame_id"] == 1


def test_a_frame_that_arrives_before_its_detections_waits_for_them(tmp_path):
    """The device queues detections and sends sampled frames at once, so a frame can come
    first (CI saw it): its sidecar still holds the detections message's objects, track ids
    included, not None."""
    saver = monitor_module.FrameSaver(tmp_path / "frames")
    for message in _sampled_frame(5, objects=1):
        saver(message)
    assert saver.saved == 0  # waiting for frame 5's detections
    saver(_detections(5, objects=1))
    assert saver.saved == 1
    assert _sidecar(tmp_path, 5)["detections"] == [
        {"label": "person", "class_id": 0, "score": 0.9, "box": [1.0, 2.0, 30.0, 40.0],
         "track_id": 7}]


def test_a_frame_whose_detections_never_come_is_saved_with_the_metas_predictions(tmp_path):
    """Its detections message lost (a later frame's came, the watch ended, or time passed):
    the sidecar holds the meta's own `predictions`, never None."""
    saver = monitor_module.FrameSaver(tmp_path / "frames")
    for message in _sampled_frame(5, objects=1):
        saver(message)
    saver(_detections(6, objects=0))  # a later frame's: frame 5's is not coming
    for message in _sampled_frame(9, objects=1):
        saver(message)
    assert saver.saved == 1
    saver.flush()  # the watch ends
    assert saver.saved == 2
    for frame_id in (5, 9):
        assert _sidecar(tmp_path, frame_id)["detections"] == [
            {"label": "person", "class_id": 0, "score": 0.9, "box": [1.0, 2.0, 30.0, 40.0]}]


def test_a_frame_waits_for_its_detections_at_most_pending_max_s(tmp_path, monkeypatch):
    monkeypatch.setattr(monitor_module, "PENDING_MAX_S", 0.0)
    saver = monitor_module.FrameSaver(tmp_path / "frames")
    for message in _sampled_frame(5, objects=1):
        saver(message)
    time.sleep(0.01)
    saver(_detections(4, objects=0))  # any message looks at the waiting frames
    assert saver.saved == 1 and _sidecar(tmp_path, 5)["detections"][0]["label"] == "person"


def test_a_frame_without_objects_is_written_at_once(tmp_path):
    saver = monitor_module.FrameSaver(tmp_path / "frames")
    for message in _sampled_frame(3, objects=0):
        saver(message)
    assert saver.saved == 1 and _sidecar(tmp_path, 3)["detections"] == []


def test_a_camera_that_comes_back_says_how_long_it_was_down():
    """A user check: after an outage the line read only "camera streaming"."""
    from edge.client import parse_message

    lines: list[str] = []
    console = monitor_module._Console(lines.append, events=False, saver=None)
    console.connected("connected")

    def status(state: str, since_ts: float, retained: bool = False, camera: str = "gate"
               ) -> None:
        payload = {"camera": camera, "state": state, "reason": "" if state == "streaming"
                   else "the stream ended", "since_ts": since_ts, "attempts": 0}
        console.message(parse_message("edge/+", f"edge/d1/{camera}/status",
                                      json.dumps(payload).encode(), retained))

    status("streaming", 100.0, retained=True)
    status("reconnecting", 200.0)
    status("reconnecting", 204.0)  # another cause: still the same outage
    status("streaming", 247.4)
    status("streaming", 300.0)  # a status seen twice is shown once; no outage to speak of
    status("failed", 400.0)
    status("ended", 401.0)
    # a user check: a camera down from its daemon's start read "back after 24 s down"
    status("reconnecting", 500.0, camera="yard")
    status("streaming", 524.0, camera="yard")
    assert lines == ["connected",
                     "[d1] gate camera streaming (retained, since ?)",
                     "[d1] gate camera reconnecting: the stream ended",
                     "[d1] gate camera streaming (back after 47 s down)",
                     "[d1] gate camera failed: the stream ended",
                     "[d1] gate camera ended: the stream ended",
                     "[d1] yard camera reconnecting: the stream ended",
                     "[d1] yard camera streaming (up after 24 s down)"]


def test_a_watch_that_receives_nothing_says_what_that_usually_means(mosquitto, monkeypatch):
    """A user check: `--prefix edge/<device>/<camera>` (a level too deep) matches none of the
    daemon's topics, and the watch showed nothing, without a word, for as long as it ran."""
    monkeypatch.setattr(monitor_module, "SILENCE_HINT_S", 1.0)

    def watched(prefix: str) -> list[str]:
        """The lines of a 3 s watch of `prefix`, less the first (connected)."""
        lines: list[str] = []
        watch = threading.Thread(target=run_monitor, args=(mosquitto.url, prefix, 3.0, None),
                                 kwargs={"echo": lines.append, "stop": threading.Event()})
        watch.start()
        watch.join(15)
        return lines[1:]

    lines = watched("edge/d1/gate")
    assert lines == ["nothing under edge/d1/gate after 1 s: a daemon leaves its status "
                     "retained there, so a prefix that names a device that ran shows it "
                     "at once; check --prefix (edge/<device_id>, edge/+ for every device, "
                     "or the daemon's mqtt.prefix); edge/d1/gate has 3 levels, a "
                     "daemon's default prefix 2, and that the device has reached this "
                     "broker (its mqtt.url; the daemon's log says why it does "
                     "not)"], lines
    # every device under a level already: the prefix is not what to check first (a user
    # check: watching edge/+, the advice offered edge/+)
    lines = watched("nosite/+")
    assert lines == ["nothing under nosite/+ after 1 s: no device has left its status "
                     "under it on this broker, so none has reached it (their mqtt.url; "
                     "the daemon's log says why it does not), or the devices' "
                     "mqtt.prefix differs from nosite/<device_id>"], lines


def test_a_watch_of_a_device_id_off_by_a_letter_names_the_devices_there(mosquitto,
                                                                          monkeypatch):
    """A user check: `--prefix edge/u160deV` (the device is u160dev) was told only to check
    --prefix, where `edge collect` with the same typo named the device that is there."""
    monkeypatch.setattr(monitor_module, "SILENCE_HINT_S", 1.0)
    status = {"v": 1, "state": "stopped", "version": "0.1", "model": "det",
              "cameras": ["gate"], "started_at": "2026-12-03T08:00:00Z"}
    for device in ("gate-01", "yard"):
        publish.single(f"edge/{device}/status", json.dumps(status), qos=1, retain=True,
                       hostname="127.0.0.1", port=mosquitto.port)
    lines: list[str] = []
    try:
        run_monitor(mosquitto.url, "edge/gate-0l", 3.0, None, echo=lines.append)
    finally:
        for device in ("gate-01", "yard"):
            publish.single(f"edge/{device}/status", b"", qos=1, retain=True,
                           hostname="127.0.0.1", port=mosquitto.port)
    assert lines[1:] == ["nothing under edge/gate-0l after 1 s and no device's status is "
                         "there; the devices under edge/+ are gate-01 (stopped), yard "
                         "(stopped): --prefix edge/<device> for one of them, edge/+ for every "
                         "one"], lines


def test_a_watch_that_receives_something_says_nothing_of_silence(mosquitto, monkeypatch):
    monkeypatch.setattr(monitor_module, "SILENCE_HINT_S", 1.0)
    publish.single("edge/d1/gate/circle/count", "2", qos=1, retain=True, hostname="127.0.0.1",
                   port=mosquitto.port)
    lines: list[str] = []
    try:
        run_monitor(mosquitto.url, "edge/d1", 2.5, None, echo=lines.append, events=True)
    finally:
        publish.single("edge/d1/gate/circle/count", "", qos=1, retain=True,
                       hostname="127.0.0.1", port=mosquitto.port)
    assert len(lines) == 2 and "circle count 2" in lines[1], lines


def test_a_count_the_device_clears_is_said_while_snapshots_cleared_are_not(mosquitto):
    """A user check: a zone renamed away had its retained count cleared by the daemon, and the
    watch said nothing, so `door/star count 3` stayed its last word on it. An old event's
    snapshot, cleared as a matter of course, is no news."""
    def send(topic: str, payload: str) -> None:
        publish.single(topic, payload, qos=1, retain=True, hostname="127.0.0.1",
                       port=mosquitto.port)

    lines: list[str] = []
    stop = threading.Event()
    watch = threading.Thread(target=run_monitor, args=(mosquitto.url, "edge/+", None, None),
                             kwargs={"echo": lines.append, "stop": stop, "events": True})
    watch.start()
    try:
        deadline = time.monotonic() + 10
        while not lines and time.monotonic() < deadline:
            time.sleep(0.05)
        send("edge/d1/gate/door/star/count", "3")
        send("edge/d1/gate/events/1-7/snapshot", "\xff\xd8")
        time.sleep(0.5)
        send("edge/d1/gate/door/star/count", "")
        send("edge/d1/gate/events/1-7/snapshot", "")
        deadline = time.monotonic() + 5
        while not any("cleared" in line for line in lines) and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(0.3)
    finally:
        stop.set()
        watch.join(15)
    assert lines[1:] == ["[d1] gate door/star count 3",
                         "[d1] gate/door/star/count cleared (the device no longer publishes "
                         "it)"], lines


def test_metas_that_keep_coming_without_their_jpeg_are_said_once(tmp_path, caplog):
    """A user check: with a broker dropping the JPEGs (its message_size_limit), `edge monitor
    --frames` saved nothing in 78 s and said nothing, while the metas kept coming."""
    saver = monitor_module.FrameSaver(tmp_path / "frames")
    with caplog.at_level("WARNING", logger="edge"):
        for frame_id in range(1, 3):  # two alone: not yet said
            saver(_sampled_frame(frame_id, objects=0)[1])
        saver(_sampled_frame(3, objects=0)[0])  # a JPEG comes: the count starts again
        saver(_sampled_frame(3, objects=0)[1])
        for frame_id in range(4, 6):
            saver(_sampled_frame(frame_id, objects=0)[1])
        assert not caplog.records
        for frame_id in range(6, 10):
            saver(_sampled_frame(frame_id, objects=0)[1])
    said = [r.getMessage() for r in caplog.records]
    assert said == [
        "edge monitor --frames: 3 frame/meta messages of pi/gate in a row came without their "
        "JPEG (edge/pi/gate/frame): the JPEGs do not reach the broker or are dropped there, "
        "for their size most often (a broker's message_size_limit, or a max_packet_size for "
        "which the device holds them back; the device's log says which), or the broker's ACL "
        "lets this user read frame/meta but not the frames (allow reading edge/pi/gate/frame)"]
    assert saver.saved == 1 and saver.missing.missing == 8

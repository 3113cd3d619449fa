"""sd_notify over a real datagram socket: the protocol alone, the heartbeat's rules, and a real
`edge run` that says READY=1, STATUS= and WATCHDOG=1."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator

import pytest

from edge.heartbeat import Heartbeat, summary_line
from edge.sdnotify import Notifier, notifier_from_environ
from tests.stuck_runner import StuckRunner


@pytest.fixture
def notify_socket() -> Iterator[tuple[socket.socket, str]]:
    folder = tempfile.mkdtemp(prefix="sd", dir="/tmp")  # AF_UNIX paths must stay short
    path = os.path.join(folder, "notify")
    server = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    server.bind(path)
    server.settimeout(0.2)
    yield server, path
    server.close()
    os.unlink(path)
    os.rmdir(folder)


def received(server: socket.socket, seconds: float) -> list[str]:
    messages, deadline = [], time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            messages.append(server.recv(4096).decode())
        except TimeoutError:
            continue
    return messages


def test_no_socket_is_a_no_op():
    notifier = notifier_from_environ({})
    assert not notifier.enabled and notifier.watchdog_s is None
    assert notifier.notify("READY=1") is False


def test_watchdog_settings_follow_sd_watchdog_enabled(notify_socket):
    _, path = notify_socket
    mine = notifier_from_environ({"NOTIFY_SOCKET": path, "WATCHDOG_USEC": "3000000",
                                  "WATCHDOG_PID": str(os.getpid())})
    assert mine.watchdog_s == 3.0
    other = notifier_from_environ({"NOTIFY_SOCKET": path, "WATCHDOG_USEC": "3000000",
                                   "WATCHDOG_PID": "1"})
    assert other.watchdog_s is None
    assert notifier_from_environ({"NOTIFY_SOCKET": "relative"}).enabled is False
    mine.close()
    other.close()


def test_messages_arrive_and_abstract_names_work():
    name = f"@edge-test-{os.getpid()}"
    server = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    server.bind("\0" + name[1:])
    server.settimeout(2)
    notifier = Notifier(name, None)
    assert notifier.notify("READY=1", "STATUS=two\nlines")
    assert server.recv(4096) == b"READY=1\nSTATUS=two lines"
    notifier.close()
    server.close()


def test_a_vanished_socket_is_logged_once_and_not_raised(tmp_path, caplog):
    notifier = Notifier(str(tmp_path / "gone"), None)
    assert notifier.notify("WATCHDOG=1") is False
    assert notifier.notify("WATCHDOG=1") is False
    assert len([r for r in caplog.records if "cannot notify systemd" in r.getMessage()]) == 1


def test_watchdog_pings_only_while_alive(notify_socket, caplog):
    server, path = notify_socket
    now = [0.0]
    heartbeat = Heartbeat(Notifier(path, watchdog_s=3.0), summary_interval_s=60,
                          clock=lambda: now[0])
    stats = {"cameras": {"gate": {"fps": 9.96, "state": "streaming"}},
             "mqtt": {"state": "connected", "queued": 2, "published": 10, "dropped": 0}}
    heartbeat.ready(summary_line(stats))
    for step in range(6):  # 3 s alive: a ping every second (a third of the timeout)
        now[0] = step * 0.5
        heartbeat.tick(True, lambda: stats)
    for step in range(6, 12):  # then a loop dies: no more pings
        now[0] = step * 0.5
        heartbeat.tick(False, lambda: stats)
    messages = received(server, 0.5)
    assert messages[0] == ("READY=1\nSTATUS=gate 10.0 fps streaming | mqtt connected | "
                           "outbox 2 queued, 10 published, 0 dropped")
    assert messages.count("WATCHDOG=1") == 3
    assert "no more watchdog pings, systemd will restart" in caplog.text


def test_summary_line_of_several_cameras():
    stats = {"cameras": {"gate": {"fps": 15.0, "state": "streaming"},
                         "door": {"fps": 0.0, "state": "reconnecting"}},
             "mqtt": {"connected": False, "queued": 40, "published": 3, "dropped": 1}}
    assert summary_line(stats) == ("gate 15.0 fps streaming, door 0.0 fps reconnecting | mqtt "
                                   "disconnected | outbox 40 queued, 3 published, 1 dropped")
    # at start a camera's first frames say nothing of its rate
    assert summary_line(stats, rates=False) == (
        "gate streaming, door reconnecting | mqtt disconnected | outbox 40 queued, 3 published, "
        "1 dropped")
    stats["mqtt"] |= {"dropped": 900, "events_dropped": 2}  # the outbox held only events
    assert summary_line(stats).endswith("900 dropped (2 events)")


@pytest.mark.slow
def test_edge_run_notifies_ready_status_and_watchdog(tmp_path, notify_socket, mosquitto,
                                                     demo_model):
    server, path = notify_socket
    config = tmp_path / "edge.toml"
    config.write_text(f"""
device_id = "notify"
[model]
path = "{demo_model}"
threads = 1
[[cameras]]
name = "gate"
source = "synthetic://shapes?fps=10&seed=1"
[mqtt]
url = "mqtt://127.0.0.1:{mosquitto.port}"
[log]
summary_interval_s = 1
""")
    env = {**os.environ, "NOTIFY_SOCKET": path, "WATCHDOG_USEC": "1500000"}
    daemon = subprocess.Popen([sys.executable, "-m", "edge", "run", "--config", str(config)],
                              env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        messages = []
        deadline = time.monotonic() + 60
        while not any(m.startswith("READY=1") for m in messages):
            assert time.monotonic() < deadline, "no READY=1 within 60 s"
            messages += received(server, 0.5)
        messages += received(server, 12)
    finally:
        daemon.send_signal(signal.SIGTERM)
        _, err = daemon.communicate(timeout=30)
    stopping = received(server, 0.5)
    assert daemon.returncode == 0, err.decode()
    ready = [m for m in messages if m.startswith("READY=1")]
    assert len(ready) == 1 and "STATUS=gate" in ready[0]
    # the broker answers within the ready wait: the ready line says so, after the broker's
    assert "| mqtt connected |" in ready[0], ready[0]
    lines = err.decode().splitlines()
    ready_line = next(i for i, line in enumerate(lines) if "ready: " in line)
    assert "| mqtt connected |" in lines[ready_line]
    assert any("connected to MQTT broker" in line for line in lines[:ready_line]), lines
    after_ready = messages[messages.index(ready[0]):]
    assert after_ready.count("WATCHDOG=1") >= 5, messages
    assert any(m.startswith("STATUS=gate") and "mqtt connected" in m for m in after_ready)
    assert any(m.startswith("STOPPING=1\nSTATUS=stopping: gate") for m in stopping), stopping
    summaries = [line for line in err.decode().splitlines()
                 if "fps" in line and "| mqtt" in line and "outbox" in line]
    assert len(summaries) >= 3, err.decode()


def test_a_camera_loop_stuck_in_inference_stops_the_watchdog(mosquitto, demo_model, caplog,
                                                             monkeypatch):
    """A backend call that never returns leaves every thread alive: the daemon must still see
    that its loop no longer comes round, say which camera, and stop counting as alive (under
    systemd: no more WATCHDOG=1, so the service is restarted)."""
    import edge.pipeline
    from edge.config import config_from_dict
    from edge.daemon import Daemon

    monkeypatch.setattr(edge.pipeline, "LOOP_STALL_S", 1.0)
    config = config_from_dict({"device_id": "stuck", "model": {"path": str(demo_model),
                                                               "threads": 1},
                               "cameras": [{"name": "gate",
                                            "source": "synthetic://shapes?fps=20&seed=1"}],
                               "mqtt": {"url": mosquitto.url}}, "test")
    daemon = Daemon(config)
    runner = StuckRunner(daemon)
    daemon.start()
    try:
        deadline = time.monotonic() + 20
        while daemon.workers[0].frames < 5:
            assert time.monotonic() < deadline, "no frames"
            time.sleep(0.05)
        assert daemon.alive()
        runner.hang()
        deadline = time.monotonic() + 10
        while daemon.alive():
            assert time.monotonic() < deadline, "still alive with inference stuck"
            time.sleep(0.1)
        assert daemon.service.thread.is_alive() and daemon.workers[0].stalled
        assert "camera gate: its loop has not come round" in caplog.text
    finally:
        runner.release()
        daemon.stop(1.0)
    assert not daemon.workers[0].stalled


def test_a_receiver_that_stops_reading_never_blocks_the_sender(notify_socket, caplog):
    """The datagram queue is 10 deep by default: with nobody reading, a blocking send waited
    for ever (the daemon's main loop with it), and a timed one spun a core for its timeout.
    Now a send to a full queue is dropped at once, said once."""
    _, path = notify_socket
    notifier = Notifier(path, None)
    began, cpu = time.monotonic(), time.process_time()
    sent = [notifier.notify("WATCHDOG=1") for _ in range(40)]
    assert time.monotonic() - began < 1 and time.process_time() - cpu < 1
    assert sent[0] and not sent[-1]  # the first queued, the later ones dropped
    assert caplog.text.count("cannot notify systemd") == 1
    notifier.close()

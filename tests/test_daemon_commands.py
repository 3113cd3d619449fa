"""Commands to a real `edge run`: replies stay small whatever the request."""

from __future__ import annotations

import signal
import subprocess
import sys

import pytest

from tests.mqtt_watch import Watcher


@pytest.mark.slow
def test_snapshot_replies_never_echo_the_request(tmp_path, mosquitto, demo_model):
    config = tmp_path / "edge.toml"
    config.write_text(f"""
device_id = "cmd"
[model]
path = "{demo_model}"
threads = 1
[[cameras]]
name = "gate"
source = "synthetic://shapes?fps=5&seed=1"
[mqtt]
url = "mqtt://127.0.0.1:{mosquitto.port}"
""")
    daemon = subprocess.Popen([sys.executable, "-m", "edge", "run", "--config", str(config)],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    requests = [b"x" * 10_000_000, "\u00e9\u00e9\u00e9".encode() * 1000, b"gate/../#", b"door",
                b"", b" gate \n"]
    try:
        with Watcher(mosquitto.port, "edge/cmd/#") as watcher:
            watcher.wait_for(lambda: bool(watcher.on("/status")), 30, "the daemon online")
            for number, payload in enumerate(requests, start=1):
                watcher.client.publish("edge/cmd/cmd/snapshot", payload, qos=1)
                watcher.wait_for(lambda n=number: len(watcher.on("/cmd/snapshot/reply")) >= n,
                                 15, f"reply {number}")
            replies = watcher.on("/cmd/snapshot/reply")
            for name in ("reboot", "reboot", "x" * 5000):
                watcher.client.publish(f"edge/cmd/cmd/{name}", b"", qos=1)
            watcher.wait_for(lambda: len(watcher.on("/reply")) == len(requests) + 3, 15,
                             "the unknown commands' replies")
            unknown = [r.json() for r in watcher.on("/reply") if "/snapshot/" not in r.topic]
    finally:
        daemon.send_signal(signal.SIGTERM)
        _, err = daemon.communicate(timeout=30)
    assert daemon.returncode == 0, err.decode()
    assert max(len(reply.payload) for reply in replies) < 200
    answers = [reply.json() for reply in replies]
    for answer in answers[:3]:
        assert answer == {"ok": False, "error": "expected no payload (every camera) or one "
                                                "camera name", "cameras": ["gate"]}
    assert answers[3] == {"ok": False, "error": "no camera named 'door'", "cameras": ["gate"]}
    assert answers[4] == answers[5] == {"ok": True, "cameras": ["gate"]}
    error = "no command 'reboot'; this device takes: snapshot"
    assert unknown[:2] == [{"ok": False, "error": error}] * 2
    assert unknown[2]["error"] == f"no command '{'x' * 64}...'; this device takes: snapshot"
    assert err.decode().count(error) == 1  # logged once a name

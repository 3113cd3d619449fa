from __future__ import annotations

import subprocess
import sys
import threading
import time

import pytest
from paho.mqtt import publish

from edge.monitor import run_monitor
from tests.test_daemon_mqtt import write_config


@pytest.mark.slow
def test_monitor_sees_every_kind_of_message_and_saves_frames(tmp_path, mosquitto, demo_model):
    lines: list[str] = []
    stop = threading.Event()
    result: dict = {}
    watcher = threading.Thread(target=lambda: result.update(run_monitor(
        mosquitto.url, "edge/+", None, tmp_path / "frames", lines.append, stop)))
    watcher.start()
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
    assert counts["frame"] >= 1 and result["frames_saved"] == counts["frame"]
    assert result["malformed"] == 1
    assert any(line.startswith("[test-gate] online") for line in lines)
    assert any(line.startswith("[test-gate] stopped") for line in lines)
    assert any("gate frame" in line for line in lines)
    saved = list((tmp_path / "frames" / "test-gate" / "gate").glob("*.jpg"))
    assert saved and saved[0].read_bytes()[:2] == b"\xff\xd8"


def test_monitor_with_an_unreachable_broker_exits_2():
    result = subprocess.run([sys.executable, "-m", "edge", "monitor", "--mqtt",
                             "mqtt://127.0.0.1:9", "--seconds", "1"], capture_output=True,
                            text=True, timeout=60)
    assert result.returncode == 2 and "could not reach the MQTT broker" in result.stderr

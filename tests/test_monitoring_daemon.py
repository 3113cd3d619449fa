"""Sampling limits and drift through the running daemon and a real Mosquitto (short windows)."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from calibration.drift_reference import drift_reference_from_images
from edge.config import config_from_dict
from edge.daemon import Daemon
from edge.drift import default_reference_path
from edge.errors import ModelError
from edge.mqtt.subscriber import BrokerSubscription
from edge.synthetic.scene import ShapeScene


def scene_images(seed: int, count: int, step: int):
    scene = ShapeScene(seed=seed)
    for _ in range(count):
        for _ in range(step - 1):
            scene.next_truth()
        yield scene.next()[0]


@pytest.fixture(scope="module")
def model_with_reference(tmp_path_factory, demo_model: Path) -> Path:
    model = tmp_path_factory.mktemp("model") / "shapes.onnx"
    shutil.copy(demo_model, model)
    reference = drift_reference_from_images(model, scene_images(1, 80, 15), "scene", threads=1)
    reference.save(default_reference_path(model))
    return model


def config(model: Path, url: str, source: str, **sections: object):
    return config_from_dict({"device_id": "dev1", "model": {"path": str(model), "threads": 1},
                             "cameras": [{"name": "gate", "source": source}],
                             "mqtt": {"url": url}, **sections}, "test")


class Recorder:
    def __init__(self, url: str, filters: list[str]) -> None:
        self.messages: list[tuple[str, bytes]] = []
        self._lock = threading.Lock()
        self.subscription = BrokerSubscription(url, [(f, 1) for f in filters], self._receive)

    def _receive(self, topic: str, payload: bytes, retained: bool) -> None:
        with self._lock:
            self.messages.append((topic, payload))

    def __enter__(self) -> Recorder:
        self.subscription.start()
        assert self.subscription.subscribed.wait(10)
        return self

    def __exit__(self, *exc: object) -> None:
        self.subscription.stop()

    def of(self, suffix: str) -> list[bytes]:
        with self._lock:
            return [payload for topic, payload in self.messages if topic.endswith(suffix)]


def test_limits_and_byte_budget_hold_on_the_wire(mosquitto, demo_model):
    budget = 150_000
    settings = config(demo_model, mosquitto.url, "synthetic://shapes?fps=15&seed=2",
                      frames={"interval_s": 0, "draw": True},
                      sampling={"audit_rate": 0.9, "seed": 1,
                                "limits": {"per_minute": 40, "bytes_per_hour": budget}})
    with Recorder(mosquitto.url, ["edge/dev1/+/frame/#", "edge/dev1/+/frame"]) as recorder:
        daemon = Daemon(settings)
        daemon.start()
        daemon.run(threading.Event(), duration=8.0)
    metas = [json.loads(m) for m in recorder.of("/frame/meta")]
    drawn, clean = recorder.of("/gate/frame"), recorder.of("/frame/clean")
    assert metas and len(metas) <= 40
    assert sum(map(len, drawn)) + sum(map(len, clean)) <= budget
    assert all(m["bytes"] + m["clean_bytes"] <= budget for m in metas)
    assert daemon.workers[0].frame_publisher.dropped > 0  # the budget did bite
    stats = daemon.workers[0].stats()["sampling"]  # also in <prefix>/stats
    assert stats["over_budget"] > 0 and stats["audit"]["frames"] >= stats["audit"]["drawn"] > 0
    assert all(m["reasons"] == ["audit"] and m["detections_drawn"] for m in metas)
    assert all(len(m["predictions"]) == m["detections"] for m in metas)


def test_a_night_scene_raises_a_retained_drift_alert(mosquitto, model_with_reference):
    settings = config(model_with_reference, mosquitto.url,
                      "synthetic://shapes?fps=15&seed=1&shift=dark&shift_after=60",
                      drift={"window_s": 4.5, "min_frames": 40},
                      homeassistant={"enabled": True})
    with Recorder(mosquitto.url, ["edge/dev1/+/drift", "homeassistant/+/+/+/config"]
                  ) as recorder:
        daemon = Daemon(settings)
        daemon.start()
        daemon.run(threading.Event(), duration=11.0)
    states = [json.loads(m)["state"] for m in recorder.of("/gate/drift")]
    assert states[0] == "warming_up"
    assert "alert" in states, states
    # Home Assistant gets the camera's drift as a problem sensor (see test_homeassistant)
    (entity,) = [json.loads(m) for m in recorder.of("/gate_drift/config")]
    assert entity["stat_t"] == "edge/dev1/gate/drift" and entity["dev_cla"] == "problem"
    with Recorder(mosquitto.url, ["edge/dev1/+/drift"]) as late:  # subscribed after the run
        deadline = time.monotonic() + 5
        while not late.of("/gate/drift") and time.monotonic() < deadline:
            time.sleep(0.05)
    last = json.loads(late.of("/gate/drift")[0])
    assert last["state"] == "alert" and last["input"]["brightness"] > last["threshold"]


def test_a_reference_from_another_model_is_refused(tmp_path, mosquitto, model_with_reference):
    other = tmp_path / "other.onnx"
    import onnx

    changed = onnx.load(str(model_with_reference))
    changed.doc_string = "fine-tuned again"  # another model: another sha256
    onnx.save(changed, str(other))
    shutil.copy(default_reference_path(model_with_reference), default_reference_path(other))
    with pytest.raises(ModelError, match=r"was made with model sha256 .* but .*other\.onnx") as \
            raised:
        Daemon(config(other, mosquitto.url, "synthetic://shapes"))
    # the fix writes the profile the config reads (a user check: the path was left out)
    assert str(raised.value).endswith(
        f"--data DATA --drift-reference {default_reference_path(other)}`")


@pytest.mark.parametrize(("drift", "expected"), [
    # named by the key to fix, as the config's own errors are (a user check: neither named)
    ('enabled = "on"', r"edge\.toml: drift\.enabled: drift reference .*\.drift\.json does not "
                       r"exist; write it with `edge eval"),
    ('reference = "missing.json"', r"edge\.toml: drift\.reference: drift reference "
                                   r".*missing\.json does not exist"),
    # no statistic to alert on: drift that can never alert, taken silently (a helper's check)
    ("alert_on = []", r"drift\.alert_on: needs at least 1 item; got 0"),
])
def test_edge_run_exits_2_without_the_reference_it_was_told_to_use(tmp_path, demo_model, drift,
                                                                    expected):
    shutil.copy(demo_model, tmp_path / "m.onnx")
    path = tmp_path / "edge.toml"
    path.write_text(f'device_id = "d"\n[model]\npath = "m.onnx"\n[[cameras]]\nname = "a"\n'
                    f'source = "synthetic://shapes"\n[drift]\n{drift}\n')
    result = subprocess.run([sys.executable, "-m", "edge", "run", "--config", str(path),
                             "--seconds", "1"], capture_output=True, text=True, timeout=60)
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    assert re.search(expected, result.stderr), result.stderr

"""A camera whose stream goes down and comes back, under a daemon with tracking on and a real
Mosquitto: its objects end and its counts go to 0 while it is away, and what it shows when it
is back starts tracks of its own (a user check: an RTSP camera down for 54 s kept its counts,
and on its return a star's track took a circle and a count read 5 of 3 objects)."""

from __future__ import annotations

import itertools
import logging
import threading
from pathlib import Path

import pytest

from edge.config import config_from_dict
from edge.daemon import Daemon
from edge.sources import supervisor as supervisor_module
from tests.mqtt_watch import Received, Watcher
from tests.running_daemon import running
from tests.scenes import SlowScene

PREFIX = "edge/outage"
FIRST_STREAM_FRAMES = 60  # 3 s at 20 fps
DOWN_S = 2.0  # the reopened camera's open takes this long: the camera is away meanwhile


@pytest.fixture
def camera_that_drops_out(monkeypatch: pytest.MonkeyPatch) -> None:
    """The first source of the camera ends after `FIRST_STREAM_FRAMES`; each reopened one
    opens `DOWN_S` later on another stretch of the scene (another seed), as a camera back from
    an outage shows what is there by then."""
    built = []
    lock = threading.Lock()

    def source(uri: str, snapshots: object = None) -> SlowScene:
        with lock:
            built.append(uri)
            first = len(built) == 1
        if first:
            return SlowScene(f"synthetic://shapes?fps=20&seed=1&frames={FIRST_STREAM_FRAMES}",
                              0.0)
        return SlowScene("synthetic://shapes?fps=20&seed=2", DOWN_S)

    monkeypatch.setattr(supervisor_module, "source_from_uri", source)


def test_a_camera_that_goes_down_ends_its_objects_and_starts_afresh_when_back(
        mosquitto, demo_model: Path, camera_that_drops_out: None,
        caplog: pytest.LogCaptureFixture) -> None:
    config = config_from_dict(
        {"device_id": "outage", "model": {"path": str(demo_model), "threads": 1},
         "cameras": [{"name": "gate", "source": "synthetic://shapes", "reconnect_max_s": 1}],
         "mqtt": {"url": f"mqtt://127.0.0.1:{mosquitto.port}"}, "frames": {"interval_s": 0}},
        "test")
    with Watcher(mosquitto.port, f"{PREFIX}/gate/#") as watcher, running(Daemon(config)), \
            caplog.at_level(logging.INFO, logger="edge.pipeline"):
        watcher.wait_for(lambda: _back(watcher) is not None
                         and len(_detections(watcher)) >= FIRST_STREAM_FRAMES + 40, 40,
                         "two seconds of detections after the outage")
    back = _back(watcher)
    assert back is not None
    events = [m.json() for m in watcher.on("/events")]
    before = {e["track_id"] for e in events if e["ts"] < back.json()["ts"]}
    after = {e["track_id"] for e in events if e["ts"] >= back.json()["ts"]}
    assert before and after, "objects before and after the outage"
    assert not before & after, "a track from before the outage went on after it"
    ended_in_outage = {e["track_id"] for e in events
                       if e["type"] == "end" and e["ts"] < back.json()["ts"]}
    assert ended_in_outage == before
    # said once, counting the objects whose end was sent (not tracks never reported)
    said = [r.getMessage() for r in caplog.records if "its source went down" in r.getMessage()]
    assert said == [f"camera gate: its source went down: {len(before)} object"
                    f"{'' if len(before) == 1 else 's'} ended (end events sent), counts set to 0"]
    counts_when_back = {}
    for message in watcher.messages:
        if message.arrived >= back.arrived:
            break
        if message.topic.endswith("/count"):
            counts_when_back[message.topic] = int(message.payload)
    assert counts_when_back and set(counts_when_back.values()) == {0}, counts_when_back


def _detections(watcher: Watcher) -> list[Received]:
    return watcher.on("/gate/detections")


def _back(watcher: Watcher) -> Received | None:
    """The first detections message after the outage (a gap of over a second in frame
    times), None before it."""
    messages = _detections(watcher)
    for earlier, later in itertools.pairwise(messages):
        if later.json()["ts"] - earlier.json()["ts"] > 1.0:
            return later
    return None

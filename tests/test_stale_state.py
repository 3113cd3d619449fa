"""Retained state that a config no longer keeps is cleared at the next run, against a real
Mosquitto: a removed camera's status and counts, a removed zone's counts."""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

from edge.config import config_from_dict
from edge.daemon import Daemon
from tests.mqtt_watch import Watcher
from tests.running_daemon import running

ZONE = {"name": "left", "points": [[0, 0], [0.5, 0], [0.5, 1], [0, 1]], "units": "normalised"}


def test_a_removed_cameras_and_zones_retained_state_is_cleared_at_the_next_run(
        mosquitto, demo_model: Path, caplog) -> None:
    _run(mosquitto.port, demo_model, [_camera("gate", [ZONE]), _camera("yard", [])])
    before = _retained(mosquitto.port)
    assert {"edge/st/gate/status", "edge/st/yard/status", "edge/st/yard/circle/count",
            "edge/st/gate/left/circle/count"} <= before
    with caplog.at_level(logging.INFO, logger="edge.daemon"):
        _run(mosquitto.port, demo_model, [_camera("gate", [])])
    after = _retained(mosquitto.port)
    said = [r.getMessage() for r in caplog.records if "no longer keeps" in r.getMessage()]
    assert len(said) == 1, said  # one line for all the sweeps
    assert said[0].startswith(f"cleared {len(before - after) - _snapshots(before - after)} "
                              "topics that earlier runs left retained")
    assert "edge/st/gate/status" in after and "edge/st/gate/circle/count" in after
    gone = before - after
    assert {t for t in before if "/yard/" in t or "/left/" in t} <= gone
    assert all("/yard/" in t or "/left/" in t for t in gone), gone
    # a removed camera's label snapshots go with it (an event of it made one); a kept
    # camera's stay
    yard = {t for t in before if t.startswith("edge/st/yard/") and _label_snapshot(t)}
    assert yard and yard <= gone, before
    assert {t for t in before if t.startswith("edge/st/gate/") and _label_snapshot(t)} <= after


def _snapshots(topics: set[str]) -> int:
    """How many of `topics` are event snapshots (cleared by a sweep of their own)."""
    return sum(t.endswith("/snapshot") and not _label_snapshot(t) for t in topics)


def _label_snapshot(topic: str) -> bool:
    """`edge/st/<camera>/<label>/snapshot`, the newest snapshot of a label."""
    return topic.endswith("/snapshot") and topic.count("/") == 4


def _camera(name: str, zones: list[dict[str, Any]]) -> dict[str, Any]:
    return {"name": name, "source": "synthetic://shapes?fps=10&seed=1", "zones": zones}


def _run(port: int, model: Path, cameras: list[dict[str, Any]]) -> None:
    """One daemon run of about 2 s, stopped as SIGTERM stops it."""
    config = config_from_dict({"device_id": "st", "model": {"path": str(model), "threads": 1},
                               "cameras": cameras, "mqtt": {"url": f"mqtt://127.0.0.1:{port}"}},
                              "test")
    with running(Daemon(config)):
        time.sleep(3.0)  # connected, the sweeps' 1 s of quiet passed, counts sent


def _retained(port: int) -> set[str]:
    """The topics under edge/st that hold a retained value, as a late subscriber sees them."""
    with Watcher(port, "edge/st/#", qos=0) as watcher:
        time.sleep(1.0)
        return {m.topic for m in watcher.messages if m.retain and m.payload}

"""Messages a broker drops without a word (an ACL that denies some of the device's topics,
Mosquitto's message_size_limit): the first message of each kind is checked to come back,
against a real Mosquitto."""

from __future__ import annotations

import json
import logging
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

from edge.config import MqttConfig
from edge.mqtt.echo import Echoes
from edge.mqtt.link import MqttLink
from edge.mqtt.topics import Topics
from tests.conftest import make_mosquitto
from tests.mqtt_watch import Watcher
from tests.test_daemon_mqtt import write_config

FRAME = bytes(range(256)) * 160  # 41 kB


@pytest.fixture(autouse=True)
def short_echo_wait(monkeypatch) -> None:
    monkeypatch.setattr("edge.mqtt.link.ECHO_WAIT_S", 1.0)


def _connected(url: str) -> MqttLink:
    link = MqttLink(MqttConfig(url=url), Topics("edge/t"), "edge-test",
                    lambda state: {"state": state})
    link.start()
    deadline = time.monotonic() + 10
    while not link.connected:
        assert time.monotonic() < deadline, "no connection"
        time.sleep(0.05)
    return link


def _not_back(caplog) -> list[str]:
    """What was said of the first messages of each kind (not of the device's status)."""
    return [r.getMessage() for r in caplog.records
            if "the first of this device's" in r.getMessage()]


def test_a_frame_over_the_brokers_message_size_limit_is_said_once(tmp_path, caplog) -> None:
    """The broker acknowledged nothing wrong and every frame counted as published."""
    broker = make_mosquitto(tmp_path, settings="message_size_limit 20000\n")
    broker.start()
    try:
        with caplog.at_level(logging.WARNING, logger="edge.mqtt"):
            link = _connected(broker.url)
            for _ in range(3):
                assert link.publish_best_effort("edge/t/gate/frame", FRAME)
                time.sleep(1.0)
            time.sleep(0.5)
            link.stop()
        said = _not_back(caplog)
        assert len(said) == 1, said
        assert ("the first of this device's sampled frames, published to edge/t/gate/frame "
                "(41.0 kB)") in said[0]
        # the device's status, far smaller, came back: the size is the likely cause
        assert ": it is most likely larger than the broker's message_size_limit" in said[0]
        assert "frames.max_height" in said[0] and "else the broker's ACL" in said[0]
    finally:
        broker.stop()


def test_the_kinds_an_acl_denies_are_said_and_those_it_allows_are_not(tmp_path: Path, caplog,
                                                                       monkeypatch) -> None:
    """A user check: a device allowed to write its detections and its status only; its
    events, counts and stats went nowhere, without a word, and were counted published.
    Their checks run at once, on their timers' threads (CI saw all three say "either", none
    why): a slow check makes that certain."""
    check = Echoes.check

    def slow_check(self: Echoes, *args, **kwargs):
        found = check(self, *args, **kwargs)
        time.sleep(0.2)
        return found

    monkeypatch.setattr(Echoes, "check", slow_check)
    acl = tmp_path / "acl"
    acl.write_text("topic readwrite edge/t/status\ntopic readwrite edge/t/+/detections\n")
    broker = make_mosquitto(tmp_path, settings=f"user root\nacl_file {acl}\n")
    broker.start()
    try:
        with caplog.at_level(logging.WARNING, logger="edge.mqtt"):
            link = _connected(broker.url)
            link.publish_detections("gate", {"frame_id": 1})
            link.publish_event("edge/t/gate/events", b'{"type": "new"}')
            link.publish_state("edge/t/gate/person/count", b"2")
            link.publish_json("edge/t/stats", {"uptime_s": 1})
            assert link.flush(5)
            deadline = time.monotonic() + 5
            while len(_not_back(caplog)) < 3 and time.monotonic() < deadline:
                time.sleep(0.05)
            time.sleep(0.3)  # nothing more comes
            link.stop()
        said = _not_back(caplog)
        assert len(said) == 3, said
        assert sorted(s.split("device's ")[1].split(",")[0] for s in said) == [
            "counts", "events", "stats"]
        first, *more = said  # the first says why, the others refer to it
        assert "allow this client readwrite on edge/t/# in the broker's ACL" in first
        assert "message_size_limit" not in first  # a few bytes: not a size limit's
        assert all(s.endswith("has not come back either") for s in more), more
        assert not any("detections" in s for s in said)
        assert sorted(link.not_back) == ["counts", "events", "stats"]
    finally:
        broker.stop()


@pytest.mark.slow
def test_the_run_summary_names_the_kinds_that_never_came_back(tmp_path: Path,
                                                              demo_model: Path) -> None:
    """A user check: the stop said `274 produced = 274 published` after warning that the
    device's events, counts and stats never came back, so the figures read as all delivered."""
    acl = tmp_path / "acl"
    acl.write_text("topic readwrite edge/test-gate/status\n"
                   "topic readwrite edge/test-gate/+/detections\n")
    broker = make_mosquitto(tmp_path, settings=f"user root\nacl_file {acl}\n")
    broker.start()
    try:
        config = write_config(tmp_path, demo_model, broker.port)
        result = subprocess.run([sys.executable, "-m", "edge", "run", "--config", str(config),
                                 "--seconds", "9", "--json"],
                                capture_output=True, text=True, timeout=120)
    finally:
        broker.stop()
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout.splitlines()[-1])
    assert "stats" in summary["not_back"] and "detections" not in summary["not_back"]
    line = next(line for line in result.stderr.splitlines() if "stopped after" in line)
    assert re.search(r"; of those published, this device's [a-z ,]*stats[a-z ,]* never came "
                     r"back from the broker \(said above: its ACL or its message_size_limit\)$",
                     line), line


def test_a_device_that_cannot_read_its_own_topics_is_said_once_not_once_a_kind(
        tmp_path: Path, caplog) -> None:
    """A user check: a write-only ACL (`topic write edge/<device>/#`) brought the status's
    warning and then one for each kind, nine in a second."""
    acl = tmp_path / "acl"
    acl.write_text("topic write edge/t/#\n")
    broker = make_mosquitto(tmp_path, settings=f"user root\nacl_file {acl}\n")
    broker.start()
    identity = {"host": "box", "started_at": "2026-12-07T17:00:00Z"}  # as the daemon's status
    link = MqttLink(MqttConfig(url=broker.url), Topics("edge/t"), "edge-test",
                    lambda state: {"state": state, **identity})
    try:
        with caplog.at_level(logging.WARNING, logger="edge.mqtt"):
            link.start()
            deadline = time.monotonic() + 10
            while not link.connected:
                assert time.monotonic() < deadline, "no connection"
                time.sleep(0.05)
            link.publish_detections("gate", {"frame_id": 1})
            link.publish_json("edge/t/stats", {"uptime_s": 1})
            assert link.flush(5)
            time.sleep(1.5)
            link.stop()
        assert not _not_back(caplog)
        status_said = [r.getMessage() for r in caplog.records
                       if "this device's status (edge/t/status)" in r.getMessage()]
        assert len(status_said) == 1 and "readwrite on edge/t/#" in status_said[0]
    finally:
        broker.stop()


def test_messages_that_come_back_say_nothing_and_an_older_retained_value_is_not_taken_for_them(
        tmp_path, caplog) -> None:
    broker = make_mosquitto(tmp_path)
    broker.start()
    try:
        with Watcher(broker.port, "edge/t/#") as watcher, \
                caplog.at_level(logging.WARNING, logger="edge.mqtt"):
            earlier = _connected(broker.url)  # an earlier run's stats, retained
            earlier.publish_json("edge/t/stats", {"run": 1}, retain=True)
            time.sleep(0.5)
            earlier.stop()
            link = _connected(broker.url)
            link.publish_json("edge/t/stats", {"run": 2}, retain=True)
            link.publish_best_effort("edge/t/gate/frame", FRAME)
            link.publish_detections("gate", {"frame_id": 1})
            assert link.flush(5)
            time.sleep(1.5)
            watcher.wait_for(lambda: len(watcher.on("/stats")) == 2, 5, "both stats")
            assert json.loads(watcher.on("/stats")[-1].payload) == {"run": 2}
            link.stop()
        assert not _not_back(caplog)
    finally:
        broker.stop()


def test_a_check_whose_connection_went_is_left_to_the_next_message() -> None:
    echoes = Echoes(Topics("edge/t"))
    echoes.expect("edge/t/gate/frame", FRAME, connection=1)
    assert not echoes.wants("edge/t/yard/frame")  # one of a kind at a time
    assert echoes.check("edge/t/gate/frame", connection=2, connected=True) is None
    assert echoes.wants("edge/t/gate/frame") and not echoes.missing
    echoes.expect("edge/t/gate/frame", FRAME, connection=2)
    assert not echoes.offer("edge/t/gate/frame", b"another frame")
    assert echoes.offer("edge/t/gate/frame", FRAME)
    assert not echoes.wants("edge/t/yard/frame")  # the kind is settled


@pytest.mark.parametrize(("topic", "kind"), [
    ("edge/t/gate/detections", "detections"), ("edge/t/gate/events", "events"),
    ("edge/t/gate/person/count", "counts"), ("edge/t/gate/door/person/count", "counts"),
    ("edge/t/gate/status", "camera statuses"), ("edge/t/stats", "stats"),
    ("edge/t/gate/frame", "sampled frames"), ("edge/t/gate/frame/clean", "sampled frames"),
    ("edge/t/gate/frame/meta", "frame metadata"),
    ("edge/t/gate/events/3f2a/snapshot", "event snapshots"),
    ("edge/t/gate/person/snapshot", "event snapshots"), ("edge/t/gate/drift", "drift"),
    ("edge/t/status", None), ("edge/t/cmd/snapshot", None), ("edge/t/cmd/snapshot/reply", None),
    ("homeassistant/sensor/x/config", None), ("edge/other/gate/detections", None),
])
def test_topic_kinds(topic: str, kind: str | None) -> None:
    assert Topics("edge/t").kind(topic) == kind

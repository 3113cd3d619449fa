"""Sampled frames that a broker drops without a word (Mosquitto's message_size_limit, an ACL):
the first frame of each camera is checked to come back, against a real Mosquitto."""

from __future__ import annotations

import logging
import time

import pytest

from edge.config import MqttConfig
from edge.mqtt.echo import FrameEchoes
from edge.mqtt.link import MqttLink
from edge.mqtt.topics import Topics
from tests.conftest import make_mosquitto
from tests.mqtt_watch import Watcher

FRAME = bytes(range(256)) * 160  # 41 kB


@pytest.fixture(autouse=True)
def short_echo_wait(monkeypatch) -> None:
    monkeypatch.setattr("edge.mqtt.link.ECHO_WAIT_S", 1.0)


def _link(url: str) -> MqttLink:
    return MqttLink(MqttConfig(url=url), Topics("edge/t"), "edge-test",
                    lambda state: {"state": state})


def _connected(link: MqttLink) -> MqttLink:
    link.start()
    deadline = time.monotonic() + 10
    while not link.connected:
        assert time.monotonic() < deadline, "no connection"
        time.sleep(0.05)
    return link


def _frame_warnings(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records if "has not come back" in r.getMessage()]


def test_a_frame_over_the_brokers_message_size_limit_is_said_once(tmp_path, caplog) -> None:
    """The broker acknowledged nothing wrong and every frame counted as published."""
    broker = make_mosquitto(tmp_path, settings="message_size_limit 20000\n")
    broker.start()
    link = _link(broker.url)
    try:
        with caplog.at_level(logging.WARNING, logger="edge.mqtt"):
            _connected(link)
            for _ in range(3):
                assert link.publish_frame("edge/t/gate/frame", FRAME)
                time.sleep(1.0)
            time.sleep(0.5)
        said = _frame_warnings(caplog)
        assert len(said) == 1, said
        assert "edge/t/gate/frame (41.0 kB)" in said[0] and "message_size_limit" in said[0]
        assert "frames.max_height" in said[0]
    finally:
        link.stop()
        broker.stop()


def test_a_frame_that_comes_back_says_nothing_and_a_retained_older_one_is_not_taken_for_it(
        tmp_path, caplog) -> None:
    broker = make_mosquitto(tmp_path)
    broker.start()
    link = _link(broker.url)
    try:
        with Watcher(broker.port, "edge/t/+/frame") as watcher, \
                caplog.at_level(logging.WARNING, logger="edge.mqtt"):
            _connected(link)
            # an earlier run's retained frame: the broker hands it to the check's subscription
            assert link.publish_frame("edge/t/yard/frame", b"older" * 5000, retain=True)
            time.sleep(1.5)
            assert link.publish_frame("edge/t/gate/frame", FRAME, retain=True)
            assert link.publish_frame("edge/t/yard/frame", FRAME, retain=True)
            time.sleep(1.5)
            assert not link._frame_echoes.watches("edge/t/gate/frame")
            assert not link._frame_echoes.wants("edge/t/yard/frame")  # settled
            watcher.wait_for(lambda: len(watcher.on("/frame")) == 3, 5, "three frames")
        assert not _frame_warnings(caplog)
    finally:
        link.stop()
        broker.stop()


def test_a_check_whose_connection_went_is_left_to_the_next_frame(caplog) -> None:
    echoes = FrameEchoes("mqtt://broker")
    echoes.expect("edge/t/gate/frame", FRAME, connection=1)
    with caplog.at_level(logging.WARNING, logger="edge.mqtt"):
        assert echoes.check("edge/t/gate/frame", connection=2, connected=True)
    assert not caplog.records and echoes.wants("edge/t/gate/frame")
    echoes.expect("edge/t/gate/frame", FRAME, connection=2)
    assert not echoes.offer("edge/t/gate/frame", b"another frame")
    assert echoes.offer("edge/t/gate/frame", FRAME)
    assert not echoes.wants("edge/t/gate/frame")

"""A broker that closes the connection on large messages (Mosquitto's max_packet_size): a loss
right after the largest message yet makes its size suspect, a test on a stable connection
confirms it, and messages that large are then no longer sent. A broker that restarts is not
taken for one."""

from __future__ import annotations

import logging
import time

import pytest

from edge.config import MqttConfig
from edge.mqtt.link import MqttLink
from edge.mqtt.packet_limit import (
    AFTER_S,
    FIRST_RETRY_S,
    MARGIN,
    SMALLEST_SUSPECT,
    STABLE_S,
    PacketLimit,
    packet_bytes,
)
from edge.mqtt.topics import Topics
from tests.conftest import Mosquitto, make_mosquitto
from tests.mqtt_watch import Watcher

FRAME_TOPIC = "edge/d/cam/frame"


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def _lose_after(limit: PacketLimit, clock: Clock, size: int) -> object:
    assert limit.allows(size)
    limit.handed(size, FRAME_TOPIC)
    clock.now += 0.05
    loss = limit.lost()
    limit.connected()
    return loss


def _limited(clock: Clock) -> PacketLimit:
    """Suspected, then confirmed by a test on a connection up `STABLE_S`."""
    limit = PacketLimit(clock)
    limit.handed(20_000, FRAME_TOPIC)
    clock.now += AFTER_S  # 20 kB went through
    _lose_after(limit, clock, 50_000)
    clock.now += STABLE_S
    loss = _lose_after(limit, clock, 50_000)
    assert loss.limit == 20_001 == limit.limit  # type: ignore[attr-defined]
    return limit


def test_a_loss_right_after_the_largest_message_makes_its_size_suspect_and_a_test_confirms_it(
        ) -> None:
    clock = Clock()
    limit = PacketLimit(clock)
    limit.handed(30_000, FRAME_TOPIC)
    clock.now += AFTER_S  # the connection stayed up: 30 kB goes through
    first = _lose_after(limit, clock, 46_000)
    assert first is not None and first.limit is None  # type: ignore[attr-defined]
    assert "a 46.0 kB message to edge/d/cam/frame" in first.message.words()  # type: ignore[attr-defined]
    assert limit.limit is None
    # held back while the suspicion is untested: within MARGIN of it too
    assert not limit.allows(46_000) and not limit.allows(int(46_000 * (1 - MARGIN)))
    assert limit.allows(int(46_000 * (1 - MARGIN)) - 1) and limit.allows(300)
    clock.now += STABLE_S  # the connection has stayed up: the next one that large is a test
    assert not limit.allows(45_000)
    second = _lose_after(limit, clock, 47_000)
    assert second.limit == 30_001 == limit.limit  # type: ignore[attr-defined]
    assert not limit.allows(30_001) and limit.allows(30_000)
    assert limit.held == 3 and limit.refused == 1 and limit.losses == 2


def test_a_broker_restarting_right_after_large_frames_is_not_taken_for_a_limit() -> None:
    """A user check: three restarts of a broker with no limit, at one frame a second, held
    frames back for 10 minutes."""
    clock = Clock()
    limit = PacketLimit(clock)
    # each restart right after the largest frame sent yet (those within MARGIN of the
    # suspect size wait meanwhile)
    for size in (46_800, 42_000, 37_000):
        clock.now += 2.5
        assert _lose_after(limit, clock, size) is not None
        assert limit.limit is None
    clock.now += STABLE_S  # the broker stays up now
    assert limit.allows(45_000)  # the test
    limit.handed(45_000, FRAME_TOPIC)
    clock.now += AFTER_S
    assert limit.allows(47_000) and limit.allows(90_000) and limit.limit is None


def test_small_messages_are_never_taken_for_too_large() -> None:
    """A broker that restarted twice, each time right after a detection, would otherwise have
    held every detection back."""
    clock = Clock()
    limit = PacketLimit(clock)
    for _ in range(3):
        limit.handed(SMALLEST_SUSPECT - 1, "edge/d/cam/detections")
        clock.now += 0.1
        assert limit.lost() is None
        limit.connected()
        clock.now += STABLE_S
    assert limit.allows(SMALLEST_SUSPECT - 1)


def test_a_loss_long_after_the_largest_message_is_not_put_down_to_it() -> None:
    clock = Clock()
    limit = PacketLimit(clock)
    limit.handed(50_000, FRAME_TOPIC)
    clock.now += AFTER_S + 0.5
    assert limit.lost() is None
    limit.connected()
    limit.handed(20_000, FRAME_TOPIC)  # smaller than one that went through
    clock.now += 0.1
    assert limit.lost() is None


def test_one_message_over_the_limit_is_tried_again_later_and_lifts_it_if_it_goes_through(
        ) -> None:
    """The broker's limit may have been raised since."""
    clock = Clock()
    limit = _limited(clock)
    assert not limit.allows(50_000)
    clock.now += FIRST_RETRY_S
    assert limit.allows(50_000)  # the retry
    assert not limit.allows(50_000)  # one at a time
    limit.handed(50_000, FRAME_TOPIC)
    clock.now += AFTER_S
    assert limit.lifted() == 20_001 and limit.limit is None
    assert limit.lifted() is None  # said once
    assert limit.allows(60_000)


def test_a_retry_that_costs_the_connection_again_waits_twice_as_long_for_the_next() -> None:
    clock = Clock()
    limit = _limited(clock)
    clock.now += FIRST_RETRY_S
    loss = _lose_after(limit, clock, 50_000)
    assert loss.retried and loss.retry_in == 2 * FIRST_RETRY_S  # type: ignore[attr-defined]
    assert limit.limit == 20_001
    clock.now += FIRST_RETRY_S
    assert not limit.allows(50_000)
    clock.now += FIRST_RETRY_S
    assert limit.allows(50_000)


def test_a_retry_whose_connection_went_for_another_reason_is_tried_again() -> None:
    clock = Clock()
    limit = _limited(clock)
    clock.now += FIRST_RETRY_S
    assert limit.allows(50_000)  # allowed, but the connection went before it was handed
    limit.connected()
    clock.now += FIRST_RETRY_S
    assert limit.allows(50_000)


def test_packet_bytes_counts_the_topic_and_headers() -> None:
    assert packet_bytes("a/b", b"x" * 100) == 100 + 3 + 9


# -- against a real Mosquitto ------------------------------------------------------------------

FRAME = bytes(range(256)) * 160  # 41 kB


@pytest.fixture
def short_stable(monkeypatch) -> None:
    monkeypatch.setattr("edge.mqtt.packet_limit.STABLE_S", 2.0)


def _link(broker: Mosquitto) -> MqttLink:
    settings = MqttConfig(url=broker.url, reconnect_min_s=1, reconnect_max_s=1)
    return MqttLink(settings, Topics("edge/t"), "edge-test", lambda state: {"state": state})


def _wait(condition, what: str, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(0.05)


def test_a_link_to_a_broker_with_max_packet_size_stops_sending_what_it_closes_on(
        tmp_path, caplog, short_stable) -> None:
    """Without the limit every large message cost the connection (a frame a second: a
    reconnect a second, said as another client taking the client id over); with it, two
    losses, then the rest goes through on one connection."""
    broker = make_mosquitto(tmp_path, settings="max_packet_size 20000\n")
    broker.start()
    link = _link(broker)
    try:
        with Watcher(broker.port, "edge/t/#") as watcher, \
                caplog.at_level(logging.WARNING, logger="edge.mqtt"):
            link.start()
            deadline = time.monotonic() + 30
            while link.packet_limit.limit is None and time.monotonic() < deadline:
                if link.connected:
                    link.publish_best_effort("edge/t/cam/frame", FRAME)
                time.sleep(0.2)
            assert link.packet_limit.limit is not None, "no limit learnt in 30 s"
            assert link.counters.connects == 2, link.counters.connects  # the next is below
            _wait(lambda: link.connected, "the reconnect")
            connects = link.counters.connects
            for frame_id in range(10):  # frames go on being sampled; detections must arrive
                assert not link.publish_best_effort("edge/t/cam/frame", FRAME)
                link.publish_detections("cam", {"frame_id": frame_id})
                time.sleep(0.1)
            assert link.flush(10)
            watcher.wait_for(lambda: len(watcher.on("/detections")) == 10, 5, "detections")
            assert link.counters.connects == connects  # no loss since
            assert not watcher.on("/frame")
        said = [r.getMessage() for r in caplog.records]
        assert any("right after a 41.0 kB message to edge/t/cam/frame, larger than any" in s
                   for s in said), said
        limit_said = [s for s in said if "closes the connection on a 41.0 kB message" in s]
        assert len(limit_said) == 1 and "lower frames.max_height" in limit_said[0], said
        assert "messages of 16.0 kB or more" in limit_said[0]
        assert not any("same client id" in s for s in said), said
        assert link.stats()["size_limit_bytes"] == 16_000
        assert link.packet_limit.refused >= 10
        assert link.stats()["held_back_for_size"] == (link.packet_limit.refused
                                                      + link.packet_limit.held)
        caplog.clear()
        with caplog.at_level(logging.WARNING, logger="edge.mqtt"):
            link.stop()
        assert (f"{link.packet_limit.refused} messages were not sent in this run for their "
                "size") in caplog.text
    finally:
        link.stop()
        broker.stop()


def test_a_broker_restarted_again_and_again_is_not_taken_for_one_with_a_limit(
        tmp_path, caplog, short_stable) -> None:
    broker = make_mosquitto(tmp_path)
    broker.start()
    link = _link(broker)
    try:
        with Watcher(broker.port, "edge/t/#") as watcher:
            link.start()
            for restart in range(3):  # each restart right after a frame (the first sent;
                _wait(lambda: link.connected, "a connection")  # then that size waits)
                assert link.publish_best_effort("edge/t/cam/frame", FRAME) == (restart == 0)
                broker.stop()
                broker.start()
                watcher.wait_for(watcher.client.is_connected, 10, "the watcher back")
            _wait(lambda: link.connected, "the last connection")
            time.sleep(2.5)  # short_stable: the next frame tests the suspect size
            for _ in range(5):
                link.publish_best_effort("edge/t/cam/frame", FRAME)
                time.sleep(0.3)
            assert link.packet_limit.limit is None
            watcher.wait_for(lambda: len(watcher.on("/frame")) >= 5, 10, "frames")
        with caplog.at_level(logging.INFO, logger="edge.mqtt"):
            link.stop()
        # a user check: frames not sent while the size was suspect read as a limit's
        assert "for their size" not in caplog.text
        assert (f"{link.packet_limit.held} messages about the size of one a connection was "
                "lost right after were not sent while that size was untested") in caplog.text
    finally:
        link.stop()
        broker.stop()

"""A broker that closes the connection on large messages (Mosquitto's max_packet_size): the
losses are put down to the message sent just before, and past two such losses messages that
large are no longer sent."""

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
    PacketLimit,
    packet_bytes,
)
from edge.mqtt.topics import Topics
from tests.conftest import make_mosquitto
from tests.mqtt_watch import Watcher


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_two_losses_right_after_the_largest_messages_set_the_limit_below_them() -> None:
    clock = Clock()
    limit = PacketLimit(clock)
    limit.handed(300, "edge/d/cam/detections")
    clock.now += AFTER_S  # the connection stayed up: 300 bytes go through
    limit.handed(46_000, "edge/d/cam/frame")
    clock.now += 0.01
    first = limit.lost()
    assert first is not None and first.message.size == 46_000 and first.limit is None
    assert limit.limit is None and limit.allows(46_000)  # one loss may be a broker restart
    limit.connected()
    limit.handed(45_000, "edge/d/cam/frame")
    clock.now += 0.01
    second = limit.lost()
    assert second is not None and second.limit == int(45_000 * (1 - MARGIN)) == limit.limit
    assert "45.0 kB message to edge/d/cam/frame" in second.message.words()
    assert not limit.allows(44_000) and not limit.allows(40_500)
    assert limit.allows(40_499) and limit.allows(300)
    assert limit.refused == 2 and limit.losses == 2


def test_a_loss_long_after_the_largest_message_or_after_a_smaller_one_is_not_put_down_to_size(
        ) -> None:
    clock = Clock()
    limit = PacketLimit(clock)
    limit.handed(50_000, "edge/d/cam/frame")
    clock.now += AFTER_S + 0.5
    assert limit.lost() is None  # the connection outlived it: 50 kB goes through
    limit.connected()
    limit.handed(20_000, "edge/d/cam/frame")  # smaller than one that went through
    clock.now += 0.1
    assert limit.lost() is None
    for _ in range(3):  # larger ones lost, but never a limit at or below 50 kB
        limit.connected()
        limit.handed(52_000, "edge/d/cam/frame")
        clock.now += 0.1
        assert limit.lost() is not None
    assert limit.limit == 50_001 and limit.allows(50_000) and not limit.allows(50_001)


def test_a_message_that_goes_through_later_clears_the_suspicion_of_its_size() -> None:
    clock = Clock()
    limit = PacketLimit(clock)
    limit.handed(60_000, "edge/d/cam/frame")
    clock.now += 0.1
    assert limit.lost() is not None  # a broker restart just then
    limit.connected()
    limit.handed(70_000, "edge/d/cam/frame")
    clock.now += AFTER_S  # it went through
    limit.handed(80_000, "edge/d/cam/frame")
    clock.now += 0.1
    loss = limit.lost()
    assert loss is not None and loss.limit is None and limit.limit is None  # 60 kB was cleared


def test_a_link_to_a_broker_with_max_packet_size_stops_sending_what_it_closes_on(
        tmp_path, caplog) -> None:
    """Without the limit every large message cost the connection (a frame a second: a
    reconnect a second, said as another client taking the client id over); with it, two
    losses, then the rest goes through on one connection."""
    broker = make_mosquitto(tmp_path, settings="max_packet_size 20000\n")
    broker.start()
    settings = MqttConfig(url=broker.url, reconnect_min_s=1, reconnect_max_s=1)
    link = MqttLink(settings, Topics("edge/t"), "edge-test", lambda state: {"state": state})
    frame = bytes(range(256)) * 160  # 41 kB, over the broker's 20 kB
    try:
        with Watcher(broker.port, "edge/t/#") as watcher, \
                caplog.at_level(logging.WARNING, logger="edge.mqtt"):
            link.start()
            deadline = time.monotonic() + 30
            sent = 0
            while link.packet_limit.limit is None and time.monotonic() < deadline:
                if link.connected:
                    link.publish_best_effort("edge/t/cam/frame", frame)
                    sent += 1
                time.sleep(0.2)
            assert link.packet_limit.limit is not None, "no limit learnt in 30 s"
            assert 2 <= link.counters.connects <= 4, link.counters.connects
            _wait_connected(link)
            connects = link.counters.connects
            for frame_id in range(10):  # frames go on being sampled; detections must arrive
                assert not link.publish_best_effort("edge/t/cam/frame", frame)
                link.publish_detections("cam", {"frame_id": frame_id})
                time.sleep(0.1)
            assert link.flush(10)
            watcher.wait_for(lambda: len(watcher.on("/detections")) == 10, 5, "detections")
            assert link.counters.connects == connects  # no loss since
            assert not watcher.on("/frame")
        assert link.packet_limit.refused >= 10
        said = [r.getMessage() for r in caplog.records]
        assert any("right after a 41.0 kB message to edge/t/cam/frame" in s for s in said), said
        limit_said = [s for s in said if "closes the connection on messages of" in s]
        assert len(limit_said) == 1 and "lower frames.max_height" in limit_said[0], said
        assert not any("same client id" in s for s in said), said
    finally:
        link.stop()
        broker.stop()


def _wait_connected(link: MqttLink, timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while not link.connected:
        if time.monotonic() > deadline:
            pytest.fail("the link did not reconnect")
        time.sleep(0.05)


def test_packet_bytes_counts_the_topic_and_headers() -> None:
    assert packet_bytes("a/b", b"x" * 100) == 100 + 3 + 9


def test_small_messages_are_never_taken_for_too_large() -> None:
    """A broker that restarted twice, each time right after a detection, would otherwise have
    stopped every detection."""
    clock = Clock()
    limit = PacketLimit(clock)
    for _ in range(3):
        limit.handed(SMALLEST_SUSPECT - 1, "edge/d/cam/detections")
        clock.now += 0.1
        assert limit.lost() is None
        limit.connected()
    assert limit.limit is None and limit.allows(SMALLEST_SUSPECT - 1)


def _limited(clock: Clock) -> PacketLimit:
    limit = PacketLimit(clock)
    for _ in range(2):
        limit.handed(50_000, "edge/d/cam/frame")
        clock.now += 0.1
        limit.lost()
        limit.connected()
    assert limit.limit == 45_000
    return limit


def test_one_message_over_the_limit_is_tried_again_later_and_lifts_it_if_it_goes_through(
        ) -> None:
    """The losses may have been a network's; or the broker's limit was raised since."""
    clock = Clock()
    limit = _limited(clock)
    assert not limit.allows(50_000)
    clock.now += FIRST_RETRY_S
    assert limit.allows(50_000)  # the retry
    assert not limit.allows(50_000)  # one at a time
    limit.handed(50_000, "edge/d/cam/frame")
    clock.now += AFTER_S
    assert limit.lifted() == 45_000 and limit.limit is None
    assert limit.lifted() is None  # said once
    assert limit.allows(60_000)


def test_a_retry_that_costs_the_connection_again_waits_twice_as_long_for_the_next() -> None:
    clock = Clock()
    limit = _limited(clock)
    clock.now += FIRST_RETRY_S
    assert limit.allows(50_000)
    limit.handed(50_000, "edge/d/cam/frame")
    clock.now += 0.1
    loss = limit.lost()
    assert loss is not None and loss.retried and loss.limit is None
    assert loss.retry_in == 2 * FIRST_RETRY_S
    limit.connected()
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

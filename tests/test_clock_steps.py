"""The system clock set while the daemon runs (NTP's first sync on a device without a
battery-backed clock, or by hand): its intervals keep their pace, what it publishes is dated
by the clock as set, and the outbox keeps what it holds."""

from __future__ import annotations

import itertools
import logging
import sqlite3
import time
from pathlib import Path

import pytest

from edge.clock import STEP_S, ClockSteps, published, span_words, steady, stepped
from edge.mqtt.outbox import DiskOutbox, Dropped, Message
from tests.mqtt_watch import Watcher
from tests.set_clock import SetClock

PREFIX = "edge/test-gate"
DAY = 86400.0


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> SetClock:
    return SetClock(monkeypatch)


def test_the_steady_clock_does_not_step_and_published_times_follow_the_system_clock(
        clock: SetClock) -> None:
    ts = steady()
    assert published(ts) == ts  # exactly: nothing changes without a step
    watch = ClockSteps()
    clock.by = 0.2 * STEP_S  # the jitter of two clock reads, or less: no step
    assert stepped() == 0.0 and watch.new_step() == 0.0 and published(ts) == ts
    clock.by = -3600.0
    assert steady() - ts < 1.0  # the camera loop's time went on as before
    assert stepped() == pytest.approx(-3600.0, abs=0.01)
    assert published(ts) == pytest.approx(ts - 3600.0, abs=0.01)
    assert watch.new_step() == pytest.approx(-3600.0, abs=0.01)
    assert watch.new_step() == 0.0  # said once
    clock.by = 3 * DAY
    assert watch.new_step() == pytest.approx(3 * DAY + 3600.0, abs=0.01)


@pytest.mark.parametrize(("seconds", "words"), [
    (2592000.0, "30 days (2592000 s)"), (-3599.9998, "1 hour (3600 s)"),
    (5400.0, "1.5 hours (5400 s)"), (90.0, "1.5 minutes (90 s)"), (0.75, "0.8 s")])
def test_a_steps_size_is_said_in_the_unit_it_is_counted_in(seconds: float, words: str) -> None:
    assert span_words(seconds) == words


def _message(n: int) -> Message:
    return Message("edge/t/cam/detections", str(n).encode(), 1)


def test_messages_the_outbox_holds_keep_their_age_when_the_clock_is_set_forward(
        tmp_path: Path, clock: SetClock, monkeypatch: pytest.MonkeyPatch) -> None:
    """A device offline since a boot with a stale clock keeps its detections for the broker;
    the network comes back and NTP sets the clock 3 days forward: every message kept was
    dropped as older than `outbox_max_age_s` (a day), though none was a minute old. Messages
    put since this boot are aged by the time since boot; an earlier boot's by the clock."""
    monkeypatch.setattr(DiskOutbox, "AGE_CHECK_S", 0.0)
    path = tmp_path / "outbox.sqlite"
    earlier = DiskOutbox(path, 100, 10**6, max_age_s=DAY)
    earlier.put(_message(0))  # an earlier run's, since this boot
    earlier.close()
    with sqlite3.connect(path) as db:  # one from an earlier boot, 12 hours old by the clock
        db.execute("INSERT INTO outbox (created, boot, since_boot, topic, payload, qos) "
                   "VALUES (?, 'an-earlier-boot', 5.0, 'edge/t/cam/detections', '9', 1)",
                   (time.time() - DAY / 2,))
    db.close()
    outbox = DiskOutbox(path, 100, 10**6, max_age_s=DAY)
    outbox.put(_message(1))
    clock.by = 3 * DAY
    assert outbox.put(_message(2)) == Dropped(1, 0, 1)  # the earlier boot's alone
    assert [int(m.payload) for _, m in outbox.take(10)] == [0, 1, 2]
    outbox.close()


def test_a_message_older_than_its_limit_is_still_dropped_across_a_step_back(
        tmp_path: Path, clock: SetClock, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(DiskOutbox, "AGE_CHECK_S", 0.0)
    outbox = DiskOutbox(tmp_path / "outbox.sqlite", 100, 10**6, max_age_s=0.5)
    outbox.put(_message(0))
    clock.by = -3600.0  # by the clock it is an hour younger than it is
    time.sleep(0.7)
    assert outbox.put(_message(1)) == Dropped(1, 0, 1)
    assert [int(m.payload) for _, m in outbox.take(10)] == [1]
    outbox.close()


def test_an_outbox_from_before_boot_dates_is_upgraded_and_its_messages_aged_by_the_clock(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(DiskOutbox, "AGE_CHECK_S", 0.0)
    path = tmp_path / "outbox.sqlite"
    with sqlite3.connect(path) as db:
        db.execute("CREATE TABLE outbox (id INTEGER PRIMARY KEY AUTOINCREMENT, created REAL "
                   "NOT NULL, topic TEXT NOT NULL, payload BLOB NOT NULL, qos INTEGER NOT "
                   "NULL, retain INTEGER NOT NULL DEFAULT 0, precious INTEGER NOT NULL "
                   "DEFAULT 0)")
        db.executemany("INSERT INTO outbox (created, topic, payload, qos) VALUES "
                       "(?, 'edge/t/cam/detections', ?, 1)",
                       [(time.time() - 2 * DAY, b"0"), (time.time(), b"1")])
    db.close()
    outbox = DiskOutbox(path, 100, 10**6, max_age_s=DAY)
    assert outbox.put(_message(2)) == Dropped(1, 0, 1)
    assert [int(m.payload) for _, m in outbox.take(10)] == [1, 2]
    outbox.close()


@pytest.mark.slow
def test_a_clock_set_back_an_hour_leaves_frame_sampling_at_its_pace(
        mosquitto, demo_model, clock: SetClock, caplog) -> None:
    """The sampler measured its interval on the system clock: set back an hour, it sampled
    no frame for an hour. Detections are dated by the clock as set."""
    from edge.config import config_from_dict
    from edge.daemon import Daemon

    config = config_from_dict({
        "device_id": "test-gate", "model": {"path": str(demo_model), "threads": 1},
        "cameras": [{"name": "gate", "source": "synthetic://shapes?fps=10&seed=3"}],
        "mqtt": {"url": mosquitto.url}, "frames": {"interval_s": 0.5, "max_height": 120},
        "stats": {"interval_s": 1}}, "test")
    daemon = Daemon(config)
    with Watcher(mosquitto.port, f"{PREFIX}/#") as watcher, \
            caplog.at_level(logging.WARNING, logger="edge.daemon"):
        daemon.start()
        try:
            watcher.wait_for(lambda: len(watcher.on("/gate/frame/meta")) >= 2, 30,
                             "two sampled frames")
            clock.by = -3600.0
            set_at = len(watcher.on("/gate/frame/meta"))
            watcher.wait_for(lambda: len(watcher.on("/gate/frame/meta")) >= set_at + 4, 10,
                             "four frames sampled after the clock was set back")
            uptime = daemon.stats()["uptime_s"]
            daemon._say_a_clock_step()  # the run loop's, which this test does not run
        finally:
            daemon.stop(1.0)
    metas = [m.json() for m in watcher.on("/gate/frame/meta")]
    real = time.time() + 3600.0
    assert all(abs(m["ts"] - real) < 60 for m in metas[:set_at - 1]), metas
    assert all(abs(m["ts"] - (real - 3600.0)) < 60 for m in metas[set_at + 1:]), metas
    gaps = [b["ts"] - a["ts"] for a, b in itertools.pairwise(metas[set_at + 1:])]
    assert all(0.3 < gap < 1.5 for gap in gaps), gaps
    latest = watcher.on("/gate/detections")[-1].json()
    assert abs(latest["ts"] - (real - 3600.0)) < 60
    assert 0 < latest["latency_ms"]["total"] < 10_000  # not an hour
    assert 0 < uptime < 120
    said = [r.getMessage() for r in caplog.records if "system clock was set" in r.getMessage()]
    assert len(said) == 1 and said[0].startswith(
        "the system clock was set 1 hour (3600 s) back (by NTP or by hand): messages made from "
        "now on are dated by it"), said

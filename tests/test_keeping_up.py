"""Cameras that drop most of their frames (the device has more work than it can do) are said."""

from __future__ import annotations

import pytest

from edge.keeping_up import (
    OPENING_S,
    Change,
    Counts,
    KeepingUp,
    Window,
    behind_warning,
    caught_up_line,
)

#: Streaming since before the first observation.
LONG_AGO = -1000.0


def _run(watch: KeepingUp, seconds: range, rates: dict[str, tuple[int, int]],
         start: dict[str, Counts] | None = None, since: float | None = LONG_AGO
         ) -> tuple[dict[str, Counts], list[tuple[int, Change]]]:
    """Feed `watch` every 5 s of `seconds` with each camera processing/dropping `rates`
    (frames a second), streaming `since`; returns the totals reached and each observation's
    change."""
    totals = dict(start or {name: Counts(0, 0, since) for name in rates})
    changes = []
    for second in seconds:
        if second % 5:
            continue
        totals = {name: Counts(totals[name].frames + 5 * processed,
                               totals[name].dropped + 5 * dropped, since)
                  for name, (processed, dropped) in rates.items()}
        changes.append((second, watch.observe(float(second), totals)))
    return totals, changes


def test_a_camera_that_drops_most_frames_falls_behind_after_a_window_and_catches_up():
    watch = KeepingUp(30.0)
    # c1: 7 of 34 frames a second processed (a user check's overloaded camera); c2 keeps up
    totals, seen = _run(watch, range(5, 65), {"c1": (7, 27), "c2": (15, 0)})
    changes = [(second, change) for second, change in seen
               if change.fell_behind or change.caught_up]
    assert len(changes) == 1
    second, change = changes[0]
    assert second == 35  # the first full 30 s window
    window = change.fell_behind["c1"]
    assert set(change.fell_behind) == {"c1"} and change.caught_up == []
    assert (window.processed_fps, window.delivered_fps, window.share) == pytest.approx(
        (7.0, 34.0, 27 / 34))
    assert watch.keeping_up("c1") is False and watch.keeping_up("c2") is True
    # 10% dropped: between the two thresholds, still behind
    totals, _ = _run(watch, range(65, 130), {"c1": (27, 3), "c2": (15, 0)}, totals)
    assert watch.keeping_up("c1") is False
    assert watch.behind() == {"c1": pytest.approx(0.1)}
    # 1 frame in 30 dropped: caught up, said once
    _, seen = _run(watch, range(130, 200), {"c1": (29, 1), "c2": (15, 0)}, totals)
    caught = [change.caught_up for _, change in seen if change.caught_up]
    assert caught == [["c1"]] and watch.keeping_up("c1") is True


def test_nothing_is_said_before_a_window_or_of_a_camera_that_delivers_little():
    watch = KeepingUp(30.0)
    _run(watch, range(5, 30), {"c1": (2, 30)})
    assert watch.keeping_up("c1") is None  # under 30 s
    quiet = KeepingUp(30.0)
    _run(quiet, range(5, 100), {"down": (0, 0), "trickle": (0, 0)})
    assert quiet.keeping_up("down") is None and quiet.behind() == {}
    assert quiet.keeping_up("unknown") is None


def test_the_warning_gives_each_cameras_rates_share_latency_and_the_remedies():
    stats = {"c1": {"fps": 7.04, "source_fps": 33.85,
                    "latency_ms": {"total": {"p50": 295.2, "p99": 440.0}}},
             "c2": {"fps": 6.9, "source_fps": 34.1, "latency_ms": {}}}
    warning = behind_warning({"c1": Window(7.04, 33.85, 0.8), "c2": Window(6.9, 34.1, 0.797)},
                             stats, 30.0)
    assert warning.startswith(
        "cameras c1, c2 are not keeping up over the last 30 s: c1 processed 7.0 of the 33.9 frames "
        "a second its source delivered (80% dropped, latency p50 295 ms); c2 processed 6.9 of "
        "the 34.1 frames a second its source delivered (80% dropped). The device has more work "
        "than it can do")
    for remedy in ("fewer cameras", "a lower fps= on a source", "edge calibrate",
                   "model.max_batch", "edge bench"):
        assert remedy in warning
    assert behind_warning({"c1": Window(15.0, 30.0, 0.5)}, stats, 30.0).startswith(
        "camera c1 is not keeping up")
    assert caught_up_line(["c1"]) == "camera c1 keeps up with its source again"
    assert caught_up_line(["a", "b"]) == "cameras a, b keep up with their sources again"


def test_a_streams_opening_burst_and_its_outages_are_no_sign_of_load():
    """A user check: an RTSP camera back after 30 s away delivered a burst of buffered frames
    that replaced each other at once (80 dropped in 1.6 s) and was said to be "not keeping
    up" on an idle device, "12.0 of the 12.0 frames a second (32% dropped)": the instant
    rates beside the window's share."""
    watch = KeepingUp(30.0)
    totals, _ = _run(watch, range(5, 60), {"c1": (12, 0)})
    down, _ = _run(watch, range(60, 90), {"c1": (0, 0)}, totals, since=None)  # away
    assert watch.keeping_up("c1") is None and watch.behind() == {}
    back = 90.0
    burst = {"c1": Counts(down["c1"].frames + 20, down["c1"].dropped + 80, back)}
    assert watch.observe(back + 1.6, burst) == Change({}, [])
    # the window starts OPENING_S after the stream opened: at 12 FPS, nothing dropped
    _, seen = _run(watch, range(95, 160), {"c1": (12, 0)}, burst, since=back)
    assert all(change == Change({}, []) for _, change in seen)
    assert watch.keeping_up("c1") is True
    assert OPENING_S <= 5.0  # a window still begins within seconds of the reopen


def test_a_camera_dropping_between_the_two_thresholds_is_not_said_to_keep_up():
    """A user check: cameras dropping 15-25% of their frames read `keeping_up: true` (the
    contract: true once it drops at most 5%), one of them said to fall behind 10 s later."""
    watch = KeepingUp(30.0)
    _run(watch, range(5, 80), {"c1": (20, 4)})  # 17% dropped, window after window
    assert watch.keeping_up("c1") is None and watch.behind() == {}
    _run(watch, range(80, 160), {"c1": (24, 0)})
    assert watch.keeping_up("c1") is True


def test_a_camera_that_does_not_stream_reads_null_in_the_stats(demo_model):
    """A user check: the last stats before the stop had a camera `ended` and keeping_up
    true."""
    from edge.config import config_from_dict
    from edge.daemon import Daemon

    daemon = Daemon(config_from_dict({
        "device_id": "dev1", "model": {"path": str(demo_model), "threads": 1},
        "cameras": [{"name": "gate", "source": "synthetic://shapes?fps=10"}],
        "mqtt": {"url": "mqtt://127.0.0.1:1"}}, "test"))
    _run(daemon._keeping_up, range(5, 60), {"gate": (12, 0)})
    assert daemon._keeping_up.keeping_up("gate") is True
    assert daemon.stats()["cameras"]["gate"]["keeping_up"] is None  # never started streaming

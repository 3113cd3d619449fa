"""Cameras that drop most of their frames (the device has more work than it can do) are said."""

from __future__ import annotations

import pytest

from edge.keeping_up import Change, Counts, KeepingUp, behind_warning, caught_up_line


def _run(watch: KeepingUp, seconds: range, rates: dict[str, tuple[int, int]],
         start: dict[str, Counts] | None = None
         ) -> tuple[dict[str, Counts], list[tuple[int, Change]]]:
    """Feed `watch` every 5 s of `seconds` with each camera processing/dropping `rates`
    (frames a second); returns the totals reached and each observation's change."""
    totals = dict(start or {name: Counts(0, 0) for name in rates})
    changes = []
    for second in seconds:
        if second % 5:
            continue
        totals = {name: Counts(totals[name].frames + 5 * processed,
                               totals[name].dropped + 5 * dropped)
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
    assert change.fell_behind == {"c1": pytest.approx(27 / 34)} and change.caught_up == []
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
    warning = behind_warning({"c1": 0.8, "c2": 0.797}, stats, 30.0)
    assert warning.startswith(
        "cameras c1, c2 are not keeping up over the last 30 s: c1 processed 7.0 of the 33.9 frames "
        "a second its source delivers (80% dropped, latency p50 295 ms); c2 processed 6.9 of "
        "the 34.1 frames a second its source delivers (80% dropped). The device has more work "
        "than it can do")
    for remedy in ("fewer cameras", "a lower fps= on a source", "edge calibrate",
                   "model.max_batch", "edge bench"):
        assert remedy in warning
    assert behind_warning({"c1": 0.5}, stats, 30.0).startswith("camera c1 is not keeping up")
    assert caught_up_line(["c1"]) == "camera c1 keeps up with its source again"
    assert caught_up_line(["a", "b"]) == "cameras a, b keep up with their sources again"

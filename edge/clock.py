"""The camera loop's time: seconds since the epoch that never step.

A device without a battery-backed clock (many Jetson and Raspberry Pi boards) boots with a
stale time, and NTP steps the clock once the network is up, often by days; a clock set by hand
steps it too. The camera loop's intervals (frame sampling and its byte budget, event updates
and snapshots, drift windows) were measured on the system clock, so a step back of an hour
sampled no frame for an hour and delayed every event update as long. Frames are therefore
stamped with `steady()`: the system clock as it read when this module was imported, advanced
by the monotonic clock, which no one sets. What the daemon publishes is dated by the system
clock as it reads now (`published`), so an event that began before a step is dated in the
same time as its end, and a subscriber sees the device's clock.

`time.time() - time.monotonic()` changes only when the clock is stepped: NTP's slewing
adjusts both clocks' rate alike. Steps under `STEP_S` are taken for the jitter of reading the
two clocks one after the other and ignored, so without a step `published(ts) == ts` exactly.
"""

from __future__ import annotations

import time

#: Smaller changes of the system clock against the monotonic one are not steps (seconds).
STEP_S = 0.5
#: The two clocks are read again when reading them took longer than this (a thread switch).
_READ_S = 0.001

#: The system clock less the monotonic clock at import (seconds).
_AT_START = time.time() - time.monotonic()


def steady() -> float:
    """Now, in seconds since the epoch as the system clock counted them at the start."""
    return time.monotonic() + _AT_START


def stepped() -> float:
    """How far the system clock was set since the start, in seconds (> 0: forward); 0.0 when
    it was not (or by less than `STEP_S`)."""
    for _ in range(3):
        before = time.monotonic()
        wall = time.time()
        after = time.monotonic()
        if after - before < _READ_S:
            break
    offset = wall - (before + after) / 2 - _AT_START
    return offset if abs(offset) >= STEP_S else 0.0


def published(ts: float) -> float:
    """`ts`, a `steady()` time, in the system clock's time now (seconds since the epoch)."""
    return ts + stepped()


_UNITS = ((86400.0, "day"), (3600.0, "hour"), (60.0, "minute"))


def span_words(seconds: float) -> str:
    """`30 days (2592000 s)`, `1 hour (3600 s)`, `45.0 s`: a step's size, unsigned."""
    seconds = abs(seconds)
    whole = round(seconds)  # a step measured is a hair off the one made
    for unit, name in _UNITS:
        if whole >= unit:
            count = round(whole / unit, 1)
            return f"{count:g} {name}{'' if count == 1 else 's'} ({whole} s)"
    return f"{seconds:.1f} s"


class ClockSteps:
    """Says whether the system clock was set since it was last asked."""

    def __init__(self) -> None:
        self._seen = stepped()

    def new_step(self) -> float:
        """How far the clock was set since the last call (seconds, > 0: forward); 0.0 when it
        was not."""
        now = stepped()
        step = now - self._seen
        if abs(step) < STEP_S:
            return 0.0
        self._seen = now
        return step

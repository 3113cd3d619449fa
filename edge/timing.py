"""Rolling latency windows and RFC 3339 timestamps for payloads."""

from __future__ import annotations

import threading
import time
from collections import deque
from datetime import datetime, timezone

import numpy as np


def rfc3339(ts: float) -> str:
    """`2026-11-29T07:14:51.123Z` for a Unix time in seconds."""
    moment = datetime.fromtimestamp(ts, tz=timezone.utc)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


class AtMostEvery:
    """Whether something that keeps happening (a camera's skipped snapshots, its frames
    changing size) is said now: the first time, then at most once every `period_s` seconds.
    `due()` counts an occurrence and returns how many there were since it was last said,
    this one included, when it is to be said now; else None."""

    def __init__(self, period_s: float) -> None:
        self.period_s = period_s
        self._said_at: float | None = None  # time.monotonic()
        self._unsaid = 0

    def due(self) -> int | None:
        self._unsaid += 1
        now = time.monotonic()
        if self._said_at is not None and now - self._said_at < self.period_s:
            return None
        said, self._said_at, self._unsaid = self._unsaid, now, 0
        return said


class StageTimes:
    """Per-stage latency samples (milliseconds) over the last `window` frames."""

    def __init__(self, window: int = 300) -> None:
        self._samples: dict[str, deque[float]] = {}
        self._window = window
        self._lock = threading.Lock()

    def add(self, stage: str, milliseconds: float) -> None:
        with self._lock:
            samples = self._samples.get(stage)
            if samples is None:
                samples = self._samples[stage] = deque(maxlen=self._window)
            samples.append(milliseconds)

    def snapshot(self) -> dict[str, list[float]]:
        """The samples now in the window, per stage."""
        with self._lock:
            return {stage: list(values) for stage, values in self._samples.items()}

    def percentiles(self) -> dict[str, dict[str, float]]:
        """{stage: {"p50": ms, "p90": ms, "p99": ms}} over the window."""
        return percentiles_of(self.snapshot())


def percentiles_of(samples: dict[str, list[float]]) -> dict[str, dict[str, float]]:
    """{stage: {"p50": ms, "p90": ms, "p99": ms}} of per-stage samples (empty stages left out)."""
    return {
        stage: {f"p{q}": round(float(np.percentile(values, q)), 2) for q in (50, 90, 99)}
        for stage, values in samples.items() if values
    }


class RateMeter:
    """Events per second over the last `window` events within the last `horizon_s` seconds.

    The rate decays once events stop (the silence since the last one counts once it is longer
    than the average gap) and is 0 after `horizon_s` without events: a dead camera must not
    keep showing its old FPS. Events stopped on purpose (`stop`) keep the rate they had then:
    the last figures a stopped daemon leaves retained are those it ran at."""

    def __init__(self, window: int = 60, horizon_s: float = 10.0) -> None:
        self._times: deque[float] = deque(maxlen=window)
        self._horizon_s = horizon_s
        self._stopped_at: float | None = None
        self._began: float | None = None  # the first event's time, since the last `clear`

    def tick(self) -> None:
        now = time.monotonic()
        if self._began is None:
            self._began = now
        self._times.append(now)

    def stop(self) -> None:
        """From now on the rate is the one at this moment (the first call counts)."""
        if self._stopped_at is None:
            self._stopped_at = time.monotonic()

    def rate(self) -> float:
        now = time.monotonic() if self._stopped_at is None else self._stopped_at
        return self._rate_at(now)

    def rate_up_to_last(self) -> float:
        """The rate as of the last event, without the silence since: what a source that has
        gone quiet ran at (0 with fewer than two events)."""
        times = list(self._times)
        return self._rate_at(times[-1]) if times else 0.0

    def clear(self) -> None:
        """Forget the events so far: a rate after an outage must not span it."""
        self._times.clear()
        self._began = None

    def _rate_at(self, now: float) -> float:
        """Events a second as of `now`: the lower of the rate over the window (the silence
        since the last event counted, so it decays) and the rate over its later half, which
        leaves out a burst at its start, as when a stream that just opened delivers the
        frames its server buffered (a 15 fps camera read 34 fps a second after reconnecting).
        Not a median gap: frames that come in pairs would read at half their rate."""
        times = [t for t in list(self._times) if now - t <= self._horizon_s]
        if len(times) < 2 or times[-1] == times[0]:
            return 0.0
        span = times[-1] - times[0]
        gaps = len(times) - 1
        # while the events began less than a tenth of the horizon ago, over that tenth at
        # least: a few frames close together (what a stream that just reopened hands over
        # first) say nothing of the rate (a 15 fps camera read 57 fps in the stats sent as it
        # came back), so a rate this young reads low, not high. Past it, the window alone: a
        # floor for good capped a 400 fps recording at 59 fps (its 60 events' rate over 1 s)
        young = self._began is not None and now - self._began < self._horizon_s / 10
        floor = self._horizon_s / 10 if young else 0.0
        over_window = gaps / max(span, now - times[0] - span / gaps, floor)
        later = times[len(times) // 2:]
        if len(later) < 2 or later[-1] == later[0]:
            return over_window
        return min(over_window, (len(later) - 1) / (later[-1] - later[0]))

"""Whether the device keeps up with its cameras.

A camera's newest frame replaces one that inference has not taken yet (`LatestFrame`), so a
device with more work than its cores can do drops frames instead of falling behind in time:
it stays responsive, and without a word it processes a fraction of what its cameras deliver
(a user check: 8 cameras at 60 FPS on 2 cores, 7 FPS each processed, 80% of frames dropped,
latency 295 ms, the device `online` and nothing logged). A camera whose dropped share of the
frames its source delivered stays at or above `BEHIND_SHARE` over `WINDOW_S` is behind; it is
caught up again once the share falls to `CAUGHT_UP_SHARE`. A window counts only the frames of
one spell of streaming, from `OPENING_S` after the stream (re)opened: a stream's opening can
deliver a burst of buffered frames that replace each other at once (a user check: 80 dropped
in the 1.6 s after an RTSP camera came back, said as "not keeping up" on an idle device).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

#: Seconds of frames a camera's share is measured over.
WINDOW_S = 30.0
#: Dropped share of the delivered frames from which a camera is behind...
BEHIND_SHARE = 0.25
#: ... and up to which it has caught up again (between the two, it stays as it was).
CAUGHT_UP_SHARE = 0.05
#: Fewer delivered frames over a window say nothing (a camera that is down, or just started).
MIN_DELIVERED = 30
#: Seconds after a stream (re)opened whose frames no window counts (its opening burst).
OPENING_S = 5.0


@dataclass(frozen=True)
class Counts:
    """A camera's running totals: frames processed, frames dropped; and when (monotonic
    seconds) its current spell of streaming began, None while it is not streaming."""

    frames: int
    dropped: int
    streaming_since: float | None


@dataclass(frozen=True)
class Window:
    """A camera's frames over one window: processed and delivered (processed + dropped) a
    second, and the dropped share of the delivered (0..1)."""

    processed_fps: float
    delivered_fps: float
    share: float


@dataclass(frozen=True)
class Change:
    """Cameras that fell behind or caught up at one observation, with each behind camera's
    window."""

    fell_behind: dict[str, Window]
    caught_up: list[str]


class KeepingUp:
    """Fed every camera's running totals now and then (`observe`), says which are behind."""

    def __init__(self, window_s: float = WINDOW_S) -> None:
        self.window_s = window_s
        self._samples: dict[str, deque[tuple[float, Counts]]] = {}
        self._behind: dict[str, float] = {}
        self._keeping_up: set[str] = set()  # cameras a window showed keeping up, since

    def observe(self, now: float, cameras: Mapping[str, Counts]) -> Change:
        """Record the totals at `now` (monotonic seconds); returns what changed."""
        fell, caught = {}, []
        for name, counts in cameras.items():
            samples = self._samples.setdefault(name, deque())
            if samples and samples[-1][1].streaming_since != counts.streaming_since:
                samples.clear()  # another spell of streaming, or none: a window afresh
                self._keeping_up.discard(name)
            opened = counts.streaming_since
            if opened is not None and now - opened < OPENING_S:
                continue  # its opening burst is no sign of load
            samples.append((now, counts))
            while len(samples) > 2 and now - samples[1][0] >= self.window_s:
                samples.popleft()  # the oldest kept is the last one a full window back
            window = self._window(samples)
            if window is None:
                continue
            if name not in self._behind and window.share >= BEHIND_SHARE:
                fell[name] = window
                self._behind[name] = window.share
                self._keeping_up.discard(name)
            elif name in self._behind and window.share <= CAUGHT_UP_SHARE:
                del self._behind[name]
                caught.append(name)
            elif name in self._behind:
                self._behind[name] = window.share
            if window.share <= CAUGHT_UP_SHARE:
                self._keeping_up.add(name)
        return Change(fell, caught)

    def keeping_up(self, name: str) -> bool | None:
        """False while camera `name` is behind, True once a window showed it keeping up (at
        most `CAUGHT_UP_SHARE` dropped), None before either (a user check: a camera dropping
        18% read true, then fell behind)."""
        if name in self._behind:
            return False
        return True if name in self._keeping_up else None

    def behind(self) -> dict[str, float]:
        """Each behind camera's dropped share over its last window."""
        return dict(self._behind)

    def _window(self, samples: deque[tuple[float, Counts]]) -> Window | None:
        (first_at, first), (last_at, last) = samples[0], samples[-1]
        seconds = last_at - first_at
        if seconds < self.window_s:
            return None
        dropped = last.dropped - first.dropped
        processed = last.frames - first.frames
        delivered = processed + dropped
        if delivered < MIN_DELIVERED:
            return None
        return Window(processed / seconds, delivered / seconds, dropped / delivered)


def behind_warning(windows: Mapping[str, Window], stats: Mapping[str, Mapping[str, Any]],
                   window_s: float) -> str:
    """The warning for cameras that fell behind: each one's processed and delivered rates and
    dropped share over the window (`windows`: the rates said before were the instant ones,
    "12.0 of the 12.0 frames a second (32% dropped)"), its latency (from its `stats`), and
    what to change."""
    cameras = []
    for name, window in windows.items():
        camera = stats.get(name, {})
        total = camera.get("latency_ms", {}).get("total", {}).get("p50")
        latency = f", latency p50 {total:.0f} ms" if total is not None else ""
        cameras.append(f"{name} processed {window.processed_fps:.1f} of the "
                       f"{window.delivered_fps:.1f} frames a second its source "
                       f"delivered ({100 * window.share:.0f}% dropped{latency})")
    which = "camera {} is" if len(windows) == 1 else "cameras {} are"
    return (f"{which.format(', '.join(windows))} not keeping up over the last {window_s:.0f} s: "
            f"{'; '.join(cameras)}. The device has more work than it can do, and drops "
            "frames rather than fall behind: give it fewer cameras or frames (a lower fps= on "
            "a source), a faster model (an INT8 one from `edge calibrate`, a smaller input), "
            "or, for a model with a dynamic batch, model.max_batch (`edge bench` measures "
            "what this device takes)")


def caught_up_line(names: Sequence[str]) -> str:
    """The line for cameras that keep up again."""
    if len(names) == 1:
        return f"camera {names[0]} keeps up with its source again"
    return f"cameras {', '.join(names)} keep up with their sources again"

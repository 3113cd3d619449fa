"""Which frames are worth a human look: sampling policies and the limits that bound them.

Roboflow-style active learning on the device. Each policy looks at one frame's detections and
says why the frame is worth labelling (`interval`, `detection`, `snapshot`, `uncertain`, `rare`,
`count_change`, `audit`); a frame is sampled when any policy fires and the rate limits allow it.
The audit draw is made for every frame before any limit, so the audit sample stays an unbiased
Bernoulli sample of the frames the camera saw (as long as the limits rarely bite: a cap that
refuses draws is warned about once); its draws and its hits are counted for the accuracy
estimate's interval.

Decisions need the frame's detections, which the loop only knows after inference; the loop keeps
a copy of the pixels while `wants_copy` says a sample may still be taken (not rate-limited).
"""

from __future__ import annotations

import logging
import threading
import zlib
from collections import Counter, deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

from edge.config import FramesConfig, SamplingConfig, SamplingLimits
from edge.detections import Detections
from edge.errors import ConfigError
from edge.wording import not_labels_of_the_model

log = logging.getLogger(__name__)

MINUTE, HOUR, DAY = 60.0, 3600.0, 86400.0

REASONS = ("snapshot", "interval", "detection", "uncertain", "rare", "count_change", "audit")
#: Reasons that hold for as long as what caused them stays in view: one sample per min_gap_s.
GAPPED = ("uncertain", "rare")


class SlidingCounts:
    """Events (with a weight) in sliding windows of a minute, an hour and a day."""

    def __init__(self) -> None:
        self._events: deque[tuple[float, int]] = deque()

    def total(self, now: float, window: float) -> int:
        self._forget(now)
        return sum(weight for ts, weight in self._events if ts > now - window)

    def count(self, now: float, window: float) -> int:
        self._forget(now)
        return sum(1 for ts, _ in self._events if ts > now - window)

    def add(self, now: float, weight: int = 1) -> None:
        self._events.append((now, weight))

    def _forget(self, now: float) -> None:
        while self._events and self._events[0][0] <= now - DAY:
            self._events.popleft()


class RateLimiter:
    """Per-minute/hour/day sample counts and a byte budget per hour (sliding windows)."""

    def __init__(self, limits: SamplingLimits) -> None:
        self.limits = limits
        self._samples = SlidingCounts()
        self._bytes = SlidingCounts()
        self.refused = 0
        self.over_budget = 0

    def allows_sample(self, now: float) -> bool:
        lim = self.limits
        for limit, window in ((lim.per_minute, MINUTE), (lim.per_hour, HOUR), (lim.per_day, DAY)):
            if limit is not None and self._samples.count(now, window) >= limit:
                return False
        return True

    def take_sample(self, now: float) -> bool:
        """Count a sample if the limits allow it."""
        if not self.allows_sample(now):
            return self.refuse()
        self._samples.add(now)
        return True

    def refuse(self) -> bool:
        """Count a sample the limits refused; False."""
        self.refused += 1
        return False

    def spend_bytes(self, now: float, size: int) -> bool:
        """Spend `size` bytes of this hour's budget; False (nothing spent) when it would overrun."""
        budget = self.limits.bytes_per_hour
        if budget is not None and self._bytes.total(now, HOUR) + size > budget:
            self.over_budget += 1
            return False
        self._bytes.add(now, size)
        return True

    def bytes_this_hour(self, now: float) -> int:
        return self._bytes.total(now, HOUR)


@dataclass
class AuditCounts:
    """Frames offered to the audit draw and frames it picked (for a binomial interval)."""

    frames: int = 0
    drawn: int = 0


@dataclass
class _CountTracker:
    steady_frames: int
    steady: int | None = None
    candidate: int = -1
    seen: int = 0

    def changed(self, count: int) -> bool:
        """True once, when a count different from the steady one has lasted `steady_frames`."""
        if count != self.candidate:
            self.candidate, self.seen = count, 0
        self.seen += 1
        if self.seen < self.steady_frames or count == self.steady:
            return False
        first = self.steady is None
        self.steady = count
        return not first


def audit_seed(seed: int | None, camera: str) -> int | list[int] | None:
    """The audit draw's seed for `camera`: `[sampling] seed` set for every camera gave each
    the same draws, so cameras running alike were audited on the same frames (a user check);
    the camera's name now makes its own stream of it. None: fresh entropy, as without a seed."""
    if seed is None or not camera:
        return seed
    return [seed, zlib.crc32(camera.encode())]


@dataclass
class SamplingPolicy:
    """Decides the reasons to sample one camera's frames; not thread-safe except
    `request_snapshot` (called from the MQTT thread)."""

    frames: FramesConfig
    sampling: SamplingConfig
    labels: Sequence[str]
    threshold: float = 0.0  # the operating score threshold: detections below it are not published
    key: str = "sampling"  # where the settings come from, for messages (cameras.0.sampling)
    #: The camera sampled: with a `seed`, each camera draws its own audit frames from it
    camera: str = ""
    limiter: RateLimiter = field(init=False)
    audit: AuditCounts = field(default_factory=AuditCounts)
    sampled: Counter[str] = field(default_factory=Counter)

    def __post_init__(self) -> None:
        unknown = [name for name in self.sampling.rare_labels if name not in self.labels]
        if unknown:
            raise ConfigError(f"{self.key}.rare_labels: "
                              f"{not_labels_of_the_model(unknown, self.labels)}; fix the names "
                              "or remove them")
        self.limiter = RateLimiter(self.sampling.limits)
        # the audit draw has count caps of its own: samples for other reasons (a rare label in
        # view for minutes) would otherwise use up the caps and thin the audit sample exactly
        # when the scene is busy, the uniform sample field accuracy rests on
        self.audit_limiter = RateLimiter(self.sampling.limits)
        self._last_taken: dict[str, float] = {}  # reason -> when a sample was last taken for it
        self._rng = np.random.default_rng(audit_seed(self.sampling.seed, self.camera))
        self._rare_ids = {self.labels.index(name) for name in self.sampling.rare_labels}
        self._class_counts = np.zeros(len(self.labels), np.int64)
        self._counts = _CountTracker(self.sampling.count_steady_frames)
        self._snapshot = threading.Event()
        self._audit_capped_said = False

    def request_snapshot(self) -> None:
        self._snapshot.set()

    def stats(self) -> dict[str, Any]:
        """Samples per reason, what the limits refused, and the audit draw (frames, drawn)."""
        return {"sampled": dict(self.sampled), "refused": self.limiter.refused,
                "over_budget": self.limiter.over_budget,
                "audit": {"frames": self.audit.frames, "drawn": self.audit.drawn,
                          "refused": self.audit_limiter.refused}}

    @property
    def decode_threshold(self) -> float:
        """The score the decoder keeps detections from: the uncertainty band's floor when it
        lies below the operating threshold, so the band can see both sides of it."""
        band = self.sampling.uncertain_band
        return min(band[0], self.threshold) if band is not None else self.threshold

    def split(self, detections: Detections) -> tuple[Detections, Detections]:
        """(published: score >= threshold, seen only by the samplers: below it)."""
        if self.decode_threshold >= self.threshold or not len(detections):
            return detections, Detections.empty()
        keep = detections.scores >= self.threshold
        return _subset(detections, keep), _subset(detections, ~keep)

    def wants_copy(self, now: float) -> bool:
        """Whether the loop should keep this frame's pixels until its detections are known."""
        if self._snapshot.is_set():
            return True
        f, s = self.frames, self.sampling
        if s.audit_rate > 0 and self.audit_limiter.allows_sample(now):
            return True
        if not self.limiter.allows_sample(now):
            return False
        return bool(
            (f.interval_s and self._waited("interval", now, f.interval_s))
            or (f.on_detection and self._waited("detection", now, f.min_gap_s))
            or s.uncertain_band is not None or s.rare_labels or s.rare_below is not None
            or s.count_change or s.audit_rate > 0)

    def reasons(self, now: float, detections: Detections,
                below: Detections | None = None, copied: bool = True) -> list[str]:
        """Every policy's verdict on this frame, then the limits; [] means do not sample.
        `below`: the frame's detections under the threshold (see `split`), which only the
        uncertainty band looks at. `copied`: whether the loop kept this frame's pixels
        (`wants_copy`); a frame it did not keep takes nothing (no snapshot request, interval
        or limit), so a snapshot asked for after its pixels were let go goes to the next frame
        instead of being answered by none.

        Call once per frame, in frame order: the audit draw, class frequencies and the object
        count are updated on every call."""
        found = self._policy_reasons(now, detections, below)
        if "audit" in found and not (self.audit_limiter.take_sample(now) if copied
                                     else self.audit_limiter.refuse()):
            # over the audit's own caps (a frame not copied was over them when it arrived), so
            # every draw is sampled or refused; the other reasons may still be
            found.remove("audit")
            self._say_audit_capped()
        if not copied:
            # the loop let the pixels go because the caps were full when the frame came: a
            # sample a policy asks for is refused (a snapshot waits for the next frame)
            if any(reason != "snapshot" for reason in found):
                self.limiter.refuse()
                self._wait_after_refusal(now, found)
            return []
        if not found:
            return []
        # a frame drawn for the audit is taken on the audit's caps, the other reasons riding
        # along; a snapshot asked for is taken whatever the limits
        if "audit" not in found and "snapshot" not in found and not self.limiter.take_sample(now):
            self._wait_after_refusal(now, found)
            return []
        self.sampled.update(found)
        self._taken(now, found)
        return found

    def _say_audit_capped(self) -> None:
        """Once: a cap that refuses audit draws takes each period's first draws and none
        after, so the audit sample bunches at the start of each period (a user check)."""
        if self._audit_capped_said:
            return
        self._audit_capped_said = True
        caps = ", ".join(f"{name} {value}" for name, value in (
            ("per_minute", self.sampling.limits.per_minute),
            ("per_hour", self.sampling.limits.per_hour),
            ("per_day", self.sampling.limits.per_day)) if value is not None)
        # once a camera: the caps are each camera's (a user check: six cameras' six warnings
        # read as one repeated, naming none)
        camera = f"camera {self.camera}: " if self.camera else ""
        log.warning("%s%s: audit draws (audit_rate %g) reached the caps (%s.limits: %s): past "
                    "a cap each period's first draws are kept and the rest dropped, so the "
                    "audit sample is no longer spread evenly over the frames; lower audit_rate "
                    "well under a cap over the frames its period brings (per_minute / (fps x "
                    "60))", camera, self.key, self.sampling.audit_rate, self.key, caps)

    def _wait_after_refusal(self, now: float, found: list[str]) -> None:
        """Start the waits of the reasons of a sample the limits refused, as a taken one's
        (a snapshot asked for waits for the next frame): the interval sample refused is that
        interval's one, counted once, not again on every frame until the caps lift (a user
        check: `refused` grew 15 a second at 15 fps under per_minute 6)."""
        self._last_taken.update(dict.fromkeys((r for r in found if r != "snapshot"), now))

    def _taken(self, now: float, found: list[str]) -> None:
        """Start the waits of the reasons a sample was taken for."""
        if "snapshot" in found:
            self._snapshot.clear()
        self._last_taken.update(dict.fromkeys(found, now))

    def _waited(self, reason: str, now: float, gap: float) -> bool:
        """Whether `gap` seconds have passed since a sample was last taken for `reason`."""
        return now - self._last_taken.get(reason, -float("inf")) >= gap

    def _policy_reasons(self, now: float, detections: Detections,
                        below: Detections | None) -> list[str]:
        f, s = self.frames, self.sampling
        found: list[str] = []
        if self._snapshot.is_set():
            found.append("snapshot")
        if f.interval_s and self._waited("interval", now, f.interval_s):
            found.append("interval")
        if f.on_detection and len(detections) and self._waited("detection", now, f.min_gap_s):
            found.append("detection")
        if s.uncertain_band is not None and (
                uncertain(detections, s.uncertain_band)
                or (below is not None and uncertain(below, s.uncertain_band))):
            found.append("uncertain")
        if self._rare(detections):  # counts every frame's classes: called whatever the gap
            found.append("rare")
        # a rare object or an uncertain one stays in view for many frames: one sample each
        # `min_gap_s`, as for detections, not every frame until the caps are used up
        found = [r for r in found if r not in GAPPED or self._waited(r, now, f.min_gap_s)]
        if s.count_change and self._counts.changed(len(detections)):
            found.append("count_change")
        if s.audit_rate > 0:
            self.audit.frames += 1
            if self._rng.random() < s.audit_rate:
                self.audit.drawn += 1
                found.append("audit")
        return found

    def _rare(self, detections: Detections) -> bool:
        classes = detections.class_ids
        rare = bool(self._rare_ids) and any(int(c) in self._rare_ids for c in classes)
        below = self.sampling.rare_below
        if below is not None and len(classes):
            total = int(self._class_counts.sum())
            share = self._class_counts[classes] / max(total, 1)
            # Until a camera has seen enough detections every class looks rare: wait for 100.
            rare = rare or (total >= 100 and bool((share < below).any()))
        np.add.at(self._class_counts, classes[(classes >= 0) & (classes < len(self.labels))], 1)
        return rare


def uncertain(detections: Detections, band: Sequence[float]) -> bool:
    """Whether any detection's score lies in [low, high]."""
    scores = detections.scores
    return bool(((scores >= band[0]) & (scores <= band[1])).any())


def _subset(detections: Detections, mask: npt.NDArray[np.bool_]) -> Detections:
    return Detections(detections.boxes[mask], detections.scores[mask], detections.class_ids[mask])

"""ByteTrack-style association (Zhang et al., 2022): Kalman prediction, then two matching stages.

Stage one matches confident detections to every live track (tracked and recently lost). Stage
two matches the low-scoring rest to tracks still unmatched: an occluded or blurred object scores
low but is still where the track predicts it, and dropping those boxes is what breaks tracks in
simpler trackers. A new detection becomes a track only once it is seen on `min_hits` frames in a
row (a duplicate box that NMS let through for a frame or two never becomes an object), and a
track that goes unseen for `max_disappeared` frames ends. Matching costs O(tracks x
detections) per frame; the assignment itself is scipy's `linear_sum_assignment`.

Association ignores the class, as ByteTrack does, with a small cost for a class change so that
the same class wins a tie: a detector that calls one object a circle on one frame and a square
on the next must not split it into two objects. A track's class is the score-weighted vote of
its detections. A box that lies on a box already matched this frame (`duplicate_iou`) starts no
track: it is the same object detected twice under two labels, which class-aware NMS keeps.

A classifier's detections all have the frame as their box, so where they are says nothing and
their class is everything: with `class_aware`, a detection matches only a track of its class
and a box of another class is no duplicate. Each class present is then one object: its `new`
when the class appears, its `end` once the class has gone unseen for `max_disappeared` frames.
"""

from __future__ import annotations

import threading
from collections import deque
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt
from scipy.optimize import linear_sum_assignment

from edge.detections import Detections
from edge.postprocess import iou_matrix
from edge.tracking.kalman import KalmanBoxes, xyah_from_xyxy

Indices = npt.NDArray[np.intp]

#: Scores of its last detections each track keeps (for the events' reporting rule).
RECENT_SCORES = 10


@dataclass(frozen=True)
class TrackerSettings:
    """Thresholds on detection scores (0..1), IoU and frame counts."""

    high_score: float = 0.5
    low_score: float = 0.1
    new_track_score: float = 0.6
    match_iou: float = 0.2  # stage one and new tracks' second frame
    low_match_iou: float = 0.5  # stage two: a low score needs a tight fit
    max_disappeared: int = 30  # frames a track survives unseen
    min_hits: int = 3  # consecutive frames before a new track is confirmed
    duplicate_iou: float = 0.6  # an unmatched box overlapping a matched one this much is a copy
    class_change_cost: float = 0.2  # added to 1 - IoU when a detection's class differs
    class_aware: bool = False  # match only within a class (a classifier's whole-frame boxes)


@dataclass
class TrackedObject:
    """One track. `track_id` is 0 until the track is confirmed (seen on `min_hits` frames)."""

    track_id: int
    class_id: int
    box: npt.NDArray[np.float32]  # x1 y1 x2 y2, source pixels: the last matched detection
    score: float
    top_score: float
    first_frame: int
    last_frame: int  # the last frame with a matched detection
    disappeared: int = 0  # frames since last_frame
    hits: int = 1  # frames with a matched detection
    votes: dict[int, float] = field(default_factory=dict)  # class id -> summed scores
    first_ts: float = 0.0  # capture time of the first frame, seconds since the epoch
    recent: deque[float] = field(default_factory=lambda: deque(maxlen=RECENT_SCORES))

    @property
    def confirmed(self) -> bool:
        return self.track_id > 0

    def vote(self, class_id: int, score: float) -> None:
        """Count a detection of `class_id`; the class with the most summed score wins."""
        self.votes[class_id] = self.votes.get(class_id, 0.0) + score
        self.class_id = max(self.votes, key=self.votes.__getitem__)


class TrackIds:
    """Track ids, 1, 2, 3... handed out to the trackers of every camera of a device (thread
    safe): an event id, `<start ms>-<track id>`, is then unique per device (a user check: two
    cameras whose first objects started in the same millisecond both had 1796653982199-1)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._next = 1

    def __call__(self) -> int:
        with self._lock:
            track_id, self._next = self._next, self._next + 1
            return track_id


class ByteTracker:
    """Feed `update(detections)` once per frame, in order; read `objects` and `ended`.
    `track_ids`: where confirmed tracks take their ids (a device's cameras share one);
    its own otherwise."""

    def __init__(self, settings: TrackerSettings | None = None,
                 track_ids: TrackIds | None = None) -> None:
        self.settings = settings or TrackerSettings()
        self._track_ids = track_ids or TrackIds()
        self.objects: list[TrackedObject] = []  # live tracks, in the Kalman filter's row order
        self.ended: list[TrackedObject] = []  # confirmed tracks that ended on the last update
        self._kalman = KalmanBoxes()
        self._predicted = np.zeros((0, 4), np.float32)  # this frame's predicted boxes
        self._frame = 0

    def update(self, detections: Detections, ts: float = 0.0) -> npt.NDArray[np.int64]:
        """Advance one frame (captured at `ts`, seconds since the epoch). Returns the track id
        of each detection [K] (0: not tracked)."""
        self._frame += 1
        self._kalman.predict()
        self._predicted = self._kalman.boxes().astype(np.float32)
        owner = np.full(len(detections), -1, np.intp)  # detection -> row in self.objects
        s = self.settings
        scores = detections.scores
        high = np.flatnonzero(scores >= s.high_score)
        low = np.flatnonzero((scores >= s.low_score) & (scores < s.high_score))
        rows = np.arange(len(self.objects))
        confirmed = np.array([o.confirmed for o in self.objects], bool)
        recent = np.array([o.disappeared == 0 for o in self.objects], bool)
        first, high_left = self._match(rows[confirmed], high, detections, s.match_iou, owner)
        tracked_left = first[recent[first]] if len(first) else first
        self._match(tracked_left, low, detections, s.low_match_iou, owner)
        _, high_left = self._match(rows[~confirmed], high_left, detections, s.match_iou, owner)
        high_left = self._not_duplicates(high_left, owner, detections)
        self._apply(owner, detections)
        owners = [self.objects[r] if r >= 0 else None for r in owner]
        self._retire()
        for d, item in self._start(high_left[scores[high_left] >= s.new_track_score],
                                   detections, ts):
            owners[d] = item
        return np.array([0 if o is None else o.track_id for o in owners], np.int64)

    def _match(self, rows: Indices, candidates: Indices, detections: Detections,
               min_iou: float, owner: Indices) -> tuple[Indices, Indices]:
        """Assign `candidates` (detection indices) to track `rows`; record pairs in `owner`.
        Returns the rows and the candidates left unmatched."""
        if not len(rows) or not len(candidates):
            return rows, candidates
        predicted = self._predicted[rows]
        ious = iou_matrix(predicted, detections.boxes[candidates])
        classes = np.array([self.objects[r].class_id for r in rows])
        changed = classes[:, None] != detections.class_ids[candidates][None, :]
        if self.settings.class_aware:  # below any min_iou: never a pair
            ious = np.where(changed, 0.0, ious)
        pairs_r, pairs_c = linear_sum_assignment(1.0 - ious + self.settings.class_change_cost
                                                 * changed)
        good = ious[pairs_r, pairs_c] >= min_iou
        owner[candidates[pairs_c[good]]] = rows[pairs_r[good]]
        used_r = np.zeros(len(rows), bool)
        used_c = np.zeros(len(candidates), bool)
        used_r[pairs_r[good]] = True
        used_c[pairs_c[good]] = True
        return rows[~used_r], candidates[~used_c]

    def _not_duplicates(self, candidates: Indices, owner: Indices,
                        detections: Detections) -> Indices:
        """Candidates for new tracks that are not a copy of a matched detection or of a
        better-scoring candidate (class-agnostic, greedy by score)."""
        if not len(candidates):
            return candidates
        taken = list(np.flatnonzero(owner >= 0))
        kept = []
        for d in candidates[np.argsort(-detections.scores[candidates], kind="stable")]:
            rivals = [t for t in taken if not self.settings.class_aware
                      or detections.class_ids[t] == detections.class_ids[d]]
            if rivals and iou_matrix(detections.boxes[d:d + 1], detections.boxes[rivals]).max() \
                    >= self.settings.duplicate_iou:
                continue
            kept.append(d)
            taken.append(d)
        return np.array(sorted(kept), np.intp)

    def _apply(self, owner: Indices, detections: Detections) -> None:
        matched = np.flatnonzero(owner >= 0)
        rows = owner[matched]
        self._kalman.update(rows, xyah_from_xyxy(detections.boxes[matched]))
        seen = np.zeros(len(self.objects), bool)
        seen[rows] = True
        for d, r in zip(matched, rows, strict=True):
            item = self.objects[r]
            item.box = detections.boxes[d].copy()
            item.score = float(detections.scores[d])
            item.last_frame, item.disappeared = self._frame, 0
            item.hits += 1
            item.vote(int(detections.class_ids[d]), item.score)
            item.recent.append(item.score)
            item.top_score = max(item.top_score, item.score)
            if not item.confirmed and item.hits >= self.settings.min_hits:
                item.track_id = self._track_ids()
        for r in np.flatnonzero(~seen):
            self.objects[r].disappeared += 1

    def _retire(self) -> None:
        """Drop tentative tracks not seen again and confirmed ones unseen for too long."""
        limit = self.settings.max_disappeared
        keep = np.array([(o.confirmed and o.disappeared <= limit) or o.disappeared == 0
                         for o in self.objects], bool)
        self.ended = [o for o, k in zip(self.objects, keep, strict=True)
                      if not k and o.confirmed]
        self.objects = [o for o, k in zip(self.objects, keep, strict=True) if k]
        self._kalman.keep(keep)

    def _start(self, new: Indices, detections: Detections, ts: float
               ) -> list[tuple[int, TrackedObject]]:
        """Tentative tracks for detections `new`; returns (detection index, track) pairs."""
        if not len(new):
            return []
        self._kalman.add(xyah_from_xyxy(detections.boxes[new]))
        started = []
        for d in new:
            score = float(detections.scores[d])
            class_id = int(detections.class_ids[d])
            item = TrackedObject(0, class_id, detections.boxes[d].copy(), score, score,
                                 self._frame, self._frame, votes={class_id: score},
                                 first_ts=ts)
            item.recent.append(score)
            self.objects.append(item)
            started.append((int(d), item))
        return started

    def finish(self) -> list[TrackedObject]:
        """End every confirmed track (the camera stopped); returns them."""
        ended = [o for o in self.objects if o.confirmed]
        self.objects, self.ended = [], ended
        self._kalman.keep(np.zeros(len(self._kalman), bool))
        return ended

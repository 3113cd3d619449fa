"""Object events and counts of one camera, from its tracker's state after every frame.

An object's life is one `new`, rate-limited `update`s (only on a frame that saw it, when its
zones, top score or label changed) and one `end` once it has gone unseen for `max_disappeared`
frames.
A track becomes an object only once it has `MIN_SCORES` detections and the median of its recent
scores reaches `event_score`, as Frigate does: a false detection that survives a few frames is
tracked, but never reported. The `new` event's `start` is when the track was first seen; the
event itself waits, at most two `snapshot_interval_s`, for a frame the camera held for
snapshots, so that it carries one. Each event carries the object's best snapshot so far; the
JPEG itself goes to a retained topic per event, and only the newest `RETAINED_SNAPSHOTS` stay
retained per camera, so the broker's store stays bounded (across restarts too: the daemon hands
over what earlier runs left, see `adopt_retained`).
Counts (objects present now, per label and per zone and label) are retained and sent on change;
an object counts from its `new` event to its `end`.
Events and counts are at-least-once (the outbox); snapshots are best effort, like frames: one
the broker never got takes none of the places kept (`retained`), and clearing one beyond them
waits for a broker that is away, as a count does.
"""

from __future__ import annotations

import json
import threading
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import cv2
import numpy as np
import numpy.typing as npt

from edge.clock import stepped
from edge.mqtt.topics import CONTRACT_VERSION, RETAINED_SNAPSHOTS, Topics
from edge.objects_config import TrackingConfig
from edge.timing import rfc3339
from edge.tracking.bytetrack import TrackedObject
from edge.zones import Zone, anchor_points

#: Scores a track needs before it can be reported (a median of two is not evidence).
MIN_SCORES = 5

#: Pixels of context around the object in its snapshot, as a fraction of the box size.
SNAPSHOT_MARGIN = 0.25


#: How a message goes out: through the outbox (at least once, in order with detections), as a
#: retained state (its latest value at least once: `edge.mqtt.states`), or best effort (only
#: while connected).
Delivery = Literal["outbox", "state", "best-effort"]


@dataclass(frozen=True)
class Outgoing:
    """One message to publish."""

    topic: str
    payload: bytes
    qos: int
    retain: bool
    delivery: Delivery


@dataclass
class _Snapshot:
    image: npt.NDArray[np.uint8]  # a crop of the source frame, BGR
    frame_id: int
    score: float
    box: list[float]


@dataclass
class _Life:
    event_id: str
    start: float  # first seen
    reported_at: float  # when the track became an object
    last_seen: float
    zones: list[str] = field(default_factory=list)
    entered: list[str] = field(default_factory=list)
    sent_at: float = 0.0
    sent_zones: list[str] = field(default_factory=list)
    sent_top: float = 0.0
    sent_class: int = -1  # the class its last event named
    best: _Snapshot | None = None
    published_score: float = -1.0  # score of the snapshot on the topic
    announced: bool = False  # its `new` event sent


class EventEngine:
    """Turns tracker state into event, snapshot and count messages for one camera."""

    def __init__(self, camera: str, topics: Topics, labels: Sequence[str], zones: Sequence[Zone],
                 settings: TrackingConfig,
                 reports: Callable[[int], bool] = lambda class_id: True,
                 event_scores: Mapping[int, float] | None = None) -> None:
        """`reports`: whether the camera reports a class (`edge.object_filter`); the others
        get no count or label snapshot topics. `event_scores`: class id -> the median score
        its tracks need for events, where it is not `settings.event_score`."""
        self.camera = camera
        self.topics = topics
        self.labels = list(labels)
        self._reports = reports
        self._event_scores = dict(event_scores or {})
        self.zones = list(zones)
        self.settings = settings
        self._lives: dict[int, _Life] = {}
        self._counts: dict[str, int] | None = None
        self.count_topics = self._count_topics()
        #: the label snapshot topics this camera keeps retained (the newest of each label)
        self.label_snapshot_topics = frozenset(self.topics.label_snapshot(camera, label)
                                               for c, label in enumerate(labels) if reports(c))
        self._retained: deque[str] = deque()  # snapshot topics, oldest first
        self._retained_lock = threading.Lock()  # adopt_retained runs on another thread
        self.events_sent = 0

    def update(self, frame_id: int, ts: float, objects: Sequence[TrackedObject],
               ended: Sequence[TrackedObject],
               image: npt.NDArray[np.uint8] | None) -> list[Outgoing]:
        """Messages for this frame. `image`: the source frame (BGR [H, W, 3]) the tracker saw,
        or None when it is no longer available (no snapshot is taken then)."""
        out: list[Outgoing] = []
        confirmed = [o for o in objects if o.confirmed and self._reported(o)]
        inside = self._zones_of(confirmed)
        for item, zones in zip(confirmed, inside, strict=True):
            life = self._lives.get(item.track_id)
            if item.disappeared == 0 and image is not None:  # a held frame: a better view?
                self._keep_snapshot(life, item, frame_id, image)
            if life is None:
                life = self._begin(item, ts, frame_id, image)
            if item.disappeared == 0:
                life.last_seen = ts
            if not life.announced:
                if self._awaits_view(life, ts):
                    self._note_zones(life, zones)
                else:
                    out += self._announce(item, life, zones, ts)
                continue
            # only what this frame saw is news: a track unseen since holds its last box (a
            # user check: updates came after the object's last sighting, as its age went back)
            # a new label too: the counts follow it at once (a user check: per-label counts
            # could not be told from the events for seconds, and a label that changed back
            # before the next update was never in one)
            changed = item.disappeared == 0 and (zones != life.sent_zones
                                                 or item.top_score > life.sent_top
                                                 or item.class_id != life.sent_class)
            if changed and ts - life.sent_at >= self.settings.update_interval_s:
                out += self._event("update", item, life, zones, ts, None)
            else:
                self._note_zones(life, zones)
        for item in ended:
            life = self._lives.pop(item.track_id, None)
            if life is not None:
                if not life.announced:  # gone before a held frame showed it
                    out += self._announce(item, life, life.zones, ts)
                out += self._event("end", item, life, life.zones, ts, life.last_seen)
        # counted from the `new` event on, so no count announces an object its event has not
        counted = [(item, zones) for item, zones in zip(confirmed, inside, strict=True)
                   if item.track_id in self._lives and self._lives[item.track_id].announced]
        out += self._count_messages([item for item, _ in counted], [z for _, z in counted])
        return out

    def _reported(self, item: TrackedObject) -> bool:
        """Whether the track is (now) an object worth events: see the module docstring."""
        if item.track_id in self._lives:
            return True
        needed = self._event_scores.get(item.class_id, self.settings.event_score)
        return item.hits >= MIN_SCORES and float(np.median(item.recent)) >= needed

    def _begin(self, item: TrackedObject, ts: float, frame_id: int,
               image: npt.NDArray[np.uint8] | None) -> _Life:
        start = item.first_ts or ts
        life = _Life(f"{int(start * 1000)}-{item.track_id}", start, ts, ts)
        self._lives[item.track_id] = life
        if image is not None and self.settings.snapshots:
            life.best = self._crop(image, item, frame_id)
        return life

    def _awaits_view(self, life: _Life, ts: float) -> bool:
        """Whether a new object's `new` event waits for a held frame to cut its snapshot from
        (one frame in `snapshot_interval_s` is held, so the frame that makes a track an
        object is mostly not one); at most two intervals, then it goes without."""
        interval = self.settings.snapshot_interval_s
        return (self.settings.snapshots and life.best is None
                and ts - life.reported_at < 2 * interval)

    def _announce(self, item: TrackedObject, life: _Life, zones: list[str],
                  ts: float) -> list[Outgoing]:
        life.announced = True
        return self._event("new", item, life, zones, ts, None)

    def _keep_snapshot(self, life: _Life | None, item: TrackedObject, frame_id: int,
                       image: npt.NDArray[np.uint8]) -> None:
        if life is not None and self.settings.snapshots and (
                life.best is None or item.score > life.best.score):
            life.best = self._crop(image, item, frame_id)

    @staticmethod
    def _crop(image: npt.NDArray[np.uint8], item: TrackedObject, frame_id: int) -> _Snapshot:
        height, width = image.shape[:2]
        x1, y1, x2, y2 = (float(v) for v in item.box)
        mx, my = (x2 - x1) * SNAPSHOT_MARGIN, (y2 - y1) * SNAPSHOT_MARGIN
        left, top = max(0, int(x1 - mx)), max(0, int(y1 - my))
        right, bottom = min(width, int(x2 + mx) + 1), min(height, int(y2 + my) + 1)
        crop = image[top:max(bottom, top + 1), left:max(right, left + 1)].copy()
        return _Snapshot(crop, frame_id, item.score, [round(v, 1) for v in (x1, y1, x2, y2)])

    def _zones_of(self, objects: Sequence[TrackedObject]) -> list[list[str]]:
        if not objects or not self.zones:
            return [[] for _ in objects]
        points = anchor_points(np.stack([o.box for o in objects]))
        inside = [zone.contains(points) for zone in self.zones]
        return [[z.name for z, hits in zip(self.zones, inside, strict=True)
                 if hits[i] and z.counts(o.class_id)] for i, o in enumerate(objects)]

    @staticmethod
    def _note_zones(life: _Life, zones: list[str]) -> None:
        life.zones = zones
        life.entered += [z for z in zones if z not in life.entered]

    def _event(self, kind: str, item: TrackedObject, life: _Life, zones: list[str], ts: float,
               end: float | None) -> list[Outgoing]:
        self._note_zones(life, zones)
        life.sent_at, life.sent_zones, life.sent_top = ts, list(zones), item.top_score
        life.sent_class = item.class_id
        out = self._snapshot_messages(life, self._label(item.class_id))
        step = stepped()  # times here are steady (edge.clock), published as the system clock's
        payload = {
            "v": CONTRACT_VERSION, "type": kind, "id": life.event_id, "track_id": item.track_id,
            "camera": self.camera, "label": self._label(item.class_id),
            "class_id": item.class_id, "score": round(item.score, 4),
            "top_score": round(item.top_score, 4), "box": [round(float(v), 1) for v in item.box],
            "start": round(life.start + step, 3),
            "end": None if end is None else round(end + step, 3),
            "zones": list(zones), "entered_zones": list(life.entered),
            "snapshot": self._snapshot_field(life), "ts": ts + step,
            "time": rfc3339(ts + step)}
        self.events_sent += 1
        out.append(Outgoing(self.topics.events(self.camera), _json(payload), 1, False, "outbox"))
        return out

    def _snapshot_field(self, life: _Life) -> dict[str, Any] | None:
        if life.best is None or life.published_score < 0:
            return None
        return {"topic": self.topics.event_snapshot(self.camera, life.event_id),
                "frame_id": life.best.frame_id, "score": round(life.best.score, 4),
                "box": life.best.box}

    def _snapshot_messages(self, life: _Life, label: str) -> list[Outgoing]:
        """The event's snapshot where it has a better one than it published, on its own
        topic and on its label's (the newest of that label on this camera)."""
        best = life.best
        if best is None or best.score <= life.published_score:
            return []
        jpeg = jpeg_from_image(best.image, self.settings.snapshot_max_height,
                               self.settings.snapshot_quality)
        life.published_score = best.score
        topic = self.topics.event_snapshot(self.camera, life.event_id)
        return [Outgoing(topic, jpeg, 0, True, "best-effort"),
                Outgoing(self.topics.label_snapshot(self.camera, label), jpeg, 0, True,
                         "best-effort")]

    def retained(self, topic: str) -> list[Outgoing]:
        """`topic` was handed to the broker, retained: where it is one of this camera's event
        snapshots, it joins those kept, and the messages that clear the oldest beyond
        `RETAINED_SNAPSHOTS` are returned. A snapshot the broker never got (it was away) takes
        no place (a user check: after broker restarts 44 a camera stayed retained, the lost
        ones counted among the 50)."""
        if self.topics.snapshot_camera(topic) != self.camera:
            return []  # a label's snapshot topic: one a label, replaced, never cleared
        with self._retained_lock:
            if topic in self._retained:
                return []
            self._retained.append(topic)
            return self._cleared_beyond_limit()

    def adopt_retained(self, topics: Sequence[str]) -> list[Outgoing]:
        """Take over the snapshot topics an earlier run left retained (from a sweep of the
        broker); returns the messages that clear the oldest beyond `RETAINED_SNAPSHOTS`.
        Event ids begin with their start in ms, so ids order the topics in time."""
        with self._retained_lock:
            known = set(self._retained)
            earlier = sorted((t for t in set(topics) if t not in known), key=_snapshot_age_key)
            self._retained.extendleft(reversed(earlier))
            return self._cleared_beyond_limit()

    def _cleared_beyond_limit(self) -> list[Outgoing]:
        """Clear the oldest snapshots beyond the limit. A clearing is state: it waits for the
        broker and goes out once connected (a user check: those due while the broker was
        away were dropped, and 61 stayed retained)."""
        cleared = []
        while len(self._retained) > RETAINED_SNAPSHOTS:
            cleared.append(Outgoing(self._retained.popleft(), b"", 1, True, "state"))
        return cleared

    def _label(self, class_id: int) -> str:
        return self.labels[class_id] if 0 <= class_id < len(self.labels) else str(class_id)

    def _count_topics(self) -> dict[str, int]:
        """Every count topic this camera keeps (per label, and per zone and label it counts)
        -> 0."""
        reported = [(c, label) for c, label in enumerate(self.labels) if self._reports(c)]
        counts = {self.topics.count(self.camera, label): 0 for _, label in reported}
        for zone in self.zones:
            for c, label in reported:
                if zone.counts(c):
                    counts[self.topics.count(self.camera, label, zone.name)] = 0
        return counts

    def _count_messages(self, objects: Sequence[TrackedObject],
                        inside: Sequence[list[str]]) -> list[Outgoing]:
        counts = dict(self.count_topics)
        for item, zones in zip(objects, inside, strict=True):
            label = self._label(item.class_id)
            counts[self.topics.count(self.camera, label)] += 1
            for name in zones:
                counts[self.topics.count(self.camera, label, name)] += 1
        previous = self._counts or {}
        self._counts = counts
        changed = [(topic, n) for topic, n in counts.items() if previous.get(topic) != n]
        # Counts that fall go first, zones before their camera, then those that rise, the
        # camera before its zones: a subscriber never sees a zone hold more than its camera.
        falling = [(t, n) for t, n in reversed(changed) if n < previous.get(t, 0)]
        rising = [(t, n) for t, n in changed if n >= previous.get(t, 0)]
        return [Outgoing(topic, str(n).encode(), 1, True, "state")
                for topic, n in falling + rising]

    @property
    def objects(self) -> int:
        """Objects alive that are reported: each has had, or is about to have, its `new`
        event, and gets an `end` (tracks not yet reported get neither)."""
        return len(self._lives)

    def finish(self, ended: Sequence[TrackedObject], ts: float) -> list[Outgoing]:
        """`end` for every object still alive (the camera stopped) and zero counts."""
        return self.update(0, ts, [], ended, None)


def _snapshot_age_key(topic: str) -> tuple[int, str]:
    """`.../events/<start ms>-<track>/snapshot` -> (start ms, topic); foreign ids sort first."""
    event_id = topic.rsplit("/", 2)[-2]
    start = event_id.split("-", 1)[0]
    return (int(start) if start.isdigit() else -1, topic)


def jpeg_from_image(image: npt.NDArray[np.uint8], max_height: int, quality: int) -> bytes:
    """BGR [H, W, 3] -> JPEG bytes, downscaled to at most `max_height` rows."""
    if image.shape[0] > max_height:
        scale = max_height / image.shape[0]
        size = (max(1, round(image.shape[1] * scale)), max_height)
        image = np.asarray(cv2.resize(image, size, interpolation=cv2.INTER_AREA), np.uint8)
    ok, encoded = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:
        raise ValueError(f"JPEG encoding of a {image.shape} image failed")
    return bytes(encoded)


def _json(payload: dict[str, Any]) -> bytes:
    return json.dumps(payload, separators=(",", ":")).encode()

"""Tracking, events and counts of one camera, run on that camera's loop thread.

The loop hands every frame to `hold` before it gives the frame's buffer back to the source, and
calls `update` once the frame's detections are decoded. Frames are copied into a small ring of
buffers allocated once, so a snapshot can be cut from the frame the detections came from even
though the loop has moved on to the next frame meanwhile (double-buffered inference). Copying a
whole frame costs about as much as tracking itself, so only one frame per
`snapshot_interval_s` is held: an object's snapshot is its best-scoring held frame.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Protocol

import numpy as np
import numpy.typing as npt

from edge.clock import steady
from edge.detections import Detections
from edge.errors import ConfigError
from edge.events import EventEngine, Outgoing
from edge.mqtt.topics import Topics
from edge.objects_config import TrackingConfig, ZoneConfig
from edge.timing import AtMostEvery
from edge.tracking.bytetrack import ByteTracker, TrackerSettings, TrackIds
from edge.zones import Zone, zones_for_frame, zones_from_config

log = logging.getLogger(__name__)

#: Frames held at once: the one being inferred and the one letterboxed meanwhile (the loop
#: holds frame N+1 before it finishes frame N, and never N+2).
HELD_FRAMES = 2
#: Seconds between warnings that a camera's frames changed size (a folder of photos of
#: several sizes changes at every image).
RESIZE_LOG_S = 60.0
#: Capture times `snapshot_interval_s` apart that fall short of it by rounding (1000.4 - 1000.2
#: is 0.19999999999993) still hold a frame: else one frame too many waits, every time.
TIMESTAMP_SLACK_S = 1e-3


class Publisher(Protocol):
    """What the camera needs of the MQTT link (`edge.mqtt.link.MqttLink`)."""

    def publish_event(self, topic: str, payload: bytes, qos: int, retain: bool) -> None: ...

    def publish_state(self, topic: str, payload: bytes, qos: int) -> None: ...

    def publish_best_effort(self, topic: str, payload: bytes, qos: int = 0,
                            retain: bool = False, yields: bool = False) -> bool: ...


def tracker_settings_from_config(settings: TrackingConfig,
                                 class_aware: bool = False) -> TrackerSettings:
    return TrackerSettings(high_score=settings.high_score, low_score=settings.low_score,
                           new_track_score=settings.new_track_score,
                           max_disappeared=settings.max_disappeared, class_aware=class_aware)


class CameraTracking:
    """`hold(frame_id, image, ts)` then `update(frame_id, ts, detections, frame_size)` per
    frame; `close()` when the camera stops or its source goes down."""

    def __init__(self, camera: str, settings: TrackingConfig, topics: Topics,
                 labels: Sequence[str], zones: Sequence[Zone],
                 unplaced: Sequence[ZoneConfig], publisher: Publisher,
                 classifier: bool = False, zone_configs: Sequence[ZoneConfig] = (),
                 placed_for: tuple[int, int] | None = None,
                 track_ids: TrackIds | None = None,
                 reports: Callable[[int], bool] = lambda class_id: True,
                 event_scores: Mapping[int, float] | None = None) -> None:
        """`zones` come from `edge.zones.zones_from_config`; `unplaced`: their configs when
        the frame size was not known then (normalised zones are scaled, and every zone is
        checked against the frame, on the first frame), else empty; `zone_configs`: the
        zones' configs where they were placed already, for `placed_for` (width, height), so
        that they can be placed again when the frames change size. `classifier`: the model
        classifies whole frames, so each class present is tracked as one object. `track_ids`:
        the device's, shared by its cameras, so that event ids are unique per device.
        `reports`: whether the camera reports a class (`edge.object_filter`): the others get
        no count topics; `event_scores`: the classes whose tracks need another median score
        than `settings.event_score` for events (`EventEngine`)."""
        self.camera = camera
        self.tracker = ByteTracker(tracker_settings_from_config(settings, classifier),
                                   track_ids)
        self._settings = settings
        self._held_at = -float("inf")
        self._zone_configs = list(unplaced or zone_configs)
        # in their own units (normalised or pixels), to place on any frame size
        self._unit_zones = zones_from_config(camera, self._zone_configs, labels, None)
        self._scaled = not unplaced
        self._frame_size = placed_for
        self._resize_said = AtMostEvery(RESIZE_LOG_S)
        self._unfit_said = AtMostEvery(RESIZE_LOG_S)  # a zone that did not fit the frame
        self.events = EventEngine(camera, topics, labels, zones, settings, reports,
                                  event_scores)
        self._publisher = publisher
        self._ring: list[npt.NDArray[np.uint8]] = []
        self._ring_ids = [-1] * HELD_FRAMES
        self._next = 0
        self.seconds = 0.0  # spent in update, for the per-frame cost
        self.frames = 0

    def hold(self, frame_id: int, image: npt.NDArray[np.uint8], ts: float) -> None:
        """Copy the frame (BGR [H, W, 3], captured at `ts` s) into the ring when snapshots are
        on and the last held frame is `snapshot_interval_s` old; no allocation after the
        first frame."""
        due = self._held_at + self._settings.snapshot_interval_s - TIMESTAMP_SLACK_S
        if not self._settings.snapshots or ts < due:
            return
        self._held_at = ts
        if not self._ring or self._ring[0].shape != image.shape:
            self._ring = [np.empty_like(image) for _ in range(HELD_FRAMES)]
        np.copyto(self._ring[self._next], image)
        self._ring_ids[self._next] = frame_id
        self._next = (self._next + 1) % HELD_FRAMES

    def _held(self, frame_id: int) -> npt.NDArray[np.uint8] | None:
        for slot, held in enumerate(self._ring_ids):
            if held == frame_id and self._ring:
                return self._ring[slot]
        return None

    def update(self, frame_id: int, ts: float, detections: Detections,
               frame_size: tuple[int, int]) -> npt.NDArray[np.int64]:
        """Track, publish events and counts; returns each detection's track id [K] (0: none).
        `frame_size`: (width, height) of the source frame, to place normalised zones."""
        began = time.perf_counter()
        if self._frame_size is not None and frame_size != self._frame_size:
            self._resized(self._frame_size, frame_size, ts)
        elif not self._scaled:
            self._scale_zones(frame_size)
        self._frame_size = frame_size
        ids = self.tracker.update(detections, ts)
        messages = self.events.update(frame_id, ts, self.tracker.objects, self.tracker.ended,
                                      self._held(frame_id))
        self._publish(messages)
        self.seconds += time.perf_counter() - began
        self.frames += 1
        return ids

    def _scale_zones(self, frame_size: tuple[int, int]) -> None:
        """Every zone placed on a `frame_size` frame; one that does not fit it (pixels
        outside it) is counted in as given, said at most once a minute, and the others are
        placed all the same."""
        self._scaled = True
        placed, unfit = [], []
        for config, zone in zip(self._zone_configs, self._unit_zones, strict=True):
            try:
                placed += zones_for_frame(self.camera, [config], [zone], frame_size)
            except ConfigError as exc:  # the frame is not the size the config was checked for
                placed.append(zone)  # pixels, as given
                unfit.append(str(exc))
        self.events.zones = placed
        if unfit and self._unfit_said.due() is not None:
            log.error("%s; counting in %s as given", "; ".join(unfit),
                      "it" if len(unfit) == 1 else "them")

    def _resized(self, before: tuple[int, int], now: tuple[int, int], ts: float) -> None:
        """The camera's frames changed size (its resolution changed in its settings, or a
        snapshot follows another stream): objects tracked in the old frame's pixels end, and
        the zones are placed on the new frame."""
        if not self.frames:  # the first frame: the size its source promised was not it
            log.warning("camera %s: its frames are %dx%d, not the %dx%d its source asked "
                        "for%s", self.camera, *now, *before,
                        "; its zones placed on them" if self._zone_configs else "")
        else:
            changes = self._resize_said.due()  # a folder of photos changes at every image
            if changes is not None:
                more = (f" ({changes} changes in the last {RESIZE_LOG_S:g} s)"
                        if changes > 1 else "")
                log.warning("camera %s: its frames changed size, %dx%d to %dx%d: the objects "
                            "tracked so far ended%s%s", self.camera, *before, *now,
                            ", and its zones placed on the new frame" if self._zone_configs
                            else "", more)
            self._publish(self.events.finish(self.tracker.finish(), ts))
        if self._zone_configs:
            self._scale_zones(now)

    def close(self, ts: float | None = None) -> int:
        """End every live object and publish zero counts: the camera stopped, or its source
        went down (the next frame then starts tracking afresh). Returns how many objects got
        their `end` event (a track not yet reported as an object gets none)."""
        reported = self.events.objects
        self._publish(self.events.finish(self.tracker.finish(), ts or steady()))
        return reported

    def _publish(self, messages: list[Outgoing]) -> None:
        for message in messages:
            if message.delivery == "outbox":
                self._publisher.publish_event(message.topic, message.payload, message.qos,
                                               message.retain)
            elif message.delivery == "state":
                self._publisher.publish_state(message.topic, message.payload, message.qos)
            elif self._publisher.publish_best_effort(message.topic, message.payload,
                                                     message.qos, message.retain,
                                                     yields=True) \
                    and message.retain:  # a snapshot the broker got: the oldest may go
                self._publish(self.events.retained(message.topic))

    def cost_ms(self) -> float:
        """Mean milliseconds per `update` so far."""
        return self.seconds / self.frames * 1e3 if self.frames else 0.0


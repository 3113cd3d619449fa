"""Sampled JPEG frames for remote monitoring, encoded off the camera loop's hot path."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass

import cv2
import numpy as np
import numpy.typing as npt

from edge.config import FramesConfig
from edge.detections import Detections
from edge.mqtt.link import MqttLink
from edge.timing import rfc3339

log = logging.getLogger(__name__)


@dataclass
class FrameSample:
    camera: str
    frame_id: int
    ts: float
    image: npt.NDArray[np.uint8]  # a private copy, BGR [H, W, 3]
    detections: Detections


class FrameSampler:
    """Decides which frames to publish: every `interval_s`, and/or on detection (at most one per
    `min_gap_s`), and on a snapshot command."""

    def __init__(self, settings: FramesConfig) -> None:
        self.settings = settings
        self._last = -float("inf")
        self._snapshot = threading.Event()

    def request_snapshot(self) -> None:
        self._snapshot.set()

    def wants_copy(self, now: float) -> bool:
        """Whether the loop should keep a copy of this frame until its detections are known."""
        s = self.settings
        if self._snapshot.is_set():
            return True
        if s.interval_s and now - self._last >= s.interval_s:
            return True
        return s.on_detection and now - self._last >= s.min_gap_s

    def should_publish(self, now: float, detection_count: int) -> bool:
        s = self.settings
        due = self._snapshot.is_set() or bool(s.interval_s and now - self._last >= s.interval_s)
        due = due or (s.on_detection and detection_count > 0 and now - self._last >= s.min_gap_s)
        if due:
            self._last = now
            self._snapshot.clear()
        return due


class FramePublisher:
    """A worker thread that draws, downsizes, JPEG-encodes and publishes the latest sample.

    Only the newest sample waits; an older one not yet encoded is replaced (frames are best
    effort by contract)."""

    def __init__(self, settings: FramesConfig, link: MqttLink, labels: Sequence[str]) -> None:
        self.settings = settings
        self._link = link
        self._labels = labels
        self._pending: FrameSample | None = None
        self._cond = threading.Condition()
        self._stopping = False
        self.published = 0
        self._thread = threading.Thread(target=self._run, name="jpeg-encoder", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        with self._cond:
            self._stopping = True
            self._cond.notify()
        self._thread.join(timeout=2.0)

    def submit(self, sample: FrameSample) -> None:
        with self._cond:
            self._pending = sample
            self._cond.notify()

    def _run(self) -> None:
        while True:
            with self._cond:
                self._cond.wait_for(lambda: self._pending is not None or self._stopping)
                if self._stopping:
                    return
                sample, self._pending = self._pending, None
            assert sample is not None
            try:
                self._publish(sample)
            except Exception:  # worker boundary: a bad frame must not kill the encoder thread
                log.exception("camera %s: could not publish frame %d", sample.camera,
                              sample.frame_id)

    def encode(self, sample: FrameSample) -> bytes:
        image = sample.image
        if self.settings.draw:
            draw_detections(image, sample.detections, self._labels)
        if image.shape[0] > self.settings.max_height:
            scale = self.settings.max_height / image.shape[0]
            size = (max(1, round(image.shape[1] * scale)), self.settings.max_height)
            image = np.asarray(cv2.resize(image, size, interpolation=cv2.INTER_AREA), np.uint8)
        ok, encoded = cv2.imencode(".jpg", image,
                                   [cv2.IMWRITE_JPEG_QUALITY, self.settings.quality])
        if not ok:
            raise RuntimeError("OpenCV failed to JPEG-encode a frame")
        return encoded.tobytes()

    def _publish(self, sample: FrameSample) -> None:
        jpeg = self.encode(sample)
        topics = self._link.topics
        sent = self._link.publish_best_effort(topics.frame(sample.camera), jpeg, qos=0,
                                              retain=self.settings.retain)
        meta = {"v": 1, "camera": sample.camera, "frame_id": sample.frame_id, "ts": sample.ts,
                "time": rfc3339(sample.ts), "width": int(sample.image.shape[1]),
                "height": int(sample.image.shape[0]), "bytes": len(jpeg),
                "detections_drawn": self.settings.draw, "detections": len(sample.detections),
                "published_at": rfc3339(time.time())}
        self._link.publish_json(topics.frame_meta(sample.camera), meta, qos=0,
                                retain=self.settings.retain)
        self.published += int(sent)


def draw_detections(image: npt.NDArray[np.uint8], detections: Detections,
                    labels: Sequence[str]) -> None:
    """Draw boxes and `label score` captions onto `image` in place."""
    for box, score, class_id in zip(detections.boxes, detections.scores, detections.class_ids,
                                    strict=True):
        x1, y1, x2, y2 = (round(float(v)) for v in box)
        hue = int(class_id) * 47 % 180
        colour = cv2.cvtColor(np.array([[[hue, 255, 255]]], np.uint8), cv2.COLOR_HSV2BGR)[0, 0]
        bgr = (int(colour[0]), int(colour[1]), int(colour[2]))
        cv2.rectangle(image, (x1, y1), (x2, y2), bgr, 2)
        name = labels[int(class_id)] if 0 <= int(class_id) < len(labels) else str(int(class_id))
        cv2.putText(image, f"{name} {float(score):.2f}", (x1, max(12, y1 - 4)),
                    cv2.FONT_HERSHEY_SIMPLEX, 0.45, bgr, 1, cv2.LINE_AA)

"""Sampled JPEG frames for remote monitoring, encoded off the camera loop's hot path."""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import cv2
import numpy as np
import numpy.typing as npt

from edge.clock import published
from edge.config import FramesConfig, SamplingConfig
from edge.detections import Detections
from edge.mqtt.link import MqttLink
from edge.sampling import RateLimiter, SamplingPolicy
from edge.timing import rfc3339

log = logging.getLogger(__name__)


@dataclass
class FrameSample:
    camera: str
    frame_id: int
    ts: float  # its capture time on the steady clock (edge.clock)
    image: npt.NDArray[np.uint8]  # a private copy, BGR [H, W, 3]
    detections: Detections
    reasons: tuple[str, ...] = ("interval",)
    below: Detections = field(default_factory=Detections.empty)  # under the threshold, not drawn
    track_ids: npt.NDArray[np.int64] | None = None  # [K] for `detections` when tracking is on


class FrameSampler(SamplingPolicy):
    """The camera loop's sampler: `[frames]` interval/on-detection plus the `[sampling]`
    policies (see edge.sampling)."""

    def __init__(self, settings: FramesConfig, sampling: SamplingConfig | None = None,
                 labels: Sequence[str] = (), threshold: float = 0.0,
                 key: str = "sampling", camera: str = "") -> None:
        super().__init__(settings, sampling or SamplingConfig(), labels, threshold, key=key,
                         camera=camera)


class FramePublisher:
    """A worker thread that draws, downsizes, JPEG-encodes and publishes samples.

    At most `QUEUE` samples wait; beyond that the oldest is dropped and counted (frames are best
    effort by contract). With `frames.draw` on, the undrawn JPEG goes to `frame/clean` so
    labellers get clean pixels; `frame/meta` follows both and carries the reasons and the full
    detections. The byte budget is checked after encoding, so it holds exactly."""

    QUEUE = 4

    def __init__(self, settings: FramesConfig, link: MqttLink, labels: Sequence[str],
                 limiter: RateLimiter | None = None, model: str = "") -> None:
        self.settings = settings
        self._link = link
        self._labels = labels
        self._limiter = limiter
        self._model = model
        self._pending: deque[FrameSample] = deque()
        self._cond = threading.Condition()
        self._stopping = False
        self.published = 0
        self.dropped = 0  # replaced while waiting, over the byte budget, or not sent
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
            if len(self._pending) >= self.QUEUE:
                self._pending.popleft()
                self.dropped += 1
            self._pending.append(sample)
            self._cond.notify()

    def _run(self) -> None:
        while True:
            with self._cond:
                self._cond.wait_for(lambda: bool(self._pending) or self._stopping)
                if self._stopping:
                    return
                sample = self._pending.popleft()
            try:
                self._publish(sample)
            except Exception:  # worker boundary: a bad frame must not kill the encoder thread
                log.exception("camera %s: could not publish frame %d", sample.camera,
                              sample.frame_id)

    def encode(self, sample: FrameSample, draw: bool | None = None) -> bytes:
        """JPEG of the sample, downsized to `max_height`; drawn when `draw` (default: the
        config's `draw`). Drawing works on a copy, so the sample stays clean."""
        image = sample.image
        if self.settings.draw if draw is None else draw:
            image = image.copy()
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
        clean = self.encode(sample, draw=False) if self.settings.draw else None
        size = len(jpeg) + (len(clean) if clean is not None else 0)
        if self._limiter is not None and not self._limiter.spend_bytes(sample.ts, size):
            self.dropped += 1
            return
        topics, retain = self._link.topics, self.settings.retain
        sent = self._link.publish_best_effort(topics.frame(sample.camera), jpeg, qos=0,
                                              retain=retain, yields=True)
        if not sent:  # disconnected, or a saturated link: its clean copy and meta go neither
            self.dropped += 1
            return
        if clean is not None:
            self._link.publish_best_effort(topics.frame_clean(sample.camera), clean, qos=0,
                                           retain=retain)
        self._link.publish_json(topics.frame_meta(sample.camera),
                                self.meta(sample, jpeg, clean), qos=0, retain=retain)
        self.published += 1

    def meta(self, sample: FrameSample, jpeg: bytes, clean: bytes | None) -> dict[str, Any]:
        """`frame/meta`: `width`/`height` are the source frame's (the detections' pixel space);
        the JPEGs may be smaller (`max_height`). `detections` stays the count (contract v1);
        `predictions` holds the detections themselves, `below_threshold` those the
        uncertainty band saw under the score threshold (not published as detections)."""
        height, width = sample.image.shape[:2]
        scale = min(1.0, self.settings.max_height / height)
        ts = published(sample.ts)
        return {"v": 1, "camera": sample.camera, "frame_id": sample.frame_id, "ts": ts,
                "time": rfc3339(ts), "model": self._model, "width": int(width),
                "height": int(height), "image_width": max(1, round(width * scale)),
                "image_height": max(1, round(height * scale)), "bytes": len(jpeg),
                "clean_bytes": len(clean) if clean is not None else None,
                "detections_drawn": self.settings.draw, "detections": len(sample.detections),
                "reasons": list(sample.reasons),
                "predictions": sample.detections.to_payload(self._labels, sample.track_ids),
                "below_threshold": sample.below.to_payload(self._labels),
                "labels": list(self._labels),
                "published_at": rfc3339(time.time())}


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

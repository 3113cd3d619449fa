"""The camera loop: source -> letterbox -> infer -> decode -> publish, one worker per camera.

Two runner slots overlap work when the camera is faster than inference: while frame n runs in
one slot, frame n+1 is letterboxed into the other. When the camera is the bottleneck, frame n is
finished at once instead of waiting for frame n+1, so latency stays at one inference.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from edge.detections import Detections
from edge.frames import FramePublisher, FrameSample, FrameSampler
from edge.mqtt.link import MqttLink
from edge.mqtt.topics import CONTRACT_VERSION
from edge.postprocess import Decoder
from edge.preprocess import Letterboxer, LetterboxGeometry
from edge.runners.base import Runner
from edge.sources.base import LatestFrame, Source
from edge.timing import RateMeter, StageTimes, rfc3339

log = logging.getLogger(__name__)


@dataclass
class _InFlight:
    slot: int
    frame_id: int
    ts: float
    geometry: LetterboxGeometry
    queue_ms: float  # capture -> the loop took the frame
    preprocess_ms: float
    submitted_at: float
    sample: npt.NDArray[np.uint8] | None


class CameraWorker:
    """Runs one camera: a capture thread feeding a single-slot hand-off, and the loop thread."""

    def __init__(self, name: str, source: Source, runner: Runner, decoder: Decoder,
                 link: MqttLink, sampler: FrameSampler, frames: FramePublisher) -> None:
        self.name = name
        self.source = source
        self.runner = runner
        self._decoder = decoder
        self._link = link
        self.sampler = sampler
        self.frame_publisher = frames
        self._letterbox = Letterboxer(runner.spec.input.pad_value,
                                      swap_channels=runner.spec.input.colour_order == "RGB")
        self._latest = LatestFrame()
        self._stop = threading.Event()
        self.times = StageTimes()
        self._rate = RateMeter()
        self.frames = 0
        self.errors = 0
        self.finished = threading.Event()
        self._capture_thread = threading.Thread(target=self._capture, name=f"capture-{name}",
                                                daemon=True)
        self._loop_thread = threading.Thread(target=self._loop, name=f"loop-{name}", daemon=True)

    def start(self) -> None:
        """Open the source (raising SourceError if it cannot) and start both threads."""
        self.source.open()
        self.frame_publisher.start()
        self._capture_thread.start()
        self._loop_thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        self._latest.close()
        self._loop_thread.join(timeout)
        self._capture_thread.join(timeout)
        self.frame_publisher.stop()
        self.source.close()

    def stats(self) -> dict[str, Any]:
        return {"frames": self.frames, "fps": round(self._rate.rate(), 2),
                "dropped": self._latest.dropped, "errors": self.errors,
                "source_fps": self.source.fps, "latency_ms": self.times.percentiles()}

    # -- capture thread --------------------------------------------------------------------

    def _capture(self) -> None:
        try:
            while not self._stop.is_set():
                frame = self.source.read()
                if frame is None:
                    log.info("camera %s: source %s ended", self.name, self.source.uri)
                    break
                self._latest.put(frame)
        except Exception:  # thread boundary: log with context, end this camera, keep the daemon
            self.errors += 1
            log.exception("camera %s: reading %s failed", self.name, self.source.uri)
        finally:
            self._latest.close()

    # -- loop thread -----------------------------------------------------------------------

    def _loop(self) -> None:
        slot, pending = 0, None  # pending: the submitted job whose result is not yet published
        try:
            while not self._stop.is_set():
                frame = self._latest.take(timeout=0.5)
                if frame is None:
                    self._finish(pending)
                    pending = None
                    if self._latest.closed:
                        break
                    continue
                queue_ms = (time.time() - frame.ts) * 1e3
                taken = time.perf_counter()
                geometry = self._letterbox(frame.image, self.runner.input_buffer(slot))
                sample = frame.image.copy() if self.sampler.wants_copy(frame.ts) else None
                frame.release()
                preprocess_ms = (time.perf_counter() - taken) * 1e3
                self._finish(pending)
                self.runner.submit(slot)
                pending = _InFlight(slot, frame.frame_id, frame.ts, geometry, queue_ms,
                                    preprocess_ms, time.perf_counter(), sample)
                slot = (slot + 1) % self.runner.slots
                if not self._latest.ready():
                    self._finish(pending)
                    pending = None
            self._finish(pending)
        except Exception:  # thread boundary: a bug in one camera must not take down the rest
            self.errors += 1
            log.exception("camera %s: the inference loop failed", self.name)
        finally:
            self.finished.set()

    def _finish(self, job: _InFlight | None) -> None:
        """Wait for `job`'s inference, decode and publish it."""
        if job is None:
            return
        output = self.runner.wait(job.slot)
        inferred = time.perf_counter()
        detections = self._decoder(output[0], job.geometry)
        done = time.perf_counter()
        latency = {
            "queue": round(job.queue_ms, 2),
            "preprocess": round(job.preprocess_ms, 2),
            "infer": round((inferred - job.submitted_at) * 1e3, 2),
            "postprocess": round((done - inferred) * 1e3, 2),
        }
        latency["total"] = round((time.time() - job.ts) * 1e3, 2)
        for stage, value in latency.items():
            self.times.add(stage, value)
        self._link.publish_detections(self.name, self._payload(job, detections, latency))
        if job.sample is not None and self.sampler.should_publish(job.ts, len(detections)):
            self.frame_publisher.submit(FrameSample(self.name, job.frame_id, job.ts, job.sample,
                                            detections))
        self.frames += 1
        self._rate.tick()

    def _payload(self, job: _InFlight, detections: Detections,
                 latency: dict[str, float]) -> dict[str, Any]:
        return {
            "v": CONTRACT_VERSION, "ts": job.ts, "time": rfc3339(job.ts),
            "frame_id": job.frame_id, "camera": self.name, "model": self.runner.spec.name,
            "width": job.geometry.source_width, "height": job.geometry.source_height,
            "latency_ms": latency,
            "detections": detections.to_payload(self.runner.spec.labels),
        }

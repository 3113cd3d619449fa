"""The camera loop: source -> letterbox -> shared inference -> decode -> publish, per camera.

Each camera has a supervised source (`edge.sources.supervisor`: capture on its own thread,
reopened with backoff when a live camera fails) and a loop thread; inference belongs to the one
service every camera shares (`edge.service`). The loop letterboxes frame n+1 straight into a row
of the service's filling batch while frame n runs, then waits for n, decodes and publishes it.
When the camera is the bottleneck (no newer frame waiting), frame n is finished at once instead of
waiting for frame n+1, so latency stays at one inference.

Everything on this thread runs beside inference, not inside it: decoding, NMS and the JSON of
the detections message cost per-frame time only on this camera's thread.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from edge.clock import published, steady
from edge.detections import Detections
from edge.drift import DriftMonitor
from edge.errors import InputError, ModelError
from edge.frames import FramePublisher, FrameSample, FrameSampler
from edge.mqtt.link import MqttLink
from edge.mqtt.topics import CONTRACT_VERSION
from edge.object_filter import ObjectFilter
from edge.postprocess import Decoder
from edge.preprocess import LetterboxGeometry, letterboxer_from_spec
from edge.service import InferenceError, InferenceService, ServiceClosedError, Ticket
from edge.sources.base import Frame
from edge.sources.supervisor import SourceSupervisor
from edge.timing import RateMeter, StageTimes, rfc3339
from edge.tracking.camera import CameraTracking
from edge.wording import counted

log = logging.getLogger(__name__)

#: A camera loop that has not come round for this long is stuck (a backend call that never
#: returns, a hung decoder): `alive` turns false and the daemon stops pinging systemd's
#: watchdog. An idle loop comes round every 0.5 s; a frame takes milliseconds to a second.
LOOP_STALL_S = 20.0


@dataclass
class _InFlight:
    ticket: Ticket
    frame_id: int
    ts: float
    geometry: LetterboxGeometry
    queue_ms: float  # capture -> the loop took the frame
    slot_wait_ms: float  # waiting for a free row in the service's input pool
    preprocess_ms: float  # letterboxing into the row
    sample: npt.NDArray[np.uint8] | None


class CameraWorker:
    """Runs one camera: its supervised source feeding a single-slot hand-off, and the loop
    thread."""

    def __init__(self, name: str, supervisor: SourceSupervisor, service: InferenceService,
                 decoder: Decoder, link: MqttLink, sampler: FrameSampler,
                 frames: FramePublisher,
                 tracking: CameraTracking | None = None,
                 objects: ObjectFilter | None = None) -> None:
        """`objects`: which detections the camera reports (every one without it)."""
        self.name = name
        self.supervisor = supervisor
        self.service = service
        self.spec = service.spec
        self._camera = service.register(name)
        self._decoder = decoder
        self._link = link
        self.sampler = sampler
        self.frame_publisher = frames
        self.drift: DriftMonitor | None = None  # set by the daemon when the model has a profile
        self.tracking = tracking
        self.objects = objects
        self._letterbox = letterboxer_from_spec(self.spec)
        self._latest = supervisor.latest
        self._stop = threading.Event()
        self.times = StageTimes()
        self._rate = RateMeter()
        self.frames = 0
        self.errors = 0
        self.bad_frames = 0
        self.failure: BaseException | None = None  # set when inference failed for this camera
        self.finished = threading.Event()
        self._beat = time.monotonic()  # when the loop last came round
        self._outages_ended = 0  # the source's outages (its reconnects) whose objects ended
        self._loop_thread = threading.Thread(target=self._loop, name=f"loop-{name}", daemon=True)

    def start(self) -> None:
        """Start the source's supervisor (a file that cannot be opened raises SourceError; a
        live camera is opened, and retried, on its thread) and the loop."""
        self.supervisor.start()
        self.frame_publisher.start()
        self._loop_thread.start()

    def request_stop(self) -> None:
        """Ask the source and the loop to stop without waiting for them (`stop` waits), so
        several cameras wind down at once."""
        self._stop.set()
        self._rate.stop()
        # closed first: a frame the source hands over while it stops is not counted dropped
        # (each camera gained one at every stop, "replaced by newer ones" though none came)
        self._latest.close()
        self.supervisor.request_stop()

    def stop(self, timeout: float = 5.0) -> None:
        """Stop and wait up to `timeout` seconds in all for the source and the loop (which
        publishes its frame in flight first)."""
        deadline = time.monotonic() + timeout
        self.request_stop()
        self.supervisor.stop(timeout)
        self._latest.close()
        if self._loop_thread.is_alive():
            self._loop_thread.join(max(0.0, deadline - time.monotonic()))
        self.frame_publisher.stop()

    def alive(self) -> bool:
        """The loop and the source's supervisor run (or ended normally with the source), and
        the loop is not stuck (`LOOP_STALL_S`)."""
        loop = self._loop_thread.is_alive() or (self.finished.is_set() and self.failure is None)
        return loop and self.supervisor.alive() and not self.stalled

    @property
    def stalled(self) -> bool:
        """The running loop has not come round for `LOOP_STALL_S`."""
        return (self._loop_thread.is_alive() and not self.finished.is_set()
                and time.monotonic() - self._beat > LOOP_STALL_S)

    @property
    def frames_dropped(self) -> int:
        """Camera frames replaced by a newer one before inference took them."""
        return self._latest.dropped

    def stats(self) -> dict[str, Any]:
        """`fps`: frames a second through the model, 0 while the camera is down (the rate
        decays over 10 s once frames stop, and "7.8 fps reconnecting" reads as a contradiction)."""
        source = self.supervisor.stats()
        down = source["state"] in ("starting", "reconnecting", "failed")
        return {"frames": self.frames, "fps": 0.0 if down else round(self._rate.rate(), 2),
                "dropped": self._latest.dropped, "errors": self.errors,
                "bad_frames": self.bad_frames,
                "filtered": self.objects.dropped if self.objects is not None else 0, **source,
                "latency_ms": self.times.percentiles(), "sampling": self.sampler.stats(),
                "drift": self.drift.state if self.drift is not None else None}

    # -- loop thread -----------------------------------------------------------------------

    def _loop(self) -> None:
        pending: _InFlight | None = None  # submitted, result not yet published
        try:
            while not self._stop.is_set():
                self._beat = time.monotonic()
                frame = self._latest.take(timeout=0.5)
                if self.supervisor.reconnects != self._outages_ended:
                    self._finish(pending)
                    pending = None
                    self._end_objects_of_lost_source()
                if frame is None:
                    self._finish(pending)
                    pending = None
                    if self._latest.closed:
                        if not self._stop.is_set():  # its source ended: no rate from now on
                            self._rate.clear()
                        break
                    continue
                job = self._submit(frame)
                self._finish(pending)
                pending = job
                if not self._latest.ready():
                    self._finish(pending)
                    pending = None
            self._finish(pending)
        except (InferenceError, ServiceClosedError) as exc:
            self.failure = exc if isinstance(exc, InferenceError) else None
            log.debug("camera %s: stopped by the inference service: %s", self.name, exc)
        except ModelError as exc:  # its output does not fit its spec: every frame would fail
            self.failure = exc
            log.error("camera %s: %s", self.name, exc)
        except Exception as exc:  # thread boundary: a bug in one camera must not take the rest
            self.errors += 1
            self.failure = exc
            log.exception("camera %s: the camera loop failed", self.name)
        finally:
            self.service.leave(self._camera)
            if self.tracking is not None:
                self.tracking.close()
            self.finished.set()

    def _end_objects_of_lost_source(self) -> None:
        """The source went down (its supervisor reconnects): every tracked object ends and the
        counts go to 0 while the camera is away, and tracking starts afresh with its next
        frame. Kept until frames came back, the old tracks claimed whatever those showed (a
        user check: a star's track took a circle 54 s on, and a count read 5 of 3 objects)."""
        self._outages_ended = self.supervisor.reconnects
        if self.tracking is None:
            return
        ended = self.tracking.close()
        if ended:
            log.info("camera %s: its source went down: %s ended (end events sent), counts "
                     "set to 0", self.name, counted(ended, "object"))

    def _submit(self, frame: Frame) -> _InFlight:
        """Letterbox `frame` into a claimed row of the service's filling batch and commit it;
        the frame's buffer goes back to the source."""
        queue_ms = (steady() - frame.ts) * 1e3
        taken = time.perf_counter()
        ticket = self.service.claim(self._camera)
        claimed = time.perf_counter()
        try:
            geometry = self._letterbox(frame.image, ticket.rows, ticket.row)
        except InputError as exc:  # a bad frame: skip it, never stall the batch
            self.bad_frames += 1
            log.warning("camera %s: frame %d skipped: %s", self.name, frame.frame_id, exc)
            geometry = LetterboxGeometry.fit(1, 1, self.spec.input.width,
                                             self.spec.input.height)
            frame.frame_id = -1
        self.service.commit(ticket)  # first: a claimed row holds back the whole batch
        preprocess_ms = (time.perf_counter() - claimed) * 1e3
        if self.tracking is not None:  # snapshots are cut once detections are known
            self.tracking.hold(frame.frame_id, frame.image, frame.ts)
        if self.drift is not None and frame.frame_id >= 0:
            self.drift.observe_image(frame.ts, frame.image)
        sample = frame.image.copy() if self.sampler.wants_copy(frame.ts) else None
        frame.release()
        return _InFlight(ticket, frame.frame_id, frame.ts, geometry, queue_ms,
                         (claimed - taken) * 1e3, preprocess_ms, sample)

    def _finish(self, job: _InFlight | None) -> None:
        """Wait for `job`'s inference, decode and publish it."""
        if job is None:
            return
        output = self.service.wait(job.ticket)
        if job.frame_id < 0:  # the skipped bad frame's row ran; its output means nothing
            return
        inferred = time.perf_counter()
        decoded = self._decoder(output, job.geometry)
        width, height = job.geometry.source_width, job.geometry.source_height
        reported = decoded if self.objects is None else self.objects.keep(decoded, width, height)
        detections, below = self.sampler.split(reported)
        done = time.perf_counter()
        track_ids = None if self.tracking is None else self.tracking.update(
            job.frame_id, job.ts, detections,
            (job.geometry.source_width, job.geometry.source_height))
        tracked = time.perf_counter()
        ticket = job.ticket
        latency = {
            "queue": round(job.queue_ms, 2),
            "slot_wait": round(job.slot_wait_ms, 2),
            "preprocess": round(job.preprocess_ms, 2),
            "batch_wait": round((ticket.started_at - ticket.committed_at) * 1e3, 2),
            "infer": round((ticket.finished_at - ticket.started_at) * 1e3, 2),
            # the loop finishes the frame before (decode, tracking, publishing) and letterboxes
            # the next before it takes this one's output, so inference overlaps that work (a
            # user check: the stages left 2-3 ms of `total` unnamed)
            "result_wait": round(max(0.0, inferred - ticket.finished_at) * 1e3, 2),
            "postprocess": round((done - inferred) * 1e3, 2),
            "track": round((tracked - done) * 1e3, 2),
        }
        latency["total"] = round((steady() - job.ts) * 1e3, 2)
        for stage, value in latency.items():
            self.times.add(stage, value)
        self._link.publish_detections(self.name,
                                      self._payload(job, detections, latency, track_ids))
        if self.drift is not None:  # the model's detections, as its reference profiled them
            model_detections = detections if reported is decoded else \
                self.sampler.split(decoded)[0]
            self.drift.observe_detections(job.ts, model_detections, width, height)
        # every frame: audit, counts
        reasons = self.sampler.reasons(job.ts, detections, below, job.sample is not None)
        if reasons and job.sample is not None:
            self.frame_publisher.submit(FrameSample(self.name, job.frame_id, job.ts, job.sample,
                                                    detections, tuple(reasons), below,
                                                    track_ids))
        self.frames += 1
        self._rate.tick()

    def _payload(self, job: _InFlight, detections: Detections, latency: dict[str, float],
                 track_ids: npt.NDArray[np.int64] | None) -> dict[str, Any]:
        ts = published(job.ts)
        return {
            "v": CONTRACT_VERSION, "ts": ts, "time": rfc3339(ts),
            "frame_id": job.frame_id, "camera": self.name, "model": self.spec.name,
            "width": job.geometry.source_width, "height": job.geometry.source_height,
            "latency_ms": latency, "batch": job.ticket.batch_size,
            "detections": detections.to_payload(self.spec.labels, track_ids),
        }

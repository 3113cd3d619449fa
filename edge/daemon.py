"""The daemon: builds the inference service, cameras and MQTT link from a validated config and
runs them. One runner serves every camera (see `edge.service`)."""

from __future__ import annotations

import contextlib
import logging
import os
import re
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edge import __version__
from edge.clock import ClockSteps, span_words, steady
from edge.concurrency import StopRequest
from edge.config import CameraConfig, Config, ModelConfig
from edge.drift import DriftMonitor, reference_from_config
from edge.errors import ConfigError, EdgeError, InputError, ModelError, SourceError
from edge.files import require_model_file
from edge.frames import FramePublisher, FrameSampler
from edge.heartbeat import Heartbeat, summary_line
from edge.homeassistant import DiscoveryPublisher, remove_elsewhere, warn_of_a_misspelt_prefix
from edge.keeping_up import WINDOW_S, Counts, KeepingUp, behind_warning, caught_up_line
from edge.mqtt.link import MqttLink
from edge.mqtt.topics import CONTRACT_VERSION, RETAINED_SNAPSHOTS, Topics
from edge.object_filter import ObjectFilter, object_filter_of
from edge.pipeline import LOOP_STALL_S, CameraWorker
from edge.postprocess import decoder_from_spec
from edge.runners import Runner, choose_backend, runner_from_config
from edge.sdnotify import notifier_from_environ
from edge.service import InferenceService, batch_capacity, runner_rows
from edge.sources import camera_error
from edge.sources.supervisor import (
    HEALTHY_CAMERA_STATES,
    CameraState,
    CameraStatus,
    SourceSupervisor,
)
from edge.spec import ModelSpec, PostprocessSpec
from edge.system import memory_rss_mb, temperatures_c
from edge.tensorrt import TensorRTUnavailableError
from edge.tensorrt.precision import (
    ANY_TRT_VERSION,
    check_calibration_cache,
    graph_has_qdq,
    precision_for,
)
from edge.timing import rfc3339
from edge.tracking.bytetrack import TrackIds
from edge.tracking.camera import CameraTracking
from edge.wording import counted, listed
from edge.zones import frame_size_at_start, zones_from_config

log = logging.getLogger(__name__)

#: A model's `quantization` as the start's log line says it.
QUANTIZATION_WORDS = {"float": "a float model", "int8-qdq": "INT8 Q/DQ, tensorrt profile",
                      "int8-qdq-cpu": "INT8 Q/DQ, cpu profile"}
#: ... where the spec says float and the graph holds Q/DQ nodes (a user check: a model that
#: ONNX Runtime's quantizer made from the converted one was said to be "a float model").
QUANTIZED_ELSEWHERE = "INT8 Q/DQ, quantized outside edge calibrate"
#: What `cmd/snapshot` accepts: nothing (every camera) or one camera name.
_CAMERA_NAME = re.compile(r"[A-Za-z0-9_-]{1,64}")
#: Stopping waits this long for the cameras to publish their frames in flight, all cameras
#: together, then up to `INFERENCE_STOP_S` for the running batch, before the outbox is
#: flushed; with a backend that never returns, stopping takes the sum and no longer (the
#: systemd unit's TimeoutStopSec is 30 s, the flush `mqtt.flush_timeout_s` after these).
CAMERAS_STOP_S = 5.0
INFERENCE_STOP_S = 10.0
#: Starting waits at most this long (seconds) for the broker's first answer before it tells
#: systemd it is ready; an unreachable broker delays nothing more (the link keeps retrying).
READY_WAIT_S = 1.0
#: The retained state topics under the prefix that belong to a camera (its status and drift,
#: its counts per label and per zone and label): swept at the first connect, so that those
#: this config no longer keeps are cleared.
STATE_TOPIC_LEVELS = ("+/status", "+/drift", "+/+/count", "+/+/+/count", "+/+/snapshot")
#: Topics a log line names at most.
LISTED_TOPICS = 6


@dataclass(frozen=True)
class CameraRun:
    """One camera's part of a run."""

    name: str
    frames: int  # through the model
    frames_dropped: int  # replaced by a newer frame before the model took them
    streamed_s: float  # seconds the camera was streaming, its outages and its start left out
    reconnects: int

    @property
    def fps(self) -> float:
        """Frames through the model a second while the camera streamed."""
        return self.frames / self.streamed_s if self.streamed_s > 0 else 0.0


@dataclass(frozen=True)
class RunSummary:
    frames: int
    seconds: float
    produced: int  # detection messages: published + queued + dropped
    queued: int  # left in the outbox at stop (disk: kept for the next start)
    published: int
    dropped: int
    flushed: bool
    failure: str | None = None  # why inference failed; `edge run` then exits 1
    frames_dropped: int = 0  # camera frames inference never saw (a newer one replaced them)
    #: the model's output did not fit its spec (no restart helps): `edge run` exits 2
    model_error: str | None = None
    #: retained state values (counts, discovery configs) the broker acknowledged, outside the
    #: outbox's figures above
    states_sent: int = 0
    #: cameras that delivered no frame in the whole run (a camera never reached)
    never_streamed: tuple[str, ...] = ()
    #: whether the MQTT broker was connected at least once in the run
    broker_reached: bool = True
    #: of `produced`: what a disk outbox held from an earlier run at start
    recovered: int = 0
    #: of `dropped`: events the outbox's limits dropped (after every detection waiting)
    events_dropped: int = 0
    #: another daemon publishes as this device and started first: `edge run` exits 2
    gave_way: str | None = None
    #: each camera's part, in the config's order
    cameras: tuple[CameraRun, ...] = ()
    #: kinds of message (events, stats, ...) the broker acknowledged but never delivered back
    #: to this device (edge.mqtt.echo): counted in `published`, gone nowhere
    not_back: tuple[str, ...] = ()

    @property
    def fps(self) -> float:
        return self.frames / self.seconds if self.seconds > 0 else 0.0


def postprocess_settings(spec: ModelSpec, config: Config) -> PostprocessSpec:
    """The model's defaults with the config's overrides applied."""
    if config.model.iou_threshold is not None and spec.head == "end_to_end":
        log.warning("[model] iou_threshold has no effect on %s: its output is final "
                    "detections (an end-to-end head, no NMS); remove it from the config",
                    spec.name)
    overrides = {key: value for key, value in (
        ("score_threshold", config.model.score_threshold),
        ("iou_threshold", config.model.iou_threshold)) if value is not None}
    return spec.postprocess.model_copy(update=overrides)


def _toml_value(value: object) -> str:
    """`'/data/m.cache'`, `2`: a setting's value as the config writes it."""
    return f"'{value}'" if isinstance(value, (str, Path)) else repr(value)


def unused_tensorrt_settings(model: ModelConfig, spec: ModelSpec) -> list[str]:
    """What to say of the `[model]` settings only TensorRT reads, on a run with ONNX Runtime:
    each is ignored, and a precision the model's spec rules out on every TensorRT device
    (an INT8 QDQ model asked for fp16, a `cpu`-profile model) is said to be refused there
    rather than left to a check that cannot pass."""
    warnings = []
    ignored = [f"{name} = {_toml_value(getattr(model, name))}"
               for name in ("dla_core", "gpu_memory", "workspace_mb", "calibration_cache",
                            "engine_dir")
               if getattr(model, name) != ModelConfig.model_fields[name].default]
    if ignored:
        warnings.append(f"model.{', model.'.join(ignored)}: "
                        f"{'TensorRT settings' if len(ignored) > 1 else 'a TensorRT setting'}, "
                        f"which ONNX Runtime does not use; this run ignores "
                        f"{'them' if len(ignored) > 1 else 'it'}")
    if model.calibration_cache is not None:
        try:
            check_calibration_cache(model.calibration_cache, model.path)
        except (InputError, ModelError) as exc:
            warnings.append(f"model.calibration_cache: {exc} (a TensorRT device refuses it)")
    if model.precision == "auto":
        return warnings
    cache = model.calibration_cache is not None and model.precision == "int8"
    if not cache:  # int8 with a cache is a float model's INT8 engine, built from the cache
        try:
            precision_for(spec.quantization or "float", model.precision, ANY_TRT_VERSION,
                          model.path)
        except (InputError, ModelError) as exc:
            said = str(exc).replace("--precision", "model.precision")  # a config's key
            return [*warnings, f"model.precision {model.precision!r}: a TensorRT device "
                               f"refuses this model with it ({said}); ONNX Runtime runs the "
                               "model as it is"]
    given = ("model.precision 'int8' with model.calibration_cache is a TensorRT setting"
             if cache else f"model.precision {model.precision!r} is a TensorRT setting")
    build = f"--precision {model.precision}" + (" --cache FILE" if cache else "")
    return [*warnings, f"{given}: ONNX Runtime runs {spec.name} as it was converted ("
                       f"{'INT8 Q/DQ' if spec.quantization not in (None, 'float') else 'float'}),"
                       " so this run does not show what a TensorRT device would make of that "
                       f"precision (check it there with `edge build-engine MODEL {build}`)"]


def warn_what_tracking_off_idles(config: Config) -> None:
    """Zones and Home Assistant's counts work on tracked objects: with tracking off they count
    nothing, which the config alone would not say."""
    if config.tracking.enabled:
        return
    zoned = [camera.name for camera in config.cameras if camera.zones]
    if zoned:
        log.warning("the zones of camera%s %s count tracked objects, and tracking.enabled is "
                    "false: they count nothing; set it to true (or remove the zones)",
                    "s" if len(zoned) > 1 else "", ", ".join(zoned))
    if config.homeassistant.enabled:
        log.warning("Home Assistant gets no count or occupancy entities while tracking.enabled "
                    "is false (only connectivity, frame and FPS); set it to true for counts")


class Daemon:
    """Everything is built (and every input checked) in the constructor; `start` opens the
    cameras and connects; `stop` publishes status `stopped` and flushes the outbox."""

    def __init__(self, config: Config) -> None:
        require_model_file(config.model.path, config.key("model.path"))  # first: its key named
        self.config = config
        self._stalled: set[str] = set()  # cameras whose loop is stuck, as last logged
        self._keeping_up = KeepingUp(max(WINDOW_S, config.stats.interval_s))
        self._track_ids = TrackIds()  # shared by the cameras: event ids unique per device
        self.backend = choose_backend(config.model)
        self.started_at = time.time()
        self._up_since = time.monotonic()  # uptime does not jump with the clock
        self._clock_steps = ClockSteps()
        self.topics = Topics(config.topic_prefix)
        self.link = MqttLink(config.mqtt, self.topics,
                             config.mqtt.client_id or f"edge-{config.device_id}", self._status)
        try:
            self.service = self._service()
        except (TensorRTUnavailableError, ModelError) as exc:
            raise self._model_error_named(exc) from None
        self._status_lock = threading.Lock()  # camera statuses reach the broker in order
        # What the broker got last, and on which connection (the link's connect count) it
        # was handed over: after a connect only what it lacks is sent again.
        self._published_states: dict[str, CameraState] = {}
        self._device_status_connection = 0
        self._camera_status_sent: dict[str, tuple[int, dict[str, Any]]] = {}
        self._stopping = False
        self._started_at = time.monotonic()  # start() sets it again
        self._camera_failure: str | None = None
        self._start_error: str | None = None
        self.workers: list[CameraWorker] = []
        try:
            self.spec = self.service.spec
            self.workers = [self._worker(index, camera)
                            for index, camera in enumerate(config.cameras)]
        except BaseException:
            self.service.close()
            raise
        self.model_name = self.spec.name or config.model.path.name
        # which precision runs: an FP32 model and its INT8 one share their name (a user check)
        self._quantized_elsewhere = (self.spec.quantization in (None, "float")
                                     and graph_has_qdq(config.model.path))
        #: what inference computes in, as the status tells a remote watcher (a user check:
        #: nothing there said whether INT8 ran)
        self.precision = "int8" if self._quantized_elsewhere else self.service.precision
        try:
            self._attach_monitoring()
        except BaseException:
            self.service.close()
            raise
        self.link.on_command("snapshot", self._snapshot)
        self.link.sweep_retained(self.topics.event_snapshot("+", "+"), self._adopt_snapshots,
                                 refusal_costs="the event snapshots earlier runs retained are "
                                 f"not found, so more than {RETAINED_SNAPSHOTS} a camera can "
                                 "stay retained")
        self._stale_lock = threading.Lock()  # the sweeps end on threads of their own
        self._stale_cleared: list[str] = []
        self._stale_sweeps_left = len(STATE_TOPIC_LEVELS)
        for levels in STATE_TOPIC_LEVELS:
            self.link.sweep_retained(f"{self.topics.prefix}/{levels}", self._clear_stale_state,
                                     refusal_costs="what earlier runs retained there for "
                                     "cameras and classes no longer configured stays")
        self.discovery = self._home_assistant()
        warn_what_tracking_off_idles(config)
        ignored = config.mqtt.ignored_password_env(os.environ)
        if ignored is not None:
            log.warning("%s", ignored)
        self.heartbeat = Heartbeat(notifier_from_environ(os.environ),
                                   config.log.summary_interval_s)

    def _home_assistant(self) -> DiscoveryPublisher | None:
        """The discovery publisher where Home Assistant is enabled; the entities earlier runs
        left under other prefixes are removed once connected, and a prefix that looks like a
        typo of Home Assistant's own is warned of."""
        config = self.config
        publisher = DiscoveryPublisher(
            config, self.spec.labels, self.model_name, self.link,
            config.mqtt.password_value(os.environ),
            drift=any(worker.drift is not None for worker in self.workers),
        ) if config.homeassistant.enabled else None
        remove_elsewhere(config, self.link)
        warn_of_a_misspelt_prefix(config)
        return publisher

    def _attach_monitoring(self) -> None:
        """When the model has a reference profile, each camera's drift monitor (retained on
        `<prefix>/<camera>/drift`)."""
        drift = self.config.drift
        try:
            reference = reference_from_config(drift, self.config.model.path, self.spec.labels)
        except ModelError as exc:  # named by its key, as the config's own errors are
            key = "drift.reference" if drift.reference is not None else "drift.enabled"
            raise ModelError(f"{self.config.key(key)}: {exc}") from exc
        if reference is None:
            return
        for worker in self.workers:

            def publish(payload: dict[str, Any], topic: str = self.topics.drift(worker.name)
                        ) -> None:
                self.link.publish_json(topic, payload, qos=1, retain=True)

            worker.drift = DriftMonitor(worker.name, self.config.drift, reference, publish)

    def _model_error_named(self, exc: EdgeError) -> EdgeError:
        """`exc`, raised as the model's runner loaded, naming the config key to fix as the
        config's own errors do: `model.backend` where TensorRT is not there to ask for,
        `model.path` where the model does not load."""
        if isinstance(exc, TensorRTUnavailableError):
            return TensorRTUnavailableError(f"{self.config.key('model.backend')} = "
                                            f"{self.config.model.backend!r}: {exc}", exc.state)
        said = str(exc)
        if said.startswith("model.path"):  # named already
            said = said[len("model.path"):].lstrip(": ")
        return ModelError(f"{self.config.key('model.path')}: {said}")

    def _service(self) -> InferenceService:
        """The one runner, created on (and only ever called from) the inference thread."""
        model, cameras = self.config.model, len(self.config.cameras)
        rows = runner_rows(model.max_batch, cameras)

        def runner() -> Runner:
            return runner_from_config(model, self.backend, max_batch=rows)

        return InferenceService(
            runner, lambda spec: batch_capacity(spec.input.batch, model.max_batch, cameras),
            model.batch_timeout_ms)

    def _worker(self, index: int, camera: CameraConfig) -> CameraWorker:
        try:
            supervisor = SourceSupervisor(camera.name, camera.source,
                                          on_change=self._camera_changed,
                                          stall_s=camera.stall_s,
                                          reconnect_max_s=camera.reconnect_max_s,
                                          snapshot_interval_s=camera.snapshot_interval_s)
        except SourceError as exc:
            raise camera_error(self.config.key(f"cameras.{index}.source"), camera.name,
                               exc) from exc
        settings = postprocess_settings(self.spec, self.config)
        sampler = FrameSampler(self.config.frames, self.config.sampling_for(camera),
                               self.spec.labels, settings.score_threshold,
                               self.config.sampling_key(camera), camera.name)
        frames = FramePublisher(self.config.frames, self.link, self.spec.labels, sampler.limiter,
                                self.spec.name or self.config.model.path.name)
        # Decoded down to the uncertainty band's floor; the worker publishes what reaches the
        # threshold and shows the rest to the sampler only (FrameSampler.split).
        decoder = decoder_from_spec(self.spec, settings.model_copy(
            update={"score_threshold": sampler.decode_threshold}))
        objects = object_filter_of(self.config, index, self.spec.labels,
                                   settings.score_threshold)
        tracking = self._tracking(camera.name, objects)
        return CameraWorker(camera.name, supervisor, self.service, decoder, self.link,
                            sampler, frames, tracking=tracking, objects=objects)

    def camera_statuses(self) -> list[CameraStatus]:
        return [w.supervisor.status() for w in self.workers]

    def _camera_changed(self, status: CameraStatus) -> None:
        """Retained camera status on every change; the device status when a camera's state
        changes (`degraded` while any camera has stopped streaming)."""
        with self._status_lock:
            self._publish_camera_status(status)
            if not self._stopping:
                self._publish_device_status()

    def _republish_statuses(self, every: bool = False) -> None:
        """After a (re)connect, what the broker lacks: statuses that changed while it was
        away were dropped, and those handed over on an earlier connection may have been lost
        with it. Those sent on this connection (the cameras that started streaming after the
        connect) are not sent twice. The device status the connect itself sent may have been
        built just before a camera's state changed (CI saw a lone camera's device stay
        `online` while it reconnected), so unless one was sent after it, it is sent again
        when the cameras' states differ from those it carried. `every`: all of them, over
        those another daemon publishing as this device sent (edge.mqtt.rivals)."""
        with self._status_lock:
            connection = self.link.counters.connects
            if every:
                self._camera_status_sent.clear()
                self._published_states, self._device_status_connection = {}, connection
            for status in self.camera_statuses():
                if self._camera_status_sent.get(status.camera) != (connection,
                                                                    status.payload()):
                    self._publish_camera_status(status)
            if not self._stopping:
                self._publish_device_status()

    def _publish_camera_status(self, status: CameraStatus) -> None:
        """The camera's retained status, remembered with the connection it was handed to.
        The caller holds `_status_lock`."""
        connection = self.link.counters.connects
        payload = status.payload()
        if self.link.publish_json(self.topics.camera_status(status.camera), payload, qos=1,
                                  retain=True, connection=connection):
            self._camera_status_sent[status.camera] = (connection, payload)
        else:
            self._camera_status_sent.pop(status.camera, None)

    def _publish_device_status(self) -> None:
        """The retained device status with the cameras' states now, when those differ from the
        last ones handed to the broker. States are remembered only
        once handed over: a change dropped while the link was down is sent after the next
        connect. The caller holds `_status_lock`."""
        connection = self.link.counters.connects
        if connection and self._device_status_connection != connection:
            # nothing sent since this connection's own status, which the broker holds last
            sent = self.link.connect_status
            self._published_states = (sent or {}).get("camera_states", {})
        status = self._status("online")
        states = status["camera_states"]
        if states == self._published_states:
            return
        if self.link.publish_json(self.topics.status, status, qos=1, retain=True,
                                  connection=connection):
            self._published_states = states
            self._device_status_connection = connection

    def _tracking(self, name: str, objects: ObjectFilter) -> CameraTracking | None:
        """The camera's tracker, events and counts; its zones are checked here (ConfigError
        naming the zone) against the frame size the source URI promises or a local file has;
        a stream's zones are checked on its first frame. With tracking off the zones count
        nothing but are checked all the same, so that turning it on later does not bring up
        an error that was in the config all along."""
        camera = next(c for c in self.config.cameras if c.name == name)
        size = frame_size_at_start(camera.source, camera.zones)
        try:
            zones = zones_from_config(name, camera.zones, self.spec.labels, size)
        except ConfigError as exc:  # named after the config's file, as its other errors
            raise ConfigError(f"{self.config.key('')}{exc}") from None
        if not self.config.tracking.enabled:
            return None
        return CameraTracking(name, self.config.tracking, self.topics, self.spec.labels, zones,
                              [] if size else camera.zones, self.link,
                              classifier=self.spec.task == "classify",
                              zone_configs=camera.zones, placed_for=size,
                              track_ids=self._track_ids, reports=objects.reports,
                              event_scores=objects.event_scores)

    def _adopt_snapshots(self, topics: list[str]) -> None:
        """Bound the snapshots earlier runs left retained: each camera that publishes
        snapshots takes its own over (and clears the oldest beyond its limit); those of
        cameras that no longer do (removed from the config, tracking or snapshots off) are
        cleared."""
        events = {w.name: w.tracking.events for w in self.workers
                  if w.tracking is not None and self.config.tracking.snapshots}
        found: dict[str, list[str]] = {}
        for topic in topics:
            found.setdefault(self.topics.snapshot_camera(topic) or "", []).append(topic)
        cleared = 0
        for camera, held in found.items():
            engine = events.get(camera)
            stale = held if engine is None else [m.topic for m in engine.adopt_retained(held)]
            for topic in stale:
                self.link.publish_state(topic, b"", qos=1)
            cleared += len(stale)
        gone = sorted(camera for camera in found if camera not in events)
        if topics:
            log.info("%d event snapshots were retained by earlier runs; %d cleared%s",
                     len(topics), cleared,
                     f" (all those of {', '.join(gone)}, which no longer publish them)"
                     if gone else "")

    def _clear_stale_state(self, topics: list[str]) -> None:
        """Clear the retained camera statuses, drift states, counts and label snapshots that
        earlier runs left and this one does not keep: those of cameras removed from the
        config, of zones or labels it no longer has, of drift or tracking turned off. Left,
        they read as live (a removed camera `streaming` for ever in `edge monitor` and
        dashboards)."""
        kept = {self.topics.camera_status(w.name) for w in self.workers}
        kept |= {self.topics.drift(w.name) for w in self.workers if w.drift is not None}
        for worker in self.workers:
            if worker.tracking is not None:
                kept |= set(worker.tracking.events.count_topics)
                kept |= worker.tracking.events.label_snapshot_topics
        stale = [topic for topic in topics if topic not in kept]
        for topic in stale:
            self.link.publish_state(topic, b"")
        with self._stale_lock:  # one line once every sweep is done, not one a sweep
            self._stale_cleared += stale
            self._stale_sweeps_left -= 1
            if self._stale_sweeps_left or not self._stale_cleared:
                return
            cleared = sorted(self._stale_cleared)
        log.info("cleared %s that earlier runs left retained and this config no longer keeps: "
                 "%s", counted(len(cleared), "topic"), listed(cleared, LISTED_TOPICS))

    def alive(self) -> bool:
        """Every camera loop and the inference thread are alive and no loop is stuck (systemd's
        watchdog); a loop that gets stuck is logged once, by name."""
        stalled = {w.name for w in self.workers if w.stalled}
        for name in sorted(stalled - self._stalled):
            log.error("camera %s: its loop has not come round for %.0f s, stuck in inference or "
                      "in handling a frame", name, LOOP_STALL_S)
        self._stalled = stalled
        return self.service.alive() and all(w.alive() for w in self.workers)

    def _model_error(self) -> ModelError | None:
        """A camera loop's: the model's output does not fit its spec (a re-converted model is
        the fix, so the daemon stops instead of failing on every frame)."""
        return next((w.failure for w in self.workers if isinstance(w.failure, ModelError)),
                    None)

    @property
    def failure(self) -> BaseException | None:
        """Why inference failed, if it did: the daemon then stops and exits 1."""
        return self.service.error

    def _status(self, state: str) -> dict[str, Any]:
        """The device status payload. "offline" is the Last Will, set at each connect and sent
        by the broker whenever the daemon is gone: it carries no camera states and no time,
        which would be those of the connect (a killed daemon's read `"camera_states":
        {"gate": "starting"}`)."""
        static = {"v": CONTRACT_VERSION, "state": state, "version": __version__,
                  "model": self.model_name, "cameras": [c.name for c in self.config.cameras],
                  "backend": self.backend.name, "backend_reason": self.backend.reason,
                  "precision": self.precision, "host": socket.gethostname(),
                  "started_at": rfc3339(self.started_at)}
        if state == "offline":
            return static
        now = time.time()
        cameras = {s.camera: s.state for s in self.camera_statuses()}
        if state == "online" and any(s not in HEALTHY_CAMERA_STATES for s in cameras.values()):
            static["state"] = "degraded"
        return {**static, "camera_states": cameras, "ts": now, "time": rfc3339(now),
                **self._error()}

    def _error(self) -> dict[str, str]:
        """The status's `error`: why a camera could not start, why inference failed, or why
        the model's output was refused."""
        if self._start_error is not None:
            return {"error": f"start failed: {self._start_error}"}
        if self.failure is not None:
            return {"error": f"inference failed: {self.failure}"}
        model_error = self._model_error()
        return {"error": f"model output refused: {model_error}"} if model_error else {}

    def stats(self) -> dict[str, Any]:
        now = time.time()
        return {"v": CONTRACT_VERSION, "ts": now, "time": rfc3339(now),
                "uptime_s": round(time.monotonic() - self._up_since, 1),
                "backend": self.backend.name,
                "cameras": {w.name: {**w.stats(), "keeping_up": self._keeping_up_now(w)}
                            for w in self.workers},
                "inference": self.service.stats(),
                "mqtt": self.link.stats(),
                "memory_rss_mb": memory_rss_mb(), "temperatures_c": temperatures_c()}

    def _keeping_up_now(self, worker: CameraWorker) -> bool | None:
        """The camera's `keeping_up`; null while it does not stream (a user check: a camera
        `ended` at the stop read true)."""
        if worker.supervisor.streaming_since() is None:
            return None
        return self._keeping_up.keeping_up(worker.name)

    def _note_load(self, now: float) -> None:
        """Says when cameras fall behind (drop a large share of their frames: the device has
        more work than it can do) and when they catch up again (edge.keeping_up)."""
        change = self._keeping_up.observe(now, {
            w.name: Counts(w.frames, w.frames_dropped, w.supervisor.streaming_since())
            for w in self.workers})
        if change.fell_behind:
            stats = {w.name: w.stats() for w in self.workers if w.name in change.fell_behind}
            log.warning("%s", behind_warning(change.fell_behind, stats,
                                             self._keeping_up.window_s))
        if change.caught_up:
            log.info("%s", caught_up_line(change.caught_up))

    def _snapshot(self, payload: bytes) -> dict[str, Any]:
        text = payload[:100].decode(errors="replace").strip()
        if len(payload) > 100 or (text and not _CAMERA_NAME.fullmatch(text)):
            # never echo the request: the reply stays small whatever was sent
            return {"ok": False, "error": "expected no payload (every camera) or one camera "
                                          "name", "cameras": [w.name for w in self.workers]}
        wanted = text or None
        cameras = [w for w in self.workers if wanted in (None, w.name)]
        for worker in cameras:
            worker.sampler.request_snapshot()
        if not cameras:
            return {"ok": False, "error": f"no camera named {wanted!r}",
                    "cameras": [w.name for w in self.workers]}
        return {"ok": True, "cameras": [w.name for w in cameras]}

    def start(self) -> None:
        """Connect to the broker, then start the cameras: a local file is opened here, and
        OpenCV opens one stream at a time, so a file camera waited out an RTSP camera's
        open (3 s), while the other cameras' detections filled an outbox that a restart had
        brought back full, with the broker up all along. A camera that cannot start stops
        the daemon with its status `failed` and the reason, the outbox flushed first."""
        self._started_at = time.monotonic()
        self.link.start()
        started: list[CameraWorker] = []
        try:
            # every file first: a broken clip fails the start before another camera has
            # published (a user check: one camera's detections and counts went out first)
            for index, worker in enumerate(self.workers):
                with self._camera_error_of(index, worker):
                    worker.supervisor.open()
            for index, worker in enumerate(self.workers):
                with self._camera_error_of(index, worker):
                    worker.start()
                started.append(worker)
        except EdgeError as exc:
            self._start_error = str(exc)
            for worker in self.workers:  # opened files of cameras that never started
                if worker not in started:
                    worker.supervisor.stop()
            self._stop_cameras(started)
            if self.link.wait_connected(READY_WAIT_S):  # the failed camera's status too
                self._republish_statuses()
            self.link.stop("failed")
            raise
        if self.discovery is not None:
            self.discovery.publish()
            self.discovery.start()
        log.log(logging.WARNING if self.backend.fixable else logging.INFO,
                "running %s (%s) on %s%s (%s) for cameras %s", self.spec.name,
                QUANTIZED_ELSEWHERE if self._quantized_elsewhere
                else QUANTIZATION_WORDS[self.spec.quantization or "float"], self.backend.name,
                f", an {self.precision.upper()} engine" if self.backend.name == "tensorrt"
                else "", self.backend.reason, ", ".join(w.name for w in self.workers))
        if self._quantized_elsewhere:
            log.warning("%s's spec says it is a float model, but its graph holds Q/DQ nodes: it "
                        "was quantized after edge convert by another tool. ONNX Runtime runs it "
                        "as it is; TensorRT refuses it. Quantize the FP32 model with edge "
                        "calibrate instead: it judges the ranges against FP32 and records the "
                        "quantization", self.config.model.path)
        if self.backend.name == "onnxruntime":
            for warning in unused_tensorrt_settings(self.config.model, self.spec):
                log.warning("%s", warning)
        if self.spec.quantization == "int8-qdq" and self.backend.name == "onnxruntime":
            log.warning("%s was calibrated for TensorRT (edge calibrate --profile "
                        "tensorrt): ONNX Runtime's CPU usually runs its Q/DQ layout slower "
                        "than the FP32 model; for the CPU calibrate with --profile cpu, or run "
                        "the FP32 model", self.spec.name)
        # the broker usually answers within milliseconds: the ready line then says how it went
        self.link.connection.wait_settled(READY_WAIT_S)
        self.heartbeat.ready(summary_line(self.stats(), rates=False))

    @contextlib.contextmanager
    def _camera_error_of(self, index: int, worker: CameraWorker) -> Iterator[None]:
        """A SourceError inside as the config error of camera `index`'s source."""
        try:
            yield
        except SourceError as exc:
            raise camera_error(self.config.key(f"cameras.{index}.source"), worker.name,
                               exc) from exc

    def run(self, stop: StopRequest, duration: float | None = None) -> RunSummary:
        """Serve until `stop` is set, `duration` seconds pass, or every source has ended."""
        began = self._started_at  # frames count from start(), so time does too
        next_stats, connects, reclaims = time.monotonic(), 0, 0
        while not stop.is_set():
            now = time.monotonic()
            if duration is not None and now - began >= duration:
                break
            if self.failure is not None or self._model_error() is not None:
                break  # the cause is logged; systemd restarts us (exit 1), or not (exit 2)
            if self._gives_way() is not None:
                break  # said by the link; exit 2
            # A live camera's loop never ends (its supervisor reopens it), so this holds only
            # when every camera is a file or scene that has ended or failed.
            if all(w.finished.is_set() for w in self.workers):
                self._camera_failure = "; ".join(
                    f"camera {s.camera} failed: {s.reason}" for s in self.camera_statuses()
                    if s.state == "failed") or None
                log.info("every source has ended; stopping")
                break
            self._say_a_clock_step()
            if self.link.counters.connects != connects:
                connects = self.link.counters.connects
                self._republish_statuses()
            if self.link.counters.reclaims != reclaims:
                reclaims = self.link.counters.reclaims
                self._republish_statuses(every=True)
            if now >= next_stats:
                self._note_load(now)
                self.link.publish_json(self.topics.stats, self.stats(), qos=0, retain=True)
                next_stats = now + self.config.stats.interval_s
            self.heartbeat.tick(self.alive(), self.stats)
            wake = next_stats if duration is None else min(next_stats, began + duration)
            stop.wait(min(0.2, max(0.0, wake - time.monotonic())))
        return self.stop(time.monotonic() - began)

    def _say_a_clock_step(self) -> None:
        step = self._clock_steps.new_step()
        if step:
            how = ("forward (NTP's first sync on a board without a battery-backed clock, or "
                   "by hand)" if step > 0 else "back (by NTP or by hand)")
            log.warning("the system clock was set %s %s: messages made from now on are dated "
                        "by it (those queued before keep their dates, and this run's "
                        "`started_at` stays as the clock read it at the start); frame "
                        "sampling, event updates and drift windows keep their pace",
                        span_words(step), how)

    def stop(self, seconds: float) -> RunSummary:
        self._stopping = True
        self.heartbeat.stopping(summary_line(self.stats()))
        statuses = self.camera_statuses()  # before the stop sets every state "ended"
        streamed = [w.supervisor.streamed_seconds() for w in self.workers]  # up to the stop
        # Named once the cameras have stopped: one still opening at the stop can deliver its
        # first frame while it stops (and log "streaming"), and then it did deliver.
        self._stop_cameras(self.workers)
        never_streamed = []
        for worker, status in zip(self.workers, statuses, strict=True):
            if worker.supervisor.frames == 0:
                never_streamed.append(status.camera)
                log.warning("camera %s never delivered a frame (%s)", status.camera,
                            _why_no_frame(status.state, status.reason, seconds))
            elif status.state == "reconnecting":  # its status is "ended" once stopped
                log.warning("camera %s was down at the stop, for its last %.0f s (%s)",
                            status.camera, max(0.0, steady() - status.since), status.reason)
        model_error = self._model_error()
        # the last retained stats are sent once the outbox is flushed, so that they count
        # what the run summary counts (sent before it, they said `outbox 10` for good)
        rival = self._gives_way()
        flushed = self.link.stop(
            None if rival else "failed" if self.failure or model_error else "stopped",
            last_words=lambda: self.link.publish_json(self.topics.stats, self.stats(), qos=0,
                                                      retain=True))
        frames = sum(w.frames for w in self.workers)
        return RunSummary(frames, seconds, self.link.counters.produced, self.link.outbox_depth,
                          self.link.counters.published,
                          self.link.counters.dropped, flushed,
                          self._camera_failure if self.failure is None else str(self.failure),
                          sum(w.frames_dropped for w in self.workers),
                          None if model_error is None else str(model_error),
                          self.link.counters.states_sent, tuple(never_streamed),
                          self.link.counters.connects > 0, self.link.counters.recovered,
                          self.link.counters.events_dropped, rival,
                          tuple(CameraRun(w.name, w.frames, w.frames_dropped, seconds,
                                          w.supervisor.reconnects)
                                for w, seconds in zip(self.workers, streamed, strict=True)),
                          self.link.not_back)

    def _gives_way(self) -> str | None:
        """Why this daemon stops for another that publishes as this device and started first
        (see edge.mqtt.rivals); None while there is none."""
        rival = self.link.rival
        if rival is None:
            return None
        return f"{rival.describe(self.config.topic_prefix)}; give each device its own device_id"

    def _stop_cameras(self, workers: list[CameraWorker]) -> None:
        """Stop `workers` together and then the inference service: bounded by
        `CAMERAS_STOP_S` + `INFERENCE_STOP_S` however many cameras there are (one after the
        other, a stuck backend cost each camera its own wait)."""
        deadline = time.monotonic() + CAMERAS_STOP_S
        for worker in workers:
            worker.request_stop()
        for worker in workers:
            worker.stop(max(0.0, deadline - time.monotonic()))
        self.service.close(INFERENCE_STOP_S)


def _why_no_frame(state: str, reason: str | None, seconds: float) -> str:
    """Why a camera delivered no frame in a run of `seconds`: its state and the reason it
    gave, or, for one still opening without an error, that (a user check: a 3 s trial said
    "(starting)", and the exit line pointed to it for the reason)."""
    if reason:
        return f"{state}: {reason}"
    if state == "starting":
        return (f"still opening {seconds:.0f} s after the start, without an error: an RTSP "
                "camera can take several seconds to send its first frame; give a trial run "
                "longer (--seconds 15)")
    return state

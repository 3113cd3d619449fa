"""`edge demo`: the whole product in one command, scored against the scene's ground truth.

Starts an embedded broker (or uses --mqtt), runs the daemon on the synthetic camera with the
bundled detector, and runs a subscriber (the typed client) that prints live detections and
scores them by replaying the scene from its seed: detection precision and recall, tracking
(IDF1, MOTA, identity switches with py-motmetrics) and the events against the scene's object
appearances.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np

from edge.broker import EmbeddedBroker
from edge.client import DetectionsMessage, Event, Message, Subscriber
from edge.concurrency import StopRequest
from edge.config import config_from_dict
from edge.daemon import Daemon
from edge.detections import Detections
from edge.errors import EdgeError, InputError
from edge.monitor import DETECTIONS_LEGEND, format_detections
from edge.mqtt.clearing import clear_what_a_run_left
from edge.mqtt.failures import COMMAND_LINE
from edge.mqtt.subscriber import (
    NO_TLS_FILES,
    TlsFiles,
    checked_broker_url,
    daemon_mqtt_settings,
)
from edge.redact import redact_uri
from edge.spec import spec_from_onnx_file
from edge.synthetic.mot import TrackingScorer
from edge.synthetic.replay import ReplayScorer
from edge.synthetic.scene import SHAPE_LABELS, detects_the_scene

log = logging.getLogger(__name__)

DEMO_CAMERA = "demo"


def bundled_model() -> Path:
    """Path of the demo detector shipped inside the package."""
    return Path(str(resources.files("edge") / "models" / "shapes.onnx"))


@dataclass(frozen=True)
class DemoSummary:
    frames: int
    seconds: float
    fps: float
    published: int
    received: int
    precision: float
    recall: float
    dropped_frames: int
    model: str
    backend: str
    broker: str
    latency_ms_p50: dict[str, float]
    tracking: dict[str, float | int]
    events: dict[str, int]
    #: --mqtt: the retained messages the run left on the broker and cleared (None: not
    #: cleared, or the embedded broker, gone with the run)
    retained_cleared: int | None = None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def run_demo(seconds: float, mqtt_url: str | None = None, seed: int = 1, fps: float = 15.0,
             threads: int = 0, echo: Callable[[str], None] = print,
             model: Path | None = None, stop: StopRequest | None = None,
             running: Callable[[], None] = lambda: None,
             tls: TlsFiles = NO_TLS_FILES) -> DemoSummary:
    """`model`: the bundled detector (default) or one made from it, e.g. its INT8 calibration;
    the scene's ground truth only scores a model with the scene's labels. `stop` ends the run
    early, as `seconds` passing would (the summary scores what ran); `running` is called once
    the camera loop is about to start (before it, there is nothing to score). `tls`: the files
    of an mqtts:// `mqtt_url`, for the demo's daemon and its subscriber alike."""
    model = model or bundled_model()
    check_demo_model(model)
    if mqtt_url:
        checked_broker_url(mqtt_url)  # the option's words, not a config's
    broker = None if mqtt_url else EmbeddedBroker().start()
    url = mqtt_url or (broker.url if broker else "")
    if broker is not None:  # on a free port: say where, so it can be watched
        log.info("embedded MQTT broker at %s; to watch the demo from another terminal: "
                 "edge monitor --mqtt %s", url, url)
    try:  # the broker as the summary names it: a URL's password never (a user check)
        return _run(model, seconds, url, seed, fps, threads, echo,
                    "embedded" if broker else redact_uri(url), stop or threading.Event(),
                    running, mqtt5=broker.MQTT5 if broker is not None else True,
                    clear_after=bool(mqtt_url), tls=tls)
    finally:
        if broker is not None:
            broker.stop()


def check_demo_model(path: Path) -> None:
    spec = spec_from_onnx_file(path)
    if not detects_the_scene(spec.task, spec.labels):
        raise InputError(f"{path} detects {', '.join(spec.labels) or 'unlabelled classes'}; the "
                         f"demo scene holds {', '.join(SHAPE_LABELS)}, so `edge demo --model` "
                         "takes the bundled detector or a model made from it (for example by "
                         "`edge calibrate`); run your own model with `edge run`")


def _run(model: Path, seconds: float, url: str, seed: int, fps: float, threads: int,
         echo: Callable[[str], None], broker_name: str, stop: StopRequest,
         running: Callable[[], None], mqtt5: bool = True, clear_after: bool = False,
         tls: TlsFiles = NO_TLS_FILES) -> DemoSummary:
    """`clear_after` (a user's broker): what the run left retained there is cleared at its end
    (a user check: the demo's device stayed on the broker, "stopped", for `edge monitor`)."""
    config = config_from_dict({
        "device_id": "demo",
        "model": {"path": str(model), "backend": "auto", "threads": threads},
        "cameras": [{"name": DEMO_CAMERA,
                     "source": f"synthetic://shapes?fps={fps:g}&seed={seed}"}],
        "mqtt": {**daemon_mqtt_settings(url, tls),
                 "client_id": f"edge-demo-{int(time.time() * 1000) % 100000}"},
        "frames": {"interval_s": 5.0},
        "stats": {"interval_s": 5.0},
    }, "the demo's settings")
    watcher = _Watcher(seed, echo)
    subscriber = Subscriber(url, config.topic_prefix, ["detections", "event", "count"],
                            callback=watcher, client_id=f"edge-demo-watch-{id(watcher) % 100000}",
                            log_first_failure=False,  # a failure is this command's error
                            log_failures=False,  # later ones: the daemon's link says them
                            mqtt5=mqtt5, silence_hint_s=None,  # its own daemon's prefix
                            ca_file=tls.ca_file, certfile=tls.certfile, keyfile=tls.keyfile,
                            names=COMMAND_LINE)
    subscriber.start()
    try:
        failure = subscriber.connection.subscription_failure(10.0)
        if failure is not None:
            raise EdgeError(f"could not reach the MQTT broker at {redact_uri(url)}: {failure}; "
                            "check --mqtt or omit it to use the embedded broker")
        daemon = Daemon(config)
        running()
        daemon.start()
        summary = daemon.run(stop, duration=seconds)
        deadline = time.monotonic() + 5.0
        sent = summary.published + summary.states_sent  # counts are retained states
        while watcher.received < sent and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        subscriber.stop()
    cleared = (clear_what_a_run_left(url, tls, config.topic_prefix, echo)
               if clear_after else None)
    precision, recall = watcher.scorer.precision_recall()
    camera = daemon.workers[0].stats()
    return DemoSummary(
        frames=summary.frames, seconds=round(summary.seconds, 2), fps=round(summary.fps, 2),
        published=sent, received=watcher.received,
        precision=round(precision, 4), recall=round(recall, 4),
        dropped_frames=camera["dropped"], model=str(model), backend=daemon.backend.name,
        broker=broker_name,
        latency_ms_p50={stage: v["p50"] for stage, v in camera["latency_ms"].items()},
        tracking=watcher.tracking.summary(),
        events=watcher.tracking.check_events(watcher.events), retained_cleared=cleared)


class _Watcher:
    """The demo's subscriber callback: prints detections, scores them and their tracks, keeps
    the events (on the client's network thread: one message at a time)."""

    def __init__(self, seed: int, echo: Callable[[str], None]) -> None:
        self.scorer = ReplayScorer(seed)
        self.tracking = TrackingScorer(seed)
        self.events: list[dict[str, Any]] = []
        self._echo = echo
        #: Messages of this run: a broker's retained ones from earlier runs (their counts,
        #: sent as the subscription starts) are not (a user check: 179 received of 175 sent).
        self.received = 0
        self._explained = False  # the lines' legend is said before the first

    def __call__(self, message: Message) -> None:
        if message.retained:
            return
        self.received += 1
        payload = message.payload
        if isinstance(payload, DetectionsMessage):
            detections = Detections.from_payload([d.model_dump() for d in payload.detections])
            self.scorer.add(payload.frame_id, detections)
            track_ids = np.array([d.track_id or 0 for d in payload.detections], np.int64)
            self.tracking.add(payload.frame_id, detections.boxes, detections.class_ids,
                              track_ids)
            if not self._explained:
                self._echo(DETECTIONS_LEGEND)
                self._explained = True
            self._echo(format_detections(message.device, payload))
        elif isinstance(payload, Event):
            self.events.append(payload.model_dump())

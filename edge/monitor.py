"""`edge monitor`: watch devices from anywhere, through the typed client (`edge.client`).

Every line starts with `[<device>]`, so a fleet (`edge/+`) reads clearly. By default each
detections message is a line; `--events` shows tracked objects' events instead. `--frames DIR`
keeps sampled JPEGs as `DIR/<device>/<camera>/<frame_id>.jpg`, each with a JSON sidecar of that
frame's detections: a frame and its `frame/meta` arrive as two messages, so the JPEG waits for
its meta (which names the frame id) before it is written, and then for that frame's detections
message (the device queues detections and sends sampled frames at once, so they can come first).
"""

from __future__ import annotations

import contextlib
import json
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from edge.client import (
    KINDS,
    CameraStatus,
    Count,
    DetectionsMessage,
    DeviceStats,
    DeviceStatus,
    Drift,
    Event,
    FrameMeta,
    Jpeg,
    Message,
    PayloadError,
    Subscriber,
)
from edge.client.contract import prefix_levels
from edge.client.subscriber import devices_beside
from edge.concurrency import StopRequest
from edge.errors import InputError
from edge.files import require_output_folder
from edge.missing_jpegs import MissingJpegs
from edge.mqtt.failures import COMMAND_LINE
from edge.mqtt.silence import SilenceHint
from edge.mqtt.subscriber import (
    NO_TLS_FILES,
    BrokerSubscription,
    TlsFiles,
    unique_client_id,
)
from edge.redact import redact_uri
from edge.wording import counted, events_among

log = logging.getLogger(__name__)

#: Detections messages kept per camera to find a saved frame's detections.
RECENT_DETECTIONS = 64
#: Seconds a saved frame waits for its detections message before it is written without it.
PENDING_MAX_S = 2.0


@dataclass(frozen=True)
class _PendingFrame:
    meta: FrameMeta
    jpeg: bytes
    arrived: float  # time.monotonic()


#: What a `format_detections` line holds, said once before the first.
DETECTIONS_LEGEND = ("each line: [device] camera, frame number, milliseconds from the frame's "
                     "capture to its detections, then each object's label, #track id (once the "
                     "tracker follows it) and score")


def format_detections(device: str, message: DetectionsMessage) -> str:
    objects = ", ".join(
        f"{d.label}{f' #{d.track_id}' if d.track_id else ''} {d.score:.2f}"
        for d in message.detections)
    total = message.latency_ms.get("total", float("nan"))
    return (f"[{device}] {message.camera} frame {message.frame_id:5d}  {total:6.1f} ms  "
            f"{len(message.detections)} objects: {objects or '-'}")


def format_event(device: str, event: Event) -> str:
    seen = (event.end if event.end is not None else event.ts) - event.start
    zones = f" in {', '.join(event.zones)}" if event.zones else ""
    entered = f" (entered {', '.join(event.entered_zones)})" if event.entered_zones else ""
    return (f"[{device}] {event.camera} {event.type:6s} {event.label} #{event.track_id} "
            f"score {event.top_score:.2f}{zones}{entered} {seen:.1f} s")


def format_status(device: str, status: DeviceStatus, retained: bool = False) -> str:
    """A device status line naming, while the device is up, the cameras that are not streaming
    and what they are doing instead (starting, reconnecting, ...), and since when it is up
    (or, stopped, when it stopped); `retained`: the broker kept it from before this watch
    began, marked as the other retained lines are (an `online` one is the device's word
    until its Last Will replaces it, a keepalive after it goes)."""
    idle = [f"{camera} {state}" for camera, state in (status.camera_states or {}).items()
            if state != "streaming"]
    why = f" ({', '.join(idle)})" if status.state in ("online", "degraded") and idle else ""
    if status.error:
        why += f" ({status.error})"
    if status.state in ("online", "degraded"):
        when = f"since {status.started_at}"
    elif status.state in ("stopped", "failed") and status.time:
        when = f"at {status.time}, up since {status.started_at}"
    else:  # the Last Will's time is its connect's: when the device went is not known
        when = f"started at {status.started_at}"
        if retained:  # "up since" read as a device still up (a user check); "gone since
            # before this watch" was wrong for one that went while the watch was reconnecting
            when += ", gone at a time its Last Will does not carry"
    kept = " (retained)" if retained else ""
    precision = f" ({status.precision})" if status.precision else ""
    return (f"[{device}] {status.state}{why}: model {status.model}{precision} on "
            f"{status.backend or '?'}, cameras {', '.join(status.cameras)}, {when}{kept}")


def format_stats(device: str, stats: DeviceStats, retained: bool = False) -> str:
    """A stats line; `retained`: the broker kept it from before this watch began (maybe from
    the device's previous run, which a line right after its new status read as live), so
    it says when it was sent."""
    cameras = []
    for name, camera in stats.cameras.items():
        if camera.frames == 0:
            cameras.append(f"{name} no frames yet")
            continue
        infer = camera.latency_ms.get("infer", {}).get("p50")
        timing = f"infer p50 {infer} ms" if infer is not None else "no inference timed yet"
        behind = " (not keeping up)" if camera.keeping_up is False else ""
        filtered = f", {camera.filtered} detections filtered" if camera.filtered else ""
        cameras.append(f"{name} {camera.fps:.1f} fps{behind}, {timing}, dropped "
                       f"{camera.dropped}{filtered}")
    return (f"[{device}] stats: {'; '.join(cameras) or 'no cameras'}; outbox "
            f"{stats.mqtt.get('outbox_depth', '?')}{_messages_dropped(stats.mqtt)}, memory "
            f"{stats.memory_rss_mb} MB, up {stats.uptime_s} s"
            + (f" (retained, as of {stats.time})" if retained else ""))


def _messages_dropped(mqtt: dict[str, Any]) -> str:
    """`, 938 messages dropped (8 events)` where the outbox dropped any this run, else ''."""
    dropped, events = mqtt.get("dropped", 0), mqtt.get("events_dropped", 0)
    if not isinstance(dropped, int) or dropped <= 0:
        return ""
    return f", {counted(dropped, 'message')} dropped{events_among(events)}"


def format_drift(device: str, drift: Drift, retained: bool = False) -> str:
    """A camera's drift state; in alert, the statistics past the threshold with their values
    (so an alert whose cause changes, or grows, shows again); `retained`: kept by the broker
    from before this watch began, so it says as of when."""
    line = f"[{device}] {drift.camera} drift {drift.state.replace('_', ' ')}"
    kept = f" (retained, as of {drift.time})" if retained else ""
    if drift.state != "alert":
        return line + kept
    values = drift.statistics
    drifted = ", ".join(f"{name} {values[name]:.2f}" if values.get(name) is not None else name
                        for name in drift.drifted)
    return (f"{line}: {drifted} ({drift.metric.upper()} over {drift.window_s:g} s, threshold "
            f"{drift.threshold:g}){kept}")


def format_line(message: Message, events: bool) -> str | None:
    """The console line of a message, or None for kinds not shown in this mode."""
    device, payload = message.device, message.payload
    if isinstance(payload, DeviceStatus):
        return format_status(device, payload, message.retained)
    if isinstance(payload, DeviceStats):
        return format_stats(device, payload, message.retained)
    if isinstance(payload, CameraStatus):
        reason = f": {payload.reason}" if payload.reason else ""
        # retained: from before this watch began, perhaps from a device that died since (its
        # Last Will marks only the device offline), so it says since when
        kept = (f" (retained, since {payload.since or '?'})" if message.retained else "")
        return f"[{device}] {message.camera} camera {payload.state}{reason}{kept}"
    if isinstance(payload, Event) and events:
        return format_event(device, payload)
    if isinstance(payload, DetectionsMessage) and not events:
        return format_detections(device, payload)
    if isinstance(payload, Drift):
        return format_drift(device, payload, message.retained)
    if isinstance(payload, Count) and events:
        where = f"{payload.zone}/" if payload.zone else ""
        kept = " (retained)" if message.retained else ""
        return f"[{device}] {message.camera} {where}{payload.label} count {payload.count}{kept}"
    return None


def _free_stem(folder: Path, frame_id: int, ts: float) -> str:
    """`<frame_id>`, or where a `.jpg` or a `.json` of that name is there already (a restarted
    device counts from 1 again) `<frame_id>_<capture ms>`, then `_2`, `_3`...: never a file
    of an earlier watch overwritten."""
    def taken(stem: str) -> bool:
        return any((folder / f"{stem}{suffix}").exists() for suffix in (".jpg", ".json"))

    stem = str(frame_id)
    if not taken(stem):
        return stem
    stem = f"{frame_id}_{round(ts * 1000)}"
    candidate, number = stem, 1
    while taken(candidate):
        number += 1
        candidate = f"{stem}_{number}"
    return candidate


class FrameSaver:
    """Writes `folder/<device>/<camera>/<frame_id>.jpg` and `<frame_id>.json` (the frame's
    meta and detections) once a frame's JPEG and its meta have both arrived, and its
    detections message (the one with track ids) too when the meta counts any. Frame ids start
    at 1 with each run of the device: a name already taken (an earlier run's frame) gets the
    capture time in milliseconds, `<frame_id>_<ms>.jpg`, so no frame is written over.

    A frame whose detections message has not come yet waits, one per camera, until it comes,
    a later frame's detections or sampled frame show that it will not, `PENDING_MAX_S`
    passes, or the watch ends (`flush`); it is then written with the meta's own
    `predictions`. A folder that cannot be written into is an error at once; a write that
    fails later (a full disk) skips that frame with one warning per cause, and the watch goes
    on."""

    def __init__(self, folder: Path) -> None:
        require_output_folder(folder, "--frames")
        self.folder = folder
        self.saved = 0
        self.not_saved = 0
        self.missing = MissingJpegs("edge monitor --frames")
        self._failing: str | None = None  # why frames cannot be written now
        self._jpegs: dict[tuple[str, str], bytes] = {}
        #: per camera: frame id -> (capture time, detections) of its recent detections messages
        self._detections: dict[tuple[str, str],
                               dict[int, tuple[float, list[dict[str, Any]]]]] = {}
        self._pending: dict[tuple[str, str], _PendingFrame] = {}

    def __call__(self, message: Message) -> None:
        key = (message.device, message.camera or "")
        payload = message.payload
        if isinstance(payload, Jpeg) and message.kind == "frame":
            self._jpegs[key] = payload.data
            self.missing.jpeg_came(*key)
        elif isinstance(payload, DetectionsMessage):
            recent = self._detections.setdefault(key, {})
            # ids rise within a run and `recent` keeps their order: its last key is the highest
            restarted = bool(recent) and payload.frame_id < next(reversed(recent))
            if restarted:  # the device counts from 1 again: its earlier ids mean other frames
                recent.clear()
            recent[payload.frame_id] = (payload.ts, [d.model_dump(exclude_none=True)
                                                     for d in payload.detections])
            while len(recent) > RECENT_DETECTIONS:
                del recent[next(iter(recent))]
            pending = self._pending.get(key)
            if pending is not None and (restarted or payload.frame_id >= pending.meta.frame_id):
                self._write_pending(key)
        elif isinstance(payload, FrameMeta) and key not in self._jpegs:
            self.missing.meta_alone(*key, message.topic.removesuffix("/meta"))
        elif isinstance(payload, FrameMeta):
            self._write_pending(key)
            frame = _PendingFrame(payload, self._jpegs.pop(key), time.monotonic())
            if payload.detections == 0 or self._detections_of(key, payload) is not None:
                self._write(key, frame)
            else:
                self._pending[key] = frame
        self._write_overdue()

    def flush(self) -> None:
        """Write the frames still waiting for their detections (the watch is ending)."""
        for key in list(self._pending):
            self._write_pending(key)

    def _write_overdue(self) -> None:
        now = time.monotonic()
        for key in [k for k, frame in self._pending.items()
                    if now - frame.arrived > PENDING_MAX_S]:
            self._write_pending(key)

    def _write_pending(self, key: tuple[str, str]) -> None:
        frame = self._pending.pop(key, None)
        if frame is not None:
            self._write(key, frame)

    def _detections_of(self, key: tuple[str, str], meta: FrameMeta) -> list[dict[str, Any]] | None:
        """The detections message of the frame `meta` describes, if it came: same id and
        capture time (a restarted device's frame 5 is not its previous run's)."""
        ts, detections = self._detections.get(key, {}).get(meta.frame_id, (None, None))
        return detections if ts is not None and abs(ts - meta.ts) < 1e-3 else None

    def _write(self, key: tuple[str, str], frame: _PendingFrame) -> None:
        meta = frame.meta
        target = self.folder.joinpath(*key)
        stem = _free_stem(target, meta.frame_id, meta.ts)
        image, sidecar_path = target / f"{stem}.jpg", target / f"{stem}.json"
        detections = self._detections_of(key, meta)
        if detections is None and meta.predictions is not None:
            detections = [d.model_dump(exclude_none=True) for d in meta.predictions]
        sidecar = {"device": key[0], "camera": key[1], "frame_id": meta.frame_id,
                   "ts": meta.ts, "time": meta.time, "width": meta.width, "height": meta.height,
                   "detections": [] if meta.detections == 0 else detections,
                   "meta": meta.model_dump()}
        try:
            target.mkdir(parents=True, exist_ok=True)
            image.write_bytes(frame.jpeg)
            sidecar_path.write_text(json.dumps(sidecar, indent=1))
        except OSError as exc:
            for partial in (image, sidecar_path):  # never a frame without its sidecar
                with contextlib.suppress(OSError):
                    partial.unlink(missing_ok=True)
            self._failed(exc, image)
            return
        if self._failing is not None:
            log.warning("--frames: saving frames in %s again (%d not saved meanwhile)",
                        self.folder, self.not_saved)
            self._failing = None
        self.saved += 1

    def _failed(self, exc: OSError, image: Path) -> None:
        self.not_saved += 1
        if exc.strerror == self._failing:
            return
        self._failing = exc.strerror
        log.warning("--frames: cannot save %s (%s); frames are skipped until it can write "
                    "there again, the watch goes on", image, exc.strerror)


#: Whether a kind's topic holds state the broker keeps (statuses, counts): its line is shown
#: again only when it changed (a daemon republishes its cameras' statuses on every connect,
#: and amqtt delivers a new subscriber's retained messages twice).
_RETAINED_KINDS = {kind.name: kind.retained for kind in KINDS}


def _nothing_counted(message: Message) -> bool:
    """A zero count: not worth a line until the label has been seen (a 1000-class
    classifier's retained counts were 1000 lines of `count 0` on connecting)."""
    return isinstance(message.payload, Count) and message.payload.count == 0


class _Console:
    """The monitor's lines, one writer at a time: "connected" first, then each message's line
    (a retained topic's only when it changed, a count from its first nonzero value on), with
    its frame saved.

    Messages may arrive before the SUBACK (MQTT 3.1.1 allows it; amqtt, the demo's broker,
    does it): they wait in a list until "connected" is printed. Waiting on paho's network
    thread instead, which delivers them, would keep it from ever reading the SUBACK.
    `quiet`: no message lines, only the connection's (frames are still saved)."""

    def __init__(self, echo: Callable[[str], None], events: bool,
                 saver: FrameSaver | None, quiet: bool = False) -> None:
        self._echo, self._events, self._saver = echo, events, saver
        self._quiet = quiet
        self._lock = threading.Lock()
        self._early: list[Message] | None = []
        self._state_lines: dict[str, str] = {}  # topic -> the line last shown for it
        self._outages = CameraOutages()
        self._connection: _ConnectionLines | None = None

    def message(self, message: Message) -> None:
        with self._lock:
            if self._early is not None:
                self._early.append(message)
                return
            if self._connection is not None:  # "reconnected" before what the new one brings
                self._connection.update(self._echo)
            self._show(message)

    def cleared(self, device: str, topic: str, what: str) -> None:
        """A retained value the device removed: said where this watch showed a line for it
        (a count of a zone renamed away stayed the last word on it), not for every old
        event snapshot the device clears."""
        with self._lock:
            if self._state_lines.pop(topic, None) is not None and not self._quiet:
                self._echo(f"[{device}] {what} cleared (the device no longer publishes it)")

    def watch(self, connection: _ConnectionLines) -> None:
        """From now on `connection`'s changes are said, by `connection_changed` or before the
        next message, whichever comes first."""
        with self._lock:
            self._connection = connection

    def connection_changed(self) -> None:
        with self._lock:
            if self._connection is not None:
                self._connection.update(self._echo)

    def connected(self, line: str) -> None:
        """`line`, then the messages that came before it."""
        with self._lock:
            self._echo(line)
            for message in self._early or ():
                self._show(message)
            self._early = None

    def _show(self, message: Message) -> None:
        line = None if self._quiet else format_line(message, self._events)
        outage = (self._outages.update(message.topic, message.payload)
                  if isinstance(message.payload, CameraStatus) else "")
        if line is not None and _RETAINED_KINDS.get(message.kind, False):
            # the value itself, not how it came: after a reconnect the broker hands over a
            # retained value this watch showed live (the Last Will it saw the device leave
            # printed a second time, 25 s later, as if gone before the watch began)
            value = (format_line(replace(message, retained=False), self._events) or line) \
                if message.retained else line
            shown = self._state_lines.get(message.topic)
            if shown == value or (shown is None and _nothing_counted(message)):
                line = None
            else:
                self._state_lines[message.topic] = value
        if line is not None:
            self._echo(line + outage)
        if self._saver is not None:
            self._saver(message)


def run_monitor(url: str, prefix: str, seconds: float | None, frames: Path | None,
                echo: Callable[[str], None] = print, stop: StopRequest | None = None,
                events: bool = False, share_group: str | None = None,
                tls: TlsFiles = NO_TLS_FILES, quiet: bool = False) -> dict[str, Any]:
    """Print messages (`quiet`: only the connection's state) until `stop` is set or `seconds`
    pass; returns counts per kind."""
    saver = FrameSaver(frames) if frames is not None else None
    console = _Console(echo, events, saver, quiet)

    def invalid(error: PayloadError) -> None:
        if subscriber.misplaced is None:  # a prefix a level off ends the watch with its fix
            log.warning("skipping a message: %s", error)

    levels, device_at = prefix_levels(prefix)

    def cleared(topic: str) -> None:
        parts = topic.split("/")
        console.cleared(parts[device_at], topic, "/".join(parts[levels:]))

    subscriber = Subscriber(url, prefix, share_group=share_group, callback=console.message,
                            on_invalid="raise", on_error=invalid, on_cleared=cleared,
                            client_id=unique_client_id("monitor"), ca_file=tls.ca_file,
                            certfile=tls.certfile, keyfile=tls.keyfile, log_first_failure=False,
                            log_failures=False, names=COMMAND_LINE,  # it says them itself
                            silence_hint_s=None)  # ... and its silence, on stdout
    stop = stop or threading.Event()
    subscriber.start()
    try:
        subscriber.connection.wait_until_subscribed()
        console.connected(f"connected to {redact_uri(url)}, watching {prefix}")
        console.watch(_ConnectionLines(subscriber.connection, url))
        silence = SilenceHint(prefix, echo, after_s=SILENCE_HINT_S,
                              user=subscriber.connection.user,
                              devices_beside=lambda: devices_beside(subscriber.connection, prefix))

        def check() -> None:
            console.connection_changed()
            if subscriber.misplaced is not None:
                raise InputError(f"--prefix {prefix}: {subscriber.misplaced}")
            silence.check(sum(subscriber.counts.values()) + subscriber.invalid
                          + subscriber.cleared, subscriber.connection.subscribed.is_set())

        _watch_connection(stop, seconds, check)
    finally:
        subscriber.stop()
        if saver is not None:
            saver.flush()
    return {"messages": dict(subscriber.counts), "malformed": subscriber.invalid,
            "frames_saved": saver.saved if saver else 0,
            "frames_not_saved": saver.not_saved if saver else 0,
            "frames_without_jpeg": saver.missing.missing if saver else 0}


#: How often the watch looks at the connection (a lost broker is said within this).
CONNECTION_POLL_S = 0.5
#: A watch that received nothing at all for this long says what that usually means.
SILENCE_HINT_S = 5.0


class CameraOutages:
    """When each camera seen going down in this watch went down, so that the line of its
    return says how long it was away: "streaming" alone left the reader to scroll back."""

    def __init__(self) -> None:
        self._down: dict[str, float] = {}  # status topic -> since_ts of its first down state
        self._streamed: set[str] = set()  # status topics this watch has seen streaming

    def update(self, topic: str, status: CameraStatus) -> str:
        """What to add to the line of `status`: the outage it ends, if this watch saw it;
        "back" only for a camera this watch saw streaming before (one down since its
        daemon's start never was)."""
        if status.state in ("reconnecting", "failed"):
            if status.since_ts is not None:
                self._down.setdefault(topic, status.since_ts)
            return ""
        went_down = self._down.pop(topic, None)
        if status.state != "streaming":
            return ""
        back = topic in self._streamed
        self._streamed.add(topic)
        if went_down is None or status.since_ts is None:
            return ""
        return (f" ({'back' if back else 'up'} after "
                f"{max(0.0, status.since_ts - went_down):.0f} s down)")


class _ConnectionLines:
    """A line when the broker connection is lost (when, and why) and one when the subscriptions
    are granted again (paho reconnects on its own; a watch that went quiet would otherwise look
    like a quiet site), each once, even for an outage shorter than the watch's poll (the
    connection count moved). Not thread-safe: `_Console` calls it under its lock."""

    def __init__(self, connection: BrokerSubscription, url: str) -> None:
        self._connection, self._url = connection, redact_uri(url)
        self._watching, self._connects = True, connection.connects
        self._lost_since = 0.0  # time.monotonic(): the clock may be set meanwhile

    def update(self, echo: Callable[[str], None]) -> None:
        connection = self._connection
        subscribed, connects = connection.subscribed.is_set(), connection.connects
        if self._watching and (not subscribed or connects != self._connects):
            self._watching = False
            recorded = connection.lost_at != 0.0  # else a loss it did not record
            lost_at = connection.lost_at if recorded else time.time()
            self._lost_since = connection.lost_since if recorded else time.monotonic()
            echo(f"connection to {self._url} lost at {_clock(lost_at)} "
                 f"({connection.lost_reason or 'closed'}); reconnecting")
        if not self._watching and subscribed:
            self._watching, self._connects = True, connects
            echo(f"reconnected to {self._url} at {_clock(time.time())}, "
                 f"{max(0.0, time.monotonic() - self._lost_since):.0f} s after the loss")


def _clock(seconds: float) -> str:
    """The time of day: when a quiet watch was cut off is what its reader asks next."""
    return time.strftime("%H:%M:%S", time.localtime(seconds))


def _watch_connection(stop: StopRequest, seconds: float | None,
                      check: Callable[[], None]) -> None:
    """`check()` every `CONNECTION_POLL_S` until `stop` is set or `seconds` pass."""
    deadline = None if seconds is None else time.monotonic() + seconds
    while True:
        wait = CONNECTION_POLL_S if deadline is None else min(CONNECTION_POLL_S,
                                                               deadline - time.monotonic())
        if stop.wait(max(0.0, wait)) or (deadline is not None and time.monotonic() >= deadline):
            return
        check()

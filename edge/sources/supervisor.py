"""Camera supervision: a camera's frames flow into its hand-off until the daemon stops, whatever
its source does.

A live source (rtsp, v4l2, csi) that cannot be opened, fails, ends or delivers nothing for
`stall_s` is reopened with backoff, forever: a camera that reboots or a network that drops for
an hour must come back without a person. A file or a synthetic scene ends (or fails) for good.

Each attempt reads on its own thread because a read stuck inside a driver or FFmpeg cannot be
interrupted from Python: on a stall the supervisor abandons that reader (it closes its source
when the call returns; whatever it reads meanwhile is discarded) and opens a fresh source, as
Frigate's watchdog restarts its ffmpeg process.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from edge.clock import published, steady
from edge.errors import SourceError
from edge.redact import redact_text, redact_uri
from edge.sources import Snapshots, source_from_uri
from edge.sources.base import CHECK_UNOPENED, Frame, LatestFrame, Source
from edge.sources.stream_probe import diagnose_stream, serves_the_stream
from edge.timing import RateMeter, rfc3339
from edge.wording import counted

log = logging.getLogger(__name__)

#: While a camera stays down for the same reason, its warning is repeated this often (seconds).
LOG_REPEAT_S = 300.0
#: How long an attempt may take to its first frame when `stall_s` is shorter: opening an RTSP
#: stream probes it first (about 2 s with FFmpeg here) and a stream starts at a key frame, so a
#: short `stall_s` would otherwise abandon every attempt before it could deliver anything.
FIRST_FRAME_S = 10.0
#: A read that blocked this share of the source's read timeout timed out (FFmpeg's interrupt
#: check runs between its socket waits, so the read returns a little before or after it).
READ_TIMEOUT_SHARE = 0.95
#: How long the supervisor asks a stream's server why an open stalled (seconds).
STALLED_PROBE_S = 2.0

def open_stalled(uri: str, limit: float) -> str:
    """Why the open of source `uri` took past `limit` seconds: for a stream, what its server
    answers (asked within `STALLED_PROBE_S`, while the caller would wait anyway)."""
    shown = redact_uri(uri)
    diagnosis = diagnose_stream(uri, STALLED_PROBE_S)
    if diagnosis is not None and serves_the_stream(diagnosis):
        # a user check: a busy one-client camera's open held this one's, said as a codec
        return (f"source '{shown}' did not open within {limit:g} s, though its server "
                f"answers ({diagnosis}); FFmpeg opens one stream at a time in this process, "
                "so another camera's open that hangs holds this one's up: see the other "
                "cameras' reasons (a one-client camera serving another viewer, one that "
                "never answers)")
    if diagnosis is not None:
        return f"source '{shown}' did not open within {limit:g} s: {diagnosis}"
    return (f"source '{shown}' did not open within {limit:g} s (a stream server that accepts "
            f"the connection and never answers, or a device that hangs); {CHECK_UNOPENED}")


CameraState = Literal["starting", "streaming", "reconnecting", "ended", "failed"]
#: The states in which a camera does not make its device `degraded`: streaming, or opening for
#: the first time (at most `max(stall_s, FIRST_FRAME_S)`: a first attempt that fails makes it
#: `reconnecting`), so every start does not flash `degraded` at whoever alerts on it.
HEALTHY_CAMERA_STATES: frozenset[str] = frozenset({"starting", "streaming"})
#: The earlier causes of an outage a stop's reason names beside the last one.
EARLIER_CAUSES = 2


@dataclass(frozen=True)
class CameraStatus:
    """One camera's state as published on the retained `<prefix>/<camera>/status` topic.

    `attempts` counts the reopen attempts since the camera last streamed (0 while it streams);
    `since` is when the camera entered `state` (seconds since the epoch, on the steady
    clock: `edge.clock`)."""

    camera: str
    state: CameraState
    reason: str
    since: float
    attempts: int
    fps: float

    def payload(self) -> dict[str, Any]:
        """The retained message. `fps` is the rate the camera ran at up to a change away from
        streaming; a camera starting or just streaming has no rate yet, and a retained 0 would
        read as a stalled one for as long as it streams (the stats topic has the live rate)."""
        since = published(self.since)
        return {"camera": self.camera, "state": self.state, "reason": self.reason,
                "since": rfc3339(since), "since_ts": since, "attempts": self.attempts,
                "fps": None if self.state in HEALTHY_CAMERA_STATES else round(self.fps, 2)}


def stopped_reason(last: CameraStatus, causes: Sequence[str] = (), delivered: bool = True
                   ) -> str:
    """The `ended` status's reason when the daemon stops a camera in state `last`: a camera
    that was down says since when and why (`causes`: the distinct causes of its outage, in
    order, the first kept when a later one replaced it: a 401 for the whole run, then
    "refused" once the camera died), one still opening says it never streamed, so the
    retained status a remote watcher reads after the stop still shows the cause. `delivered`:
    whether the camera delivered a frame in this run (one that never did was not "reopened")."""
    if last.state == "reconnecting":
        earlier = [cause for cause in causes if cause != last.reason][:EARLIER_CAUSES]
        before = f" (before that: {'; '.join(earlier)})" if earlier else ""
        if not delivered:
            return (f"the daemon stopped before the camera delivered its first frame "
                    f"({counted(last.attempts, 'attempt')} to open it, failing since "
                    f"{rfc3339(published(last.since))}): {last.reason}{before}")
        return (f"the daemon stopped while the camera was down (since "
                f"{rfc3339(published(last.since))}, "
                f"{counted(last.attempts, 'attempt')} to reopen it): {last.reason}{before}")
    if last.state == "starting":
        return "the daemon stopped before the camera delivered its first frame"
    return "the daemon stopped"


@dataclass(frozen=True)
class Backoff:
    """Delay before reopen attempt n (1, 2, ...): `first_s` doubling up to `max_s`, scaled by a
    random factor in [0.5, 1] so cameras behind one failed switch do not retry in lockstep. The
    delay never exceeds `max_s`, so a returning camera is back within `max_s` plus one open."""

    first_s: float = 1.0
    max_s: float = 30.0

    def delay(self, attempt: int, rng: random.Random) -> float:
        ceiling = min(self.max_s, self.first_s * 2.0 ** min(max(attempt - 1, 0), 32))
        return ceiling * rng.uniform(0.5, 1.0)


@dataclass
class _Attempt:
    """One reader thread's source and what became of it."""

    source: Source
    opened: bool  # its source's open() has returned
    progress: float  # time.monotonic() of the last frame (or of the start)
    #: added to its source's frame ids (which start at 1 with each source): the camera's last
    #: frame id before this attempt
    id_offset: int = 0
    abandoned: bool = False
    ended: bool = False  # the source reported its end (None from read)
    delivered: bool = False  # a frame arrived: from then on `stall_s` applies
    error: str = ""


class SourceSupervisor:
    """Opens a camera's source, reads it into `latest` (closed when the camera ends for good)
    and keeps it going (see the module docstring). `on_change` is called with the new
    `CameraStatus` on every change of state or attempts, from the supervisor's threads, never
    concurrently; it must not block."""

    def __init__(self, camera: str, uri: str, latest: LatestFrame | None = None,
                 on_change: Callable[[CameraStatus], None] | None = None, *,
                 stall_s: float = 10.0, reconnect_max_s: float = 30.0,
                 rng: random.Random | None = None,
                 snapshot_interval_s: float | None = None) -> None:
        self.camera = camera
        self.uri = uri
        self._snapshots = (None if snapshot_interval_s is None
                           else Snapshots.within(snapshot_interval_s, stall_s))
        # a config error (scheme, option, path) raises here
        self.source = source_from_uri(uri, self._snapshots)
        self.latest = latest if latest is not None else LatestFrame()
        self._on_change = on_change
        self.stall_s = stall_s
        self.backoff = Backoff(min(1.0, reconnect_max_s), reconnect_max_s)
        self._rng = rng or random.Random()
        self._rate = RateMeter()
        self._stop = threading.Event()
        self._lock = threading.Lock()  # guards the status and the hand-off of frames
        self._notify_lock = threading.Lock()  # keeps callbacks in order
        self._status = CameraStatus(camera, "starting", "", steady(), 0, 0.0)
        self._logged_reason, self._logged_at = "", 0.0
        self.frames = 0
        self.last_frame_id = 0  # ids go on across reopens: 1, 2, ... for the whole run
        self.reconnects = 0
        self._streamed_s = 0.0  # seconds in `streaming` before the current spell
        self._streaming_from = 0.0  # time.monotonic() when the current spell began
        self._stopped_streaming = False  # `stop` found it streaming: its rate is kept
        self._outage_causes: list[str] = []  # distinct, in order, since it last streamed
        self.finished = threading.Event()
        self._opened = False  # a finite source's open() has returned (`open`)
        self._thread = threading.Thread(target=self._supervise, name=f"source-{camera}",
                                        daemon=True)

    @property
    def live(self) -> bool:
        return self.source.live

    def open(self) -> None:
        """Open a finite source (a file), so that one that cannot be read is a SourceError, and
        the camera's status `failed`, before any camera starts; a live one is opened on the
        thread (and retried). Once only; `start` opens it if this was not called."""
        if self.live or self._opened:
            return
        try:
            self.source.open()
        except SourceError as exc:  # the daemon stops; its status says which camera
            self._set("failed", redact_text(str(exc)), 0)
            raise
        self._opened = True

    def start(self) -> None:
        """Start supervising. A finite source is opened here unless `open` did it, so a file
        that cannot be read is a SourceError at start; a live one is opened on the thread (and
        retried)."""
        self.open()
        self._notify()
        self._thread.start()

    def request_stop(self) -> None:
        """Ask the supervising thread to stop reading; `stop` waits for it."""
        self._stop.set()
        self._rate.stop()

    def stop(self, timeout: float = 5.0) -> None:
        """Stop reading; the retained status then says the camera ended with the daemon rather
        than showing it streaming, and, for a camera that was down or had not streamed yet,
        why (`stopped_reason`): that status stays on the broker until the next start."""
        self.request_stop()
        if self._thread.ident is None:  # never started
            if self._opened:  # opened (`open`) while another camera failed to
                self.source.close()
                self._set("ended", stopped_reason(self.status()), 0)
            return
        self._thread.join(timeout)
        last = self.status()
        self._stopped_streaming = last.state == "streaming"
        with self._lock:
            causes = list(self._outage_causes)
        if last.state not in ("ended", "failed"):
            self._set("ended", stopped_reason(last, causes, self.frames > 0), last.attempts)

    def alive(self) -> bool:
        """The supervising thread runs (or has ended as it should)."""
        return self._thread.is_alive() or self.finished.is_set()

    def fps(self) -> float:
        """Frames per second delivered recently; decays to 0 when nothing arrives."""
        return self._rate.rate()

    def streamed_seconds(self) -> float:
        """Seconds this camera has been `streaming` so far, every spell added up: the time
        over which its frame rate means something (not the outages, not the start)."""
        with self._lock:
            current = (time.monotonic() - self._streaming_from
                       if self._status.state == "streaming" else 0.0)
            return self._streamed_s + current

    def streaming_since(self) -> float | None:
        """When (time.monotonic()) the current spell of `streaming` began; None while the
        camera is not streaming."""
        with self._lock:
            return self._streaming_from if self._status.state == "streaming" else None

    def status(self) -> CameraStatus:
        """The current status; `fps` is the live rate while starting or streaming, else the
        rate up to the change (the same in every status of one outage)."""
        with self._lock:
            status = self._status
        if status.state not in HEALTHY_CAMERA_STATES:
            return status
        return CameraStatus(self.camera, status.state, status.reason, status.since,
                            status.attempts, self.fps())

    def stats(self) -> dict[str, Any]:
        """`source_fps`: the live rate of a streaming camera (or the one it ran at when the
        daemon stopped it); 0 for one that is down or not streaming yet."""
        status = self.status()
        delivering = status.state == "streaming" or (status.state == "ended"
                                                     and self._stopped_streaming)
        return {"state": status.state, "reason": status.reason, "attempts": status.attempts,
                "reconnects": self.reconnects,
                "source_fps": round(status.fps, 2) if delivering else 0.0}

    # -- supervising thread ----------------------------------------------------------------

    def _supervise(self) -> None:
        source, opened, attempts = self.source, not self.live, 0
        try:
            while not self._stop.is_set():
                attempt = self._run(source, opened)
                if self._stop.is_set():
                    break
                if not self.live:
                    self._finish(attempt)
                    return
                attempts = self._attempts_after(attempt, attempts)
                reason = self._reason(attempt)
                with self._lock:
                    if reason not in self._outage_causes:
                        self._outage_causes.append(reason)
                        if len(self._outage_causes) > EARLIER_CAUSES + 2:
                            del self._outage_causes[1]  # the first cause stays
                self._log_retry(reason, attempts)
                # a camera that streamed is down since its last frame, not since the stall
                # showed (`stall_s` later), so an outage's length reads right
                down_since = (steady() - (time.monotonic() - attempt.progress)
                              if attempt.delivered else None)
                self._set("reconnecting", reason, attempts, down_since)
                if self._stop.wait(self.backoff.delay(attempts, self._rng)):
                    break
                source, opened = self._successor(source), False
        except Exception as exc:  # thread boundary: this camera fails, the daemon keeps going
            log.exception("camera %s: supervising %s failed", self.camera, redact_uri(self.uri))
            self._set("failed", redact_text(f"internal error: {exc!r}"), 0)
        finally:
            self.finished.set()
            self.latest.close()

    def _successor(self, source: Source) -> Source:
        """A new source for the camera, following `source` (what it delivered)."""
        successor = source_from_uri(self.uri, self._snapshots)
        successor.follow(source)
        return successor

    def _log_retry(self, reason: str, attempts: int) -> None:
        """A warning when the camera goes down or the cause changes, then a reminder every
        `LOG_REPEAT_S`; the attempts between are debug lines, so a camera that is away for a
        day does not fill the journal."""
        now = time.monotonic()
        if reason != self._logged_reason or now - self._logged_at >= LOG_REPEAT_S:
            self._logged_reason, self._logged_at = reason, now
            log.warning("camera %s: %s; reopening (attempt %d, then every %g s at most)",
                        self.camera, reason, attempts, self.backoff.max_s)
        else:
            log.debug("camera %s: %s; reopening (attempt %d)", self.camera, reason, attempts)

    def _attempts_after(self, attempt: _Attempt, attempts: int) -> int:
        with self._lock:
            streamed = self._status.state == "streaming"
        if streamed:
            self.reconnects += 1
            return 1
        return attempts + 1

    def _run(self, source: Source, opened: bool) -> _Attempt:
        """Read `source` on a new thread until it ends, fails, stalls or the daemon stops."""
        with self._lock:
            attempt = _Attempt(source, opened, time.monotonic(), self.last_frame_id)
        reader = threading.Thread(target=self._read, args=(attempt,),
                                  name=f"capture-{self.camera}", daemon=True)
        reader.start()
        while reader.is_alive():
            reader.join(min(0.25, self.stall_s / 4))
            limit = self._stall_limit(attempt)
            stalled = self.live and time.monotonic() - attempt.progress > limit
            if self._stop.is_set() or stalled:
                with self._lock:
                    attempt.abandoned = True
                if self._stop.is_set():
                    source.interrupt()
                if stalled and not attempt.error and reader.is_alive():
                    why = source.why_stalled()
                    attempt.error = (f"no frame for {limit:g} s{f': {why}' if why else ''}"
                                     if attempt.opened else open_stalled(self.uri, limit))
                if attempt.opened:  # a read that returns soon closes the source itself
                    reader.join(0.5 if stalled else 2.0)
                # else it is inside open(), which nothing interrupts (a stream server that
                # never answers holds it for its 10 s): the thread closes what that opens
                break
        return attempt

    def _read(self, attempt: _Attempt) -> None:
        source = attempt.source
        try:
            if not attempt.opened:
                source.open()
                attempt.opened = True
            attempt.progress = time.monotonic()
            while not attempt.abandoned:
                if source.paced_by_consumer and not self.latest.wait_empty(timeout=0.5):
                    attempt.progress = time.monotonic()  # waiting on the loop is no stall
                    continue
                began = time.monotonic()
                frame = source.read()
                blocked = time.monotonic() - began
                if self.live and self._timed_out(attempt, blocked):
                    # a frame the decoder still held (FFmpeg hands one over at each read
                    # timeout of a frozen stream): no progress, or the stall would never show
                    if frame is not None:
                        frame.release()
                        continue
                    attempt.error = f"no frame for {blocked:.0f} s"  # no end of the stream
                    return
                if frame is None:
                    attempt.ended = True
                    return
                if not self._deliver(attempt, frame):
                    return
        except SourceError as exc:
            attempt.error = redact_text(str(exc))
        except Exception as exc:  # thread boundary: a reader bug is this attempt's failure
            log.exception("camera %s: reading %s failed", self.camera, redact_uri(self.uri))
            attempt.error = redact_text(f"internal error: {exc!r}")
        finally:
            source.close()

    def _deliver(self, attempt: _Attempt, frame: Frame) -> bool:
        """Hand `frame` to the camera loop; False (the frame released) once `attempt` is
        abandoned. A camera's first frame is announced (`streaming`) before it is handed on,
        so that its detections never reach a subscriber ahead of that status."""
        with self._lock:
            if attempt.abandoned:
                frame.release()
                return False
            streaming = self._status.state == "streaming"
            if not streaming:
                self._outage_causes.clear()
        if not streaming:
            self._logged_reason = ""
            log.info("camera %s: streaming from %s", self.camera, redact_uri(self.uri))
            self._set("streaming", "", 0, unless_abandoned=attempt)
        with self._lock:
            if attempt.abandoned:
                frame.release()
                return False
            frame.frame_id += attempt.id_offset
            self.last_frame_id = frame.frame_id
            self.latest.put(frame)
            attempt.progress = time.monotonic()
            attempt.delivered = True
            self._rate.tick()
            self.frames += 1
        return True

    def _stall_limit(self, attempt: _Attempt) -> float:
        """Seconds without a frame after which an attempt has stalled."""
        return self.stall_s if attempt.delivered else max(self.stall_s, FIRST_FRAME_S)

    def _timed_out(self, attempt: _Attempt, blocked: float) -> bool:
        """Whether a read that blocked `blocked` seconds waited past the stall limit or past
        the source's own read timeout, so that what it returned is no sign of life."""
        timeout = attempt.source.read_timeout_s
        return blocked > self._stall_limit(attempt) or (
            timeout is not None and blocked >= READ_TIMEOUT_SHARE * timeout)

    def _finish(self, attempt: _Attempt) -> None:
        if attempt.ended and not attempt.error:
            short = attempt.source.ended_short
            if short is None:
                log.info("camera %s: source %s ended", self.camera, redact_uri(self.uri))
                self._set("ended", "end of the source", 0)
                return
            log.warning("camera %s: source %s ended %s", self.camera, redact_uri(self.uri), short)
            self._set("ended", f"end of the source, {short}", 0)
        else:
            log.error("camera %s: %s", self.camera, attempt.error)
            self._set("failed", attempt.error, 0)

    @staticmethod
    def _reason(attempt: _Attempt) -> str:
        if attempt.error:
            return attempt.error
        return "the stream ended" if attempt.ended else "the reader stopped"

    # -- state -----------------------------------------------------------------------------

    def _set(self, state: CameraState, reason: str, attempts: int,
             since: float | None = None, unless_abandoned: _Attempt | None = None) -> None:
        """`since` (`edge.clock.steady()`): when a new state began, where earlier than now.
        `unless_abandoned`: a reader's attempt; nothing changes once the supervisor has given
        it up (the state it then sets stays)."""
        with self._notify_lock:
            with self._lock:
                if unless_abandoned is not None and unless_abandoned.abandoned:
                    return
                old = self._status
                if (old.state, old.reason, old.attempts) == (state, reason, attempts):
                    return
                if old.state == state:
                    since = old.since
                elif since is None:
                    since = steady()
                if state != old.state == "streaming":
                    self._streamed_s += time.monotonic() - self._streaming_from
                elif old.state != state == "streaming":
                    self._streaming_from = time.monotonic()
                fps = 0.0
                if state not in HEALTHY_CAMERA_STATES:
                    leaving = old.state in HEALTHY_CAMERA_STATES
                    fps = self._rate.rate_up_to_last() if leaving else old.fps
                    if leaving:  # the next streaming's rate starts afresh
                        self._rate.clear()
                self._status = CameraStatus(self.camera, state, reason, since, attempts, fps)
            self._notify_locked()

    def _notify(self) -> None:
        with self._notify_lock:
            self._notify_locked()

    def _notify_locked(self) -> None:
        if self._on_change is not None:
            self._on_change(self.status())

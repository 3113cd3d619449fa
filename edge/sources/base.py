"""Frame sources and the hand-off between a source thread and the camera loop.

A source fills buffers from a small pool; the hand-off keeps only the latest frame, so a slow
loop drops stale frames (counted) instead of falling behind the camera.
"""

from __future__ import annotations

import threading
import time
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import numpy.typing as npt

from edge.clock import steady
from edge.synthetic.scene import GroundTruth


@dataclass
class Frame:
    """One captured frame. `image` is BGR uint8 [H, W, 3] borrowed from the pool: call
    `release()` once it has been copied into the model input."""

    image: npt.NDArray[np.uint8]
    frame_id: int
    ts: float  # capture time, seconds since the epoch on the steady clock (edge.clock)
    truth: GroundTruth | None = None
    _pool: FramePool | None = field(default=None, repr=False)

    def release(self) -> None:
        if self._pool is not None:
            self._pool.give_back(self.image)
            self._pool = None


class FramePool:
    """Recycles frame buffers so steady-state capture allocates nothing frame-sized.

    Three buffers suffice for one producer and one consumer: one being written, one waiting in
    the hand-off, one being read.
    """

    def __init__(self, size: int = 3) -> None:
        self._free: list[npt.NDArray[np.uint8]] = []
        self._size = size
        self._lock = threading.Lock()

    def take(self, height: int, width: int) -> npt.NDArray[np.uint8]:
        with self._lock:
            for i, buffer in enumerate(self._free):
                if buffer.shape == (height, width, 3):
                    return self._free.pop(i)
        return np.empty((height, width, 3), np.uint8)

    def give_back(self, buffer: npt.NDArray[np.uint8]) -> None:
        with self._lock:
            if len(self._free) < self._size:
                self._free.append(buffer)


class LatestFrame:
    """Single-slot hand-off: `put` replaces an unread frame (releasing it and counting a drop)."""

    def __init__(self) -> None:
        self._frame: Frame | None = None
        self._closed = False
        self._cond = threading.Condition()
        self.dropped = 0

    def put(self, frame: Frame) -> None:
        """Hand `frame` on; once closed (the loop stopped taking), it is released uncounted:
        no newer frame replaced it, the camera stopped."""
        with self._cond:
            if self._closed:
                frame.release()
                return
            if self._frame is not None:
                self._frame.release()
                self.dropped += 1
            self._frame = frame
            self._cond.notify()

    def take(self, timeout: float) -> Frame | None:
        """The newest unread frame, or None after `timeout` seconds or once closed and empty."""
        with self._cond:
            self._cond.wait_for(lambda: self._frame is not None or self._closed, timeout)
            frame, self._frame = self._frame, None
            self._cond.notify_all()
            return frame

    def ready(self) -> bool:
        with self._cond:
            return self._frame is not None

    def wait_empty(self, timeout: float) -> bool:
        """Block until the frame was taken (or the hand-off closed); False on timeout. Sources
        replayed from memory wait here instead of replacing frames nobody has read."""
        with self._cond:
            return self._cond.wait_for(lambda: self._frame is None or self._closed, timeout)

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify_all()

    @property
    def closed(self) -> bool:
        return self._closed


#: Where a source's `fps` comes from (`Source.fps_origin`).
FpsOrigin = Literal["declared", "asked", "default", "snapshots"]

#: What to check about a source that does not open (or hangs opening).
CHECK_UNOPENED = "check that the device or stream exists and that you may read it"


class Source(ABC):
    """A camera, stream, file or synthetic scene. `read` blocks until the next frame is due."""

    uri: str
    #: Frames per second the source delivers, when known (None: as fast as it can).
    fps: float | None
    #: Where `fps` comes from: the stream or file says so ("declared"), the URI's fps= asks for
    #: it ("asked"), or it is the pace the source keeps by default (a folder, the scene).
    fps_origin: FpsOrigin = "declared"
    #: True: the capture thread waits until the loop took the previous frame (no drops).
    paced_by_consumer: bool = False
    #: A camera or stream (rtsp, v4l2, csi) that its supervisor reopens when it fails, stalls or
    #: ends; a file or a synthetic scene is not live and ends for good.
    live: bool = False
    #: How long one read may block before the source gives up on it (FFmpeg's read timeout
    #: on a stream; None: no such limit). A read that took that long returns a frame its
    #: decoder still held, or nothing, not a new frame: the supervisor takes it as a stall.
    read_timeout_s: float | None = None
    #: Set where a file ended well short of the frames its header announces (a recording cut
    #: off by a full disk or an interrupted copy): says by how much. None: it did not, or the
    #: source cannot tell.
    ended_short: str | None = None

    def __init__(self) -> None:
        self.pool = FramePool()
        self._next_id = 0

    @abstractmethod
    def open(self) -> None:
        """Acquire the device or file; raises SourceError with the reason when it cannot."""

    @abstractmethod
    def read(self) -> Frame | None:
        """The next frame, or None at the end of a finite source."""

    def close(self) -> None:
        """Release the device or file."""

    def interrupt(self) -> None:
        """Asked from another thread when the daemon stops: a read that waits for its frame's
        time returns None as soon as it can (a read blocked in a device or FFmpeg returns
        when it returns)."""

    def follow(self, earlier: Source) -> None:
        """Called before `open` on a source that replaces `earlier` (its supervisor reopens the
        camera): what `earlier` delivered may be taken over, so as not to deliver it again."""

    def why_stalled(self) -> str | None:
        """What the source knows of why no frame came for a while, where it knows more than
        that none came (None)."""
        return None

    def _frame(self, image: npt.NDArray[np.uint8], truth: GroundTruth | None = None) -> Frame:
        self._next_id += 1
        return Frame(image, self._next_id, steady(), truth, self.pool)


class Pacer:
    """Sleeps so successive `wait()` calls return `1 / fps` seconds apart (no drift)."""

    def __init__(self, fps: float | None) -> None:
        self._period = 1.0 / fps if fps else 0.0
        self._due = time.monotonic()

    def wait(self) -> None:
        if not self._period:
            return
        self._due += self._period
        delay = self._due - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        else:
            self._due = time.monotonic()  # fell behind: restart the schedule, do not burst


#: `PresentationPacer`: a frame this late restarts the schedule at itself (seconds) ...
MAX_LATE_S = 0.5
#: ... as does one this far past the frame before it, or before it (a discontinuity).
MAX_STEP_S = 5.0


class PresentationPacer:
    """Holds each frame of a stream that delivers ahead of time until its presentation
    timestamp comes round on the wall clock, counted from the frame the schedule started at.
    HLS hands over whole segments at once (three at the start); unpaced, the newest frame of
    each burst replaced the others before the model saw them (5.8 of 15 fps processed). A
    frame `MAX_LATE_S` late (the network held a segment back), or one whose timestamp steps
    more than `MAX_STEP_S` from the frame before (a discontinuity), restarts the schedule at
    itself instead of bursting or waiting that long."""

    def __init__(self) -> None:
        self._anchor: tuple[float, float] | None = None  # (monotonic s, timestamp s)
        self._last: float | None = None

    def wait_for(self, timestamp_s: float) -> None:
        """Returns when the frame presented at `timestamp_s` (the stream's seconds) is due."""
        now = time.monotonic()
        last, self._last = self._last, timestamp_s
        if self._anchor is None or last is None or abs(timestamp_s - last) > MAX_STEP_S:
            self._anchor = (now, timestamp_s)
            return
        due = self._anchor[0] + timestamp_s - self._anchor[1]
        if now - due > MAX_LATE_S:
            self._anchor = (now, timestamp_s)
        elif due > now:
            time.sleep(due - now)

"""A source tried as `edge probe` tries it: opened, a few frames read, and what came said.

Commissioning a camera is mostly finding out whether its URL works, at what size and rate, and
if not, why; the daemon would only say so once it runs. A trial opens the source as the daemon
does (`edge.sources`), reads `frames` frames within `timeout_s`, and reports the frame size,
the rate measured over the second half of the frames (an RTSP stream hands over a burst of
buffered frames first), how long the first frame took, and the last frame itself.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

from edge.concurrency import StopRequest
from edge.errors import SourceError
from edge.redact import redact_text, redact_uri
from edge.sources import Snapshots, source_from_uri
from edge.sources.base import FpsOrigin, Source
from edge.sources.supervisor import open_stalled
from edge.wording import counted, rate_words

#: How often a trial looks at its reader and at the stop request (seconds).
POLL_S = 0.1
#: How long a reader told to stop may take to return from the frame it waits for (seconds).
READ_RETURN_S = 2.0
#: A live source's rate is measured over at least this long (seconds): an RTSP stream first
#: hands over a burst of buffered frames (12-13 of a 10 fps stream here) in a few ms.
MIN_LIVE_SPAN_S = 0.3


@dataclass
class SourceTrial:
    """What a trial of one source found. `error`: why it failed (redacted), None when it
    delivered every frame asked for."""

    name: str
    source: str  # redacted
    error: str | None = None
    width: int | None = None  # the first frame's
    height: int | None = None
    sizes: list[tuple[int, int]] = field(default_factory=list)  # (width, height) each, in order
    frames: int = 0
    fps: float | None = None  # measured
    declared_fps: float | None = None  # what the source delivers by its own account
    #: `Source.fps_origin` (declared, asked with fps=, default) of `declared_fps`; None with it
    fps_origin: FpsOrigin | None = None
    first_frame_s: float | None = None  # from the start of the open
    opened_s: float | None = None  # how long the open took, once it returned
    last_frame: npt.NDArray[np.uint8] | None = field(default=None, repr=False)
    live: bool = False
    stuck: bool = False  # its reader is still inside the source (a hung device's open)

    def as_dict(self) -> dict[str, Any]:
        return {"name": self.name, "source": self.source, "ok": self.error is None,
                "error": self.error, "width": self.width, "height": self.height,
                "sizes": [list(size) for size in self.sizes], "frames": self.frames,
                "fps": _rounded(self.fps), "declared_fps": _rounded(self.declared_fps),
                "fps_origin": self.fps_origin,
                "first_frame_s": _rounded(self.first_frame_s)}

    def describe(self) -> str:
        """One line: the size and rates, or why it failed."""
        if self.error is not None and not self.frames:
            return f"{self.name}: {self.source}: FAILED: {self.error}"
        declared = (f" ({_pace_words(self.declared_fps, self.fps_origin)})"
                    if self.declared_fps and self.fps_origin else "")
        rate = (f"{rate_words(self.fps)} fps{declared}" if self.fps else
                "a rate not measured (too few snapshots: ask for more --frames)"
                if self.fps_origin == "snapshots" else
                "a rate not measured (too few frames after the burst a stream starts with: "
                "ask for more --frames)" if self.live else "a rate not measured")
        line = (f"{self.name}: {self.source}: {self.width}x{self.height} at {rate}, "
                f"{counted(self.frames, 'frame')}, the first after {self.first_frame_s:.1f} s")
        if len(self.sizes) > 1:
            others = ", ".join(f"{w}x{h}" for w, h in self.sizes[1:])
            line += (f"; frames of other sizes too ({others}): zones in pixels fit one size "
                     "only; give them in units = \"normalised\"")
        return line if self.error is None else f"{line}; then FAILED: {self.error}"


def _pace_words(fps: float, origin: FpsOrigin) -> str:
    """What a source's own rate is: `the source declares 25` (a stream's or a file's),
    `fps= asks for 5` (the URI's fps=5), or `its default pace, 10; fps= sets another` (a
    folder's, the scene's: it declares nothing)."""
    if origin == "asked":
        return f"fps= asks for {fps:g}"
    if origin == "snapshots":
        return f"one snapshot every {1 / fps:g} s asked for"
    if origin == "default":
        return f"its default pace, {fps:g}; fps= sets another"
    return f"the source declares {fps:g}"


def _rounded(value: float | None) -> float | None:
    return None if value is None else round(value, 2)


def checked_source(text: str, snapshots: Snapshots | None = None) -> None:
    """Raise SourceError for a URI no source can be made of (unknown scheme or option, a
    missing file): bad input, as `edge run` refuses it at start."""
    source_from_uri(text, snapshots).close()


def try_source(name: str, text: str, frames: int, timeout_s: float,
               stop: StopRequest | None = None,
               snapshots: Snapshots | None = None) -> SourceTrial:
    """Open the source at URI `text` (its still image fetched as `snapshots` say, where
    given) and read `frames` frames from it, within `timeout_s` seconds in all, or until
    `stop` is set. A reader still reading then stops at its next frame and closes the source;
    one stuck opening a device is left to its thread (`SourceTrial.stuck`)."""
    trial = SourceTrial(name, redact_uri(text))
    enough = threading.Event()
    made: list[Source] = []  # the reader's source, once made
    reader = threading.Thread(target=_read, args=(trial, text, frames, enough, snapshots, made),
                              name=f"probe-{name}", daemon=True)
    reader.start()
    deadline = time.monotonic() + timeout_s
    while reader.is_alive() and time.monotonic() < deadline and not (stop and stop.is_set()):
        reader.join(POLL_S)
    if not reader.is_alive():
        return trial
    enough.set()
    for source in made:
        source.interrupt()  # a snapshot camera's wait for its next one
    reader.join(READ_RETURN_S)  # a stream's next frame, or FFmpeg's read timeout far later
    interrupted = stop is not None and stop.is_set()
    if reader.is_alive():
        trial.stuck = True
        trial.error = "interrupted" if interrupted else _overdue(trial, text, timeout_s)
    elif trial.error is None:
        trial.error = "interrupted" if interrupted else _too_few(trial, frames, timeout_s)
    return trial


def _too_few(trial: SourceTrial, frames: int, timeout_s: float) -> str:
    """Why a trial that ended at its timeout has fewer frames than asked for, and what to do:
    a stream may take seconds to open (1.9-3.8 s measured for a local RTSP server), which a
    short --timeout ends before its first frame."""
    said = f"{trial.frames} of {frames} frames within {timeout_s:g} s"
    if trial.frames == 0 and trial.opened_s is not None and trial.opened_s >= timeout_s:
        return (f"{said}: the source took {trial.opened_s:.1f} s to open, so the time was up "
                "before its first frame; raise --timeout")
    return f"{said}; raise --timeout or ask for fewer --frames"


def _overdue(trial: SourceTrial, text: str, timeout_s: float) -> str:
    """Why a trial still waits after `timeout_s`."""
    if trial.first_frame_s is not None:
        return f"no frame for the last {READ_RETURN_S:g} s of the {timeout_s:g} s"
    return open_stalled(text, timeout_s)


def _read(trial: SourceTrial, text: str, frames: int, enough: threading.Event,
          snapshots: Snapshots | None, made: list[Source]) -> None:
    started = time.monotonic()
    times: list[float] = []
    try:
        source = source_from_uri(text, snapshots)
        made.append(source)
        trial.live = source.live
        try:
            source.open()
            trial.opened_s = time.monotonic() - started
            while len(times) < frames and not enough.is_set():
                frame = source.read()
                if frame is None:  # a file or a scene may end; a live source should not
                    if (source.live or not times) and not enough.is_set():
                        trial.error = f"the source ended after {counted(len(times), 'frame')}"
                    break
                times.append(time.monotonic())
                if trial.first_frame_s is None:
                    trial.first_frame_s = times[0] - started
                    trial.height, trial.width = frame.image.shape[:2]
                height, width = frame.image.shape[:2]
                if (width, height) not in trial.sizes:
                    trial.sizes.append((width, height))
                _keep(trial, frame.image)
                frame.release()
                trial.frames = len(times)
            trial.declared_fps = source.fps
            trial.fps_origin = source.fps_origin if source.fps else None
        finally:
            trial.fps = _measured_fps(times, source.live)
            source.close()
    except SourceError as exc:
        trial.error = redact_text(str(exc))


def _keep(trial: SourceTrial, image: npt.NDArray[np.uint8]) -> None:
    """`image` as the trial's last frame, copied into the one kept before where it fits (the
    source's own buffer goes back to its pool)."""
    if trial.last_frame is not None and trial.last_frame.shape == image.shape:
        np.copyto(trial.last_frame, image)
    else:
        trial.last_frame = image.copy()


def _measured_fps(times: list[float], live: bool) -> float | None:
    """Frames per second over the second half of `times` (monotonic seconds of each frame):
    the lower of the rate from the median interval, which a burst reaching into the second
    half does not raise (an RTSP stream's opening one), and the least-squares slope of frames
    against time, which frames bunched all along do not raise (frames in pairs; an HLS stream
    read unpaced, a segment's frames at once: 2717 fps by the median interval for a 15 fps
    stream, and 22 fps from the half's span, which begins on a segment's first frame and ends
    on one's last).
    None where too few frames came, or where a live source's second half spans under
    `MIN_LIVE_SPAN_S` (its burst, so far)."""
    half = np.asarray(times[len(times) // 2:], np.float64)
    intervals = np.diff(half)
    if not len(intervals) or float(np.median(intervals)) <= 0:
        return None
    if live and half[-1] - half[0] < MIN_LIVE_SPAN_S:
        return None
    elapsed = half - half.mean()
    slope = float(elapsed @ (np.arange(len(half)) - (len(half) - 1) / 2) / (elapsed @ elapsed))
    return min(1.0 / float(np.median(intervals)), slope)

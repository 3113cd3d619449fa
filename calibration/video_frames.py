"""Calibration frames from a video file: `--max-images` frames spread evenly over the whole
clip, not its first seconds (500 frames at 30 FPS are the first 17 s of a ten-minute
recording, one lighting and one set of passers-by).

The frame count comes from the container's header where one is given and the last frame
picked can be reached; otherwise the frames are counted by reading through the file (a header
may be missing, or overstate a file cut short). The frames between two picked ones are
grabbed (decoded, not converted to BGR) or passed over by a seek, whichever has measured
faster on the file (`_Walker`): a seek in an inter-coded stream decodes from the keyframe
before its target too.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import numpy.typing as npt

from edge.sources.opencv import cut_short

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class VideoPick:
    """Which frames of the video at `path` calibration reads: `frames`, indices from 0
    ascending, out of the `total` the video holds."""

    path: Path
    frames: tuple[int, ...]
    total: int
    #: Why the video holds fewer frames than its header announces, where it does
    cut_short: str | None = None

    @property
    def count(self) -> int:
        return len(self.frames)

    @property
    def spread(self) -> bool:
        """Whether the picked frames skip some (the video holds more than were asked for)."""
        return self.count < self.total


def spread_indices(total: int, count: int) -> tuple[int, ...]:
    """`count` frame indices spread evenly over `total` frames, each at the middle of its
    share (all of them where `total` <= `count`)."""
    if total <= count:
        return tuple(range(total))
    return tuple(int((i + 0.5) * total / count) for i in range(count))


def pick_frames(path: Path, count: int) -> VideoPick:
    """The frames of the video at `path` to calibrate on: `count` spread over it (0 frames
    where OpenCV cannot read it)."""
    capture = cv2.VideoCapture(str(path))
    try:
        announced = max(0, int(capture.get(cv2.CAP_PROP_FRAME_COUNT)))
        if announced > count:
            picked = spread_indices(announced, count)
            if _reaches(capture, picked[-1]):
                return VideoPick(path, picked, announced)
            log.info("%s: no frame %d, though its header announces %d frames; counting them",
                     path, picked[-1], announced)
        elif announced == 0 and capture.isOpened():
            log.info("%s: its header gives no frame count; counting its frames", path)
    finally:
        capture.release()
    total = _counted(path)
    short = cut_short(announced, total)
    if short is not None:
        short = f"{path} ended {short}; calibrating on the frames it holds"
        log.warning("%s", short)
    return VideoPick(path, spread_indices(total, count), total, short)


def picked_frames(pick: VideoPick) -> Iterator[npt.NDArray[np.uint8]]:
    """The picked frames, BGR uint8 [h, w, 3], in order. A video that ends before the last of
    them (damaged since it was picked) yields fewer, with a warning."""
    path = pick.path
    capture = cv2.VideoCapture(str(path))
    try:
        walker = _Walker(capture)
        for target in pick.frames:
            if not walker.reach(target):
                log.warning("%s ended before its frame %d, which calibration picked; its "
                            "frames from there are left out", path, target)
                return
            ok, image = capture.retrieve()
            if ok and image is not None:
                yield np.asarray(image, np.uint8)
    finally:
        capture.release()


class _Walker:
    """Moves a capture forward to frame indices: by grabbing every frame between (each
    decoded, none converted) or by seeking, whichever costs less here. A seek decodes from
    the keyframe before its target, and OpenCV's own work around it measured ~50 ms on a
    720p MPEG-4 file that decoded a frame in 2 ms: so a seek is tried once a gap passes
    `TRY_SEEK_GAP` frames, timed, and used again where a gap would take longer to walk."""

    #: The shortest gap (frames) a first seek is tried for.
    TRY_SEEK_GAP = 32

    def __init__(self, capture: cv2.VideoCapture) -> None:
        self._capture = capture
        self._next = 0  # the index of the frame the next grab reads
        self._grab_s = 0.0  # mean seconds a grab has taken
        self._grabs = 0
        self._seek_s: float | None = None  # seconds the last seek took; None: none tried

    def reach(self, target: int) -> bool:
        """Grab frame `target` (at or after the frame reached last); False where the video
        ends first."""
        gap = target - self._next
        if gap >= self.TRY_SEEK_GAP and self._seeking_pays(gap):
            started = time.perf_counter()
            self._capture.set(cv2.CAP_PROP_POS_FRAMES, target)
            landed = int(self._capture.get(cv2.CAP_PROP_POS_FRAMES))
            self._seek_s = time.perf_counter() - started
            if landed != target:  # a stream that cannot seek: walked from where it is
                self._seek_s = float("inf")
            self._next = landed
        while self._next < target:
            if not self._timed_grab():
                return False
        return self._timed_grab()

    def _seeking_pays(self, gap: int) -> bool:
        if self._seek_s is None:
            return True
        return self._seek_s < gap * self._grab_s

    def _timed_grab(self) -> bool:
        started = time.perf_counter()
        grabbed = bool(self._capture.grab())
        self._grabs += 1
        self._grab_s += (time.perf_counter() - started - self._grab_s) / self._grabs
        self._next += 1
        return grabbed


def _reaches(capture: cv2.VideoCapture, index: int) -> bool:
    """Whether frame `index` can be read (the capture is left past it)."""
    capture.set(cv2.CAP_PROP_POS_FRAMES, index)
    return bool(capture.grab())


def _counted(path: Path) -> int:
    """The frames OpenCV reads from the video at `path`, from its start (a capture of its
    own: one a failed seek left behind may be past its end)."""
    capture = cv2.VideoCapture(str(path))
    try:
        frames = 0
        while capture.grab():
            frames += 1
        return frames
    finally:
        capture.release()

"""What a live HLS playlist already delivered, so that a reopened one does not deliver it again.

A playlist whose writer stopped (a restreamer whose camera went away, an encoder that hung)
is still served as it last was; the camera stalls, is reopened, and FFmpeg starts again three
segments from the playlist's end: frames the model already saw, published a second time as
new (a user check: 88 frames each time, every 16 s). A frame is a replay when a frame with its
presentation timestamp and its pixels was delivered before; a restarted writer's timestamps
may begin again where the old ones did, but not with the same pixels.
"""

from __future__ import annotations

import zlib
from collections import deque
from typing import Any

import numpy as np
import numpy.typing as npt

#: Delivered frames remembered: three 10 s segments at 30 fps, with room.
REMEMBERED_FRAMES = 2048
#: Every this many pixels in each direction reach the fingerprint.
FINGERPRINT_STRIDE = 8


def fingerprint(image: npt.NDArray[Any]) -> int:
    """A checksum of an evenly spaced sample of `image`'s pixels (a replayed segment decodes
    to the same pixels, bit for bit: it starts on a keyframe)."""
    sample = np.ascontiguousarray(image[::FINGERPRINT_STRIDE, ::FINGERPRINT_STRIDE])
    return zlib.crc32(sample.tobytes())


class DeliveredFrames:
    """The presentation timestamps and fingerprints of the last `REMEMBERED_FRAMES` frames a
    stream delivered."""

    def __init__(self) -> None:
        self._order: deque[float] = deque()
        self._prints: dict[float, int] = {}

    def add(self, timestamp: float, image: npt.NDArray[Any]) -> None:
        if timestamp not in self._prints:
            self._order.append(timestamp)
            if len(self._order) > REMEMBERED_FRAMES:
                del self._prints[self._order.popleft()]
        self._prints[timestamp] = fingerprint(image)

    def replays(self, timestamp: float, image: npt.NDArray[Any]) -> bool:
        """Whether a frame at `timestamp` with `image`'s pixels was delivered before."""
        return self._prints.get(timestamp) == fingerprint(image)

"""`replay://shapes?frames=64&seed=1` or `replay:///path/clip.mp4?frames=64`: frames decoded
into memory once, then served in a loop as fast as the camera loop takes them.

For benchmarks (`edge bench`): the camera is never the bottleneck and costs nothing per frame,
so what is measured is the daemon's own loop, not decoding. As with `file://...?fps=0`, a
replayed frame is never dropped: the capture thread waits until the loop has taken the previous
one (`paced_by_consumer`), instead of spinning and replacing frames nobody read.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import numpy.typing as npt

from edge.errors import SourceError
from edge.sources.base import Frame, Pacer, Source
from edge.sources.uri import SourceUri
from edge.synthetic.scene import SceneConfig, ShapeScene

OPTIONS = {"frames", "seed", "width", "height", "fps"}


class ReplaySource(Source):
    paced_by_consumer = True

    def __init__(self, uri: SourceUri) -> None:
        super().__init__()
        uri.reject_unknown(OPTIONS)
        self.uri = uri.text
        self._video = None if uri.location.strip("/") == "shapes" else uri.local_path()
        self._count = uri.integer("frames", 64)
        if self._count < 1:
            raise SourceError(f"source '{uri.text}': frames must be at least 1")
        self._seed = uri.integer("seed", 0)
        self._size = (uri.integer("width", 640), uri.integer("height", 480))
        rate = uri.number("fps", 0.0)
        self.fps = rate or None
        self.fps_origin = "asked"  # without fps=, none: as fast as it is read
        self._pacer = Pacer(self.fps)
        self._frames: list[npt.NDArray[np.uint8]] = []
        self._index = 0

    def open(self) -> None:
        if self._video is None:
            scene = ShapeScene(seed=self._seed,
                               config=SceneConfig(width=self._size[0], height=self._size[1]))
            self._frames = [scene.next()[0].copy() for _ in range(self._count)]
        else:
            self._frames = _decode(self._video, self._count, self.uri)
        for image in self._frames:
            image.setflags(write=False)  # shared by every read: nobody may draw on them
        self._index = 0
        self._pacer = Pacer(self.fps)

    def read(self) -> Frame | None:
        if not self._frames:
            raise SourceError(f"source '{self.uri}' was read before open()")
        self._pacer.wait()
        image = self._frames[self._index % len(self._frames)]
        self._index += 1
        return self._frame(image)


def _decode(path: Path, count: int, uri: str) -> list[npt.NDArray[np.uint8]]:
    if path.is_dir():
        raise SourceError(f"source '{uri}': {path} is a folder; replay:// takes "
                          f"replay://shapes or replay:///path/to/video (a folder of images is "
                          f"file://{path})")
    if not path.is_file():
        raise SourceError(f"source '{uri}': {path} does not exist; replay:// takes "
                          "replay://shapes or replay:///path/to/video")
    capture = cv2.VideoCapture(str(path))
    frames: list[npt.NDArray[np.uint8]] = []
    try:
        while len(frames) < count:
            ok, image = capture.read()
            if not ok or image is None:
                break
            frames.append(np.ascontiguousarray(image, np.uint8))
    finally:
        capture.release()
    if not frames:
        raise SourceError(f"source '{uri}': no frame could be decoded from {path}")
    return frames

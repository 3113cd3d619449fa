"""`synthetic://shapes?fps=15&seed=1&width=640&height=480`: the demo scene as a camera."""

from __future__ import annotations

from edge.errors import SourceError
from edge.sources.base import Frame, Pacer, Source
from edge.sources.uri import SourceUri
from edge.synthetic.scene import SceneConfig, ShapeScene
from edge.synthetic.shift import SHIFTS, SceneShift

OPTIONS = {"fps", "seed", "width", "height", "frames", "shift", "shift_after"}


class SyntheticSource(Source):
    """Renders the shapes scene at `fps`; frame ids are scene frame indices, so a subscriber can
    replay the ground truth from the seed alone (`ShapeScene.next_truth`)."""

    def __init__(self, uri: SourceUri) -> None:
        super().__init__()
        if uri.location.strip("/") != "shapes":
            raise SourceError(f"source '{uri.text}': unknown synthetic scene "
                              f"'{uri.location}'; the available scene is synthetic://shapes")
        uri.reject_unknown(OPTIONS)
        self.uri = uri.text
        # fps=0: every frame, as fast as the model takes them, none dropped, as for a file (a
        # user check: it rendered frames as fast as it could and dropped 4 in 5)
        self.fps = uri.number("fps", 15.0) or None
        self.paced_by_consumer = self.fps is None
        self.fps_origin = "asked" if "fps" in uri.options else "default"
        self.seed = uri.integer("seed", 0)
        self.config = SceneConfig(width=uri.integer("width", 640),
                                  height=uri.integer("height", 480))
        if min(self.config.width, self.config.height) < 2 * self.config.max_size:
            raise SourceError(f"source '{uri.text}': width and height must be at least "
                              f"{2 * self.config.max_size:g} pixels")
        self.max_frames = uri.integer("frames", 0)  # 0: endless
        self.shift = _shift_from(uri)
        self._scene: ShapeScene | None = None
        self._pacer = Pacer(self.fps)

    def open(self) -> None:
        self._scene = ShapeScene(seed=self.seed, config=self.config)
        self._pacer = Pacer(self.fps)

    def read(self) -> Frame | None:
        if self._scene is None:
            raise SourceError(f"source '{self.uri}' was read before open()")
        if self.max_frames and self._scene.frame_index >= self.max_frames:
            return None
        self._pacer.wait()
        buffer = self.pool.take(self.config.height, self.config.width)
        image, truth = self._scene.next(out=buffer)
        if self.shift is not None:
            self.shift.apply(image, self._scene.frame_index)
        frame = self._frame(image, truth)
        frame.frame_id = self._scene.frame_index
        return frame


def _shift_from(uri: SourceUri) -> SceneShift | None:
    """`shift=` (one of `edge.synthetic.shift.SHIFTS`) from frame `shift_after` on (default 0:
    at once)."""
    kind = uri.options.get("shift")
    if kind is None:
        if "shift_after" in uri.options:
            raise SourceError(f"source '{uri.text}': shift_after says from which frame the "
                              f"scene shifts, but no shift= says how; add shift= with one of "
                              f"{', '.join(SHIFTS)}, or leave shift_after out")
        return None
    if kind not in SHIFTS:
        raise SourceError(f"source '{uri.text}': unknown shift {kind!r}; use one of "
                          f"{', '.join(SHIFTS)}")
    return SceneShift(kind, uri.integer("shift_after", 0))

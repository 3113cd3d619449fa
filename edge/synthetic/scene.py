"""A synthetic camera scene: coloured shapes moving over a textured, noisy background.

Every rendered frame comes with exact ground-truth boxes, so the whole pipeline (model, NMS,
publisher, subscriber) can be scored end to end without a real camera or a labelled dataset.
Only numpy and OpenCV are used, so the scene also runs on the device as `synthetic://shapes`.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass, field

import cv2
import numpy as np
import numpy.typing as npt

SHAPE_LABELS: tuple[str, ...] = ("circle", "square", "triangle", "star")

NOISE_OFFSETS = 4096  # distinct noise windows per scene (see ShapeScene._noise_field)
NOISE_STREAM = 1

#: An object whose visible area falls below this fraction is marked difficult (VOC's convention;
#: scored as COCO scores a crowd region, `edge.metrics.match_frame`): detecting it is neither
#: required nor penalised.
MIN_VISIBLE_FRACTION = 0.5


def detects_the_scene(task: str, labels: tuple[str, ...] | list[str]) -> bool:
    """Whether a model (its spec's task and labels) detects this scene's shapes: the demo
    detector or one made from it, the only model the scene's frames and ground truth fit."""
    return task == "detect" and tuple(labels) == SHAPE_LABELS


@dataclass(frozen=True)
class SceneConfig:
    """Knobs of the scene; the defaults are what the demo detector was trained on."""

    width: int = 640
    height: int = 480
    min_objects: int = 2
    max_objects: int = 5
    min_size: float = 28.0  # object diameter, pixels
    max_size: float = 110.0
    max_speed: float = 6.0  # pixels per frame
    noise_sigma: float = 6.0  # Gaussian sensor noise, grey levels
    blur_probability: float = 0.25


@dataclass(frozen=True)
class GroundTruth:
    """Exact labels of one rendered frame.

    Attributes:
        boxes: float32 [K, 4], x1 y1 x2 y2 in frame pixels.
        class_ids: int64 [K], indices into SHAPE_LABELS.
        difficult: bool [K], True where less than MIN_VISIBLE_FRACTION of the object is visible.
        object_ids: int64 [K], the identity of each object: the same from the frame it appears
            to the frame it leaves, never reused within a scene (ids count up from 1).
    """

    boxes: npt.NDArray[np.float32]
    class_ids: npt.NDArray[np.int64]
    difficult: npt.NDArray[np.bool_]
    object_ids: npt.NDArray[np.int64] = field(
        default_factory=lambda: np.zeros(0, np.int64))

    def __len__(self) -> int:
        return int(self.class_ids.shape[0])


@dataclass
class _Shape:
    class_id: int
    centre: npt.NDArray[np.float64]  # x, y
    velocity: npt.NDArray[np.float64]
    radius: float
    angle: float
    spin: float
    colour: tuple[int, int, int]
    lifetime: int
    object_id: int = 0

    def polygon(self) -> npt.NDArray[np.float64]:
        """Outline vertices [V, 2] in frame pixels (a circle is returned as a fine polygon)."""
        label = SHAPE_LABELS[self.class_id]
        if label == "circle":
            angles = np.linspace(0.0, 2 * math.pi, 48, endpoint=False)
            radii = np.full_like(angles, self.radius)
        elif label == "square":
            angles = self.angle + np.arange(4) * math.pi / 2 + math.pi / 4
            radii = np.full(4, self.radius)
        elif label == "triangle":
            angles = self.angle + np.arange(3) * 2 * math.pi / 3
            radii = np.full(3, self.radius)
        else:  # star: ten vertices alternating outer and inner radius
            angles = self.angle + np.arange(10) * math.pi / 5
            radii = np.where(np.arange(10) % 2 == 0, self.radius, self.radius * 0.45)
        offsets = np.stack([np.cos(angles) * radii, np.sin(angles) * radii], axis=1)
        return self.centre + offsets


@dataclass
class ShapeScene:
    """Deterministic animated scene: the same seed renders the same frames.

    `next()` advances the animation by one frame and returns (BGR uint8 [H, W, 3], GroundTruth).
    """

    seed: int = 0
    config: SceneConfig = field(default_factory=SceneConfig)

    def __post_init__(self) -> None:
        self._rng = np.random.default_rng(self.seed)
        self._background = _textured_background(self._rng, self.config.width, self.config.height)
        self._shapes: list[_Shape] = []
        self._frame_index = 0
        # Sensor noise has its own generator, so rendering pixels never shifts the motion
        # stream that `next_truth` replays; its fields are made on the first render.
        self._noise_rng = np.random.default_rng([self.seed, NOISE_STREAM])
        self._noise_strip: npt.NDArray[np.int8] = np.zeros(0, np.int8)
        self._spawned = 0  # identities are a counter, so they never perturb the motion stream
        target = int(self._rng.integers(self.config.min_objects, self.config.max_objects + 1))
        while len(self._shapes) < target:
            self._shapes.append(self._spawn())

    @property
    def frame_index(self) -> int:
        return self._frame_index

    def next(self, out: npt.NDArray[np.uint8] | None = None
             ) -> tuple[npt.NDArray[np.uint8], GroundTruth]:
        """Advance one frame and render it, into `out` (uint8 [height, width, 3]) when given."""
        self._advance()
        shape = (self.config.height, self.config.width, 3)
        image = out if out is not None and out.shape == shape else np.empty(shape, np.uint8)
        self._render_background(image)
        polygons = [shape.polygon() for shape in self._shapes]
        for item, polygon in zip(self._shapes, polygons, strict=True):
            cv2.fillPoly(image, [np.round(polygon * 16).astype(np.int32)], item.colour,
                         lineType=cv2.LINE_AA, shift=4)
        self._apply_camera_effects(image)
        return image, self._ground_truth(polygons)

    def next_truth(self) -> GroundTruth:
        """Advance one frame without rendering pixels; the ground truth equals what `next`
        would have returned, so a subscriber can replay a scene cheaply to score detections."""
        self._advance()
        self._draw_blur_kernel()
        return self._ground_truth([shape.polygon() for shape in self._shapes])

    def _spawn(self) -> _Shape:
        cfg, rng = self.config, self._rng
        radius = float(rng.uniform(cfg.min_size, cfg.max_size)) / 2
        for _ in range(20):  # prefer a free spot; a crowded frame may still overlap
            centre = np.array([rng.uniform(radius, cfg.width - radius),
                               rng.uniform(radius, cfg.height - radius)])
            if all(np.hypot(*(centre - s.centre)) > radius + s.radius for s in self._shapes):
                break
        heading = rng.uniform(0, 2 * math.pi)
        speed = rng.uniform(0.5, cfg.max_speed)
        hue = int(rng.integers(0, 180))
        saturation, value = int(rng.integers(150, 256)), int(rng.integers(150, 256))
        hsv = np.array([[[hue, saturation, value]]], np.uint8)
        colour = tuple(int(c) for c in cv2.cvtColor(hsv, cv2.COLOR_HSV2BGR)[0, 0])
        self._spawned += 1
        return _Shape(
            class_id=int(rng.integers(0, len(SHAPE_LABELS))),
            centre=centre,
            velocity=np.array([math.cos(heading), math.sin(heading)]) * speed,
            radius=radius,
            angle=float(rng.uniform(0, 2 * math.pi)),
            spin=float(rng.uniform(-0.05, 0.05)),
            colour=(colour[0], colour[1], colour[2]),
            lifetime=int(rng.integers(60, 400)),
            object_id=self._spawned,
        )

    def _advance(self) -> None:
        self._frame_index += 1
        cfg = self.config
        survivors = []
        for shape in self._shapes:
            shape.lifetime -= 1
            if shape.lifetime <= 0:
                continue
            shape.centre += shape.velocity
            shape.angle += shape.spin
            for axis, limit in ((0, cfg.width), (1, cfg.height)):
                if not shape.radius <= shape.centre[axis] <= limit - shape.radius:
                    shape.velocity[axis] = -shape.velocity[axis]
                    shape.centre[axis] = float(np.clip(shape.centre[axis], shape.radius,
                                                       limit - shape.radius))
            survivors.append(shape)
        self._shapes = survivors
        self._bounce_apart()
        while len(self._shapes) < cfg.min_objects or (
            len(self._shapes) < cfg.max_objects and self._rng.random() < 0.02
        ):
            self._shapes.append(self._spawn())

    def _bounce_apart(self) -> None:
        """Shapes that touch exchange their velocity along the line between their centres (an
        elastic collision of equal masses), so they graze and part rather than pile up."""
        for i, a in enumerate(self._shapes):
            for b in self._shapes[i + 1:]:
                delta = b.centre - a.centre
                distance = float(np.hypot(delta[0], delta[1]))
                if distance >= a.radius + b.radius:
                    continue
                normal = delta / distance if distance > 1e-6 else np.array([1.0, 0.0])
                closing = float((a.velocity - b.velocity) @ normal)
                if closing > 0:
                    a.velocity -= closing * normal
                    b.velocity += closing * normal

    def _render_background(self, out: npt.NDArray[np.uint8]) -> None:
        # Slow lighting drift plus a flicker, like auto-exposure chasing a changing scene.
        t = self._frame_index
        gain = 1.0 + 0.25 * math.sin(t / 47.0) + 0.05 * math.sin(t / 3.1)
        cv2.convertScaleAbs(self._background, dst=out, alpha=gain, beta=0.0)

    def _draw_blur_kernel(self) -> int:
        """0 for no blur this frame; drawn from the scene's generator so replays stay in step."""
        if self._rng.random() < self.config.blur_probability:
            return int(self._rng.choice([3, 5]))
        return 0

    def _apply_camera_effects(self, image: npt.NDArray[np.uint8]) -> None:
        kernel = self._draw_blur_kernel()
        if kernel:
            cv2.GaussianBlur(image, (kernel, kernel), 0, dst=image)
        cv2.add(image, self._noise_field(), dst=image, dtype=cv2.CV_8U)

    def _noise_field(self) -> npt.NDArray[np.int8]:
        """A window of one seeded Gaussian strip, at a random offset per frame.

        Deterministic for a seed and cheap: drawing 900k normals per frame would cost more than
        the rest of a render, and a bank of whole fields costs memory per camera (8 fields were
        7 MB at 640x480). The strip is one frame plus NOISE_OFFSETS values (1 MB), stored as
        int8 (clipped at +-127, 21 sigma at the default); every window is i.i.d. noise.
        """
        shape = (self.config.height, self.config.width, 3)
        size = shape[0] * shape[1] * shape[2]
        if not self._noise_strip.size:
            self._noise_strip = _noise_strip(self._noise_rng, size + NOISE_OFFSETS,
                                             self.config.noise_sigma)
        offset = int(self._noise_rng.integers(NOISE_OFFSETS))
        return self._noise_strip[offset:offset + size].reshape(shape)

    def _ground_truth(self, polygons: list[npt.NDArray[np.float64]]) -> GroundTruth:
        count = len(polygons)
        boxes = np.zeros((count, 4), np.float32)
        for i, polygon in enumerate(polygons):
            boxes[i] = (*polygon.min(axis=0), *polygon.max(axis=0))
        visible = _visible_fractions(polygons, boxes)
        return GroundTruth(
            boxes=boxes,
            class_ids=np.array([s.class_id for s in self._shapes], np.int64),
            difficult=visible < MIN_VISIBLE_FRACTION,
            object_ids=np.array([s.object_id for s in self._shapes], np.int64),
        )


def labelled_frames(seed: int, frames: int, frame_step: int = 1,
                    config: SceneConfig | None = None
                    ) -> Iterator[tuple[GroundTruth, npt.NDArray[np.uint8]]]:
    """(truth, BGR uint8 [H, W, 3] frame) for every `frame_step`-th frame of the scene `seed`,
    `frames` of them; the frames between are advanced without rendering (7x cheaper)."""
    scene = ShapeScene(seed=seed, config=config or SceneConfig())
    for _ in range(frames):
        for _ in range(frame_step - 1):
            scene.next_truth()
        image, truth = scene.next()
        yield truth, image


def _visible_fractions(polygons: list[npt.NDArray[np.float64]],
                       boxes: npt.NDArray[np.float32]) -> npt.NDArray[np.float64]:
    """Fraction of each shape's area not covered by shapes drawn after it."""
    fractions = np.ones(len(polygons))
    for i in range(len(polygons)):
        above = [j for j in range(i + 1, len(polygons)) if _boxes_overlap(boxes[i], boxes[j])]
        if not above:
            continue
        x0, y0 = np.floor(boxes[i, :2]).astype(int)
        x1, y1 = np.ceil(boxes[i, 2:]).astype(int) + 1
        mask = np.zeros((y1 - y0, x1 - x0), np.uint8)
        offset = np.array([x0, y0])
        cv2.fillPoly(mask, [np.round(polygons[i] - offset).astype(np.int32)], 1)
        area = int(mask.sum())
        for j in above:
            cv2.fillPoly(mask, [np.round(polygons[j] - offset).astype(np.int32)], 0)
        fractions[i] = mask.sum() / max(area, 1)
    return fractions


def _boxes_overlap(a: npt.NDArray[np.float32], b: npt.NDArray[np.float32]) -> bool:
    return bool(a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3])


def _noise_strip(rng: np.random.Generator, size: int, sigma: float,
                 chunk: int = 1 << 16) -> npt.NDArray[np.int8]:
    """`size` Gaussian values (sigma in grey levels) rounded and clipped to int8, drawn a chunk
    at a time: one float64 draw of a whole strip would be a 7 MB temporary per camera."""
    strip = np.empty(size, np.int8)
    values = np.empty(chunk, np.float32)
    for begin in range(0, size, chunk):
        part = values[:min(chunk, size - begin)]
        rng.standard_normal(out=part, dtype=np.float32)
        part *= sigma
        np.clip(np.round(part, out=part), -127, 127, out=part)
        strip[begin:begin + part.size] = part
    return strip


def _textured_background(rng: np.random.Generator, width: int,
                         height: int) -> npt.NDArray[np.uint8]:
    """Low-saturation clutter: multi-scale noise, stripes and blobs, so shapes are not trivially
    separable by colour alone."""
    base = np.full((height, width), 110.0, np.float32)
    for cells, weight in ((4, 35.0), (16, 20.0), (64, 10.0)):
        coarse = rng.normal(0, 1, (cells * height // width + 1, cells)).astype(np.float32)
        base += weight * cv2.resize(coarse, (width, height), interpolation=cv2.INTER_CUBIC)
    tint = rng.uniform(0.8, 1.2, 3).astype(np.float32)
    # Channel by channel: a float [H, W, 3] temporary would be 3.7 MB per camera at start-up.
    background = np.empty((height, width, 3), np.uint8)
    for channel in range(3):
        background[..., channel] = np.clip(base * tint[channel], 0, 255)
    for _ in range(int(rng.integers(4, 10))):
        p1 = rng.integers(0, [width, height])
        p2 = rng.integers(0, [width, height])
        grey = int(rng.uniform(40, 200))
        cv2.line(background, (int(p1[0]), int(p1[1])), (int(p2[0]), int(p2[1])),
                 (grey, grey, grey), int(rng.integers(1, 6)))
    return background

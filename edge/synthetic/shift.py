"""Scene shifts for the synthetic camera, so drift monitoring is testable end to end.

`dark` (night: a quarter of the light), `covered` (a covered lens: nearly black, no contrast),
`noise` (a failing sensor: heavy Gaussian noise), `shape` (objects the model was never
trained on: hexagons), `grey` (a camera in night mode: no colour), `swap` (red and blue
swapped, a pixel-format mix-up) and `turned` (a camera knocked a quarter-turn round, its
picture squeezed back into the frame). Applied after the scene renders, from frame `after` on;
the ground truth is unchanged (hexagons are not among the labels; the boxes of a turned scene
are not turned).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import cv2
import numpy as np
import numpy.typing as npt

SHIFTS = ("dark", "covered", "noise", "shape", "grey", "swap", "turned")
NOISE_SIGMA = 40.0


@dataclass
class SceneShift:
    kind: str
    after: int = 0  # the first shifted frame index is after + 1
    _noise: list[npt.NDArray[np.int16]] = field(default_factory=list, repr=False)

    def __post_init__(self) -> None:
        if self.kind not in SHIFTS:
            raise ValueError(f"unknown shift {self.kind!r}; use one of {', '.join(SHIFTS)}")

    def apply(self, image: npt.NDArray[np.uint8], frame_index: int) -> None:
        """Shift `image` (BGR uint8 [H, W, 3]) in place when `frame_index` is past `after`."""
        if frame_index <= self.after:
            return
        if self.kind == "dark":
            cv2.convertScaleAbs(image, dst=image, alpha=0.25, beta=0.0)
        elif self.kind == "covered":
            cv2.convertScaleAbs(image, dst=image, alpha=0.02, beta=4.0)
        elif self.kind == "noise":
            cv2.add(image, self._noise_field(image.shape, frame_index), dst=image,
                    dtype=cv2.CV_8U)
        elif self.kind == "grey":
            cv2.cvtColor(cv2.cvtColor(image, cv2.COLOR_BGR2GRAY), cv2.COLOR_GRAY2BGR, dst=image)
        elif self.kind == "swap":
            image[:] = image[:, :, ::-1].copy()
        elif self.kind == "turned":
            height, width = image.shape[:2]
            image[:] = cv2.resize(cv2.rotate(image, cv2.ROTATE_90_CLOCKWISE), (width, height))
        else:
            _draw_hexagons(image, frame_index)

    def _noise_field(self, shape: tuple[int, ...], frame_index: int) -> npt.NDArray[np.int16]:
        if not self._noise or self._noise[0].shape != shape:
            rng = np.random.default_rng(2024)
            self._noise = [np.round(rng.normal(0, NOISE_SIGMA, shape)).astype(np.int16)
                           for _ in range(4)]
        return self._noise[frame_index % len(self._noise)]


def _draw_hexagons(image: npt.NDArray[np.uint8], frame_index: int) -> None:
    height, width = image.shape[:2]
    for k in range(3):
        t = frame_index / (40.0 + 13 * k)
        centre = (width * (0.5 + 0.35 * math.sin(t + 2 * k)),
                  height * (0.5 + 0.35 * math.cos(1.3 * t + k)))
        radius = 30 + 12 * k
        angles = np.arange(6) * math.pi / 3 + t
        points = np.stack([centre[0] + radius * np.cos(angles),
                           centre[1] + radius * np.sin(angles)], axis=1)
        colour = ((60 + 70 * k) % 256, 200, (220 - 50 * k) % 256)
        cv2.fillPoly(image, [np.round(points).astype(np.int32)], colour, lineType=cv2.LINE_AA)

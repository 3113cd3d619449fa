"""Constant-velocity Kalman filter over boxes, as in SORT and ByteTrack.

State per track: centre x, centre y, aspect ratio (w / h), height, and their velocities (8
values). Noise scales with the box height, so a large near object and a small far one are
equally certain in relative terms; that is why the noise is not a constant.

The motion model moves each quantity by its own velocity, and every noise matrix is diagonal,
so the 8x8 covariance is four independent 2x2 blocks (a quantity and its velocity) for ever.
The filter keeps just those blocks, [T, 4] arrays of (var, cov, var_velocity), and runs as a
dozen element-wise numpy operations per frame instead of batched 8x8 products and solves: the
same numbers, a fraction of the per-frame cost.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

Vector = npt.NDArray[np.float64]

#: Process noise per unit of box height: position and velocity.
STD_POSITION = 1.0 / 20
STD_VELOCITY = 1.0 / 160

# Standard deviations as (per unit of height, constant) per state: the aspect ratio's noise is
# a constant, everything else scales with the box height.
_P, _V = STD_POSITION, STD_VELOCITY
_START = (np.array([2 * _P, 2 * _P, 0, 2 * _P]), np.array([0, 0, 1e-2, 0]))
_START_VELOCITY = (np.array([10 * _V, 10 * _V, 0, 10 * _V]), np.array([0, 0, 1e-5, 0]))
_PROCESS = (np.array([_P, _P, 0, _P]), np.array([0, 0, 1e-2, 0]))
_PROCESS_VELOCITY = (np.array([_V, _V, 0, _V]), np.array([0, 0, 1e-5, 0]))
_MEASURE = (np.array([_P, _P, 0, _P]), np.array([0, 0, 1e-1, 0]))


def _variance(height: Vector, std: tuple[Vector, Vector]) -> Vector:
    """[K] heights -> [K, S] variances of the S states `std` describes."""
    scaled: Vector = (height[:, None] * std[0] + std[1]) ** 2
    return scaled


def xyah_from_xyxy(boxes: npt.NDArray[np.floating]) -> Vector:
    """[K, 4] x1 y1 x2 y2 -> [K, 4] centre x, centre y, width / height, height."""
    b = np.asarray(boxes, np.float64)
    width, height = b[:, 2] - b[:, 0], np.maximum(b[:, 3] - b[:, 1], 1e-6)
    return np.stack([(b[:, 0] + b[:, 2]) / 2, (b[:, 1] + b[:, 3]) / 2, width / height, height],
                    axis=1)


def xyxy_from_xyah(xyah: Vector) -> Vector:
    """Inverse of `xyah_from_xyxy`, [K, 4] -> [K, 4]."""
    width = xyah[:, 2] * xyah[:, 3]
    half = np.stack([width / 2, xyah[:, 3] / 2], axis=1)
    return np.concatenate([xyah[:, :2] - half, xyah[:, :2] + half], axis=1)


class KalmanBoxes:
    """Every track's state: `mean` [T, 8] (x, y, a, h, then their velocities) and the 2x2
    covariance blocks `var` [T, 4], `cov` [T, 4], `var_velocity` [T, 4] (see the module
    docstring), predicted and corrected for all tracks at once."""

    def __init__(self) -> None:
        self.mean: Vector = np.zeros((0, 8))
        self.var: Vector = np.zeros((0, 4))
        self.cov: Vector = np.zeros((0, 4))
        self.var_velocity: Vector = np.zeros((0, 4))

    def __len__(self) -> int:
        return int(self.mean.shape[0])

    def add(self, measurement: Vector) -> None:
        """Start tracks at `measurement` [K, 4] xyah with zero velocity."""
        height = measurement[:, 3]
        start = np.concatenate([measurement, np.zeros_like(measurement)], axis=1)
        self.mean = np.concatenate([self.mean, start])
        self.var = np.concatenate([self.var, _variance(height, _START)])
        self.cov = np.concatenate([self.cov, np.zeros_like(measurement)])
        self.var_velocity = np.concatenate([self.var_velocity,
                                            _variance(height, _START_VELOCITY)])

    def keep(self, mask: npt.NDArray[np.bool_]) -> None:
        self.mean, self.var = self.mean[mask], self.var[mask]
        self.cov, self.var_velocity = self.cov[mask], self.var_velocity[mask]

    def predict(self) -> None:
        """Advance every track by one frame: x += v; P = F P F' + Q per block."""
        if not len(self):
            return
        height = self.mean[:, 3].copy()  # the noise scales with the height before the step
        self.mean[:, :4] += self.mean[:, 4:]
        self.var += 2 * self.cov + self.var_velocity + _variance(height, _PROCESS)
        self.cov += self.var_velocity
        self.var_velocity += _variance(height, _PROCESS_VELOCITY)

    def update(self, rows: npt.NDArray[np.intp], measurement: Vector) -> None:
        """Correct tracks `rows` [M] with their matched measurements [M, 4] xyah."""
        if not len(rows):
            return
        mean, var, cov = self.mean[rows], self.var[rows], self.cov[rows]
        innovation_var = var + _variance(mean[:, 3], _MEASURE)
        gain, gain_velocity = var / innovation_var, cov / innovation_var
        innovation = measurement - mean[:, :4]
        mean[:, :4] += gain * innovation
        mean[:, 4:] += gain_velocity * innovation
        self.mean[rows] = mean
        self.var[rows] = (1 - gain) * var
        self.cov[rows] = (1 - gain) * cov
        self.var_velocity[rows] -= gain_velocity * cov

    def boxes(self) -> Vector:
        """Predicted boxes [T, 4] x1 y1 x2 y2."""
        return xyxy_from_xyah(self.mean[:, :4])

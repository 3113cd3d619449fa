"""Constant-velocity Kalman filter over boxes, as in SORT and ByteTrack.

State per track: centre x, centre y, aspect ratio (w / h), height, and their velocities (8
values). Noise scales with the box height, so a large near object and a small far one are
equally certain in relative terms; that is why the noise is not a constant.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

Vector = npt.NDArray[np.float64]

#: Process noise per unit of box height: position and velocity.
STD_POSITION = 1.0 / 20
STD_VELOCITY = 1.0 / 160

_MOTION = np.eye(8)
_MOTION[:4, 4:] = np.eye(4)  # x' = x + v (one frame)
_DIAG4, _DIAG8 = np.arange(4), np.arange(8)


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
    """Means [T, 8] and covariances [T, 8, 8] of every track, predicted and corrected together
    (one numpy call per step however many tracks there are)."""

    def __init__(self) -> None:
        self.mean: Vector = np.zeros((0, 8))
        self.covariance: Vector = np.zeros((0, 8, 8))

    def __len__(self) -> int:
        return int(self.mean.shape[0])

    def add(self, measurement: Vector) -> None:
        """Start tracks at `measurement` [K, 4] xyah with zero velocity."""
        mean = np.concatenate([measurement, np.zeros_like(measurement)], axis=1)
        height = measurement[:, 3]
        std = np.stack([2 * STD_POSITION * height, 2 * STD_POSITION * height,
                        np.full_like(height, 1e-2), 2 * STD_POSITION * height,
                        10 * STD_VELOCITY * height, 10 * STD_VELOCITY * height,
                        np.full_like(height, 1e-5), 10 * STD_VELOCITY * height], axis=1)
        covariance = np.zeros((len(height), 8, 8))
        covariance[:, _DIAG8, _DIAG8] = std ** 2
        self.mean = np.concatenate([self.mean, mean])
        self.covariance = np.concatenate([self.covariance, covariance])

    def keep(self, mask: npt.NDArray[np.bool_]) -> None:
        self.mean, self.covariance = self.mean[mask], self.covariance[mask]

    def predict(self) -> None:
        """Advance every track by one frame."""
        if not len(self):
            return
        height = self.mean[:, 3]
        std = np.stack([STD_POSITION * height, STD_POSITION * height, np.full_like(height, 1e-2),
                        STD_POSITION * height, STD_VELOCITY * height, STD_VELOCITY * height,
                        np.full_like(height, 1e-5), STD_VELOCITY * height], axis=1)
        self.mean = self.mean @ _MOTION.T
        self.covariance = _MOTION @ self.covariance @ _MOTION.T
        self.covariance[:, _DIAG8, _DIAG8] += std ** 2

    def update(self, rows: npt.NDArray[np.intp], measurement: Vector) -> None:
        """Correct tracks `rows` [M] with their matched measurements [M, 4] xyah."""
        if not len(rows):
            return
        mean, covariance = self.mean[rows], self.covariance[rows]
        height = mean[:, 3]
        std = np.stack([STD_POSITION * height, STD_POSITION * height, np.full_like(height, 1e-1),
                        STD_POSITION * height], axis=1)
        projected = covariance[:, :4, :4].copy()
        projected[:, _DIAG4, _DIAG4] += std ** 2
        cross = covariance[:, :, :4]  # covariance @ H.T, H selecting the first four states
        gain = np.linalg.solve(projected, cross.transpose(0, 2, 1)).transpose(0, 2, 1)
        innovation = measurement - mean[:, :4]
        self.mean[rows] = mean + np.einsum("mij,mj->mi", gain, innovation)
        self.covariance[rows] = covariance - gain @ projected @ gain.transpose(0, 2, 1)

    def boxes(self) -> Vector:
        """Predicted boxes [T, 4] x1 y1 x2 y2."""
        return xyxy_from_xyah(self.mean[:, :4])

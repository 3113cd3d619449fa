"""The one detections type, shared by postprocess, publisher, subscribers and metrics."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt


@dataclass(frozen=True)
class Detections:
    """Detections of one frame.

    Attributes:
        boxes: float32 [K, 4], x1 y1 x2 y2 in source-frame pixels.
        scores: float32 [K], 0..1.
        class_ids: int64 [K], indices into the model's labels.
    """

    boxes: npt.NDArray[np.float32]
    scores: npt.NDArray[np.float32]
    class_ids: npt.NDArray[np.int64]

    def __post_init__(self) -> None:
        count = self.scores.shape[0]
        if self.boxes.shape != (count, 4) or self.class_ids.shape != (count,):
            raise ValueError(
                f"inconsistent detections: boxes {self.boxes.shape}, scores {self.scores.shape}, "
                f"class_ids {self.class_ids.shape}")

    def __len__(self) -> int:
        return int(self.scores.shape[0])

    @classmethod
    def empty(cls) -> Detections:
        return cls(np.zeros((0, 4), np.float32), np.zeros(0, np.float32), np.zeros(0, np.int64))

    def to_payload(self, labels: Sequence[str],
                   track_ids: npt.NDArray[np.int64] | None = None) -> list[dict[str, Any]]:
        """JSON-ready list per MQTT contract v1 (boxes rounded to 0.1 px, scores to 1e-4);
        with `track_ids` (int64 [K], 0: not tracked) each item also has its `track_id`."""
        items = [
            {
                "label": labels[int(c)] if 0 <= int(c) < len(labels) else str(int(c)),
                "class_id": int(c),
                "score": round(float(s), 4),
                "box": [round(float(v), 1) for v in box],
            }
            for box, s, c in zip(self.boxes, self.scores, self.class_ids, strict=True)
        ]
        if track_ids is not None:
            for item, track_id in zip(items, track_ids.tolist(), strict=True):
                item["track_id"] = track_id
        return items

    @classmethod
    def from_payload(cls, items: Sequence[dict[str, Any]]) -> Detections:
        """Inverse of `to_payload`, for subscribers."""
        if not items:
            return cls.empty()
        return cls(
            np.array([item["box"] for item in items], np.float32).reshape(-1, 4),
            np.array([item["score"] for item in items], np.float32),
            np.array([item["class_id"] for item in items], np.int64),
        )

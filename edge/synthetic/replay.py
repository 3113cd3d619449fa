"""Score detections of a synthetic camera by replaying its scene from the seed.

The subscriber needs nothing from the daemon but the detection messages: frame ids are scene
frame indices, so `ShapeScene.next_truth` regenerates each frame's ground truth cheaply.
"""

from __future__ import annotations

from edge.detections import Detections
from edge.metrics import DetectionScorer
from edge.synthetic.scene import SHAPE_LABELS, SceneConfig, ShapeScene


class ReplayScorer:
    """Feed `add(frame_id, detections)` in increasing frame order."""

    def __init__(self, seed: int, config: SceneConfig | None = None,
                 iou_threshold: float = 0.5) -> None:
        self._scene = ShapeScene(seed=seed, config=config or SceneConfig())
        self.scorer = DetectionScorer(len(SHAPE_LABELS), (iou_threshold,))
        self.frames = 0
        self.out_of_order = 0

    def add(self, frame_id: int, detections: Detections) -> None:
        if frame_id <= self._scene.frame_index:
            self.out_of_order += 1  # a redelivered (at-least-once) or reordered message
            return
        while self._scene.frame_index < frame_id:
            truth = self._scene.next_truth()
        self.scorer.add(detections, truth.boxes, truth.class_ids, truth.difficult)
        self.frames += 1

    def precision_recall(self) -> tuple[float, float]:
        return self.scorer.precision_recall()

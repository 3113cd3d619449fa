"""Detection accuracy against ground truth: precision, recall and COCO-style AP.

Objects marked difficult (COCO's crowd regions, `iscrowd`) are neither required nor penalised,
and are matched as COCOeval matches them (`match_frame`), so figures agree with pycocotools'.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from edge.detections import Detections
from edge.postprocess import box_areas, intersection_areas, iou_matrix

#: COCO's 101 recall points for interpolated precision.
RECALL_POINTS = np.linspace(0.0, 1.0, 101)


def match_frame(detections: Detections, gt_boxes: npt.NDArray[np.float32],
                gt_class_ids: npt.NDArray[np.int64], gt_difficult: npt.NDArray[np.bool_],
                iou_threshold: float) -> npt.NDArray[np.int8]:
    """Label each detection 1 (true positive), 0 (false positive) or -1 (ignored: it fell on a
    difficult object). Detections are matched greedily in descending score order, as COCOeval
    matches them: each to the unmatched object of its class it overlaps best, by IoU at least
    `iou_threshold`; one that matches none is ignored where at least that share of it lies
    inside a difficult object of its class (a crowd region holds many objects, so it takes any
    number of detections, each measured against its own area rather than the union)."""
    outcome = np.zeros(len(detections), np.int8)
    if len(detections) == 0 or len(gt_class_ids) == 0:
        return outcome
    other_class = detections.class_ids[:, None] != gt_class_ids[None, :]
    ious = iou_matrix(detections.boxes, gt_boxes)
    ious[other_class] = 0.0
    inside = np.zeros_like(ious)
    if gt_difficult.any():
        inside = (intersection_areas(detections.boxes, gt_boxes) / np.maximum(
            box_areas(detections.boxes), 1e-9)[:, None]).astype(np.float32)
        inside[other_class] = 0.0
    regular = ~gt_difficult
    taken = np.zeros(len(gt_class_ids), bool)
    for d in np.argsort(-detections.scores, kind="stable"):
        candidates = np.where(regular & ~taken & (ious[d] >= iou_threshold), ious[d], -1.0)
        best = int(candidates.argmax())
        if candidates[best] >= 0:
            taken[best] = True
            outcome[d] = 1
        elif (gt_difficult & (inside[d] >= iou_threshold)).any():
            outcome[d] = -1
    return outcome


@dataclass
class DetectionScorer:
    """Accumulates matches over frames; reports precision, recall and AP per IoU threshold."""

    num_classes: int
    iou_thresholds: tuple[float, ...] = (0.5,)
    _scores: list[npt.NDArray[np.float32]] = field(default_factory=list)
    _classes: list[npt.NDArray[np.int64]] = field(default_factory=list)
    _outcomes: list[npt.NDArray[np.int8]] = field(default_factory=list)  # [K, T]
    _gt_counts: npt.NDArray[np.int64] = field(init=False)

    def __post_init__(self) -> None:
        self._gt_counts = np.zeros(self.num_classes, np.int64)

    def add(self, detections: Detections, gt_boxes: npt.NDArray[np.float32],
            gt_class_ids: npt.NDArray[np.int64],
            gt_difficult: npt.NDArray[np.bool_] | None = None) -> None:
        difficult = np.zeros(len(gt_class_ids), bool) if gt_difficult is None else gt_difficult
        self._gt_counts += np.bincount(gt_class_ids[~difficult], minlength=self.num_classes)
        outcomes = [match_frame(detections, gt_boxes, gt_class_ids, difficult, t)
                    for t in self.iou_thresholds]
        self._scores.append(detections.scores)
        self._classes.append(detections.class_ids)
        self._outcomes.append(np.stack(outcomes, axis=1) if outcomes else np.zeros((0, 0), np.int8))

    def _collected(self) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.int64],
                                  npt.NDArray[np.int8]]:
        if not self._scores:
            return (np.zeros(0, np.float32), np.zeros(0, np.int64),
                    np.zeros((0, len(self.iou_thresholds)), np.int8))
        return (np.concatenate(self._scores), np.concatenate(self._classes),
                np.concatenate(self._outcomes))

    def precision_recall(self, iou_index: int = 0) -> tuple[float, float]:
        """Precision and recall of everything added (at the detector's own score threshold)."""
        true_pos, counted, total_gt = self.counts(iou_index)
        precision = true_pos / counted if counted else (1.0 if total_gt == 0 else 0.0)
        recall = true_pos / total_gt if total_gt else 1.0
        return precision, recall

    def counts(self, iou_index: int = 0) -> tuple[int, int, int]:
        """(true positives, detections counted, ground-truth objects) of everything added:
        what precision and recall are ratios of (difficult objects and the detections matched
        to them count in neither)."""
        _, _, outcomes = self._collected()
        column = outcomes[:, iou_index] if outcomes.size else np.zeros(0, np.int8)
        return int((column == 1).sum()), int((column >= 0).sum()), int(self._gt_counts.sum())

    def average_precision(self) -> npt.NDArray[np.float64]:
        """AP [num_classes, num_iou_thresholds], COCO 101-point interpolation; NaN for classes
        with no ground truth."""
        scores, classes, outcomes = self._collected()
        ap = np.full((self.num_classes, len(self.iou_thresholds)), np.nan)
        for c in range(self.num_classes):
            if self._gt_counts[c] == 0:
                continue
            mine = classes == c
            order = np.argsort(-scores[mine], kind="stable")
            for t in range(len(self.iou_thresholds)):
                column = outcomes[mine, t][order]
                column = column[column >= 0]
                ap[c, t] = _interpolated_ap(column == 1, int(self._gt_counts[c]))
        return ap

    def mean_average_precision(self) -> float:
        """mAP averaged over classes and IoU thresholds (0.0 when nothing was added)."""
        ap = self.average_precision()
        return float(np.nanmean(ap)) if np.isfinite(ap).any() else 0.0


def _interpolated_ap(is_true_positive: npt.NDArray[np.bool_], num_gt: int) -> float:
    if is_true_positive.size == 0:
        return 0.0
    true_pos = np.cumsum(is_true_positive)
    recall = true_pos / num_gt
    precision = true_pos / np.arange(1, len(true_pos) + 1)
    # Precision envelope: best precision at this recall or any higher one.
    envelope = np.maximum.accumulate(precision[::-1])[::-1]
    index = np.searchsorted(recall, RECALL_POINTS, side="left")
    sampled = np.where(index < len(envelope), envelope[np.minimum(index, len(envelope) - 1)], 0.0)
    return float(sampled.mean())

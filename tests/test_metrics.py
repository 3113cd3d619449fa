from __future__ import annotations

import numpy as np
import pytest

from edge.detections import Detections
from edge.metrics import DetectionScorer, match_frame


def dets(boxes, scores, classes):
    return Detections(np.array(boxes, np.float32).reshape(-1, 4), np.array(scores, np.float32),
                      np.array(classes, np.int64))


GT_BOXES = np.array([[0, 0, 10, 10], [20, 20, 30, 30]], np.float32)
GT_CLASSES = np.array([0, 1], np.int64)


@pytest.mark.parametrize(
    ("detections", "difficult", "expected"),
    [
        (dets([[0, 0, 10, 10], [20, 20, 30, 30]], [0.9, 0.8], [0, 1]), [False, False], [1, 1]),
        (dets([[0, 0, 10, 10], [1, 0, 11, 10]], [0.9, 0.8], [0, 0]), [False, False], [1, 0]),
        (dets([[0, 0, 10, 10]], [0.9], [1]), [False, False], [0]),  # wrong class
        (dets([[0, 0, 4, 4]], [0.9], [0]), [False, False], [0]),  # IoU 0.16
        (dets([[20, 20, 30, 30]], [0.9], [1]), [False, True], [-1]),  # difficult: ignored
    ],
)
def test_match_frame(detections, difficult, expected):
    outcome = match_frame(detections, GT_BOXES, GT_CLASSES, np.array(difficult), 0.5)
    assert list(outcome) == expected


def test_precision_recall_and_ap_on_a_known_ranking():
    scorer = DetectionScorer(num_classes=1)
    truth = np.array([[0, 0, 10, 10], [20, 0, 30, 10], [40, 0, 50, 10]], np.float32)
    # ranked: TP, FP, TP; the third object is missed.
    found = dets([[0, 0, 10, 10], [60, 0, 70, 10], [20, 0, 30, 10]], [0.9, 0.8, 0.7], [0, 0, 0])
    scorer.add(found, truth, np.zeros(3, np.int64))
    precision, recall = scorer.precision_recall()
    assert precision == pytest.approx(2 / 3) and recall == pytest.approx(2 / 3)
    # Envelope: precision 1.0 up to recall 1/3, 2/3 up to recall 2/3, 0 beyond (101 points).
    points = np.linspace(0, 1, 101)
    expected = np.where(points <= 1 / 3, 1.0, np.where(points <= 2 / 3, 2 / 3, 0.0)).mean()
    assert scorer.mean_average_precision() == pytest.approx(expected)


def test_perfect_detections_score_one_and_empty_scorer_zero():
    scorer = DetectionScorer(num_classes=2, iou_thresholds=(0.5, 0.75))
    scorer.add(dets(GT_BOXES, [0.9, 0.8], GT_CLASSES), GT_BOXES, GT_CLASSES)
    assert scorer.mean_average_precision() == pytest.approx(1.0)
    assert DetectionScorer(num_classes=2).mean_average_precision() == 0.0

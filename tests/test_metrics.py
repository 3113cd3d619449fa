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


def test_a_crowd_region_takes_every_detection_mostly_inside_it_as_cocoeval_does():
    """A user check against pycocotools: a detection with IoU 0.474 with a crowd box but 65%
    of its area inside it was a false positive here, ignored by COCOeval; and a crowd region
    (many objects in one box) takes any number of detections."""
    crowd = np.array([[0, 0, 100, 100], [200, 0, 210, 10]], np.float32)
    classes = np.array([0, 0], np.int64)
    found = dets([[10, 10, 40, 40],      # inside the crowd: IoU 0.09, all of it inside
                  [50, 50, 80, 80],      # a second one inside the same crowd
                  [60, 60, 130, 130],    # 16 % inside: a false positive
                  [200, 0, 210, 10],     # the regular object: a true positive
                  [0, 0, 100, 100]],     # the crowd box itself
                 [0.9, 0.8, 0.7, 0.6, 0.5], [0, 0, 0, 0, 0])
    outcome = match_frame(found, crowd, classes, np.array([True, False]), 0.5)
    assert list(outcome) == [-1, -1, 0, 1, -1]
    # the case measured: crowd [221.3, 218.4, 67, 67] (x y w h), the detection 65 % inside
    box = np.array([[221.3, 218.4, 288.3, 285.4]], np.float32)
    near = dets([[243.0, 231.0, 311.0, 291.0]], [0.97], [0])
    assert list(match_frame(near, box, np.zeros(1, np.int64), np.array([True]), 0.5)) == [-1]
    assert list(match_frame(near, box, np.zeros(1, np.int64), np.array([False]), 0.5)) == [0]


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

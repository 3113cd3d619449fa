"""A detector head's values against what the device decodes, in every layout."""

from __future__ import annotations

import numpy as np
import pytest

from converters.errors import ConversionError
from converters.head_values import check_detector_values
from converters.heads import Head

ANCHORS = 50


def _head(layout: str, boxes: np.ndarray, scores: np.ndarray) -> np.ndarray:
    """One frame's output ([1, ...]) in `layout` from boxes [A, 4] and scores [A, C]."""
    rows = np.concatenate([boxes, scores], 1)[None]
    return rows.transpose(0, 2, 1) if layout == "anchor_free" else rows


def _boxes(scale: float) -> np.ndarray:
    return np.random.default_rng(0).uniform(0, 1, (ANCHORS, 4)) * scale


def _scores(low: float, high: float, columns: int = 2) -> np.ndarray:
    return np.random.default_rng(1).uniform(low, high, (ANCHORS, columns))


@pytest.mark.parametrize("layout", ["anchor_free", "anchor_free_transposed", "yolov5"])
def test_probabilities_and_pixel_boxes_pass_in_every_layout(layout):
    value = _head(layout, _boxes(320), _scores(0, 1, 3 if layout == "yolov5" else 2))
    check_detector_values("out", Head(layout, 2), value, 320, 320)  # type: ignore[arg-type]


@pytest.mark.parametrize("layout", ["anchor_free", "anchor_free_transposed", "yolov5"])
def test_logits_are_refused_in_every_layout(layout):
    scores = _scores(-6, 3, 3 if layout == "yolov5" else 2)
    if layout == "yolov5":
        scores[:, 0] = 0.5  # the objectness right: the class scores are the logits
    value = _head(layout, _boxes(320), scores)
    with pytest.raises(ConversionError, match=r"class scores run from -5\.\d+ to 2\.\d+"):
        check_detector_values("out", Head(layout, 2), value, 320, 320)  # type: ignore[arg-type]


def test_yolov5_objectness_is_held_to_the_same_range_and_named():
    """A user check: a raw objectness logit beside sigmoid class scores was told to put a
    sigmoid on the class scores."""
    scores = _scores(0, 1, 3)
    scores[7, 0] = 4.0  # the objectness column only
    with pytest.raises(ConversionError, match=r"output out's objectness \(column 4 of yolov5's "
                                              r"rows\) runs from 0\.\d+ to 4 on a test frame.*"
                                              r"Apply a sigmoid to the objectness"):
        check_detector_values("out", Head("yolov5", 2), _head("yolov5", _boxes(320), scores),
                              320, 320)


def test_a_sigmoids_rounding_past_one_is_not_a_logit():
    scores = _scores(0, 1)
    scores[0, 0], scores[1, 1] = 1.0004, -0.0004
    check_detector_values("out", Head("anchor_free", 2), _head("anchor_free", _boxes(320),
                                                                scores), 320, 320)


@pytest.mark.parametrize("layout", ["anchor_free", "anchor_free_transposed", "yolov5"])
def test_fractional_boxes_are_refused_with_the_sizes_to_multiply_by(layout):
    value = _head(layout, _boxes(1.0), _scores(0, 1, 3 if layout == "yolov5" else 2))
    with pytest.raises(ConversionError, match=r"multiply them by the input size \(640 for x and "
                                              r"w, 480 for y and h\)"):
        check_detector_values("out", Head(layout, 2), value, 480, 640)  # type: ignore[arg-type]


def test_boxes_not_checked_where_they_cannot_tell():
    """All-zero boxes (a blank frame through a head that outputs nothing), an input too small
    to tell fractions from pixels, and boxes edge decodes itself pass."""
    check_detector_values("out", Head("anchor_free", 2), _head("anchor_free", _boxes(0.0),
                                                                _scores(0, 1)), 320, 320)
    check_detector_values("out", Head("anchor_free", 2), _head("anchor_free", _boxes(1.0),
                                                                _scores(0, 1)), 16, 16)
    check_detector_values("out", Head("yolov5", 2), _head("yolov5", _boxes(1.0),
                                                           _scores(0, 1, 3)), 320, 320,
                          boxes_decoded_here=True)


def test_an_end_to_end_heads_scores_are_checked_and_its_boxes_are_not():
    rows = np.zeros((1, 10, 6))
    rows[0, :3] = [[10, 10, 50, 50, 0.9, 0], [5, 5, 9, 9, 0.5, 1], [0.1, 0.1, 0.5, 0.5, 0.3, 0]]
    check_detector_values("out", Head("end_to_end", 2), rows, 320, 320)
    rows[0, 0, 4] = 3.2
    with pytest.raises(ConversionError, match=r"class scores run from 0 to 3\.2"):
        check_detector_values("out", Head("end_to_end", 2), rows, 320, 320)


def test_a_classifier_is_not_checked():
    check_detector_values("out", Head("logits", 3), np.array([[-4.0, 9.0, 0.5]]), 224, 224)

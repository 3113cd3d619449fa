from __future__ import annotations

import itertools

import numpy as np
import pytest

from edge.errors import ModelError
from edge.postprocess import DetectionDecoder, iou_matrix, nms
from edge.preprocess import LetterboxGeometry
from edge.spec import InputSpec, ModelSpec, PostprocessSpec


def brute_force_nms(boxes, scores, class_ids, iou_threshold):
    """Independent reference: pairwise IoU by hand, greedy by score, per class."""
    def iou(a, b):
        w = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
        h = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
        inter = w * h
        union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
        return inter / union if union > 0 else 0.0

    kept = []
    for i in sorted(range(len(scores)), key=lambda k: (-scores[k], k)):
        if all(class_ids[i] != class_ids[j] or iou(boxes[i], boxes[j]) <= iou_threshold
               for j in kept):
            kept.append(i)
    return kept


CASES = list(itertools.product(range(8), (0.3, 0.5, 0.7)))


@pytest.mark.parametrize(("seed", "iou_threshold"), CASES)
def test_nms_matches_brute_force(seed, iou_threshold):
    rng = np.random.default_rng(seed)
    count = 60
    centres = rng.uniform(0, 200, (count, 2))
    sizes = rng.uniform(5, 60, (count, 2))
    boxes = np.concatenate([centres - sizes / 2, centres + sizes / 2], 1).astype(np.float32)
    scores = rng.uniform(0, 1, count).astype(np.float32)
    class_ids = rng.integers(0, 3, count).astype(np.int64)
    kept = nms(boxes, scores, class_ids, iou_threshold)
    assert list(kept) == brute_force_nms(boxes, scores, class_ids, iou_threshold)


def test_iou_matrix_known_values():
    a = np.array([[0, 0, 10, 10]], np.float32)
    b = np.array([[0, 0, 10, 10], [5, 0, 15, 10], [20, 20, 30, 30]], np.float32)
    np.testing.assert_allclose(iou_matrix(a, b), [[1.0, 50 / 150, 0.0]], rtol=1e-6)


def spec(head="anchor_free", labels=("a", "b")):
    return ModelSpec(task="detect", labels=labels, head=head, output="out",
                     input=InputSpec(name="images", width=320, height=320),
                     postprocess=PostprocessSpec(score_threshold=0.3, iou_threshold=0.5))


def raw_predictions():
    """Three anchors: two overlapping class-0 boxes and one class-1 box; cx cy w h in input px."""
    boxes = np.array([[100, 100, 40, 40], [102, 101, 40, 40], [200, 200, 20, 30]], np.float32)
    scores = np.array([[0.9, 0.1], [0.8, 0.05], [0.2, 0.6]], np.float32)
    return boxes, scores


@pytest.mark.parametrize("head", ["anchor_free", "anchor_free_transposed", "yolov5"])
def test_decoder_layouts_agree_and_map_boxes_to_source(head):
    boxes, scores = raw_predictions()
    if head == "anchor_free":
        prediction = np.concatenate([boxes, scores], 1).T
    elif head == "anchor_free_transposed":
        prediction = np.concatenate([boxes, scores], 1)
    else:  # objectness 1.0 keeps the class scores unchanged
        prediction = np.concatenate([boxes, np.ones((3, 1), np.float32), scores], 1)
    geometry = LetterboxGeometry.fit(640, 480, 320, 320)  # scale 0.5, 40 px bars on top
    found = DetectionDecoder(spec(head))(np.ascontiguousarray(prediction), geometry)
    assert list(found.class_ids) == [0, 1]
    np.testing.assert_allclose(found.scores, [0.9, 0.6])
    np.testing.assert_allclose(found.boxes[0], [160, 80, 240, 160])
    np.testing.assert_allclose(found.boxes[1], [380, 290, 420, 350])


def test_decoder_rejects_a_class_count_that_differs_from_the_labels():
    boxes, scores = raw_predictions()
    decoder = DetectionDecoder(spec(labels=("a", "b", "c")))
    with pytest.raises(ModelError, match="2 class columns but the spec lists 3"):
        decoder(np.concatenate([boxes, scores], 1).T, LetterboxGeometry.fit(320, 320, 320, 320))

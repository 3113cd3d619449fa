from __future__ import annotations

import cv2
import numpy as np

from edge.synthetic import SHAPE_LABELS, ShapeScene
from edge.synthetic.dataset import write_yolo_dataset


def test_same_seed_same_frames_and_truth():
    """Seeded scenes are fully reproducible: calibration sets and benchmarks repeat exactly."""
    a, b = ShapeScene(seed=9), ShapeScene(seed=9)
    for _ in range(30):
        (ia, ta), (ib, tb) = a.next(), b.next()
        np.testing.assert_array_equal(ta.boxes, tb.boxes)
        np.testing.assert_array_equal(ta.class_ids, tb.class_ids)
        np.testing.assert_array_equal(ia, ib)  # sensor noise is seeded too


def test_truth_boxes_are_tight_around_the_drawn_shapes():
    scene = ShapeScene(seed=2)
    for _ in range(20):
        truth = scene.next_truth()
        assert len(truth) >= scene.config.min_objects
        assert (truth.boxes[:, 2] > truth.boxes[:, 0]).all()
        assert (truth.boxes[:, :2] >= 0).all()
        assert (truth.boxes[:, 2] <= scene.config.width).all()
        assert (truth.boxes[:, 3] <= scene.config.height).all()
        assert set(truth.class_ids.tolist()) <= set(range(len(SHAPE_LABELS)))


def test_yolo_dataset_layout(tmp_path):
    objects = write_yolo_dataset(tmp_path, frames=4, seed=3)
    images = sorted((tmp_path / "images").iterdir())
    labels = sorted((tmp_path / "labels").iterdir())
    assert [p.stem for p in images] == [p.stem for p in labels] == [f"{i:06d}" for i in range(1, 5)]
    rows = [line.split() for p in labels for line in p.read_text().splitlines()]
    assert len(rows) == objects > 0
    for row in rows:
        assert int(row[0]) in range(len(SHAPE_LABELS))
        assert all(0 <= float(v) <= 1 for v in row[1:])
    assert (tmp_path / "classes.txt").read_text().split() == list(SHAPE_LABELS)
    assert cv2.imread(str(images[0])).shape == (480, 640, 3)


def test_labelled_frames_skip_rendering_but_keep_the_scene():
    """Every `frame_step`-th frame with its truth: the truth is the scene's own (as stepping
    with `next()`), and the first frame's pixels are those `next()` renders."""
    from edge.synthetic import labelled_frames

    rendered = ShapeScene(seed=4)
    for truth, image in labelled_frames(4, frames=6, frame_step=3):
        for _ in range(3):
            expected_image, expected = rendered.next()
        np.testing.assert_array_equal(truth.boxes, expected.boxes)
        np.testing.assert_array_equal(truth.class_ids, expected.class_ids)
        np.testing.assert_array_equal(truth.difficult, expected.difficult)
        assert image.shape == expected_image.shape and image.dtype == np.uint8
    _, first_image = next(labelled_frames(4, frames=1))
    np.testing.assert_array_equal(first_image, ShapeScene(seed=4).next()[0])

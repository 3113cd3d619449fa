"""Synthetic scenes with exact ground truth, for demos, training and end-to-end tests."""

from edge.synthetic.scene import (
    SHAPE_LABELS,
    GroundTruth,
    SceneConfig,
    ShapeScene,
    detects_the_scene,
    labelled_frames,
)

__all__ = ["SHAPE_LABELS", "GroundTruth", "SceneConfig", "ShapeScene", "detects_the_scene",
           "labelled_frames"]

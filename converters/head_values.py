"""Whether a detector head's values are what the device decodes: class scores as
probabilities (0..1) and boxes in input pixels.

Shapes alone accept a head whose scores are logits or whose boxes are fractions of the input;
it converts, and the daemon then publishes scores of 7.2 against a 0.25 threshold, or every box
under a pixel in the top-left corner (a user check). The source's own outputs tell both apart.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt

from converters.errors import ConversionError
from converters.heads import Head

#: How far past 0..1 a probability may stray (a float32 sigmoid of a large logit, a product
#: of two rounded ones).
SCORE_SLACK = 1e-3
#: A head whose boxes all stay under this many pixels on an input of at least
#: `FRACTION_CHECK_MIN_SIDE` writes them as fractions: a real head's anchor centres cross the
#: whole input, whatever the frame shows.
FRACTION_LIMIT = 1.5
FRACTION_CHECK_MIN_SIDE = 32


def check_detector_values(output: str, head: Head, value: npt.NDArray[Any], height: int,
                          width: int, boxes_decoded_here: bool = False) -> None:
    """Refuse a detector head whose `value` (the source's `output` on one frame, [N, ...] in
    the `head`'s layout) holds class scores outside 0..1 or, unless `boxes_decoded_here` (edge
    appends their decode itself), boxes that all lie within 0..1.5 of a `height` x `width`
    input."""
    if head.task != "detect":
        return
    boxes, objectness, scores = _columns(head, np.asarray(value, np.float64))
    if objectness is not None and not _probabilities(objectness):
        raise ConversionError(
            f"output {output}'s objectness (column 4 of {head.layout}'s rows) runs from "
            f"{objectness.min():.3g} to {objectness.max():.3g} on a test frame, but edge reads "
            "it as a probability (0..1), as the class scores after it: the network returns "
            "its logit. Apply a sigmoid to the objectness in its forward (as YOLOv5's Detect "
            "does at inference) and convert again")
    if not _probabilities(scores):
        raise ConversionError(
            f"output {output}'s class scores run from {scores.min():.3g} to {scores.max():.3g} "
            "on a test frame, but edge reads a detector's scores as probabilities (0..1). A "
            "network that returns logits needs a sigmoid on its class scores in its forward "
            "(as Ultralytics' Detect applies at inference); where values that are not class "
            "scores follow them (mask coefficients, keypoints), pass --labels with the class "
            "names alone")
    if boxes_decoded_here or boxes is None or min(height, width) < FRACTION_CHECK_MIN_SIDE:
        return
    reach = float(np.abs(boxes).max(initial=0.0))
    if 0.0 < reach <= FRACTION_LIMIT:
        raise ConversionError(
            f"output {output}'s boxes all lie within 0..{reach:.3g} on a test frame, so they "
            f"are fractions of the input, but edge reads a detector's boxes in input pixels "
            f"(cx cy w h, 0..{width} across): multiply them by the input size ({width} for x "
            f"and w, {height} for y and h) in the network's forward and convert again")


Values = npt.NDArray[np.float64]


def _probabilities(values: Values) -> bool:
    return not values.size or bool(values.min() >= -SCORE_SLACK
                                   and values.max() <= 1 + SCORE_SLACK)


def _columns(head: Head, value: Values) -> tuple[Values | None, Values | None, Values]:
    """The boxes, objectness (None but in a YOLOv5 head) and class scores of one run's `value`
    in the `head`'s layout (an end-to-end head's boxes are corners of final detections, zero
    in its empty rows: not checked)."""
    if head.layout == "anchor_free":  # [N, 4+nc, A]
        return value[:, :4], None, value[:, 4:]
    if head.layout == "anchor_free_transposed":  # [N, A, 4+nc]
        return value[..., :4], None, value[..., 4:]
    if head.layout == "yolov5":  # [N, A, 5+nc]: objectness, then the class scores
        return value[..., :4], value[..., 4], value[..., 5:]
    return None, None, value[..., 4]  # end_to_end: [N, K, 6], x1 y1 x2 y2 score class

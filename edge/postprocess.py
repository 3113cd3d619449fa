"""Decode detection heads and run class-aware non-maximum suppression."""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

import numpy as np
import numpy.typing as npt

from edge.detections import Detections
from edge.errors import ModelError
from edge.preprocess import LetterboxGeometry
from edge.spec import END_TO_END_COLUMNS, ModelSpec, PostprocessSpec

#: Candidates kept (by score) before NMS; bounds NMS cost on a noisy frame.
MAX_CANDIDATES = 1000

Array = npt.NDArray[np.float32]


def _anchor_free(pred: Array) -> tuple[Array, Array]:
    """[4+nc, A] -> cxcywh [A, 4], class scores [A, nc]."""
    return pred[:4].T, pred[4:].T


def _anchor_free_transposed(pred: Array) -> tuple[Array, Array]:
    """[A, 4+nc] -> cxcywh [A, 4], class scores [A, nc]."""
    return pred[:, :4], pred[:, 4:]


def _yolov5(pred: Array) -> tuple[Array, Array]:
    """[A, 5+nc] -> cxcywh [A, 4], objectness * class scores [A, nc]."""
    return pred[:, :4], pred[:, 5:] * pred[:, 4:5]


def _end_to_end(pred: Array) -> tuple[Array, Array]:
    """[K, 6] -> xyxy [K, 4], the score [K, 1] (the class index is read apart: see
    `DetectionDecoder`); for measuring a detector's boxes and scores apart."""
    return pred[:, :4], pred[:, 4:5]


#: Below this score an end-to-end head's rows are its tail: near-equal scores whose order any
#: rounding changes, so comparisons of two such outputs leave them out (`paired_rows`).
END_TO_END_TAIL = 0.01


def paired_rows(reference: Array, output: Array,
                floor: float = END_TO_END_TAIL) -> tuple[Array, Array, int]:
    """The rows of two end-to-end outputs ([K, 6] each: one image) that are one detection, as
    two aligned [M, 6] arrays, and how many of `reference`'s rows found no partner.

    Rows come ordered by score, and a tie breaks either way in two runs that round differently,
    so position says nothing: each `reference` row scoring above the tail (`floor`, and clear
    of either side's last row, which a tie can push out) is paired, best first, with the
    nearest unpaired `output` row of its class above the tail (largest coordinate or score
    difference)."""
    reference = reference.reshape(-1, END_TO_END_COLUMNS)
    output = output.reshape(-1, END_TO_END_COLUMNS)
    last = max(float(rows[:, 4].min(initial=np.inf)) for rows in (reference, output))
    cut = max(floor, last) + 1e-4  # clear of the ties at the cut
    chosen = reference[np.argsort(-reference[:, 4], kind="stable")]
    chosen = chosen[chosen[:, 4] > cut]
    free = output[:, 4] > cut - 2e-4  # partners from the tail would be no detection's
    pairs, unpaired = [], 0
    for row in chosen:
        candidates = np.flatnonzero(free & (np.rint(output[:, 5]) == np.rint(row[5])))
        if candidates.size == 0:
            unpaired += 1
            continue
        distance = np.abs(output[candidates] - row).max(axis=1)
        partner = candidates[int(np.argmin(distance))]
        free[partner] = False
        pairs.append((row, output[partner]))
    if not pairs:
        empty = np.zeros((0, END_TO_END_COLUMNS), np.float32)
        return empty, empty.copy(), unpaired
    return (np.stack([p[0] for p in pairs]), np.stack([p[1] for p in pairs]), unpaired)


#: How each detection layout's one-image output splits into boxes and scores.
HEAD_DECODERS: dict[str, Callable[[Array], tuple[Array, Array]]] = {
    "anchor_free": _anchor_free,
    "anchor_free_transposed": _anchor_free_transposed,
    "yolov5": _yolov5,
    "end_to_end": _end_to_end,
}


def intersection_areas(a: Array, b: Array) -> Array:
    """Area shared by every box in a [K, 4] with every box in b [M, 4] (x1 y1 x2 y2) -> [K, M]."""
    top_left = np.maximum(a[:, None, :2], b[None, :, :2])
    bottom_right = np.minimum(a[:, None, 2:], b[None, :, 2:])
    inter: Array = np.prod(np.clip(bottom_right - top_left, 0, None), axis=2)
    return inter


def box_areas(boxes: Array) -> Array:
    """Area of each box of [K, 4] (x1 y1 x2 y2) -> [K]."""
    areas: Array = np.prod(boxes[:, 2:] - boxes[:, :2], axis=1)
    return areas


def iou_matrix(a: Array, b: Array) -> Array:
    """IoU of every box in a [K, 4] with every box in b [M, 4] (x1 y1 x2 y2) -> [K, M]."""
    inter = intersection_areas(a, b)
    union = box_areas(a)[:, None] + box_areas(b)[None, :] - inter
    ious: Array = (inter / np.maximum(union, 1e-9)).astype(np.float32)
    return ious


def nms(boxes: Array, scores: Array, class_ids: npt.NDArray[np.int64],
        iou_threshold: float) -> npt.NDArray[np.int64]:
    """Greedy class-aware NMS; returns kept indices in descending score order.

    Boxes of different classes never suppress each other: each class is offset into its own
    region of the plane, so one IoU computation serves all classes.
    """
    if len(scores) == 0:
        return np.zeros(0, np.int64)
    span = float(boxes.max() - min(boxes.min(), 0.0)) + 1.0
    shifted = boxes + (class_ids.astype(np.float32) * span)[:, None]
    order = np.argsort(-scores, kind="stable")
    keep = []
    while order.size:
        best = order[0]
        keep.append(best)
        if order.size == 1:
            break
        overlaps = iou_matrix(shifted[best:best + 1], shifted[order[1:]])[0]
        order = order[1:][overlaps <= iou_threshold]
    return np.array(keep, np.int64)


def cxcywh_to_xyxy(boxes: Array) -> Array:
    half = boxes[:, 2:] / 2
    return np.concatenate([boxes[:, :2] - half, boxes[:, :2] + half], axis=1)


class Decoder(Protocol):
    def __call__(self, prediction: Array, geometry: LetterboxGeometry) -> Detections: ...


class ClassificationDecoder:
    """Classifier output -> the top classes as detections whose box is the whole frame.

    Keeps at most `max_detections` classes scoring at least `score_threshold` (probabilities;
    logits go through a softmax first)."""

    def __init__(self, spec: ModelSpec, settings: PostprocessSpec | None = None) -> None:
        if spec.head not in ("logits", "probabilities"):
            raise ModelError(f"head layout '{spec.head}' is not a classification layout")
        self._softmax = spec.head == "logits"
        self._num_classes = spec.num_classes
        self.settings = settings or spec.postprocess

    def __call__(self, prediction: Array, geometry: LetterboxGeometry) -> Detections:
        scores = prediction.astype(np.float32).reshape(-1)
        if scores.shape[0] != self._num_classes:
            raise ModelError(f"classifier output has {scores.shape[0]} classes but the spec lists "
                             f"{self._num_classes} labels; re-convert the model")
        if self._softmax:
            scores = np.exp(scores - scores.max())
            scores /= scores.sum()
        order = np.argsort(-scores, kind="stable")[: self.settings.max_detections]
        order = order[scores[order] >= self.settings.score_threshold]
        frame = np.array([0, 0, geometry.source_width, geometry.source_height], np.float32)
        return Detections(np.tile(frame, (len(order), 1)), scores[order].astype(np.float32),
                          order.astype(np.int64))


def decoder_from_spec(spec: ModelSpec, settings: PostprocessSpec | None = None) -> Decoder:
    """The decoder for the spec's task."""
    if spec.task == "classify":
        return ClassificationDecoder(spec, settings)
    return DetectionDecoder(spec, settings)


class DetectionDecoder:
    """Turns one image's raw head output into `Detections` in source-frame pixels."""

    def __init__(self, spec: ModelSpec, settings: PostprocessSpec | None = None) -> None:
        if spec.head not in HEAD_DECODERS:
            raise ModelError(
                f"head layout '{spec.head}' is not a detection layout; supported: "
                f"{', '.join(HEAD_DECODERS)}")
        self._split = HEAD_DECODERS[spec.head]
        self._end_to_end = spec.head == "end_to_end"
        self._num_classes = spec.num_classes
        self.settings = settings or spec.postprocess

    def __call__(self, prediction: Array, geometry: LetterboxGeometry) -> Detections:
        """`prediction` is one batch item of the model output (batch axis removed)."""
        if self._end_to_end:
            return self._suppressed_already(prediction, geometry)
        centres, class_scores = self._split(prediction)
        if class_scores.shape[1] != self._num_classes:
            raise ModelError(
                f"model output has {class_scores.shape[1]} class columns but the spec lists "
                f"{self._num_classes} labels; re-convert the model with matching labels")
        class_ids = class_scores.argmax(axis=1)
        scores = np.take_along_axis(class_scores, class_ids[:, None], axis=1)[:, 0]
        candidates = np.flatnonzero(scores >= self.settings.score_threshold)
        if candidates.size > MAX_CANDIDATES:
            top = np.argpartition(-scores[candidates], MAX_CANDIDATES)[:MAX_CANDIDATES]
            candidates = candidates[top]
        boxes = cxcywh_to_xyxy(centres[candidates].astype(np.float32))
        scores, class_ids = scores[candidates].astype(np.float32), class_ids[candidates]
        keep = nms(boxes, scores, class_ids, self.settings.iou_threshold)
        keep = keep[: self.settings.max_detections]
        return Detections(geometry.boxes_to_source(boxes[keep]), scores[keep],
                          class_ids[keep].astype(np.int64))

    def rows(self, prediction: Array) -> int:
        """How many candidate boxes `prediction` (one batch item) holds: its anchors, or an
        end-to-end head's rows."""
        if self._end_to_end:
            return prediction.size // END_TO_END_COLUMNS
        return len(self._split(prediction)[0])

    def _suppressed_already(self, rows: Array, geometry: LetterboxGeometry) -> Detections:
        """An `end_to_end` head's [K, 6] rows: the model chose them (no NMS here, which would
        drop its overlapping objects of one class); kept by score threshold and count."""
        rows = rows.reshape(-1, END_TO_END_COLUMNS)
        kept = np.flatnonzero(rows[:, 4] >= self.settings.score_threshold)
        kept = kept[np.argsort(-rows[kept, 4], kind="stable")[: self.settings.max_detections]]
        chosen = rows[kept].astype(np.float32, copy=False)  # one gather: a new array
        class_ids = np.rint(chosen[:, 5]).astype(np.int64)
        outside = class_ids[(class_ids < 0) | (class_ids >= self._num_classes)]
        if outside.size:
            raise ModelError(
                f"the model output class index {int(outside[0])}, but the spec lists "
                f"{self._num_classes} labels; re-convert the model with matching labels")
        return Detections(geometry.boxes_to_source(np.ascontiguousarray(chosen[:, :4])),
                          np.ascontiguousarray(chosen[:, 4]), class_ids)

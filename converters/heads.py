"""Recognise a model's output layout (its head) from the output shape and the label count."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from converters.errors import ConversionError
from edge.spec import END_TO_END_COLUMNS, HeadLayout

SUPPORTED = ("detect: [N, 4+nc, A] (Ultralytics v8/v11), [N, A, 4+nc] (transposed), "
             "[N, A, 5+nc] (YOLOv5 with objectness), [N, K, 6] (NMS-free end to end: YOLO26, "
             "YOLOv10, exports with nms=True; x1 y1 x2 y2 score class), GFL heads (PP-PicoDet: "
             "scores and box distributions per level, decoded into the graph); classify: [N, nc]")
#: What to do about a detector none of whose outputs edge decodes (a user check: the
#: refusal listed the layouts but gave no next step).
NO_DECODER = ("Those are the layouts edge decodes: export the network again with its boxes "
              "and scores decoded into one output of such a layout (grid, anchors and strides "
              "applied, as Ultralytics' and PaddleDetection's exporters write it), then "
              "convert that")
#: What to say of a model whose output is no head at all (a map, a sequence).
NOT_A_HEAD = "edge runs detectors and classifiers only, so this model cannot be converted"


@dataclass(frozen=True)
class Head:
    layout: HeadLayout
    num_classes: int

    @property
    def task(self) -> str:
        return "classify" if self.layout in ("logits", "probabilities") else "detect"


def head_from_shape(shape: Sequence[int | str | None], num_classes: int | None,
                    requested: HeadLayout | None = None, ends_in_softmax: bool = False,
                    final_detections: bool | None = None) -> Head:
    """Pick the head layout that fits `shape` ([N, ...], symbolic dims allowed except where the
    layout needs a number). With `requested` the layout is only checked. `final_detections`:
    whether the output's values look like an end-to-end head's (`looks_end_to_end`), which
    tells [N, K, 6] apart from two-class [N, A, 4+nc]; None: not known."""
    dims = [d if isinstance(d, int) and d > 0 else None for d in shape]
    candidates = [c for c in _candidates(dims, num_classes)
                  if final_detections is None or (c.layout == "end_to_end") == final_detections
                  or len(dims) != 3 or dims[2] != END_TO_END_COLUMNS]
    if requested is not None:
        if requested in ("logits", "probabilities") and len(dims) == 2:
            candidates = [Head(requested, c.num_classes) for c in candidates[:1]]
        candidates = [c for c in candidates if c.layout == requested]
    if not candidates and final_detections and num_classes is None:
        raise ConversionError(f"the output {list(shape)} holds final detections (end_to_end: "
                              "rows of x1 y1 x2 y2 score class, by score), whose class count "
                              "is not in its shape: pass --labels with the model's class names")
    if not candidates and len(dims) == 4 and requested is None:
        raise ConversionError(
            f"the output {list(shape)} is a map ([N, C, H, W]: segmentation, a text detector "
            f"such as DBNet, depth), not a head edge decodes into detections or classes: "
            f"{NOT_A_HEAD} (supported: {SUPPORTED})")
    if (not candidates and len(dims) == 3 and requested is None and dims[1] == 1
            and (dims[0] or 0) > 1):  # the source ran on one frame: axis 1 is the batch
        raise ConversionError(
            f"the output {list(shape)} looks like a sequence, time first ([T, N, C]: "
            f"{dims[0]} steps of {dims[2]} values, as a CTC text recogniser writes), not a "
            f"head edge decodes into detections or classes: {NOT_A_HEAD} (supported: "
            f"{SUPPORTED})")
    if not candidates:
        classes = f"{num_classes} classes" if num_classes is not None else "an unknown class count"
        raise ConversionError(
            f"the output shape {list(shape)} with {classes} fits no supported head"
            f"{f' of layout {requested!r}' if requested else ''}; supported: {SUPPORTED}. "
            "Check --labels, or pass --head")
    if len(candidates) > 1:
        names = ", ".join(c.layout for c in candidates)
        raise ConversionError(
            f"the output shape {list(shape)} fits several heads ({names}); pass --head to choose, "
            "or --labels so the class count decides")
    head = candidates[0]
    if head.layout == "logits" and ends_in_softmax and requested is None:
        return Head("probabilities", head.num_classes)
    return head


def looks_end_to_end(output: npt.NDArray[Any]) -> bool:
    """Whether `output` ([N, K, 6] from a run of the source) holds final detections: rows by
    descending score (column 4) and whole class indices (column 5), where a [N, A, 4+2] head
    holds a second class's scores, strictly between 0 and 1."""
    if output.ndim != 3 or output.shape[2] != END_TO_END_COLUMNS or output.shape[1] < 2:
        return False
    scores, classes = output[..., 4], output[..., 5]
    return bool(scores.max() > scores.min()  # all equal (saturated, say): nothing to tell by
                and np.all(np.diff(scores, axis=1) <= 0) and np.all(classes == np.round(classes))
                and classes.min() >= 0)


def _candidates(dims: list[int | None], nc: int | None) -> list[Head]:
    if len(dims) == 2 and dims[1] is not None:
        fits = nc is None or dims[1] == nc
        return [Head("logits", dims[1])] if fits else []
    if len(dims) != 3 or dims[1] is None or dims[2] is None:
        return []
    rows, columns = dims[1], dims[2]
    found = []
    if (nc is None and columns > rows > 4) or rows == 4 + (nc if nc is not None else -99):
        found.append(Head("anchor_free", rows - 4))
    if nc is None:
        if rows > columns > 4:  # [N, A, C]: transposed or YOLOv5 cannot be told apart
            found += [Head("anchor_free_transposed", columns - 4), Head("yolov5", columns - 5)]
    else:
        if columns == 4 + nc:
            found.append(Head("anchor_free_transposed", nc))
        if columns == 5 + nc:
            found.append(Head("yolov5", nc))
        if columns == END_TO_END_COLUMNS:  # any class count: the class is one column
            found.append(Head("end_to_end", nc))
    return [h for h in found if h.num_classes > 0]

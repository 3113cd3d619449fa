"""Which of a camera's detections it reports: `[objects]` (labels, per-label minimum score and
box area) and the camera's masks, as Frigate's object filters and masks.

A COCO detector on a doorstep camera finds chairs and potted plants as readily as people, and
a tree that sways in a corner of the view makes objects of its own; every one of them was
published, tracked, counted and sampled. A detection the filter drops is dropped right after
inference: no detections message, track, event, count or sample has it. The drift monitor
still sees it, since it watches the model, whose reference was profiled unfiltered.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from edge.detections import Detections
from edge.errors import ConfigError
from edge.objects_config import MaskConfig, ObjectsConfig
from edge.wording import not_labels_of_the_model
from edge.zones import anchor_points, checked_outline, polygon_contains


@dataclass(frozen=True)
class Mask:
    """A polygon [V, 2] in pixels, or in 0..1 of the frame when `normalised`; `class_ids`:
    the classes it drops (None: every class)."""

    polygon: npt.NDArray[np.float64]
    normalised: bool
    class_ids: frozenset[int] | None

    def drops(self, points: npt.NDArray[np.float64], class_ids: npt.NDArray[np.int64],
              width: int, height: int) -> npt.NDArray[np.bool_]:
        """Whether each anchor point [K, 2] of a `width` x `height` frame lies in the mask and
        its class is one the mask drops -> bool [K]."""
        polygon = self.polygon * (width, height) if self.normalised else self.polygon
        inside = polygon_contains(polygon, points)
        if self.class_ids is not None:
            inside &= np.isin(class_ids, list(self.class_ids))
        return inside


class ObjectFilter:
    """Built once per camera; `keep(detections, width, height)` per frame."""

    def __init__(self, camera: str, objects: ObjectsConfig, masks: Sequence[MaskConfig],
                 labels: Sequence[str], key: str = "objects") -> None:
        """`key`: where the camera's `objects` come from, as its errors name it. Raises
        ConfigError for a label the model lacks and for a mask `checked_outline` refuses."""
        def class_ids(names: Sequence[str], where: str) -> list[int]:
            unknown = [name for name in names if name not in labels]
            if unknown:
                raise ConfigError(f"camera {camera!r}, {where}: "
                                  f"{not_labels_of_the_model(unknown, labels)}")
            return [labels.index(name) for name in names]

        # one slot a class, and a last for a class id beyond the labels: reported unless
        # `labels` names those reported, with no score or area limit
        count = len(labels)
        self.reported = np.ones(count + 1, bool)
        if objects.labels:
            self.reported[:] = False
            self.reported[class_ids(objects.labels, f"{key}.labels")] = True
        self.min_score = np.zeros(count + 1, np.float32)
        self.min_area, self.max_area = np.zeros(count + 1), np.ones(count + 1)
        for name, rule in objects.filters.items():
            (index,) = class_ids([name], f"{key}.filters")
            self.min_score[index] = rule.min_score or 0.0
            self.min_area[index], self.max_area[index] = rule.min_area, rule.max_area
        self.masks = [
            Mask(checked_outline(f"camera {camera!r}, masks.{i}", mask.points, mask.units),
                 mask.units == "normalised",
                 frozenset(class_ids(mask.labels, f"masks.{i}.labels")) or None)
            for i, mask in enumerate(masks)]
        self.active = bool(objects.labels or objects.filters or masks)
        self.dropped = 0  # detections dropped so far

    def reports(self, class_id: int) -> bool:
        unknown = len(self.reported) - 1
        return bool(self.reported[class_id if 0 <= class_id < unknown else unknown])

    def keep(self, detections: Detections, width: int, height: int) -> Detections:
        """The detections this camera reports, of a `width` x `height` source frame."""
        if not self.active or not len(detections):
            return detections
        classes = detections.class_ids
        unknown = len(self.reported) - 1
        index = np.where((classes >= 0) & (classes < unknown), classes, unknown)
        boxes = detections.boxes.astype(np.float64)
        area = ((boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])) / (width * height)
        kept = self.reported[index] & (detections.scores >= self.min_score[index])
        kept &= (area >= self.min_area[index]) & (area <= self.max_area[index])
        if self.masks and kept.any():
            points = anchor_points(boxes)
            for mask in self.masks:
                kept &= ~mask.drops(points, classes, width, height)
        self.dropped += int(len(kept) - kept.sum())
        if kept.all():
            return detections
        return Detections(detections.boxes[kept], detections.scores[kept], classes[kept])

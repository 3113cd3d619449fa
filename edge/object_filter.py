"""Which of a camera's detections it reports: `[objects]` (labels, per-label minimum score,
box area and box shape) and the camera's masks, as Frigate's object filters and masks.

A COCO detector on a doorstep camera finds chairs and potted plants as readily as people, and
a tree that sways in a corner of the view makes objects of its own; every one of them was
published, tracked, counted and sampled. A detection the filter drops is dropped right after
inference: no detections message, track, event, count or sample has it. The drift monitor
still sees it, since it watches the model, whose reference was profiled unfiltered.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from edge.config import Config
from edge.detections import Detections
from edge.errors import ConfigError
from edge.objects_config import MaskConfig, ObjectsConfig
from edge.wording import listed, not_labels_of_the_model
from edge.zones import (
    anchor_points,
    checked_outline,
    frame_size_at_start,
    outside_words,
    polygon_contains,
    reaches_outside,
    to_the_edge,
)

log = logging.getLogger(__name__)
#: Points a side of the grid that tells a mask over the whole frame (17 x 17: every 1/16th).
WHOLE_FRAME_GRID = 17
#: The frame a normalised mask is checked on for covering it whole (any size would do).
NOMINAL_FRAME = (1000, 1000)


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
        inside = polygon_contains(self.in_pixels(width, height), points)
        if self.class_ids is not None:
            inside &= np.isin(class_ids, list(self.class_ids))
        return inside

    def covers(self, width: int, height: int) -> bool:
        """Whether the mask holds every point of a `width` x `height` frame (checked on a grid
        over it, edges included): it then drops every detection of its classes."""
        steps = [np.linspace(0, size, WHOLE_FRAME_GRID) for size in (width, height)]
        grid = np.stack(np.meshgrid(*steps), -1).reshape(-1, 2)
        return bool(polygon_contains(self.in_pixels(width, height), grid).all())

    def in_pixels(self, width: int, height: int) -> npt.NDArray[np.float64]:
        """The polygon [V, 2] in pixels of a `width` x `height` frame; pixel points on its last
        column or row are on its edge, as a zone's are (`edge.zones.to_the_edge`: a mask drawn
        to 639, 479 of a 640x480 frame in an image editor let a box cut off by the frame's
        edge through, and covered the frame without the warning that says so)."""
        if self.normalised:
            return self.polygon * (width, height)
        return to_the_edge(self.polygon, width, height)


class ObjectFilter:
    """Built once per camera; `keep(detections, width, height)` per frame."""

    def __init__(self, camera: str, objects: ObjectsConfig, masks: Sequence[MaskConfig],
                 labels: Sequence[str], key: str = "objects", masks_key: str = "masks",
                 threshold: float = 0.0, origin: str = "") -> None:
        """`key`, `masks_key`: the camera's `objects` and `masks` as its errors name them
        (`cameras.0.objects`), after `origin` (`edge.toml: `). `threshold`: the model's score
        threshold, under which no detection is decoded. Raises ConfigError for a label the
        model lacks and for a mask `checked_outline` refuses; warns of settings that do
        nothing."""
        def class_ids(names: Sequence[str], where: str) -> list[int]:
            unknown = [name for name in names if name not in labels]
            if unknown:
                raise ConfigError(f"{origin}{where}: "
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
        self.min_ratio, self.max_ratio = np.zeros(count + 1), np.full(count + 1, np.inf)
        for name, rule in objects.filters.items():
            (index,) = class_ids([name], f"{key}.filters")
            self.min_score[index] = rule.min_score or 0.0
            self.min_area[index], self.max_area[index] = rule.min_area, rule.max_area
            self.min_ratio[index] = rule.min_ratio
            if rule.max_ratio is not None:
                self.max_ratio[index] = rule.max_ratio
        #: class id -> the median score its tracks need for events, where its filter sets one
        self.event_scores = {labels.index(name): rule.event_score
                             for name, rule in objects.filters.items()
                             if rule.event_score is not None}
        self.masks = [
            Mask(checked_outline(f"{origin}{masks_key}.{i} (camera {camera})", mask.points,
                                 mask.units),
                 mask.units == "normalised",
                 frozenset(class_ids(mask.labels, f"{masks_key}.{i}.labels")) or None)
            for i, mask in enumerate(masks)]
        self._masks_key, self._camera, self._labels = masks_key, camera, list(labels)
        self._origin = origin
        self._warn_of_idle_settings(objects, masks, labels, f"{origin}camera {camera}", key,
                                    masks_key, threshold)
        self._warn_of_whole_frame_masks(*NOMINAL_FRAME, normalised=True)
        self.active = bool(objects.labels or objects.filters or masks)
        self.dropped = 0  # detections dropped so far
        self._checked_sizes: set[tuple[int, int]] = set()

    def _warn_of_idle_settings(self, objects: ObjectsConfig, masks: Sequence[MaskConfig],
                               labels: Sequence[str], who: str, key: str, masks_key: str,
                               threshold: float) -> None:
        """Warn of what does nothing: a `min_score` at or under the model's `threshold`, an
        `event_score` at or under either, and filters and mask labels for labels
        `objects.labels` leaves out."""
        for name, rule in objects.filters.items():
            if rule.min_score is not None and rule.min_score <= threshold:
                log.warning("%s: %s.filters.%s.min_score %g does nothing: detections under "
                            "the model's score threshold %g are never decoded; lower "
                            "model.score_threshold to see them", who, key, name,
                            rule.min_score, threshold)
            floor = max(rule.min_score or 0.0, threshold)
            if rule.event_score is not None and rule.event_score <= floor:
                log.warning("%s: %s.filters.%s.event_score %g does nothing: every %s tracked "
                            "scores at least %g (%s), so its median always reaches it; raise "
                            "it to make a track worth events later", who, key, name,
                            rule.event_score, name, floor,
                            "its min_score" if floor == rule.min_score
                            else "the model's score threshold")
        unreported = [f"{key}.filters.{name}" for name in objects.filters
                      if not self.reports(labels.index(name))]
        unreported += [f"{masks_key}.{i}.labels ({', '.join(absent)})"
                       for i, mask in enumerate(masks)
                       if (absent := [n for n in mask.labels
                                      if not self.reports(labels.index(n))])]
        if unreported:
            many = len(unreported) > 1
            log.warning("%s: %s name%s labels that %s.labels leaves out, never reported here, "
                        "so %s nothing; add them to %s.labels or remove %s", who,
                        listed(unreported), "" if many else "s", key,
                        "they do" if many else "it does", key, "them" if many else "it")

    def _warn_of_whole_frame_masks(self, width: int, height: int, normalised: bool) -> None:
        """Warn of each mask (the `normalised` ones, or those in pixels) that covers a `width`
        x `height` frame whole: the camera reports nothing of its labels, which a mask
        meant for a region (a tree, a road) never means to do."""
        for index, mask in enumerate(self.masks):
            if mask.normalised != normalised or not mask.covers(width, height):
                continue
            names = (None if mask.class_ids is None else
                     [self._labels[i] for i in sorted(mask.class_ids)])
            frame = "frame" if normalised else f"{width}x{height} frame"
            log.warning("%s%s.%d (camera %s) covers the whole %s: it drops %s, so the "
                        "camera reports %s; draw it over the region whose detections are not "
                        "wanted (pixels, or units = \"normalised\" with 0..1)", self._origin,
                        self._masks_key, index, self._camera, frame,
                        "every detection" if names is None else f"every {listed(names)}",
                        "nothing" if names is None else f"no {' or '.join(names)}")

    def check_size(self, width: int, height: int) -> None:
        """What a `width` x `height` frame tells of the pixel masks: one that reaches outside
        it is logged as an error (applied as given), one that covers it whole is warned of;
        once a size."""
        if (width, height) in self._checked_sizes:
            return
        self._checked_sizes.add((width, height))
        problem = self.outside(width, height)
        if problem is not None:  # a stream's size is known only now: said, not refused
            log.error("%s (it is applied as given)", problem)
        self._warn_of_whole_frame_masks(width, height, normalised=False)

    def outside(self, width: int, height: int) -> str | None:
        """Why a pixel mask does not fit a `width` x `height` frame (it reaches outside it),
        or None: a mask drawn on another resolution of the stream drops nothing, or not
        what was meant."""
        for index, mask in enumerate(self.masks):
            if not mask.normalised and reaches_outside(mask.polygon, width, height):
                return (f"{self._masks_key}.{index} (camera {self._camera}): "
                        f"{outside_words(width, height)}")
        return None

    def reports(self, class_id: int) -> bool:
        unknown = len(self.reported) - 1
        return bool(self.reported[class_id if 0 <= class_id < unknown else unknown])

    def keep(self, detections: Detections, width: int, height: int) -> Detections:
        """The detections this camera reports, of a `width` x `height` source frame."""
        self.check_size(width, height)
        if not self.active or not len(detections):
            return detections
        classes = detections.class_ids
        unknown = len(self.reported) - 1
        index = np.where((classes >= 0) & (classes < unknown), classes, unknown)
        boxes = detections.boxes.astype(np.float64)
        box_width, box_height = boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]
        area = box_width * box_height / (width * height)
        # a box of no height is as wide as can be: only a filter without max_ratio keeps it
        ratio = np.divide(box_width, box_height, out=np.full(len(boxes), np.inf),
                          where=box_height > 0)
        kept = self.reported[index] & (detections.scores >= self.min_score[index])
        kept &= (area >= self.min_area[index]) & (area <= self.max_area[index])
        kept &= (ratio >= self.min_ratio[index]) & (ratio <= self.max_ratio[index])
        if self.masks and kept.any():
            points = anchor_points(boxes)
            for mask in self.masks:
                kept &= ~mask.drops(points, classes, width, height)
        self.dropped += int(len(kept) - kept.sum())
        if kept.all():
            return detections
        return Detections(detections.boxes[kept], detections.scores[kept], classes[kept])


def object_filter_of(config: Config, index: int, labels: Sequence[str],
                     threshold: float = 0.0) -> ObjectFilter:
    """Camera `index`'s object filter (`edge.object_filter`), its pixel masks checked against
    the frame size its source promises or its local file has (ConfigError), as zones are; a
    stream's are checked on its first frame."""
    camera, origin = config.cameras[index], config.key("")
    key = f"cameras.{index}.objects" if camera.objects is not None else "objects"
    if camera.objects is not None:
        lost = [name for name in config.objects.filters if name not in camera.objects.filters]
        if lost:
            log.warning("%scamera %s: its own [cameras.objects] replaces [objects] whole, so "
                        "objects.filters for %s %s not applied to it (unlike Frigate, which "
                        "merges them); repeat them under cameras.%d.objects.filters to keep "
                        "them", origin, camera.name, listed(lost),
                        "is" if len(lost) == 1 else "are", index)
    objects = ObjectFilter(camera.name, config.objects_of(camera), camera.masks, labels, key,
                           f"cameras.{index}.masks", threshold, origin)
    scored = [name for name, rule in config.objects_of(camera).filters.items()
              if rule.event_score is not None]
    if scored and not config.tracking.enabled:
        log.warning("%scamera %s: %s.filters' event_score for %s does nothing: tracking is "
                    "off ([tracking] enabled = false), so no track gets events or counts; "
                    "turn it on, or remove %s", origin, camera.name, key, listed(scored),
                    "them" if len(scored) > 1 else "it")
    for zone in camera.zones:
        unreported = [name for name in zone.labels
                      if name in labels and not objects.reports(labels.index(name))]
        if unreported:
            log.warning("%scamera %s: zone %r counts %s, which %s.labels leaves out: never "
                        "counted there; add %s to %s.labels or take %s from the zone", origin,
                        camera.name, zone.name, listed(unreported), key,
                        "them" if len(unreported) > 1 else "it", key,
                        "them" if len(unreported) > 1 else "it")
    size = frame_size_at_start(camera.source, camera.masks) if camera.masks else None
    problem = objects.outside(*size) if size is not None else None
    if problem is not None:
        raise ConfigError(f"{origin}{problem}")
    if size is not None:
        objects.check_size(*size)
    return objects

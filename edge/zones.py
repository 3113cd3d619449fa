"""Zones: named polygons per camera, and which tracked objects stand in each.

An object is in a zone when the bottom centre of its box (where it touches the ground, for a
camera looking down at a scene) lies inside the polygon or on its outline, as in Frigate; the
box centre would put a tall person standing outside a doorway "in" it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from edge.errors import ConfigError
from edge.objects_config import MaskConfig, ZoneConfig
from edge.sources import probe_frame_size
from edge.sources.uri import SourceUri
from edge.wording import not_labels_of_the_model

#: How near an edge (pixels) a point counts as on it: float rounding of scaled normalised
#: zones, far below any box coordinate's precision.
ON_OUTLINE_PX = 1e-6


@dataclass(frozen=True)
class Zone:
    """A polygon in source-frame pixels.

    Attributes:
        name: used in topics and events.
        polygon: float64 [V, 2], x y vertices in order, V >= 3.
        class_ids: model class ids the zone counts; None counts every class.
    """

    name: str
    polygon: npt.NDArray[np.float64]
    class_ids: frozenset[int] | None = None

    def contains(self, points: npt.NDArray[np.floating]) -> npt.NDArray[np.bool_]:
        """Whether each point [K, 2] lies in the zone -> bool [K] (`polygon_contains`)."""
        return polygon_contains(self.polygon, points)

    def counts(self, class_id: int) -> bool:
        return self.class_ids is None or class_id in self.class_ids


def polygon_contains(polygon: npt.NDArray[np.float64],
                     points: npt.NDArray[np.floating]) -> npt.NDArray[np.bool_]:
    """Whether each point [K, 2] lies inside the polygon [V, 2] (even-odd rule) or on its
    outline -> bool [K].

    The outline counts as inside: boxes are clipped to the frame, so an object cut off by the
    frame's bottom edge has its anchor exactly on that edge, and a zone drawn to the edge of
    the frame must count it."""
    x, y = points[:, 0:1], points[:, 1:2]  # [K, 1] against [1, V] edges
    x1, y1 = polygon[:, 0], polygon[:, 1]
    x2, y2 = np.roll(x1, -1), np.roll(y1, -1)
    crosses = (y1 > y) != (y2 > y)
    with np.errstate(divide="ignore", invalid="ignore"):
        at_x = x1 + (y - y1) * (x2 - x1) / (y2 - y1)
    inside: npt.NDArray[np.bool_] = (np.sum(crosses & (x < at_x), axis=1) % 2) == 1
    return inside | _on_outline(polygon, x, y)


def _on_outline(polygon: npt.NDArray[np.float64], x: npt.NDArray[np.floating],
                y: npt.NDArray[np.floating]) -> npt.NDArray[np.bool_]:
    """Whether each point (x, y: [K, 1]) lies within ON_OUTLINE_PX of an edge -> [K]."""
    x1, y1 = polygon[:, 0], polygon[:, 1]
    dx, dy = np.roll(x1, -1) - x1, np.roll(y1, -1) - y1
    length_sq = dx * dx + dy * dy  # > 0: consecutive points are distinct (area > 0)
    along = np.clip(((x - x1) * dx + (y - y1) * dy) / np.maximum(length_sq, 1e-300), 0, 1)
    gap_sq = (x - x1 - along * dx) ** 2 + (y - y1 - along * dy) ** 2
    on: npt.NDArray[np.bool_] = np.any(gap_sq <= ON_OUTLINE_PX ** 2, axis=1)
    return on


def anchor_points(boxes: npt.NDArray[np.floating]) -> npt.NDArray[np.float64]:
    """Bottom centre of each box [K, 4] x1 y1 x2 y2 -> [K, 2]."""
    b = np.asarray(boxes, np.float64)
    return np.stack([(b[:, 0] + b[:, 2]) / 2, b[:, 3]], axis=1)


def zones_from_config(camera: str, zones: Sequence[ZoneConfig], labels: Sequence[str],
                      frame_size: tuple[int, int] | None) -> list[Zone]:
    """Check every zone and convert it to pixels.

    `frame_size` (width, height) is the camera's frame size when known before the first frame;
    normalised zones need it to be converted (None: convert later with `zones_for_frame`).
    Raises ConfigError naming the camera and zone: a polygon `zone_outlines` refuses or
    outside the frame, or a label the model does not have (the message lists the model's
    labels)."""
    resolved = []
    for zone, outline in zip(zones, zone_outlines(camera, zones), strict=True):
        unknown = [label for label in zone.labels if label not in labels]
        if unknown:
            raise ConfigError(f"camera {camera!r}, zone {zone.name!r}: labels: "
                              f"{not_labels_of_the_model(unknown, labels)}")
        class_ids = frozenset(labels.index(label) for label in zone.labels) or None
        resolved.append(Zone(zone.name, outline.polygon, class_ids))
    if frame_size is None:
        return resolved
    return zones_for_frame(camera, zones, resolved, frame_size)


def zone_outlines(camera: str, zones: Sequence[ZoneConfig]) -> list[Zone]:
    """Every zone's polygon in its own units, for every label. Raises ConfigError naming the
    camera and zone for a polygon that crosses itself or encloses no area, normalised
    coordinates outside 0..1, and pixel coordinates that all lie within 0..1 (a zone under
    a pixel wide, which counts nothing: `units = "normalised"` left out)."""
    return [Zone(zone.name, checked_outline(f"camera {camera!r}, zone {zone.name!r}",
                                            zone.points, zone.units)) for zone in zones]


def checked_outline(where: str, points_given: Sequence[Sequence[float]],
                    units: str) -> npt.NDArray[np.float64]:
    """A zone's or mask's polygon [V, 2] in its `units`, without repeated points; the checks
    `zone_outlines` names raise ConfigError starting with `where`."""
    points = _without_repeats(np.array(points_given, np.float64))
    if _self_intersecting(points):
        raise ConfigError(f"{where}: the polygon crosses itself; list its points in order "
                          "around its outline")
    if _area(points) == 0:
        raise ConfigError(f"{where}: the polygon encloses no area (its points lie on one "
                          "line); give at least three corners of the region")
    if units == "normalised" and ((points < 0) | (points > 1)).any():
        outside = sorted({f"{v:g}" for v in points.ravel() if not 0 <= v <= 1})
        raise ConfigError(f"{where}: normalised coordinates must lie between 0 and 1 "
                          f"({', '.join(outside)} "
                          f"{'does' if len(outside) == 1 else 'do'} not); correct "
                          f"{'it' if len(outside) == 1 else 'them'}, or use units = "
                          "\"pixels\" for pixel coordinates")
    if units == "pixels" and ((points >= 0) & (points <= 1)).all():
        raise ConfigError(f"{where}: every point lies between 0 and 1, read as pixels (the "
                          "default units): a polygon under one pixel wide; add units = "
                          "\"normalised\" for fractions of the frame")
    if units == "pixels" and _area(points) < MIN_PIXEL_ZONE_AREA:
        beyond = sorted({f"{v:g}" for v in points.ravel() if v > 1})
        raise ConfigError(f"{where}: the polygon encloses {_area(points):.2g} square pixels "
                          "(read as pixels, the default units), too small to hold an "
                          "object; if its points are fractions of the frame, add units = "
                          f"\"normalised\" and correct {', '.join(beyond)}, above 1")
    return points


#: The least area (square pixels) of a zone given in pixels: one smaller is a typo in
#: fractions of the frame (a user check: 1.4 for 0.4 made a 0.3 px² zone, in silence).
MIN_PIXEL_ZONE_AREA = 16.0


def _without_repeats(points: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    """The outline [V, 2] without a point that repeats the one before it, nor a last point
    that repeats the first: drawing tools often close a polygon that way, and a repeat is no
    corner (it read as an edge crossing its neighbour)."""
    kept = np.concatenate([[True], (points[1:] != points[:-1]).any(axis=1)])
    distinct: npt.NDArray[np.float64] = points[kept]
    if len(distinct) > 1 and (distinct[-1] == distinct[0]).all():
        distinct = distinct[:-1]
    return distinct


def _area(points: npt.NDArray[np.float64]) -> float:
    """The area enclosed by the closed polygon [V, 2] (shoelace formula), in its units squared."""
    x, y = points[:, 0], points[:, 1]
    return abs(float(np.dot(x, np.roll(y, -1)) - np.dot(y, np.roll(x, -1)))) / 2


def zones_for_frame(camera: str, zones: Sequence[ZoneConfig], resolved: Sequence[Zone],
                    frame_size: tuple[int, int]) -> list[Zone]:
    """Scale normalised zones to a `frame_size` (width, height) frame and check that every zone
    lies inside it; raises ConfigError naming the zone otherwise."""
    width, height = frame_size
    out = []
    for config, zone in zip(zones, resolved, strict=True):
        polygon = (zone.polygon * (width, height) if config.units == "normalised"
                   else to_the_edge(zone.polygon, width, height))
        if reaches_outside(polygon, width, height):
            raise ConfigError(f"camera {camera!r}, zone {config.name!r}: "
                              f"{outside_words(width, height)}")
        out.append(Zone(zone.name, polygon, zone.class_ids))
    return out


def reaches_outside(polygon: npt.NDArray[np.float64], width: int, height: int) -> bool:
    """Whether a pixel polygon [V, 2] has a point outside a `width` x `height` frame."""
    return bool((polygon < 0).any() or (polygon[:, 0] > width).any()
                or (polygon[:, 1] > height).any())


def outside_words(width: int, height: int) -> str:
    """What a zone's or mask's error says of a polygon that `reaches_outside` the frame."""
    return (f"the polygon reaches outside the {width}x{height} frame; use pixel coordinates "
            "within it, or units = \"normalised\" with coordinates from 0 to 1")


def to_the_edge(polygon: npt.NDArray[np.float64], width: int,
                 height: int) -> npt.NDArray[np.float64]:
    """Pixel points on the last column or row (x = width - 1, y = height - 1) moved onto the
    frame's edge (width, height): image editors and `edge probe --save` number pixels from 0
    to height - 1, so a zone drawn "to the bottom" ends at 479 of 480, while a box cut off by
    the frame ends at 480 and its anchor would fall just outside."""
    moved = polygon.copy()
    moved[:, 0] = np.where((moved[:, 0] >= width - 1) & (moved[:, 0] <= width), width,
                           moved[:, 0])
    moved[:, 1] = np.where((moved[:, 1] >= height - 1) & (moved[:, 1] <= height), height,
                           moved[:, 1])
    return moved


def _self_intersecting(points: npt.NDArray[np.float64]) -> bool:
    """Whether any two non-adjacent edges of the closed polygon [V, 2] cross or touch."""
    count = len(points)
    edges = [(points[i], points[(i + 1) % count]) for i in range(count)]
    for i in range(count):
        for j in range(i + 1, count):
            if j == i + 1 or (i == 0 and j == count - 1):
                continue  # adjacent edges share a vertex
            if _segments_intersect(*edges[i], *edges[j]):
                return True
    return False


def _segments_intersect(a: npt.NDArray[np.float64], b: npt.NDArray[np.float64],
                        c: npt.NDArray[np.float64], d: npt.NDArray[np.float64]) -> bool:
    def orient(p: npt.NDArray[np.float64], q: npt.NDArray[np.float64],
               r: npt.NDArray[np.float64]) -> float:
        return float(np.sign((q[0] - p[0]) * (r[1] - p[1]) - (q[1] - p[1]) * (r[0] - p[0])))

    def between(p: npt.NDArray[np.float64], q: npt.NDArray[np.float64],
                r: npt.NDArray[np.float64]) -> bool:  # r on segment pq, given collinear
        return bool(min(p[0], q[0]) <= r[0] <= max(p[0], q[0])
                    and min(p[1], q[1]) <= r[1] <= max(p[1], q[1]))

    o1, o2, o3, o4 = orient(a, b, c), orient(a, b, d), orient(c, d, a), orient(c, d, b)
    if o1 != o2 and o3 != o4 and 0 not in (o1, o2, o3, o4):
        return True
    return ((o1 == 0 and between(a, b, c)) or (o2 == 0 and between(a, b, d))
            or (o3 == 0 and between(c, d, a)) or (o4 == 0 and between(c, d, b)))


def frame_size_from_uri(uri: str) -> tuple[int, int] | None:
    """(width, height) a source URI promises before it is opened, when it does: the synthetic
    scene's size (default 640x480) or explicit width and height options; None otherwise."""
    parsed = SourceUri.parse(uri)
    if parsed.scheme == "synthetic":
        return parsed.integer("width", 640), parsed.integer("height", 480)
    width, height = parsed.integer("width", 0), parsed.integer("height", 0)
    return (width, height) if width and height else None


def frame_size_at_start(source: str, zones: Sequence[ZoneConfig | MaskConfig]
                        ) -> tuple[int, int] | None:
    """(width, height) a camera's `zones` (or masks) are placed in before it streams: what its
    `source` URI promises, else, where one is in pixels, a local file's (its first frame read
    now); None for a stream, whose zones are placed on its first frame."""
    size = frame_size_from_uri(source)
    if size is None and any(zone.units == "pixels" for zone in zones):
        size = probe_frame_size(source)
    return size

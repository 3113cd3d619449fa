"""Config sections of tracked objects: camera zones, `[tracking]` and `[homeassistant]`.

Kept apart from `edge.config` so that the camera and MQTT sections and these evolve without
touching each other; `edge.config` composes them. Geometry checks that need the model's labels
or the frame size happen in `edge.zones` when the daemon is built.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, field_validator, model_validator

from edge.mqtt.topics import topic_prefix_problem

#: Topic levels a zone may not be named, so every topic under a camera stays unambiguous.
RESERVED_ZONE_NAMES = frozenset({"detections", "events", "frame", "status", "count"})


def _x_and_y(point: list[float]) -> list[float]:
    """A zone's point has two numbers (pydantic's own length message named no fix)."""
    if len(point) != 2:
        written = f"[{', '.join(f'{value:g}' for value in point)}]"
        raise ValueError(f"{written} is not a point: each point is [x, y], two numbers (pixels "
                         "of the frame, or 0..1 of it with units = \"normalised\")")
    return point


#: [x, y]; a list rather than a tuple because TOML arrays arrive as lists (strict mode).
Point = Annotated[list[float], AfterValidator(_x_and_y)]


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True, allow_inf_nan=False)


def label_names(names: list[str]) -> list[str]:
    """A list of the model's labels as a config gives it: no empty name, none twice (a
    duplicate or a stray `""` left in an edit would otherwise pass without a word)."""
    if any(not name.strip() for name in names):
        raise ValueError(f"{names!r} holds an empty label name; remove it")
    twice = sorted({name for name in names if names.count(name) > 1})
    if twice:
        raise ValueError(f"{', '.join(map(repr, twice))} listed twice; list each label once")
    return names


class _Polygon(_Section):
    """A region of a camera's frames: a zone's or a mask's."""

    points: list[Point] = Field(
        min_length=3, description="polygon vertices [x, y] in order around the outline")
    units: Literal["pixels", "normalised"] = Field(
        default="pixels", description="pixels of the source frame, or 0..1 of its width and "
                                      "height")


class ZoneConfig(_Polygon):
    name: str = Field(pattern=r"^[A-Za-z0-9_-]{1,64}$",
                      description="used in topics: letters, digits, _ and - only")
    labels: list[str] = Field(default_factory=list,
                              description="labels counted in this zone; empty: every label")
    _label_names = field_validator("labels")(label_names)

    @field_validator("name")
    @classmethod
    def _not_reserved(cls, name: str) -> str:
        if name in RESERVED_ZONE_NAMES:
            raise ValueError(f"zone name {name!r} is a topic level of its own; choose another "
                             f"(reserved: {', '.join(sorted(RESERVED_ZONE_NAMES))})")
        return name


def unique_zone_names(zones: list[ZoneConfig]) -> list[ZoneConfig]:
    """Validator body for a camera's zone list."""
    names = [z.name for z in zones]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise ValueError(f"zone names must be unique per camera; repeated: {', '.join(duplicates)}")
    return zones


#: The least area (pixels) read as Frigate's pixel areas, not a fraction mistyped.
MIN_PIXEL_AREA = 16.0


class LabelFilter(_Section):
    """What a detection of one label must be to be reported (as Frigate's object filters)."""

    min_score: float | None = Field(default=None, gt=0, lt=1,
                                    description="detections of this label scoring lower are "
                                                "dropped (default: the model's threshold)")
    min_area: float = Field(default=0.0,
                            description="boxes smaller than this fraction of the frame's area "
                                        "(0..1) are dropped")
    max_area: float = Field(default=1.0,
                            description="boxes larger than this fraction of the frame's area "
                                        "(0..1) are dropped")
    min_ratio: float = Field(default=0.0, ge=0,
                             description="boxes whose width / height (in pixels) is lower are "
                                         "dropped: a standing person is about 0.4")
    max_ratio: float | None = Field(default=None, gt=0,
                                    description="boxes whose width / height (in pixels) is "
                                                "higher are dropped (default: no limit)")
    event_score: float | None = Field(default=None, gt=0, le=1,
                                      description="a tracked object of this label gets events "
                                                  "and is counted once the median of its "
                                                  "scores reaches this (Frigate's threshold; "
                                                  "default: tracking.event_score)")

    @field_validator("min_area", "max_area")
    @classmethod
    def _a_fraction(cls, area: float) -> float:
        if 0 <= area <= 1:
            return area
        if area < MIN_PIXEL_AREA:
            raise ValueError(f"{area:g} is not a fraction of the frame's area (0 to 1)")
        raise ValueError(f"{area:g} is not a fraction of the frame's area (0 to 1): areas here "
                         f"are fractions, not pixels as in Frigate; {area:g} px is "
                         f"{area / (640 * 480):.3g} of a 640x480 frame, "
                         f"{area / (1280 * 720):.3g} of 1280x720, "
                         f"{area / (1920 * 1080):.3g} of 1920x1080")

    @model_validator(mode="after")
    def _area_range(self) -> LabelFilter:
        if self.max_area == 0:
            raise ValueError("max_area 0 keeps no box; it is the largest box kept, as a "
                             "fraction of the frame's area (0 to 1)")
        if self.min_area >= self.max_area:
            raise ValueError(f"min_area {self.min_area:g} must be below max_area "
                             f"{self.max_area:g} (both fractions of the frame's area), or no "
                             "box is kept")
        if self.max_ratio is not None and self.min_ratio >= self.max_ratio:
            raise ValueError(f"min_ratio {self.min_ratio:g} must be below max_ratio "
                             f"{self.max_ratio:g} (both a box's width / height), or no box is "
                             "kept")
        return self


class ObjectsConfig(_Section):
    """Which detections a camera reports: published, tracked, counted and sampled. The others
    are dropped after inference (the drift monitor still sees them: it watches the model)."""

    labels: list[str] = Field(default_factory=list,
                              description="labels reported; empty: every label of the model")
    filters: dict[str, LabelFilter] = Field(
        default_factory=dict,
        description="per label: min_score, min_area, max_area, min_ratio, max_ratio, "
                    "event_score")
    _label_names = field_validator("labels")(label_names)


class MaskConfig(_Polygon):
    """A region of a camera's view where detections are dropped: a tree that sways, a road
    whose cars are not wanted. A detection is in it when the bottom centre of its box is, as
    for zones."""

    labels: list[str] = Field(default_factory=list,
                              description="labels dropped in it; empty: every label")
    _label_names = field_validator("labels")(label_names)


class TrackingConfig(_Section):
    enabled: bool = Field(default=True, description="track objects, publish events and counts")
    high_score: float = Field(default=0.5, gt=0, lt=1,
                              description="detections at or above start and keep tracks")
    low_score: float = Field(default=0.1, gt=0, lt=1,
                             description="detections between low and high only keep tracks")
    new_track_score: float = Field(default=0.6, gt=0, lt=1)
    event_score: float = Field(default=0.7, gt=0, le=1,
                               description="a tracked object gets events and is counted once "
                                           "the median of its scores reaches this")
    max_disappeared: int = Field(default=30, ge=1, le=10_000,
                                 description="frames an object may go unseen before its end "
                                             "event")
    update_interval_s: float = Field(default=5.0, ge=0, le=3600,
                                     description="update events per object, at most one per "
                                                 "interval (and only when something changed)")
    snapshots: bool = Field(default=True, description="publish each object's best frame")
    snapshot_interval_s: float = Field(default=0.2, ge=0, le=60,
                                       description="frames considered for snapshots: at most one "
                                                   "per interval (each costs a frame copy)")
    snapshot_max_height: int = Field(default=360, ge=16, le=4320)
    snapshot_quality: int = Field(default=85, ge=1, le=100)

    @model_validator(mode="after")
    def _ordered_scores(self) -> TrackingConfig:
        if self.low_score >= self.high_score:
            raise ValueError("low_score must be below high_score")
        if self.new_track_score < self.high_score:
            raise ValueError("new_track_score must be at least high_score")
        return self


#: Levels a discovery prefix may have: the daemon looks under every prefix up to this long for
#: the entities an earlier run left under another one.
MAX_PREFIX_LEVELS = 4
#: Home Assistant's own discovery prefix, which its MQTT integration reads unless changed.
DEFAULT_DISCOVERY_PREFIX = "homeassistant"


class HomeAssistantConfig(_Section):
    enabled: bool = Field(default=False, description="publish Home Assistant MQTT discovery")
    prefix: str = Field(default=DEFAULT_DISCOVERY_PREFIX, pattern=r"^[A-Za-z0-9_/-]{1,64}$",
                        description="Home Assistant's discovery prefix")
    labels: list[str] = Field(default_factory=list,
                              description="labels that get count and occupancy entities; "
                                          "empty: every label of the model")
    _label_names = field_validator("labels")(label_names)

    @field_validator("prefix")
    @classmethod
    def _valid_prefix(cls, prefix: str) -> str:
        problem = topic_prefix_problem(prefix)
        if problem is None and prefix.count("/") >= MAX_PREFIX_LEVELS:
            problem = (f"a discovery prefix of more than {MAX_PREFIX_LEVELS} levels (its "
                       "entities could not be found again once it changed)")
        if problem is not None:
            raise ValueError(f"{problem}; Home Assistant's default is homeassistant")
        return prefix

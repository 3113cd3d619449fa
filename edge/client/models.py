"""MQTT contract v1 as pydantic models: the written form of every payload a device publishes.

Strict: a number sent as a string, or a field of the wrong type, is an error that names the
field. Additive changes keep `v: 1` (the MQTT contract's versioning), so unknown fields are
kept (`extra="allow"`) rather than rejected: a newer device's extra fields never break an
older client. A payload whose `v` is above `CONTRACT_VERSION` is refused before validation
(`FutureVersionError`), because its existing fields may have changed meaning.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Annotated, Literal, TypeVar

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    JsonValue,
    WithJsonSchema,
    model_validator,
)

from edge.mqtt.topics import CONTRACT_VERSION, MAX_DETECTIONS
from edge.rfc3339 import utc_seconds


def _corners_in_order(box: list[float]) -> list[float]:
    if box[2] < box[0] or box[3] < box[1]:
        raise ValueError("x2 < x1 or y2 < y1: expected x1 y1 x2 y2, top-left corner first")
    return box


#: x1 y1 x2 y2 in source-frame pixels
Box = Annotated[list[float], Field(min_length=4, max_length=4), AfterValidator(_corners_in_order)]
#: How far a box may reach past the frame's edges, pixels: the device clips boxes to the frame,
#: and another implementation's rounding may put an edge a fraction beyond it.
BOX_MARGIN_PX = 1.0
#: How far apart a payload's `ts` and `time` may be, seconds: both are the same moment (the
#: device writes `time` from `ts`, to the millisecond).
TIME_TOLERANCE_S = 1.0


def _rfc3339_utc(text: str) -> str:
    utc_seconds(text)  # its ValueError says what is wrong
    return text


#: A moment as RFC 3339 UTC text: `2026-11-29T07:14:51.123Z`.
Time = Annotated[str, AfterValidator(_rfc3339_utc),
                 WithJsonSchema({"type": "string", "format": "date-time"})]


def _same_moment(ts: float | None, time: str | None, fields: str) -> None:
    """`ts` (seconds since the epoch) and `time` (RFC 3339, already checked) state the same
    moment, where both are given."""
    if ts is None or time is None:
        return
    apart = abs(utc_seconds(time) - ts)
    if apart > TIME_TOLERANCE_S:
        raise ValueError(f"{fields} are {apart:.3f} s apart, and both state the same moment "
                         "(a local time marked UTC is hours off)")


def _boxes_in_frame(detections: Iterable[Detection], width: int, height: int,
                    field: str) -> None:
    """Every box inside the `width` x `height` source frame (give or take `BOX_MARGIN_PX`)."""
    for index, detection in enumerate(detections):
        x1, y1, x2, y2 = detection.box
        if (min(x1, y1) < -BOX_MARGIN_PX or x2 > width + BOX_MARGIN_PX
                or y2 > height + BOX_MARGIN_PX):
            raise ValueError(f"{field}[{index}].box {detection.box} reaches outside the "
                             f"{width}x{height} frame: boxes are in source-frame pixels "
                             "(a box in the model input's pixels would be a device bug)")


#: The most entries any other list or mapping of a payload may hold. Far above what a device
#: sends (a label list of 21k ImageNet classes fits), it bounds the work one malformed payload
#: makes: a longer list fails at once instead of item by item (a user check: an 8 MB list of
#: bad detections held every subscriber for a minute and made a 164 MB warning).
MAX_ITEMS = 100_000

_Item = TypeVar("_Item")
#: A list or a string-keyed mapping of at most MAX_ITEMS entries.
Items = Annotated[list[_Item], Field(max_length=MAX_ITEMS)]
Keyed = Annotated[dict[str, _Item], Field(max_length=MAX_ITEMS)]


class _Payload(BaseModel):
    # NaN and Infinity are not JSON (RFC 8259), though Python's json reads them; a NaN `ts`
    # would also defeat de-duplication by (device, camera, frame_id, ts): NaN != NaN
    model_config = ConfigDict(strict=True, extra="allow", frozen=True, allow_inf_nan=False)


class _Versioned(_Payload):
    v: int = Field(ge=1, le=CONTRACT_VERSION, description="contract version")


class _Timed(_Versioned):
    """A payload stamped with `ts` and `time`: both, where given, state the same moment."""

    @model_validator(mode="after")
    def _time_is_ts(self) -> _Timed:
        _same_moment(getattr(self, "ts", None), getattr(self, "time", None), "ts and time")
        return self


class Detection(_Payload):
    """One detected object; `box` is x1 y1 x2 y2 in source-frame pixels."""

    label: str
    class_id: int = Field(ge=0)
    score: float = Field(ge=0, le=1)
    box: Box
    track_id: int | None = Field(default=None, ge=0,
                                 description="the tracked object; 0 or absent: not tracked")


#: A frame's detections: at most MAX_DETECTIONS.
DetectionList = Annotated[list[Detection], Field(max_length=MAX_DETECTIONS)]


class DetectionsMessage(_Timed):
    """`<prefix>/<camera>/detections`: one message per processed frame."""

    ts: float = Field(description="capture time, seconds since the epoch")
    time: Time = Field(description="capture time, RFC 3339 UTC")
    frame_id: int = Field(description="the camera's frame number: from 1 at each start of the "
                                      "device, going on across the camera's reconnects; a "
                                      "gap is frames dropped before inference")
    camera: str
    model: str
    width: int = Field(gt=0, description="source frame width, pixels")
    height: int = Field(gt=0, description="source frame height, pixels")
    latency_ms: Keyed[float] = Field(
        description="per stage: queue (from capture to the camera loop taking the frame), "
                    "slot_wait (waiting for a free input row of the shared engine), "
                    "preprocess (letterboxing into it), batch_wait (from the frame's "
                    "input being ready to its batch starting: the batch before it still "
                    "running, or other cameras' frames awaited up to batch_timeout_ms), "
                    "infer, result_wait (from the inference ending to the camera loop "
                    "taking its output: the loop first finishes the frame before, decoding, "
                    "tracking and publishing it, and letterboxes the next one), "
                    "postprocess, track, total")
    batch: int | None = Field(default=None, ge=1,
                              description="frames of all cameras run in the inference batch "
                                          "this frame was in")
    detections: DetectionList

    @model_validator(mode="after")
    def _boxes_inside(self) -> DetectionsMessage:
        _boxes_in_frame(self.detections, self.width, self.height, "detections")
        return self


class DeviceStatus(_Timed):
    """`<prefix>/status` (retained): online, degraded (a camera stopped streaming: it is
    reconnecting, ended or failed; one still starting is not counted), offline (the Last Will),
    stopped, or failed (a camera could not start, inference failed, or the model's output was
    refused: `error` says why; the daemon has exited, 1 after an inference failure, which its
    service manager restarts, else 2: a fix is needed first)."""

    state: Literal["online", "degraded", "offline", "stopped", "failed"]
    version: str
    model: str
    cameras: Items[str]
    started_at: Time
    ts: float | None = None
    time: Time | None = None
    backend: str | None = None
    backend_reason: str | None = Field(default=None,
                                       description="why this backend was chosen (auto)")
    precision: Literal["int8", "fp16", "fp32"] | None = Field(
        default=None, description="what inference computes in: a TensorRT engine's build "
                                  "precision; on ONNX Runtime, int8 for a Q/DQ model")
    host: str | None = Field(default=None, description="the device's host name")
    camera_states: Keyed[str] | None = Field(default=None,
                                                 description="camera -> its status state")
    error: str | None = Field(default=None,
                              description="why a camera could not start, why inference "
                                          "failed, or why the model's output was refused "
                                          "(absent while all is well)")


class CameraStatus(_Payload):
    """`<prefix>/<camera>/status` (retained): the camera's source state."""

    state: Literal["starting", "streaming", "reconnecting", "ended", "failed"]
    camera: str | None = None
    reason: str | None = None
    since: Time | None = Field(default=None, description="in this state since, RFC 3339 UTC (a "
                                                        "camera that was streaming: since its "
                                                        "last frame)")
    since_ts: float | None = Field(default=None,
                                   description="in this state since, seconds since the epoch")
    attempts: int | None = Field(default=None, ge=0,
                                 description="reopen attempts since the camera last streamed "
                                             "(0 while it streams; an `ended` camera that "
                                             "the daemon stopped while it was down keeps its "
                                             "count, and its reason says why it was down)")
    fps: float | None = Field(default=None,
                              description="frames a second the source delivered up to the change "
                                          "(null while starting or streaming: the stats topic "
                                          "has the current rate)")

    @model_validator(mode="after")
    def _consistent(self) -> CameraStatus:
        _same_moment(self.since_ts, self.since, "since_ts and since")
        return self


class AuditDraw(_Payload):
    frames: int = Field(ge=0, description="frames the audit draw saw")
    drawn: int = Field(ge=0, description="frames it sampled")
    refused: int = Field(default=0, ge=0, description="draws the per minute, hour and day limits "
                                                      "refused (the audit sample has caps of its "
                                                      "own, apart from the other reasons')")


class SamplingStats(_Payload):
    """What a camera's frame sampling did (`frames` settings)."""

    sampled: Keyed[int] = Field(description="frames sampled per reason (interval, "
                                                "detection, uncertain, rare, count_change, "
                                                "audit, snapshot)")
    refused: int = Field(ge=0, description="samples the per minute, hour and day limits "
                                           "refused (those drawn for the audit: audit.refused)")
    over_budget: int = Field(ge=0, description="samples not sent: the hour's byte budget "
                                               "would have been overrun")
    audit: AuditDraw


class InferenceStats(_Payload):
    """The inference service every camera shares."""

    backend: str
    runners: int = Field(ge=0, description="inference engines loaded (one a model)")
    max_batch: int = Field(ge=1)
    batches: int = Field(ge=0, description="batches run")
    batch_sizes: Keyed[int] = Field(description="batch size -> batches of that size")
    mean_batch: float = Field(ge=0)
    state: Literal["running", "failed", "stopped"]


class CameraStats(_Payload):
    frames: int = Field(ge=0, description="frames processed")
    fps: float = Field(description="frames processed a second")
    dropped: int = Field(ge=0, description="camera frames replaced by a newer one before "
                                           "inference took them")
    errors: int | None = Field(default=None, ge=0,
                               description="failures of the camera's loop (it then stops)")
    bad_frames: int | None = Field(default=None, ge=0,
                                   description="frames skipped as unusable (not uint8 [H, W, 3])")
    filtered: int | None = Field(default=None, ge=0,
                                 description="detections [objects] and the camera's masks "
                                             "dropped: not published, tracked or counted")
    state: str | None = Field(default=None, description="the camera's status state")
    reason: str | None = None
    attempts: int | None = Field(default=None, ge=0)
    reconnects: int | None = Field(
        default=None, ge=0,
        description="times the stream was lost after streaming (its outages, each reopened)")
    source_fps: float | None = Field(default=None,
                                     description="frames a second the source delivers")
    latency_ms: Keyed[dict[str, float]] = Field(
        default_factory=dict, description="per stage: percentiles p50, p90, p99")
    sampling: SamplingStats | None = None
    drift: str | None = Field(default=None, description="the drift monitor's state, if on")
    keeping_up: bool | None = Field(
        default=None, description="false while the camera drops a quarter or more of the frames "
                                  "its source delivers over the last 30 s (the device has more "
                                  "work than it can do), true once it drops at most 5%; null "
                                  "before either (under 30 s of frames since its stream "
                                  "opened, or a share between the two)")


class DeviceStats(_Timed):
    """`<prefix>/stats` (retained, periodic)."""

    ts: float
    time: Time
    uptime_s: float
    backend: str | None = None
    cameras: Keyed[CameraStats]
    inference: InferenceStats | None = None
    mqtt: Keyed[JsonValue]
    memory_rss_mb: float | None = None
    temperatures_c: Keyed[float] | None = Field(
        default=None, description="thermal zone -> degrees C (empty where none is readable)")


class FrameMeta(_Timed):
    """`<prefix>/<camera>/frame/meta`: about the last sampled frame on `.../frame`."""

    camera: str
    frame_id: int
    ts: float
    time: Time
    width: int = Field(gt=0, description="source frame width: the detections' pixels")
    height: int = Field(gt=0, description="source frame height")
    model: str | None = None
    image_width: int | None = Field(default=None, gt=0,
                                    description="the JPEG's width (frames.max_height)")
    image_height: int | None = Field(default=None, gt=0, description="the JPEG's height")
    bytes: int | None = Field(default=None, ge=0, description="the JPEG's size")
    clean_bytes: int | None = Field(default=None, ge=0,
                                    description="the undrawn JPEG's size on `.../frame/clean` "
                                                "(with frames.draw)")
    detections: int = Field(ge=0, description="number of detections in the frame")
    detections_drawn: bool
    reasons: Items[str] | None = Field(default=None,
                                      description="why the frame was sampled")
    predictions: DetectionList | None = Field(default=None,
                                                description="the frame's detections")
    below_threshold: DetectionList | None = Field(
        default=None, description="detections the uncertainty band saw under the score "
                                  "threshold (not published as detections)")
    labels: Items[str] | None = Field(default=None, description="the model's labels")
    published_at: Time | None = Field(default=None, description="RFC 3339 UTC")

    @model_validator(mode="after")
    def _boxes_inside(self) -> FrameMeta:
        _boxes_in_frame(self.predictions or (), self.width, self.height, "predictions")
        _boxes_in_frame(self.below_threshold or (), self.width, self.height, "below_threshold")
        return self


class SnapshotRef(_Payload):
    """Where an event's snapshot is (a retained JPEG: a crop of the object's best frame) and
    what it shows (`box`: the object in the source frame's pixels)."""

    topic: str
    frame_id: int
    score: float = Field(ge=0, le=1)
    box: Box


class Event(_Timed):
    """`<prefix>/<camera>/events`: an object's `new`, rate-limited `update`s and `end`."""

    type: Literal["new", "update", "end"]
    id: str = Field(description="event id, unique per device: <start ms>-<track id>")
    track_id: int = Field(gt=0, description="the detections' track_id of this object")
    camera: str
    label: str
    class_id: int = Field(ge=0)
    score: float = Field(ge=0, le=1)
    top_score: float = Field(ge=0, le=1)
    box: Box
    start: float = Field(description="first seen, seconds since the epoch")
    end: float | None = Field(description="last seen (end events), seconds since the epoch")
    zones: Items[str] = Field(description="zones the object is in now")
    entered_zones: Items[str] = Field(description="every zone the object has been in")
    snapshot: SnapshotRef | None
    ts: float
    time: Time

    @model_validator(mode="after")
    def _ends_after_it_starts(self) -> Event:
        if self.end is not None and self.end < self.start:
            raise ValueError(f"end {self.end} is before start {self.start}: an object is last "
                             "seen after it is first seen")
        return self


class Count(_Payload):
    """`<prefix>/<camera>/[<zone>/]<label>/count` (retained): objects present now. The payload
    on the wire is the bare integer; this model holds it with where it came from."""

    count: int = Field(ge=0)
    label: str
    zone: str | None = None


class Drift(_Timed):
    """`<prefix>/<camera>/drift` (retained): the camera's inputs and outputs against the model's
    reference profile."""

    camera: str
    state: Literal["warming_up", "ok", "alert"]
    window_s: float
    metric: Literal["psi", "kl"]
    threshold: float
    frames: int = Field(ge=0)
    scores: Keyed[float | None] = Field(description="per statistic of the model's outputs")
    input: Keyed[float | None] = Field(description="per statistic of the frames")
    judged: Items[str] = Field(
        default_factory=list,
        description="the statistics (`scores.<name>`, `input.<name>`) that raise an alert "
                    "above the threshold (drift.alert_on); the others are reported only")
    drifted: Items[str]
    ts: float
    time: Time

    @property
    def statistics(self) -> dict[str, float | None]:
        """Every statistic by the name `drifted` gives it (`scores.<name>`, `input.<name>`)."""
        return drift_statistics(self.scores, self.input)


def drift_statistics(scores: dict[str, float | None], inputs: dict[str, float | None]
                     ) -> dict[str, float | None]:
    """A drift state's statistics by the names its `drifted` list gives them."""
    return {**{f"scores.{k}": v for k, v in scores.items()},
            **{f"input.{k}": v for k, v in inputs.items()}}


class CommandReply(_Payload):
    """`<prefix>/cmd/<command>/reply`: the device's answer to a command."""

    ok: bool
    error: str | None = None
    cameras: Items[str] | None = Field(default=None,
                                      description="the cameras the command applied to, or "
                                                  "(with an error) the device's cameras")


class Jpeg(_Payload):
    """A JPEG payload: `<prefix>/<camera>/frame` or `.../events/<id>/snapshot`."""

    data: bytes

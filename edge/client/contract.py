"""The topics of MQTT contract v1 and how a received message becomes a typed one.

`KINDS` is the one table of topics: the subscriber builds its filters from it, `parse_message`
matches topics against it, and `edge.client.asyncapi` writes docs/asyncapi.yaml from it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import BaseModel, ValidationError

from edge.client.models import (
    CameraStatus,
    CommandReply,
    Count,
    DetectionsMessage,
    DeviceStats,
    DeviceStatus,
    Drift,
    Event,
    FrameMeta,
    Jpeg,
)
from edge.errors import EdgeError
from edge.mqtt.topics import CONTRACT_VERSION, RETAINED_SNAPSHOTS
from edge.wording import validation_problems

Content = Literal["json", "jpeg", "integer"]

#: the most digits a count payload may have (any real count has a few; int() refuses 4,300+)
COUNT_DIGITS = 18
#: The largest JSON payload read (bytes). A detections message at MAX_DETECTIONS is ~1.5 MB;
#: a larger payload is refused unread, so no single message can hold up the subscriber.
MAX_JSON_BYTES = 4 * 2**20
#: The problems an invalid payload's error lists (then how many more).
PROBLEMS_SAID = 5
#: What only a device's status has: on a camera's status topic they show a prefix a level off.
DEVICE_STATUS_FIELDS = frozenset(
    name for name, field in DeviceStatus.model_fields.items()
    if field.is_required() and name not in CameraStatus.model_fields and name != "v")


class PayloadError(EdgeError):
    """A message does not follow the contract; the message names the topic and the field."""

    def __init__(self, topic: str, problem: str, retained: bool = False) -> None:
        super().__init__(f"{topic}{' (retained)' if retained else ''}: {problem}")
        self.topic, self.problem, self.retained = topic, problem, retained


class FutureVersionError(PayloadError):
    """A payload of a newer contract version than this client knows; upgrade the client."""


@dataclass(frozen=True)
class Kind:
    """One topic of the contract. `levels` follow the prefix; `{name}` levels are parameters."""

    name: str
    levels: tuple[str, ...]
    model: type[BaseModel]
    content: Content
    retained: bool
    qos: int
    summary: str

    def filter(self, prefix: str) -> str:
        """MQTT subscription filter under `prefix` (parameters become `+`)."""
        return "/".join([prefix, *("+" if p.startswith("{") else p for p in self.levels)])

    def address(self) -> str:
        """AsyncAPI channel address, e.g. `edge/{device}/{camera}/detections`."""
        return "/".join(["edge/{device}", *self.levels])

    def match(self, levels: list[str]) -> dict[str, str] | None:
        """Parameters of a topic's levels after the prefix, or None if it is not this kind."""
        if len(levels) != len(self.levels):
            return None
        found = {}
        for pattern, level in zip(self.levels, levels, strict=True):
            if pattern.startswith("{"):
                found[pattern[1:-1]] = level
            elif pattern != level:
                return None
        return found


KINDS: tuple[Kind, ...] = (
    Kind("status", ("status",), DeviceStatus, "json", True, 1,
         "Device status, republished on every (re)connect; the broker publishes `offline` as "
         "the device's Last Will"),
    Kind("stats", ("stats",), DeviceStats, "json", True, 0,
         "Periodic device statistics: FPS, latency percentiles, drops, outbox, memory; "
         "the last one, at a clean stop, once the outbox is flushed"),
    Kind("detections", ("{camera}", "detections"), DetectionsMessage, "json", False, 1,
         "Detections of one frame (at least once, through the outbox)"),
    Kind("camera_status", ("{camera}", "status"), CameraStatus, "json", True, 1,
         "A camera's source state"),
    Kind("frame", ("{camera}", "frame"), Jpeg, "jpeg", False, 0,
         "JPEG of a sampled frame (every `frames.interval_s`, optionally on detection; "
         "retained when `frames.retain`; best effort)"),
    Kind("frame_meta", ("{camera}", "frame", "meta"), FrameMeta, "json", False, 0,
         "About the last sampled frame"),
    Kind("frame_clean", ("{camera}", "frame", "clean"), Jpeg, "jpeg", False, 0,
         "The sampled frame without drawn boxes, when frames.draw is on"),
    Kind("drift", ("{camera}", "drift"), Drift, "json", True, 1,
         "Drift of the camera's inputs and outputs against the model's reference profile"),
    Kind("event", ("{camera}", "events"), Event, "json", False, 1,
         "Tracked objects' new, update and end events (at least once, through the outbox)"),
    Kind("snapshot", ("{camera}", "events", "{event_id}", "snapshot"), Jpeg, "jpeg", True, 0,
         "JPEG of an event's object at its best-scoring frame; the newest "
         f"{RETAINED_SNAPSHOTS} per camera that reached the broker stay retained, older ones "
         "are cleared (across restarts too); best effort: one made while the broker is away, "
         "or while detections back up on a slow link, is not sent later (its event still "
         "names the topic, which then holds nothing), and a broker without persistence "
         "forgets them when it restarts"),
    Kind("label_snapshot", ("{camera}", "{label}", "snapshot"), Jpeg, "jpeg", True, 0,
         "JPEG of the newest event snapshot of a label on the camera: one fixed topic per "
         "label, for Home Assistant's camera entities and dashboards (retained; best effort)"),
    Kind("count", ("{camera}", "{label}", "count"), Count, "integer", True, 1,
         "Objects of a label present now in the camera's view (sent on change, its latest "
         "value at least once and again after every reconnect)"),
    Kind("zone_count", ("{camera}", "{zone}", "{label}", "count"), Count, "integer", True, 1,
         "Objects of a label present now in a zone (as the camera's counts)"),
    Kind("command_reply", ("cmd", "{command}", "reply"), CommandReply, "json", False, 1,
         "The device's reply to a command sent on `<prefix>/cmd/<command>`"),
)

KIND_NAMES = tuple(kind.name for kind in KINDS)


@dataclass(frozen=True)
class Message:
    """A received message, typed. `payload` is the kind's model (see `KINDS`)."""

    kind: str
    topic: str
    device: str
    camera: str | None
    payload: BaseModel
    retained: bool = False
    event_id: str | None = None


def prefix_levels(prefix: str) -> tuple[int, int]:
    """(number of levels, index of the device level) of a prefix such as `edge/+` (every
    device: the `+` level) or `edge/gate-01` (one device: its last level)."""
    levels = prefix.split("/")
    return len(levels), levels.index("+") if "+" in levels else len(levels) - 1


def parse_message(prefix: str, topic: str, payload: bytes, retained: bool = False) -> Message:
    """Match `topic` against the contract and validate `payload`.

    Raises PayloadError naming the topic and the field, FutureVersionError for a `v` above
    CONTRACT_VERSION; returns None-free: a topic outside the contract is a PayloadError too."""
    count, device_at = prefix_levels(prefix)
    levels = topic.split("/")
    if len(levels) <= count or any(level not in ("+", under)
                                   for level, under in zip(prefix.split("/"), levels,
                                                           strict=False)):
        # a user check: `edge/dev-a/status` read under `edge/dev-b` as dev-a's status
        raise PayloadError(topic, f"not under the prefix {prefix}", retained)
    matched = _kind_of(levels[count:])
    if matched is None:
        raise PayloadError(topic, "not a topic of contract v1", retained)
    kind, params = matched
    try:
        model = _validate(kind, topic, payload, params)
    except PayloadError as error:
        if not retained:
            raise
        # a retained one stays on the broker, read again at every connection, until cleared
        raise type(error)(topic, error.problem, retained=True) from None
    return Message(kind.name, topic, levels[device_at], params.get("camera"), model, retained,
                   params.get("event_id"))


def misplaced_prefix(prefix: str, topic: str, payload: bytes) -> str | None:
    """What is wrong with `prefix` when `topic` breaks the contract under it but is a valid
    message under the prefix one level deeper (`edge` for `edge/+`: the device level left out)
    or shallower (`edge/gate-01/yard`: a camera added), with the fix; else None. A prefix one
    level off splits every topic at the wrong level: a device's status read as a camera's,
    its counts as zone counts. A camera's status counts only when it names the camera its
    topic does: one field, `state`, makes a valid one, so a device's malformed status under
    the right prefix would otherwise pass for a camera's one level up. A `+` in the prefix
    stands for the topic's own level in the fix (`+` alone, for devices under `edge/`: use
    `edge/+`)."""
    levels = prefix.split("/")
    topic_levels = topic.split("/")
    # the prefix as this topic fills it in: its `+` replaced by the topic's level there
    concrete = "/".join(topic_level if level == "+" else level
                        for level, topic_level in zip(levels, topic_levels, strict=False))
    tried = [("deeper", f"{concrete}/+")]
    if len(levels) > 1 and levels[-1] != "+":
        tried.append(("shallower", "/".join(levels[:-1])))
    for which, other in tried:
        try:
            message = parse_message(other, topic, payload)
        except PayloadError:
            continue
        if not _names_itself(message):
            continue
        if which == "deeper":
            return (f"{topic} is device {message.device}'s {message.kind} message: the prefix "
                    f"{prefix!r} stops before the device level; use {other} for every device "
                    f"or {concrete}/{message.device} for this one")
        every = "/".join([*levels[:-2], "+"])
        return (f"{topic} is device {message.device}'s {message.kind} message: the prefix "
                f"{prefix!r} goes a level past the device ({levels[-1]!r}); use {other} (a "
                f"prefix names a device, or {every} for every one; a camera's messages carry "
                "its name)")
    return None


def names_one_device(prefix: str) -> bool:
    """Whether `prefix` names one device under a base (`edge/gate-01`), not every one."""
    base, _, device = prefix.rpartition("/")
    return bool(base) and device != "+"


def level_check_filters(prefix: str) -> list[str]:
    """Filters beside a subscription's own that show `prefix` to be a level too deep even
    where nothing under it exists: the status of the device one level up (`edge/gate-01/
    status` for `edge/gate-01/yard`, a level that names no camera, so no topic of the device
    is under it). Read with `misplaced_prefix`; a prefix ending in `+` has none."""
    levels = prefix.split("/")
    if len(levels) < 2 or levels[-1] == "+":
        return []
    return ["/".join([*levels[:-1], "status"])]


def _names_itself(message: Message) -> bool:
    """Whether a message read under another prefix agrees with its topic where it can say."""
    if isinstance(message.payload, CameraStatus):
        return message.payload.camera == message.camera
    return True


def is_clearing(prefix: str, topic: str, payload: bytes) -> bool:
    """Whether this is a retained value being cleared, not a message: an empty payload on a
    retained kind's topic (MQTT's way to delete a retained message; the daemon clears event
    snapshots past the newest per camera, and counts and frames it no longer publishes)."""
    if payload:
        return False
    matched = _kind_of(topic.split("/")[prefix_levels(prefix)[0]:])
    return matched is not None and matched[0].retained


def _kind_of(levels: list[str]) -> tuple[Kind, dict[str, str]] | None:
    """The kind of a topic's levels after the prefix, with its parameters."""
    for kind in KINDS:
        params = kind.match(levels)
        if params is not None:
            return kind, params
    return None


def _validate(kind: Kind, topic: str, payload: bytes, params: dict[str, str]) -> BaseModel:
    if kind.content == "jpeg":
        if payload[:2] != b"\xff\xd8":
            raise PayloadError(topic, "payload is not a JPEG (no FF D8 start marker)")
        return Jpeg(data=payload)
    if kind.content == "integer":
        text = payload.decode("ascii", errors="replace").strip()
        if not (text.isascii() and text.isdigit()):
            raise PayloadError(topic, f"count: expected a non-negative integer; got {text!r}")
        if len(text) > COUNT_DIGITS:
            raise PayloadError(topic, f"count: an integer of {len(text)} digits, past any count "
                                      f"(the contract's have at most {COUNT_DIGITS})")
        return Count(count=int(text), label=params["label"], zone=params.get("zone"))
    data = _json_object(topic, payload)
    try:
        model = kind.model.model_validate(data)
    except ValidationError as exc:
        raise PayloadError(topic, validation_problems(exc, "payload", most=PROBLEMS_SAID)
                           ) from None
    named = getattr(model, "camera", None)  # detections, events...: the camera they are of
    if isinstance(model, CameraStatus):
        _check_names_its_camera(topic, model, data, params["camera"])
    elif isinstance(named, str) and "camera" in params and named != params["camera"]:
        raise PayloadError(topic, f"camera: {named!r}, but the topic is of camera "
                                  f"{params['camera']!r}")
    return model


def _json_object(topic: str, payload: bytes) -> dict[str, Any]:
    """A JSON payload's object, refused with the reason when it is none the contract sends
    (too large, not UTF-8, not JSON, nested past reason, a newer contract version)."""
    if len(payload) > MAX_JSON_BYTES:
        raise PayloadError(topic, f"payload is {len(payload) / 2**20:.1f} MiB; no JSON message "
                                  f"of the contract comes near {MAX_JSON_BYTES / 2**20:g} MiB")
    try:
        text = payload.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise PayloadError(topic, f"payload is not UTF-8 text (byte 0x{payload[exc.start]:02x} "
                                  f"at offset {exc.start}); the contract's JSON is UTF-8") from None
    if not text.strip():  # a retained value cleared on a kind that is never retained, say
        raise PayloadError(topic, "payload is empty; every message of this kind is a JSON "
                                  "object")
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise PayloadError(topic, f"payload is not JSON ({exc})") from None
    except ValueError:  # an integer past int()'s limit on digits
        raise PayloadError(topic, "payload holds an integer of over 4,300 digits (no field of "
                                  "the contract comes near that)") from None
    except RecursionError:  # `[[[[...`: deeper than the parser's stack, no payload of ours
        raise PayloadError(topic, "payload is JSON nested too deeply to read (no message of "
                                  "the contract nests more than a few levels)") from None
    if not isinstance(data, dict):
        raise PayloadError(topic, f"payload: expected a JSON object; got {type(data).__name__}")
    version = data.get("v")
    if isinstance(version, int) and version > CONTRACT_VERSION:
        raise FutureVersionError(topic, f"v: contract version {version} is newer than this "
                                        f"client's ({CONTRACT_VERSION}); upgrade edge-runtime")
    return data


def _check_names_its_camera(topic: str, status: CameraStatus, data: dict[str, Any],
                            camera: str) -> None:
    """A camera's status must be of the camera its topic names: a device's status read
    under a prefix a level too short lands on a camera's status topic, and one that says
    `failed` is a valid camera status but for its own fields."""
    if status.camera is not None and status.camera != camera:
        raise PayloadError(topic, f"camera: {status.camera!r}, but the topic is the status "
                                  f"of camera {camera!r}")
    device_fields = sorted(DEVICE_STATUS_FIELDS & data.keys())
    if status.camera is None and device_fields:
        raise PayloadError(topic, f"a device's status ({', '.join(device_fields)}) on the "
                                  f"status topic of camera {camera!r}")

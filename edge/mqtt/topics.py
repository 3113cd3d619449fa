"""Topic names of MQTT contract v1, built from one prefix (default `edge/<device_id>`)."""

from __future__ import annotations

from dataclasses import dataclass

CONTRACT_VERSION = 1

#: Event snapshots kept retained per camera; older ones are cleared with an empty retained
#: message (by the run that published them, or by the next run that finds them).
RETAINED_SNAPSHOTS = 50
#: The most detections one frame's message carries (a model's `max_detections` is bounded by
#: it): subscribers refuse a longer list at once.
MAX_DETECTIONS = 10_000
#: The QoS retained topics are read at (sweeps, a subscriber's retained kinds): their values
#: come again on every (re)connect, and Mosquitto holds at most 1000 QoS 1 messages a
#: subscriber beyond those in flight (max_queued_messages), dropping the rest unsaid (1000
#: labels' counts, 2000 discovery configs).
RETAINED_READ_QOS = 0


def topic_prefix_problem(prefix: str) -> str | None:
    """What keeps `prefix` from starting topic names, or None: wildcards, NUL, a leading $
    (the broker's own topics) or an empty level."""
    if any(char in prefix for char in "#+\0") or prefix.startswith("$"):
        return "a topic prefix cannot hold the wildcards # or +, NUL, or start with $"
    if not prefix or prefix.startswith("/") or prefix.endswith("/") or "//" in prefix:
        return "a topic prefix needs non-empty levels and no leading or trailing /"
    return None


@dataclass(frozen=True)
class Topics:
    prefix: str

    @property
    def status(self) -> str:
        return f"{self.prefix}/status"

    @property
    def stats(self) -> str:
        return f"{self.prefix}/stats"

    def camera_status(self, camera: str) -> str:
        """Retained: the camera's state (streaming, reconnecting, ...), see SourceSupervisor."""
        return f"{self.prefix}/{camera}/status"

    def detections(self, camera: str) -> str:
        return f"{self.prefix}/{camera}/detections"

    def frame(self, camera: str) -> str:
        return f"{self.prefix}/{camera}/frame"

    def frame_meta(self, camera: str) -> str:
        return f"{self.prefix}/{camera}/frame/meta"

    def frame_clean(self, camera: str) -> str:
        """The undrawn JPEG of a sample when `frames.draw` is on (pixels for labellers)."""
        return f"{self.prefix}/{camera}/frame/clean"

    def drift(self, camera: str) -> str:
        return f"{self.prefix}/{camera}/drift"

    def command(self, name: str) -> str:
        return f"{self.prefix}/cmd/{name}"

    def command_reply(self, name: str) -> str:
        return f"{self.prefix}/cmd/{name}/reply"

    def events(self, camera: str) -> str:
        return f"{self.prefix}/{camera}/events"

    def event_snapshot(self, camera: str, event_id: str) -> str:
        return f"{self.prefix}/{camera}/events/{event_id}/snapshot"

    def label_snapshot(self, camera: str, label: str) -> str:
        """The newest event snapshot of a label on the camera (one fixed topic, for Home
        Assistant's camera entities and dashboards, as the per-event ones cannot be)."""
        return f"{self.prefix}/{camera}/{label}/snapshot"

    def snapshot_camera(self, topic: str) -> str | None:
        """`<prefix>/<camera>/events/<id>/snapshot` -> camera; None for any other topic."""
        head = f"{self.prefix}/"
        parts = topic[len(head):].split("/") if topic.startswith(head) else []
        if len(parts) == 4 and parts[1] == "events" and parts[3] == "snapshot":
            return parts[0]
        return None

    def count(self, camera: str, label: str, zone: str | None = None) -> str:
        """Objects present now: `<camera>/<label>/count` or `<camera>/<zone>/<label>/count`."""
        where = f"{camera}/{zone}" if zone else camera
        return f"{self.prefix}/{where}/{label}/count"

    def kind(self, topic: str) -> str | None:
        """What a topic of this device carries, as its subscribers know it: "detections",
        "events", "counts", "camera statuses", "stats", "sampled frames", "frame metadata",
        "event snapshots" or "drift"; None for the device status, commands and other topics."""
        head = f"{self.prefix}/"
        if not topic.startswith(head):
            return None
        parts = topic[len(head):].split("/")
        if parts == ["stats"]:
            return "stats"
        if len(parts) < 2 or parts[0] == "cmd":
            return None
        if parts[-1] == "count":
            return "counts"
        if parts[-1] == "snapshot":
            return "event snapshots"
        return {("detections",): "detections", ("events",): "events",
                ("status",): "camera statuses", ("frame",): "sampled frames",
                ("frame", "clean"): "sampled frames", ("frame", "meta"): "frame metadata",
                ("drift",): "drift"}.get(tuple(parts[1:]))

    def command_name(self, topic: str) -> str | None:
        """`<prefix>/cmd/<name>` -> name; None for any other topic."""
        head = f"{self.prefix}/cmd/"
        if topic.startswith(head) and "/" not in topic[len(head):]:
            return topic[len(head):]
        return None

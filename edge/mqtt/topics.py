"""Topic names of MQTT contract v1, built from one prefix (default `edge/<device_id>`)."""

from __future__ import annotations

from dataclasses import dataclass

CONTRACT_VERSION = 1


@dataclass(frozen=True)
class Topics:
    prefix: str

    @property
    def status(self) -> str:
        return f"{self.prefix}/status"

    @property
    def stats(self) -> str:
        return f"{self.prefix}/stats"

    def detections(self, camera: str) -> str:
        return f"{self.prefix}/{camera}/detections"

    def frame(self, camera: str) -> str:
        return f"{self.prefix}/{camera}/frame"

    def frame_meta(self, camera: str) -> str:
        return f"{self.prefix}/{camera}/frame/meta"

    def command(self, name: str) -> str:
        return f"{self.prefix}/cmd/{name}"

    def command_reply(self, name: str) -> str:
        return f"{self.prefix}/cmd/{name}/reply"

    def command_name(self, topic: str) -> str | None:
        """`<prefix>/cmd/<name>` -> name; None for any other topic."""
        head = f"{self.prefix}/cmd/"
        if topic.startswith(head) and "/" not in topic[len(head):]:
            return topic[len(head):]
        return None

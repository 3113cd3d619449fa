"""Sampled frames that the broker drops without a word, said once a camera.

Mosquitto drops a message over its `message_size_limit` and acknowledges nothing wrong (MQTT
3.1.1 has no way to say so), as its ACL drops a publication this client may not make: the
subscribers saw detections and `frame/meta` but no frame, and the daemon counted every frame
as published. The daemon subscribes to a camera's frame topic just before it publishes that
camera's first frame, and unsubscribes once the frame comes back; one that has not come back
`ECHO_WAIT_S` later, on the same connection, is said with its size and the fixes. A connection
lost meanwhile leaves the check to the camera's next frame.
"""

from __future__ import annotations

import hashlib
import logging
import threading
from dataclasses import dataclass

from edge.mqtt.packet_limit import kilobytes
from edge.mqtt.permissions import ECHO_WAIT_S

log = logging.getLogger("edge.mqtt")


@dataclass(frozen=True)
class _Expected:
    digest: bytes  # of the payload: a frame retained by an earlier run is not its echo
    size: int  # payload bytes
    connection: int  # the link's connect count when it was published


def _digest(payload: bytes) -> bytes:
    return hashlib.blake2b(payload, digest_size=16).digest()


class FrameEchoes:
    """Frame topics whose first frame is being waited for, and those settled (it came back,
    or its absence was said). Thread-safe: published from the camera threads, echoed on the
    MQTT client's network thread, checked on a timer's."""

    def __init__(self, where: str) -> None:
        self._where = where  # the broker, as the connection log names it
        self._lock = threading.Lock()
        self._waiting: dict[str, _Expected] = {}
        self._settled: set[str] = set()

    def wants(self, topic: str) -> bool:
        """Whether a frame published to `topic` now should be checked."""
        with self._lock:
            return topic not in self._settled and topic not in self._waiting

    def expect(self, topic: str, payload: bytes, connection: int) -> None:
        """The frame `payload` is being published to `topic` on connection `connection`."""
        with self._lock:
            self._waiting[topic] = _Expected(_digest(payload), len(payload), connection)

    def forget(self, topic: str) -> None:
        """The frame expected on `topic` was not sent after all: the next one is checked."""
        with self._lock:
            self._waiting.pop(topic, None)

    def watches(self, topic: str) -> bool:
        """Whether messages on `topic` are this check's (none of them is a command)."""
        with self._lock:
            return topic in self._waiting

    def offer(self, topic: str, payload: bytes) -> bool:
        """A message on a watched topic: whether it is the frame waited for (the check is
        then settled, and the caller unsubscribes)."""
        with self._lock:
            expected = self._waiting.get(topic)
            if expected is None or _digest(payload) != expected.digest:
                return False
            del self._waiting[topic]
            self._settled.add(topic)
            return True

    def check(self, topic: str, connection: int, connected: bool) -> bool:
        """`ECHO_WAIT_S` after a frame went to `topic`: said if it has not come back on the
        connection it went out on (`connection`, the link's count now; `connected`: it is
        still up). Returns whether the check is over (the caller unsubscribes)."""
        with self._lock:
            expected = self._waiting.pop(topic, None)
            if expected is None:
                return False  # it came back, and the caller unsubscribed then
            if not connected or expected.connection != connection:
                return True  # the camera's next frame is checked instead
            self._settled.add(topic)
        log.warning("MQTT broker %s: the first frame published to %s (%s) has not come back "
                    "within %g s though this client subscribes to it: the broker drops it. "
                    "Either it is larger than the broker's message_size_limit (Mosquitto drops "
                    "such messages without a word): raise that limit, or lower "
                    "frames.max_height or frames.quality; or the broker's ACL denies this "
                    "client publishing there (or reading it back: then the frames do reach "
                    "subscribers, and allowing this client to read its own topics silences "
                    "this)", self._where, topic, kilobytes(expected.size), ECHO_WAIT_S)
        return True

"""Messages that the broker drops without a word, found by the first of each kind.

A publication the broker's ACL denies gets no refusal in MQTT 3.1.1: Mosquitto acknowledges
it and drops it, as it drops a message over its `message_size_limit`. The status check
(edge.mqtt.permissions) catches a device that may not write its status; a user check gave
the device leave to write its detections and status only, and its events, counts, camera
statuses, stats and frames went nowhere while its summary counted every message published.
So the first message of each kind (`Topics.kind`) is expected back: the daemon subscribes to
its topic just before publishing it, and unsubscribes once it comes back (compared by digest:
a value an earlier run left retained there is not it); one that has not come back
`ECHO_WAIT_S` later, on the same connection, is said, once a kind. A connection lost
meanwhile leaves the check to the kind's next message.
"""

from __future__ import annotations

import hashlib
import threading
from dataclasses import dataclass

from edge.mqtt.topics import Topics


@dataclass(frozen=True)
class Expected:
    """A message waited for: its kind, payload digest and size (bytes), and the link's connect
    count when it was published."""

    kind: str
    digest: bytes
    size: int
    connection: int


def _digest(payload: bytes) -> bytes:
    return hashlib.blake2b(payload, digest_size=16).digest()


class Echoes:
    """Topics whose first message is being waited for, and the kinds settled (one came back,
    or its absence was said). Thread-safe: published from the camera and sender threads,
    echoed on the MQTT client's network thread, checked on a timer's."""

    def __init__(self, topics: Topics) -> None:
        self._topics = topics
        self._lock = threading.Lock()
        self._waiting: dict[str, Expected] = {}
        self._settled: set[str] = set()  # kinds
        self.missing: list[str] = []  # kinds that did not come back, in the order found

    def wants(self, topic: str) -> bool:
        """Whether a message published to `topic` now should be checked."""
        kind = self._topics.kind(topic)
        with self._lock:
            return (kind is not None and kind not in self._settled
                    and all(e.kind != kind for e in self._waiting.values()))

    def expect(self, topic: str, payload: bytes, connection: int) -> None:
        """`payload` is being published to `topic` on connection number `connection`."""
        kind = self._topics.kind(topic)
        assert kind is not None
        with self._lock:
            self._waiting[topic] = Expected(kind, _digest(payload), len(payload), connection)

    def forget(self, topic: str) -> None:
        """The message expected on `topic` was not sent after all: the next one is checked."""
        with self._lock:
            self._waiting.pop(topic, None)

    def watches(self, topic: str) -> bool:
        """Whether messages on `topic` are this check's (none of them is a command)."""
        with self._lock:
            return topic in self._waiting

    def missing_kinds(self) -> tuple[str, ...]:
        """The kinds whose first message did not come back, in the order found."""
        with self._lock:
            return tuple(self.missing)

    def offer(self, topic: str, payload: bytes) -> bool:
        """A message on a watched topic: whether it is the one waited for (its kind is then
        settled, and the caller unsubscribes)."""
        with self._lock:
            expected = self._waiting.get(topic)
            if expected is None or _digest(payload) != expected.digest:
                return False
            del self._waiting[topic]
            self._settled.add(expected.kind)
            return True

    def check(self, topic: str, connection: int, connected: bool) -> Expected | None:
        """`ECHO_WAIT_S` after a message went to `topic`: the message, if it has not come back
        on the connection it went out on (`connection`: the link's count now; `connected`:
        that connection is still up), to be said. The caller unsubscribes either way."""
        with self._lock:
            expected = self._waiting.pop(topic, None)
            if expected is None or not connected or expected.connection != connection:
                return None  # it came back, or the kind's next message is checked instead
            self._settled.add(expected.kind)
            self.missing.append(expected.kind)
            return expected

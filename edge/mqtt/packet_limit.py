"""A broker's limit on the size of a message, learnt from the connections it closes.

Brokers limit the packets a client may send: Mosquitto's `max_packet_size`, EMQX's
`max_packet_size`, AWS IoT Core's 128 kB. Over MQTT 3.1.1 a broker cannot say why it drops a
client: it closes the connection the moment such a packet arrives. A sampled frame or an event
snapshot over the limit cost the daemon its connection each time one went out (every
`frames.interval_s`): detections waited through each reconnect, subscribers saw the device go
offline and online again, and the losses read as another client taking over the client id.

A live connection lost within `AFTER_S` of a message larger than any the broker kept a
connection up after is put down to that message; at the `CONFIRMING_LOSSES`th such loss the
limit is set `MARGIN` below the smallest of those messages (but above any message that went
through), and messages that size or larger are not sent from then on (each counted), so the
connection stays up for everything else.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

#: Seconds after a message is handed to the client within which a lost connection is put
#: down to it: the broker closes the connection as soon as it reads the packet's length.
AFTER_S = 1.0
#: Packet bytes below which a message is never taken for too large: brokers' limits are
#: larger (AWS IoT 128 kB, Azure IoT Hub 256 kB, EMQX 1 MB by default), and a broker that
#: restarted twice right after a detection would otherwise have stopped every detection.
SMALLEST_SUSPECT = 16_000
#: Losses right after the largest messages so far that make their size the limit (one may be
#: a broker restart or a network drop that came at that moment).
CONFIRMING_LOSSES = 2
#: How far below the smallest message a loss came after the limit is set, where no message
#: that large has gone through: frames and snapshots vary in size by a few percent.
MARGIN = 0.1
#: Seconds after the limit is set that one message over it is sent again, in case it was a
#: run of network drops or the broker's limit was raised; doubled after each retry that
#: costs the connection again, up to `LONGEST_RETRY_S`.
FIRST_RETRY_S = 600.0
LONGEST_RETRY_S = 86_400.0
#: An MQTT 3.1.1 PUBLISH beyond its topic and payload: the fixed header (at most 5 bytes),
#: the topic's length (2) and the packet id (2, QoS 1 and 2).
_HEADER_BYTES = 9


def packet_bytes(topic: str, payload: bytes) -> int:
    """The size of the PUBLISH packet that carries `payload` to `topic` (bytes, at most)."""
    return len(topic.encode()) + len(payload) + _HEADER_BYTES


@dataclass(frozen=True)
class Handed:
    """A message handed to the MQTT client: its packet size (bytes), topic and when
    (the clock's seconds)."""

    size: int
    topic: str
    at: float

    def words(self) -> str:
        return f"a {kilobytes(self.size)} message to {self.topic}"


@dataclass(frozen=True)
class SizeLoss:
    """A lost connection put down to the message sent just before it. `limit`: the limit this
    loss set or lowered (None: unchanged); `retry_in`: seconds to the next retry of a message
    over the limit, where there is one."""

    message: Handed
    limit: int | None
    retry_in: float | None = None
    retried: bool = False  # the message was the retry of one over the limit


def kilobytes(size: int) -> str:
    return f"{size / 1000:.1f} kB"


class PacketLimit:
    """What the broker takes, from the messages handed to it and the losses that follow.
    `allows` and `handed` are called from the publishing threads, `lost` and `connected` from
    the MQTT client's network thread."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._largest_kept = 0  # the largest message a connection stayed up `AFTER_S` after
        self._recent: Handed | None = None  # a larger one, handed under `AFTER_S` ago
        self._suspects: list[int] = []  # sizes of the messages losses came right after
        self._retry_s = FIRST_RETRY_S
        self._retry_at = 0.0  # clock() from which one message over the limit is tried
        self._lifted: int | None = None  # the limit a retry's message showed was none
        #: messages of this packet size (bytes) or more are not sent; None: no limit known
        self.limit: int | None = None
        self.refused = 0  # messages not sent for their size
        self.losses = 0  # connections lost right after the largest message yet

    def allows(self, size: int) -> bool:
        """Whether a message of `size` packet bytes may be sent (one that may not is counted
        in `refused`). Once the limit's retry is due, one message over it is let through."""
        with self._lock:
            if self.limit is None or size < self.limit:
                return True
            if self._recent is None and self._clock() >= self._retry_at:
                self._retry_at = math.inf  # until this one's outcome
                return True
            self.refused += 1
            return False

    def handed(self, size: int, topic: str) -> None:
        """A message of `size` packet bytes to `topic` is being handed to the client."""
        now = self._clock()
        with self._lock:
            self._settle(now)
            if size >= SMALLEST_SUSPECT and size > self._largest_kept and (
                    self._recent is None or size >= self._recent.size):
                self._recent = Handed(size, topic, now)

    def connected(self) -> None:
        """A new connection: what was handed on the one before cannot be kept by it."""
        with self._lock:
            self._recent = None
            if self._retry_at == math.inf:  # the retry's message went with the connection
                self._retry_at = self._clock() + self._retry_s

    def lifted(self) -> int | None:
        """The limit a message over it has since gone through (once), else None."""
        with self._lock:
            self._settle(self._clock())
            lifted, self._lifted = self._lifted, None
            return lifted

    def lost(self) -> SizeLoss | None:
        """A live connection was lost: the message it is put down to, if any."""
        now = self._clock()
        with self._lock:
            self._settle(now)
            message, self._recent = self._recent, None
            if message is None:
                return None
            self._suspects.append(message.size)
            self.losses += 1
            retried = self.limit is not None and message.size >= self.limit
            if retried:
                self._retry_s = min(LONGEST_RETRY_S, self._retry_s * 2)
                self._retry_at = now + self._retry_s
            if len(self._suspects) < CONFIRMING_LOSSES:
                return SizeLoss(message, None)
            # Sizes of one kind vary (JPEGs by a few percent): a limit at the smallest loss
            # alone was undercut by the next smaller frame, each costing a connection.
            limit = max(self._largest_kept + 1, SMALLEST_SUSPECT,
                        int(min(self._suspects) * (1 - MARGIN)))
            if self.limit is None:
                self._retry_at = now + self._retry_s
            changed = limit if self.limit is None or limit < self.limit else None
            self.limit = min(limit, self.limit or limit)
            return SizeLoss(message, changed, self._retry_at - now, retried)

    def _settle(self, now: float) -> None:
        """The recent message is kept once the connection has stayed up `AFTER_S` after it;
        losses after messages no larger are no longer put down to size, and a limit it
        reached is lifted."""
        if self._recent is None or now - self._recent.at < AFTER_S:
            return
        kept, self._recent = self._recent.size, None
        self._largest_kept = max(self._largest_kept, kept)
        self._suspects = [size for size in self._suspects if size > self._largest_kept]
        if self.limit is not None and kept >= self.limit:
            self._lifted, self.limit = self.limit, None
            self._retry_s, self._retry_at = FIRST_RETRY_S, 0.0

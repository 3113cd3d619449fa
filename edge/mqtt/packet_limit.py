"""A broker's limit on the size of a message, learnt from the connections it closes.

Brokers limit the packets a client may send: Mosquitto's `max_packet_size`, EMQX's
`max_packet_size`, AWS IoT Core's 128 kB. Over MQTT 3.1.1 a broker cannot say why it drops a
client: it closes the connection the moment such a packet arrives. A sampled frame or an event
snapshot over the limit cost the daemon its connection each time one went out (every
`frames.interval_s`): detections waited through each reconnect, subscribers saw the device go
offline and online again, and the losses read as another client taking over the client id.

A broker that restarts closes connections the same way, and at one frame a second a restart
nearly always comes within a second of the largest frame yet (a user check restarted a broker
three times: taken for a limit, frames were held back from a broker that had none). So a loss
right after the largest message yet only makes its size suspect: messages within `MARGIN` of
it are not sent (best effort, as frames are), and once a later connection has stayed up
`STABLE_S`, the next message that large is sent as a test. Lost right after that test, the
limit is set above the largest message that went through; a test that goes through clears the
suspicion. Messages at the limit or over it are not sent from then on (each counted), so the
connection stays up for everything else, and one is tried again after `FIRST_RETRY_S`, then
ever less often, in case the broker's limit was raised.
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
#: larger (AWS IoT 128 kB, Azure IoT Hub 256 kB, EMQX 1 MB by default), and detections and
#: statuses must never be held back for a broker that restarted just after one.
SMALLEST_SUSPECT = 16_000
#: Messages within this share below a suspect size are held back too: JPEGs of one camera
#: vary in size by a few percent.
MARGIN = 0.1
#: Seconds a connection must have stayed up before a suspect size is tested on it: a broker
#: restarting again and again loses every connection sooner.
STABLE_S = 10.0
#: Seconds after the limit is set that one message over it is sent again, in case the
#: broker's limit was raised; doubled after each retry that costs the connection again, up
#: to `LONGEST_RETRY_S`.
FIRST_RETRY_S = 600.0
LONGEST_RETRY_S = 86_400.0
#: An MQTT 3.1.1 PUBLISH beyond its topic and payload: the fixed header (at most 5 bytes),
#: the topic's length (2) and the packet id (2, QoS 1 and 2).
_HEADER_BYTES = 9


def packet_bytes(topic: str, payload: bytes) -> int:
    """The size of the PUBLISH packet that carries `payload` to `topic` (bytes, at most)."""
    return len(topic.encode()) + len(payload) + _HEADER_BYTES


def kilobytes(size: int) -> str:
    """A message's size in words: `46.8 kB`, or `312 bytes` under a kilobyte."""
    return f"{size / 1000:.1f} kB" if size >= 1000 else f"{size} bytes"


@dataclass(frozen=True)
class Handed:
    """A message handed to the MQTT client: its packet size (bytes), its topic, when (the
    clock's seconds) and how long its connection had been up then."""

    size: int
    topic: str
    at: float
    connection_age: float

    def words(self) -> str:
        return f"a {kilobytes(self.size)} message to {self.topic}"


@dataclass(frozen=True)
class SizeLoss:
    """A lost connection put down to the message sent just before it. `limit`: the limit this
    loss set (None: it only made the size suspect, or the limit stands); `retried`: the
    message was the retry of one over the limit, the next in `retry_in` seconds."""

    message: Handed
    limit: int | None = None
    retried: bool = False
    retry_in: float = 0.0


class PacketLimit:
    """What the broker takes, from the messages handed to it and the losses that follow.
    `allows` and `handed` are called from the publishing threads, `lost` and `connected` from
    the MQTT client's network thread."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._connected_at = clock()
        self._largest_kept = 0  # the largest message a connection stayed up `AFTER_S` after
        self._recent: Handed | None = None  # a larger one, handed under `AFTER_S` ago
        self._suspect: int | None = None  # the size a loss came right after, not tested yet
        self._retry_s = FIRST_RETRY_S
        self._retry_at = 0.0  # clock() from which one message over the limit is tried
        self._lifted: int | None = None  # the limit a retry's message showed was none
        #: messages of this packet size (bytes) or more are not sent; None: no limit known
        self.limit: int | None = None
        self.refused = 0  # messages not sent: at the limit or over it
        self.held = 0  # messages not sent: about a suspect size, before it was tested
        self.losses = 0  # connections lost right after the largest message yet

    def allows(self, size: int) -> bool:
        """Whether a message of `size` packet bytes may be sent now (one that may not is
        counted in `refused` or `held`)."""
        with self._lock:
            if self._allowed(size, self._clock()):
                return True
            if self.limit is not None:
                self.refused += 1
            else:
                self.held += 1
            return False

    def _allowed(self, size: int, now: float) -> bool:
        if self.limit is not None:
            if size < self.limit:
                return True
            if self._recent is None and now >= self._retry_at:
                self._retry_at = math.inf  # one retry at a time, until its outcome
                return True
            return False
        if self._suspect is None or size < self._suspect * (1 - MARGIN):
            return True
        # the test: a message at the suspect size, once the connection has proven stable
        return size >= self._suspect and now - self._connected_at >= STABLE_S

    def handed(self, size: int, topic: str) -> None:
        """A message of `size` packet bytes to `topic` is being handed to the client."""
        now = self._clock()
        with self._lock:
            self._settle(now)
            if size >= SMALLEST_SUSPECT and size > self._largest_kept and (
                    self._recent is None or size >= self._recent.size):
                self._recent = Handed(size, topic, now, now - self._connected_at)

    def connected(self) -> None:
        """A new connection: what was handed on the one before cannot be kept by it."""
        with self._lock:
            self._connected_at = self._clock()
            self._recent = None
            if self._retry_at == math.inf:  # the retry's message went with the connection
                self._retry_at = self._connected_at + self._retry_s

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
            self.losses += 1
            if self.limit is not None:  # the retry of a message over it
                self._retry_s = min(LONGEST_RETRY_S, self._retry_s * 2)
                self._retry_at = now + self._retry_s
                return SizeLoss(message, retried=True, retry_in=self._retry_s)
            tested = (self._suspect is not None and message.size >= self._suspect
                      and message.connection_age >= STABLE_S)
            if not tested:
                self._suspect = min(self._suspect or message.size, message.size)
                return SizeLoss(message)
            self.limit = max(SMALLEST_SUSPECT, self._largest_kept + 1)
            self._suspect = None
            self._retry_at = now + self._retry_s
            return SizeLoss(message, limit=self.limit, retry_in=self._retry_s)

    def _settle(self, now: float) -> None:
        """The recent message is kept once the connection has stayed up `AFTER_S` after it:
        a suspicion or a limit it reached is cleared."""
        if self._recent is None or now - self._recent.at < AFTER_S:
            return
        kept, self._recent = self._recent.size, None
        self._largest_kept = max(self._largest_kept, kept)
        if self._suspect is not None and kept >= self._suspect:
            self._suspect = None
        if self.limit is not None and kept >= self.limit:
            self._lifted, self.limit = self.limit, None
            self._retry_s, self._retry_at = FIRST_RETRY_S, 0.0

"""Retained state topics (counts, Home Assistant discovery configs): the latest value of each
waits to be sent, outside the outbox, and is set again after every reconnect.

A retained topic holds state, not history: the broker keeps its last value only, and a
subscriber that connects wants the value now. So a value replaced before it was sent is never
sent, and what waits is one value per topic however often it changed while the broker was
away. Kept out of the outbox, states never push detections out of it, nor the other way round:
a 1000-class classifier's zero counts (one per label, on its first frame) filled the default
1000-message outbox within 20 ms and dropped what came before them. A broker without
persistence forgets retained values when it restarts, so on every connect each topic's latest
value waits again (an empty one, which clears a topic, is not kept for that).
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import islice


@dataclass(frozen=True)
class State:
    """One retained value to send."""

    topic: str
    payload: bytes
    qos: int


class RetainedStates:
    """The values waiting to be sent, one per topic, in the order their topics first changed.
    Not thread-safe: the link calls it with its lock held."""

    def __init__(self) -> None:
        self._waiting: dict[str, State] = {}
        self._latest: dict[str, State] = {}  # every topic's latest non-empty value

    @property
    def waiting(self) -> int:
        return len(self._waiting)

    def set(self, topic: str, payload: bytes, qos: int) -> None:
        """`payload` becomes `topic`'s value to send; one still waiting is replaced (its
        topic keeps its place in line)."""
        state = State(topic, payload, qos)
        self._waiting[topic] = state
        if payload:
            self._latest[topic] = state
        else:
            self._latest.pop(topic, None)

    def set_all_again(self) -> None:
        """Every topic's latest value waits to be sent again (after a reconnect); one still
        waiting keeps its place."""
        for topic, state in self._latest.items():
            self._waiting.setdefault(topic, state)

    def take(self, limit: int) -> list[State]:
        """Up to `limit` values, oldest change first; they wait no longer (a later `set` of
        the same topic waits anew)."""
        taken = list(islice(self._waiting.values(), max(0, limit)))
        for state in taken:
            del self._waiting[state.topic]
        return taken

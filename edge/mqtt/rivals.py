"""Another daemon publishing as this device: two devices given one `device_id` (a cloned SD
card's config, a trial run beside the service).

Each overwrites the other's retained status and counts, and where they also share the client
id (`edge-<device_id>`), the broker drops one connection for the other every few seconds,
each loss reading as a network fault. The daemon subscribes to its own status topic and knows
itself by its host and start time (`host`, `started_at` in the status). Only a running daemon
can put its status there after this one has put its own:

- a status from another host or start that arrives live (not retained) in a running state:
  the other daemon publishes now (each with a client id of its own);
- the other's status found retained at `SEEN_AT` connects of this daemon, with a connection
  lost soon after connecting: a takeover (one client id), the broker sending the other's Last
  Will as it drops it. A status left by a run that has ended is found at one connect at most
  (this daemon's `online` replaces it), however the clocks are set.

The daemon that started later gives way (`edge run` exits 2, which systemd does not restart);
the other keeps running and says so once for each (a service meets every trial run).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from typing import Any

from edge.rfc3339 import utc_seconds

#: Status states of a daemon that is running (its connection up).
LIVE_STATES = ("online", "degraded")
#: Connects at which another daemon's status must be found retained (with a short session).
SEEN_AT = 2
#: How recent the short session must be when the other's status is found again (s).
CONFIRM_WITHIN_S = 30.0


@dataclass(frozen=True)
class Rival:
    """The other daemon, as its status names it."""

    host: str
    started_at: str  # RFC 3339, as the status says it
    came_first: bool  # it started before this daemon: this one gives way
    taken_over: bool = False  # told by takeovers: the two share a client id

    def describe(self, prefix: str) -> str:
        order = "before" if self.came_first else "after"
        shared = ("; they share a client id, so the broker drops one connection for the other "
                  "every few seconds" if self.taken_over else "")
        return (f"another edge daemon publishes as this device, under {prefix}/ (host "
                f"{self.host!r}, started {self.started_at}, {order} this one): each overwrites "
                f"the other's status and counts{shared}")


class RivalWatch:
    """Statuses on this device's own topic -> each rival, once confirmed. Called from the
    MQTT client's network thread only."""

    def __init__(self, own: Mapping[str, Any], clock: Callable[[], float] = time.monotonic
                 ) -> None:
        self._host, self._started_at = own.get("host"), own.get("started_at")
        self._clock = clock
        self._seen: dict[tuple[str, str], int] = {}  # retained sightings (one a connect)
        self._confirmed: set[tuple[str, str]] = set()
        self._short_loss_at: float | None = None
        #: the first confirmed rival that started before this daemon: it gives way to that one
        self.gives_way_to: Rival | None = None

    @property
    def enabled(self) -> bool:
        """Whether this daemon's status names it (host and start), so others can be told."""
        return isinstance(self._host, str) and _is_utc_time(self._started_at)

    def offer(self, payload: bytes, retained: bool) -> Rival | None:
        """A status message on this device's topic (retained: the one found at a connect);
        the rival it confirms, the first time for each (a service meets every trial run)."""
        rival = self._rival_in(payload, retained)
        if rival is None or (rival.host, rival.started_at) in self._confirmed:
            return None
        if not retained:
            return self._confirm(rival)
        key = (rival.host, rival.started_at)
        self._seen[key] = self._seen.get(key, 0) + 1
        recent = (self._short_loss_at is not None
                  and self._clock() - self._short_loss_at <= CONFIRM_WITHIN_S)
        if recent and self._seen[key] >= SEEN_AT:
            return self._confirm(replace(rival, taken_over=True))
        return None

    def short_session_lost(self) -> None:
        """A connection the broker closed soon after accepting it."""
        self._short_loss_at = self._clock()

    def _confirm(self, rival: Rival) -> Rival:
        self._confirmed.add((rival.host, rival.started_at))
        if rival.came_first and self.gives_way_to is None:
            self.gives_way_to = rival
        return rival

    def is_own(self, payload: bytes) -> bool:
        """Whether a status is this daemon's (now, or from an earlier connection)."""
        status = _status_in(payload)
        return (self.enabled and status is not None
                and (status["host"], status["started_at"]) == (self._host, self._started_at))

    def _rival_in(self, payload: bytes, retained: bool) -> Rival | None:
        status = _status_in(payload)
        if not self.enabled or status is None:
            return None
        host, started_at = status["host"], status["started_at"]
        if (host, started_at) == (self._host, self._started_at):
            return None  # this daemon's own, now or from an earlier connection
        if not retained and status.get("state") not in LIVE_STATES:
            return None  # a stop or a Last Will, said live: it is going or gone
        assert isinstance(self._host, str) and isinstance(self._started_at, str)
        # the start times as moments (their text need not sort as time: `42Z` and `42.9Z`);
        # the host breaks a tie
        came_first = ((utc_seconds(started_at), host)
                      < (utc_seconds(self._started_at), self._host))
        return Rival(host, started_at, came_first)


def _status_in(payload: bytes) -> dict[str, Any] | None:
    """A status payload that names its daemon (a string `host` and an RFC 3339 UTC
    `started_at`, as the contract has it), else None: a user check published this device's
    status with `started_at` "2026-12-05 21:23:42", which sorted before the daemon's own, and
    the daemon gave way to a daemon that did not exist."""
    try:
        status = json.loads(payload)
    except (UnicodeDecodeError, ValueError):
        return None
    if not isinstance(status, dict) or not isinstance(status.get("host"), str):
        return None
    return status if _is_utc_time(status.get("started_at")) else None


def _is_utc_time(value: Any) -> bool:
    """Whether `value` is an RFC 3339 UTC date-time."""
    if not isinstance(value, str):
        return False
    try:
        utc_seconds(value)
    except ValueError:
        return False
    return True

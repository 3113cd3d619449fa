"""SIGTERM and Ctrl-C as a stop request that a signal handler can set safely.

A handler runs on the main thread between two bytecodes, wherever that thread is. Setting a
`threading.Event` there takes the event's lock, which the main thread itself holds for a moment
inside `Event.wait`: a signal landing in that moment waits on it forever (seen under load: a
daemon that logged "received SIGTERM" and never stopped, until systemd killed it and the
outbox went unflushed). So the handler only writes an attribute, and waiting polls it.
"""

from __future__ import annotations

import logging
import signal
import time
from types import FrameType

log = logging.getLogger("edge")

#: How often `SignalStop.wait` looks at the flag: the longest a stop waits to be noticed.
POLL_S = 0.05


class SignalStop:
    """A `StopRequest` set by SIGTERM or SIGINT (or `set()`), with no lock anywhere."""

    def __init__(self) -> None:
        self._signal: str | None = None
        self._requested = False
        self._said = False

    def set(self) -> None:
        self._requested = True

    def is_set(self) -> bool:
        if self._requested and self._signal is not None and not self._said:
            self._said = True  # logged here, on the thread that waits: never in the handler
            log.info("received %s; stopping", self._signal)
        return self._requested

    def wait(self, timeout: float | None = None) -> bool:
        """True once set; False when `timeout` seconds pass first."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while not self.is_set():
            left = POLL_S if deadline is None else deadline - time.monotonic()
            if left <= 0:
                return False
            time.sleep(min(POLL_S, left))
        return True

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        self._signal = signal.Signals(signum).name
        self._requested = True


def stop_on_signals() -> SignalStop:
    """A stop request that SIGTERM and SIGINT set from now on (call on the main thread)."""
    stop = SignalStop()
    signal.signal(signal.SIGTERM, stop._handle)
    signal.signal(signal.SIGINT, stop._handle)
    return stop

"""What the daemon's supervising loop tells systemd and the journal, and how often.

The watchdog ping is the point: it is sent only while `alive` (every camera loop and the
inference thread running), so a loop that died or hangs gets the service restarted by
systemd instead of a daemon that looks fine and publishes nothing. The journal gets one line
per `summary_interval_s` that a person can read at a glance.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

from edge.sdnotify import Notifier
from edge.wording import events_among

log = logging.getLogger("edge")

#: How often `STATUS=` is refreshed (seconds); `systemctl status` shows the latest.
STATUS_S = 10.0


def summary_line(stats: dict[str, Any], rates: bool = True) -> str:
    """`gate 14.9 fps streaming, door 0.0 fps reconnecting | mqtt connected | outbox 0 queued,
    1200 published, 0 dropped` from `Daemon.stats()`; without the `rates` at start, when a
    camera's first frames say nothing of its rate (one read 183.6 fps, the next 0.0)."""
    cameras = ", ".join(
        " ".join(part for part in (name, f"{camera.get('fps', 0.0):.1f} fps" if rates else "",
                                   str(camera.get("state", ""))) if part)
        for name, camera in stats.get("cameras", {}).items())
    mqtt = stats.get("mqtt", {})
    state = mqtt.get("state") or ("connected" if mqtt.get("connected") else "disconnected")
    return (f"{cameras or 'no cameras'} | mqtt {state} | outbox {mqtt.get('queued', 0)} queued, "
            f"{mqtt.get('published', 0)} published, {mqtt.get('dropped', 0)} dropped"
            + events_among(mqtt.get("events_dropped", 0)))


class Heartbeat:
    def __init__(self, notifier: Notifier, summary_interval_s: float,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.notifier = notifier
        self._summary_s = summary_interval_s
        self._clock = clock
        now = clock()
        self._next_watchdog = self._next_status = now
        self._next_summary = now + summary_interval_s
        self._was_alive = True

    def ready(self, summary: str) -> None:
        """The cameras and the MQTT link are started."""
        self.notifier.notify("READY=1", f"STATUS={summary}")
        log.info("ready: %s", summary)
        # the broker and the cameras are usually connected a moment later: say so soon
        self._next_status = self._clock() + 1.0

    def tick(self, alive: bool, stats: Callable[[], dict[str, Any]]) -> None:
        """Call from the supervising loop, at least every second."""
        now = self._clock()
        if alive != self._was_alive:
            self._was_alive = alive
            if not alive:
                log.error("a camera loop or the inference thread has stopped: no more watchdog "
                          "pings%s", ", systemd will restart the service"
                          if self.notifier.watchdog_s else "")
        watchdog_s = self.notifier.watchdog_s
        if alive and watchdog_s is not None and now >= self._next_watchdog:
            self.notifier.notify("WATCHDOG=1")
            self._next_watchdog = now + watchdog_s / 3
        status_due = self.notifier.enabled and now >= self._next_status
        summary_due = self._summary_s > 0 and now >= self._next_summary
        if not (status_due or summary_due):
            return
        line = summary_line(stats())
        if status_due:
            self.notifier.notify(f"STATUS={line}")
            self._next_status = now + STATUS_S
        if summary_due:
            log.info("%s", line)
            self._next_summary = now + self._summary_s

    def stopping(self, summary: str) -> None:
        self.notifier.notify("STOPPING=1", f"STATUS=stopping: {summary}")

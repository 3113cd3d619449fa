"""What an earlier run left retained: the topics of retained messages under a filter.

A broker sends every retained message that matches a subscription right after its SUBACK, with
the retain flag set (live messages reach an MQTT 3.1.1 subscriber without it). So a sweep
subscribes once connected, keeps the topics of flagged, non-empty messages until none has
arrived for `quiet_s`, unsubscribes and hands the topics over. The daemon uses it to find the
event snapshots that earlier runs retained, so their number stays bounded across restarts.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

import paho.mqtt.client as mqtt

from edge.mqtt.topics import RETAINED_READ_QOS

log = logging.getLogger(__name__)


class RetainedTopics:
    """The topics of the retained, non-empty messages offered, gathered until none has
    arrived for a while (the broker sends them right after its SUBACK); thread-safe."""

    def __init__(self) -> None:
        self._topics: set[str] = set()
        self._lock = threading.Lock()
        self._last = time.monotonic()
        self._open = True

    def restart_clock(self) -> None:
        """Count the quiet from now (the subscription was just granted)."""
        with self._lock:
            self._last = time.monotonic()

    def offer(self, topic: str, payload: bytes, retain: bool) -> None:
        with self._lock:
            if not self._open:
                return
            self._last = time.monotonic()
            if retain and payload:
                self._topics.add(topic)

    def when_quiet(self, quiet_s: float, deadline: float = float("inf")) -> list[str]:
        """Wait until nothing has been offered for `quiet_s` (or until the monotonic
        `deadline`), then stop gathering and return the topics, sorted."""
        while True:
            with self._lock:
                left = min(self._last + quiet_s, deadline) - time.monotonic()
                if left <= 0:
                    self._open = False
                    return sorted(self._topics)
            time.sleep(left)


class RetainedSweep:
    """One pass over the retained messages under `topic_filter`: `begin(client)` on the first
    connection, `offer(message)` for every message; `on_topics(topics)` runs once, on the
    sweep's own thread."""

    def __init__(self, topic_filter: str, on_topics: Callable[[list[str]], None],
                 quiet_s: float = 1.0, refusal_costs: str | None = None) -> None:
        self.topic_filter = topic_filter
        self.refusal_costs = refusal_costs  # what a refused subscription loses (None: unsaid)
        self._on_topics = on_topics
        self._quiet_s = quiet_s
        self._gathered = RetainedTopics()
        self.begun = False

    def begin(self, client: mqtt.Client) -> int | None:
        """Subscribe and start gathering; returns the subscription's message id (None where
        paho could not send it)."""
        self.begun = True
        self._gathered.restart_clock()
        _, mid = client.subscribe(self.topic_filter, qos=RETAINED_READ_QOS)
        threading.Thread(target=self._finish_when_quiet, args=(client,),
                         name="mqtt-retained-sweep", daemon=True).start()
        return mid

    def offer(self, message: mqtt.MQTTMessage) -> bool:
        """Whether the message was the sweep's (then nobody else should handle it)."""
        if not mqtt.topic_matches_sub(self.topic_filter, message.topic):
            return False
        self._gathered.offer(message.topic, bytes(message.payload), bool(message.retain))
        return True

    def _finish_when_quiet(self, client: mqtt.Client) -> None:
        topics = self._gathered.when_quiet(self._quiet_s)
        client.unsubscribe(self.topic_filter)
        log.debug("%d retained messages under %s", len(topics), self.topic_filter)
        try:
            self._on_topics(topics)
        except Exception:  # thread boundary: a failed sweep must not go unnoticed
            log.exception("handling the retained messages under %s failed", self.topic_filter)

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


class RetainedSweep:
    """One pass over the retained messages under `topic_filter`: `begin(client)` on the first
    connection, `offer(message)` for every message; `on_topics(topics)` runs once, on the
    sweep's own thread."""

    def __init__(self, topic_filter: str, on_topics: Callable[[list[str]], None],
                 quiet_s: float = 1.0) -> None:
        self.topic_filter = topic_filter
        self._on_topics = on_topics
        self._quiet_s = quiet_s
        self._topics: list[str] = []
        self._lock = threading.Lock()
        self._last = 0.0
        self._gathering = False
        self.begun = False

    def begin(self, client: mqtt.Client) -> None:
        self.begun = self._gathering = True
        self._last = time.monotonic()
        client.subscribe(self.topic_filter, qos=RETAINED_READ_QOS)
        threading.Thread(target=self._finish_when_quiet, args=(client,),
                         name="mqtt-retained-sweep", daemon=True).start()

    def offer(self, message: mqtt.MQTTMessage) -> bool:
        """Whether the message was the sweep's (then nobody else should handle it)."""
        if not mqtt.topic_matches_sub(self.topic_filter, message.topic):
            return False
        with self._lock:
            if not self._gathering:
                return True
            self._last = time.monotonic()
            if message.retain and message.payload:
                self._topics.append(message.topic)
        return True

    def _finish_when_quiet(self, client: mqtt.Client) -> None:
        while True:
            with self._lock:
                left = self._last + self._quiet_s - time.monotonic()
                if left <= 0:
                    self._gathering = False
                    topics = sorted(set(self._topics))
                    break
            time.sleep(left)
        client.unsubscribe(self.topic_filter)
        log.debug("%d retained messages under %s", len(topics), self.topic_filter)
        try:
            self._on_topics(topics)
        except Exception:  # thread boundary: a failed sweep must not go unnoticed
            log.exception("handling the retained messages under %s failed", self.topic_filter)

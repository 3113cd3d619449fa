"""A plain paho subscriber that records everything under a prefix, for the MQTT tests."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion


@dataclass
class Received:
    topic: str
    payload: bytes
    retain: bool
    arrived: float = field(default_factory=time.monotonic)

    def json(self) -> Any:
        return json.loads(self.payload)


@dataclass
class Watcher:
    port: int
    topic_filter: str
    messages: list[Received] = field(default_factory=list)
    #: 1, or 0 for more than ~1000 retained messages: Mosquitto holds at most 1000 QoS 1
    #: messages a subscriber beyond those in flight (max_queued_messages) and drops the rest
    qos: int = 1

    def __post_init__(self) -> None:
        self._lock = threading.Lock()
        self._subscribed = threading.Event()
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2)
        self.client.on_connect = lambda c, *a: c.subscribe(self.topic_filter, qos=self.qos)
        self.client.on_subscribe = lambda *a: self._subscribed.set()
        self.client.on_message = self._on_message

    def _on_message(self, client: mqtt.Client, userdata: Any, message: mqtt.MQTTMessage) -> None:
        with self._lock:
            self.messages.append(Received(message.topic, message.payload, bool(message.retain)))

    def __enter__(self) -> Watcher:
        self.client.connect("127.0.0.1", self.port)
        self.client.loop_start()
        assert self._subscribed.wait(5), "watcher could not subscribe"
        return self

    def __exit__(self, *exc: object) -> None:
        self.client.disconnect()
        self.client.loop_stop()

    def on(self, suffix: str) -> list[Received]:
        with self._lock:
            return [m for m in self.messages if m.topic.endswith(suffix)]

    def wait_for(self, predicate: Callable[[], bool], timeout: float, what: str) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if predicate():
                return
            time.sleep(0.05)
        raise AssertionError(f"timed out after {timeout} s waiting for {what}")


def retained_status(port: int, prefix: str, timeout: float = 5.0) -> dict[str, Any]:
    """Connect afresh and read the retained status, as a late subscriber would."""
    with Watcher(port, f"{prefix}/status") as watcher:
        watcher.wait_for(lambda: any(m.retain for m in watcher.on("/status")), timeout,
                         "a retained status")
        return dict([m for m in watcher.on("/status") if m.retain][-1].json())

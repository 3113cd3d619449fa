"""A subscriber for the people watching the topics: detections and status under one prefix."""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from edge.errors import InputError

log = logging.getLogger(__name__)

Handler = Callable[[str, dict[str, Any]], None]


class TopicSubscriber:
    """Subscribes to `<prefix>/+/detections` and `<prefix>/status` (prefix may hold `+`) and
    calls the handlers with (topic, decoded JSON). Messages that are not JSON are counted."""

    def __init__(self, url: str, prefix: str, on_detections: Handler,
                 on_status: Handler | None = None, client_id: str = "") -> None:
        parts = urlsplit(url)
        if parts.scheme not in ("mqtt", "mqtts") or not parts.hostname:
            raise InputError(f"broker URL {url!r} must look like mqtt://host:port")
        self._host, self._port = parts.hostname, parts.port or 1883
        self.prefix = prefix
        self._on_detections = on_detections
        self._on_status = on_status
        self.received = 0
        self.malformed = 0
        self.subscribed = threading.Event()
        self._client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id)
        if parts.scheme == "mqtts":
            self._client.tls_set()
        if parts.username:
            self._client.username_pw_set(parts.username, parts.password)
        self._client.on_connect = self._connected
        self._client.on_subscribe = lambda *args: self.subscribed.set()
        self._client.on_message = self._message

    def start(self) -> None:
        self._client.connect_async(self._host, self._port, keepalive=30)
        self._client.loop_start()

    def stop(self) -> None:
        self._client.disconnect()
        self._client.loop_stop()

    def _connected(self, client: mqtt.Client, userdata: Any, flags: Any, reason: Any,
                   properties: Any) -> None:
        client.subscribe([(f"{self.prefix}/+/detections", 1), (f"{self.prefix}/status", 1)])

    def _message(self, client: mqtt.Client, userdata: Any, message: mqtt.MQTTMessage) -> None:
        try:
            payload = json.loads(message.payload)
        except (UnicodeDecodeError, json.JSONDecodeError):
            self.malformed += 1
            log.warning("ignoring a message on %s that is not JSON", message.topic)
            return
        if message.topic.endswith("/status"):
            if self._on_status is not None:
                self._on_status(message.topic, payload)
        else:
            self.received += 1
            self._on_detections(message.topic, payload)

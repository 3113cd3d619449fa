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
    """Subscribes under `prefix` (which may hold `+`, e.g. `edge/+` for every device) and calls
    the handlers with (topic, payload): decoded JSON for detections, status, stats and frame
    meta; JPEG bytes for frames. Only topics with a handler are subscribed. Messages that
    should be JSON but are not are counted and skipped."""

    def __init__(self, url: str, prefix: str, on_detections: Handler,
                 on_status: Handler | None = None, client_id: str = "",
                 on_stats: Handler | None = None,
                 on_frame: Callable[[str, bytes], None] | None = None,
                 on_frame_meta: Handler | None = None) -> None:
        parts = urlsplit(url)
        if parts.scheme not in ("mqtt", "mqtts") or not parts.hostname:
            raise InputError(f"broker URL {url!r} must look like mqtt://host:port")
        self._host, self._port = parts.hostname, parts.port or 1883
        self.prefix = prefix
        self._json_handlers: dict[str, Handler | None] = {
            "detections": on_detections, "status": on_status, "stats": on_stats,
            "frame/meta": on_frame_meta}
        self._on_frame = on_frame
        self.received = 0  # detection messages
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

    def _filters(self) -> list[tuple[str, int]]:
        wanted = [(f"{self.prefix}/+/detections", 1)]
        if self._json_handlers["status"] is not None:
            wanted.append((f"{self.prefix}/status", 1))
        if self._json_handlers["stats"] is not None:
            wanted.append((f"{self.prefix}/stats", 0))
        if self._on_frame is not None:
            wanted.append((f"{self.prefix}/+/frame", 0))
        if self._json_handlers["frame/meta"] is not None:
            wanted.append((f"{self.prefix}/+/frame/meta", 0))
        return wanted

    def _connected(self, client: mqtt.Client, userdata: Any, flags: Any, reason: Any,
                   properties: Any) -> None:
        client.subscribe(self._filters())

    @staticmethod
    def kind_of(topic: str) -> str:
        if topic.endswith("/frame/meta"):
            return "frame/meta"
        return topic.rsplit("/", 1)[-1]

    def _message(self, client: mqtt.Client, userdata: Any, message: mqtt.MQTTMessage) -> None:
        kind = self.kind_of(message.topic)
        if kind == "frame":
            if self._on_frame is not None:
                self._on_frame(message.topic, bytes(message.payload))
            return
        handler = self._json_handlers.get(kind)
        if handler is None:
            return
        try:
            payload = json.loads(message.payload)
        except (UnicodeDecodeError, json.JSONDecodeError):
            self.malformed += 1
            log.warning("ignoring a message on %s that is not JSON", message.topic)
            return
        if kind == "detections":
            self.received += 1
        handler(message.topic, payload)

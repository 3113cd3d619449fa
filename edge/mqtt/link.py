"""The daemon's MQTT link: owns the topic prefix, the connection and the detection outbox.

Publishing never blocks the caller. Detection messages go into a bounded outbox (oldest dropped
and counted when full); a sender thread hands them to paho while connected, keeping at most
`WINDOW` unacknowledged. paho resends unacknowledged QoS 1 messages after a reconnect, so
detections are delivered at least once across a broker outage. Frames and stats are best effort:
published only while connected.
"""

from __future__ import annotations

import json
import logging
import ssl
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.reasoncodes import ReasonCode

from edge.config import MqttConfig
from edge.mqtt.topics import Topics

log = logging.getLogger(__name__)

#: Messages handed to paho and not yet acknowledged, at most.
WINDOW = 100


@dataclass(frozen=True)
class _Message:
    topic: str
    payload: bytes
    qos: int
    retain: bool


@dataclass
class LinkCounters:
    published: int = 0  # detection messages acknowledged by the broker (QoS 1) or sent (QoS 0)
    dropped: int = 0  # detection messages dropped because the outbox was full
    connects: int = 0


class MqttLink:
    """Connection to the broker with Last Will, retained status and a non-blocking outbox."""

    def __init__(self, settings: MqttConfig, topics: Topics, client_id: str,
                 status: Callable[[str], dict[str, Any]]) -> None:
        """`status(state)` builds the status payload for "online", "offline" or "stopped"."""
        self.settings = settings
        self.topics = topics
        self._status = status
        self._outbox: deque[_Message] = deque()
        self._cond = threading.Condition()
        self._in_flight: dict[int, mqtt.MQTTMessageInfo] = {}
        self._connected = False
        self._stopping = False
        self.counters = LinkCounters()
        self._commands: dict[str, Callable[[bytes], dict[str, Any]]] = {}
        self._client = self._make_client(client_id)
        self._sender = threading.Thread(target=self._send_loop, name="mqtt-sender", daemon=True)

    def _make_client(self, client_id: str) -> mqtt.Client:
        client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id,
                             protocol=mqtt.MQTTv311, clean_session=True)
        if self.settings.username:
            client.username_pw_set(self.settings.username, self.settings.password)
        if self.settings.tls:
            client.tls_set(ca_certs=str(self.settings.ca_file) if self.settings.ca_file else None,
                           cert_reqs=ssl.CERT_REQUIRED)
        client.reconnect_delay_set(min_delay=max(1, round(self.settings.reconnect_min_s)),
                                   max_delay=max(1, round(self.settings.reconnect_max_s)))
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_publish = self._on_publish
        client.on_message = self._on_message
        return client

    @staticmethod
    def _json(payload: dict[str, Any]) -> bytes:
        return json.dumps(payload, separators=(",", ":")).encode()

    # -- lifecycle -------------------------------------------------------------------------

    def start(self) -> None:
        """Connect in the background; an unreachable broker is retried with backoff, forever."""
        self._client.will_set(self.topics.status, self._json(self._status("offline")), qos=1,
                              retain=True)
        self._client.connect_async(self.settings.host, self.settings.port,
                                   keepalive=self.settings.keepalive_s)
        self._client.loop_start()
        self._sender.start()

    def stop(self, final_state: str = "stopped", timeout: float = 5.0) -> bool:
        """Flush the outbox (up to `timeout` s), publish the final retained status, then
        disconnect cleanly (so the broker does not send the Last Will).

        Returns True when every queued detection message was acknowledged."""
        deadline = time.monotonic() + timeout
        flushed = self.flush(timeout)
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
        self._sender.join(timeout=1.0)
        if self._connected:
            info = self._client.publish(self.topics.status, self._json(self._status(final_state)),
                                        qos=1, retain=True)
            info.wait_for_publish(max(0.1, deadline - time.monotonic()))
        self._client.disconnect()
        self._client.loop_stop()
        return flushed

    def flush(self, timeout: float) -> bool:
        """Wait until the outbox is empty and everything sent is acknowledged."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while self._outbox or self._prune_in_flight():
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._cond.wait(min(remaining, 0.1))
            return True

    def _prune_in_flight(self) -> int:
        """Count acknowledged messages whose callback raced their registration; call with the
        lock held. Returns how many remain unacknowledged."""
        done = [mid for mid, info in self._in_flight.items() if info.is_published()]
        for mid in done:
            del self._in_flight[mid]
        self.counters.published += len(done)
        return len(self._in_flight)

    @property
    def connected(self) -> bool:
        return self._connected

    @property
    def outbox_depth(self) -> int:
        with self._cond:
            return len(self._outbox) + len(self._in_flight)

    # -- publishing ------------------------------------------------------------------------

    def publish_detections(self, camera: str, payload: dict[str, Any]) -> None:
        """Queue a detections message (at least once; never blocks)."""
        self._enqueue(_Message(self.topics.detections(camera), self._json(payload),
                               self.settings.qos, False))

    def publish_json(self, topic: str, payload: dict[str, Any], qos: int = 0,
                     retain: bool = False) -> bool:
        """Best effort: dropped while disconnected. Returns whether it was handed to paho."""
        return self.publish_best_effort(topic, self._json(payload), qos, retain)

    def publish_best_effort(self, topic: str, payload: bytes, qos: int = 0,
                            retain: bool = False) -> bool:
        if not self._connected:
            return False
        return self._client.publish(topic, payload, qos=qos, retain=retain).rc == \
            mqtt.MQTT_ERR_SUCCESS

    def _enqueue(self, message: _Message) -> None:
        with self._cond:
            if len(self._outbox) >= self.settings.outbox_size:
                self._outbox.popleft()
                self.counters.dropped += 1
            self._outbox.append(message)
            self._cond.notify_all()

    def _send_loop(self) -> None:
        while True:
            with self._cond:
                while not (self._stopping or (self._connected and self._outbox
                                              and self._prune_in_flight() < WINDOW)):
                    self._cond.wait(0.1)
                if self._stopping:
                    return
                batch = [self._outbox.popleft()
                         for _ in range(min(len(self._outbox), WINDOW - len(self._in_flight)))]
            for message in batch:
                info = self._client.publish(message.topic, message.payload, qos=message.qos,
                                            retain=message.retain)
                with self._cond:
                    if info.is_published():
                        self.counters.published += 1
                    else:
                        self._in_flight[info.mid] = info
                    self._cond.notify_all()

    # -- commands --------------------------------------------------------------------------

    def on_command(self, name: str, handler: Callable[[bytes], dict[str, Any]]) -> None:
        """Serve `<prefix>/cmd/<name>`; the handler's result is published on `.../reply`."""
        self._commands[name] = handler

    def _on_message(self, client: mqtt.Client, userdata: Any, message: mqtt.MQTTMessage) -> None:
        name = self.topics.command_name(message.topic)
        handler = self._commands.get(name or "")
        if handler is None:
            return
        reply = handler(bytes(message.payload))
        self.publish_json(self.topics.command_reply(name or ""), reply, qos=1)

    # -- paho callbacks (run on paho's network thread) ---------------------------------------

    def _on_connect(self, client: mqtt.Client, userdata: Any, flags: Any, reason: ReasonCode,
                    properties: Any) -> None:
        if reason.is_failure:
            log.warning("MQTT broker %s refused the connection: %s", self.settings.url, reason)
            return
        log.info("connected to MQTT broker %s", self.settings.url)
        client.publish(self.topics.status, self._json(self._status("online")), qos=1, retain=True)
        for name in self._commands:
            client.subscribe(self.topics.command(name), qos=1)
        with self._cond:
            self._connected = True
            self.counters.connects += 1
            self._cond.notify_all()

    def _on_disconnect(self, client: mqtt.Client, userdata: Any, flags: Any, reason: ReasonCode,
                       properties: Any) -> None:
        with self._cond:
            was_connected, self._connected = self._connected, False
        if was_connected and not self._stopping:
            log.warning("lost the MQTT broker %s (%s); reconnecting with backoff",
                        self.settings.url, reason)

    def _on_publish(self, client: mqtt.Client, userdata: Any, mid: int, reason: ReasonCode,
                    properties: Any) -> None:
        with self._cond:
            if self._in_flight.pop(mid, None) is not None:
                self.counters.published += 1
            self._cond.notify_all()

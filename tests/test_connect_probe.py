"""Why a broker closes the daemon's connection before any answer: its retained Last Will
refused (Mosquitto's retain_available false), a TLS listener given plain MQTT, a broker at its
max_connections; named as such, not as a port that may not be MQTT's (a user check), against
a real Mosquitto."""

from __future__ import annotations

import logging
import socket
import subprocess
import threading
import time

from edge.config import MqttConfig
from edge.mqtt.connect_probe import connect_packet, refusal
from edge.mqtt.link import MqttLink
from edge.mqtt.topics import Topics
from tests.conftest import Mosquitto, make_mosquitto, mosquitto_binary


def test_a_broker_without_retained_messages_is_found_and_said(tmp_path, caplog) -> None:
    broker = make_mosquitto(tmp_path, settings="retain_available false\n")
    broker.start()
    settings = MqttConfig(url=broker.url, reconnect_min_s=1, reconnect_max_s=1)
    link = MqttLink(settings, Topics("edge/t"), "edge-test", lambda state: {"state": state})
    try:
        assert refusal("127.0.0.1", broker.port) == "will"
        said = _failures_until(link, caplog, "retain_available false")
        # the first failure waits for the probe (a user check: it said "is it an MQTT port?")
        assert ("the broker closes the connection on this client's CONNECT, whose Last Will "
                "(the device's `offline` status) is retained at QoS 1, though it answers one "
                "without a will") in said[0]
        assert "(1 failed attempt so far" in said[0]
        assert not any("is it an MQTT port?" in line for line in said), said
        assert link.counters.connects == 0
    finally:
        link.stop(timeout=0)
        broker.stop()


def test_a_broker_that_takes_the_will_is_not_taken_for_one_and_a_silent_closer_is_told_apart(
        mosquitto) -> None:
    assert refusal("127.0.0.1", mosquitto.port) is None
    with socket.create_server(("127.0.0.1", 0)) as server:  # reads a request, then hangs up
        def serve() -> None:
            for _ in range(2):
                connection, _ = server.accept()
                with connection:
                    connection.recv(100)
        threading.Thread(target=serve, daemon=True).start()
        # it closes without a byte and speaks no TLS: said as every connection closed
        assert refusal("127.0.0.1", server.getsockname()[1], timeout=2) == \
            "closes_every_connection"


def test_a_broker_at_its_max_connections_is_named_as_one(tmp_path, caplog) -> None:
    """It read "is it an MQTT port? a TLS listener wants mqtts://"."""
    broker = make_mosquitto(tmp_path, settings="max_connections 1\n")
    _start_without_a_readiness_connection(broker)
    settings = MqttConfig(url=broker.url, reconnect_min_s=1, reconnect_max_s=1)
    link = MqttLink(settings, Topics("edge/t"), "edge-test", lambda state: {"state": state})
    holders = [socket.create_connection(("127.0.0.1", broker.port))]  # the one allowed
    try:
        holders[0].sendall(connect_packet("holder", None))
        assert holders[0].recv(4)[:1] == b"\x20"
        said = _failures_until(link, caplog, "max_connections")
        assert ("the broker closes every new connection before answering, a plain CONNECT too: "
                "it may be at its limit of connections (Mosquitto's max_connections)") in said[0]
        assert not any("TLS listener" in line for line in said), said
    finally:
        for holder in holders:
            holder.close()
        link.stop(timeout=0)
        broker.stop()


def _start_without_a_readiness_connection(broker: Mosquitto) -> None:
    """Started as `Mosquitto.start` does, ready once its log says so: Mosquitto 2.0.11 lets
    one more client past `max_connections` for each connection closed before its CONNECT,
    which the fixture's readiness check is."""
    with broker.log.open("ab") as log:
        broker.process = subprocess.Popen([mosquitto_binary(), "-c", str(broker.config)],
                                          stdout=subprocess.DEVNULL, stderr=log)
    deadline = time.monotonic() + 10
    while b" running" not in broker.log.read_bytes():
        assert time.monotonic() < deadline and broker.process.poll() is None, \
            broker.log.read_text()
        time.sleep(0.05)


def _failures_until(link: MqttLink, caplog, words: str) -> list[str]:
    """The link's failed attempts, as said, from its start until one says `words`."""
    with caplog.at_level(logging.WARNING, logger="edge.mqtt"):
        link.start()
        deadline = time.monotonic() + 15
        while words not in caplog.text:
            assert time.monotonic() < deadline, caplog.text
            time.sleep(0.1)
        link.stop(timeout=0)
    return [r.getMessage() for r in caplog.records if "failed attempt" in r.getMessage()]

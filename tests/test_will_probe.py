"""A broker that refuses the daemon's retained Last Will (Mosquitto's retain_available false)
is named as such, not as a port that is not MQTT's (a user check), against a real Mosquitto."""

from __future__ import annotations

import logging
import socket
import threading
import time

from edge.config import MqttConfig
from edge.mqtt.link import MqttLink
from edge.mqtt.topics import Topics
from edge.mqtt.will_probe import refuses_retained_will
from tests.conftest import make_mosquitto


def test_a_broker_without_retained_messages_is_found_and_said(tmp_path, caplog) -> None:
    broker = make_mosquitto(tmp_path, settings="retain_available false\n")
    broker.start()
    settings = MqttConfig(url=broker.url, reconnect_min_s=1, reconnect_max_s=1)
    link = MqttLink(settings, Topics("edge/t"), "edge-test", lambda state: {"state": state})
    try:
        assert refuses_retained_will("127.0.0.1", broker.port)
        with caplog.at_level(logging.WARNING, logger="edge.mqtt"):
            link.start()
            deadline = time.monotonic() + 15
            while "retain_available false" not in caplog.text:
                assert time.monotonic() < deadline, caplog.text
                time.sleep(0.1)
            link.stop(timeout=0)
        said = [r.getMessage() for r in caplog.records if "failed attempt" in r.getMessage()]
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


def test_a_broker_that_takes_the_will_and_a_port_that_is_not_mqtt_are_not_taken_for_one(
        mosquitto) -> None:
    assert not refuses_retained_will("127.0.0.1", mosquitto.port)
    with socket.create_server(("127.0.0.1", 0)) as server:  # reads a request, then hangs up
        def serve() -> None:
            for _ in range(2):
                connection, _ = server.accept()
                with connection:
                    connection.recv(100)
        threading.Thread(target=serve, daemon=True).start()
        assert not refuses_retained_will("127.0.0.1", server.getsockname()[1], timeout=2)

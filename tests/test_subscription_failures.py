"""Why a subscriber could not subscribe, said at the first failed attempt (real sockets and a
real Mosquitto), instead of after the whole connect timeout."""

from __future__ import annotations

import logging
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator

import pytest

from edge.broker import free_port
from edge.mqtt.subscriber import BrokerSubscription, failure_fix
from tests.conftest import Mosquitto
from tests.mqtt_tls import login_mosquitto

TIMEOUT_S = 20.0  # far longer than any answer below takes: a wait that runs out fails the test


def failure_of(url: str) -> str | None:
    subscription = BrokerSubscription(url, [("edge/+/status", 1)], lambda *_: None)
    subscription.start()
    try:
        return subscription.subscription_failure(TIMEOUT_S)
    finally:
        subscription.stop()


@pytest.fixture
def not_mqtt() -> Iterator[int]:
    """A TCP port that accepts connections and closes them at once, as a web server might."""
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(0.2)
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                connection, _ = listener.accept()
            except TimeoutError:
                continue
            connection.close()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield listener.getsockname()[1]
    stop.set()
    thread.join()
    listener.close()


def test_nothing_listening_is_said_at_once():
    port = free_port()
    failure = failure_of(f"mqtt://127.0.0.1:{port}")
    assert failure == "connection refused: is the broker running and listening on that port?"


def test_a_port_that_is_not_mqtt_is_named(not_mqtt):
    failure = failure_of(f"mqtt://127.0.0.1:{not_mqtt}")
    assert failure is not None and failure.startswith(
        "the broker closed the connection before any MQTT answer (")  # the URL says where
    assert failure.endswith("is it an MQTT port? a TLS listener wants mqtts:// in --mqtt")
    assert failure_fix(failure) is None  # a second hint ("check --mqtt: host and port") too


def test_a_server_that_takes_the_connection_and_says_nothing_is_named():
    """A web or RTSP server waits for its own request: paho's attempt only times out, which
    said "no answer within 10 s" whatever the port was."""
    with socket.create_server(("127.0.0.1", 0)) as silent:
        port = silent.getsockname()[1]
        subscription = BrokerSubscription(f"mqtt://127.0.0.1:{port}", [("edge/+/status", 1)],
                                          lambda *_: None)
        subscription.start()
        try:
            failure = subscription.subscription_failure(1.0)
        finally:
            subscription.stop()
    assert failure == ("something took the connection but gave no MQTT answer within 1 s (is "
                       "it an MQTT port? a web or RTSP server waits like this)")
    assert failure_fix(failure) == ("check --mqtt: host and port (mqtt:// defaults to 1883, "
                                    "mqtts:// to 8883)")


def test_tls_to_a_plain_port_is_named(not_mqtt):
    failure = failure_of(f"mqtts://127.0.0.1:{not_mqtt}")
    # the reset comes as an SSL EOF or as a connection reset, as the timing falls
    assert failure is not None and "hung up during the" in failure
    assert "is it an MQTT TLS port?" in failure


@pytest.fixture
def closed_broker(tmp_path) -> Iterator[Mosquitto]:
    """A Mosquitto that lets in only user `viewer` with password `s3cret`."""
    broker = login_mosquitto(tmp_path, "viewer", "s3cret")
    broker.start()
    yield broker
    broker.stop()


def test_a_broker_that_refuses_the_client_says_why_and_what_to_do(closed_broker):
    failure = failure_of(closed_broker.url)
    assert failure == ("not authorized: the broker wants a login and none is given; set the "
                       "user (USER@ before the host in --mqtt) and the password "
                       "($EDGE_MQTT_PASSWORD)")
    with_user = failure_of(f"mqtt://viewer:wrong@127.0.0.1:{closed_broker.port}")
    assert with_user == "not authorized: check the user 'viewer' and the password (in --mqtt)"
    assert failure_fix(failure) is None  # the cause says what to do
    assert "check --mqtt" in (failure_fix("127.0.0.1:1: Connection refused") or "")


def test_a_user_in_the_url_takes_the_password_from_the_environment(closed_broker, monkeypatch):
    url = f"mqtt://viewer@127.0.0.1:{closed_broker.port}"
    monkeypatch.setenv("EDGE_MQTT_PASSWORD", "wrong")
    assert failure_of(url) == ("not authorized: check the user 'viewer' and the password "
                               "($EDGE_MQTT_PASSWORD)")
    monkeypatch.setenv("EDGE_MQTT_PASSWORD", "s3cret")
    assert failure_of(url) is None
    monkeypatch.delenv("EDGE_MQTT_PASSWORD")  # an operator's check: "not authorized" alone
    assert failure_of(url) == ("not authorized: the user came without a password, and "
                               "$EDGE_MQTT_PASSWORD is not set; set it to that user's password")
    # a user check: the password set, the user left out of the URL: it went unsent, unsaid
    monkeypatch.setenv("EDGE_MQTT_PASSWORD", "s3cret")
    assert failure_of(closed_broker.url) == (
        "not authorized: the broker wants a login and none is given; set the user (USER@ "
        "before the host in --mqtt) and the password ($EDGE_MQTT_PASSWORD); "
        "$EDGE_MQTT_PASSWORD is set, but is sent only with a user")


def test_a_password_in_the_url_comes_before_the_environments_which_is_said(
        closed_broker, monkeypatch, caplog):
    """A user check: a wrong password in the URL, the right one in $EDGE_MQTT_PASSWORD: the URL's
    was sent without a word, and "not authorized" blamed $EDGE_MQTT_PASSWORD."""
    monkeypatch.setenv("EDGE_MQTT_PASSWORD", "s3cret")
    failure = failure_of(f"mqtt://viewer:wrong@127.0.0.1:{closed_broker.port}")
    assert failure == "not authorized: check the user 'viewer' and the password (in --mqtt)"
    assert "$EDGE_MQTT_PASSWORD is set but not used: the password in --mqtt comes first" \
        in caplog.text
    assert "s3cret" not in caplog.text and "wrong" not in caplog.text
    caplog.clear()
    assert failure_of(f"mqtt://viewer:s3cret@127.0.0.1:{closed_broker.port}") is None
    assert "not used" not in caplog.text  # the same password twice


def test_monitor_says_how_to_give_credentials(closed_broker):
    result = subprocess.run([sys.executable, "-m", "edge", "monitor", "--mqtt", closed_broker.url,
                             "--seconds", "30"], capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    assert result.stderr.lower().count("not authorized") == 1  # said once, in the error
    assert "the password ($EDGE_MQTT_PASSWORD)" in result.stderr
    assert "WARNING" not in result.stderr  # the error says it; the tool does not retry


def test_a_reachable_broker_subscribes(mosquitto):
    assert failure_of(mosquitto.url) is None



def test_a_broker_without_mqtt_5_is_not_a_failure():
    """amqtt answers MQTT 5 with "unsupported protocol" and closes; the subscription retries
    with MQTT 3.1.1, and that close is not reported as the first attempt's failure."""
    from edge.broker import EmbeddedBroker

    broker = EmbeddedBroker().start()
    try:
        subscription = BrokerSubscription(broker.url, [("edge/+/status", 1)], lambda *_: None)
        subscription.start()
        try:
            assert subscription.subscription_failure(TIMEOUT_S) is None
            assert subscription.protocol == 4  # MQTT 3.1.1
        finally:
            subscription.stop()
    finally:
        broker.stop()


def test_a_client_told_the_broker_speaks_only_mqtt_311_does_not_try_mqtt_5(caplog):
    """The demo's own subscriber and its embedded broker: no MQTT 5 attempt, no downgrade."""
    from edge.broker import EmbeddedBroker

    broker = EmbeddedBroker().start()
    try:
        subscription = BrokerSubscription(broker.url, [("edge/+/status", 1)], lambda *_: None,
                                          mqtt5=EmbeddedBroker.MQTT5)
        with caplog.at_level(logging.INFO, logger="edge.mqtt.subscriber"):
            subscription.start()
            try:
                assert subscription.subscription_failure(TIMEOUT_S) is None
                assert subscription.protocol == 4 and subscription.connects == 1
            finally:
                subscription.stop()
        assert "does not speak MQTT 5" not in caplog.text
    finally:
        broker.stop()


def test_a_password_in_a_command_line_url_is_warned_about_and_never_shown(closed_broker):
    url = f"mqtt://viewer:s3cret@127.0.0.1:{closed_broker.port}"
    result = subprocess.run([sys.executable, "-m", "edge", "monitor", "--mqtt", url,
                             "--seconds", "1"], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert "holds a password, which ps and your shell history can show" in result.stderr
    assert "s3cret" not in result.stderr + result.stdout

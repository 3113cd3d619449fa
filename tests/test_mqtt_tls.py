"""The link against a real Mosquitto with TLS, client certificates and passwords; every
connection failure is logged once with its cause."""

from __future__ import annotations

import json
import logging
import os
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from edge.config import MqttConfig
from edge.errors import ConfigError, InputError
from edge.mqtt.link import MqttLink
from edge.mqtt.topics import Topics
from tests.conftest import Mosquitto
from tests.mqtt_tls import Pki, make_pki, password_file, tls_mosquitto
from tests.mqtt_watch import Watcher

SECRET = "pw-9f3a-not-for-logs"


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return make_pki(tmp_path_factory.mktemp("pki"))


@pytest.fixture
def tls_broker(tmp_path: Path, pki: Pki) -> Iterator[Mosquitto]:
    broker = tls_mosquitto(tmp_path, pki, password_file(tmp_path, "edge", SECRET))
    broker.start()
    yield broker
    broker.stop()


def tls_settings(broker: Mosquitto, pki: Pki, **changes: Any) -> MqttConfig:
    settings: dict[str, Any] = {
        "url": f"mqtts://localhost:{broker.tls_port}",  # type: ignore[attr-defined]
        "ca_file": pki.ca, "certfile": pki.client_cert, "keyfile": pki.client_key,
        "username": "edge", "password": SECRET, "reconnect_min_s": 1, "reconnect_max_s": 1}
    settings.update(changes)
    return MqttConfig(**{key: value for key, value in settings.items() if value is not None})


def link_for(settings: MqttConfig) -> MqttLink:
    return MqttLink(settings, Topics("edge/tls"), "edge-tls-test", lambda state: {"state": state})


def wait_until(predicate: Any, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return False


def test_client_certificate_and_password_deliver_detections(tls_broker, pki, caplog):
    caplog.set_level(logging.INFO)
    link = link_for(tls_settings(tls_broker, pki))
    with Watcher(tls_broker.port, "edge/tls/cam/detections") as watcher:
        link.start()
        for frame_id in range(5):
            link.publish_detections("cam", {"frame_id": frame_id})
        watcher.wait_for(lambda: len(watcher.messages) == 5, 15, "5 detections over TLS")
        link.stop()
    assert [m.json()["frame_id"] for m in watcher.messages] == list(range(5))
    assert "connected to MQTT broker mqtts://localhost" in caplog.text
    assert SECRET not in caplog.text


@pytest.mark.parametrize(
    "changes",
    [{"ca_file": "other"}, {"certfile": None, "keyfile": None}, {"password": "wrong-" + SECRET}],
    ids=["wrong-ca", "no-client-certificate", "wrong-password"],
)
def test_a_broker_that_refuses_the_attempt_at_stop_is_not_waited_for(tls_broker, pki, changes):
    """A wrong password or a missing client certificate is answered after the TCP and TLS
    handshakes: the stop waited out flush_timeout_s (6 s a SIGTERM, an operator's check)."""
    if changes.get("ca_file") == "other":
        changes["ca_file"] = pki.other_ca
    link = link_for(tls_settings(tls_broker, pki, flush_timeout_s=30, reconnect_min_s=30,
                                 reconnect_max_s=30, **changes))
    link.start()
    assert link.connection.wait_settled(15) and not link.connected
    link.publish_detections("cam", {"frame_id": 1})
    began = time.monotonic()
    assert not link.stop()
    # paho's loop takes up to 1 s to stop, twice; a refused login is not tried again at all
    # (the config cannot have changed: a user check saw 2 s more on every stop)
    assert time.monotonic() - began < (3 if "password" in changes else 10)
    assert (link.counters.published, link.counters.dropped) == (0, 1)


@pytest.mark.parametrize(
    ("changes", "cause"),
    [
        ({"ca_file": "other"}, r"TLS verification failed: .*check mqtt\.ca_file"),
        ({"certfile": None, "keyfile": None},
         r"closed the connection before accepting it .*set mqtt\.certfile and mqtt\.keyfile"),
        # the user and where its password came from (a user check: the advice named
        # every place but the one the password was in)
        ({"password": "wrong-" + SECRET},
         r"not authorized: check the user '\w+' and the password \(mqtt\.password\)"),
        ({"username": None, "password": None},
         r"not authorized: the broker wants a login and none is given; set mqtt\.username"),
        # the daemon said only "closed the connection before accepting it (Unspecified
        # error)" where `edge monitor` hinted at TLS (an operator's check)
        # ... and the probe that follows such a close tells it is one (a TLS handshake)
        ({"url": "plain"}, r"the port is a TLS listener, which closes a plain MQTT "
                           r"connection: use mqtts:// in mqtt\.url"),
    ],
    ids=["wrong-ca", "no-client-certificate", "wrong-password", "no-login",
         "plain-url-on-a-tls-port"],
)
def test_connection_failures_are_logged_once_with_their_cause(tls_broker, pki, caplog, changes,
                                                              cause):
    if changes.get("ca_file") == "other":
        changes["ca_file"] = pki.other_ca
    if changes.get("url") == "plain":
        changes.update(url=f"mqtt://localhost:{tls_broker.tls_port}", ca_file=None,
                       certfile=None, keyfile=None)
    link = link_for(tls_settings(tls_broker, pki, **changes))
    link.start()
    try:
        assert wait_until(lambda: "failed attempt" in caplog.text, 15), caplog.text
        time.sleep(3.5)  # more attempts (1 s apart): the same cause is not logged again
        assert not link.connected
    finally:
        link.stop(timeout=0)
    warnings = [r.getMessage() for r in caplog.records if "failed attempt" in r.getMessage()]
    assert len(warnings) == 1, warnings
    assert re.search(cause, warnings[0]), warnings[0]
    assert SECRET not in caplog.text


def test_refused_then_lost_then_back(stopped_mosquitto, caplog):
    caplog.set_level(logging.INFO)
    settings = MqttConfig(url=f"mqtt://127.0.0.1:{stopped_mosquitto.port}",
                          reconnect_min_s=1, reconnect_max_s=1)
    link = link_for(settings)
    link.start()
    try:
        assert wait_until(lambda: "connection refused" in caplog.text, 10), caplog.text
        stopped_mosquitto.start()
        assert wait_until(lambda: link.connected, 10)
        assert "after " in caplog.text and "failed attempt" in caplog.text
        stopped_mosquitto.stop()  # the broker goes away under a live connection
        assert wait_until(lambda: "connection lost" in caplog.text, 10), caplog.text
        assert link.connection.state.startswith("disconnected")
        lost = next(r.getMessage() for r in caplog.records
                    if "connection lost" in r.getMessage())
        # in the monitor's words, not paho's "Unspecified error"; and not a failed attempt
        assert lost.endswith("connection lost (closed without an MQTT reason: the broker "
                             "stopped or the network dropped); reconnecting with backoff"), lost
    finally:
        link.stop(timeout=0)


def test_tls_files_that_do_not_load_name_their_key(tmp_path, pki):
    broker = Mosquitto(1, tmp_path / "unused.conf")
    broker.tls_port = 8883  # type: ignore[attr-defined]
    mismatched = tls_settings(broker, pki, keyfile=pki.server_key)
    with pytest.raises(ConfigError, match=r"mqtt\.certfile .* / mqtt\.keyfile .*matching"):
        link_for(mismatched)
    garbage = tmp_path / "garbage.pem"
    garbage.write_text("-----BEGIN CERTIFICATE-----\nnot base64\n-----END CERTIFICATE-----\n")
    with pytest.raises(ConfigError, match=r"mqtt\.ca_file .*garbage\.pem"):
        link_for(tls_settings(broker, pki, ca_file=garbage))


def monitor_cli(broker: Mosquitto, *args: str | Path, user: str = "edge"
                ) -> subprocess.CompletedProcess[str]:
    url = f"mqtts://{user}@localhost:{broker.tls_port}"  # type: ignore[attr-defined]
    return subprocess.run([sys.executable, "-m", "edge", "monitor", "--mqtt", url,
                           "--seconds", "1", *map(str, args)], capture_output=True, text=True,
                          timeout=60, env={**os.environ, "EDGE_MQTT_PASSWORD": SECRET})


def test_monitor_reaches_a_private_ca_broker_with_a_client_certificate(tls_broker, pki):
    """The subscriber tools take --ca-file, --certfile and --keyfile; each TLS failure names
    its cause and the option that fixes it, once, and exits 2."""
    ok = monitor_cli(tls_broker, "--ca-file", pki.ca, "--certfile", pki.client_cert,
                     "--keyfile", pki.client_key)
    assert ok.returncode == 0, ok.stderr
    assert ok.stdout.startswith(f"connected to mqtts://REDACTED@localhost:{tls_broker.tls_port}")
    wrong_ca = monitor_cli(tls_broker, "--ca-file", pki.other_ca, "--certfile",
                           pki.client_cert, "--keyfile", pki.client_key)
    assert wrong_ca.returncode == 2
    assert re.search(r"TLS verification failed: .*check --ca-file", wrong_ca.stderr)
    no_certificate = monitor_cli(tls_broker, "--ca-file", pki.ca)
    assert no_certificate.returncode == 2
    assert "set --certfile and --keyfile" in no_certificate.stderr
    for result in (wrong_ca, no_certificate):
        assert result.stderr.count("could not reach") == 1 and "WARNING" not in result.stderr
        assert "Traceback" not in result.stderr and SECRET not in result.stderr


def test_the_python_subscriber_logs_why_it_cannot_connect(tls_broker, pki, caplog):
    """A library user iterating a Subscriber that cannot connect sees the cause in the log
    (once), and `wait_subscribed` says False; before, both were silent."""
    from edge.client import Subscriber

    url = f"mqtts://localhost:{tls_broker.tls_port}"  # type: ignore[attr-defined]
    with Subscriber(url, "edge/+", ca_file=str(pki.other_ca), certfile=str(pki.client_cert),
                    keyfile=str(pki.client_key)) as subscriber:
        assert not subscriber.wait_subscribed(5)
        assert wait_until(lambda: "TLS verification failed" in caplog.text, 5), caplog.text
        time.sleep(2.5)  # retries with the same cause are not logged again
    warnings = [r.getMessage() for r in caplog.records if "TLS verification" in r.getMessage()]
    assert len(warnings) == 1 and "check ca_file=" in warnings[0]


def test_demo_runs_against_a_tls_broker_and_never_prints_the_password(tls_broker, pki):
    """A user check: `edge demo --mqtt mqtts://...` had no way to name the broker's CA (its
    error said "check ca_file=", the Python client's keyword), and `--json` printed the
    password of a `user:password@` URL in its `broker`."""
    port = tls_broker.tls_port  # type: ignore[attr-defined]
    files = ["--ca-file", str(pki.ca), "--certfile", str(pki.client_cert), "--keyfile",
             str(pki.client_key)]
    command = [sys.executable, "-m", "edge", "demo", "--seconds", "2", "--fps", "10",
               "--threads", "1", "--quiet", "--json"]
    result = subprocess.run([*command, "--mqtt", f"mqtts://edge:{SECRET}@localhost:{port}",
                             *files], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout.splitlines()[-1])
    assert summary["broker"] == f"mqtts://REDACTED@localhost:{port}"
    assert summary["received"] == summary["published"] > 0
    assert summary["retained_cleared"] >= 3  # with the same login and TLS files
    assert SECRET not in result.stdout + result.stderr
    unverified = subprocess.run([*command, "--mqtt", f"mqtts://edge@localhost:{port}"],
                                capture_output=True, text=True, timeout=60,
                                env={**os.environ, "EDGE_MQTT_PASSWORD": SECRET})
    assert unverified.returncode == 2 and "Traceback" not in unverified.stderr
    assert "--ca-file" in unverified.stderr and "ca_file=" not in unverified.stderr, \
        unverified.stderr


def test_bench_publishes_to_a_tls_broker_with_a_login(tls_broker, pki, demo_model):
    """`edge bench --mqtt` told a user to "check --ca-file", which bench did not have, and
    refused a user in the URL with advice for a config file it does not read."""
    url = f"mqtts://edge@localhost:{tls_broker.tls_port}"  # type: ignore[attr-defined]
    command = [sys.executable, "-m", "edge", "bench", str(demo_model), "--seconds", "1",
               "--threads", "1", "--json", "--mqtt", url, "--ca-file", str(pki.ca),
               "--certfile", str(pki.client_cert), "--keyfile", str(pki.client_key)]
    with Watcher(tls_broker.port, "edge/bench/+/detections") as watcher:
        result = subprocess.run(command, capture_output=True, text=True, timeout=120,
                                env={**os.environ, "EDGE_MQTT_PASSWORD": SECRET})
        assert result.returncode == 0, result.stderr
        watcher.wait_for(lambda: len(watcher.messages) > 0, 10, "bench detections over TLS")
    summary = json.loads(result.stdout.splitlines()[-1])
    assert summary["broker"] == f"mqtts://REDACTED@localhost:{tls_broker.tls_port}"  # type: ignore[attr-defined]
    assert summary["published"] > 0 and summary["dropped_messages"] == 0
    assert summary["retained_cleared"] >= 3  # with the same login and TLS files
    assert SECRET not in result.stdout + result.stderr
    wrong = subprocess.run(command, capture_output=True, text=True, timeout=60,
                           env={**os.environ, "EDGE_MQTT_PASSWORD": "wrong"})
    assert wrong.returncode == 2 and "Traceback" not in wrong.stderr
    assert re.search(r"not authori[sz]ed", wrong.stderr), wrong.stderr
    no_broker = subprocess.run([*command[:9], "--ca-file", str(pki.ca)], capture_output=True,
                               text=True, timeout=60)
    assert no_broker.returncode == 2
    assert "--ca-file, --certfile and --keyfile are for TLS: give an mqtts:// broker URL" in \
        no_broker.stderr


def test_tls_files_that_do_not_load_are_named_without_the_ones_not_given(tls_broker, pki):
    """A key given as --ca-file read `(--ca-file KEY, --certfile and --keyfile None None)`."""
    result = monitor_cli(tls_broker, "--ca-file", pki.server_key)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert f"the TLS files (--ca-file {pki.server_key}) do not load: " in result.stderr
    assert "None" not in result.stderr and "the key matching" not in result.stderr


def encrypted_copy(key: Path, folder: Path) -> Path:
    """`key` encrypted with a passphrase (PKCS#8, AES-256), as a security policy may want it."""
    encrypted = folder / f"{key.stem}-encrypted.key"
    subprocess.run(["openssl", "pkey", "-in", str(key), "-aes256", "-passout", "pass:not-asked",
                    "-out", str(encrypted)], check=True, capture_output=True, timeout=60)
    return encrypted


def test_an_encrypted_client_key_is_refused_at_once_without_a_passphrase_prompt(tls_broker, pki,
                                                                                 tmp_path):
    """OpenSSL asked for the passphrase on the terminal: `edge run` with stdin a pipe waited
    for ever before logging a word, and with stdin closed said `[Errno 22] Invalid argument`
    under two stray prompts. Here stdin stays an open pipe that never answers."""
    key = encrypted_copy(pki.client_key, tmp_path)
    with pytest.raises(ConfigError, match=r"mqtt\.keyfile: .*-encrypted\.key holds an encrypted "
                                          r"\(passphrase-protected\) private key.*openssl pkey"):
        link_for(tls_settings(tls_broker, pki, keyfile=key))
    url = f"mqtts://edge@localhost:{tls_broker.tls_port}"  # type: ignore[attr-defined]
    monitor = subprocess.Popen(
        [sys.executable, "-m", "edge", "monitor", "--mqtt", url, "--seconds", "1", "--ca-file",
         str(pki.ca), "--certfile", str(pki.client_cert), "--keyfile", str(key)],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env={**os.environ, "EDGE_MQTT_PASSWORD": SECRET})
    try:
        stdout, stderr = _wait_open(monitor)
    finally:
        monitor.kill()
    assert monitor.returncode == 2, stderr
    assert "pass phrase" not in stdout + stderr and "Traceback" not in stderr
    assert f"--certfile and --keyfile: {key} holds an encrypted (passphrase-protected)" in stderr


def _wait_open(process: subprocess.Popen[str]) -> tuple[str, str]:
    """Wait for `process` with its stdin left open (communicate would close it)."""
    process.wait(timeout=30)
    assert process.stdout is not None and process.stderr is not None
    return process.stdout.read(), process.stderr.read()


def test_a_tls_file_this_user_cannot_read_is_named(pki, monkeypatch):
    """`edge monitor` said `the TLS files (...) do not load: [Errno 13] Permission denied`
    without saying which. Simulated: root, as in CI, reads any file."""
    from edge.mqtt import subscriber
    from edge.mqtt.subscriber import TlsFiles, checked_tls_files

    def refused(path: str, *args: Any, **kwargs: Any) -> Any:
        if str(path) == str(pki.client_key):
            raise PermissionError(13, "Permission denied", str(path))
        return open(path, *args, **kwargs)

    monkeypatch.setattr(subscriber, "open", refused, raising=False)
    files = TlsFiles(str(pki.ca), str(pki.client_cert), str(pki.client_key))
    with pytest.raises(InputError, match=rf"--certfile and --keyfile: cannot read "
                                         rf"{re.escape(str(pki.client_key))} \(Permission "
                                         r"denied\); give a file this user can read"):
        checked_tls_files(files)

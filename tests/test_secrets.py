"""No secret is ever printed: the whole output of real `edge run`s that use secrets (config
errors, a refused password, a working TLS session) and everything they publish is grepped."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.mqtt_tls import make_pki, password_file, tls_mosquitto
from tests.mqtt_watch import Watcher

BROKER_PASSWORD = "brk-7c1e-secret"
WRONG_PASSWORD = "wrong-55d2-secret"
CAMERA_PASSWORD = "cam-a9f0-secret"
CAMERA_TOKEN = "tok-31b4-secret"
SECRETS = (BROKER_PASSWORD, WRONG_PASSWORD, CAMERA_PASSWORD, CAMERA_TOKEN)
CAMERA = (f'[[cameras]]\nname = "door"\nsource = "rtsp://admin:{CAMERA_PASSWORD}@127.0.0.1:9/live'
          f'?token={CAMERA_TOKEN}"')


def config_text(model: Path, mqtt: str, cameras: str = "") -> str:
    return f"""
device_id = "secrets"
[model]
path = "{model}"
threads = 1
[[cameras]]
name = "gate"
source = "synthetic://shapes?fps=5&seed=1"
{cameras}
[mqtt]
{mqtt}
reconnect_min_s = 1
reconnect_max_s = 1
flush_timeout_s = 1
[frames]
interval_s = 1
[stats]
interval_s = 1
[log]
level = "debug"
summary_interval_s = 1
"""


def edge_run(tmp_path: Path, text: str, seconds: float, env: dict[str, str] | None = None
             ) -> subprocess.CompletedProcess[str]:
    config = tmp_path / "edge.toml"
    config.write_text(text)
    return subprocess.run([sys.executable, "-m", "edge", "--log-level", "DEBUG", "run", "--json",
                           "--seconds", str(seconds), "--config", str(config)],
                          capture_output=True, text=True, timeout=90,
                          env={**os.environ, **(env or {})})


def assert_no_secret(text: str) -> None:
    for secret in SECRETS:
        assert secret not in text, f"{secret} printed in:\n{text}"


@pytest.mark.parametrize(
    "mqtt",
    [
        f'url = "mqtts://edge:{BROKER_PASSWORD}@localhost:8883"',
        f'url = "mqtt://h"\nusername = "edge"\npassword = {{ value = "{WRONG_PASSWORD}" }}',
        f'url = "mqtt://h"\nusername = "edge"\npassword = ["{BROKER_PASSWORD}"]',
        f'url = "mqtt://h"\npassword = "{BROKER_PASSWORD}"',
        f'url = "mqtt://h"\nusername = "edge"\npassword = "{BROKER_PASSWORD}"\nca_file = "/x"',
    ],
    ids=["user-info-in-url", "password-as-table", "password-as-list", "no-username",
         "tls-file-with-mqtt"],
)
def test_config_errors_never_echo_a_secret(tmp_path, demo_model, mqtt):
    result = edge_run(tmp_path, config_text(demo_model, mqtt), 1)
    assert result.returncode == 2, result.stderr
    assert "mqtt" in result.stderr and "Traceback" not in result.stderr
    assert_no_secret(result.stdout + result.stderr)


def test_a_camera_uri_with_credentials_is_redacted_in_logs(tmp_path, demo_model):
    """A live camera that cannot be reached is retried, and logged, while the daemon runs."""
    result = edge_run(tmp_path, config_text(demo_model, 'url = "mqtt://127.0.0.1:9"', CAMERA), 2)
    assert result.returncode == 1, result.stderr  # a timed run whose camera never streamed
    assert "rtsp://REDACTED@127.0.0.1:9/live?token=REDACTED" in result.stderr
    assert "127.0.0.1:9 refused the connection" in result.stderr  # edge asked, no secret sent
    assert_no_secret(result.stdout + result.stderr)


@pytest.mark.slow
def test_runs_with_secrets_print_and_publish_none(tmp_path, demo_model):
    pki = make_pki(tmp_path / "pki")
    broker = tls_mosquitto(tmp_path, pki, password_file(tmp_path, "edge", BROKER_PASSWORD))
    broker.start()
    try:
        tls = (f'url = "mqtts://localhost:{broker.tls_port}"\n'  # type: ignore[attr-defined]
               f'username = "edge"\nca_file = "{pki.ca}"\ncertfile = "{pki.client_cert}"\n'
               f'keyfile = "{pki.client_key}"')
        refused = edge_run(tmp_path, config_text(demo_model, tls, CAMERA), 4,
                           env={"EDGE_MQTT_PASSWORD": WRONG_PASSWORD})
        assert refused.returncode == 1, refused.stderr  # the camera never streamed
        assert "not authorized" in refused.stderr
        assert_no_secret(refused.stdout + refused.stderr)

        secret_file = tmp_path / "mqtt.password"
        secret_file.write_text(BROKER_PASSWORD + "\n")
        secret_file.chmod(0o600)
        with Watcher(broker.port, "edge/secrets/#") as watcher:
            accepted = edge_run(tmp_path, config_text(
                demo_model, tls + f'\npassword_file = "{secret_file}"', CAMERA), 5)
            watcher.wait_for(lambda: bool(watcher.on("/stats")), 10, "stats")
        assert accepted.returncode == 1, accepted.stderr  # the camera never streamed
        assert "exiting 1: camera door delivered no frame" in accepted.stderr
        assert "connected to MQTT broker mqtts://localhost" in accepted.stderr
        assert_no_secret(accepted.stdout + accepted.stderr)
        assert "/status" in "".join(m.topic for m in watcher.messages)
        published = b"\n".join(m.payload for m in watcher.messages)  # JSON and JPEG alike
        for secret in SECRETS:
            assert secret.encode() not in published, secret
    finally:
        broker.stop()

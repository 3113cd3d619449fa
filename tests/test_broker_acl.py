"""A broker's access control keeping messages from the daemon, on real Mosquitto brokers: its
dynamic-security plugin refuses subscriptions in the SUBACK, its `acl_file` drops what a client
may not publish or read without a word. Either was silent: commands got no reply, the status
never reached a monitor."""

from __future__ import annotations

import getpass
import json
import logging
import subprocess
import sys
import time
from pathlib import Path

import pytest

import edge.mqtt.link
from edge.config import MqttConfig
from edge.mqtt.link import MqttLink
from edge.mqtt.topics import Topics
from tests.conftest import Mosquitto, free_port
from tests.test_homeassistant import _config_file as discovery_config_file

DYNSEC_PLUGIN = Path("/usr/lib/x86_64-linux-gnu/mosquitto_dynamic_security.so")


def broker_with(tmp_path: Path, lines: list[str], anonymous: bool = True) -> Mosquitto:
    port = free_port()
    config = tmp_path / "mosquitto.conf"
    # `user`: files under pytest's 0700 tmp folders stay readable once mosquitto drops root
    config.write_text("\n".join([f"listener {port} 127.0.0.1",
                                 f"allow_anonymous {str(anonymous).lower()}",
                                 "persistence false", f"user {getpass.getuser()}",
                                 *lines]) + "\n")
    broker = Mosquitto(port, config)
    broker.start()
    return broker


def dynsec_broker(tmp_path: Path, subscribe: list[str]) -> Mosquitto:
    """Anonymous clients may publish anywhere under edge/ and subscribe to `subscribe` only."""
    if not DYNSEC_PLUGIN.exists():
        pytest.skip("Mosquitto's dynamic-security plugin is not installed")
    acls = [{"acltype": "publishClientSend", "topic": "edge/#", "allow": True}]
    acls += [{"acltype": "subscribePattern", "topic": t, "allow": True} for t in subscribe]
    settings = {"defaultACLAccess": {"publishClientSend": False, "publishClientReceive": True,
                                     "subscribe": False, "unsubscribe": True},
                "clients": [], "groups": [{"groupname": "anon", "roles": [{"rolename": "r"}]}],
                "roles": [{"rolename": "r", "acls": acls}], "anonymousGroup": "anon"}
    (tmp_path / "dynsec.json").write_text(json.dumps(settings))
    return broker_with(tmp_path, [f"plugin {DYNSEC_PLUGIN}",
                                  f"plugin_opt_config_file {tmp_path / 'dynsec.json'}"])


def acl_file_broker(tmp_path: Path, rules: list[str]) -> Mosquitto:
    (tmp_path / "acl").write_text("\n".join(rules) + "\n")
    return broker_with(tmp_path, [f"acl_file {tmp_path / 'acl'}"])


def daemon_like_link(port: int) -> MqttLink:
    """A link whose status names its daemon, with a command and two sweeps, as the daemon's."""
    status = {"host": "gate-host", "started_at": "2026-12-05T17:00:00Z"}
    link = MqttLink(MqttConfig(url=f"mqtt://127.0.0.1:{port}"), Topics("edge/t"), "edge-t",
                    lambda state: {"state": state, **status})
    link.on_command("snapshot", lambda payload: {"ok": True})
    link.sweep_retained("edge/t/+/status", lambda topics: None,
                        refusal_costs="stale camera statuses stay")
    link.sweep_retained("+/+/edge_t/+/config", lambda topics: None)  # a refusal is not said
    return link


@pytest.fixture(autouse=True)
def short_echo_wait(monkeypatch: pytest.MonkeyPatch) -> None:
    """A status expected back 0.5 s after a connect, not 5 s."""
    monkeypatch.setattr(edge.mqtt.link, "ECHO_WAIT_S", 0.5)


def link_warnings(broker: Mosquitto, caplog: pytest.LogCaptureFixture) -> list[str]:
    """Run a daemon-like link on `broker` for 1.5 s, stop both; the link's broker warnings."""
    link = daemon_like_link(broker.port)
    try:
        with caplog.at_level(logging.WARNING):
            link.start()
            try:
                time.sleep(1.5)
                assert link.connected
            finally:
                link.stop(timeout=2.0)
    finally:
        broker.stop()
    return [r.getMessage() for r in caplog.records
            if r.levelno >= logging.WARNING and "MQTT broker" in r.getMessage()]


def test_refused_subscriptions_are_said_once_with_their_cost_and_fix(tmp_path, caplog):
    broker = dynsec_broker(tmp_path, ["edge/t/status"])
    lines = link_warnings(broker, caplog)
    where = f"mqtt://127.0.0.1:{broker.port}"
    # the status came back: no word of it
    assert sorted(lines) == [
        f"MQTT broker {where} refused the subscription to edge/t/+/status: stale camera "
        "statuses stay; allow this client to subscribe to edge/t/# in the broker's ACL",
        f"MQTT broker {where} refused the subscription to edge/t/cmd/+: commands sent to this "
        "device get no reply; allow this client to subscribe to edge/t/# in the broker's ACL"]


def test_a_refused_status_subscription_is_said_and_not_again_as_a_missing_echo(
        tmp_path, caplog):
    broker = dynsec_broker(tmp_path, ["edge/t/cmd/+", "edge/t/+/status"])
    lines = link_warnings(broker, caplog)
    assert len(lines) == 1, lines
    assert "refused the subscription to edge/t/status: another daemon publishing as this " \
           "device would go unnoticed" in lines[0]


@pytest.mark.parametrize("rules", [
    ["topic write edge/#", "topic read edge/t/cmd/#", "topic read edge/t/+/status"],
    ["topic read edge/#", "topic write edge/t/cmd/#", "topic write edge/t/+/status"]],
    ids=["status-unreadable", "status-unwritable"])
def test_a_status_the_acl_drops_silently_is_said_once(tmp_path, caplog, rules):
    """Mosquitto's acl_file grants every subscription and acknowledges every publication,
    then drops what the client may not read or write: only the status not coming back
    tells."""
    broker = acl_file_broker(tmp_path, rules)
    lines = link_warnings(broker, caplog)
    assert lines == [
        f"MQTT broker mqtt://127.0.0.1:{broker.port}: this device's status (edge/t/status), "
        "published 0.5 s ago, has not come back though this client subscribes to it: the "
        "broker's ACL denies this client publishing or reading it (Mosquitto acknowledges "
        "what its ACL drops, and keeps what a client may not read without a word). Either what "
        "it publishes there never reaches monitors or Home Assistant, or it cannot read its own "
        "topics (commands go unanswered, what earlier runs retained is not cleared); allow "
        "this client readwrite on edge/t/# in the broker's ACL"]


def test_a_broker_that_lets_the_device_read_and_write_its_topics_gets_no_word(
        tmp_path, caplog):
    broker = acl_file_broker(tmp_path, ["topic readwrite edge/#"])
    lines = link_warnings(broker, caplog)
    assert lines == []


def test_a_monitor_the_broker_refuses_every_subscription_exits_2_naming_the_acl(tmp_path):
    """A viewer with no read rights watched with `edge monitor`: a generic warning, then the
    hint to check --prefix (the prefix was right), and exit 0."""
    broker = dynsec_broker(tmp_path, ["other/#"])
    try:
        watch = subprocess.run([sys.executable, "-m", "edge", "monitor", "--mqtt", broker.url,
                                "--prefix", "edge/t", "--seconds", "3"],
                               capture_output=True, text=True, timeout=60)
    finally:
        broker.stop()
    assert watch.returncode == 2, watch.stderr
    assert watch.stderr.strip().splitlines()[-1].startswith(
        f"edge monitor: error: the MQTT broker at {broker.url} refused the subscriptions to "
        "edge/t/"), watch.stderr
    assert watch.stderr.rstrip().endswith(
        "its ACL does not let a client without a login read there; allow it to read them in "
        "the broker's ACL"), watch.stderr
    assert "--prefix" not in watch.stderr


def test_a_silent_watch_with_a_login_names_the_acl_too(tmp_path, monkeypatch):
    """Mosquitto's acl_file grants the subscriptions and then delivers nothing: the watch's
    hint named only --prefix, which was right."""
    from edge import monitor as monitor_module
    from tests.mqtt_tls import password_file

    monkeypatch.setattr(monitor_module, "SILENCE_HINT_S", 1.0)
    passwords = password_file(tmp_path, "viewer", "s3cret")
    (tmp_path / "acl").write_text("user viewer\ntopic read other/#\n")
    broker = broker_with(tmp_path, [f"password_file {passwords}",
                                    f"acl_file {tmp_path / 'acl'}"], anonymous=False)
    lines: list[str] = []
    try:
        monkeypatch.setenv("EDGE_MQTT_PASSWORD", "s3cret")
        monitor_module.run_monitor(f"mqtt://viewer@127.0.0.1:{broker.port}", "edge/t", 2.0,
                                   None, echo=lines.append)
    finally:
        broker.stop()
    assert lines[1:] == [
        "nothing under edge/t after 1 s: a daemon leaves its status retained there, so a "
        "prefix that names a device that ran shows it at once; check --prefix (edge/<device_id>, "
        "edge/+ for every device, or the daemon's mqtt.prefix), and that the device has "
        "reached this broker (its mqtt.url; the daemon's log says why it does not); or "
        "the broker's ACL does not "
        "let the user 'viewer' read there (Mosquitto's acl_file keeps such messages without a "
        "word)"], lines


def test_devices_named_beside_a_prefix_are_those_the_login_reads_and_the_acl_is_named(
        tmp_path, monkeypatch):
    """A user check: with an ACL that hid gate-02 from the viewer, `--prefix edge/gate-02`
    (a running device) was told "no device's status is there; the devices under edge/+ are
    gate-01", a false claim, and the ACL went unnamed."""
    from paho.mqtt import publish

    from edge import monitor as monitor_module
    from tests.mqtt_tls import password_file

    monkeypatch.setattr(monitor_module, "SILENCE_HINT_S", 1.0)
    passwords = password_file(tmp_path, "viewer", "s3cret")
    subprocess.run(["mosquitto_passwd", "-b", str(passwords), "writer", "w"], check=True,
                   capture_output=True, timeout=30)
    (tmp_path / "acl").write_text("user viewer\ntopic read edge/gate-01/#\n"
                                  "user writer\ntopic readwrite edge/#\n")
    broker = broker_with(tmp_path, [f"password_file {passwords}",
                                    f"acl_file {tmp_path / 'acl'}"], anonymous=False)
    status = {"v": 1, "state": "online", "version": "0.1", "model": "det",
              "cameras": ["gate"], "started_at": "2026-12-03T08:00:00Z"}
    lines: list[str] = []
    try:
        for device in ("gate-01", "gate-02"):
            publish.single(f"edge/{device}/status", json.dumps(status), qos=1, retain=True,
                           hostname="127.0.0.1", port=broker.port,
                           auth={"username": "writer", "password": "w"})
        monkeypatch.setenv("EDGE_MQTT_PASSWORD", "s3cret")
        monitor_module.run_monitor(f"mqtt://viewer@127.0.0.1:{broker.port}", "edge/gate-02",
                                   2.0, None, echo=lines.append)
    finally:
        broker.stop()
    assert lines[1:] == [
        "nothing under edge/gate-02 after 1 s; the devices under edge/+ that the user 'viewer' "
        "can read are gate-01 (online): --prefix edge/<device> for one of them, edge/+ for "
        "every one; or the broker's ACL does not let the user 'viewer' read there "
        "(Mosquitto's acl_file keeps such messages without a word)"], lines


@pytest.mark.parametrize("discovery_rule", ["write", "readwrite"])
def test_discovery_configs_the_device_may_not_read_back_are_said(tmp_path, demo_model,
                                                                 discovery_rule):
    """A device allowed to write Home Assistant's prefix but not read it (a helper's ACL):
    the entities of an earlier config stayed, and nothing said why."""
    broker = acl_file_broker(tmp_path, ["topic readwrite edge/#",
                                        f"topic {discovery_rule} homeassistant/#"])
    config = discovery_config_file(tmp_path, demo_model, broker.port)
    try:
        run = subprocess.run([sys.executable, "-m", "edge", "run", "--config", str(config),
                              "--seconds", "4"], capture_output=True, text=True, timeout=120)
    finally:
        broker.stop()
    assert run.returncode == 0, run.stderr
    said = [line for line in run.stderr.splitlines() if "Home Assistant discovery" in line]
    if discovery_rule == "readwrite":
        assert said == [], said
        return
    assert len(said) == 1, run.stderr
    assert said[0].endswith(
        "configs came back from the broker under homeassistant: its ACL does not let this "
        "client read there (Mosquitto's acl_file keeps such messages without a word), so the "
        "entities of earlier configs cannot be found and are not removed; allow it to read "
        "homeassistant/+/edge_ha/+/config in the broker's ACL"), said

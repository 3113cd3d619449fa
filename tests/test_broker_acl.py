"""A broker's access control keeping messages from the daemon, on real Mosquitto brokers: its
dynamic-security plugin refuses subscriptions in the SUBACK, its `acl_file` drops what a client
may not publish or read without a word. Either was silent: commands got no reply, the status
never reached a monitor."""

from __future__ import annotations

import getpass
import json
import logging
import time
from pathlib import Path

import pytest

import edge.mqtt.link
from edge.config import MqttConfig
from edge.mqtt.link import MqttLink
from edge.mqtt.topics import Topics
from tests.conftest import Mosquitto, free_port

DYNSEC_PLUGIN = Path("/usr/lib/x86_64-linux-gnu/mosquitto_dynamic_security.so")


def broker_with(tmp_path: Path, lines: list[str]) -> Mosquitto:
    port = free_port()
    config = tmp_path / "mosquitto.conf"
    # `user`: files under pytest's 0700 tmp folders stay readable once mosquitto drops root
    config.write_text("\n".join([f"listener {port} 127.0.0.1", "allow_anonymous true",
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


def run_link(link: MqttLink, seconds: float) -> None:
    link.start()
    try:
        time.sleep(seconds)
        assert link.connected
    finally:
        link.stop(timeout=2.0)


def broker_lines(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records
            if r.levelno >= logging.WARNING and "MQTT broker" in r.getMessage()]


def test_refused_subscriptions_are_said_once_with_their_cost_and_fix(tmp_path, caplog,
                                                                     monkeypatch):
    monkeypatch.setattr(edge.mqtt.link, "ECHO_WAIT_S", 0.5)
    broker = dynsec_broker(tmp_path, ["edge/t/status"])
    try:
        with caplog.at_level(logging.WARNING):
            run_link(daemon_like_link(broker.port), 1.5)
    finally:
        broker.stop()
    where = f"mqtt://127.0.0.1:{broker.port}"
    assert sorted(broker_lines(caplog)) == [
        f"MQTT broker {where} refused the subscription to edge/t/+/status (Unspecified error): "
        "stale camera statuses stay; allow this client to subscribe to edge/t/# in the "
        "broker's ACL",
        f"MQTT broker {where} refused the subscription to edge/t/cmd/+ (Unspecified error): "
        "commands sent to this device get no reply; allow this client to subscribe to edge/t/# "
        "in the broker's ACL"]  # the status came back: no word of it


def test_a_refused_status_subscription_is_said_and_not_again_as_a_missing_echo(
        tmp_path, caplog, monkeypatch):
    monkeypatch.setattr(edge.mqtt.link, "ECHO_WAIT_S", 0.5)
    broker = dynsec_broker(tmp_path, ["edge/t/cmd/+", "edge/t/+/status"])
    try:
        with caplog.at_level(logging.WARNING):
            run_link(daemon_like_link(broker.port), 1.5)
    finally:
        broker.stop()
    lines = broker_lines(caplog)
    assert len(lines) == 1, lines
    assert "refused the subscription to edge/t/status (Unspecified error): another daemon " \
           "publishing as this device would go unnoticed" in lines[0]


@pytest.mark.parametrize("rules", [
    ["topic write edge/#", "topic read edge/t/cmd/#", "topic read edge/t/+/status"],
    ["topic read edge/#", "topic write edge/t/cmd/#", "topic write edge/t/+/status"]],
    ids=["status-unreadable", "status-unwritable"])
def test_a_status_the_acl_drops_silently_is_said_once(tmp_path, caplog, monkeypatch, rules):
    """Mosquitto's acl_file grants every subscription and acknowledges every publication,
    then drops what the client may not read or write: only the status not coming back
    tells."""
    monkeypatch.setattr(edge.mqtt.link, "ECHO_WAIT_S", 0.5)
    broker = acl_file_broker(tmp_path, rules)
    try:
        with caplog.at_level(logging.WARNING):
            run_link(daemon_like_link(broker.port), 1.5)
    finally:
        broker.stop()
    assert broker_lines(caplog) == [
        f"MQTT broker mqtt://127.0.0.1:{broker.port}: this device's status (edge/t/status), "
        "published 0.5 s ago, has not come back though this client subscribes to it: the "
        "broker's ACL denies this client publishing or reading it (Mosquitto acknowledges "
        "what its ACL drops). Published messages the ACL denies never reach monitors or Home "
        "Assistant; allow this client readwrite on edge/t/# in the broker's ACL"]


def test_a_broker_that_lets_the_device_read_and_write_its_topics_gets_no_word(
        tmp_path, caplog, monkeypatch):
    monkeypatch.setattr(edge.mqtt.link, "ECHO_WAIT_S", 0.5)
    broker = acl_file_broker(tmp_path, ["topic readwrite edge/#"])
    try:
        with caplog.at_level(logging.WARNING):
            run_link(daemon_like_link(broker.port), 1.5)
    finally:
        broker.stop()
    assert broker_lines(caplog) == []

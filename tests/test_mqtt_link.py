from __future__ import annotations

import errno
import logging
import re
import signal
import socket
import threading
import time
from pathlib import Path

import pytest

from edge.config import MqttConfig
from edge.mqtt.failures import (
    NO_REASON_WORDS,
    ConnectionLog,
    ShortSessions,
    cause_from_exception,
)
from edge.mqtt.link import MqttLink
from edge.mqtt.states import RetainedStates
from edge.mqtt.topics import Topics
from tests.conftest import Mosquitto, make_mosquitto
from tests.mqtt_watch import Watcher, retained_status


def make_link(port: int, outbox_size: int = 1000, **settings: float) -> MqttLink:
    settings = MqttConfig(url=f"mqtt://127.0.0.1:{port}", outbox_size=outbox_size, **settings)
    return MqttLink(settings, Topics("edge/t"), "edge-test", lambda state: {"state": state})


@pytest.mark.parametrize(("frames", "dropped_words"),
                         [(8, "3 messages were dropped"), (6, "1 message was dropped")])
def test_outbox_keeps_the_newest_and_delivers_them_once_connected(mosquitto, caplog, frames,
                                                                  dropped_words):
    """And says so when it starts dropping (once an outage; an operator saw 128 messages
    dropped with no word until the exit summary) and, once the broker is back, how many."""
    link = make_link(mosquitto.port, outbox_size=5)
    with caplog.at_level(logging.WARNING, logger="edge.mqtt.link"):
        for frame_id in range(1, frames + 1):  # not started yet: the broker is out of reach
            link.publish_detections("cam", {"frame_id": frame_id})
    assert link.outbox_depth == 5 and link.counters.dropped == frames - 5
    assert [r.getMessage() for r in caplog.records] == [
        "the MQTT outbox reached its limit with 5 messages waiting for the broker: the oldest "
        "detections are dropped from now on, events only once no detection is left to drop "
        "(mqtt.outbox_size; on disk also outbox_max_mb and outbox_max_age_s)"]
    caplog.clear()
    with Watcher(mosquitto.port, "edge/t/cam/detections") as watcher, \
            caplog.at_level(logging.WARNING, logger="edge.mqtt.link"):
        link.start()
        assert link.flush(10), "outbox not flushed"
        # said on the link's thread once the connection is up: it can follow the flush
        deadline = time.monotonic() + 5
        while not caplog.records and time.monotonic() < deadline:
            time.sleep(0.02)
        assert [r.getMessage() for r in caplog.records] == [
            f"{dropped_words} while the broker was away or the link behind (the outbox's "
            "limit), no event among "
            "them"]
        watcher.wait_for(lambda: len(watcher.messages) == 5, 5, "5 messages")
        assert [m.json()["frame_id"] for m in watcher.messages] == \
            list(range(frames - 4, frames + 1))
        assert link.counters.published == 5
        assert retained_status(mosquitto.port, "edge/t")["state"] == "online"
        assert link.stop("stopped")
    assert retained_status(mosquitto.port, "edge/t")["state"] == "stopped"


def test_messages_dropped_for_their_age_are_said_to_be_so(mosquitto, caplog, tmp_path):
    """A user check: a disk outbox's `outbox_max_age_s` dropping messages was logged as the
    size limit reached, then "holds only events now" while detections waited, with advice to
    raise outbox_size."""
    link = make_link(mosquitto.port, outbox="disk", outbox_path=tmp_path / "outbox.sqlite",
                     outbox_max_age_s=0.5)
    try:
        with caplog.at_level(logging.WARNING, logger="edge.mqtt.link"):
            link.publish_detections("cam", {"frame_id": 1})
            link.publish_event("edge/t/cam/events", b'{"id": "1"}')
            time.sleep(1.2)  # past the age, and past the outbox's one-second age check
            link.publish_detections("cam", {"frame_id": 2})
        assert (link.counters.dropped, link.counters.events_dropped) == (2, 1)
        assert [r.getMessage() for r in caplog.records] == [
            "the MQTT outbox dropped 2 messages older than mqtt.outbox_max_age_s (0.5 s) "
            "waiting for the broker, 1 left waiting; from now on every message that old is "
            "dropped, events too (raise outbox_max_age_s to keep a longer outage's)"]
        caplog.clear()
        with caplog.at_level(logging.WARNING, logger="edge.mqtt.link"):
            link.start()
            assert link.flush(10), "outbox not flushed"
            deadline = time.monotonic() + 5  # said on the link's thread once connected
            while not caplog.records and time.monotonic() < deadline:
                time.sleep(0.02)
        assert [r.getMessage() for r in caplog.records] == [
            "2 messages were dropped while the broker was away or the link behind (older "
            "than "
            "mqtt.outbox_max_age_s), 1 event among them"]
    finally:
        link.stop("stopped")


@pytest.mark.parametrize("outbox", ["memory", "disk"])
def test_an_outage_longer_than_the_outbox_keeps_the_events(mosquitto, caplog, tmp_path, outbox):
    """A night without the broker: the detections of every frame push the outbox over its
    limit, and the few events (what an operator looks back for) must not go with them."""
    on_disk = {"outbox_path": tmp_path / "outbox.sqlite"} if outbox == "disk" else {}
    link = make_link(mosquitto.port, outbox_size=10, outbox=outbox, **on_disk)
    with caplog.at_level(logging.WARNING, logger="edge.mqtt.link"):
        for frame_id in range(1, 101):
            link.publish_detections("cam", {"frame_id": frame_id})
            if frame_id % 20 == 0:
                link.publish_event("edge/t/cam/events", b'{"id": "%d"}' % frame_id)
    assert (link.outbox_depth, link.counters.dropped, link.counters.events_dropped) == \
        (10, 95, 0)
    assert len(caplog.records) == 1, "one warning: no event was dropped"
    with caplog.at_level(logging.WARNING, logger="edge.mqtt.link"):
        for n in range(101, 109):  # more events than room beside them: the oldest go
            link.publish_event("edge/t/cam/events", b'{"id": "%d"}' % n)
    assert (link.counters.dropped, link.counters.events_dropped) == (103, 3)
    assert caplog.records[-1].getMessage() == (
        "the MQTT outbox holds only events now: the oldest events are dropped as well (raise "
        "mqtt.outbox_size to keep a longer outage's events)")
    caplog.clear()
    with Watcher(mosquitto.port, "edge/t/cam/#") as watcher, \
            caplog.at_level(logging.WARNING, logger="edge.mqtt.link"):
        link.start()
        assert link.flush(10), "outbox not flushed"
        watcher.wait_for(lambda: len(watcher.messages) == 10, 5, "10 messages")
        assert [m.topic for m in watcher.messages] == ["edge/t/cam/events"] * 10
        assert [m.json()["id"] for m in watcher.messages] == \
            ["80", "100", *map(str, range(101, 109))], "what was kept, in the order put"
        assert [r.getMessage() for r in caplog.records] == [
            "103 messages were dropped while the broker was away or the link behind (the "
            "outbox's limit), 3 "
            "events among them"]
        assert link.stats()["events_dropped"] == 3
        assert link.stop("stopped")


def test_retained_states_wait_beside_the_outbox_one_latest_value_a_topic(mosquitto, caplog):
    """A 1000-class classifier's zero counts (one a label) filled the 1000-message outbox and
    dropped the detections before them: states now wait outside it, and a value replaced
    while the broker was away is never sent."""
    link = make_link(mosquitto.port, outbox_size=5)
    with caplog.at_level(logging.WARNING, logger="edge.mqtt.link"):
        for frame_id in range(1, 6):
            link.publish_detections("cam", {"frame_id": frame_id})
        for label in range(1000):
            link.publish_state(f"edge/t/cam/c{label}/count", b"0", 1)
        for count in (b"1", b"2", b"0", b"3"):  # the broker away: only the last one matters
            link.publish_state("edge/t/cam/c7/count", count, 1)
    assert (link.outbox_depth, link.counters.dropped, link.states_waiting) == (5, 0, 1000)
    assert link.stats()["states_waiting"] == 1000
    assert caplog.records == []  # nothing dropped, nothing to warn about
    link.start()
    try:
        assert link.flush(20), "outbox and states not flushed"
        assert (link.counters.published, link.counters.states_sent) == (5, 1000)
        with Watcher(mosquitto.port, "edge/t/cam/#") as late:  # a subscriber joining now
            late.wait_for(lambda: len(late.on("/count")) == 1000, 10, "1000 retained counts")
            values = {m.topic: m.payload for m in late.on("/count") if m.retain}
        assert len(values) == 1000 and values["edge/t/cam/c7/count"] == b"3"
        assert {v for topic, v in values.items() if topic != "edge/t/cam/c7/count"} == {b"0"}
        link.publish_state("edge/t/cam/c7/count", b"0", 1)  # connected: sent as it comes
        assert link.flush(5) and link.counters.states_sent == 1001
    finally:
        assert link.stop()
    assert link.stats()["dropped"] == 0


def test_a_broker_back_while_the_link_waits_to_retry_still_gets_the_messages_at_stop(
        stopped_mosquitto, caplog):
    """paho waits up to reconnect_max_s between attempts: a broker back 10 s before the stop
    got nothing, and the memory outbox dropped what waited for it (a user check: 279
    messages)."""
    link = make_link(stopped_mosquitto.port, reconnect_min_s=30, reconnect_max_s=30)
    link.start()
    assert link.connection.wait_settled(5) and not link.connected  # refused: next try in 30 s
    for frame_id in range(1, 4):
        link.publish_detections("cam", {"frame_id": frame_id})
    link.publish_state("edge/t/cam/circle/count", b"2", 1)
    stopped_mosquitto.start()
    with Watcher(stopped_mosquitto.port, "edge/t/cam/#") as watcher:
        began = time.monotonic()
        assert link.stop(timeout=5), "not flushed"
        assert time.monotonic() - began < 5
        watcher.wait_for(lambda: len(watcher.messages) == 4, 5, "3 detections and a count")
    assert [m.json()["frame_id"] for m in watcher.on("/detections")] == [1, 2, 3]
    assert [m.payload for m in watcher.on("/count")] == [b"2"]
    assert (link.counters.published, link.counters.dropped, link.counters.states_sent) == (3, 0, 1)


def test_a_broker_still_refusing_at_stop_is_not_waited_for(stopped_mosquitto, caplog):
    """The attempt at stop is refused: nothing can arrive, so the stop does not wait out
    flush_timeout_s (a `--seconds 3` trial against a stopped broker took 10 s); what waited
    is counted as dropped."""
    link = make_link(stopped_mosquitto.port, flush_timeout_s=30)
    link.start()
    assert link.connection.wait_settled(5) and not link.connected
    for frame_id in range(1, 4):
        link.publish_detections("cam", {"frame_id": frame_id})
    began = time.monotonic()
    with caplog.at_level(logging.WARNING, logger="edge.mqtt.link"):
        assert not link.stop()
    assert time.monotonic() - began < 10  # paho's loop takes up to 1 s to stop, twice
    assert (link.counters.published, link.counters.dropped) == (0, 3)
    assert "3 messages were not delivered before stopping and are dropped (kept in memory " \
           "only)" in [r.getMessage() for r in caplog.records]


def test_states_wait_once_a_topic_and_all_again_after_a_reconnect():
    states = RetainedStates()
    states.set("a", b"1", 1)
    states.set("b", b"1", 1)
    states.set("a", b"2", 1)  # replaces the waiting value, keeps its place
    assert [(s.topic, s.payload) for s in states.take(10)] == [("a", b"2"), ("b", b"1")]
    assert states.waiting == 0 and states.take(10) == []
    states.set("c", b"", 1)  # clears c on the broker: sent, but not set again later
    states.set("b", b"3", 1)
    assert [s.topic for s in states.take(1)] == ["c"]
    states.set_all_again()  # connected anew: every latest value waits again
    assert [(s.topic, s.payload) for s in states.take(10)] == [("b", b"3"), ("a", b"2")]


def test_states_the_broker_never_got_are_counted_at_stop(stopped_mosquitto, caplog):
    link = make_link(stopped_mosquitto.port)
    link.start()
    for label in ("cat", "dog"):
        link.publish_state(f"edge/t/cam/{label}/count", b"0", 1)
    with caplog.at_level(logging.WARNING, logger="edge.mqtt.link"):
        assert not link.stop(timeout=0.3)
    said = [r.getMessage() for r in caplog.records]
    assert "2 retained values (camera statuses, counts, discovery configs) not sent before " \
           "stopping; the broker keeps the values sent before" in said
    # a user check: a run that never connected registered no Last Will: the broker keeps
    # what an earlier run left (its `stopped` status), not `offline`
    assert "the broker accepted no connection in this run: the device's 'stopped' status was not " \
           "sent, and the broker keeps the status and states an earlier run left, if any" in said
    assert not [line for line in said if "Last Will" in line]


def test_a_stop_after_the_broker_went_away_says_what_the_broker_keeps(mosquitto, caplog):
    """A stop while the broker is down, after this run had connected: a broker that saw the
    connection drop, or shut down cleanly (as here), published the Last Will (offline); one
    that crashed comes back with the status it last saved (user checks: the line first
    promised `offline` in every case, then said a broker that stopped sends no Will, which
    Mosquitto does at a clean shutdown, retained where it persists)."""
    link = make_link(mosquitto.port)
    link.start()
    deadline = time.monotonic() + 10
    while not link.connected and time.monotonic() < deadline:
        time.sleep(0.05)
    assert link.connected
    mosquitto.stop()
    try:
        deadline = time.monotonic() + 10
        while link.connected and time.monotonic() < deadline:
            time.sleep(0.05)
        with caplog.at_level(logging.WARNING, logger="edge.mqtt.link"):
            link.stop(timeout=0.3)  # nothing was queued: all that waited was delivered
    finally:
        mosquitto.start()
    said = [r.getMessage() for r in caplog.records]
    assert ("the broker was out of reach at the stop: the device's 'stopped' status was not "
            "sent. A broker that saw this connection drop, or that shut down cleanly, has "
            "published its Last Will (offline); one that crashed sent none and comes back with "
            "the retained status it last saved ('online', or nothing without persistence) until "
            "this device connects again. The states sent before stay retained as the broker "
            "kept them") in said
    with Watcher(mosquitto.port, "edge/t/status") as watcher:  # restarted, persisting nothing
        time.sleep(1.0)
        assert not watcher.messages


def test_a_broker_that_shuts_down_cleanly_keeps_the_last_will_retained(tmp_path):
    """What the stop warning and the README say of a clean broker shutdown (Mosquitto's
    restart or upgrade), with persistence on: the Will of a device still connected is
    published, retained, and read after the restart, though the device never said it."""
    broker = make_mosquitto(tmp_path, persistent=True)
    broker.start()
    port = broker.port
    link = make_link(port)
    try:
        link.start()
        assert link.wait_connected(10)
        assert retained_status(port, "edge/t")["state"] == "online"
        broker.stop()  # SIGTERM: a clean shutdown
        broker.start()
        assert retained_status(port, "edge/t")["state"] == "offline"
    finally:
        link.stop(timeout=0.3)
        broker.stop()


def test_commands_get_replies(mosquitto):
    link = make_link(mosquitto.port)
    link.on_command("ping", lambda payload: {"ok": True, "echo": payload.decode()})
    link.start()
    try:
        with Watcher(mosquitto.port, "edge/t/cmd/ping/reply") as watcher:
            watcher.wait_for(lambda: link.connected, 5, "link connected")
            watcher.wait_for(lambda: _publish_until_reply(watcher), 10, "a reply")
            assert watcher.messages[-1].json() == {"ok": True, "echo": "hello"}
    finally:
        link.stop()


def test_a_retained_command_is_not_run_at_each_start_and_its_clearing_is_no_command(
        mosquitto, caplog):
    """A user check: a command sent with the retain flag ran again at every start of the
    daemon, and the empty retained message that clears it ran as a command of its own."""
    from paho.mqtt import publish

    caplog.set_level(logging.INFO, logger="edge")
    publish.single("edge/t/cmd/ping", b"old", qos=1, retain=True, hostname="127.0.0.1",
                   port=mosquitto.port)
    ran: list[bytes] = []
    link = make_link(mosquitto.port)
    link.on_command("ping", lambda payload: ran.append(payload) or {"ok": True,
                                                                     "echo": payload.decode()})
    try:
        with Watcher(mosquitto.port, "edge/t/cmd/ping/reply") as watcher:
            link.start()
            watcher.wait_for(lambda: watcher.messages, 10, "the stale command's reply")
            reply = watcher.messages[0].json()
            assert reply["ok"] is False and ran == []
            assert ("a retained command on edge/t/cmd/ping, left on the broker by an earlier "
                    "sender, was not run") in reply["error"]
            assert "publishing an empty retained message to that topic" in reply["error"]
            watcher.client.publish("edge/t/cmd/ping", b"", qos=1, retain=True)  # as told
            time.sleep(1.0)
            assert ran == [] and len(watcher.messages) == 1  # no command: no reply
            assert "the retained command there was cleared" in caplog.text
            watcher.client.publish("edge/t/cmd/ping", b"", qos=1)  # an empty command: run
            watcher.wait_for(lambda: len(watcher.messages) == 2, 10, "the command's reply")
            assert ran == [b""] and watcher.messages[1].json() == {"ok": True, "echo": ""}
    finally:
        link.stop()
        publish.single("edge/t/cmd/ping", b"", qos=1, retain=True, hostname="127.0.0.1",
                       port=mosquitto.port)


def _publish_until_reply(watcher: Watcher) -> bool:
    if not watcher.messages:
        watcher.client.publish("edge/t/cmd/ping", b"hello", qos=1)
        return False
    return True


def test_topics_follow_contract_v1():
    topics = Topics("edge/gate-01")
    assert topics.status == "edge/gate-01/status"
    assert topics.detections("gate") == "edge/gate-01/gate/detections"
    assert topics.frame("gate") == "edge/gate-01/gate/frame"
    assert topics.frame_meta("gate") == "edge/gate-01/gate/frame/meta"
    assert topics.stats == "edge/gate-01/stats"
    assert topics.command_reply("snapshot") == "edge/gate-01/cmd/snapshot/reply"
    assert topics.command_name("edge/gate-01/cmd/snapshot") == "snapshot"
    assert topics.command_name("edge/gate-01/cmd/snapshot/reply") is None


def test_a_lasting_failure_is_logged_once_per_change_and_every_few_minutes(caplog):
    caplog.set_level(logging.INFO)
    now = [0.0]
    connection = ConnectionLog("mqtt://broker:1883", clock=lambda: now[0])
    for second in range(0, 600, 2):  # a failed attempt every 2 s for 10 minutes
        now[0] = float(second)
        connection.failed("connection refused: is the broker running?")
        if second == 100:
            connection.failed("unreachable: No route to host")
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 4, warnings  # at 0 s, the change at 100 s, back at 102 s, at 402 s
    assert "(1 failed attempt so far" in warnings[0]
    assert "unreachable" in warnings[1] and "connection refused" in warnings[2]
    assert connection.state == "disconnected (connection refused)"
    connection.failed("connection lost (closed without an MQTT reason: the broker stopped or "
                      "the network dropped)", attempt=False)
    # the journal's summary line: `mqtt disconnected (connection lost (closed ...` was cut
    # inside the parentheses and left them open
    assert connection.state == ("disconnected (connection lost (closed without an MQTT "
                                "reason))")
    connection.connected()
    assert connection.state == "connected"
    assert "after 301 failed attempts" in caplog.records[-1].getMessage()
    connection.failed("connection refused")
    connection.connected()
    assert caplog.records[-1].getMessage().endswith("after 1 failed attempt")


def test_the_broker_back_is_said_at_the_level_that_said_it_away(caplog):
    """A user check: a program on Python's default logging (warnings only) saw the broker
    go away and never saw it back."""
    caplog.set_level(logging.INFO)
    connection = ConnectionLog("mqtt://broker:1883")
    connection.connected()  # a first connection, nothing said before it: news, not a warning
    assert caplog.records[-1].levelno == logging.INFO
    connection.failed("connection lost (closed without an MQTT reason)", attempt=False)
    connection.failed("connection refused: is the broker running?")
    connection.connected()
    back = caplog.records[-1]
    assert back.levelno == logging.WARNING
    assert back.getMessage() == "connected to MQTT broker mqtt://broker:1883 after 1 failed attempt"
    connection.failed("connection lost (closed without an MQTT reason)", attempt=False)
    connection.connected()  # back at the first attempt: the loss was a warning, so is this
    assert caplog.records[-1].levelno == logging.WARNING
    connection.connected()  # nothing said since the last connection
    assert caplog.records[-1].levelno == logging.INFO


def _up_then_lost(connection: ConnectionLog, sessions: ShortSessions, now: list[float],
                  up_s: float) -> None:
    """A connection that lasts `up_s` on the clock `now`, then is closed without a reason."""
    connection.connected()
    sessions.connected()
    now[0] += up_s
    connection.failed(sessions.lost(NO_REASON_WORDS), attempt=False,
                      taken_over=sessions.taken_over)


def test_a_connection_lost_soon_after_each_connect_is_said_once_per_few_minutes(caplog):
    """Two clients on one id take the connection from each other every second: each loss
    and each reconnect was a line, two a second for as long as both ran."""
    caplog.set_level(logging.INFO)
    now = [0.0]
    connection = ConnectionLog("mqtt://broker:1883", clock=lambda: now[0])
    sessions = ShortSessions("gate-01", clock=lambda: now[0])
    for second in range(0, 400):
        now[0] = float(second)
        _up_then_lost(connection, sessions, now, 0.5)
    lines = [r.getMessage() for r in caplog.records]
    losses = [line for line in lines if "connection lost" in line]
    # two plain losses, then a takeover's once every REPEAT_S
    assert len(losses) == 4, losses
    assert "same client id" not in losses[0] + losses[1]
    assert "connection lost within 10 s of connecting, 3 times running or more, each time " \
        "accepted again at once (the broker giving no reason): is another client connected " \
        "with the same client id 'gate-01'? (each device needs its own device_id, or " \
        "mqtt.client_id; " \
        "a broker restarting again and again looks the same)" in losses[2]
    assert losses[3] == losses[2]
    assert sum(line.startswith("connected to") for line in lines) == 5  # one after each


def test_a_broker_that_restarts_often_is_neither_a_takeover_nor_hidden(caplog):
    """A user check: a broker restarted within seconds, twice, was called a takeover, and its
    later outages were left out of the log (the same words, within 5 minutes)."""
    caplog.set_level(logging.INFO)
    now = [0.0]
    connection = ConnectionLog("mqtt://broker:1883", clock=lambda: now[0])
    sessions = ShortSessions("gate-01", clock=lambda: now[0])
    for start in range(0, 60, 4):  # up 3 s, lost, one refused attempt, back
        now[0] = float(start)
        _up_then_lost(connection, sessions, now, 3.0)
        now[0] += 0.5
        sessions.attempt_failed()
        connection.failed("connection refused: is the broker running?")
    losses = [r.getMessage() for r in caplog.records if "connection lost" in r.getMessage()]
    assert len(losses) == 15 and not any("same client id" in line for line in losses)


def test_the_first_outcome_is_awaited_after_its_log_line(caplog):
    connection = ConnectionLog("mqtt://broker:1883")
    assert not connection.wait_settled(0.05)  # nothing yet: gives up after the timeout
    connection.failed("connection refused: is the broker running?")
    assert connection.wait_settled(0.0) and connection.state == "disconnected (connection refused)"
    assert "connection refused" in caplog.text
    connected = ConnectionLog("mqtt://broker:1883")
    threading.Timer(0.05, connected.connected).start()
    assert connected.wait_settled(5.0) and connected.state == "connected"


@pytest.mark.parametrize(
    ("error", "cause"),
    [
        (ConnectionRefusedError(errno.ECONNREFUSED, "Connection refused"), "connection refused"),
        (OSError(errno.ENETUNREACH, "Network is unreachable"),
         "unreachable: Network is unreachable"),
        (OSError(errno.EHOSTUNREACH, "No route to host"), "unreachable: No route to host"),
        (TimeoutError("timed out"), "unreachable: timed out"),
        (socket.gaierror(socket.EAI_NONAME, "Name or service not known"),
         "unreachable: cannot resolve the host name"),
        (ConnectionResetError(errno.ECONNRESET, "Connection reset by peer"),
         "the broker closed the connection (Connection reset by peer)"),
        (OSError("proxy rtsp://u:pw-77@h failed"), "OSError: proxy rtsp://REDACTED@h failed"),
    ],
)
def test_connection_errors_become_causes(error, cause):
    assert cause_from_exception(error).startswith(cause)


def test_a_host_name_the_certificate_does_not_cover_reads_as_one_sentence():
    """A user check: "certificate is not valid for '127.0.0.1'.; check ..." (OpenSSL's full
    stop before ours)."""
    import ssl

    error = ssl.SSLCertVerificationError(1, "certificate verify failed")
    error.verify_message = "Hostname mismatch, certificate is not valid for '127.0.0.1'."
    assert cause_from_exception(error) == (
        "TLS verification failed: Hostname mismatch, certificate is not valid for '127.0.0.1'; "
        "check mqtt.ca_file (the CA that signed the broker's certificate) and the host name in "
        "mqtt.url")


def test_a_password_over_plain_mqtt_is_warned_about(caplog):
    settings = MqttConfig(url="mqtt://127.0.0.1:1", username="u", password="pw-3e1")
    MqttLink(settings, Topics("edge/t"), "edge-test", lambda state: {"state": state})
    assert "in plaintext" in caplog.text and "pw-3e1" not in caplog.text


def test_a_user_without_a_password_is_warned_about(caplog, monkeypatch):
    monkeypatch.delenv("EDGE_MQTT_PASSWORD", raising=False)
    settings = MqttConfig(url="mqtts://127.0.0.1:1", username="gate")
    MqttLink(settings, Topics("edge/t"), "edge-test", lambda state: {"state": state})
    assert "mqtt.username is 'gate' but no password is given" in caplog.text


@pytest.mark.slow
def test_a_port_that_accepts_but_never_speaks_mqtt_is_named(caplog):
    """An HTTP server (or anything) on the configured port accepts the TCP connection and
    never sends a CONNACK: paho gives up after the keepalive. That was worded as "the broker
    closed the connection before accepting it (Keep alive timeout)"."""
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(4)
    port = silent.getsockname()[1]
    link = MqttLink(MqttConfig(url=f"mqtt://127.0.0.1:{port}", keepalive_s=5),
                    Topics("edge/t"), "edge-test", lambda state: {"state": state})
    link.start()
    try:
        assert link.connection.wait_settled(20.0)
        assert link.connection.state.startswith("disconnected (no MQTT answer")
        assert ("something accepts connections there but does not speak MQTT; check mqtt.url: "
                "host and port") in caplog.text
    finally:
        link.stop(timeout=0.5)
        silent.close()


def hang(broker: Mosquitto) -> None:
    """Stop `broker` with SIGSTOP and wait until it is stopped (the signal is asynchronous)."""
    assert broker.process is not None
    broker.process.send_signal(signal.SIGSTOP)
    stat = Path(f"/proc/{broker.process.pid}/stat")
    deadline = time.monotonic() + 5
    while stat.read_text().rpartition(")")[2].split()[0] != "T":
        assert time.monotonic() < deadline, "the broker did not stop"
        time.sleep(0.01)


def hung_with_backlog(broker: Mosquitto, detections: int, **settings: float) -> MqttLink:
    """A link connected to `broker`, which then hangs (`hang`), with `detections` detections
    published after: a slow link's state, the window full where they outnumber it. The
    caller resumes the broker (SIGCONT)."""
    link = make_link(broker.port, **settings)
    link.start()
    assert link.wait_connected(10.0)
    hang(broker)
    for frame_id in range(1, detections + 1):
        link.publish_detections("cam", {"frame_id": frame_id})
    return link


@pytest.mark.slow
def test_a_broker_that_hangs_is_not_blamed_on_the_url(mosquitto, caplog):
    """A user check: a broker stopped with SIGSTOP (hung, as the kernel still accepts
    connections) read "something accepts connections there but does not speak MQTT; check
    mqtt.url" though it had answered at that URL for minutes."""
    link = make_link(mosquitto.port, keepalive_s=5)
    link.start()
    assert link.wait_connected(10.0)
    hang(mosquitto)
    try:
        deadline = time.monotonic() + 30
        while link.connection.failed_attempts == 0 and time.monotonic() < deadline:
            time.sleep(0.1)
        assert link.connection.failed_attempts >= 1
    finally:
        mosquitto.process.send_signal(signal.SIGCONT)
        link.stop(timeout=0.5)
    said = "\n".join(r.getMessage() for r in caplog.records)
    assert ("connection lost (Keep alive timeout: the broker stopped answering, or the network "
            "dropped in silence)") in said
    assert ("no MQTT answer before the keepalive ran out (Keep alive timeout): the broker "
            "accepts connections but does not answer, though it did earlier in this run: is it "
            "hung, overloaded or starting?") in said
    assert "does not speak MQTT" not in said


def test_frames_give_way_while_detections_back_up_and_states_keep_a_share(mosquitto, caplog,
                                                                         monkeypatch):
    """A user check on a 50 kB/s uplink: sampled frames, handed to paho as they came, went
    out ahead of the detections, which fell 50 s behind and were dropped, and the counts
    (retained states) got no room behind the backlog. A broker that stops acknowledging
    (SIGSTOP) fills the window as a slow link does."""
    monkeypatch.setattr("edge.mqtt.link.WINDOW", 8)
    monkeypatch.setattr("edge.mqtt.link.STATES_FIRST", 2)
    link = make_link(mosquitto.port, flush_timeout_s=0.5)
    link.start()
    assert link.wait_connected(10.0)
    frame = b"\xff\xd8" + b"\0" * 20_000
    assert link.publish_best_effort("edge/t/cam/frame", frame, yields=True)
    hang(mosquitto)
    try:
        for frame_id in range(1, 12):  # 8 in flight, 3 waiting
            link.publish_detections("cam", {"frame_id": frame_id})
        deadline = time.monotonic() + 5
        while len(link._in_flight) < 8 and time.monotonic() < deadline:  # handed to paho
            time.sleep(0.05)
        with caplog.at_level(logging.WARNING, logger="edge.mqtt.link"):
            assert not link.publish_best_effort("edge/t/cam/frame", frame, yields=True)
            assert not link.publish_best_effort("edge/t/cam/frame", frame, yields=True)
            # what does not yield still goes (a command's reply, a status)
            assert link.publish_best_effort("edge/t/cmd/x/reply", b"{}")
        assert link.counters.yielded == 2 and link.stats()["yielded"] == 2  # so far
        said = [r.getMessage() for r in caplog.records if "does not carry" in r.getMessage()]
        assert said == [f"MQTT broker mqtt://127.0.0.1:{mosquitto.port}: the link does not "
                        "carry what this device publishes: 3 messages wait behind 8 not yet "
                        "acknowledged, so sampled frames and snapshots are not sent until "
                        "none waits (best effort: they are not sent later; counted in the "
                        "stats' mqtt.yielded); lower frames.max_height, frames.quality or the "
                        "sampling rate (frames.interval_s), or set frames.draw = false"]
        # an acknowledgement that leaves the window one short lets no frame through while
        # detections still wait (a re-check saw frames pass in that instant)
        with link._cond:
            mid = next(iter(link._in_flight))
            handed = link._in_flight.pop(mid)
            assert not link.publish_best_effort("edge/t/cam/frame", frame, yields=True)
            link._in_flight[mid] = handed
        # a count set now goes before the 3 detections waiting, once the window has room
        link.publish_state("edge/t/cam/circle/count", b"2")
        time.sleep(0.5)
        assert link.stats()["behind_s"] >= 0.3  # how long messages have waited
    finally:
        mosquitto.process.send_signal(signal.SIGCONT)
    deadline = time.monotonic() + 10
    while (link.states_waiting or link.outbox_depth) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert link.states_waiting == 0 and link.outbox_depth == 0
    assert link.publish_best_effort("edge/t/cam/frame", frame, yields=True)  # room again
    time.sleep(0.3)
    assert link.stats()["behind_s"] == 0.0
    link.stop()


def test_a_message_stuck_behind_a_backlog_is_not_said_to_be_dropped(mosquitto, caplog,
                                                                    monkeypatch):
    """A user check on a 5 kB/s uplink: the first camera status, 5 s in a queue behind the
    detections, was said to be denied by the broker's ACL, and the stop line repeated it,
    though the subscriber had it."""
    monkeypatch.setattr("edge.mqtt.link.WINDOW", 8)
    monkeypatch.setattr("edge.mqtt.link.ECHO_WAIT_S", 1.0)
    link = make_link(mosquitto.port)
    link.start()
    assert link.wait_connected(10.0)
    time.sleep(1.5)  # the connect's own checks done
    hang(mosquitto)
    try:
        for frame_id in range(1, 12):
            link.publish_detections("cam", {"frame_id": frame_id})
        assert link.publish_json("edge/t/cam/status", {"state": "streaming"})
        time.sleep(3.0)  # three checks' worth, behind the backlog
    finally:
        mosquitto.process.send_signal(signal.SIGCONT)
    deadline = time.monotonic() + 10
    while link.outbox_depth and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(1.5)
    link.stop()
    assert link.not_back == ()
    assert "has not come back" not in caplog.text, caplog.text


@pytest.mark.slow
def test_a_keepalive_that_ends_behind_a_backlog_says_the_link_may_be_too_slow(
        mosquitto, caplog, monkeypatch):
    """A user check on a 3 kB/s uplink: each loss read only "the broker stopped answering",
    though the link was full and the broker answered everything that reached it."""
    monkeypatch.setattr("edge.mqtt.link.WINDOW", 8)
    link = hung_with_backlog(mosquitto, 11, keepalive_s=5)
    try:
        deadline = time.monotonic() + 30
        while link.connection.failed_attempts == 0 and time.monotonic() < deadline:
            time.sleep(0.1)
    finally:
        mosquitto.process.send_signal(signal.SIGCONT)
        link.stop(timeout=0.5)
    said = "\n".join(r.getMessage() for r in caplog.records)
    assert ("8 messages were not yet acknowledged and 3 more waited: on a link slower than "
            "what this device publishes the keepalive's ping waits behind them") in said, said


def test_a_live_connections_loss_reported_twice_is_not_a_failed_attempt(caplog):
    """A re-check on a slow uplink: paho reported the keepalive's end of a live connection
    twice, and the second read as a failed attempt, "is it hung, overloaded or starting?",
    right under the line that named the slow link; no attempt had been made."""
    from paho.mqtt.client import DisconnectFlags
    from paho.mqtt.packettypes import PacketTypes
    from paho.mqtt.reasoncodes import ReasonCode

    link = make_link(1)
    link.counters.connects = 1  # it had been connected
    keepalive = ReasonCode(PacketTypes.DISCONNECT, identifier=141)
    flags = DisconnectFlags(is_disconnect_packet_from_server=False)
    link._lost_live_at = time.monotonic()
    link._on_disconnect(link._client, None, flags, keepalive, None)
    assert link.connection.failed_attempts == 0 and "hung" not in caplog.text
    link._lost_live_at -= 60  # an attempt of its own, a keepalive later
    link._on_disconnect(link._client, None, flags, keepalive, None)
    assert link.connection.failed_attempts == 1 and "is it hung" in caplog.text
    link.stop(timeout=0.1)


def test_a_stop_does_not_wait_on_a_hung_broker_past_the_flush(mosquitto, caplog):
    """A user check: a broker hung (SIGSTOP) just before the stop kept a 5 s flush waiting 7 s:
    the final status and the DISCONNECT were each awaited 1 s more though nothing had been
    acknowledged in the whole flush."""
    link = hung_with_backlog(mosquitto, 3, flush_timeout_s=1.0)
    try:
        began = time.monotonic()
        assert not link.stop()
        took = time.monotonic() - began
    finally:
        mosquitto.process.send_signal(signal.SIGCONT)
    # the flush's 1 s, 0.1 s each for the status and the DISCONNECT, up to 0.5 s for the
    # broker to close the socket; awaiting both in full took 2.5 s at least
    assert 1.0 <= took < 2.4, took
    assert (link.counters.published, link.counters.dropped) == (0, 3)


def test_a_silent_port_is_named_soon_and_not_waited_for_at_stop(caplog, monkeypatch):
    """A user check: mqtt.url on an RTSP server's port said nothing until the keepalive ran
    out (28 s into the run), and a 4 s trial run waited its flush timeout on it and ended
    with "the reason is above" above no reason. The keepalive's end of the attempt is then
    counted, not said a second time."""
    monkeypatch.setattr("edge.mqtt.link.FIRST_ANSWER_S", 1.0)
    with socket.create_server(("127.0.0.1", 0)) as silent:
        port = silent.getsockname()[1]
        link = MqttLink(MqttConfig(url=f"mqtt://127.0.0.1:{port}", keepalive_s=5,
                                   flush_timeout_s=10),
                        Topics("edge/t"), "edge-test", lambda state: {"state": state})
        link.start()
        try:
            assert link.connection.wait_settled(5.0)
            assert link.connection.state.startswith("connecting (something took the "
                                                    "connection but gave no MQTT answer")
            assert ("gave no MQTT answer within 1 s (is it an MQTT port? a web or RTSP server "
                    "waits like this); check mqtt.url: host and port") in caplog.text
            deadline = time.monotonic() + 15
            while link.connection.failed_attempts == 0 and time.monotonic() < deadline:
                time.sleep(0.1)
            assert link.connection.failed_attempts >= 1, "the keepalive ended the attempt"
            said = [r for r in caplog.records if "MQTT answer" in r.getMessage()]
            assert len(said) == 1, [r.getMessage() for r in said]
        finally:
            began = time.monotonic()
            link.stop()
            stopping = time.monotonic() - began
    assert stopping < 5, f"the stop waited {stopping:.1f} s for a broker that never answered"

    monkeypatch.undo()  # FIRST_ANSWER_S as shipped: the stop says it first
    caplog.clear()
    fresh = MqttLink(MqttConfig(url=f"mqtt://127.0.0.1:{port}", flush_timeout_s=10),
                     Topics("edge/t"), "edge-test", lambda state: {"state": state})
    with socket.create_server(("127.0.0.1", port)):  # silent again, stopped after 2.5 s
        fresh.start()
        time.sleep(2.5)
        fresh.publish_event("edge/t/x", b"{}")  # queued: the old stop waited for it
        began = time.monotonic()
        fresh.stop()
        assert time.monotonic() - began < 5
    assert re.search(r"gave no MQTT answer within [23] s", caplog.text)  # said at the stop


def test_two_clients_with_one_client_id_are_named_as_the_likely_cause(mosquitto, caplog):
    """Two daemons with one device_id take the session from each other every few seconds;
    each loss read "closed without an MQTT reason: the broker stopped or the network
    dropped", which sent a user looking at the network."""
    caplog.set_level(logging.WARNING)
    first = make_link(mosquitto.port, reconnect_min_s=1, reconnect_max_s=1)
    second = make_link(mosquitto.port, reconnect_min_s=1, reconnect_max_s=1)
    first.start()
    second.start()
    try:
        deadline = time.monotonic() + 20
        while "same client id" not in caplog.text and time.monotonic() < deadline:
            time.sleep(0.1)
    finally:
        first.stop(timeout=0)
        second.stop(timeout=0)
    assert "(the broker giving no reason): is another client connected with the same client " \
           "id 'edge-test'?" in caplog.text
    assert "each device needs its own device_id, or mqtt.client_id" in caplog.text


def test_a_single_loss_after_a_long_session_gets_no_takeover_hint(mosquitto, caplog):
    caplog.set_level(logging.WARNING)
    link = make_link(mosquitto.port, reconnect_min_s=1, reconnect_max_s=1)
    link.start()
    try:
        assert link.connection.wait_settled(5)
        link._sessions.connected_at -= 60  # a session that lasted a minute
        mosquitto.stop()
        mosquitto.start()
        deadline = time.monotonic() + 10
        while link.counters.connects < 2 and time.monotonic() < deadline:
            time.sleep(0.1)
    finally:
        link.stop(timeout=0)
    assert "connection lost" in caplog.text and "same client id" not in caplog.text


@pytest.mark.parametrize("attempt", range(5))
def test_a_stop_right_after_start_waits_for_the_first_connection(mosquitto, attempt):
    """A user check: a camera that failed within 0.1 s of the start stopped the daemon while
    its first connection was being accepted; the stop reconnected over it, the broker saw the
    connection drop and sent the Last Will (`offline` between `degraded` and `stopped`), and
    the camera's `failed` status never arrived."""
    with Watcher(mosquitto.port, "edge/t/#") as watcher:
        link = make_link(mosquitto.port)
        link.start()
        link.publish_state("edge/t/cam/status", b'{"state": "failed"}', 1)
        assert link.stop(timeout=5.0)
        time.sleep(0.5)
    states = [m.json()["state"] for m in watcher.on("edge/t/status")]
    assert "offline" not in states and states[-1] == "stopped", states
    assert [m.json()["state"] for m in watcher.on("edge/t/cam/status")] == ["failed"]
    publish_clear(mosquitto.port, ["edge/t/status", "edge/t/cam/status"])  # for the next


def publish_clear(port: int, topics: list[str]) -> None:
    from paho.mqtt import publish

    for topic in topics:
        publish.single(topic, b"", qos=1, retain=True, hostname="127.0.0.1", port=port)


@pytest.mark.parametrize("attempt", range(10))
def test_a_clean_stop_under_a_stream_of_messages_leaves_stopped(mosquitto, attempt):
    """Closing a socket with bytes unread sends a TCP reset, and a broker that gets the reset
    before it has read the DISCONNECT drops it and sends the Last Will: a daemon stopped while
    messages arrived (a command, its own status, an unsubscription's answer) left `offline`
    retained after a clean stop. The stop reads what is left until the broker closes."""
    link = make_link(mosquitto.port)
    link.on_command("ping", lambda payload: {"ok": True})
    link.start()
    flooding = threading.Event()
    with Watcher(mosquitto.port, "edge/t/status") as watcher:
        watcher.wait_for(lambda: link.connected, 5, "link connected")

        def flood() -> None:
            while not flooding.is_set():
                watcher.client.publish("edge/t/cmd/ping", b"{}", qos=0)
                time.sleep(0)

        flooder = threading.Thread(target=flood, daemon=True)
        flooder.start()
        try:
            time.sleep(0.2)
            assert link.stop(timeout=5.0)
        finally:
            flooding.set()
            flooder.join(5)
    assert retained_status(mosquitto.port, "edge/t")["state"] == "stopped"


def test_a_flush_waits_for_the_messages_the_sender_is_handing_over(mosquitto):
    """CI saw a stop report a flush complete with three detections undelivered: the sender
    had taken them from the outbox and not yet put them in flight, so for that moment
    nothing was waiting. The handing over is slowed here to make that moment certain."""
    link = make_link(mosquitto.port)
    link.start()
    assert link.wait_connected(10.0)
    handing = link._handing

    def slowly(topic: str, payload: bytes) -> bool:
        time.sleep(0.5)
        return handing(topic, payload)

    link._handing = slowly  # type: ignore[method-assign]
    hang(mosquitto)
    try:
        link.publish_detections("cam", {"frame_id": 1})
        time.sleep(0.2)  # the sender has taken it
        assert not link.flush(0.1)
    finally:
        mosquitto.process.send_signal(signal.SIGCONT)
    assert link.flush(10.0) and link.counters.published == 1
    link.stop()

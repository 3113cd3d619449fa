"""The daemon's MQTT link: owns the topic prefix, the connection and the detection outbox.

Publishing never blocks the caller. Detection and event messages go into a bounded outbox
(memory, or SQLite on disk to survive restarts; when full, the oldest detections are dropped and
counted, events only once no detection is left to drop); a sender thread hands them to paho
while connected, keeping at most `WINDOW` unacknowledged. paho resends
unacknowledged QoS 1 messages after a reconnect, and the disk outbox deletes a message only
once the broker acknowledged it, so detections are delivered at least once across a broker
outage and across a daemon restart. Retained state topics (counts, discovery configs) wait
beside the outbox, one latest value per topic (`edge.mqtt.states`), are sent the same way and
are set again on every connect.
Frames and stats are best effort: published only while connected.

What brokers do without a word is found out here too: messages over a size the broker closes
the connection on are learnt and held back (`edge.mqtt.packet_limit`), the first message of
each kind is expected back (`edge.mqtt.echo`, beside the status's own check in
`edge.mqtt.permissions`), and a CONNECT closed before any answer is probed for why
(`edge.mqtt.connect_probe`).

Every message put in the outbox is accounted for: published + queued + dropped = produced
(produced counts what a disk outbox held at start as well). On stop, what is still queued after
`flush_timeout_s` stays on disk for the next start, or, in memory, is counted as dropped.
"""

from __future__ import annotations

import json
import logging
import math
import os
import socket
import ssl
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.reasoncodes import ReasonCode

from edge.config import MqttConfig
from edge.errors import ConfigError
from edge.mqtt.closing import drain_until_closed
from edge.mqtt.connect_probe import Refusal, refusal
from edge.mqtt.echo import Echoes, Expected
from edge.mqtt.failures import (
    SHORT_SESSION_S,
    ConnectionLog,
    ShortSessions,
    cause_from_disconnect,
    cause_from_exception,
    cause_from_reason,
    config_names,
    lost_reason,
    tcp_refusal,
    unanswered,
)
from edge.mqtt.outbox import Message, Outbox, outbox_from_config
from edge.mqtt.packet_limit import (
    SMALLEST_SUSPECT,
    STABLE_S,
    PacketLimit,
    SizeLoss,
    kilobytes,
    packet_bytes,
)
from edge.mqtt.permissions import ECHO_WAIT_S, BrokerPermissions
from edge.mqtt.rivals import Rival, RivalWatch
from edge.mqtt.states import RetainedStates
from edge.mqtt.sweep import RetainedSweep
from edge.mqtt.tls import EncryptedKeyError, decrypt_it, load_client_certificate
from edge.mqtt.topics import Topics
from edge.wording import counted

log = logging.getLogger(__name__)

#: Messages handed to paho and not yet acknowledged, at most.
WINDOW = 100
#: Of the window, what the retained states (counts, camera statuses) get before the outbox:
#: behind a backlog of detections they got nothing, and a user check on a slow uplink saw
#: the broker's counts minutes old while the connection was up.
STATES_FIRST = WINDOW // 4
#: How often a link that cannot carry everything says so again (seconds).
SATURATED_REPEAT_S = 300.0
#: A keepalive failure this soon after a live connection's loss is that loss again (seconds):
#: an attempt of its own comes after the reconnect delay (1 s at least) and its keepalive.
SAME_LOSS_S = 1.0
#: How long the first message of a kind is waited for while the link is backed up (seconds).
ECHO_BACKED_UP_S = 60.0

#: How often the sender makes the disk outbox durable against a power cut (seconds).
SYNC_S = 1.0
#: Characters of an unknown command's name its reply and log line repeat, at most.
MAX_NAME_SHOWN = 64
#: A broker answers a connect within milliseconds. A first attempt silent this long (seconds)
#: is said then, with what is on that port (a web or RTSP server takes the connection and
#: waits for its own kind of request), not when the keepalive ends it 30 s or more later ...
FIRST_ANSWER_S = 10.0
#: ... and at a stop this long after the start, without waiting out the flush timeout.
UNANSWERED_AT_STOP_S = 2.0
#: How long after a rival that started later is told to stop this daemon sets its retained
#: values again, over those the rival sent before it stopped (s).
RECLAIM_AFTER_S = 3.0
#: How long a stop waits for paho's thread to send the DISCONNECT (s).
DISCONNECT_WAIT_S = 1.0
#: How long a stop waits for the broker to acknowledge the final status (s).
FINAL_STATUS_WAIT_S = 1.0
#: Each of those two waits where the broker acknowledged nothing during the flush (s): the
#: packets are still written, for a broker that wakes up to read them.
UNANSWERED_WAIT_S = 0.1


@dataclass
class LinkCounters:
    produced: int = 0  # messages put in the outbox, plus those a disk outbox held at start
    recovered: int = 0  # of produced: held by the disk outbox at start
    published: int = 0  # acknowledged by the broker (QoS 1) or sent (QoS 0)
    dropped: int = 0  # outbox full or too old, or left in a memory outbox at stop
    events_dropped: int = 0  # of those the outbox's limits dropped: events
    kept: int = 0  # left in the disk outbox at stop, for the next start
    connects: int = 0
    states_sent: int = 0  # retained state values acknowledged (outside the outbox's counts)
    #: best-effort messages (sampled frames, snapshots) not sent while the outbox's window was
    #: full and more waited: the uplink did not carry what the device publishes
    yielded: int = 0
    #: times the retained values were set again after a rival daemon's (edge.mqtt.rivals)
    reclaims: int = 0


class MqttLink:
    """Connection to the broker with Last Will, retained status and a non-blocking outbox."""

    def __init__(self, settings: MqttConfig, topics: Topics, client_id: str,
                 status: Callable[[str], dict[str, Any]]) -> None:
        """`status(state)` builds the status payload for "online", "offline" or "stopped".

        Raises ConfigError for TLS files that do not load, an unreadable password file or a
        disk outbox that cannot be written."""
        self.settings = settings
        self.topics = topics
        self._status = status
        self._cond = threading.Condition()
        #: held by a connect from its status until `counters.connects` counts it, and by a
        #: publication meant for one connection (`publish_json(connection=...)`)
        self._connecting = threading.Lock()
        #: mid -> (info, outbox key; None for a retained state)
        self._in_flight: dict[int, tuple[mqtt.MQTTMessageInfo, int | None]] = {}
        #: taken from the outbox and the states by the sender, not yet in flight: a flush
        #: that saw none waiting and none in flight returned while they were being handed
        self._being_handed = 0
        self._acked_at = 0.0  # time.monotonic() of the broker's latest acknowledgement
        self._connected = False
        self._stopping = False
        self._refused = False  # paho thread only
        self._login_refused = False  # the latest attempt's CONNACK refused it
        self._names = config_names(settings)
        self._sessions = ShortSessions(client_id)  # paho thread only
        #: the broker's limit on a message's size, once its closed connections tell it
        self.packet_limit = PacketLimit()
        self._echoes = Echoes(topics)  # the first message of each kind, expected back
        self._saying_echoes = threading.Lock()
        self._rivals = RivalWatch({})  # set up at start(), with this daemon's identity
        self._permissions = BrokerPermissions(settings.display_url, topics.prefix)
        self._stopped = False
        #: counters.dropped when the outbox last filled up, None while it has room: one warning
        #: an outage, and how many it cost once the broker is back
        self._dropped_before_overflow: int | None = None
        self._events_dropped_before_overflow = 0  # counters.events_dropped then
        self._aged_since_overflow = 0  # of those dropped since, how many for their age
        self.counters = LinkCounters()
        self.connection = ConnectionLog(settings.display_url)
        self._commands: dict[str, Callable[[bytes], dict[str, Any]]] = {}
        self._unknown_commands: set[str] = set()  # paho thread only
        #: command topics where the broker held a retained command at a subscription: not
        #: run (`_stale_command`); paho thread only
        self._retained_commands: set[str] = set()
        self._sweeps: list[RetainedSweep] = []
        #: the status payload the latest connect sent, set before `counters.connects` moves
        self.connect_status: dict[str, Any] | None = None
        self._client = self._make_client(client_id)
        # events an older version left in a disk outbox are kept over detections too
        self._outbox: Outbox = outbox_from_config(settings, self.topics.events("%"))
        self._states = RetainedStates()
        self.counters.recovered = self.counters.produced = self._outbox.depth
        if self.counters.recovered:
            log.info("the disk outbox %s holds %d messages from an earlier run; sending them "
                     "first", settings.outbox_path, self.counters.recovered)
        self._sender = threading.Thread(target=self._send_loop, name="mqtt-sender", daemon=True)
        self._answer_check = threading.Timer(FIRST_ANSWER_S, self._say_unanswered)
        self._answer_check.daemon = True
        self._started = time.monotonic()
        #: what `_say_unanswered` said: the keepalive's end of that attempt fails with it
        self._unanswered_cause: str | None = None
        self._connect_probed = False
        self._saturated_said = 0.0  # time.monotonic() until which a saturated link is not said
        self._behind = False  # the window filled with more waiting, and some still waits
        #: time.monotonic() of the latest live connection's loss (paho may report it twice)
        self._lost_live_at = -math.inf
        #: time.monotonic() since when messages have waited in the outbox for the window, the
        #: broker being away or the link behind (None: none waits)
        self._waiting_since: float | None = None
        #: why every attempt fails, once a probe found the broker refuses the retained will
        self._probed_cause: str | None = None

    def _make_client(self, client_id: str) -> mqtt.Client:
        client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id,
                             protocol=mqtt.MQTTv311, clean_session=True)
        if self.settings.username:
            password = self.settings.password_value(os.environ)
            client.username_pw_set(self.settings.username, password)
            if password is not None and not self.settings.tls:
                log.warning("the MQTT password goes to %s in plaintext; use mqtts:// unless "
                            "this network is trusted", self.settings.display_url)
            if password is None:
                log.warning("mqtt.username is %r but no password is given (mqtt.password_file "
                            "or EDGE_MQTT_PASSWORD); a broker that wants one will refuse the "
                            "connection", self.settings.username)
        if self.settings.tls:
            client.tls_set_context(tls_context_from_config(self.settings))
        client.reconnect_delay_set(min_delay=max(1, round(self.settings.reconnect_min_s)),
                                   max_delay=max(1, round(self.settings.reconnect_max_s)))
        client.on_connect = self._on_connect
        client.on_connect_fail = self._on_connect_fail
        client.on_disconnect = self._on_disconnect
        client.on_publish = self._on_publish
        client.on_message = self._on_message
        client.on_subscribe = self._on_subscribe
        return client

    @staticmethod
    def _json(payload: dict[str, Any]) -> bytes:
        return json.dumps(payload, separators=(",", ":")).encode()

    # -- lifecycle -------------------------------------------------------------------------

    def start(self) -> None:
        """Connect in the background; an unreachable broker is retried with backoff, forever.
        A first attempt with no answer in `FIRST_ANSWER_S` is said then, with what is there."""
        self._client.will_set(self.topics.status, self._json(self._status("offline")), qos=1,
                              retain=True)
        self._rivals = RivalWatch(self._status("offline"))
        self._started = time.monotonic()
        self._client.connect_async(self.settings.host, self.settings.port,
                                   keepalive=self.settings.keepalive_s)
        self._client.loop_start()
        self._sender.start()
        self._answer_check.start()

    def _say_unanswered(self) -> bool:
        """Say why the first attempt has had no answer, if it has had none; whether it said."""
        if self.connection.wait_settled(0) or self._stopping:
            return False
        waited = time.monotonic() - self._started
        cause = (f"{unanswered(self.settings.host, self.settings.port, waited)}; check mqtt.url: "
                 "host and port")
        self._unanswered_cause = cause
        self.connection.unanswered(cause)
        return True

    def stop(self, final_state: str | None = "stopped", timeout: float | None = None,
             last_words: Callable[[], object] | None = None) -> bool:
        """Flush the outbox and the retained states (up to `timeout`, default
        `flush_timeout_s`), call `last_words` (the daemon's last stats, which then count the
        flushed outbox), publish the final retained status, then disconnect cleanly (so the
        broker does not send the Last Will). `final_state` None: no last stats and no final
        status (the topics belong to another daemon: see `rival`).

        Returns True when every queued message and state was acknowledged."""
        timeout = self.settings.flush_timeout_s if timeout is None else timeout
        deadline = time.monotonic() + timeout
        self._answer_check.cancel()
        refused, held = self.packet_limit.refused, self.packet_limit.held
        if refused:  # said when the limit was found; what it cost, said again
            log.warning("%s %s not sent in this run for their size (the broker closed the "
                        "connection on messages that large); lower frames.max_height or "
                        "frames.quality, or raise the broker's limit",
                        counted(refused, "message"), "was" if refused == 1 else "were")
        if held:
            log.info("%s about the size of one a connection was lost right after %s not sent "
                     "while that size was untested (a broker restart looks like a size limit "
                     "until a connection has stayed up %g s)", counted(held, "message"),
                     "was" if held == 1 else "were", STABLE_S)
        if timeout > 0 and time.monotonic() - self._started >= UNANSWERED_AT_STOP_S:
            self._say_unanswered()
        # a port that takes connections and never answers, or a broker that refused this
        # login (the config cannot have changed since): trying again delivers nothing
        hopeless = not self._connected and (self._unanswered_cause is not None
                                            or self._login_refused)
        if hopeless:
            deadline = time.monotonic()
        failed_before: int | None = None  # the attempt at stop: its failure ends the wait
        if timeout > 0 and not self._connected and self._undelivered() and not hopeless:
            failed_before = self.connection.failed_attempts
            # Only a link that is down is tried again at once: the first attempt under way (a
            # stop right after the start), or a connection whose acceptance is being handled,
            # is waited for; an attempt made over either would drop a connection the broker
            # has accepted, uncleanly, and the broker would send the Last Will.
            down = self.connection.state.startswith("disconnected")
            if down and not self._attempt_now():
                deadline = time.monotonic()  # refused or unreachable: waiting delivers nothing
        flush_began = time.monotonic()
        flushed = self._flush(max(0.0, deadline - time.monotonic()), failed_before)
        # a broker that acknowledged nothing in the whole flush (hung, or a network that
        # dropped in silence) will not take the final status either: it is sent, not awaited
        answering = flushed or self._acked_at >= flush_began
        self.wait_connected(max(0.0, deadline - time.monotonic()))
        if last_words is not None and final_state is not None:
            last_words()
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
        if self._sender.is_alive():
            self._sender.join(timeout=2.0)
        said_final = self._disconnect(final_state, answering)
        with self._cond:  # paho's thread is gone: no acknowledgement can race this
            self._prune_in_flight()
            self.counters.kept = self._outbox.durable
            lost = self._outbox.depth - self.counters.kept
            self.counters.dropped += lost
            unsent_states = self._states.waiting
            self._outbox.sync()
            self._outbox.close()
            self._stopped = True
        if self.counters.kept:
            log.warning("%d messages were not delivered before stopping; they stay in %s for "
                        "the next start", self.counters.kept, self.settings.outbox_path)
        if lost:
            log.warning("%d messages were not delivered before stopping and are dropped (kept "
                        "in memory only)", lost)
        if unsent_states:
            log.warning("%s (camera statuses, counts, discovery configs) not sent before "
                        "stopping; the broker keeps the values sent before",
                        counted(unsent_states, "retained value"))
        if final_state is not None and not said_final:
            self._say_final_status_unsent(final_state)
        return flushed

    def _disconnect(self, final_state: str | None, answering: bool) -> bool:
        """Send the final status where connected, disconnect cleanly and stop paho's thread;
        whether the status was sent. `answering`: the broker acknowledged something during
        the flush; one that did not gets both packets without being waited for."""
        said_final = self._connected
        if said_final and final_state is not None:
            info = self._client.publish(self.topics.status, self._json(self._status(final_state)),
                                        qos=1, retain=True)
            info.wait_for_publish(FINAL_STATUS_WAIT_S if answering else UNANSWERED_WAIT_S)
        self._client.disconnect()
        # paho's thread writes the DISCONNECT (at once where there is no connection): stopped
        # first, it closes the socket without, and the broker sends the Last Will (`offline`)
        # for a clean stop
        with self._cond:
            self._cond.wait_for(lambda: not self._connected,
                                timeout=DISCONNECT_WAIT_S if answering else UNANSWERED_WAIT_S)
        self._client.loop_stop()
        return said_final

    def _say_final_status_unsent(self, final_state: str) -> None:
        if self.counters.connects:
            # Which of these cannot be told from here: a loss reads the same every way.
            log.warning("the broker was out of reach at the stop: the device's %r status was "
                        "not sent. A broker that saw this connection drop, or that shut down "
                        "cleanly, has published its Last Will (offline); one that crashed sent "
                        "none and comes back with the retained status it last saved ('online', "
                        "or nothing without persistence) until this device connects again. "
                        "The states sent before stay retained as the broker kept them",
                        final_state)
        else:  # no connection, so no Last Will either
            log.warning("the broker accepted no connection in this run: the device's %r status was "
                        "not sent, and the broker keeps the status and states an earlier run "
                        "left, if any", final_state)

    def _undelivered(self) -> bool:
        """Whether anything queued or set waits to be sent or acknowledged."""
        with self._cond:
            return bool(self._outbox.waiting or self._states.waiting or self._being_handed
                        or self._prune_in_flight())

    def wait_connected(self, timeout: float) -> bool:
        """Wait up to `timeout` seconds for the first connect's outcome; whether the link is
        connected. A stop right after the start, with nothing to flush, waits for it: a
        connect accepted after the stop looked would leave its `online` retained for a daemon
        that is gone (no final status, a clean disconnect, so no Last Will either)."""
        deadline = time.monotonic() + timeout
        if self._connected or not self.connection.wait_settled(timeout):
            return self._connected
        with self._cond:  # `connected` is said first, then the link marked connected
            self._cond.wait_for(lambda: self._connected
                                or self.connection.state.startswith("disconnected"),
                                timeout=max(0.0, min(1.0, deadline - time.monotonic())))
            return self._connected

    def _attempt_now(self) -> bool:
        """One connection attempt at once, for the flush at stop: between attempts paho waits
        up to `reconnect_max_s` (30 s by default), so a broker back a moment before the stop
        never saw what waited, and a memory outbox dropped it. Its loop is stopped for the
        attempt (it checks every second) and started again either way; the attempt comes out
        of the flush's time (a host that never answers holds it for paho's 5 s connect
        timeout at most).

        Returns False when the broker is still out of reach (refused, unreachable, timed
        out): the stop then does not wait out `flush_timeout_s` for nothing (a `--seconds 3`
        trial against a stopped broker took 10 s). A broker that answers and then refuses
        (not authorized, a client certificate it requires) ends the wait when it does. A port
        that refuses a plain TCP connection is not tried further: paho's loop takes up to a
        second to stop."""
        refusal = tcp_refusal(self.settings.host, self.settings.port, timeout=1.0)
        if refusal is not None:
            log.debug("no connection at stop either (%s)", refusal)
            return False
        self._client.loop_stop()
        try:
            self._client.reconnect()
        except (OSError, ValueError) as exc:
            log.debug("no connection at stop either (%s)", exc)
            return False
        finally:
            self._client.loop_start()
        return True

    def flush(self, timeout: float) -> bool:
        """Wait until the outbox and the retained states are sent and acknowledged."""
        return self._flush(timeout)

    def _flush(self, timeout: float, failed_before: int | None = None) -> bool:
        """`flush`, given up early, disconnected, once more than `failed_before` connection
        attempts have failed (the connection log's count; a refusal is seen within 0.1 s)."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while self._undelivered():
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                if failed_before is not None and not self._connected \
                        and self.connection.failed_attempts > failed_before:
                    return False
                self._cond.wait(min(remaining, 0.1))
            return True

    def _note_backlog(self) -> int:
        """Bring `_waiting_since` and `_behind` up to date with the outbox and the window; call
        with the lock held. Returns how many messages are unacknowledged."""
        in_flight = self._prune_in_flight()
        if not self._outbox.waiting:
            self._waiting_since, self._behind = None, False
        else:
            if self._waiting_since is None:
                self._waiting_since = time.monotonic()
            self._behind = self._behind or in_flight >= WINDOW
        return in_flight

    def _prune_in_flight(self) -> int:
        """Count acknowledged messages whose callback raced their registration; call with the
        lock held. Returns how many remain unacknowledged."""
        done = [mid for mid, (info, _) in self._in_flight.items() if info.is_published()]
        for mid in done:
            self._acknowledged(self._in_flight.pop(mid)[1])
        return len(self._in_flight)

    def _refused_for_size(self, key: int | None, message: Message) -> None:
        """An outbox message or retained value the broker would close the connection on:
        dropped (it could never be delivered, and would be sent again at every connect)."""
        with self._cond:
            if key is not None:
                self._outbox.ack(key)
                self.counters.dropped += 1
                self.counters.events_dropped += int(message.precious)
            self._being_handed -= 1
            self._cond.notify_all()

    def _acknowledged(self, key: int | None) -> None:
        if key is None:
            self.counters.states_sent += 1
            return
        self._outbox.ack(key)
        self.counters.published += 1

    @property
    def connected(self) -> bool:
        return self._connected

    @property
    def outbox_depth(self) -> int:
        """Messages produced and neither published nor dropped yet."""
        with self._cond:
            return self.counters.kept if self._stopped else self._outbox.depth

    @property
    def not_back(self) -> tuple[str, ...]:
        """The kinds of message (`Topics.kind`) whose first did not come back from the broker
        though it acknowledged it (its ACL, its message_size_limit), in the order found."""
        return self._echoes.missing_kinds()

    def stats(self) -> dict[str, Any]:
        """For the stats topic and the journal: published + queued + dropped = produced."""
        counters = self.counters
        return {"connected": self._connected, "state": self.connection.state,
                "outbox": self.settings.outbox, "queued": self.outbox_depth,
                "outbox_depth": self.outbox_depth, "produced": counters.produced,
                "published": counters.published, "dropped": counters.dropped,
                "events_dropped": counters.events_dropped,
                "recovered": counters.recovered, "kept": counters.kept,
                "connects": counters.connects, "states_waiting": self.states_waiting,
                "states_sent": counters.states_sent, "yielded": counters.yielded,
                "behind_s": self.behind_s,
                # messages the broker closes the connection on (edge.mqtt.packet_limit)
                "size_limit_bytes": self.packet_limit.limit,
                "held_back_for_size": self.packet_limit.refused + self.packet_limit.held}

    @property
    def behind_s(self) -> float:
        """Seconds for which messages have waited in the outbox to be handed to the broker
        (the broker away, or the link behind), 0.0 while none waits: on a slow uplink how far
        detections lag, which the queue's length alone does not say (a user check)."""
        with self._cond:
            since = self._waiting_since
        return round(time.monotonic() - since, 1) if since is not None else 0.0

    @property
    def states_waiting(self) -> int:
        """Retained state values set and not yet handed to paho."""
        with self._cond:
            return self._states.waiting

    # -- publishing ------------------------------------------------------------------------

    def publish_detections(self, camera: str, payload: dict[str, Any]) -> None:
        """Queue a detections message (at least once; never blocks)."""
        self._enqueue(Message(self.topics.detections(camera), self._json(payload),
                              self.settings.qos))

    def publish_event(self, topic: str, payload: bytes, qos: int = 1,
                      retain: bool = False) -> None:
        """Queue an event message: at least once, in order with the detections; a full
        outbox drops detections before events (never blocks)."""
        self._enqueue(Message(topic, payload, qos, retain, precious=True))

    def publish_state(self, topic: str, payload: bytes, qos: int = 1) -> None:
        """Set a retained state topic (a count, a discovery config): its latest value is sent
        at least once and again after every reconnect, a value replaced before it went out
        not at all; never blocks, never takes room in the outbox. An empty payload clears the
        topic on the broker."""
        with self._cond:
            if self.giving_way:
                return
            self._states.set(topic, payload, qos)
            self._cond.notify_all()

    def publish_json(self, topic: str, payload: dict[str, Any], qos: int = 0,
                     retain: bool = False, connection: int | None = None) -> bool:
        """Best effort: dropped while disconnected. Returns whether it was handed to paho.

        `connection`: the `counters.connects` the payload was built against; it is dropped
        on any other connection, and on this one until its connect status has gone out. A
        status compared with what an earlier connection was handed, sent just after the
        connect's own status had gone out with the same content, reached subscribers twice
        (seen in CI)."""
        if connection is None:
            return self.publish_best_effort(topic, self._json(payload), qos, retain)
        with self._connecting:
            if self.counters.connects != connection:
                return False
            return self.publish_best_effort(topic, self._json(payload), qos, retain)

    def publish_best_effort(self, topic: str, payload: bytes, qos: int = 0,
                            retain: bool = False, yields: bool = False) -> bool:
        """Hand a message to paho unless disconnected; whether it was. `yields` (sampled
        frames, snapshots: the bulk of the bytes): not either while the link is saturated,
        the outbox's window full and more waiting, so that what is delivered at least once
        (detections, events) goes first: on a 50 kB/s uplink a user check saw sampled frames
        arrive 4 s after capture while detections fell 50 s behind and were dropped (paho
        sends in the order it was handed)."""
        if not self._connected or (retain and self.giving_way):
            return False
        if yields and self._saturated():
            return False
        if not self._handing(topic, payload):
            return False
        return self._client.publish(topic, payload, qos=qos, retain=retain).rc == \
            mqtt.MQTT_ERR_SUCCESS

    def _saturated(self) -> bool:
        """Whether the link is behind: from the moment the outbox's window is full and more
        waits until nothing waits (a re-check saw frames pass in the instant an
        acknowledgement left the window one short, ahead of 600 waiting detections). Counted
        and said, at most every `SATURATED_REPEAT_S`, when it is."""
        with self._cond:
            self._note_backlog()
            if not self._behind:
                return False
            self.counters.yielded += 1
            waiting = self._outbox.waiting
            if time.monotonic() < self._saturated_said:
                return True
            self._saturated_said = time.monotonic() + SATURATED_REPEAT_S
        log.warning("MQTT broker %s: the link does not carry what this device publishes: "
                    "%d messages wait behind %d not yet acknowledged, so sampled frames and "
                    "snapshots are not sent until none waits (best effort: they are not sent "
                    "later; counted in the stats' mqtt.yielded); lower frames.max_height, "
                    "frames.quality or the sampling rate (frames.interval_s), or set "
                    "frames.draw = false",
                    self.settings.display_url, waiting, WINDOW)
        return True

    def _check_echo_of(self, topic: str, waited: float = ECHO_WAIT_S) -> None:
        """`ECHO_WAIT_S` after the first message of its kind went to `topic` (`waited`
        seconds ago). On a link that has not caught up the message may not have left yet (a
        user check on a 5 kB/s uplink blamed the broker's ACL for camera statuses its
        subscriber had received): the check waits on, up to `ECHO_BACKED_UP_S`, then leaves
        the kind to its next message."""
        with self._cond:
            connection, connected = self.counters.connects, self._connected
            backed_up = self._outbox.waiting > 0 or self._prune_in_flight() >= WINDOW // 2
        if backed_up and connected:
            if waited < ECHO_BACKED_UP_S:
                later = threading.Timer(ECHO_WAIT_S, self._check_echo_of,
                                        args=(topic, waited + ECHO_WAIT_S))
                later.daemon = True
                later.start()
                return
            self._echoes.forget(topic)
            self._client.unsubscribe(topic)
            return
        with self._saying_echoes:  # kinds published together are checked together, on
            # their own timers' threads: the first found missing says why before the next
            missing = self._echoes.check(topic, connection, connected)
            if missing is not None:
                self._say_not_back(topic, missing)
        self._client.unsubscribe(topic)

    def _say_not_back(self, topic: str, missing: Expected) -> None:
        where, kind = self.settings.display_url, missing.kind
        if self._rivals.enabled and not self._permissions.status_came_back:  # said already,
            # for every topic, by the status's own check
            log.debug("the first of this device's %s (%s) has not come back either", kind, topic)
            return
        if len(self._echoes.missing) > 1:  # the first said why
            log.warning("MQTT broker %s: the first of this device's %s, to %s, has not come "
                        "back either", where, kind, topic)
            return
        acl = (f"the broker's ACL denies this client publishing there (Mosquitto "
               f"acknowledges what its ACL drops), or reading it back (then it does reach "
               f"subscribers): allow this client readwrite on {self.topics.prefix}/# in the "
               "broker's ACL")
        if missing.size >= SMALLEST_SUSPECT:  # the device status, far smaller, came back
            cause = ("it is most likely larger than the broker's message_size_limit "
                     "(Mosquitto drops such messages without a word): raise that limit, or "
                     f"lower frames.max_height or frames.quality; else {acl}")
        else:
            cause = acl
        log.warning("MQTT broker %s: the first of this device's %s, published to %s (%s), has "
                    "not come back within %g s though this client subscribes to it: %s", where,
                    kind, topic, kilobytes(missing.size), ECHO_WAIT_S, cause)

    def _handing(self, topic: str, payload: bytes) -> bool:
        """Whether a message may go to the broker (not at or over the size it closes the
        connection on, `packet_limit`); one that may is recorded as handed over now."""
        size = packet_bytes(topic, payload)
        if not self.packet_limit.allows(size):
            log.debug("not sent: %s to %s, over the broker's limit", kilobytes(size), topic)
            return False
        if self._echoes.wants(topic):  # subscribed first: a broker takes a client's packets
            self._echoes.expect(topic, payload, self.counters.connects)  # in order
            self._client.subscribe(topic, qos=0)
            check = threading.Timer(ECHO_WAIT_S, self._check_echo_of, args=(topic,))
            check.daemon = True
            check.start()
        self.packet_limit.handed(size, topic)
        lifted = self.packet_limit.lifted()
        if lifted is not None:
            log.warning("MQTT broker %s took a message of %s or more after all: such messages "
                        "are sent again", self.settings.display_url, kilobytes(lifted))
        return True

    def _enqueue(self, message: Message) -> None:
        with self._cond:
            dropped = self._outbox.put(message)
            self.counters.produced += 1
            self._cond.notify_all()
            overflowing = dropped.count > 0 and self._dropped_before_overflow is None
            if overflowing:
                self._dropped_before_overflow = self.counters.dropped
                self._events_dropped_before_overflow = self.counters.events_dropped
            # events dropped for their age say nothing of what the size limits keep
            first_events = (dropped.precious > 0 and dropped.aged < dropped.count
                            and self._events_dropped_before_overflow
                            == self.counters.events_dropped)
            self.counters.dropped += dropped.count
            self.counters.events_dropped += dropped.precious
            self._aged_since_overflow += dropped.aged
            depth = self._outbox.depth
        # logged outside the lock: a handler may be slow
        if overflowing and dropped.aged == dropped.count:
            log.warning("the MQTT outbox dropped %d messages older than mqtt.outbox_max_age_s "
                        "(%g s) waiting for the broker, %d left waiting; from now on every "
                        "message that old is dropped, events too (raise outbox_max_age_s to "
                        "keep a longer outage's)", dropped.count, self.settings.outbox_max_age_s,
                        depth)
        elif overflowing:
            log.warning("the MQTT outbox reached its limit with %d messages waiting for the "
                        "broker: the oldest detections are dropped from now on, events only "
                        "once no detection is left to drop (mqtt.outbox_size; on disk also "
                        "outbox_max_mb and outbox_max_age_s)", depth)
        if first_events:
            log.warning("the MQTT outbox holds only events now: the oldest events are dropped "
                        "as well (raise mqtt.outbox_size to keep a longer outage's events)")

    def _send_loop(self) -> None:
        next_sync = time.monotonic() + SYNC_S
        while True:
            if time.monotonic() >= next_sync:
                self._outbox.sync()  # without the lock: an fsync may take tens of ms
                next_sync = time.monotonic() + SYNC_S
            with self._cond:
                if self._stopping:
                    return
                in_flight = self._note_backlog()
                if not (self._connected and (self._outbox.waiting or self._states.waiting)
                        and in_flight < WINDOW):
                    self._cond.wait(0.1)
                    continue
                # a share of the window to the retained states first, then detections and
                # events, then the rest of the window to the states
                room = WINDOW - len(self._in_flight)
                batch: list[tuple[int | None, Message]] = [
                    (None, Message(state.topic, state.payload, state.qos, True))
                    for state in self._states.take(min(room, STATES_FIRST))]
                batch += self._outbox.take(room - len(batch))
                batch += [(None, Message(state.topic, state.payload, state.qos, True))
                          for state in self._states.take(room - len(batch))]
                self._being_handed = len(batch)
            for key, message in batch:
                if not self._handing(message.topic, message.payload):
                    self._refused_for_size(key, message)
                    continue
                info = self._client.publish(message.topic, message.payload, qos=message.qos,
                                            retain=message.retain)
                with self._cond:
                    if info.is_published():
                        self._acknowledged(key)
                    else:
                        self._in_flight[info.mid] = (info, key)
                    self._being_handed -= 1
                    self._cond.notify_all()

    # -- commands --------------------------------------------------------------------------

    def on_command(self, name: str, handler: Callable[[bytes], dict[str, Any]]) -> None:
        """Serve `<prefix>/cmd/<name>`; the handler's result is published on `.../reply`."""
        self._commands[name] = handler

    def sweep_retained(self, topic_filter: str, on_topics: Callable[[list[str]], None],
                       quiet_s: float = 1.0, refusal_costs: str | None = None) -> None:
        """Once connected, hand `on_topics` the topics under `topic_filter` that hold retained
        messages (what earlier runs left), gathered until none arrives for `quiet_s`.
        `refusal_costs`: what is lost if the broker refuses the subscription, said then
        (None: a refusal is not said). Register before `start`."""
        self._sweeps.append(RetainedSweep(topic_filter, on_topics, quiet_s, refusal_costs))

    def _on_message(self, client: mqtt.Client, userdata: Any, message: mqtt.MQTTMessage) -> None:
        if message.topic == self.topics.status:
            payload = bytes(message.payload)
            if self._rivals.is_own(payload):
                self._permissions.status_echoed()
            self._rival_found(self._rivals.offer(payload, bool(message.retain)))
            return
        if self._echoes.watches(message.topic):  # a message this client sent, or an older one
            if self._echoes.offer(message.topic, bytes(message.payload)):
                client.unsubscribe(message.topic)
            return
        name = self.topics.command_name(message.topic)  # first: `+/status` matches cmd/status
        if name is None:
            for sweep in self._sweeps:
                if sweep.offer(message):  # a retained message under one of their filters
                    break
            return
        if message.retain:  # sent because the broker held it, not by anyone just now
            self._stale_command(name, message.topic)
            return
        if not message.payload and message.topic in self._retained_commands:
            # MQTT 3.1.1 forwards the clearing of a retained message as an empty one: what
            # the stale command's warning told the sender to do, not a command
            self._retained_commands.discard(message.topic)
            log.info("MQTT command %s: the retained command there was cleared (the empty "
                     "message that cleared it is not taken as a command)", message.topic)
            return
        handler = self._commands.get(name)
        reply = (handler(bytes(message.payload)) if handler is not None
                 else self._unknown_command(name))
        self.publish_json(self.topics.command_reply(name), reply, qos=1)

    def _stale_command(self, name: str, topic: str) -> None:
        """A command the broker held retained, delivered at a subscription: sent at some time
        before, it would run again at every start of the daemon and every reconnect. Not
        run; said once (and answered) per topic and run, with how to clear it."""
        if topic in self._retained_commands:
            return
        self._retained_commands.add(topic)
        error = (f"a retained command on {topic}, left on the broker by an earlier sender, was "
                 "not run: commands are sent without the retain flag (a retained one would run "
                 "at every start and reconnect); clear it by publishing an empty retained "
                 "message to that topic")
        log.warning("MQTT command: %s", error)
        self.publish_json(self.topics.command_reply(name), {"ok": False, "error": error}, qos=1)

    def _unknown_command(self, name: str) -> dict[str, Any]:
        """The reply to a command this device does not serve, said in the log once a name."""
        served = ", ".join(sorted(self._commands))
        shown = name if len(name) <= MAX_NAME_SHOWN else f"{name[:MAX_NAME_SHOWN]}..."
        error = f"no command {shown!r}; this device takes: {served}"
        if name not in self._unknown_commands:
            self._unknown_commands.add(name)
            log.warning("MQTT command %s: %s", self.topics.command(name), error)
        return {"ok": False, "error": error}

    # -- paho callbacks (run on paho's network thread) ---------------------------------------

    def _on_connect(self, client: mqtt.Client, userdata: Any, flags: Any, reason: ReasonCode,
                    properties: Any) -> None:
        if reason.is_failure:
            self._refused = self._login_refused = True
            self._attempt_failed(cause_from_reason(
                str(reason), self._names, login_given=bool(self.settings.username)))
            return
        self._login_refused = False
        # built outside the lock: the daemon's status reads its cameras, whose changes
        # publish for one connection under it; one that changes meanwhile is sent after
        status = self._status("online")
        with self._connecting:  # a publication for the connection before waits for this one
            lost, events_lost, aged = self._connection_made(client, status)
        if lost:
            # a user check: drops for their age were put down to the outbox's limit
            why = ("older than mqtt.outbox_max_age_s" if aged == lost else "the outbox's limit"
                   if not aged else f"the outbox's limit; {aged} of them older than "
                                    "mqtt.outbox_max_age_s")
            log.warning("%s dropped while the broker was away or the link behind (%s)%s",
                        f"{counted(lost, 'message')} {'was' if lost == 1 else 'were'}", why,
                        f", {counted(events_lost, 'event')} among them"
                        if events_lost else ", no event among them")

    def _behind_words(self, reason: str) -> str:
        """For a live connection the keepalive ended: where the link was behind then (the
        window full), that its PING may have waited behind the backlog (a user check on a
        3 kB/s uplink read only "the broker stopped answering")."""
        if "keep alive" not in reason.lower():
            return ""
        with self._cond:
            self._note_backlog()
            behind, waiting = self._behind, self._outbox.waiting
        if not behind:
            return ""
        return (f"; {WINDOW} messages were not yet acknowledged and {waiting} more waited: on a "
                "link slower than what this device publishes the keepalive's ping waits "
                "behind them (send less: frames.interval_s, frames.max_height; or raise "
                "mqtt.keepalive_s)")

    def _connection_made(self, client: mqtt.Client, status: dict[str, Any]
                         ) -> tuple[int, int, int]:
        """A connect's work before the link counts it: `status` published, the subscriptions,
        the retained values set again. Returns (messages, events among them, messages for their
        age) that the outbox dropped while the broker was away. The caller holds
        `_connecting`."""
        self.packet_limit.connected()
        self.connection.connected()
        self._sessions.connected()
        permissions = self._permissions
        if self._rivals.enabled:  # before `online`: the status there now is another's, if any
            permissions.subscribing(client.subscribe(self.topics.status, qos=1)[1],
                                    self.topics.status, "another daemon publishing as this "
                                    "device would go unnoticed")
        self.connect_status = status
        client.publish(self.topics.status, self._json(status), qos=1, retain=True)
        if self._rivals.enabled:
            permissions.connected()
            echo_check = threading.Timer(ECHO_WAIT_S, self._check_echo,
                                         args=(self.counters.connects + 1,))
            echo_check.daemon = True
            echo_check.start()
        if self._commands:  # every name, so that one this device lacks is answered
            permissions.subscribing(client.subscribe(self.topics.command("+"), qos=1)[1],
                                    self.topics.command("+"), "commands sent to this device "
                                    "get no reply")
        for sweep in self._sweeps:
            if not sweep.begun:
                mid = sweep.begin(client)
                if sweep.refusal_costs is not None:
                    permissions.subscribing(mid, sweep.topic_filter, sweep.refusal_costs)
        with self._cond:
            self._connected = True
            self.counters.connects += 1
            self._states.set_all_again()  # a broker without persistence forgot them
            self._cond.notify_all()
            before, self._dropped_before_overflow = self._dropped_before_overflow, None
            lost = 0 if before is None else self.counters.dropped - before
            events_lost = self.counters.events_dropped - self._events_dropped_before_overflow
            self._events_dropped_before_overflow = self.counters.events_dropped
            aged, self._aged_since_overflow = self._aged_since_overflow, 0
        return lost, events_lost, aged

    def _on_subscribe(self, client: mqtt.Client, userdata: Any, mid: int,
                      reason_codes: list[ReasonCode], properties: Any) -> None:
        self._permissions.suback(mid, reason_codes)

    def _check_echo(self, connection: int) -> None:
        """`ECHO_WAIT_S` after connect number `connection`: its status should be back."""
        with self._cond:
            current = (self._connected and not self._stopping
                       and self.counters.connects == connection)
        self._permissions.check_echo(self.topics.status, current, ECHO_WAIT_S)

    def _on_connect_fail(self, client: mqtt.Client, userdata: Any) -> None:
        # paho calls this inside its `except OSError:` block: the exception is still current
        exc = sys.exc_info()[1]
        self._attempt_failed(cause_from_exception(exc, tls=self.settings.tls) if exc is not None
                             else "connection failed")

    def _on_disconnect(self, client: mqtt.Client, userdata: Any, flags: Any, reason: ReasonCode,
                       properties: Any) -> None:
        with self._cond:
            was_connected, self._connected = self._connected, False
            self._cond.notify_all()
        ours = self._stopping and not flags.is_disconnect_packet_from_server
        sock = client.socket()
        if ours and isinstance(sock, socket.socket):
            # paho closes the socket when this returns: nothing unread may be left in it, or
            # the close is a reset that can cost the broker the DISCONNECT (edge.mqtt.closing)
            drain_until_closed(sock)
        refused, self._refused = self._refused, False
        if not self._stopping and not refused:  # a refused CONNACK was logged already
            if was_connected:
                size_loss = self.packet_limit.lost()
                if size_loss is not None:  # not a takeover's, nor a rival's
                    self._sessions.attempt_failed()
                    self._lost_for_size(size_loss, lost_reason(reason))
                    return
                if time.monotonic() - self._sessions.connected_at < SHORT_SESSION_S:
                    self._rivals.short_session_lost()
                self._lost_live_at = time.monotonic()
                self.connection.failed(self._sessions.lost(lost_reason(reason))
                                       + self._behind_words(str(reason)), attempt=False,
                                       taken_over=self._sessions.taken_over)
            else:
                certificate = (self.settings.certfile is not None) if self.settings.tls else None
                cause = cause_from_disconnect(str(reason), certificate,
                                              answered_before=self.counters.connects > 0)
                if "keepalive" in cause and \
                        time.monotonic() - self._lost_live_at < SAME_LOSS_S:
                    # the live connection's loss reported again, no attempt made since (a
                    # re-check read "is it hung?" right under the line naming a slow link)
                    return
                if self._unanswered_cause is not None and "keepalive" in cause:
                    cause = self._unanswered_cause  # said already: counted, not said again
                elif "keepalive" not in cause and not self._connect_probed:
                    self._probe_the_refusal(cause)  # closed by the broker: is it the will?
                    return
                elif "keepalive" not in cause:
                    cause = self._probed_cause or cause
                self._attempt_failed(cause)

    def _probe_the_refusal(self, cause: str) -> None:
        """Once a run, off paho's thread: why the broker closes this client's connections
        before any answer (edge.mqtt.connect_probe); the attempt fails with that cause where
        the probe tells it, else with `cause` (a user check: the first line said "is it an
        MQTT port?" and the right cause came a second later). A cause found stays the
        attempts' cause."""
        self._connect_probed = True

        def probe() -> None:
            settings = self.settings
            tls = tls_context_from_config(settings) if settings.tls else None
            found = refusal(settings.host, settings.port, tls, settings.username,
                            settings.password_value(os.environ))
            if found is not None:
                self._probed_cause = self._refusal_words(found)
            self._attempt_failed(self._probed_cause or cause)

        threading.Thread(target=probe, name="mqtt-connect-probe", daemon=True).start()

    def _refusal_words(self, found: Refusal) -> str:
        if found == "tls":
            return (f"the port is a TLS listener, which closes a plain MQTT connection: use "
                    f"mqtts:// in {self._names.url}")
        if found == "closes_every_connection":
            return ("the broker closes every new connection before answering, a plain CONNECT "
                    "too: it may be at its limit of connections (Mosquitto's max_connections) "
                    "or refuse this address; or the port is no MQTT broker's: check "
                    f"{self._names.url}: host and port")
        return ("the broker closes the connection on this client's CONNECT, whose Last Will "
                "(the device's `offline` status) is retained at QoS 1, though it answers one "
                "without a will: it keeps no retained messages or takes QoS 0 alone "
                "(Mosquitto: retain_available false, max_qos 0); edge publishes its statuses, "
                "counts and Home Assistant configs retained at QoS 1: allow both on the broker")

    def _lost_for_size(self, loss: SizeLoss, reason: str) -> None:
        """A live connection lost right after the largest message yet: said as such, and,
        once a test confirms it, what is no longer sent and how to fix it."""
        message = loss.message.words()
        if loss.retried:
            cause = (f"right after {message}, the retry of a message over the broker's limit "
                     f"(the next in {loss.retry_in / 60:.0f} min)")
        elif loss.limit is None:
            cause = (f"right after {message}, larger than any sent before on a connection "
                     "that stayed up: a broker that limits the size of a message (Mosquitto's "
                     "max_packet_size, AWS IoT's 128 kB) closes the connection on one over it; "
                     "messages about that large wait until a connection has stayed up "
                     f"{STABLE_S:g} s, and then one is sent to tell")
        else:
            cause = f"right after {message}, sent to tell whether the broker takes it"
        self.connection.failed(f"connection lost ({reason}) {cause}", attempt=False)
        if loss.limit is not None:
            log.warning("MQTT broker %s closes the connection on a %s message: messages of %s "
                        "or more (larger than any it took) are not sent from now on (one is "
                        "tried again in %.0f min), so the connection stays up for the rest. "
                        "Sampled frames and event snapshots are the large ones: lower "
                        "frames.max_height or frames.quality, or raise the broker's limit",
                        self.settings.display_url, kilobytes(loss.message.size),
                        kilobytes(loss.limit), loss.retry_in / 60)

    def _rival_found(self, rival: Rival | None) -> None:
        """Say a newly confirmed rival. The one that came first is left to stop this daemon
        (`rival`); one that came later hears this daemon's status again, live, and gives way."""
        if rival is None:
            return
        said = rival.describe(self.topics.prefix)
        if rival.came_first:
            log.error("%s; this one stops: give each device its own device_id", said)
            with self._cond:  # the topics are the other's: nothing more is set there
                self._states = RetainedStates()
            return
        log.warning("%s; it is told so and stops: give each device its own device_id", said)
        self._client.publish(self.topics.status, self._json(self._status("online")), qos=1,
                             retain=True)
        reclaim = threading.Timer(RECLAIM_AFTER_S, self._reclaim)
        reclaim.daemon = True
        reclaim.start()

    def _reclaim(self) -> None:
        """Set every retained value again (the daemon its statuses: `counters.reclaims`)."""
        with self._cond:
            if self._stopping:
                return
            self._states.set_all_again()
            self.counters.reclaims += 1
            self._cond.notify_all()

    @property
    def giving_way(self) -> bool:
        """A rival that started first is confirmed: this daemon publishes no retained value."""
        return self._rivals.gives_way_to is not None

    @property
    def rival(self) -> Rival | None:
        """Another daemon publishing as this device that started first, once confirmed: this
        one gives way to it (see edge.mqtt.rivals)."""
        return self._rivals.gives_way_to

    def _attempt_failed(self, cause: str) -> None:
        self._sessions.attempt_failed()
        self.connection.failed(cause)

    def _on_publish(self, client: mqtt.Client, userdata: Any, mid: int, reason: ReasonCode,
                    properties: Any) -> None:
        with self._cond:
            entry = self._in_flight.pop(mid, None)
            if entry is not None:
                self._acknowledged(entry[1])
                self._acked_at = time.monotonic()
            self._cond.notify_all()


def tls_context_from_config(settings: MqttConfig) -> ssl.SSLContext:
    """The TLS context for mqtts://: the system's CAs or `ca_file`, the client certificate if
    any; a file that does not load is a ConfigError naming its key."""
    try:
        context = ssl.create_default_context(
            cafile=str(settings.ca_file) if settings.ca_file else None)
    except (ssl.SSLError, OSError) as exc:
        raise ConfigError(f"mqtt.ca_file {settings.ca_file}: cannot load it as CA "
                          f"certificates ({exc}); give a PEM bundle") from exc
    if settings.certfile is not None:
        keyfile = str(settings.keyfile) if settings.keyfile else None
        try:
            load_client_certificate(context, str(settings.certfile), keyfile)
        except EncryptedKeyError:
            raise ConfigError(f"mqtt.keyfile: {decrypt_it(keyfile, str(settings.certfile))}"
                              ) from None
        except (ssl.SSLError, OSError) as exc:
            raise ConfigError(f"mqtt.certfile {settings.certfile} / mqtt.keyfile "
                              f"{settings.keyfile}: cannot load the client certificate and its "
                              f"key ({exc}); give a PEM certificate and its matching, "
                              "unencrypted PEM key") from exc
    if settings.tls_insecure:
        log.warning("mqtt.tls_insecure = true: the broker's host name is not checked against "
                    "its certificate")
        context.check_hostname = False
    return context

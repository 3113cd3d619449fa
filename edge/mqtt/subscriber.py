"""A broker connection for subscribers: MQTT 5, reconnects, optional shared subscriptions.

paho reconnects by itself (loop_start) with backoff; the filters are subscribed again on every
connect, so a broker restart loses nothing but the messages sent while it was down (QoS 1
messages too, with a clean session: a subscriber is a viewer, not a store). With a share group,
filters become `$share/<group>/<filter>` and the broker hands each message to one member of the
group, so consumers scale out across processes (MQTT 5 shared subscriptions). A broker that
does not speak MQTT 5 (amqtt, old brokers) is retried once with MQTT 3.1.1.
"""

from __future__ import annotations

import functools
import logging
import os
import secrets
import ssl
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from edge.errors import EdgeError, InputError
from edge.mqtt.failures import (
    COMMAND_LINE,
    ConnectionLog,
    SettingNames,
    ShortSessions,
    cause_from_disconnect,
    cause_from_exception,
    cause_from_reason,
    lost_reason,
    naming_the_login,
    tcp_refusal,
    unanswered,
)
from edge.mqtt.tls import EncryptedKeyError, decrypt_it, load_client_certificate
from edge.mqtt.url import PASSWORD_ENV, BrokerUrl, broker_from_url
from edge.redact import redact_uri

log = logging.getLogger(__name__)

#: CONNACK reason code of a broker that does not speak the requested protocol version.
UNSUPPORTED_PROTOCOL = 0x84

#: (topic, payload, retained) of every message received.
Receiver = Callable[[str, bytes, bool], None]


#: The longest wait between a subscriber's reconnect attempts (seconds). A person watching
#: `edge monitor` wants the broker's return seen soon, and a few watchers add no load worth
#: sparing; the daemon's link waits up to its `mqtt.reconnect_max_s` (30 s by default).
RECONNECT_MAX_S = 10


@dataclass(frozen=True)
class TlsFiles:
    """PEM files of an mqtts:// connection: the CA that signed the broker's certificate
    (default: the system's CAs) and a client certificate with its key, for brokers that want
    one."""

    ca_file: str | None = None
    certfile: str | None = None
    keyfile: str | None = None


NO_TLS_FILES = TlsFiles()


def daemon_mqtt_settings(url: str, tls: TlsFiles) -> dict[str, str]:
    """The `mqtt` section of a daemon config for a command line's broker (`edge bench --mqtt`,
    `edge demo --mqtt`): a user in the URL (`mqtt://user@host`, the password in
    $EDGE_MQTT_PASSWORD, as the subscriber tools take them) goes to `username` (and
    `password`, where the URL holds one), since a config's URL has none; and the mqtts://
    files `tls` names."""
    broker = broker_from_url(url)
    settings = {"url": broker.address, "username": broker.username,
                "password": broker.password, "ca_file": tls.ca_file,
                "certfile": tls.certfile, "keyfile": tls.keyfile}
    return {key: value for key, value in settings.items() if value is not None}


#: How long a command-line subscriber waits for the broker's first SUBACK.
CONNECT_TIMEOUT_S = 10.0
MAX_SESSION_EXPIRY_S = 2**32 - 1  # MQTT 5: a four-byte integer (this value: never expires)
MAX_RECEIVE_MAXIMUM = 2**16 - 1  # MQTT 5: a two-byte integer


def checked_broker_url(url: str) -> BrokerUrl:
    """The parsed broker URL; InputError saying what is expected otherwise."""
    try:
        return broker_from_url(url)
    except ValueError as exc:
        raise InputError(f"broker URL {redact_uri(url)!r}: {exc}") from None


def unique_client_id(role: str) -> str:
    """`edge-<role>-<pid>-<random>`: two tools on one broker never take each other's session
    over, as they would with one fixed id."""
    return f"edge-{role}-{os.getpid()}-{secrets.token_hex(3)}"


def check_device_prefix(prefix: str) -> str:
    """A subscriber's topic prefix: `edge/<device_id>` for one device or `edge/+` for every
    device. The device is its last level, so `+` may stand only for that whole level; `#`, a
    `+` elsewhere or inside a level (`edge/gate+`: an invalid filter that paho's thread
    raised on, and the tool then reported the broker unreachable) and empty levels are an
    InputError."""
    *base, device = prefix.split("/")
    if ("#" in prefix or not all([*base, device]) or any("+" in level for level in base)
            or ("+" in device and device != "+")):
        raise InputError(f"prefix {prefix!r}{_empty_levels(prefix)}: use edge/<device_id> for "
                         "one device or edge/+ for every device ('+' only as the whole last "
                         "level, no '#')")
    return prefix


def _empty_levels(prefix: str) -> str:
    """What makes a level of `prefix` empty, in words ('' when none is): a leading or trailing
    `/`, or two running, as a path-like prefix gets them."""
    said = [words for found, words in (
        (prefix.startswith("/"), "a leading '/' (an empty first level)"),
        (prefix.endswith("/") and prefix != "/", "a trailing '/' (an empty last level)"),
        ("//" in prefix, "'//' (an empty level between)")) if found]
    return f" has {' and '.join(said)}" if said else ""


def check_session_expiry(seconds: int) -> int:
    """`seconds`, a session expiry MQTT can carry (paho's network thread dies on one it
    cannot encode, and with it the connection, without a word)."""
    if (isinstance(seconds, bool) or not isinstance(seconds, int)
            or not 0 <= seconds <= MAX_SESSION_EXPIRY_S):
        raise InputError(f"session expiry {seconds!r} s: give 0 (a fresh session each "
                         "connection) or the whole seconds the broker keeps it (at most "
                         f"{MAX_SESSION_EXPIRY_S})")
    return seconds


class BrokerSubscription:
    """Subscribes `filters` [(filter, qos)] and passes every message to `receiver` on paho's
    network thread; `connected` is set while connected, `subscribed` once the broker granted
    the subscriptions (after each connect); `subscription_failure` tells a caller that waits
    for the first subscription why it did not come."""

    def __init__(self, url: str, filters: Sequence[tuple[str, int]], receiver: Receiver,
                 client_id: str = "", share_group: str | None = None,
                 ca_file: str | None = None, username: str | None = None,
                 password: str | None = None, *, certfile: str | None = None,
                 keyfile: str | None = None, log_first_failure: bool = True,
                 log_failures: bool = True, names: SettingNames = COMMAND_LINE,
                 mqtt5: bool = True, session_expiry_s: int = 0,
                 manual_ack: bool = False, receive_maximum: int = 0) -> None:
        """`username`/`password` override the URL's user info; a user without a password takes
        it from $EDGE_MQTT_PASSWORD, as the daemon does. `ca_file`, `certfile` and `keyfile`
        (PEM) are used with mqtts://. Failed attempts are logged once per cause (`last_failure`
        holds the latest), with advice in `names`' terms; `log_first_failure` False: the caller
        waits for the first subscription and reports why it failed itself (a command-line tool
        that then exits); `log_failures` False: the caller says every change itself.
        `mqtt5` False: MQTT 3.1.1 from the first attempt, for a broker known to speak nothing
        newer (no MQTT 5 attempt, so no shared subscriptions). `session_expiry_s` > 0 (with a
        fixed `client_id`): a persistent session, which the broker keeps that long after a
        disconnect, queueing the QoS 1 messages that match it for the next connection (MQTT
        3.1.1 has no expiry: the broker keeps it until its own limit). `manual_ack`: a QoS 1
        message is acknowledged to the broker only once handled, not as it arrives: a
        receiver that hands it on calls `defer_ack` and, later, the function that returns
        (any other is acknowledged when the receiver returns); what was received and not yet
        handled is then sent again at the next connection of a persistent session.
        `receive_maximum` (MQTT 5, 1-65535; 0: the broker's default): how many QoS 1 messages
        the broker sends before it waits for their acknowledgements."""
        broker = checked_broker_url(url)
        check_session_expiry(session_expiry_s)
        if not 0 <= receive_maximum <= MAX_RECEIVE_MAXIMUM:
            raise InputError(f"receive maximum {receive_maximum}: give 1-{MAX_RECEIVE_MAXIMUM} "
                             "messages, or 0 for the broker's default")
        if session_expiry_s and not client_id:
            raise InputError("a persistent session (session expiry > 0) needs a fixed client "
                             "id: the broker finds the session by it at the next connection")
        if share_group is not None and not share_group.replace("-", "").replace("_", "").isalnum():
            raise InputError(f"share group {share_group!r}: use letters, digits, _ and - only")
        self.url, self.host, self.port = url, broker.host, broker.port
        self.filters = [(f"$share/{share_group}/{f}" if share_group else f, q) for f, q in filters]
        self._receiver = receiver
        self.connected = threading.Event()
        self.subscribed = threading.Event()
        self.connects = 0
        self.unhandled = 0  # messages whose receiver raised: skipped
        self._answered = threading.Event()  # the first attempt subscribed or failed
        self._failure = ""  # why the first attempt failed
        self._retired: mqtt.Client | None = None  # the MQTT 5 client a downgrade replaces
        self.protocol = mqtt.MQTTv5 if mqtt5 else mqtt.MQTTv311
        self.session_expiry_s = session_expiry_s
        self.manual_ack = manual_ack
        self.receive_maximum = receive_maximum
        self._pending_ack: Callable[[], None] | None = None  # the message being received
        user = username or broker.username
        secret = password if username else broker.password
        password_from = None if secret is None else f"in {names.url}"
        if user and secret is None and os.environ.get(PASSWORD_ENV):
            secret, password_from = os.environ[PASSWORD_ENV], f"${PASSWORD_ENV}"
        elif not username and secret is not None \
                and os.environ.get(PASSWORD_ENV, secret) != secret:
            log.warning("$%s is set but not used: the password %s comes first", PASSWORD_ENV,
                        password_from)
        self.tls = broker.tls
        # the caller's own names where it gave the login (`username`/`password`: a config's)
        self._names = names if username or not user else naming_the_login(names, user,
                                                                          password_from)
        self._files = checked_tls_files(TlsFiles(ca_file, certfile, keyfile), names, broker.tls)
        self._settings = (client_id, user, secret)
        self._log_first_failure = log_first_failure
        self._log_failures = log_failures
        self.last_failure: str | None = None
        self.lost_reason: str | None = None  # why the broker dropped the last live connection
        self.lost_at = 0.0  # ... and when (time.time(), to show)
        self.lost_since = 0.0  # ... and when (time.monotonic(), to measure the outage by)
        self._refused = False  # the broker's CONNACK refused the current attempt
        self._reached = False  # a CONNACK came: the broker answered, refusing or not
        self._all_refused: str | None = None  # why, when the broker refused every filter
        self._sessions = ShortSessions(client_id, names)  # paho thread only
        self._connection_log = ConnectionLog(redact_uri(url))
        self._lock = threading.Lock()
        self._stopped = False
        self._client = self._make_client()

    def _make_client(self) -> mqtt.Client:
        client_id, username, password = self._settings
        persistent = self.session_expiry_s > 0
        client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id,
                             protocol=self.protocol,
                             clean_session=None if self.protocol == mqtt.MQTTv5 else not persistent,
                             manual_ack=self.manual_ack)
        if self.tls:
            files = self._files
            try:
                context = ssl.create_default_context(cafile=files.ca_file)
                if files.certfile is not None:
                    load_client_certificate(context, files.certfile, files.keyfile)
            except EncryptedKeyError:
                raise InputError(f"{self._names.client_certificate}: "
                                 f"{decrypt_it(files.keyfile, files.certfile or '')}") from None
            except (OSError, ssl.SSLError) as exc:
                given = ([f"{self._names.ca_file} {files.ca_file}"] if files.ca_file else []) + (
                    [f"{self._names.client_certificate} {files.certfile} {files.keyfile}"]
                    if files.certfile else [])
                matching = ", the key matching the certificate" if files.certfile else ""
                raise InputError(f"the TLS files ({', '.join(given) or 'the system CAs'}) do "
                                 f"not load: {exc}; give PEM files{matching}") from None
            client.tls_set_context(context)
        if username:
            client.username_pw_set(username, password)
        client.reconnect_delay_set(min_delay=1, max_delay=RECONNECT_MAX_S)
        client.on_connect = self._on_connect
        client.on_connect_fail = self._on_connect_fail
        client.on_disconnect = self._on_disconnect
        client.on_subscribe = self._on_subscribe
        client.on_message = self._on_message
        return client

    def start(self) -> None:
        if self.protocol == mqtt.MQTTv5 and (self.session_expiry_s or self.receive_maximum):
            properties = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
            if self.session_expiry_s:
                properties.SessionExpiryInterval = self.session_expiry_s
            if self.receive_maximum:
                properties.ReceiveMaximum = self.receive_maximum
            self._client.connect_async(self.host, self.port, keepalive=30,
                                       clean_start=(False if self.session_expiry_s
                                                    else mqtt.MQTT_CLEAN_START_FIRST_ONLY),
                                       properties=properties)
        else:
            self._client.connect_async(self.host, self.port, keepalive=30)
        self._client.loop_start()

    def subscription_failure(self, timeout: float) -> str | None:
        """Wait until the broker grants the subscriptions: None once it has, else why not (the
        broker refused the connection, nothing accepted it, or no answer within `timeout`
        seconds). A failed first attempt answers at once, as mosquitto_sub does, instead of
        waiting out `timeout` while paho retries (it goes on retrying in the background); after
        a connection was lost, this waits for the reconnect's grant."""
        deadline = time.monotonic() + timeout
        if not self._answered.wait(timeout):
            if self.connected.is_set():
                return (f"connected, but the broker did not grant the subscriptions within "
                        f"{timeout:g} s")
            return unanswered(self.host, self.port, timeout)
        if self.connects == 0 and self._failure:
            return self._failure
        # connected before (a reconnect may be under way): wait for this connection's grant
        if self.subscribed.wait(max(0.0, deadline - time.monotonic())):
            return self._all_refused
        return f"not subscribed again within {timeout:g} s"

    def wait_until_subscribed(self, timeout: float = CONNECT_TIMEOUT_S) -> None:
        """`subscription_failure`, as an EdgeError that names the broker (redacted), why and
        what to change, for a command-line tool that cannot go on without the broker."""
        failure = self.subscription_failure(timeout)
        if failure is not None:
            fix = failure_fix(failure)
            url = redact_uri(self.url)
            if not self._reached:
                said = f"could not reach the MQTT broker at {url}: {failure}"
            elif failure.startswith("refused the subscription"):
                said = f"the MQTT broker at {url} {failure}"
            else:  # it answered: a refused login, say
                said = f"the MQTT broker at {url}: {failure}"
            raise EdgeError(said + (f"; {fix}" if fix else ""))

    def sibling(self, filters: Sequence[tuple[str, int]], receiver: Receiver,
                role: str) -> BrokerSubscription:
        """A connection of its own to the same broker, with the same login and TLS files and a
        new client id (`unique_client_id(role)`), subscribing `filters`; it says nothing of
        its failures (its caller asks `subscription_failure`). For a look beside this
        subscription's topics that must not reach its receiver: a broker sends a message
        once for each of a client's filters that match it, so a filter added to this
        connection would hand its receiver its own topics twice."""
        _, user, secret = self._settings
        return BrokerSubscription(self.url, filters, receiver, unique_client_id(role),
                                  ca_file=self._files.ca_file, username=user, password=secret,
                                  certfile=self._files.certfile, keyfile=self._files.keyfile,
                                  log_first_failure=False, log_failures=False,
                                  names=self._names, mqtt5=self.protocol == mqtt.MQTTv5)

    def publish(self, topic: str, payload: bytes, qos: int = 1,
                retain: bool = False) -> mqtt.MQTTMessageInfo:
        """Publish on this connection (a tool that clears what it read, as `edge bench` does
        with the retained messages its run left)."""
        with self._lock:
            client = self._client
        return client.publish(topic, payload, qos=qos, retain=retain)

    def stop(self) -> None:
        with self._lock:
            self._stopped = True
            client = self._client
        client.disconnect()
        client.loop_stop()

    def _downgrade(self) -> None:
        """Replace the MQTT 5 client by an MQTT 3.1.1 one (runs on a thread of its own: a
        client cannot stop its own network thread)."""
        with self._lock:
            if self._stopped:
                return
            old, self.protocol = self._client, mqtt.MQTTv311
            self._client = self._make_client()
        old.disconnect()
        old.loop_stop()
        self.start()

    def _on_connect(self, client: mqtt.Client, userdata: Any, flags: Any, reason: ReasonCode,
                    properties: Properties | None) -> None:
        self._reached = True
        if reason.is_failure and reason.value == UNSUPPORTED_PROTOCOL \
                and self.protocol == mqtt.MQTTv5:
            log.info("broker %s:%d does not speak MQTT 5; using MQTT 3.1.1", self.host, self.port)
            self._retired = client  # its disconnect is not a failure
            threading.Thread(target=self._downgrade, name="mqtt-downgrade", daemon=True).start()
            return
        if reason.is_failure:
            self._refused = True  # the disconnect that follows is this failure, not another
            _, user, secret = self._settings
            cause = cause_from_reason(str(reason), self._names, login_given=bool(user))
            if user and secret is None and cause.startswith("not authorized"):
                cause = (f"not authorized: the user came without a password, and "
                         f"${PASSWORD_ENV} is not set; set it to that user's password")
            elif not user and os.environ.get(PASSWORD_ENV) and cause.startswith("not authorized"):
                # a user check: the password set in the environment went unsent, unsaid
                cause += f"; ${PASSWORD_ENV} is set, but is sent only with a user"
            self._failed(cause)
            return
        if self._log_failures and self._connection_log.state.startswith("disconnected"):
            self._connection_log.connected()
        self.connects += 1
        self._sessions.connected()
        self.connected.set()
        if self.session_expiry_s > 0 and flags.session_present:
            # the broker kept the subscriptions, and sends what it queued for them first: a
            # receiver that waits for room would hold the SUBACK back behind those
            self.subscribed.set()
            self._answered.set()
        client.subscribe(list(self.filters))

    def _on_connect_fail(self, client: mqtt.Client, userdata: Any) -> None:
        # paho calls this inside its `except OSError:` block: the exception is still current
        exc = sys.exc_info()[1]
        self._failed(cause_from_exception(exc, self._names, self.tls) if exc is not None else
                     _socket_failure(self.host, self.port, self.tls))

    def _failed(self, cause: str, attempt: bool = True) -> None:
        """A failed attempt (or with `attempt` False, a live connection lost): the first
        answers `subscription_failure` (and is logged unless the caller reports it itself);
        later ones are logged once per cause."""
        self.last_failure = cause
        if attempt:
            self._sessions.attempt_failed()
        if not self._answered.is_set():
            self._failure = cause
            self._answered.set()
            if not self._log_first_failure:
                return
        if self._log_failures:
            self._connection_log.failed(cause, attempt, self._sessions.taken_over)

    def _on_disconnect(self, client: mqtt.Client, userdata: Any, flags: Any, reason: ReasonCode,
                       properties: Properties | None) -> None:
        was_connected = self.connected.is_set()
        self.connected.clear()
        self.subscribed.clear()
        refused, self._refused = self._refused, False
        if client is not self._client or client is self._retired or refused:
            return
        with self._lock:
            stopped = self._stopped
        if self.connects == 0:
            certificate = (self._files.certfile is not None) if self.tls else None
            self._failed(cause_from_disconnect(str(reason), certificate, self._names))
        elif was_connected and not stopped:
            self.lost_reason, self.lost_at = lost_reason(reason), time.time()
            self.lost_since = time.monotonic()
            self._failed(self._sessions.lost(self.lost_reason), attempt=False)

    def _on_subscribe(self, client: mqtt.Client, userdata: Any, mid: int,
                      reasons: list[ReasonCode], properties: Properties | None) -> None:
        refused = [f for (f, _), r in zip(self.filters, reasons, strict=False) if r.is_failure]
        said = self._refusal(refused) if refused else None
        everything = len(refused) == len(self.filters)
        self._all_refused = said if everything else None  # nothing to read: the caller says it
        if said is not None and not everything:
            log.warning("broker %s:%d %s", self.host, self.port, said)
        self.subscribed.set()
        self._answered.set()

    @property
    def user(self) -> str | None:
        """The user this client logs in as (None: no login)."""
        return self._settings[1]

    def _refusal(self, refused: Sequence[str]) -> str:
        user = self.user
        who = f"the user {user!r}" if user else "a client without a login"
        several = len(refused) > 1
        return (f"refused the subscription{'s' if several else ''} to {', '.join(refused)}: "
                f"its ACL does not let {who} read there; allow it to read "
                f"{'them' if several else 'that'} in the broker's ACL")

    def _on_message(self, client: mqtt.Client, userdata: Any, message: mqtt.MQTTMessage) -> None:
        if self.manual_ack and message.qos > 0:
            self._pending_ack = functools.partial(_acknowledge, client, message.mid, message.qos)
        try:
            self._receiver(message.topic, bytes(message.payload), bool(message.retain))
        except Exception:  # thread boundary: an escaping error ends paho's network thread,
            # and with it every later message, without a word
            self.unhandled += 1
            if self.unhandled == 1:
                log.exception("a message on %s could not be handled; it is skipped (later "
                              "ones that fail alike are counted, not logged)", message.topic)
        finally:
            ack, self._pending_ack = self._pending_ack, None
            if ack is not None:  # not handed on: handled
                ack()

    def defer_ack(self) -> Callable[[], None] | None:
        """Called by a receiver (with `manual_ack`) that hands the message it is receiving on:
        the function that acknowledges it (its PUBACK), to call once it has been handled; None
        for a QoS 0 message, which has no acknowledgement. Over a connection that has since
        dropped the PUBACK goes nowhere, and the broker sends the message again."""
        ack, self._pending_ack = self._pending_ack, None
        return ack


def _acknowledge(client: mqtt.Client, mid: int, qos: int) -> None:
    client.ack(mid, qos)


def failure_fix(failure: str) -> str | None:
    """What to do about a `subscription_failure`, for a command-line user; None where the cause
    carries its own advice (TLS, login)."""
    if "; " in failure or ": check " in failure or "mqtts://" in failure:
        return None
    return "check --mqtt: host and port (mqtt:// defaults to 1883, mqtts:// to 8883)"


def checked_tls_files(files: TlsFiles, names: SettingNames = COMMAND_LINE,
                      tls: bool = True) -> TlsFiles:
    """`files`, each given one a file, and the client certificate with its key or neither
    (errors in `names`' terms); none at all for a plain mqtt:// URL (`tls` False), where they
    would be ignored and the data travel unencrypted."""
    given = [name for name, path in ((names.ca_file, files.ca_file),
                                     (names.client_certificate, files.certfile or files.keyfile))
             if path is not None]
    if given and not tls:
        raise InputError(f"{' and '.join(given)} given, but {names.url} is mqtt:// (no TLS): "
                         "the files would be ignored and the data travel in plaintext; use "
                         "mqtts://")
    if (files.certfile is None) != (files.keyfile is None):
        raise InputError(f"{names.client_certificate} go together: the client certificate and "
                         "its private key (PEM)")
    if files.ca_file is not None and not os.path.isfile(files.ca_file):
        raise InputError(f"{names.ca_file} {files.ca_file} is not a file")
    for path in (files.certfile, files.keyfile):
        if path is not None and not os.path.isfile(path):
            raise InputError(f"{path} is not a file ({names.client_certificate})")
    for name, path in ((names.ca_file, files.ca_file),
                       (names.client_certificate, files.certfile),
                       (names.client_certificate, files.keyfile)):
        if path is not None:
            _require_readable(path, name)
    return files


def _require_readable(path: str, name: str) -> None:
    """An InputError naming `path` (given as `name`) where this user cannot read it: loading
    it later would say only "Permission denied"."""
    try:
        with open(path, "rb"):
            pass
    except OSError as exc:
        raise InputError(f"{name}: cannot read {path} ({exc.strerror}); give a file this user "
                         "can read") from None


def _socket_failure(host: str, port: int, tls: bool) -> str:
    """Why a connection attempt failed (paho does not say): the operating system's answer to
    a plain TCP connection, or, where that connects, the MQTT or TLS layer."""
    refusal = tcp_refusal(host, port, timeout=3.0)
    if refusal is not None:
        return refusal
    layer = "TLS handshake or MQTT" if tls else "MQTT"
    return (f"{host}:{port} accepts TCP connections but the {layer} connection failed (is it an "
            "MQTT port? with mqtts://, check the CA file)")

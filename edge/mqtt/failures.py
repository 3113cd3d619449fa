"""Why the broker connection failed, said once per change and then every few minutes.

paho retries forever without a word (its failure callback gets no exception), so a daemon with
a wrong CA or password looked healthy while publishing nothing. The link turns each failure
into a short cause a person can act on; `ConnectionLog` logs a cause when it first appears or
changes, and repeats it at most every `REPEAT_S` while it lasts.
"""

from __future__ import annotations

import errno
import logging
import os
import socket
import ssl
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

from edge.redact import redact_text
from edge.wording import counted

if TYPE_CHECKING:
    from paho.mqtt.reasoncodes import ReasonCode

    from edge.config import MqttConfig

log = logging.getLogger("edge.mqtt")

#: paho's reason for a connection that ended without an MQTT DISCONNECT (the socket closed)
NO_MQTT_REASON = 0x80
NO_REASON_WORDS = "closed without an MQTT reason: the broker stopped or the network dropped"

_UNREACHABLE = {errno.ENETUNREACH, errno.EHOSTUNREACH, errno.EHOSTDOWN, errno.ETIMEDOUT}


@dataclass(frozen=True)
class SettingNames:
    """What the person reading a cause calls the connection settings, for its advice."""

    ca_file: str
    client_certificate: str
    url: str
    login: str
    own_client_id: str  # who needs a client id of its own


#: The daemon's config keys.
CONFIG_KEYS = SettingNames("mqtt.ca_file", "mqtt.certfile and mqtt.keyfile", "mqtt.url",
                           "mqtt.username and the password (mqtt.password_file or "
                           "EDGE_MQTT_PASSWORD)",
                           "each device needs its own device_id, or mqtt.client_id")
#: The subscriber tools' options (`edge monitor`, `edge collect`).
COMMAND_LINE = SettingNames("--ca-file", "--certfile and --keyfile", "--mqtt",
                            "the user (USER@ before the host in --mqtt) and the password "
                            "($EDGE_MQTT_PASSWORD)", "each running tool needs its own client id")
#: The Python client's arguments (`edge.client.Subscriber`).
PYTHON_CLIENT = SettingNames("ca_file=", "certfile= and keyfile=", "the URL",
                             "the user (USER@ before the host in the URL) and the password "
                             "($EDGE_MQTT_PASSWORD)",
                             "each running subscriber needs its own client_id=")


def cause_from_exception(exc: BaseException, names: SettingNames = CONFIG_KEYS,
                         tls: bool = False) -> str:
    """A connection attempt's exception -> `refused: ...`, `TLS verification: ...`, ...; `tls`:
    the attempt was an mqtts:// one (a reset then comes from the handshake)."""
    hung_up = (f"is it an MQTT TLS port? (plain MQTT is mqtt://; a broker that wants a client "
               f"certificate: set {names.client_certificate})")
    if tls and isinstance(exc, ConnectionResetError | BrokenPipeError | ssl.SSLEOFError):
        return f"the server hung up during the TLS handshake ({_said(exc)}): {hung_up}"
    if isinstance(exc, ssl.SSLCertVerificationError):
        return (f"TLS verification failed: {str(exc.verify_message).rstrip('.')}; check "
                f"{names.ca_file} (the CA "
                f"that signed the broker's certificate) and the host name in {names.url}")
    if isinstance(exc, ssl.SSLError):
        reason = str(exc.reason)
        hint = (f"; the broker wants a client certificate: set {names.client_certificate}"
                if "CERTIFICATE_REQUIRED" in reason else
                "; is it a TLS port? mqtts:// needs a TLS listener (plain MQTT is mqtt://)"
                if "WRONG_VERSION_NUMBER" in reason or "RECORD_LAYER" in reason else
                f"; the server hung up during the handshake: {hung_up}" if "EOF" in reason
                else "")
        return f"TLS handshake failed: {exc.reason or exc}{hint}"
    if isinstance(exc, ConnectionRefusedError):
        return "connection refused: is the broker running and listening on that port?"
    if isinstance(exc, socket.gaierror):
        return f"unreachable: cannot resolve the host name ({exc.strerror})"
    if isinstance(exc, TimeoutError) or (isinstance(exc, OSError) and exc.errno in _UNREACHABLE):
        return f"unreachable: {exc.strerror or 'timed out'}"
    if isinstance(exc, ConnectionError):
        return f"the broker closed the connection ({exc.strerror or type(exc).__name__})"
    return redact_text(f"{type(exc).__name__}: {exc}")


def _said(exc: BaseException) -> str:
    return (exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)) or \
        type(exc).__name__


def naming_the_login(names: SettingNames, user: str, password_from: str | None) -> SettingNames:
    """`names` whose login advice names the user sent and where its password came from (a
    wrong password in a URL was blamed on $EDGE_MQTT_PASSWORD, which held the right one);
    `password_from` None: no password was sent."""
    source = f"the password ({password_from})" if password_from else "its password"
    return replace(names, login=f"the user {user!r} and {source}")


def config_names(settings: MqttConfig) -> SettingNames:
    """The daemon's config keys, the login advice naming its user and where the password
    came from."""
    if not settings.username:
        return CONFIG_KEYS
    return naming_the_login(CONFIG_KEYS, settings.username,
                            settings.password_source(os.environ))


def cause_from_reason(reason: str, names: SettingNames = CONFIG_KEYS,
                      login_given: bool = True) -> str:
    """A CONNACK refusal -> a cause; `login_given`: whether a user name was sent."""
    if "authori" in reason.lower() or "user name or password" in reason.lower():
        said = "" if reason.lower() == "not authorized" else f" ({reason})"
        if not login_given:
            return (f"not authorized{said}: the broker wants a login and none is given; set "
                    f"{names.login}")
        return f"not authorized{said}: check {names.login}"
    return f"refused by the broker ({reason})"


def headline(cause: str) -> str:
    """A cause's words before its explanation, for a one-line state: `connection refused: is
    the broker running...` -> `connection refused`; `connection lost (closed without an MQTT
    reason: ...)` -> `connection lost (closed without an MQTT reason)`, parentheses closed."""
    head = cause.partition(":")[0]
    return head + ")" * (head.count("(") - head.count(")"))


def lost_reason(reason: ReasonCode) -> str:
    """Why a live connection ended, in words: the broker's reason, or for a socket that just
    closed (paho's "Unspecified error") what usually closes one."""
    if reason.value == NO_MQTT_REASON:
        return NO_REASON_WORDS
    if _keepalive_ran_out(str(reason)):
        return f"{reason}: the broker stopped answering, or the network dropped in silence"
    return str(reason)


def _keepalive_ran_out(reason: str) -> bool:
    """paho's reason when no packet came within 1.5 keepalives (a CONNACK, or a PINGRESP)."""
    return reason.lower().startswith("keep alive timeout")


#: A connection the broker closes this soon after accepting it, `TAKEOVER_RUN` times running,
#: each time accepted again at the first attempt, is most likely taken over: MQTT lets one
#: session per client id, and a second client with the same id (two devices with one
#: device_id) makes the broker close the first, which reconnects and closes the second, every
#: second or so, each loss reading as a network fault. A broker that went away refuses the
#: next attempt, which ends the run.
SHORT_SESSION_S = 10.0
TAKEOVER_RUN = 3


class ShortSessions:
    """Why each live connection was lost, in words, naming a takeover where the losses
    point to one (see `SHORT_SESSION_S`), under a fixed client id. One per client; called
    from its network thread only."""

    def __init__(self, client_id: str, names: SettingNames = CONFIG_KEYS,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._client_id, self._names, self._clock = client_id, names, clock
        self.connected_at = 0.0  # clock() of the last connect
        self._running = 0  # losses in a row that came soon after connecting

    @property
    def taken_over(self) -> bool:
        """The last loss was worded as a takeover."""
        return bool(self._client_id) and self._running >= TAKEOVER_RUN

    def connected(self) -> None:
        self.connected_at = self._clock()

    def attempt_failed(self) -> None:
        """A connection attempt failed: the broker was away, not taken by another client."""
        self._running = 0

    def lost(self, reason: str) -> str:
        """The cause of a live connection's loss; `reason`: `lost_reason`'s words."""
        short = self._clock() - self.connected_at < SHORT_SESSION_S
        self._running = self._running + 1 if short else 0
        if not self.taken_over:
            return f"connection lost ({reason})"
        said = "the broker giving no reason" if reason == NO_REASON_WORDS else reason
        return (f"connection lost within {SHORT_SESSION_S:g} s of connecting, {TAKEOVER_RUN} "
                f"times running or more, each time accepted again at once ({said}): is another "
                "client "
                f"connected with the same client id {self._client_id!r}? "
                f"({self._names.own_client_id}; a broker restarting again and again looks "
                "the same)")


def cause_from_disconnect(reason: str, client_certificate: bool | None,
                          names: SettingNames = CONFIG_KEYS, answered_before: bool = False
                          ) -> str:
    """A disconnect before the broker accepted the connection -> a cause (a live one's loss:
    `ShortSessions.lost`); `client_certificate`: None without TLS, else whether one is
    configured (a broker that requires one closes the socket right after the handshake);
    `answered_before`: the broker accepted a connection earlier in this run, so its address
    is right. Without TLS, a socket closed before any answer is most often a TLS listener: it
    drops a client that does not start a handshake."""
    if _keepalive_ran_out(reason):  # paho gave up waiting for a CONNACK
        if answered_before:  # a stopped (SIGSTOP), hung or swamped broker; the kernel accepts
            return (f"no MQTT answer before the keepalive ran out ({reason}): the broker "
                    "accepts connections but does not answer, though it did earlier in this "
                    "run: is it hung, overloaded or starting?")
        return (f"no MQTT answer before the keepalive ran out ({reason}): something accepts "
                f"connections there but does not speak MQTT; check {names.url}: host and port")
    if client_certificate is None:
        return (f"the broker closed the connection before any MQTT answer ({reason}): is it "
                f"an MQTT port? a TLS listener wants mqtts:// in {names.url}")
    hint = (f"; if it requires a client certificate, set {names.client_certificate}"
            if client_certificate is False else "")
    return f"the broker closed the connection before accepting it ({reason}){hint}"


class ConnectionLog:
    """Connection state for logs and the journal summary; thread-safe."""

    REPEAT_S = 300.0

    def __init__(self, where: str, clock: Callable[[], float] = time.monotonic) -> None:
        self._where = where  # the broker URL, already redacted
        self._clock = clock
        self._lock = threading.Lock()
        self._cause: str | None = None
        self._logged_at = 0.0
        self._failures = 0
        # a takeover (`ShortSessions`: the connection lost every second or so) is said once
        # per `REPEAT_S`, its reconnects with it, not twice a second
        self._lost: str | None = None
        self._lost_logged_at = 0.0
        self._unsaid_loss = False
        self._settled = threading.Event()
        self.state = "connecting"
        # a warning said the broker was away since the last connection: the connection that
        # ends it is said at the same level, so a log that shows warnings only (Python's
        # default) shows the broker back too
        self._said_away = False

    @property
    def failed_attempts(self) -> int:
        """Connection attempts that failed since the last successful one."""
        with self._lock:
            return self._failures

    def wait_settled(self, timeout: float) -> bool:
        """Wait up to `timeout` seconds for the first attempt's outcome (connected or failed),
        so that a line written right after start says which; False if it is still pending."""
        return self._settled.wait(timeout)

    def failed(self, cause: str, attempt: bool = True, taken_over: bool = False) -> None:
        """A connection attempt failed (`attempt`), or a live connection was lost (False: not
        counted among the attempts); `taken_over`: the loss is one of a takeover's."""
        with self._lock:
            self._failures += int(attempt)
            self.state = f"disconnected ({headline(cause)})"
            now = self._clock()
            if not attempt:
                repeated = (taken_over and cause == self._lost
                            and now - self._lost_logged_at < self.REPEAT_S)
                self._unsaid_loss = repeated
                if not repeated:
                    self._lost, self._lost_logged_at = cause, now
            else:
                self._lost = None  # the broker went away: the next loss is news
                repeated = cause == self._cause and now - self._logged_at < self.REPEAT_S
                if not repeated:
                    self._cause, self._logged_at = cause, now
            failures = self._failures
        if repeated:  # a repeat follows a logged failure, which set `_settled`
            return
        with self._lock:
            self._said_away = True
        if not attempt:
            log.warning("MQTT broker %s: %s; reconnecting with backoff", self._where, cause)
        else:
            log.warning("MQTT broker %s: %s (%d failed attempt%s so far; retrying with "
                        "backoff)", self._where, cause, failures, "" if failures == 1 else "s")
        self._settled.set()  # after the line: a line that waited for it comes after it

    def unanswered(self, cause: str) -> None:
        """The first attempt has had no answer for a while (`cause` says what is there): said
        now, not when the keepalive ends the attempt, which, failing with the same `cause`,
        is then counted without a second line."""
        with self._lock:
            self.state = f"connecting ({headline(cause)})"
            self._cause, self._logged_at = cause, self._clock()
            self._said_away = True
        log.warning("MQTT broker %s: %s", self._where, cause)
        self._settled.set()

    def connected(self) -> None:
        with self._lock:
            failures, self._failures, self._cause = self._failures, 0, None
            self.state = "connected"
            unsaid, self._unsaid_loss = self._unsaid_loss, False
            said_away, self._said_away = self._said_away, False
        level = (logging.DEBUG if unsaid and not failures
                 else logging.WARNING if said_away else logging.INFO)
        log.log(level, "connected to MQTT broker %s%s", self._where,
                f" after {counted(failures, 'failed attempt')}" if failures else "")
        self._settled.set()


def tcp_refusal(host: str, port: int, timeout: float) -> str | None:
    """The operating system's answer to a plain TCP connection to `host:port`, None where it
    connects (paho does not say why its own attempt failed)."""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return None
    except OSError as exc:
        return f"{host}:{port}: {exc.strerror or exc}"


def unanswered(host: str, port: int, waited: float) -> str:
    """Why nothing answered a connection attempt for `waited` seconds: a server that takes the
    TCP connection and then says nothing (a web or RTSP server waits for its own kind of
    request) is told apart from a host that lets no connection through."""
    refusal = tcp_refusal(host, port, timeout=2.0)
    if refusal is not None:
        return f"no answer within {waited:.0f} s ({refusal})"
    return (f"something took the connection but gave no MQTT answer within {waited:.0f} s "
            "(is it an MQTT port? a web or RTSP server waits like this)")

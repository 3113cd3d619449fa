"""Why a broker closes the daemon's connection before any answer, asked apart.

MQTT 3.1.1 gives a broker no way to say why it drops a CONNECT, and paho sees only a closed
socket, which reads the same for a TLS listener given plain MQTT, a broker at its limit of
connections (Mosquitto's `max_connections`) and a broker that refuses the daemon's Last Will:
the daemon sets its `offline` status as a retained QoS 1 will at every connect, which a broker
that keeps no retained messages (`retain_available false`) or takes QoS 0 alone (`max_qos 0`)
refuses. A user check read "is it an MQTT port? a TLS listener wants mqtts://", the wrong fix
for a broker that answered a plain CONNECT at once. Raw connections tell them apart: a CONNECT
without a will, then one with a retained QoS 1 will, and where even the first is closed, a TLS
handshake.
"""

from __future__ import annotations

import contextlib
import os
import socket
import ssl
import struct
from typing import Literal

#: MQTT 3.1.1's protocol name and level.
_PROTOCOL = b"\x00\x04MQTT\x04"
_CONNECT = 0x10
_CONNACK = 0x20
_DISCONNECT = b"\xe0\x00"
# CONNECT flags
_CLEAN = 0x02
_WILL = 0x04
_WILL_QOS_1 = 0x08
_WILL_RETAIN = 0x20
_PASSWORD = 0x40
_USERNAME = 0x80


def _field(data: bytes) -> bytes:
    return struct.pack("!H", len(data)) + data


def _remaining_length(length: int) -> bytes:
    encoded = bytearray()
    while True:
        byte, length = length % 128, length // 128
        encoded.append(byte | (0x80 if length else 0))
        if not length:
            return bytes(encoded)


def connect_packet(client_id: str, will_topic: str | None, username: str | None = None,
                   password: str | None = None) -> bytes:
    """An MQTT 3.1.1 CONNECT (clean session, keepalive 10 s), with a retained QoS 1 Last Will
    on `will_topic` (an empty payload) where one is given."""
    flags = _CLEAN
    payload = _field(client_id.encode())
    if will_topic is not None:
        flags |= _WILL | _WILL_QOS_1 | _WILL_RETAIN
        payload += _field(will_topic.encode()) + _field(b"")
    if username is not None:
        flags |= _USERNAME
        payload += _field(username.encode())
        if password is not None:
            flags |= _PASSWORD
            payload += _field(password.encode())
    body = _PROTOCOL + bytes([flags]) + struct.pack("!H", 10) + payload
    return bytes([_CONNECT]) + _remaining_length(len(body)) + body


Answer = Literal["connack", "other", "closed"]


def _answer(host: str, port: int, packet: bytes, tls: ssl.SSLContext | None,
            timeout: float) -> Answer | None:
    """How the broker answers `packet`: a CONNACK (whatever its code), other bytes, or a
    connection closed (or reset) without a byte; None where no connection can be made."""
    try:
        raw = socket.create_connection((host, port), timeout=timeout)
    except OSError:
        return None
    try:
        with raw, (tls.wrap_socket(raw, server_hostname=host) if tls is not None
                   else contextlib.nullcontext(raw)) as sock:
            sock.sendall(packet)
            answer = b""
            while len(answer) < 4:
                chunk = sock.recv(4 - len(answer))
                if not chunk:
                    return "closed" if not answer else "other"
                answer += chunk
            if answer[0] != _CONNACK:
                return "other"
            if answer[3] == 0:
                sock.sendall(_DISCONNECT)  # a clean end: the probe's will is never sent
            return "connack"
    except ConnectionError:  # reset: Mosquitto past its max_connections
        return "closed"
    except OSError:  # a timeout, a TLS handshake refused (a certificate): cannot tell
        return None


def _speaks_tls(host: str, port: int, timeout: float) -> bool:
    """Whether a TLS handshake succeeds at `host:port` (certificates not checked: only
    whether the port is a TLS listener)."""
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    try:
        with socket.create_connection((host, port), timeout=timeout) as raw, \
                context.wrap_socket(raw, server_hostname=host):
            return True
    except (OSError, ssl.SSLError):
        return False


Refusal = Literal["will", "tls", "closes_every_connection"]


def refusal(host: str, port: int, tls: ssl.SSLContext | None = None,
            username: str | None = None, password: str | None = None,
            timeout: float = 3.0) -> Refusal | None:
    """Why the broker at `host:port` closes connections before answering: "will" where it
    answers a CONNECT without a will and closes the same one with a retained QoS 1 will;
    "tls" where even that is closed and the port completes a TLS handshake (plain MQTT given
    to a TLS listener); "closes_every_connection" where neither; None where it answers, is
    no MQTT broker, or cannot be reached. The probe's client ids are its own
    (`edge-probe-...`), so no daemon's session is taken over."""
    client_id = f"edge-probe-{os.getpid()}-{os.urandom(3).hex()}"
    plain = _answer(host, port, connect_packet(client_id, None, username, password), tls,
                    timeout)
    if plain in ("closed", "other") and tls is None and _speaks_tls(host, port, timeout):
        return "tls"  # a TLS listener closes, or first sends an alert
    if plain == "closed":
        return "closes_every_connection"
    if plain != "connack":
        return None
    with_will = connect_packet(client_id, f"{client_id}/will", username, password)
    return "will" if _answer(host, port, with_will, tls, timeout) == "closed" else None

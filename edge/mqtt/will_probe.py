"""Whether a broker refuses the daemon's CONNECT for its retained Last Will.

The daemon sets its `offline` status as a retained QoS 1 Last Will at every connect. A broker
that keeps no retained messages (Mosquitto's `retain_available false`) or takes QoS 0 alone
(`max_qos 0`) closes the connection on such a CONNECT without an answer, which MQTT 3.1.1
gives it no way to explain: a user check read "is it an MQTT port? a TLS listener wants
mqtts://", the wrong fix for a broker that answered a plain CONNECT at once. Two raw
connections tell: a CONNECT without a will, then one with a retained QoS 1 will; answered
only without it, the will is what the broker refuses.
"""

from __future__ import annotations

import os
import socket
import ssl
import struct

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


def _answered(host: str, port: int, packet: bytes, tls: ssl.SSLContext | None,
              timeout: float) -> bool | None:
    """Whether the broker answers `packet` with a CONNACK (whatever its code); None where it
    cannot be reached at all."""
    try:
        with socket.create_connection((host, port), timeout=timeout) as raw:
            sock = tls.wrap_socket(raw, server_hostname=host) if tls is not None else raw
            sock.sendall(packet)
            answer = b""
            while len(answer) < 4:
                chunk = sock.recv(4 - len(answer))
                if not chunk:
                    return False
                answer += chunk
            if answer[0] == _CONNACK and answer[3] == 0:
                sock.sendall(_DISCONNECT)  # a clean end: the probe's will is never sent
            return answer[0] == _CONNACK
    except (OSError, ssl.SSLError):
        return None


def refuses_retained_will(host: str, port: int, tls: ssl.SSLContext | None = None,
                          username: str | None = None, password: str | None = None,
                          timeout: float = 3.0) -> bool:
    """Whether the broker at `host:port` answers a CONNECT without a will and closes the
    connection on the same CONNECT with a retained QoS 1 one. The probe's client ids are its
    own (`edge-probe-...`), so no daemon's session is taken over."""
    client_id = f"edge-probe-{os.getpid()}-{os.urandom(3).hex()}"
    plain = connect_packet(client_id, None, username, password)
    if _answered(host, port, plain, tls, timeout) is not True:
        return False
    with_will = connect_packet(client_id, f"{client_id}/will", username, password)
    return _answered(host, port, with_will, tls, timeout) is False

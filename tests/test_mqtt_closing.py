"""The close after a DISCONNECT, on real loopback TCP sockets: a broker (Mosquitto among them)
that sees a reset on a connection drops it without reading what is buffered, the DISCONNECT
too, and sends the Last Will."""

from __future__ import annotations

import select
import socket
import time

from edge.mqtt.closing import drain_until_closed


def tcp_pair() -> tuple[socket.socket, socket.socket]:
    """(client, broker's side) of one loopback connection."""
    with socket.create_server(("127.0.0.1", 0)) as server:
        client = socket.create_connection(server.getsockname())
        broker, _ = server.accept()
    return client, broker


def broker_sees_a_reset(broker: socket.socket) -> bool:
    """Whether the broker's side is told of an error (a reset) once the client has closed."""
    poller = select.poll()
    poller.register(broker, select.POLLIN | select.POLLERR | select.POLLHUP)
    events = poller.poll(2000)
    assert events, "the close never reached the broker's side"
    return bool(events[0][1] & select.POLLERR)


def test_closing_with_bytes_unread_is_a_reset():
    """Why the drain exists: the kernel turns such a close into a reset."""
    client, broker = tcp_pair()
    try:
        broker.sendall(b"an answer the client has not read")
        client.sendall(b"DISCONNECT")
        time.sleep(0.05)  # the answer is in the client's buffer
        client.close()
        assert broker_sees_a_reset(broker)
    finally:
        broker.close()


def test_a_drained_close_is_no_reset():
    client, broker = tcp_pair()
    try:
        broker.sendall(b"an answer the client has not read")
        client.sendall(b"DISCONNECT")
        assert broker.recv(100) == b"DISCONNECT"
        broker.shutdown(socket.SHUT_WR)  # a broker closes on a DISCONNECT
        assert drain_until_closed(client, timeout=2.0)
        client.close()
        assert not broker_sees_a_reset(broker)
    finally:
        broker.close()


def test_a_peer_that_never_closes_is_waited_for_no_longer_than_the_timeout():
    client, broker = tcp_pair()
    client.setblocking(False)  # as paho keeps it
    try:
        broker.sendall(b"x" * 200_000)  # more than one read
        began = time.monotonic()
        assert not drain_until_closed(client, timeout=0.3)
        assert 0.25 <= time.monotonic() - began < 1.5
        assert select.select([client], [], [], 0.05)[0] == [], "the drain left bytes unread"
    finally:
        client.close()
        broker.close()


def test_a_peer_that_closed_already_is_closed():
    client, broker = tcp_pair()
    broker.close()
    assert drain_until_closed(client, timeout=1.0)
    client.close()

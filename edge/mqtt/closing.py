"""Closing a connection after a DISCONNECT without a TCP reset.

Closing a socket whose receive buffer holds unread bytes makes the kernel send a reset (RST)
instead of a plain close (FIN). A broker that takes the reset before it has read the client's
DISCONNECT discards what was still buffered, the DISCONNECT with it, and so treats the clean
stop as a lost connection and sends the Last Will. A daemon receives at any moment (commands,
its own status, the answer to an unsubscription), so after its DISCONNECT is written it reads
and discards what arrives until the broker closes (it does on a DISCONNECT), and only then
closes its side.
"""

from __future__ import annotations

import select
import socket
import ssl
import time

#: The most a stop waits for the broker to close after the DISCONNECT (seconds); a broker
#: on the same network closes within milliseconds.
DRAIN_S = 0.5
_CHUNK = 65536


def drain_until_closed(sock: socket.socket, timeout: float = DRAIN_S) -> bool:
    """Read and discard what `sock` receives until the peer closes, for up to `timeout`
    seconds; True once it has closed (EOF or a reset: nothing unread is left either way).
    `sock` may be blocking or not, plain or TLS."""
    deadline = time.monotonic() + timeout
    while True:
        pending = sock.pending() if isinstance(sock, ssl.SSLSocket) else 0
        if not pending:
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            try:
                readable, _, _ = select.select([sock], [], [], left)
            except (OSError, ValueError):  # closed already
                return True
            if not readable:
                return False
        try:
            if not sock.recv(max(pending, _CHUNK)):
                return True
        except (BlockingIOError, ssl.SSLWantReadError, ssl.SSLWantWriteError):
            continue  # a TLS record only partly in: select again
        except OSError:  # reset, or a TLS close without close_notify: closed
            return True

"""systemd's notify protocol (sd_notify(3)), written out: one datagram per message to the
socket named by $NOTIFY_SOCKET.

`Type=notify` units learn from `READY=1` that the daemon is up, show `STATUS=` in
`systemctl status`, and with `WatchdogSec=` restart the service when `WATCHDOG=1` stops
arriving. Outside systemd (no $NOTIFY_SOCKET) every call is a no-op. A send that fails is
logged once and never raised: telling systemd is never a reason to stop serving cameras.
"""

from __future__ import annotations

import logging
import os
import socket
from collections.abc import Mapping

log = logging.getLogger(__name__)


class Notifier:
    """Messages to systemd; build with `notifier_from_environ`."""

    def __init__(self, address: str | None, watchdog_s: float | None) -> None:
        """`address`: a path, or `@name` for the abstract namespace; None: a no-op notifier.
        `watchdog_s`: systemd's watchdog timeout, if it set one for this process."""
        self.address = address
        self.watchdog_s = watchdog_s
        self._socket: socket.socket | None = None
        self._failed = False
        if address is not None:
            self._socket = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
            # a receiver that stops reading fills the datagram queue (10 deep by default on
            # Linux): a send then fails at once (and is dropped) instead of blocking the
            # daemon. Not a timeout: poll() calls an unconnected datagram socket writable, so a
            # timed send spins a core until it expires. A missed WATCHDOG=1 goes again next tick.
            self._socket.setblocking(False)

    @property
    def enabled(self) -> bool:
        return self._socket is not None

    def notify(self, *assignments: str) -> bool:
        """Send `READY=1`, `STATUS=...`, `WATCHDOG=1`, ... in one datagram; True when sent."""
        if self._socket is None or self.address is None:
            return False
        target = "\0" + self.address[1:] if self.address.startswith("@") else self.address
        message = "\n".join(line.replace("\n", " ") for line in assignments).encode()
        try:
            self._socket.sendto(message, target)
        except OSError as exc:
            if not self._failed:
                log.warning("cannot notify systemd through %s: %s", self.address, exc)
            self._failed = True
            return False
        return True

    def close(self) -> None:
        if self._socket is not None:
            self._socket.close()
            self._socket = None


def notifier_from_environ(environ: Mapping[str, str]) -> Notifier:
    """The notifier systemd asked for: $NOTIFY_SOCKET, and $WATCHDOG_USEC when $WATCHDOG_PID
    is unset or names this process (as sd_watchdog_enabled(3) decides)."""
    address = environ.get("NOTIFY_SOCKET") or None
    if address is not None and not (address.startswith(("/", "@"))):
        log.warning("ignoring NOTIFY_SOCKET=%s: not a socket path or @abstract name", address)
        address = None
    watchdog_s = None
    pid = environ.get("WATCHDOG_PID")
    if environ.get("WATCHDOG_USEC", "").isdigit() and (pid is None or pid == str(os.getpid())):
        watchdog_s = int(environ["WATCHDOG_USEC"]) / 1e6 or None
    return Notifier(address, watchdog_s)

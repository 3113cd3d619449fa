"""One connection to a stream's server (RTSP/1.0 or HTTP/1.1 over TCP, or over TLS), with
every step bounded by one deadline, for the probe that asks the server why a stream does not
open (`edge.sources.stream_probe`)."""

from __future__ import annotations

import socket
import threading
import time
from dataclasses import dataclass
from typing import Any

from edge.sources.ffmpeg_options import camera_tls_context
from edge.sources.stream_auth import Challenge
from edge.sources.stream_url import TLS_SCHEMES, StreamTarget

#: An answer's status line and headers; a longer head is not a stream server's.
MAX_HEAD_BYTES = 16_384
MAX_BODY_BYTES = 65_536


@dataclass(frozen=True)
class Answer:
    """A response: status code, reason phrase, headers (lower-case names), body (an RTSP
    answer's, up to `MAX_BODY_BYTES`; an HTTP answer's is left unread)."""

    status: int
    reason: str
    headers: dict[str, str]
    body: bytes
    challenges: tuple[Challenge, ...] = ()  # every WWW-Authenticate, in order

    @property
    def content_type(self) -> str:
        """The media type, lower case, without its parameters (`multipart/x-mixed-replace`)."""
        return self.headers.get("content-type", "").partition(";")[0].strip().lower()


class NotThatProtocolError(Exception):
    """The server answered in another protocol than the URL's (its first bytes)."""


class HungUpError(Exception):
    """The server closed the connection at the first request, twice, without an answer."""


class UnresolvedError(Exception):
    """The host name did not resolve in time."""


class SilentError(Exception):
    """The server took the connection but did not answer a request in time."""


class _ClosedError(Exception):
    """The server closed the connection before answering."""


class StreamConnection:
    """One TCP (or TLS) connection making requests in turn in the URL's protocol; a server that
    closes after an answer (some do after a 401) is connected to again for the next request."""

    def __init__(self, target: StreamTarget, deadline: float) -> None:
        self._target, self._deadline = target, deadline
        self._socket: socket.socket | None = None
        self._sequence = 0
        self._requests = 0

    def __enter__(self) -> StreamConnection:
        self._connect()
        return self

    def __exit__(self, *_: object) -> None:
        if self._socket is not None:
            self._socket.close()

    def _connect(self) -> None:
        if self._socket is not None:
            self._socket.close()
        raw = self._connected(_addresses(self._target.host, self._target.port,
                                         self._remaining(UnresolvedError)))
        if self._target.scheme in TLS_SCHEMES:
            # the certificate checked as FFmpeg checks it: not at all unless the user's
            # options say (cameras' certificates are self-signed nearly always)
            context = camera_tls_context()
            raw.settimeout(self._remaining(TimeoutError))
            raw = context.wrap_socket(raw, server_hostname=self._target.host)
        self._socket = raw

    def _connected(self, addresses: list[tuple[int, tuple[Any, ...]]]) -> socket.socket:
        """A socket connected to the first of `addresses` that takes the connection; where none
        does, a refusal ranks before a timeout (`localhost` is ::1 and 127.0.0.1, and a server
        that listens on one of them is there)."""
        failures: list[OSError] = []
        for family, address in addresses:
            connection = socket.socket(family, socket.SOCK_STREAM)
            try:
                connection.settimeout(self._remaining(TimeoutError))
                connection.connect(address)
                return connection
            except OSError as exc:
                connection.close()
                failures.append(exc)
        refused = [exc for exc in failures if isinstance(exc, ConnectionRefusedError)]
        raise (refused or failures or [TimeoutError()])[0]

    def request(self, method: str, headers: dict[str, str] | None = None) -> Answer:
        """`method` on the URL (RTSP) or its resource (HTTP), and the answer's head. Each
        HTTP request has a connection of its own (`Connection: close`): an answer's body is
        left unread, as a stream's has no end (a user check: a 401's body, read as the next
        answer, made a refused password "not an HTTP server")."""
        if self._target.protocol == "HTTP" and self._requests:
            self._connect()
        self._requests += 1
        for attempt in range(2):
            try:
                assert self._socket is not None
                self._socket.sendall(self._request_head(method, headers))
                return self._answer()
            except (ConnectionResetError, BrokenPipeError, _ClosedError):
                if attempt:
                    raise ConnectionError("the server closed it") from None
                self._connect()
        raise AssertionError("unreachable")

    def _request_head(self, method: str, headers: dict[str, str] | None) -> bytes:
        target = self._target
        if target.protocol == "RTSP":
            self._sequence += 1
            lines = [f"{method} {target.url} RTSP/1.0", f"CSeq: {self._sequence}",
                     "User-Agent: edge-stream-probe"]
        else:
            port = "" if target.port == target.default_port else f":{target.port}"
            host = f"[{target.host}]" if ":" in target.host else target.host
            lines = [f"{method} {target.resource} HTTP/1.1", f"Host: {host}{port}",
                     "User-Agent: edge-stream-probe", "Accept: */*", "Connection: close"]
        lines += [f"{name}: {value}" for name, value in (headers or {}).items()]
        return ("\r\n".join(lines) + "\r\n\r\n").encode()

    def _answer(self) -> Answer:
        marker = f"{self._target.protocol}/".encode()
        head = b""
        while b"\r\n\r\n" not in head:
            chunk = self._receive()
            if not chunk:
                if head:
                    raise NotThatProtocolError(first_bytes(head))
                raise _ClosedError
            head += chunk
            if not head.startswith(marker[:len(head)]) or len(head) > MAX_HEAD_BYTES:
                raise NotThatProtocolError(first_bytes(head))
        head, _, body = head.partition(b"\r\n\r\n")
        status_line, *header_lines = head.decode("latin-1").split("\r\n")
        parts = status_line.split(" ", 2)
        if len(parts) < 2 or not parts[1].isdigit():
            raise NotThatProtocolError(first_bytes(head))
        headers = {}
        challenges = []
        for line in header_lines:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
            if name.strip().lower() == "www-authenticate":
                challenges.append(Challenge.parse(value))
        if self._target.protocol == "RTSP":  # an HTTP body may be a stream without end
            length = min(int(headers.get("content-length", "0") or 0), MAX_BODY_BYTES)
            while len(body) < length:
                chunk = self._receive()
                if not chunk:
                    break
                body += chunk
        return Answer(int(parts[1]), parts[2] if len(parts) > 2 else "", headers, body,
                      tuple(challenges))

    def _receive(self) -> bytes:
        assert self._socket is not None
        try:
            self._socket.settimeout(self._remaining(SilentError))
            return self._socket.recv(4096)
        except TimeoutError:
            raise SilentError from None

    def _remaining(self, late: type[Exception]) -> float:
        """Seconds left before the deadline; `late` is raised when none are."""
        left = self._deadline - time.monotonic()
        if left <= 0:
            raise late
        return left


def _addresses(host: str, port: int, timeout: float) -> list[tuple[int, tuple[Any, ...]]]:
    """(family, socket address) of each address `host` resolves to, within `timeout` seconds
    (the system's resolver has no timeout of its own to give; a resolver that does not
    answer would otherwise hold the probe for its own retries)."""
    found: list[tuple[int, tuple[Any, ...]]] = []
    failed: list[OSError] = []

    def resolve() -> None:
        try:
            found.extend((info[0], info[4]) for info in
                         socket.getaddrinfo(host, port, type=socket.SOCK_STREAM))
        except OSError as exc:
            failed.append(exc)

    resolver = threading.Thread(target=resolve, name="stream-probe-dns", daemon=True)
    resolver.start()
    resolver.join(timeout)
    if resolver.is_alive():
        raise UnresolvedError
    if failed:
        raise failed[0]
    return found


def first_bytes(data: bytes) -> str:
    """The start of an answer as printable text, for a message."""
    text = data[:40].decode("latin-1")
    return repr("".join(c if c.isprintable() else "." for c in text))

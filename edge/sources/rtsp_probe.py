"""Why an RTSP stream does not open, asked of its server directly.

When FFmpeg (inside OpenCV) cannot open a stream, OpenCV says only that it could not; the
cause is in FFmpeg's own lines on stderr, if anywhere. The causes a person can fix are few and
each shows at one step of the handshake, so the probe takes those steps itself, each bounded by
a timeout: the host name resolved, a TCP (TLS for rtsps) connection, an RTSP `OPTIONS`, then a
`DESCRIBE` of the URL's path, with the URL's user name and password where the server asks for
them (`edge.sources.rtsp_auth`). What it finds is one sentence for the camera's status and the
log, naming host, port and path but never the credentials.
"""

from __future__ import annotations

import socket
import ssl
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote

from edge.sources.rtsp_auth import Challenge, authorization, chosen

#: Seconds the whole probe may take (connecting and every answer).
PROBE_TIMEOUT_S = 3.0
DEFAULT_PORTS = {"rtsp": 554, "rtsps": 322}
#: An answer's status line and headers; a longer head is not an RTSP server's.
MAX_HEAD_BYTES = 16_384
MAX_BODY_BYTES = 65_536
#: Characters that end a URL's authority for FFmpeg: raw in a user name or password, the
#: host it reads is wrong (`Port missing in uri`).
URL_DELIMITERS = "/?#"


@dataclass(frozen=True)
class RtspTarget:
    """An `rtsp://` or `rtsps://` URL taken apart; `url` is the one requests name (without
    the credentials)."""

    scheme: str
    host: str
    port: int
    url: str
    path: str
    user: str | None
    password: str | None
    unencoded: str = ""  # URL_DELIMITERS written raw in the user name or password

    @classmethod
    def parse(cls, text: str) -> RtspTarget | None:
        """None for anything but an rtsp(s) URL with a host and a valid port."""
        read = cls._read(text)
        return read if isinstance(read, RtspTarget) else None

    @classmethod
    def problem(cls, text: str) -> str | None:
        """What keeps `text` from parsing (`parse`), in words: no host, or which port is bad;
        None when it parses. Never quotes the credentials."""
        read = cls._read(text)
        return read if isinstance(read, str) else None

    @classmethod
    def _read(cls, text: str) -> RtspTarget | str:
        """The URL taken apart, or what is wrong with it. The credentials end at the last
        `@` before the path, as `edge.redact` cuts them: a password may hold `/` or `@`."""
        scheme, separator, rest = text.partition("://")
        scheme = scheme.lower()
        if not separator or scheme not in DEFAULT_PORTS:
            return "it is not an rtsp:// or rtsps:// URL"
        user = password = None
        unencoded = ""
        if "@" in rest:
            credentials, _, rest = rest.rpartition("@")
            name, colon, secret = credentials.partition(":")
            user, password = unquote(name), unquote(secret) if colon else None
            unencoded = "".join(c for c in URL_DELIMITERS if c in credentials)
        authority, slash, tail = rest.partition("/")
        host, port = _host_and_port(authority, DEFAULT_PORTS[scheme])
        if not host:
            return "it names no host"
        if any(c.isspace() for c in host):  # a user check: read as a host that does not resolve
            return f"its host {host!r} holds a space, which no host name or address has"
        if port is None:
            port_text = authority.rpartition("]")[2].partition(":")[2]
            return f"its port {port_text!r} is not a number from 1 to 65535"
        url = f"{scheme}://{authority}{slash}{tail}"
        path = "/" + tail.partition("?")[0] if slash else "/"
        return cls(scheme, host, port, url, path, user, password, unencoded)

    @property
    def address(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"



def _host_and_port(authority: str, default: int) -> tuple[str, int | None]:
    if authority.startswith("["):  # [IPv6]:port
        host, _, after = authority[1:].partition("]")
        port_text = after.removeprefix(":")
    else:
        host, _, port_text = authority.partition(":")
    if not port_text:
        return host, default
    return host, int(port_text) if port_text.isdigit() and 0 < int(port_text) < 65536 else None


@dataclass(frozen=True)
class Answer:
    """An RTSP response: status code, reason phrase, headers (lower-case names), body."""

    status: int
    reason: str
    headers: dict[str, str]
    body: bytes
    challenges: tuple[Challenge, ...] = ()  # every WWW-Authenticate, in order


class _NotRtspError(Exception):
    """The server answered something that is not RTSP (its first bytes)."""


class _HungUpError(Exception):
    """The server closed the connection at the first request, twice, without an answer."""


class _UnresolvedError(Exception):
    """The host name did not resolve in time."""


class _SilentError(Exception):
    """The server took the connection but did not answer a request in time."""


def diagnose_rtsp(text: str, timeout: float = PROBE_TIMEOUT_S) -> str | None:
    """Why the stream at URL `text` does not open, as one sentence, found within `timeout`
    seconds, or None where `text` is no rtsp(s) URL. Secrets never appear in it."""
    return _probe(text, timeout, _diagnosed)


def unreachable_rtsp(text: str, timeout: float = PROBE_TIMEOUT_S) -> str | None:
    """Why the server of URL `text` cannot be talked to (as `diagnose_rtsp` words it), or None
    when it answers an RTSP request within `timeout` seconds (and where `text` is no rtsp(s)
    URL). Asked before OpenCV opens a stream: its FFmpeg backend opens one stream at a time in
    the whole process, so a camera that never answers held every other camera's open for
    FFmpeg's whole timeout."""
    return _probe(text, timeout, _answering)


def _probe(text: str, timeout: float,
           step: Callable[[RtspTarget, float], str | None]) -> str | None:
    target = RtspTarget.parse(text)
    if target is None:
        return None
    if target.unencoded:
        raw = " ".join(target.unencoded)
        encoded = ", ".join(f"{c} as %{ord(c):02X}" for c in target.unencoded)
        return (f"the user name or password in the URL holds a raw {raw}, which ends the host "
                f"part for FFmpeg (it then reads a wrong host or port): write {encoded} there")
    try:
        return step(target, timeout)
    except socket.gaierror as exc:
        return (f"the host name {target.host!r} does not resolve ({exc.strerror}): check the "
                "camera's address, or use its IP address")
    except _UnresolvedError:
        return (f"the host name {target.host!r} did not resolve within {timeout:g} s (no "
                "answer from the name server): check the network's DNS, or use the camera's "
                "IP address")
    except ConnectionRefusedError:
        return (f"{target.address} refused the connection: nothing listens on that port (the "
                f"camera's RTSP port is usually {DEFAULT_PORTS[target.scheme]}; check its "
                "network settings, and that its RTSP service is on)")
    except _SilentError:
        return (f"{target.address} took the connection but did not answer an RTSP request "
                f"within {timeout:g} s (a server that is not RTSP, or a camera that hangs: "
                "restart it)")
    except TimeoutError:
        return (f"{target.address} did not answer within {timeout:g} s (the camera switched "
                "off, on another network, or a firewall in the way)")
    except ssl.SSLError as exc:
        return (f"the TLS handshake with {target.address} failed ({exc.reason or exc}); "
                "rtsps:// needs the camera's RTSP-over-TLS port, rtsp:// the plain one")
    except _HungUpError:
        return (f"{target.address} closed the connection without answering an RTSP request; "
                f"is that the camera's RTSP port? (usually {DEFAULT_PORTS[target.scheme]})")
    except _NotRtspError as exc:
        return (f"{target.address} answered, but not as an RTSP server (it began {exc}); is "
                f"that the camera's RTSP port? (usually {DEFAULT_PORTS[target.scheme]})")
    except ConnectionError as exc:
        return f"{target.address} closed the connection during the RTSP handshake ({exc})"
    except OSError as exc:
        return f"{target.address} could not be reached ({exc.strerror or exc})"


def _answering(target: RtspTarget, timeout: float) -> None:
    with _RtspConnection(target, time.monotonic() + timeout) as connection:
        _options(connection, target)


def _options(connection: _RtspConnection, target: RtspTarget) -> None:
    try:
        connection.request("OPTIONS", target.url)
    except ConnectionError:
        raise _HungUpError from None


def _diagnosed(target: RtspTarget, timeout: float) -> str:
    with _RtspConnection(target, time.monotonic() + timeout) as connection:
        _options(connection, target)
        answer = connection.request("DESCRIBE", target.url, {"Accept": "application/sdp"})
        if answer.status != 401 or target.user is None:
            return _explained(answer, target)
        challenge = chosen(answer.challenges)
        if challenge is None or not challenge.answerable:
            offered = ", ".join(c.describe() for c in answer.challenges) or "nothing named"
            return (f"{target.address} path {target.path} asks for an authentication FFmpeg "
                    f"(in OpenCV) does not speak ({offered}; it answers Basic and MD5 Digest): "
                    "allow one of those in the camera's settings")
        answer = connection.request("DESCRIBE", target.url, {
            "Accept": "application/sdp",
            "Authorization": authorization(challenge, target.user, target.password or "",
                                           "DESCRIBE", target.url)})
    return _explained(answer, target)


def _explained(answer: Answer, target: RtspTarget) -> str:
    where = f"{target.address} path {target.path}"
    if answer.status == 200:
        video = _video_codec(answer.body)
        described = f"a {video} video stream" if video else "a stream without video"
        return (f"{where} describes {described} (RTSP 200 OK), so the failure came later, "
                "setting up or decoding its media; FFmpeg's own lines on stderr name it (a "
                "transport the network blocks, a codec this OpenCV lacks)")
    if answer.status == 401:
        if target.user is None:
            return (f"{where} asks for a user name and password (401 Unauthorized): give them "
                    f"in the URL, before the host: USER:PASSWORD@{target.address}")
        if target.password is None:
            return (f"{where} refused the user name in the URL, given without a password (401 "
                    f"Unauthorized): add it, USER:PASSWORD@{target.address}")
        return (f"{where} refused the user name and password in the URL (401 Unauthorized): "
                "check them, and write any @ : / ? # % in them percent-encoded (%40 %3A %2F "
                "%3F %23 %25)")
    if answer.status == 403:
        return f"{where}: the camera forbids this user that stream (403 Forbidden)"
    if answer.status == 404:
        return (f"{where}: the camera has no stream at that path (404 Not Found); the path "
                "is model-specific, see the camera's manual or its web page")
    if answer.status == 503:
        return (f"{where}: the camera is unavailable (503 Service Unavailable); many serve "
                "only a few streams at once, so close other viewers, or wait while it starts")
    return f"{where}: the camera answered DESCRIBE with {answer.status} {answer.reason}"


def _video_codec(sdp: bytes) -> str | None:
    """The encoding of the first video stream an SDP describes (`H264`, `H265`, `JPEG`...)."""
    in_video = False
    for line in sdp.decode("utf-8", "replace").splitlines():
        if line.startswith("m="):
            in_video = line.startswith("m=video")
        elif in_video and line.startswith("a=rtpmap:"):
            encoding = line.partition(" ")[2].partition("/")[0]
            return encoding or None
    return "video" if b"m=video" in sdp else None


class _RtspConnection:
    """One TCP (or TLS) connection speaking RTSP/1.0 requests in turn; a server that closes
    after an answer (some do after a 401) is connected to again for the next request."""

    def __init__(self, target: RtspTarget, deadline: float) -> None:
        self._target, self._deadline = target, deadline
        self._socket: socket.socket | None = None
        self._sequence = 0

    def __enter__(self) -> _RtspConnection:
        self._connect()
        return self

    def __exit__(self, *_: object) -> None:
        if self._socket is not None:
            self._socket.close()

    def _connect(self) -> None:
        if self._socket is not None:
            self._socket.close()
        raw = self._connected(_addresses(self._target.host, self._target.port,
                                         self._remaining(_UnresolvedError)))
        if self._target.scheme == "rtsps":
            # the probe only asks where the handshake stops; cameras' certificates are
            # mostly self-signed, and FFmpeg does not verify them by default either
            context = ssl.create_default_context()
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
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

    def request(self, method: str, url: str, headers: dict[str, str] | None = None) -> Answer:
        for attempt in range(2):
            self._sequence += 1
            lines = [f"{method} {url} RTSP/1.0", f"CSeq: {self._sequence}",
                     "User-Agent: edge-rtsp-probe"]
            lines += [f"{name}: {value}" for name, value in (headers or {}).items()]
            try:
                assert self._socket is not None
                self._socket.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())
                return self._answer()
            except (ConnectionResetError, BrokenPipeError, _ClosedError):
                if attempt:
                    raise ConnectionError("the server closed it") from None
                self._connect()
        raise AssertionError("unreachable")

    def _answer(self) -> Answer:
        head = b""
        while b"\r\n\r\n" not in head:
            chunk = self._receive()
            if not chunk:
                if head:
                    raise _NotRtspError(_first_bytes(head))
                raise _ClosedError
            head += chunk
            if not head.startswith(b"RTSP/"[:len(head)]):
                raise _NotRtspError(_first_bytes(head))
            if len(head) > MAX_HEAD_BYTES:
                raise _NotRtspError(_first_bytes(head))
        head, _, body = head.partition(b"\r\n\r\n")
        status_line, *header_lines = head.decode("latin-1").split("\r\n")
        parts = status_line.split(" ", 2)
        if len(parts) < 2 or not parts[1].isdigit():
            raise _NotRtspError(_first_bytes(head))
        headers = {}
        challenges = []
        for line in header_lines:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
            if name.strip().lower() == "www-authenticate":
                challenges.append(Challenge.parse(value))
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
            self._socket.settimeout(self._remaining(_SilentError))
            return self._socket.recv(4096)
        except TimeoutError:
            raise _SilentError from None


    def _remaining(self, late: type[Exception]) -> float:
        """Seconds left before the deadline; `late` is raised when none are."""
        left = self._deadline - time.monotonic()
        if left <= 0:
            raise late
        return left


class _ClosedError(Exception):
    """The server closed the connection before answering."""


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

    resolver = threading.Thread(target=resolve, name="rtsp-probe-dns", daemon=True)
    resolver.start()
    resolver.join(timeout)
    if resolver.is_alive():
        raise _UnresolvedError
    if failed:
        raise failed[0]
    return found


def _first_bytes(data: bytes) -> str:
    """The start of an answer as printable text, for a message."""
    text = data[:40].decode("latin-1")
    return repr("".join(c if c.isprintable() else "." for c in text))

"""A network stream's URL (`rtsp://`, `rtsps://`, `http://`, `https://`) taken apart as FFmpeg
reads it, for the probes that ask its server why it does not open."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal
from urllib.parse import unquote

#: Each stream scheme's port where the URL names none.
DEFAULT_PORTS = {"rtsp": 554, "rtsps": 322, "http": 80, "https": 443}
#: The schemes spoken over TLS, each with its plain one.
TLS_SCHEMES = {"rtsps": "rtsp", "https": "http"}
#: How an HLS playlist's path ends (`StreamTarget.playlist`).
HLS_SUFFIX = ".m3u8"
#: Characters that end a URL's authority for FFmpeg: raw in a user name or password, the
#: host it reads is wrong (`Port missing in uri`).
URL_DELIMITERS = "/?#"

Protocol = Literal["RTSP", "HTTP"]


@dataclass(frozen=True)
class StreamTarget:
    """A stream URL taken apart; `url` is the one RTSP requests name (without the credentials),
    `resource` the path and query an HTTP request line names."""

    scheme: str
    host: str
    port: int
    url: str
    user: str | None
    password: str | None
    unencoded: str = ""  # URL_DELIMITERS written raw in the user name or password
    resource: str = "/"

    @classmethod
    def parse(cls, text: str) -> StreamTarget | None:
        """None for anything but a stream URL with a host and a valid port."""
        read = cls._read(text)
        return read if isinstance(read, StreamTarget) else None

    @classmethod
    def problem(cls, text: str) -> str | None:
        """What keeps `text` from parsing (`parse`), in words: no host, or which port is bad;
        None when it parses. Never quotes the credentials."""
        read = cls._read(text)
        return read if isinstance(read, str) else None

    @classmethod
    def _read(cls, text: str) -> StreamTarget | str:
        """The URL taken apart, or what is wrong with it. The credentials end at the last
        `@` before the path, as `edge.redact` cuts them: a password may hold `/` or `@`."""
        scheme, separator, rest = text.partition("://")
        scheme = scheme.lower()
        if not separator or scheme not in DEFAULT_PORTS:
            return f"it is not a stream URL ({', '.join(s + '://' for s in DEFAULT_PORTS)})"
        user = password = None
        unencoded = ""
        if "@" in rest:
            credentials, _, rest = rest.rpartition("@")
            name, colon, secret = credentials.partition(":")
            user, password = unquote(name), unquote(secret) if colon else None
            unencoded = "".join(c for c in URL_DELIMITERS if c in credentials)
        end = min((i for i in (rest.find("/"), rest.find("?")) if i >= 0), default=len(rest))
        authority, tail = rest[:end], rest[end:]
        host, port = _host_and_port(authority, DEFAULT_PORTS[scheme])
        if not host:
            return "it names no host"
        if any(c.isspace() for c in host):  # a user check: read as a host that does not resolve
            return f"its host {host!r} holds a space, which no host name or address has"
        if port is None:
            port_text = authority.rpartition("]")[2].partition(":")[2]
            return f"its port {port_text!r} is not a number from 1 to 65535"
        if any(c.isspace() for c in tail):  # a user check: sent as written, a 400 came back
            return ("its path or query holds a space, which ends a request's URL (write it as "
                    "%20)")
        resource = tail if tail.startswith("/") else "/" + tail
        return cls(scheme, host, port, f"{scheme}://{authority}{tail}", user, password,
                   unencoded, resource)

    @property
    def path(self) -> str:
        """The resource without its query, as messages name it."""
        return self.resource.partition("?")[0]

    @property
    def playlist(self) -> bool:
        """Whether the URL names an HLS playlist (its path ends `.m3u8`, as go2rtc's
        `/api/stream.m3u8?src=cam`, Frigate's and most CDNs' do), a restreamer's, not a
        camera's own stream."""
        return self.protocol == "HTTP" and self.path.lower().endswith(HLS_SUFFIX)

    @property
    def address(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"

    @property
    def protocol(self) -> Protocol:
        return "RTSP" if self.scheme.startswith("rtsp") else "HTTP"

    @property
    def default_port(self) -> int:
        return DEFAULT_PORTS[self.scheme]


def _host_and_port(authority: str, default: int) -> tuple[str, int | None]:
    if authority.startswith("["):  # [IPv6]:port
        host, _, after = authority[1:].partition("]")
        port_text = after.removeprefix(":")
    else:
        host, _, port_text = authority.partition(":")
    if not port_text:
        return host, default
    return host, int(port_text) if port_text.isdigit() and 0 < int(port_text) < 65536 else None

"""The one parser of broker URLs (`mqtt://host[:port]`, `mqtts://host[:port]`), shared by the
daemon config, the client and `edge monitor`. TLS defaults to port 8883, plain to 1883."""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import unquote, urlsplit

DEFAULT_PORTS = {"mqtt": 1883, "mqtts": 8883}
#: Where the daemon and the subscriber tools take a broker password from, so it stays out of
#: config files, command lines and `ps`.
PASSWORD_ENV = "EDGE_MQTT_PASSWORD"


@dataclass(frozen=True)
class BrokerUrl:
    host: str
    port: int
    tls: bool
    username: str | None = None
    password: str | None = None

    @property
    def address(self) -> str:
        """`mqtt[s]://host:port`, without the user info (what a config's `mqtt.url` takes)."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{'mqtts' if self.tls else 'mqtt'}://{host}:{self.port}"


def broker_from_url(url: str) -> BrokerUrl:
    """Parse a broker URL; raises ValueError saying what is expected, never quoting the URL.

    User info is cut at the last `@` before anything is parsed, so a password holding `/`, `?`
    or `#` is not mistaken for a path or a port (and never lands in an error message)."""
    scheme, separator, rest = url.partition("://")
    if not separator or scheme.lower() not in DEFAULT_PORTS:
        raise ValueError("expected mqtt://host[:port] or mqtts://host[:port]")
    userinfo, at, location = rest.rpartition("@")
    location = location.removesuffix("/")
    if any(mark in location for mark in "/?#"):
        raise ValueError("a broker URL has no path, query or fragment; expected "
                         "mqtt://host[:port] or mqtts://host[:port]")
    parts = urlsplit(f"{scheme.lower()}://{location}")
    try:
        port = parts.port
        if port is None and location.endswith(":"):  # `host:`, which urllib reads as no port
            raise ValueError
        if port == 0:  # urllib takes it; no broker listens there, and `or` would skip it
            raise ValueError
    except ValueError:
        raise ValueError("bad port in the broker URL; expected mqtt://host[:port] or "
                         "mqtts://host[:port] with a port from 1 to 65535") from None
    if not parts.hostname:
        raise ValueError("the broker URL names no host; expected mqtt://host[:port]")
    username, colon, password = userinfo.partition(":")
    return BrokerUrl(parts.hostname, port or DEFAULT_PORTS[parts.scheme],
                     parts.scheme == "mqtts", unquote(username) if at else None,
                     unquote(password) if at and colon else None)

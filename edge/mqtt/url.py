"""The one parser of broker URLs (`mqtt://host[:port]`, `mqtts://host[:port]`), shared by the
daemon config, the client and `edge monitor`. TLS defaults to port 8883, plain to 1883."""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import unquote, urlsplit

DEFAULT_PORTS = {"mqtt": 1883, "mqtts": 8883}


@dataclass(frozen=True)
class BrokerUrl:
    host: str
    port: int
    tls: bool
    username: str | None = None
    password: str | None = None


def broker_from_url(url: str) -> BrokerUrl:
    """Parse a broker URL; raises ValueError saying what is expected."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise ValueError(f"bad port in the broker URL; expected mqtt://host[:port] or "
                         f"mqtts://host[:port] ({exc})") from None
    if parts.scheme not in DEFAULT_PORTS or not parts.hostname:
        raise ValueError("expected mqtt://host[:port] or mqtts://host[:port]")
    return BrokerUrl(parts.hostname, port or DEFAULT_PORTS[parts.scheme],
                     parts.scheme == "mqtts",
                     unquote(parts.username) if parts.username else None,
                     unquote(parts.password) if parts.password else None)

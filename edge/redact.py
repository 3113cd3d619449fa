"""The one place that hides secrets before text reaches a log line, a status, an error or `--json`.

Broker URLs and camera URIs (`rtsp://user:pass@camera/stream`) carry credentials in their user
info, and query options such as `?password=` or `?token=` do the same for some cameras. Every
URI that is shown to a person goes through `redact_uri`; a config value that is a secret is
shown as `REDACTED` whatever it is.
"""

from __future__ import annotations

import re
from urllib.parse import urlsplit, urlunsplit

REDACTED = "REDACTED"

#: Query option names whose values are secrets (matched case-insensitively, as substrings).
SECRET_OPTIONS = ("pass", "pwd", "secret", "token", "key", "auth", "credential", "signature")

_USERINFO = re.compile(r"(?P<scheme>[A-Za-z][A-Za-z0-9+.-]*://)(?P<user>[^/?#@\s]*)@")
#: A URI inside text: up to white space or a quote (messages quote URIs with ' or ").
_URI = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://[^\s'\"]+")


def is_secret_name(name: str) -> bool:
    """Whether a config key or query option named `name` holds a secret."""
    lowered = name.lower()
    return any(part in lowered for part in SECRET_OPTIONS)


def redact_uri(uri: str) -> str:
    """`rtsp://admin:hunter2@cam/s?token=x` -> `rtsp://admin:REDACTED@cam/s?token=REDACTED`.

    The user name stays (it helps to tell which account was used); a password, a secret query
    value, or the whole user info of a URI that cannot be parsed is replaced."""
    try:
        parts = urlsplit(uri)
        _ = parts.port
    except ValueError:
        return _USERINFO.sub(lambda m: f"{m['scheme']}{REDACTED}@", uri)
    netloc = parts.netloc
    if "@" in netloc:
        userinfo, _, host = netloc.rpartition("@")
        user, colon, _ = userinfo.partition(":")
        netloc = f"{user}:{REDACTED}@{host}" if colon else f"{userinfo}@{host}"
    query = "&".join(_redact_option(option) for option in parts.query.split("&")) \
        if parts.query else ""
    if netloc == parts.netloc and query == parts.query:
        return uri
    joined = urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))
    if "://" in uri and "://" not in joined:  # urlunsplit drops an empty authority
        joined = joined.replace(":", "://", 1)
    return joined


def redact_text(text: str) -> str:
    """Redact every URI inside free text (an exception message, a log line)."""
    return _URI.sub(lambda match: redact_uri(match[0]), text)


def _redact_option(option: str) -> str:
    name, equals, value = option.partition("=")
    return f"{name}={REDACTED}" if equals and value and is_secret_name(name) else option

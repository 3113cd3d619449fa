"""The one place that hides secrets before text reaches a log line, a status, an error or `--json`.

Broker URLs and camera URIs (`rtsp://user:pass@camera/stream`) carry credentials in their user
info, and query options such as `?password=` or `?token=` do the same for some cameras. Every
URI that is shown to a person goes through `redact_uri`; a config value that is a secret is
shown as `REDACTED` whatever it is.
"""

from __future__ import annotations

import re

REDACTED = "REDACTED"

#: Query option names whose values are secrets (matched case-insensitively, as substrings):
#: `sig` is Azure's SAS signature and covers AWS's `X-Amz-Signature`; `session` an id that logs
#: a viewer in.
SECRET_OPTIONS = ("pass", "pwd", "secret", "token", "key", "auth", "credential", "sig",
                  "session", "cookie")
#: Short names that are secrets only whole (as substrings they are parts of common words).
SECRET_NAMES = frozenset({"p", "pw", "sid"})

_USERINFO = re.compile(r"(?P<scheme>[A-Za-z][A-Za-z0-9+.-]*://)(?P<user>[^/?#@\s]*)@")
#: A URI inside text: a quoted one up to its closing quote (messages quote URIs with ' or ",
#: and a password may hold a space), else up to white space or a quote.
_URI = re.compile(r"(?<=')[A-Za-z][A-Za-z0-9+.-]*://[^']+(?=')"
                  r'|(?<=")[A-Za-z][A-Za-z0-9+.-]*://[^"]+(?=")'
                  r"|[A-Za-z][A-Za-z0-9+.-]*://[^\s'\"]+")


def is_secret_name(name: str) -> bool:
    """Whether a config key or query option named `name` holds a secret."""
    lowered = name.lower()
    return lowered in SECRET_NAMES or any(part in lowered for part in SECRET_OPTIONS)


def redact_uri(uri: str) -> str:
    """`rtsp://admin:hunter2@cam/s?token=x` -> `rtsp://REDACTED@cam/s?token=REDACTED`.

    All of the user info goes, user name included (some cameras take a token as the user name).
    It is cut at the last `@` rather than parsed: a password holding `/`, `?` or `#` makes a
    URL parser end the authority early, and the secret would then show as a path or a port."""
    scheme, separator, rest = uri.partition("://")
    if not separator:
        return uri
    if "@" in rest:
        rest = f"{REDACTED}@{rest.rpartition('@')[2]}"
    location, question, tail = rest.partition("?")
    if question:
        query, hash_mark, fragment = tail.partition("#")
        query = "&".join(_redact_option(option) for option in query.split("&"))
        rest = f"{location}?{query}{hash_mark}{fragment}"
    return f"{scheme}://{rest}"


def redact_text(text: str) -> str:
    """Redact every URI inside free text (an exception message, a log line)."""
    return _URI.sub(lambda match: redact_uri(match[0]), text)


def _redact_option(option: str) -> str:
    name, equals, value = option.partition("=")
    return f"{name}={REDACTED}" if equals and value and is_secret_name(name) else option

"""Parsing of source URIs (`scheme://location?key=value&...`), shared by every source kind."""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import parse_qsl, quote, unquote, urlsplit

from edge.errors import SourceError


@dataclass(frozen=True)
class SourceUri:
    text: str
    scheme: str
    location: str  # host + path, e.g. "shapes", "/dev/video0", "/data/clip.mp4"
    options: dict[str, str]
    fragment: str = ""  # after a `#`: no source takes one

    @classmethod
    def parse(cls, text: str) -> SourceUri:
        try:
            parts = urlsplit(text)
        except ValueError as exc:  # an unclosed [IPv6 host
            raise SourceError(f"source '{text}' is not a valid URI ({exc}); an IPv6 host is "
                              "written in brackets, e.g. rtsp://[fe80::1]:554/stream") from None
        if not parts.scheme or "://" not in text:
            raise SourceError(f"source '{text}' is not a URI; {_written_as_uri(text)}")
        return cls(text, parts.scheme.lower(), parts.netloc + parts.path,
                   dict(parse_qsl(parts.query, keep_blank_values=True)), parts.fragment)

    def number(self, key: str, default: float | None, minimum: float = 0.0) -> float | None:
        if key not in self.options:
            return default
        try:
            value = float(self.options[key])
        except ValueError:
            value = minimum - 1
        if not math.isfinite(value) or value < minimum:
            raise SourceError(f"source '{self.text}': option {key}={self.options[key]!r} must be "
                              f"a number >= {minimum:g} (finite)")
        return value

    def integer(self, key: str, default: int) -> int:
        value = self.number(key, default)
        if value is None or value != int(value):
            raise SourceError(f"source '{self.text}': option {key} must be a whole number")
        return int(value)

    def flag(self, key: str) -> bool:
        value = self.options.get(key, "0").lower()
        if value not in ("0", "1", "true", "false", "yes", "no"):
            raise SourceError(f"source '{self.text}': option {key}={value!r} must be 0 or 1")
        return value in ("1", "true", "yes")

    def local_path(self) -> Path:
        """The location as a file path, which must be absolute: a relative one would be looked
        up in whatever folder the daemon starts in (edge.service's is /var/lib/edge), so a
        config that worked by hand would fail as a service."""
        if not self.location.startswith("/"):
            raise SourceError(
                f"source '{self.text}': {self.scheme}:// takes an absolute path, after three "
                f"slashes ({self.scheme}:///data/clip.mp4); '{self.location}' is relative, and "
                "would be looked up in the folder the daemon starts in (edge.service's is "
                "/var/lib/edge, its WorkingDirectory)")
        if self.fragment:
            raise SourceError(f"source '{self.text}': a '#' in a URI starts a fragment, so the "
                              f"path would end at {self.location}; write a '#' of the file's "
                              "name as %23")
        # Percent-escapes (%20, %C3%A9: what a file manager's "copy as URI" writes) are
        # decoded, unless the path exists as written.
        literal, decoded = Path(self.location), Path(unquote(self.location))
        return literal if literal.exists() or not decoded.exists() else decoded

    def reject_unknown(self, known: set[str]) -> None:
        unknown = sorted(set(self.options) - known)
        if unknown:
            raise SourceError(f"source '{self.text}': unknown option(s) {', '.join(unknown)}; "
                              f"{self.scheme}:// accepts {', '.join(sorted(known)) or 'none'}")


def _written_as_uri(text: str) -> str:
    """How to write `text`, which is no URI, as one: a device or a path given bare gets its
    own URI (a user check: a clip's path got only the generic examples)."""
    if text.startswith("/dev/video"):
        return f"a camera device is written v4l2://{text}"
    path = Path(text).expanduser()
    if text.startswith(("/", "./", "../", "~")) or path.exists():
        uri = "file://" + quote(str(path.resolve()))
        return (f"a file or folder is written {uri} (file:// and the absolute path, '%20' for "
                "a space)")
    return ("write it as scheme://location, e.g. v4l2:///dev/video0, file:///path/clip.mp4, "
            "synthetic://shapes")

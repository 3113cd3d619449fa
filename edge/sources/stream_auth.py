"""Answers to an RTSP or HTTP server's `WWW-Authenticate` challenges, as FFmpeg's client gives
them.

Cameras ask for Basic or Digest (RFC 2617) authentication, over RTSP and HTTP alike. FFmpeg,
which OpenCV opens streams with, answers Digest where a server offers it, and only with the MD5
and MD5-sess algorithms; a camera set to SHA-256 Digest alone (RFC 7616) cannot be read by it
at all, which is worth saying rather than trying.
"""

from __future__ import annotations

import base64
import hashlib
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass

#: The Digest algorithms FFmpeg answers (libavformat's httpauth); no algorithm means MD5.
FFMPEG_DIGEST_ALGORITHMS = ("MD5", "MD5-SESS")
_PARAM = re.compile(r'(\w+)\s*=\s*(?:"([^"]*)"|([^\s,]+))')


@dataclass(frozen=True)
class Challenge:
    """One `WWW-Authenticate` value: its scheme (lower case) and parameters (names lower
    case)."""

    scheme: str
    params: dict[str, str]

    @classmethod
    def parse(cls, header: str) -> Challenge:
        scheme, _, rest = header.strip().partition(" ")
        params = {m[1].lower(): m[3] if m[3] is not None else m[2]
                  for m in _PARAM.finditer(rest)}
        return cls(scheme.lower(), params)

    @property
    def algorithm(self) -> str:
        return self.params.get("algorithm", "MD5").upper()

    @property
    def answerable(self) -> bool:
        """Whether FFmpeg answers it."""
        return self.scheme == "basic" or (self.scheme == "digest"
                                          and self.algorithm in FFMPEG_DIGEST_ALGORITHMS)

    def describe(self) -> str:
        return "Digest with " + self.algorithm if self.scheme == "digest" else self.scheme


def chosen(challenges: Sequence[Challenge]) -> Challenge | None:
    """The challenge FFmpeg answers: a Digest one where any is offered (one whose algorithm it
    speaks first), else Basic; None when none is Digest or Basic."""
    digests = [c for c in challenges if c.scheme == "digest"]
    if digests:
        return next((c for c in digests if c.answerable), digests[0])
    return next((c for c in challenges if c.scheme == "basic"), None)


def authorization(challenge: Challenge, user: str, password: str, method: str,
                  uri: str, nonce_count: int = 1) -> str:
    """The `Authorization` value answering an `answerable` `challenge` for `method` on
    `uri`, the `nonce_count`-th request that answers its nonce (Digest's `nc`)."""
    if challenge.scheme == "basic":
        return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()
    params = challenge.params
    realm, nonce = params.get("realm", ""), params.get("nonce", "")
    cnonce = os.urandom(8).hex()
    first = _md5(f"{user}:{realm}:{password}")
    if challenge.algorithm == "MD5-SESS":
        first = _md5(f"{first}:{nonce}:{cnonce}")
    second = _md5(f"{method}:{uri}")
    fields = {"username": user, "realm": realm, "nonce": nonce, "uri": uri}
    if "auth" in (q.strip() for q in params.get("qop", "").split(",")):
        count = f"{nonce_count:08x}"
        response = _md5(f"{first}:{nonce}:{count}:{cnonce}:auth:{second}")
        fields.update(qop="auth", nc=count, cnonce=cnonce)
    else:
        response = _md5(f"{first}:{nonce}:{second}")
        if challenge.algorithm == "MD5-SESS":
            fields["cnonce"] = cnonce
    fields["response"] = response
    if "algorithm" in params:
        fields["algorithm"] = params["algorithm"]
    if "opaque" in params:
        fields["opaque"] = params["opaque"]
    unquoted = {"qop", "nc", "algorithm"}
    return "Digest " + ", ".join(f"{k}={v}" if k in unquoted else f'{k}="{v}"'
                                 for k, v in fields.items())


def _md5(text: str) -> str:
    return hashlib.md5(text.encode(), usedforsecurity=False).hexdigest()

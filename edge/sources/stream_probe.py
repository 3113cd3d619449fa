"""Why a network stream (RTSP or HTTP) does not open, asked of its server directly.

When FFmpeg (inside OpenCV) cannot open a stream, OpenCV says only that it could not; the
cause is in FFmpeg's own lines on stderr, if anywhere. The causes a person can fix are few and
each shows at one step of the exchange, so the probe takes those steps itself, each bounded by
a timeout: the host name resolved, a TCP (TLS for rtsps and https) connection, then for RTSP an
`OPTIONS` and a `DESCRIBE` of the URL's path, for HTTP a `GET` of it (its answer's head only),
with the URL's user name and password where the server asks for them
(`edge.sources.stream_auth`). What it finds is one sentence for the camera's status and the
log, naming host, port and path but never the credentials.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from edge.sources.snapshot import SNAPSHOT_KEY
from edge.sources.stream_auth import authorization, chosen
from edge.sources.stream_session import (
    Answer,
    HungUpError,
    NotThatProtocolError,
    SilentError,
    StreamConnection,
    UnresolvedError,
)
from edge.sources.stream_url import StreamTarget
from edge.sources.unreached import busy_or, unreached, usual_port

#: Seconds the whole probe may take (connecting and every answer).
PROBE_TIMEOUT_S = 3.0
#: Where MJPEG streams often are, for a URL that serves one still image instead.
MJPEG_PATHS = "/video, /mjpg/video.mjpg, /videostream.cgi or /stream"
#: How a diagnosis of a server that serves the stream says so (`serves_the_stream`).
SERVED = "so the failure came later"
#: The media types of an HTTP answer that is a page, not a stream.
PAGE_TYPES = ("text/html", "text/plain", "application/json")


def diagnose_stream(text: str, timeout: float = PROBE_TIMEOUT_S) -> str | None:
    """Why the stream at URL `text` does not open, as one sentence, found within `timeout`
    seconds, or None where `text` is no stream URL. Secrets never appear in it."""
    return _probe(text, timeout, _diagnosed)


def unreachable_stream(text: str, timeout: float = PROBE_TIMEOUT_S) -> str | None:
    """Why the server of URL `text` cannot be talked to (as `diagnose_stream` words it), or
    None when it can within `timeout` seconds (and where `text` is no stream URL): an RTSP
    server answers `OPTIONS`; an HTTP one takes the connection (TLS's too, for https), but is
    asked nothing: a `GET` would take a one-client camera's only stream (as an ESP32 camera
    has) from the FFmpeg that opens it next (a user check: such a camera answered FFmpeg 503,
    for ever). Asked before OpenCV opens a stream: its FFmpeg backend opens one stream at a
    time in the whole process, so a camera that never answers held every other camera's
    open for FFmpeg's whole timeout."""
    return _probe(text, timeout, _answering)


def serves_the_stream(diagnosis: str) -> bool:
    """Whether `diagnosis` (of `diagnose_stream`) found the server serving the stream, so
    that what failed came after it answered, or elsewhere."""
    return SERVED in diagnosis


def _probe(text: str, timeout: float,
           step: Callable[[StreamTarget, float], str | None]) -> str | None:
    target = StreamTarget.parse(text)
    if target is None:
        return None
    if target.unencoded:
        raw = " ".join(target.unencoded)
        encoded = ", ".join(f"{c} as %{ord(c):02X}" for c in target.unencoded)
        return (f"the user name or password in the URL holds a raw {raw}, which ends the host "
                f"part for FFmpeg (it then reads a wrong host or port): write {encoded} there")
    protocol = target.protocol
    try:
        return step(target, timeout)
    except UnresolvedError:
        return (f"the host name {target.host!r} did not resolve within {timeout:g} s (no "
                "answer from the name server): check the network's DNS, or use the camera's "
                "IP address")
    except SilentError:
        return (f"{target.address} took the connection but did not answer an {protocol} "
                f"request within {timeout:g} s ({busy_or(target)}a server that is not "
                f"{protocol}, or a camera that hangs: restart it)")
    except HungUpError:
        return (f"{target.address} closed the connection without answering an {protocol} "
                f"request; is that the camera's {protocol} port? ({usual_port(target)})")
    except NotThatProtocolError as exc:
        return (f"{target.address} answered, but not as an {protocol} server (it began {exc}); "
                f"is that the camera's {protocol} port? ({usual_port(target)})")
    except OSError as exc:
        return unreached(exc, target, timeout)


def _answering(target: StreamTarget, timeout: float) -> None:
    with StreamConnection(target, time.monotonic() + timeout) as connection:
        if target.protocol == "RTSP":
            _first_request(connection, target)


def _first_request(connection: StreamConnection, target: StreamTarget) -> Answer:
    """RTSP's `OPTIONS` or HTTP's `GET`; a server that hangs up on it has `HungUpError`."""
    try:
        return connection.request("OPTIONS" if target.protocol == "RTSP" else "GET")
    except ConnectionError:
        raise HungUpError from None


def _diagnosed(target: StreamTarget, timeout: float) -> str:
    rtsp = target.protocol == "RTSP"
    method = "DESCRIBE" if rtsp else "GET"
    headers = {"Accept": "application/sdp"} if rtsp else {}
    with StreamConnection(target, time.monotonic() + timeout) as connection:
        answer = _first_request(connection, target)
        if rtsp:
            answer = connection.request(method, headers)
        if answer.status != 401 or target.user is None:
            return _explained(answer, target)
        answered = _with_credentials(connection, target, method, headers, answer)
    return answered if isinstance(answered, str) else _explained(answered, target)


def _with_credentials(connection: StreamConnection, target: StreamTarget, method: str,
                      headers: dict[str, str], refused: Answer) -> Answer | str:
    """`method` asked again with the URL's user name and password, as FFmpeg answers the
    `refused` (401) answer's challenge; where FFmpeg answers none of them, why, in words."""
    assert target.user is not None
    challenge = chosen(refused.challenges)
    if challenge is None or not challenge.answerable:
        offered = ", ".join(c.describe() for c in refused.challenges) or "nothing named"
        return (f"{target.address} path {target.path} asks for an authentication FFmpeg "
                f"(in OpenCV) does not speak ({offered}; it answers Basic and MD5 Digest): "
                "allow one of those in the camera's settings")
    # RTSP's Digest names the whole URL, HTTP's the request line's resource
    resource = target.url if target.protocol == "RTSP" else target.resource
    return connection.request(method, headers | {
        "Authorization": authorization(challenge, target.user, target.password or "", method,
                                       resource)})


def _explained(answer: Answer, target: StreamTarget) -> str:
    where = f"{target.address} path {target.path}"
    if answer.status == 200:
        return (_described(answer, where) if target.protocol == "RTSP"
                else _served(answer, where))
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
    if answer.status == 404 and target.playlist:
        return (f"{where}: the server has no playlist at that path (404 Not Found); check the "
                "HLS URL the restreamer or NVR gives for this camera (go2rtc's "
                "/api/stream.m3u8?src=NAME, with the name in its config)")
    if answer.status == 404:
        return (f"{where}: the camera has no stream at that path (404 Not Found); the path "
                "is model-specific, see the camera's manual or its web page")
    if answer.status == 503:
        return (f"{where}: the camera is unavailable (503 Service Unavailable); many serve "
                "only a few streams at once, so close other viewers, or wait while it starts")
    if target.protocol == "HTTP" and 300 <= answer.status < 400:
        moved = answer.headers.get("location", "")
        to = f" to {moved}" if moved else ""
        return (f"{where} redirects{to} ({answer.status} {answer.reason}): try that URL "
                "(`edge probe` says what is there)")
    method = "DESCRIBE" if target.protocol == "RTSP" else "GET"
    said = f"{where}: the camera answered {method} with {answer.status} {answer.reason}"
    if answer.status == 400 and target.protocol == "HTTP":
        return (f"{said}: the URL may lack a query the camera needs (as ?action=stream) or "
                "hold a character to percent-encode; its manual gives the stream's URL")
    return said


def _described(answer: Answer, where: str) -> str:
    video = _video_codec(answer.body)
    described = f"a {video} video stream" if video else "a stream without video"
    return (f"{where} describes {described} (RTSP 200 OK), {SERVED}, "
            "setting up or decoding its media; FFmpeg's own lines on stderr name it (a "
            "transport the network blocks, a codec this OpenCV lacks)")


def _served(answer: Answer, where: str) -> str:
    """What an HTTP 200 answer's media type says of why FFmpeg could not read it."""
    kind = answer.content_type
    if kind.startswith("image/"):
        return (f"{where} serves one still image ({kind}), a snapshot, not a stream: give the "
                f"camera's video stream URL (MJPEG streams are often at {MJPEG_PATHS}; see "
                "the camera's manual), or, for a camera that has none, have this URL fetched "
                f"at an interval: {SNAPSHOT_KEY} = 1 in its [[cameras]] block (edge probe "
                "--snapshot-interval 1 tries it)")
    if kind in PAGE_TYPES:
        return (f"{where} serves a page ({kind}), not a video stream: the stream has another "
                "URL (the camera's manual or the page's source names it)")
    served = ("an MJPEG stream" if kind == "multipart/x-mixed-replace" else
              kind or "a body of no named type")
    return (f"{where} serves {served} (HTTP 200 OK), {SERVED}, reading or "
            "decoding it; FFmpeg's own lines on stderr name it (a format or codec this "
            "OpenCV lacks)")


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

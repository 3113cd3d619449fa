"""An HTTP camera that serves no stream, only a still image (its snapshot URL), fetched at a
steady interval: cheap cameras, doorbells and battery cameras often offer nothing else
(`/snapshot.jpg`, `/cgi-bin/snapshot.cgi`, Hikvision's `/ISAPI/Streaming/channels/101/picture`).

One HTTP/1.1 connection is kept open between fetches where the camera allows it; Basic and
Digest (MD5) authentication are answered as FFmpeg answers them for a stream
(`edge.sources.stream_auth`), and a TLS camera's certificate is checked, or not, as the
stream sources' are (`edge.sources.ffmpeg_options`). A snapshot that comes back damaged, cut
short or as a server error (a camera busy making one) is skipped and the next one fetched at
its time; `MAX_MISSED` in a row, a camera that does not answer in time, and anything that no
retry mends (a wrong password or path, a refused connection) is a `SourceError` that says what
the camera answered, so that its supervisor reopens it with the reason on the status.
"""

from __future__ import annotations

import http.client
import logging
import threading
import time
from dataclasses import dataclass, replace
from urllib.parse import parse_qsl, urljoin

import cv2
import numpy as np

from edge.errors import SourceError
from edge.redact import is_secret_name, redact_text, redact_uri
from edge.sources.base import Frame, Source
from edge.sources.ffmpeg_options import camera_tls_context, trust_camera_certificates
from edge.sources.jpeg_end import jpeg_cut_short
from edge.sources.stream_auth import Challenge, authorization, chosen
from edge.sources.stream_url import TLS_SCHEMES, StreamTarget
from edge.sources.unreached import unreached
from edge.sources.uri import SourceUri
from edge.timing import AtMostEvery

log = logging.getLogger(__name__)

#: Snapshots in a row that may be skipped (damaged, cut short, a server error, no answer in
#: time) before the camera counts as down and is reopened.
MAX_MISSED = 3
#: Seconds between warnings of skipped snapshots (a camera that fails every fourth one).
MISSED_LOG_S = 60.0
#: The share of what `stall_s` leaves after the interval that one fetch may take.
FETCH_SHARE = 0.9
#: A snapshot larger than this is no camera's still image (a 4K JPEG is 1-3 MB).
MAX_SNAPSHOT_BYTES = 32 << 20
#: Where cameras commonly serve their snapshot (said when a path is not found).
SNAPSHOT_PATHS = ("/snapshot.jpg, /cgi-bin/snapshot.cgi, /ISAPI/Streaming/channels/101/picture "
                  "or /cgi-bin/api.cgi?cmd=Snap&channel=0")
#: Redirects followed to a snapshot, at most, and the statuses that are one.
MAX_REDIRECTS = 3
REDIRECTS = frozenset({301, 302, 303, 307, 308})
#: What the config key that turns a URL into a polled snapshot is called.
SNAPSHOT_KEY = "snapshot_interval_s"


@dataclass(frozen=True)
class Snapshots:
    """A snapshot camera's pace: one fetch every `interval_s` seconds, each given up to
    `timeout_s` (connect, request and each read)."""

    interval_s: float
    timeout_s: float

    @classmethod
    def within(cls, interval_s: float, stall_s: float) -> Snapshots:
        """Each fetch given most of what is left of the camera's `stall_s` after the wait for
        it (`FETCH_SHARE`), so that a camera slow to make its snapshot (5-8 s for a full-size
        one on some) is not yet a stalled one, and one that does not answer is said to be
        before the stall is (`snapshot_interval_s` is at most half of `stall_s`)."""
        return cls(interval_s, FETCH_SHARE * (stall_s - interval_s))


class _MissedError(SourceError):
    """A snapshot that a later fetch may well bring (damaged, cut short, a server error, no
    answer in time)."""


class SnapshotSource(Source):
    """`uri` (http:// or https://, user and password before the host where the camera asks
    for them) fetched as `snapshots` say, each answer decoded as one BGR frame."""

    live = True
    fps_origin = "snapshots"
    read_timeout_s = None  # each fetch is bounded by its own timeout, and raises past it

    def __init__(self, uri: SourceUri, snapshots: Snapshots) -> None:
        super().__init__()
        self.uri = uri.text
        written = uri.scheme + uri.text[uri.text.index("://"):]
        target = StreamTarget.parse(written)
        if target is None or target.protocol != "HTTP":
            problem = StreamTarget.problem(written) or "it is not an http:// or https:// URL"
            raise SourceError(f"source '{uri.text}': {problem}; a snapshot camera's URL is "
                              "written http://USER:PASSWORD@192.168.1.20/snapshot.jpg")
        if target.scheme in TLS_SCHEMES:
            trust_camera_certificates()  # says once whether certificates are checked
        self._target = target
        self._timeout_s = snapshots.timeout_s
        self.fps = 1.0 / snapshots.interval_s
        self._period = snapshots.interval_s
        self._due = 0.0  # time.monotonic() of the next fetch
        self._interrupted = threading.Event()
        self._missed = 0  # in a row
        self._missed_said = AtMostEvery(MISSED_LOG_S)
        self._connection: http.client.HTTPConnection | None = None
        self._challenge: Challenge | None = None  # the camera's last, answered from then on
        self._nonce_uses = 0  # requests answered with its nonce (Digest's nonce count)
        self._withheld_from: str | None = None  # a host whose credentials a redirect left
        self._first: Frame | None = None

    def open(self) -> None:
        """Fetch the first snapshot, so that a wrong URL, password or path is said at once."""
        self._due = time.monotonic()
        self._first = self._fetch()

    def read(self) -> Frame | None:
        """The next snapshot when it is due, the ones that miss skipped (`MAX_MISSED` in a
        row raise); None once `interrupt` asked it to stop."""
        if self._first is not None:
            first, self._first = self._first, None
            return first
        while True:
            self._due = max(self._due + self._period, time.monotonic())
            if self._interrupted.wait(max(0.0, self._due - time.monotonic())):
                return None
            try:
                frame = self._fetch()
            except _MissedError as exc:
                self._missed += 1
                if self._missed >= MAX_MISSED:
                    raise SourceError(f"{exc} ({MAX_MISSED} snapshots in a row missed)") from None
                self._note_missed(str(exc))
                continue
            self._missed = 0
            return frame

    def interrupt(self) -> None:
        self._interrupted.set()

    def close(self) -> None:
        self._disconnect()
        if self._first is not None:
            self._first.release()
            self._first = None

    # -- one fetch ---------------------------------------------------------------------------

    def _note_missed(self, why: str) -> None:
        """A warning for a skipped snapshot, at most every `MISSED_LOG_S` (with how many were
        skipped since the last)."""
        skipped = self._missed_said.due()
        if skipped is None:
            return
        more = f" ({skipped} skipped in the last {MISSED_LOG_S:g} s)" if skipped > 1 else ""
        log.warning("%s: a snapshot skipped, the next fetched at its time: %s%s",
                    redact_uri(self.uri), why, more)

    def _fetch(self) -> Frame:
        try:
            status, content_type, body = self._get()
        except SourceError:
            self._disconnect()
            raise
        except TimeoutError:
            self._disconnect()
            raise SourceError(self._late()) from None
        except http.client.IncompleteRead as exc:
            self._disconnect()
            raise _MissedError(self._cut_short(len(exc.partial), exc.expected)) from None
        except (OSError, http.client.HTTPException) as exc:
            self._disconnect()
            raise SourceError(self._unreachable(exc)) from None
        if status >= 500 or status in (408, 429):
            raise _MissedError(f"{self._where()} answered HTTP {status} instead of an image")
        if status != 200:
            raise SourceError(self._refused(status))
        if not body:  # OpenCV's imdecode raises on an empty buffer
            raise _MissedError(f"{self._where()} answered HTTP 200 with no image (0 bytes)")
        if jpeg_cut_short(body):
            raise _MissedError(f"{self._where()} sent a JPEG cut short ({len(body)} bytes, no "
                               "end marker): the camera or the network cut it off")
        image = cv2.imdecode(np.frombuffer(body, np.uint8), cv2.IMREAD_COLOR)
        if image is None or image.size == 0:
            raise _MissedError(f"{self._where()} served {len(body)} bytes "
                               f"({content_type or 'no content type'}) that are not an image; "
                               f"{self._check_path()}")
        return self._frame(np.asarray(image, np.uint8))

    def _get(self) -> tuple[int, str, bytes]:
        """(status, content type, body) of one GET, answering an authentication challenge
        once and following redirects (`MAX_REDIRECTS`); a stream or a page is refused before
        its body is read."""
        response = self._answered()
        for _ in range(MAX_REDIRECTS):
            location = response.getheader("Location")
            if response.status not in REDIRECTS or not location:
                break
            response.read(MAX_SNAPSHOT_BYTES)
            self._follow(response.status, location)
            response = self._answered()
        else:
            if response.status in REDIRECTS:
                raise SourceError(f"{self._where()} redirects again after {MAX_REDIRECTS} "
                                  "redirects; give the snapshot's own URL")
        content_type = (response.getheader("Content-Type") or "").partition(";")[0].strip()
        if response.status != 200:
            response.read(MAX_SNAPSHOT_BYTES)  # the connection stays usable
            return response.status, content_type, b""
        if content_type.lower().startswith("multipart/"):
            self._disconnect()
            raise SourceError(f"{self._where()} serves a stream ({content_type}), not one "
                              f"image: remove {SNAPSHOT_KEY} from the camera's block, and edge "
                              "reads the stream as it comes")
        if content_type.lower() in ("text/html", "application/xhtml+xml"):
            self._disconnect()
            raise SourceError(f"{self._where()} serves a page ({content_type}), not an image: "
                              f"{self._check_path()}")
        try:
            body = response.read(MAX_SNAPSHOT_BYTES + 1)
        except TimeoutError:
            self._disconnect()
            raise SourceError(f"{self._where()} began a snapshot and sent nothing more for "
                              f"{self._timeout_s:g} s") from None
        if len(body) > MAX_SNAPSHOT_BYTES:
            self._disconnect()
            raise SourceError(f"{self._where()} serves more than {MAX_SNAPSHOT_BYTES >> 20} MB, "
                              "no still image's size")
        if response.length:  # bytes its Content-Length announced that never came
            self._disconnect()
            raise _MissedError(self._cut_short(len(body), response.length))
        if response.will_close:
            self._disconnect()
        return response.status, content_type, body

    def _answered(self) -> http.client.HTTPResponse:
        """The answer to a GET of the target, an authentication challenge answered once."""
        response = self._request()
        if response.status == 401 and self._answerable(response):
            response = self._request()
        return response

    def _follow(self, status: int, location: str) -> None:
        """Take the URL a redirect points at as the snapshot's from now on (as a camera set to
        HTTPS only sends port 80 to 443): the credentials go along to the same host only."""
        before = self._target
        written = urljoin(before.url, location.strip())
        after = StreamTarget.parse(written)
        if after is None or after.protocol != "HTTP":
            raise SourceError(f"{self._where()} redirects (HTTP {status}) to "
                              f"{redact_text(written)}, not an http:// or https:// URL: give the "
                              "snapshot's own URL")
        if after.host == before.host:
            after = replace(after, user=before.user, password=before.password)
        elif before.user is not None:
            self._withheld_from = before.host
        log.info("%s redirects (HTTP %d) to %s: fetching that", redact_uri(self.uri), status,
                 redact_uri(after.url))
        if after.scheme in TLS_SCHEMES:
            trust_camera_certificates()
        self._disconnect()
        self._target, self._challenge = after, None

    def _request(self) -> http.client.HTTPResponse:
        target = self._target
        headers = {"User-Agent": "edge", "Accept": "image/*"}
        if self._challenge is not None and target.user is not None:
            self._nonce_uses += 1  # a camera refuses a count it has seen (stale=true)
            headers["Authorization"] = authorization(self._challenge, target.user,
                                                     target.password or "", "GET",
                                                     target.resource, self._nonce_uses)
        for attempt in range(2):  # a kept connection the camera has closed is made again
            connection = self._connected()
            try:
                connection.request("GET", target.resource, headers=headers)
                return connection.getresponse()
            except (http.client.RemoteDisconnected, BrokenPipeError, ConnectionResetError):
                self._disconnect()
                if attempt:
                    raise
        raise AssertionError("unreachable")

    def _answerable(self, response: http.client.HTTPResponse) -> bool:
        """Whether a 401 is worth asking again: credentials are given and the camera offers
        a challenge they answer (remembered for the fetches after)."""
        challenges = [Challenge.parse(v) for v in response.headers.get_all(
            "WWW-Authenticate", [])]
        challenge = chosen(challenges)
        response.read(MAX_SNAPSHOT_BYTES)
        self._challenge, self._nonce_uses = challenge, 0
        return (self._target.user is not None and challenge is not None
                and challenge.answerable)

    def _connected(self) -> http.client.HTTPConnection:
        if self._connection is None:
            target = self._target
            if target.scheme in TLS_SCHEMES:
                self._connection = http.client.HTTPSConnection(
                    target.host, target.port, timeout=self._timeout_s, context=camera_tls_context())
            else:
                self._connection = http.client.HTTPConnection(target.host, target.port,
                                                              timeout=self._timeout_s)
        return self._connection

    def _disconnect(self) -> None:
        if self._connection is not None:
            self._connection.close()
            self._connection = None

    # -- what to say ---------------------------------------------------------------------------

    def _where(self) -> str:
        return f"{self._target.address}{self._target.path}"

    def _check_path(self) -> str:
        return f"check the snapshot URL in the camera's manual (often {SNAPSHOT_PATHS})"

    def _refused(self, status: int) -> str:
        where, target = self._where(), self._target
        if status == 401:
            challenge = self._challenge
            if challenge is not None and not challenge.answerable:
                return (f"{where} asks for {challenge.describe()} authentication, which edge "
                        "does not answer (Basic and Digest with MD5 it does): set the camera "
                        "to one of those")
            if target.user is None and self._withheld_from is not None:
                return (f"{where} needs a user name and password (HTTP 401), and those in the "
                        f"URL were not sent to it: the camera redirected from "
                        f"{self._withheld_from} to another host, {target.host}. Give the URL "
                        "it redirects to as the camera's source, with the user and password "
                        "before its host")
            if target.user is None and _query_credentials(target.resource):
                return (f"{where} refused the credentials in the URL's query (HTTP 401): "
                        "check them (a character such as &, = or # in the password is written "
                        "%26, %3D or %23)")
            if target.user is None:
                return (f"{where} needs a user name and password (HTTP 401): write them in "
                        f"the URL, before the host: USER:PASSWORD@{target.address}")
            return (f"{where} refused the user name and password (HTTP 401): check them (a "
                    "character such as @, : or / in the password is written %40, %3A or %2F)")
        if status == 403:
            return (f"{where} forbids this user the snapshot (HTTP 403): give the user the "
                    "right to view the camera, or use another user")
        if status == 404:
            return f"{where} is not there (HTTP 404 Not Found): {self._check_path()}"
        return f"{where} answered HTTP {status} instead of an image"

    def _late(self) -> str:
        return (f"{self._target.address} did not answer within {self._timeout_s:g} s (each "
                "fetch gets most of the camera's stall_s less the interval: for a camera that "
                "is slow to make a snapshot, raise stall_s in its [[cameras]] block, and try "
                "it with edge probe --config)")

    def _cut_short(self, received: int, missing: int | None) -> str:
        announced = f" of the {received + missing} it announced" if missing else ""
        return (f"{self._where()} sent {received} bytes{announced} and stopped: the camera or "
                "the network cut the snapshot off")

    def _unreachable(self, exc: BaseException) -> str:
        """What a failed fetch says: the network's failures worded as the stream probe words
        them (`edge.sources.unreached`), HTTP's own here."""
        where = self._target.address
        if isinstance(exc, http.client.RemoteDisconnected | ConnectionResetError):
            tls = ("" if self._target.scheme in TLS_SCHEMES else
                   " (a TLS port closes on a plain request: is it https://?)")
            return f"{where} closed the connection without answering{tls}"
        if isinstance(exc, http.client.BadStatusLine | http.client.LineTooLong):
            return (f"{where} did not answer in HTTP (it may serve another protocol on port "
                    f"{self._target.port})")
        if isinstance(exc, OSError):
            return unreached(exc, self._target, self._timeout_s)
        return f"fetching the snapshot from {where} failed: {exc}"


def _query_credentials(resource: str) -> bool:
    """Whether a request's query carries a password (Reolink's and Foscam's snapshots take
    `?user=...&password=...`, `&pwd=...`)."""
    query = resource.partition("?")[2]
    return any(is_secret_name(name) for name, _ in parse_qsl(query, keep_blank_values=True))

"""An HTTP camera that serves no stream, only a still image (its snapshot URL), fetched at a
steady interval: cheap cameras, doorbells and battery cameras often offer nothing else
(`/snapshot.jpg`, `/cgi-bin/snapshot.cgi`, Hikvision's `/ISAPI/Streaming/channels/101/picture`).

One HTTP/1.1 connection is kept open between fetches where the camera allows it; Basic and
Digest (MD5) authentication are answered as FFmpeg answers them for a stream
(`edge.sources.stream_auth`), and a TLS camera's certificate is checked, or not, as the
stream sources' are (`edge.sources.ffmpeg_options`). Every failure is a `SourceError` that
says what the camera answered, so its supervisor reopens it with the reason on the status.
"""

from __future__ import annotations

import http.client
import socket
import ssl

import cv2
import numpy as np

from edge.errors import SourceError
from edge.sources.base import Frame, Pacer, Source
from edge.sources.ffmpeg_options import certificate_check, trust_camera_certificates
from edge.sources.stream_auth import Challenge, authorization, chosen
from edge.sources.stream_url import TLS_SCHEMES, StreamTarget
from edge.sources.uri import SourceUri

#: Seconds one connect, request or read of a snapshot may take.
FETCH_TIMEOUT_S = 5.0
#: A snapshot larger than this is no camera's still image (a 4K JPEG is 1-3 MB).
MAX_SNAPSHOT_BYTES = 32 << 20
#: Where cameras commonly serve their snapshot (said when a path is not found).
SNAPSHOT_PATHS = ("/snapshot.jpg, /cgi-bin/snapshot.cgi, /ISAPI/Streaming/channels/101/picture "
                  "or /cgi-bin/api.cgi?cmd=Snap&channel=0")
#: What the config key that turns a URL into a polled snapshot is called.
SNAPSHOT_KEY = "snapshot_interval_s"


class SnapshotSource(Source):
    """`uri` (http:// or https://, user and password before the host where the camera asks
    for them) fetched every `interval_s` seconds, each answer decoded as one BGR frame."""

    live = True
    fps_origin = "snapshots"
    read_timeout_s = None  # each fetch is bounded by FETCH_TIMEOUT_S, and raises past it

    def __init__(self, uri: SourceUri, interval_s: float) -> None:
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
        self.fps = 1.0 / interval_s
        self._pacer = Pacer(self.fps)
        self._connection: http.client.HTTPConnection | None = None
        self._challenge: Challenge | None = None  # the camera's last, answered from then on
        self._first: Frame | None = None

    def open(self) -> None:
        """Fetch the first snapshot, so that a wrong URL, password or path is said at once."""
        self._first = self._fetch()

    def read(self) -> Frame:
        if self._first is not None:
            first, self._first = self._first, None
            return first
        self._pacer.wait()
        return self._fetch()

    def close(self) -> None:
        self._disconnect()
        if self._first is not None:
            self._first.release()
            self._first = None

    # -- one fetch ---------------------------------------------------------------------------

    def _fetch(self) -> Frame:
        try:
            status, content_type, body = self._get()
        except SourceError:
            self._disconnect()
            raise
        except (OSError, http.client.HTTPException) as exc:
            self._disconnect()
            raise SourceError(self._unreachable(exc)) from None
        if status != 200:
            raise SourceError(self._refused(status))
        image = cv2.imdecode(np.frombuffer(body, np.uint8), cv2.IMREAD_COLOR)
        if image is None or image.size == 0:
            raise SourceError(f"{self._where()} served {len(body)} bytes "
                              f"({content_type or 'no content type'}) that are not an image; "
                              f"{self._check_path()}")
        return self._frame(np.asarray(image, np.uint8))

    def _get(self) -> tuple[int, str, bytes]:
        """(status, content type, body) of one GET, answering an authentication challenge
        once; a stream or a page is refused before its body is read."""
        response = self._request()
        if response.status == 401 and self._answerable(response):
            response = self._request()
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
        body = response.read(MAX_SNAPSHOT_BYTES + 1)
        if len(body) > MAX_SNAPSHOT_BYTES:
            self._disconnect()
            raise SourceError(f"{self._where()} serves more than {MAX_SNAPSHOT_BYTES >> 20} MB, "
                              "no still image's size")
        if response.will_close:
            self._disconnect()
        return response.status, content_type, body

    def _request(self) -> http.client.HTTPResponse:
        target = self._target
        headers = {"User-Agent": "edge", "Accept": "image/*"}
        if self._challenge is not None and target.user is not None:
            headers["Authorization"] = authorization(self._challenge, target.user,
                                                     target.password or "", "GET",
                                                     target.resource)
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
        if self._target.user is None or challenge is None or not challenge.answerable:
            self._challenge = challenge
            return False
        self._challenge = challenge
        return True

    def _connected(self) -> http.client.HTTPConnection:
        if self._connection is None:
            target = self._target
            if target.scheme in TLS_SCHEMES:
                self._connection = http.client.HTTPSConnection(
                    target.host, target.port, timeout=FETCH_TIMEOUT_S, context=_tls_context())
            else:
                self._connection = http.client.HTTPConnection(target.host, target.port,
                                                              timeout=FETCH_TIMEOUT_S)
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

    def _unreachable(self, exc: BaseException) -> str:
        where = self._target.address
        if isinstance(exc, ConnectionRefusedError):
            return (f"{where} refused the connection: nothing listens on port "
                    f"{self._target.port} (check the host and port; is the camera on?)")
        if isinstance(exc, socket.gaierror):
            return f"host {self._target.host} does not resolve: check the host name"
        if isinstance(exc, TimeoutError):
            return f"{where} did not answer within {FETCH_TIMEOUT_S:g} s"
        if isinstance(exc, ssl.SSLCertVerificationError):
            return (f"{where}'s TLS certificate did not verify ({exc.verify_message}); the "
                    "CA in OPENCV_FFMPEG_CAPTURE_OPTIONS's ca_file must be the one that "
                    "signed it")
        if isinstance(exc, ssl.SSLError):
            return (f"TLS with {where} failed ({exc.reason or exc}): write http:// if the "
                    "camera speaks plain HTTP on that port")
        if isinstance(exc, http.client.RemoteDisconnected | ConnectionResetError):
            tls = ("" if self._target.scheme in TLS_SCHEMES else
                   " (a TLS port closes on a plain request: is it https://?)")
            return f"{where} closed the connection without answering{tls}"
        if isinstance(exc, http.client.BadStatusLine | http.client.LineTooLong):
            return (f"{where} did not answer in HTTP (it may serve another protocol on port "
                    f"{self._target.port})")
        return f"fetching the snapshot from {where} failed: {exc}"


def _tls_context() -> ssl.SSLContext:
    """Certificates checked against the CA the stream options name (or the system's) where
    they ask for it; else a camera's self-signed certificate is taken, as for its streams."""
    verify, ca_file = certificate_check()
    if verify:
        return ssl.create_default_context(cafile=ca_file)
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context

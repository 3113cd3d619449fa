"""Why an RTSP camera does not open, as the person fixing it needs to read it: asked of a real
GStreamer RTSP server (tests/rtsp_server.py: wrong path, no credentials, wrong ones, Digest and
Basic, RTSP over TLS with a self-signed certificate) and of small socket servers for what
GStreamer does not do (a silent server, one that is not RTSP, one that closes after its 401,
Digest with qop, a busy camera)."""

from __future__ import annotations

import hashlib
import re
import socket
import threading
import time
from collections.abc import Callable, Iterator

import cv2
import pytest

from edge.broker import free_port
from edge.errors import SourceError
from edge.sources import source_from_uri
from edge.sources.ffmpeg_options import CAPTURE_OPTIONS
from edge.sources.stream_probe import diagnose_stream
from edge.sources.stream_url import StreamTarget
from tests.mjpeg_server import self_signed_certificate
from tests.rtsp_server import RtspServer, missing_reason
from tests.test_http_sources import first_frame_shape, opening_error

rtsp = pytest.mark.skipif(missing_reason() is not None, reason=str(missing_reason()))
PASSWORD = "s3cr@t/x"  # '@' and '/' as real passwords hold them
QUOTED_PASSWORD = "s3cr%40t%2Fx"


@pytest.mark.parametrize(
    ("url", "host", "port", "path", "user", "password", "request_url"),
    [
        ("rtsp://cam/live", "cam", 554, "/live", None, None, "rtsp://cam/live"),
        ("rtsps://cam:8322/a/b?channel=1&subtype=0", "cam", 8322, "/a/b", None, None,
         "rtsps://cam:8322/a/b?channel=1&subtype=0"),
        ("RTSP://admin:pa%40ss@10.0.0.9:8554/s", "10.0.0.9", 8554, "/s", "admin", "pa@ss",
         "rtsp://10.0.0.9:8554/s"),
        ("rtsp://admin:p@ss/w@[fe80::1]:554/s", "fe80::1", 554, "/s", "admin", "p@ss/w",
         "rtsp://[fe80::1]:554/s"),
        ("rtsp://token@cam", "cam", 554, "/", "token", None, "rtsp://cam"),
    ],
)
def test_urls_are_taken_apart_as_ffmpeg_reads_them(url, host, port, path, user, password,
                                                   request_url):
    target = StreamTarget.parse(url)
    assert target is not None
    assert (target.host, target.port, target.path) == (host, port, path)
    assert (target.user, target.password, target.url) == (user, password, request_url)


@pytest.mark.parametrize("url", ["ftp://cam/live", "rtsp://cam:99999/x", "rtsp://cam:port/x",
                                 "rtsp:///x", "/dev/video0", "v4l2:///dev/video0"])
def test_what_is_no_rtsp_url_gets_no_diagnosis(url):
    assert diagnose_stream(url) is None


@pytest.mark.parametrize(("password", "said"), [
    ("pa/ss", "a raw /, which ends the host part for FFmpeg"),
    ("pa#ss?x", "a raw ? #, which ends the host part for FFmpeg (it then reads a wrong host or "
                "port): write ? as %3F, # as %23 there"),
])
def test_a_raw_slash_question_or_hash_in_the_credentials_is_named_without_asking(password,
                                                                                 said):
    """FFmpeg ends the host at them (`Port missing in uri`) where the probe, reading up to the
    last @, would connect fine and blame the media (a user check). Said without the network."""
    diagnosis = diagnose_stream(f"rtsp://admin:{password}@127.0.0.1:1/cam")
    assert diagnosis is not None and said in diagnosis
    assert password not in diagnosis and "refused" not in diagnosis


def test_a_port_nothing_listens_on_is_named_refused():
    port = free_port()
    said = diagnose_stream(f"rtsp://admin:hunter2@127.0.0.1:{port}/cam")
    assert said is not None
    assert f"127.0.0.1:{port} refused the connection" in said and "usually 554" in said
    assert "hunter2" not in said and "admin" not in said


def test_a_host_name_that_does_not_resolve_is_named():
    said = diagnose_stream("rtsp://camera-7.invalid/stream")
    assert said is not None and "'camera-7.invalid' does not resolve" in said


def test_a_name_server_that_does_not_answer_is_given_up_within_the_timeout(monkeypatch):
    """The system resolver has no timeout to give; the probe must not wait out its retries
    (the supervisor asks it while it would only wait to retry anyway, and a stop waits)."""
    monkeypatch.setattr(socket, "getaddrinfo", lambda *args, **kwargs: time.sleep(5) or [])
    started = time.monotonic()
    said = diagnose_stream("rtsp://camera-7.example/stream", timeout=1.0)
    assert time.monotonic() - started < 2.0
    assert said is not None and "'camera-7.example' did not resolve within 1 s" in said


def test_a_host_that_drops_the_connection_attempt_is_named_silent_within_the_timeout():
    """As a camera that is off or behind a firewall: the SYN goes unanswered (here a listener
    whose backlog of one is full, so the kernel drops further attempts)."""
    with socket.create_server(("127.0.0.1", 0), backlog=0) as full:
        port = full.getsockname()[1]
        with socket.create_connection(("127.0.0.1", port), 1):
            started = time.monotonic()
            said = diagnose_stream(f"rtsp://127.0.0.1:{port}/cam", timeout=1.0)
            took = time.monotonic() - started
    assert took < 2.0
    assert said == (f"127.0.0.1:{port} did not answer within 1 s (the camera switched off, on "
                    "another network, or a firewall in the way)")


# -- small socket servers ---------------------------------------------------------------------

Handler = Callable[[socket.socket], None]


@pytest.fixture
def serve() -> Iterator[Callable[[Handler], int]]:
    """A TCP server on a free loopback port that runs `handler` on each connection; its
    port."""
    sockets: list[socket.socket] = []

    def start(handler: Handler) -> int:
        listener = socket.create_server(("127.0.0.1", 0))
        sockets.append(listener)

        def accept() -> None:
            while True:
                try:
                    connection, _ = listener.accept()
                except OSError:
                    return
                sockets.append(connection)
                threading.Thread(target=handler, args=(connection,), daemon=True).start()

        threading.Thread(target=accept, daemon=True).start()
        return int(listener.getsockname()[1])

    yield start
    for opened in sockets:
        opened.close()


def requests_of(connection: socket.socket) -> Iterator[tuple[str, dict[str, str]]]:
    """(request line, headers) of each RTSP request on `connection` until it closes."""
    pending = b""
    while True:
        while b"\r\n\r\n" not in pending:
            try:
                chunk = connection.recv(4096)
            except OSError:  # closed by the fixture at the end of the test
                return
            if not chunk:
                return
            pending += chunk
        head, _, pending = pending.partition(b"\r\n\r\n")
        line, *fields = head.decode().split("\r\n")
        yield line, {k.strip().lower(): v.strip() for k, v in (f.split(":", 1) for f in fields)}


def answer(connection: socket.socket, cseq: str, status: str, *headers: str,
           body: bytes = b"") -> None:
    lines = [f"RTSP/1.0 {status}", f"CSeq: {cseq}", *headers, f"Content-Length: {len(body)}"]
    connection.sendall(("\r\n".join(lines) + "\r\n\r\n").encode() + body)


SDP = (b"v=0\r\no=- 0 0 IN IP4 127.0.0.1\r\ns=cam\r\nt=0 0\r\nm=audio 0 RTP/AVP 0\r\n"
       b"a=rtpmap:0 PCMU/8000\r\nm=video 0 RTP/AVP 96\r\na=rtpmap:96 H265/90000\r\n")


def test_a_server_that_takes_the_connection_and_never_answers(serve):
    port = serve(lambda connection: time.sleep(10))
    started = time.monotonic()
    said = diagnose_stream(f"rtsp://127.0.0.1:{port}/cam", timeout=1.0)
    assert time.monotonic() - started < 2.0, "the probe must keep to its timeout"
    assert said is not None and "took the connection but did not answer" in said
    assert "within 1 s" in said


def test_every_address_of_the_host_is_tried_before_it_is_called_refused(serve, monkeypatch):
    """A name that resolves to two addresses (as `localhost` to ::1 and 127.0.0.1) with the
    camera listening on the second: the first one's refusal is not the answer."""
    port = serve(lambda connection: connection.close())
    both = [(socket.AF_INET, socket.SOCK_STREAM, 6, "", ("127.0.0.2", port)),
            (socket.AF_INET, socket.SOCK_STREAM, 6, "", ("127.0.0.1", port))]
    monkeypatch.setattr(socket, "getaddrinfo", lambda *args, **kwargs: both)
    said = diagnose_stream(f"rtsp://camera.lan:{port}/cam")
    assert said is not None and "refused" not in said
    assert f"camera.lan:{port} closed the connection without answering an RTSP request" in said


def test_a_server_that_is_not_rtsp_is_named_with_what_it_said(serve):
    def http(connection: socket.socket) -> None:
        connection.recv(4096)
        connection.sendall(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n")

    port = serve(http)
    said = diagnose_stream(f"rtsp://127.0.0.1:{port}/cam")
    assert said is not None
    assert "answered, but not as an RTSP server" in said and "'HTTP/1.1 400 Bad Request" in said


def test_digest_with_qop_after_a_server_that_closes_on_its_401(serve):
    """The probe connects again where the server hung up after its challenge, and answers a
    qop=auth Digest challenge as RFC 2617 computes it (checked here independently)."""
    checked: list[bool] = []

    def camera(connection: socket.socket) -> None:
        for line, headers in requests_of(connection):
            method, url, _ = line.split(" ")
            if method == "OPTIONS":
                answer(connection, headers["cseq"], "200 OK", "Public: OPTIONS, DESCRIBE")
                continue
            given = headers.get("authorization", "")
            if not given:
                answer(connection, headers["cseq"], "401 Unauthorized",
                       'WWW-Authenticate: Digest realm="IP Camera", nonce="abc123", '
                       'qop="auth,auth-int", opaque="xyz", algorithm=MD5')
                connection.close()
                return
            fields = dict(re.findall(r'(\w+)="?([^",]+)"?', given.partition(" ")[2]))
            md5 = lambda text: hashlib.md5(text.encode()).hexdigest()  # noqa: E731
            expected = md5(f"{md5('admin:IP Camera:' + PASSWORD)}:abc123:{fields['nc']}:"
                           f"{fields['cnonce']}:auth:{md5('DESCRIBE:' + url)}")
            checked.append(fields["response"] == expected and fields["opaque"] == "xyz"
                           and fields["uri"] == url)
            answer(connection, headers["cseq"], "200 OK" if checked[-1] else "401 Unauthorized",
                   "Content-Type: application/sdp", body=SDP)

    port = serve(camera)
    said = diagnose_stream(f"rtsp://admin:{QUOTED_PASSWORD}@127.0.0.1:{port}/live")
    assert checked == [True]
    assert said is not None and "describes a H265 video stream (RTSP 200 OK)" in said
    assert PASSWORD not in said and "admin" not in said


def test_a_camera_serving_too_many_viewers_says_so(serve):
    def busy(connection: socket.socket) -> None:
        for _, headers in requests_of(connection):
            answer(connection, headers["cseq"], "200 OK" if "accept" not in headers else
                   "503 Service Unavailable")

    port = serve(busy)
    said = diagnose_stream(f"rtsp://127.0.0.1:{port}/live")
    assert said is not None and "503 Service Unavailable" in said and "other viewers" in said


def test_a_camera_that_speaks_only_sha256_digest_is_named_as_unreadable_by_ffmpeg(serve):
    """FFmpeg answers MD5 Digest and Basic only; the probe said "wrong password" (a user
    check)."""
    def camera(connection: socket.socket) -> None:
        for _, headers in requests_of(connection):
            answer(connection, headers["cseq"], "200 OK" if "accept" not in headers else
                   "401 Unauthorized", 'WWW-Authenticate: Digest realm="cam", nonce="n1", '
                   "algorithm=SHA-256")

    port = serve(camera)
    said = diagnose_stream(f"rtsp://u:Sekr1t@127.0.0.1:{port}/cam")
    assert said is not None and "refused" not in said and "Sekr1t" not in said
    assert "asks for an authentication FFmpeg (in OpenCV) does not speak (Digest with " \
           "SHA-256; it answers Basic and MD5 Digest)" in said


def test_digest_md5_sess_is_chosen_over_basic_as_ffmpeg_chooses(serve):
    seen: list[str] = []

    def camera(connection: socket.socket) -> None:
        for line, headers in requests_of(connection):
            if "accept" not in headers:
                answer(connection, headers["cseq"], "200 OK")
                continue
            given = headers.get("authorization", "")
            if not given:
                answer(connection, headers["cseq"], "401 Unauthorized",
                       'WWW-Authenticate: Basic realm="cam"',
                       'WWW-Authenticate: Digest realm="cam", nonce="n2", algorithm=MD5-sess')
                continue
            fields = dict(re.findall(r'(\w+)="?([^",]+)"?', given.partition(" ")[2]))
            md5 = lambda text: hashlib.md5(text.encode()).hexdigest()  # noqa: E731
            first = md5(f"{md5('u:cam:' + PASSWORD)}:n2:{fields['cnonce']}")
            url = line.split(" ")[1]
            right = fields["response"] == md5(f"{first}:n2:{md5('DESCRIBE:' + url)}")
            seen.append(given.split(" ")[0] if right else "wrong")
            answer(connection, headers["cseq"], "200 OK" if right else "401 Unauthorized",
                   body=SDP)

    port = serve(camera)
    said = diagnose_stream(f"rtsp://u:{QUOTED_PASSWORD}@127.0.0.1:{port}/cam")
    assert seen == ["Digest"]
    assert said is not None and "(RTSP 200 OK)" in said


# -- GStreamer's RTSP server -----------------------------------------------------------------


@pytest.fixture
def guarded_server() -> Iterator[RtspServer]:
    """The real server asking for admin / PASSWORD by Digest, started."""
    server = RtspServer(free_port(), credentials=("admin", PASSWORD))
    server.start()
    yield server
    server.stop()


def with_credentials(server: RtspServer, credentials: str, path: str = "/cam") -> str:
    return f"rtsp://{credentials}127.0.0.1:{server.port}{path}"


@rtsp
def test_each_fixable_cause_is_named_by_a_real_server(guarded_server):
    asked = diagnose_stream(with_credentials(guarded_server, ""))
    assert asked is not None and "asks for a user name and password (401" in asked
    assert f"USER:PASSWORD@127.0.0.1:{guarded_server.port}" in asked
    refused = diagnose_stream(with_credentials(guarded_server, "admin:hunter2@"))
    assert refused is not None and "refused the user name and password" in refused
    assert "hunter2" not in refused
    missing = diagnose_stream(with_credentials(guarded_server, f"admin:{QUOTED_PASSWORD}@",
                                             "/stream1"))
    assert missing is not None and "path /stream1" in missing and "404 Not Found" in missing
    right = diagnose_stream(with_credentials(guarded_server, f"admin:{QUOTED_PASSWORD}@"))
    assert right is not None and "describes a H264 video stream (RTSP 200 OK)" in right
    alone = diagnose_stream(with_credentials(guarded_server, "admin@"))
    assert alone is not None
    assert "refused the user name in the URL, given without a password (401" in alone


@rtsp
def test_basic_authentication_is_answered_too():
    server = RtspServer(free_port(), credentials=("admin", PASSWORD), method="basic")
    server.start()
    try:
        right = diagnose_stream(f"rtsp://admin:{QUOTED_PASSWORD}@127.0.0.1:{server.port}/cam")
        wrong = diagnose_stream(f"rtsp://admin:nope@127.0.0.1:{server.port}/cam")
    finally:
        server.stop()
    assert right is not None and "(RTSP 200 OK)" in right
    assert wrong is not None and "refused the user name and password" in wrong


@rtsp
def test_a_camera_source_that_cannot_open_says_why_and_opens_with_the_right_password(
        guarded_server):
    """What `edge run` shows in the camera's status and log: the cause, not OpenCV's "could
    not be opened"; the right credentials then stream."""
    wrong = source_from_uri(with_credentials(guarded_server, "admin:hunter2@"))
    with pytest.raises(SourceError) as raised:
        wrong.open()
    message = str(raised.value)
    assert "refused the user name and password in the URL (401 Unauthorized)" in message
    assert "by OpenCV" not in message
    right = source_from_uri(with_credentials(guarded_server, f"admin:{QUOTED_PASSWORD}@"))
    right.open()
    try:
        frame = right.read()
        assert frame is not None and frame.image.shape == (240, 320, 3)
        assert cv2.mean(frame.image)[:3] != (0.0, 0.0, 0.0)
    finally:
        right.close()


@rtsp
def test_a_scheme_written_in_capitals_streams(guarded_server):
    """Schemes are case-insensitive; FFmpeg failed on `RTSP://` without a word (a user
    check)."""
    source = source_from_uri(f"RTSP://admin:{QUOTED_PASSWORD}@127.0.0.1:{guarded_server.port}"
                             "/cam")
    source.open()
    try:
        frame = source.read()
        assert frame is not None and frame.image.shape == (240, 320, 3)
    finally:
        source.close()


@rtsp
def test_a_camera_that_never_answers_does_not_hold_up_another_cameras_open(guarded_server):
    """OpenCV's FFmpeg backend opens one stream at a time in the whole process: a silent
    camera's open (FFmpeg's 10 s) held every other camera's back, at every reconnect attempt
    (a user check: a healthy camera named failed). Its server is now asked first, unlocked."""
    opened: dict[str, float] = {}
    with socket.create_server(("127.0.0.1", 0)) as silent:
        sources = {"silent": f"rtsp://127.0.0.1:{silent.getsockname()[1]}/cam",
                   "healthy": with_credentials(guarded_server, f"admin:{QUOTED_PASSWORD}@")}
        started = time.monotonic()

        def open_one(name: str) -> None:
            source = source_from_uri(sources[name])
            try:
                source.open()
                opened[name] = time.monotonic() - started
            except SourceError:
                opened[name] = -(time.monotonic() - started)
            finally:
                source.close()

        threads = [threading.Thread(target=open_one, args=(name,)) for name in
                   ("silent", "healthy")]
        for thread in threads:
            thread.start()
            time.sleep(0.2)  # the silent one first, as when it is the first camera
        for thread in threads:
            thread.join(30)
    assert -5 < opened["silent"] < 0, opened  # refused by the pre-check in 3 s
    assert 0 < opened["healthy"] < 6, opened  # not after the silent one's 10 s


@rtsp
def test_an_rtsps_camera_streams_over_tls_and_its_certificate_checks_are_named(tmp_path,
                                                                              monkeypatch):
    """`rtsps://` against a real RTSP server over TLS with a self-signed certificate, as such
    cameras have: it streams as edge leaves certificates unverified; asked verified, it streams
    against its own certificate as the CA, and is refused, named, without one or against
    another; `rtsp://` to its TLS port is told to write `rtsps://`."""
    made = self_signed_certificate(tmp_path)
    other = self_signed_certificate(tmp_path, "other")
    if made is None or other is None:
        pytest.skip("openssl is not installed")
    monkeypatch.delenv(CAPTURE_OPTIONS, raising=False)  # restored after the test
    server = RtspServer(free_port(), credentials=("admin", PASSWORD), certificate=made)
    server.start()
    url = server.url.replace("rtsps://", f"rtsps://admin:{QUOTED_PASSWORD}@")
    address = f"127.0.0.1:{server.port}"
    try:
        unverified = first_frame_shape(url)
        described = diagnose_stream(url)
        plain = diagnose_stream(url.replace("rtsps://", "rtsp://"))
        monkeypatch.setenv(CAPTURE_OPTIONS, "tls_verify;1")
        refused = opening_error(url)
        monkeypatch.setenv(CAPTURE_OPTIONS, f"tls_verify;1|ca_file;{made[0]}")
        verified = first_frame_shape(url)
        misnamed = diagnose_stream(url.replace("127.0.0.1", "localhost"))
        monkeypatch.setenv(CAPTURE_OPTIONS, f"tls_verify;1|ca_file;{other[0]}")
        unsigned = opening_error(url)
    finally:
        server.stop()
    assert unverified == verified == (240, 320, 3)
    assert described is not None and "describes a H264 video stream (RTSP 200 OK)" in described
    assert plain is not None and "(usually 554; a port serving TLS wants rtsps://)" in plain
    assert (f"{address}'s certificate was refused (self-signed certificate), as "
            f"{CAPTURE_OPTIONS} asks it verified: give the camera's CA as ca_file;") in refused
    assert misnamed is not None and (f"localhost:{server.port}'s certificate is made out to "
                                     "another host (Hostname mismatch") in misnamed
    assert (f"{address}'s certificate is not signed by the CA in {other[0]} (self-signed "
            "certificate): give the CA that signed it as ca_file") in unsigned
    assert PASSWORD not in refused + unsigned

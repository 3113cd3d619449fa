"""HTTP cameras (`http://`, `https://`): an MJPEG stream as IP cameras, ESP32 cameras and phone
webcam apps serve it, read through OpenCV's FFmpeg from a real HTTP server
(tests/mjpeg_server.py), and why one does not open, asked of that server as a person fixing it
needs to read it."""

from __future__ import annotations

import itertools
import json
import logging
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator

import pytest

from edge.broker import free_port
from edge.errors import SourceError
from edge.redact import redact_text
from edge.sources import source_from_uri
from edge.sources.ffmpeg_options import CAPTURE_OPTIONS, certificate_check
from edge.sources.stream_probe import diagnose_stream
from edge.sources.stream_url import StreamTarget
from edge.sources.supervisor import open_stalled
from tests.mjpeg_server import MjpegServer, self_signed_certificate
from tests.test_supervisor import supervise

PASSWORD = "s3cr@t/x"
QUOTED_PASSWORD = "s3cr%40t%2Fx"


@pytest.fixture
def camera() -> Iterator[MjpegServer]:
    """An MJPEG camera asking for admin / PASSWORD by Digest, at 10 fps, started."""
    server = MjpegServer(free_port(), fps=10, credentials=("admin", PASSWORD))
    server.start()
    yield server
    server.stop()


def at(server: MjpegServer, path: str = "/video", credentials: str | None = None) -> str:
    given = f"admin:{QUOTED_PASSWORD}@" if credentials is None else credentials
    return f"http://{given}127.0.0.1:{server.port}{path}"


def first_frame_shape(url: str) -> tuple[int, ...]:
    """The shape of the first frame `url`'s source delivers (opened, read, closed)."""
    source = source_from_uri(url)
    source.open()
    try:
        frame = source.read()
        assert frame is not None
        return tuple(frame.image.shape)
    finally:
        source.close()


def opening_error(url: str) -> str:
    """Why `url`'s source did not open, as the camera's status and log show it (redacted)."""
    source = source_from_uri(url)
    with pytest.raises(SourceError) as raised:
        source.open()
    source.close()
    return redact_text(str(raised.value))


@pytest.mark.parametrize(
    ("url", "host", "port", "path", "resource"),
    [
        ("http://cam/video.mjpg", "cam", 80, "/video.mjpg", "/video.mjpg"),
        ("https://admin:pw@cam:8443/mjpg/video.mjpg?resolution=640x480", "cam", 8443,
         "/mjpg/video.mjpg", "/mjpg/video.mjpg?resolution=640x480"),
        ("http://192.168.1.9:8080?action=stream", "192.168.1.9", 8080, "/", "/?action=stream"),
        ("HTTP://[fe80::1]/stream", "fe80::1", 80, "/stream", "/stream"),
    ],
)
def test_http_urls_are_taken_apart_for_their_request_line(url, host, port, path, resource):
    target = StreamTarget.parse(url)
    assert target is not None and target.protocol == "HTTP"
    assert (target.host, target.port, target.path, target.resource) == (host, port, path,
                                                                        resource)


def test_an_mjpeg_stream_is_read_frame_by_frame_with_digest_credentials(camera):
    """Every frame the camera sends, in order (each frame's grey says its index), at the
    camera's own pace: FFmpeg's 25 fps for MJPEG is a guess, so no rate is declared."""
    source = source_from_uri(at(camera))
    source.open()
    try:
        assert source.live and source.fps is None
        greys = []
        for _ in range(12):
            frame = source.read()
            assert frame is not None and frame.image.shape == (240, 320, 3)
            greys.append(int(frame.image.mean()))
            frame.release()
    finally:
        source.close()
    steps = [later - earlier for earlier, later in itertools.pairwise(greys)]
    assert all(abs(step - 8) <= 2 for step in steps), greys


def test_basic_credentials_are_answered_too():
    server = MjpegServer(free_port(), credentials=("viewer", "pw"), method="basic")
    server.start()
    try:
        shape = first_frame_shape(f"http://viewer:pw@127.0.0.1:{server.port}/video")
        wrong = opening_error(f"http://viewer:nope@127.0.0.1:{server.port}/video")
    finally:
        server.stop()
    assert shape == (240, 320, 3)
    assert "refused the user name and password in the URL (401 Unauthorized)" in wrong


@pytest.mark.parametrize(("path", "credentials", "said"), [
    ("/video", "admin:hunter2@", "path /video refused the user name and password in the URL "
                                 "(401 Unauthorized): check them"),
    ("/video", "", "path /video asks for a user name and password (401 Unauthorized): give them "
                   "in the URL, before the host: USER:PASSWORD@127.0.0.1:"),
    ("/", None, "path / serves a page (text/html), not a video stream: the stream has another "
                "URL"),
    ("/cgi-bin/mjpeg", None, "path /cgi-bin/mjpeg: the camera has no stream at that path (404 "
                             "Not Found)"),
])
def test_each_fixable_cause_is_named_when_the_camera_does_not_open(camera, path, credentials,
                                                                   said):
    message = opening_error(at(camera, path, credentials))
    assert said in message, message
    assert "by OpenCV" not in message and "hunter2" not in message
    assert PASSWORD not in message and QUOTED_PASSWORD not in message


@pytest.mark.parametrize(("path", "served"), [
    ("/snapshot.jpg", "serves one still image (image/jpeg), a snapshot, not a stream: give the "
                      "camera's video stream URL"),
    ("/still.bin", "serves application/octet-stream (HTTP 200 OK)"),
])
def test_a_snapshot_url_is_refused_when_it_opens_as_a_still_image(camera, path, served):
    """A camera's /snapshot.jpg opens in FFmpeg (one JPEG) and ends at once: read as a
    stream, `edge run` polled it, a reopen every 0.7 s and a warning each (a user check). Its
    second frame is read at open."""
    message = opening_error(at(camera, path))
    assert f"ended after its first frame: 127.0.0.1:{camera.port} path {path} {served}" in \
        message, message


@pytest.mark.slow
def test_a_snapshot_camera_backs_off_and_never_streams(camera):
    supervisor, recorder = supervise(at(camera, "/snapshot.jpg"), stall_s=3,
                                     reconnect_max_s=2)
    supervisor.start()
    try:
        time.sleep(6)
    finally:
        supervisor.stop()
    assert "streaming" not in recorder.states() and supervisor.frames == 0
    down = [s for s in recorder.statuses if s.state == "reconnecting"]
    assert 2 <= down[-1].attempts <= 5, down  # 1 s, 2 s, 2 s ... not one every 0.7 s
    assert "serves one still image" in down[-1].reason


def test_a_url_with_a_space_is_refused_before_anything_is_asked():
    with pytest.raises(SourceError, match=r"'http://127.0.0.1:1/my video': its path or query "
                                          r"holds a space, which ends a request's URL \(write "
                                          r"it as %20\)"):
        source_from_uri("http://127.0.0.1:1/my video")


def test_a_stream_that_needs_its_query_says_so_and_streams_with_it(camera):
    message = opening_error(at(camera, "/stream"))
    assert ("path /stream: the camera answered GET with 400 Bad Request: the URL may lack a "
            "query the camera needs (as ?action=stream)") in message
    assert first_frame_shape(at(camera, "/stream?action=stream")) == (240, 320, 3)


def test_a_port_nothing_listens_on_and_a_tls_mismatch_are_named(camera):
    port = free_port()
    refused = opening_error(f"http://127.0.0.1:{port}/video")
    assert f"127.0.0.1:{port} refused the connection" in refused
    assert "the camera's HTTP port is usually 80" in refused
    mismatch = diagnose_stream(f"https://127.0.0.1:{camera.port}/video", timeout=2)
    assert mismatch is not None and "the TLS handshake with 127.0.0.1:" in mismatch
    assert "https:// needs the camera's HTTP-over-TLS port, http:// the plain one" in mismatch


@pytest.mark.slow
def test_a_server_that_never_answers_is_named_after_ffmpegs_timeout():
    """Unlike an RTSP server's, an HTTP server is not asked anything before FFmpeg opens the
    stream (a GET would take a one-client camera's stream), so a silent one holds the open
    for FFmpeg's 10 s; then its silence is named."""
    with socket.create_server(("127.0.0.1", 0)) as silent:
        message = opening_error(f"http://127.0.0.1:{silent.getsockname()[1]}/video")
    assert "could not be opened (after 10 s): 127.0.0.1:" in message, message
    assert ("took the connection but did not answer an HTTP request within 3 s (a camera that "
            "streams to one viewer at a time, as ESP32 cameras do, serving another: close that "
            "viewer; or a server that is not HTTP") in message


def test_a_server_that_is_not_http_is_named_with_what_it_said():
    with socket.create_server(("127.0.0.1", 0)) as server:
        port = server.getsockname()[1]

        def answer() -> None:
            connection, _ = server.accept()
            with connection:
                connection.recv(4096)
                connection.sendall(b"SSH-2.0-OpenSSH_9.2\r\n")
                time.sleep(0.5)

        thread = threading.Thread(target=answer, daemon=True)
        thread.start()
        said = diagnose_stream(f"http://127.0.0.1:{port}/video", timeout=2)
        thread.join(5)
    assert said is not None
    assert f"127.0.0.1:{port} answered, but not as an HTTP server (it began 'SSH-2.0" in said


@pytest.mark.slow
def test_an_http_camera_comes_back_after_the_camera_goes_away(camera):
    supervisor, recorder = supervise(at(camera), stall_s=3, reconnect_max_s=1)
    supervisor.start()
    try:
        recorder.wait_for("streaming", 10)
        time.sleep(1)
        camera.stop()
        stopped_at = len(recorder.statuses)
        recorder.wait_for("reconnecting", 5, after=stopped_at)
        time.sleep(2)
        assert "refused the connection" in recorder.last().reason
        assert PASSWORD not in recorder.last().reason
        camera.start()
        back = recorder.wait_for("streaming", 8, after=stopped_at)
        time.sleep(1.5)
        assert supervisor.status().fps > 5
    finally:
        supervisor.stop()
    assert back <= 8 and supervisor.reconnects == 1 and camera.streams_served == 2
    ids = recorder.frame_ids
    assert all(later > earlier for earlier, later in itertools.pairwise(ids))


def test_edge_probe_reads_an_http_camera_at_its_own_rate(camera):
    result = subprocess.run([sys.executable, "-m", "edge", "probe", at(camera), "--frames", "20",
                             "--json"], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert PASSWORD not in result.stdout + result.stderr
    assert QUOTED_PASSWORD not in result.stdout + result.stderr
    trial = json.loads(result.stdout.strip().splitlines()[-1])["sources"][0]
    assert trial["frames"] == 20 and trial["sizes"] == [[320, 240]]
    assert 8 <= trial["fps"] <= 12 and trial["declared_fps"] is None, trial


def test_a_one_client_camera_streams_its_one_stream_to_edge():
    """An ESP32 camera streams to one client at a time: edge's own check before opening took
    that stream (a GET), and FFmpeg got 503 at every attempt, for ever (a user check)."""
    server = MjpegServer(free_port(), max_streams=1)
    server.start()
    try:
        for _ in range(2):  # and again, once the first has gone
            source = source_from_uri(server.url)
            source.open()
            frames = [source.read() for _ in range(5)]
            source.close()
            assert all(frame is not None for frame in frames)
            time.sleep(0.3)  # the server sees the client gone at its next frame
    finally:
        server.stop()
    assert server.refused_busy == 0 and server.streams_served == 2


@pytest.fixture
def certificate(tmp_path) -> tuple:
    made = self_signed_certificate(tmp_path)
    if made is None:
        pytest.skip("openssl is not installed")
    return made


def test_an_https_camera_with_a_self_signed_certificate_streams(certificate, monkeypatch):
    """The FFmpeg in pip's OpenCV verifies certificates: a camera's self-signed one failed,
    said as a codec FFmpeg lacked (a user check). Edge does not verify them unless asked."""
    monkeypatch.delenv(CAPTURE_OPTIONS, raising=False)  # restored after the test
    server = MjpegServer(free_port(), credentials=("admin", PASSWORD), certificate=certificate)
    server.start()
    url = server.url.replace("https://", f"https://admin:{QUOTED_PASSWORD}@")
    try:
        assert first_frame_shape(url) == (240, 320, 3)
        monkeypatch.setenv(CAPTURE_OPTIONS, "tls_verify;1")  # the user asks it verified
        refused = opening_error(url)
        # against its own certificate as the CA it streams; against another CA it is named
        monkeypatch.setenv(CAPTURE_OPTIONS, f"tls_verify;1|ca_file;{certificate[0]}")
        verified = first_frame_shape(url)
        other = self_signed_certificate(certificate[0].parent, "other")
        assert other is not None
        monkeypatch.setenv(CAPTURE_OPTIONS, f"tls_verify;1|ca_file;{other[0]}")
        unsigned = opening_error(url)
        monkeypatch.setenv(CAPTURE_OPTIONS, f"tls_verify;1|ca_file;{certificate[0]}")
        misnamed = diagnose_stream(url.replace("127.0.0.1", "localhost"), timeout=2)
        monkeypatch.setenv(CAPTURE_OPTIONS, "tls_verify;1|ca_file;/etc/edge/no-such-ca.pem")
        missing = diagnose_stream(url, timeout=2)
    finally:
        server.stop()
    assert (f"127.0.0.1:{server.port}'s certificate was refused (self-signed certificate), as "
            f"{CAPTURE_OPTIONS} asks it verified: give the camera's CA as ca_file;") in refused
    assert verified == (240, 320, 3)
    assert (f"127.0.0.1:{server.port}'s certificate is not signed by the CA in {other[0]} "
            "(self-signed certificate): give the CA that signed it as ca_file") in unsigned
    assert misnamed is not None and "certificate is made out to another host (Hostname " \
        "mismatch" in misnamed
    assert missing == (f"the ca_file in {CAPTURE_OPTIONS} cannot be read as certificates "
                       "(/etc/edge/no-such-ca.pem: No such file or directory): give the path of "
                       "the camera's CA certificate (PEM)")


def test_plain_http_to_an_https_port_is_told_to_write_https(certificate):
    server = MjpegServer(free_port(), certificate=certificate)
    server.start()
    try:
        said = diagnose_stream(f"http://127.0.0.1:{server.port}/video", timeout=2)
    finally:
        server.stop()
    assert said is not None and "(usually 80; a port serving TLS wants https://)" in said


def test_a_misspelt_options_variable_is_warned_of(monkeypatch, caplog):
    """A user check: OPENCV_FFMPEG_CAPTURE_OPTION (an S short) asking tls_verify;1 left
    cameras' certificates unverified, unsaid."""
    monkeypatch.delenv(CAPTURE_OPTIONS, raising=False)
    monkeypatch.setenv("OPENCV_FFMPEG_CAPTURE_OPTION", "tls_verify;1|ca_file;/etc/edge/ca.pem")
    with caplog.at_level(logging.INFO):
        source_from_uri("https://127.0.0.1:1/video")
    assert (f"OPENCV_FFMPEG_CAPTURE_OPTION is set, but OpenCV reads {CAPTURE_OPTIONS}: its "
            "options (tls_verify;1|ca_file;/etc/edge/ca.pem) are not in effect, and cameras' "
            "TLS certificates are not verified; rename it") in caplog.text
    monkeypatch.delenv("OPENCV_FFMPEG_CAPTURE_OPTION")
    monkeypatch.delenv(CAPTURE_OPTIONS)
    caplog.clear()
    with caplog.at_level(logging.INFO):
        source_from_uri("rtsps://127.0.0.1:1/cam")
    assert "cameras' TLS certificates are not verified (they are self-signed" in caplog.text


def test_ffmpeg_options_of_the_user_are_kept_and_tls_verify_added(monkeypatch):
    monkeypatch.setenv(CAPTURE_OPTIONS, "rtsp_transport;tcp")
    source_from_uri("https://127.0.0.1:1/video")
    assert os.environ[CAPTURE_OPTIONS] == "rtsp_transport;tcp|tls_verify;0"
    monkeypatch.setenv(CAPTURE_OPTIONS, "tls_verify;1|ca_file;/etc/edge/ca.pem")
    source_from_uri("https://127.0.0.1:1/video")
    assert os.environ[CAPTURE_OPTIONS] == "tls_verify;1|ca_file;/etc/edge/ca.pem"
    assert certificate_check() == (True, "/etc/edge/ca.pem")


def test_a_certificate_made_out_to_a_name_is_named_so_when_reached_by_address(tmp_path,
                                                                            monkeypatch):
    """A user check: a camera reached by its IP address, its certificate made out to a name
    only, was said to be "not signed by the CA" of the ca_file that is that certificate."""
    named = self_signed_certificate(tmp_path, holder="DNS:camera.local")
    if named is None:
        pytest.skip("openssl is not installed")
    server = MjpegServer(free_port(), certificate=named)
    server.start()
    try:
        monkeypatch.setenv(CAPTURE_OPTIONS, f"tls_verify;1|ca_file;{named[0]}")
        said = diagnose_stream(server.url, timeout=2)
    finally:
        server.stop()
    assert said is not None and (f"127.0.0.1:{server.port}'s certificate is made out to another "
                                 "host (IP address mismatch") in said


def test_an_open_past_its_limit_of_a_camera_that_serves_points_at_the_other_cameras(camera):
    """A user check: a busy one-client camera's open held the next camera's (FFmpeg opens one
    stream at a time), whose reason then blamed a codec this OpenCV lacks."""
    said = open_stalled(at(camera), 10)
    assert f"did not open within 10 s, though its server answers (127.0.0.1:{camera.port} " \
        "path /video serves an MJPEG stream (HTTP 200 OK)" in said
    assert "another camera's open that hangs holds this one's up" in said
    assert PASSWORD not in said and QUOTED_PASSWORD not in said

"""Snapshot cameras (`snapshot_interval_s`): an HTTP camera that serves only a still image,
fetched at an interval from a real HTTP server (tests/mjpeg_server.py, a new picture at each
request), with its credentials, over one kept-alive connection; every way it can fail named as
a person fixing it needs to read it; and under `edge run` with a real Mosquitto, a camera that
goes away and comes back."""

from __future__ import annotations

import itertools
import json
import logging
import re
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from edge.broker import free_port
from edge.config import load_config
from edge.errors import ConfigError, SourceError
from edge.redact import redact_text
from edge.sources import Snapshots, source_from_uri
from edge.sources.ffmpeg_options import CAPTURE_OPTIONS
from edge.sources.supervisor import SourceSupervisor
from edge.sources.trial import try_source
from tests.mjpeg_server import MjpegServer, self_signed_certificate
from tests.test_camera_supervision import write_config

PASSWORD = "s3cr@t/x"
QUOTED_PASSWORD = "s3cr%40t%2Fx"


@pytest.fixture
def camera():
    """A camera asking for admin / PASSWORD by Digest, started."""
    server = MjpegServer(free_port(), credentials=("admin", PASSWORD))
    server.start()
    yield server
    server.stop()


def certificate(folder: Path, name: str = "camera") -> tuple[Path, Path]:
    made = self_signed_certificate(folder, name)
    if made is None:
        pytest.skip("openssl is not installed")
    return made


def snapshot_url(server: MjpegServer, path: str = "/snapshot.jpg",
                 credentials: str = f"admin:{QUOTED_PASSWORD}@", scheme: str = "http") -> str:
    return f"{scheme}://{credentials}127.0.0.1:{server.port}{path}"


def fetched_greys(url: str, interval_s: float, count: int) -> tuple[list[int], list[float]]:
    """The grey level of each of `count` snapshots and when each came (monotonic seconds)."""
    source = source_from_uri(url, Snapshots.within(interval_s, 10.0))
    source.open()
    greys, times = [], []
    try:
        for _ in range(count):
            frame = source.read()
            assert frame is not None and frame.image.shape == (240, 320, 3)
            greys.append(int(frame.image.mean()))
            times.append(time.monotonic())
            frame.release()
    finally:
        source.close()
    return greys, times


def opening_error(url: str, interval_s: float = 0.5) -> str:
    source = source_from_uri(url, Snapshots.within(interval_s, 10.0))
    with pytest.raises(SourceError) as raised:
        source.open()
    source.close()
    return redact_text(str(raised.value))


def test_snapshots_are_fetched_at_the_interval_with_digest_credentials_on_one_connection(
        camera):
    greys, times = fetched_greys(snapshot_url(camera), 0.2, 6)
    # each a new picture (the server's grey steps by 8 a request), none fetched twice
    assert [later - earlier for earlier, later in itertools.pairwise(greys)] == [8] * 5, greys
    assert camera.snapshots_served == 6
    assert 0.17 <= statistics.median(b - a for a, b in itertools.pairwise(times)) <= 0.3, times
    # the 401 that asked for Digest closed its connection; every snapshot after it shared one
    assert camera.connections == 2


def test_a_camera_that_refuses_a_nonce_count_it_has_seen_is_asked_once(camera):
    """A user check: every snapshot cost a 401 and a retry against a camera that takes each
    nonce count (nc) once, as Hikvision and Dahua cameras do: nc was always 00000001."""
    camera.strict_nonces = True
    greys, _ = fetched_greys(snapshot_url(camera), 0.05, 6)
    assert greys == [0, 8, 16, 24, 32, 40]
    assert camera.challenges == 1  # the first request's, answered from then on


def test_basic_credentials_are_answered_and_a_self_signed_https_camera_is_read(tmp_path):
    basic = MjpegServer(free_port(), credentials=("viewer", "pw"), method="basic")
    secure = MjpegServer(free_port(), certificate=certificate(tmp_path))
    basic.start()
    secure.start()
    try:
        greys, _ = fetched_greys(snapshot_url(basic, credentials="viewer:pw@"), 0.05, 3)
        secure_greys, _ = fetched_greys(snapshot_url(secure, credentials="", scheme="https"),
                                        0.05, 3)
        wrong = opening_error(snapshot_url(basic, credentials="viewer:nope@"))
        plain_to_tls = opening_error(snapshot_url(secure, credentials=""))
    finally:
        basic.stop()
        secure.stop()
    assert greys == [0, 8, 16] and secure_greys == [0, 8, 16]
    assert wrong == (f"127.0.0.1:{basic.port}/snapshot.jpg refused the user name and password "
                     "(HTTP 401): check them (a character such as @, : or / in the password is "
                     "written %40, %3A or %2F)")
    assert plain_to_tls == (f"127.0.0.1:{secure.port} closed the connection without answering "
                            "(a TLS port closes on a plain request: is it https://?)")


def test_a_camera_certificate_is_verified_when_the_stream_options_ask(tmp_path, monkeypatch):
    made = certificate(tmp_path)
    server = MjpegServer(free_port(), certificate=made)
    server.start()
    try:
        monkeypatch.setenv(CAPTURE_OPTIONS, f"tls_verify;1|ca_file;{made[0]}")
        verified, _ = fetched_greys(snapshot_url(server, credentials="", scheme="https"), 0.05, 1)
        other, _ = certificate(tmp_path, "other")
        monkeypatch.setenv(CAPTURE_OPTIONS, f"tls_verify;1|ca_file;{other}")
        refused = opening_error(snapshot_url(server, credentials="", scheme="https"))
    finally:
        server.stop()
    assert verified == [0]
    # worded as the stream probe words it (edge.sources.unreached)
    assert refused.startswith(f"127.0.0.1:{server.port}'s certificate is not signed by the CA "
                              f"in {other} ("), refused
    assert refused.endswith("give the CA that signed it as ca_file in "
                            f"{CAPTURE_OPTIONS}, or the camera's own certificate where it "
                            "signed itself"), refused


@pytest.mark.parametrize(("path", "credentials", "said"), [
    ("/snapshot.jpg", "", "/snapshot.jpg needs a user name and password (HTTP 401): write them "
                          "in the URL, before the host: USER:PASSWORD@127.0.0.1:{port}"),
    ("/snapshot.jpg", "admin:hunter2@", "/snapshot.jpg refused the user name and password "
                                        "(HTTP 401)"),
    ("/pic.jpg", None, "/pic.jpg is not there (HTTP 404 Not Found): check the snapshot URL in "
                       "the camera's manual (often /snapshot.jpg, /cgi-bin/snapshot.cgi"),
    ("/", None, "127.0.0.1:{port}/ serves a page (text/html), not an image: check the snapshot "
                "URL"),
    ("/video", None, "/video serves a stream (multipart/x-mixed-replace), not one image: remove "
                     "snapshot_interval_s from the camera's block, and edge reads the stream"),
    ("/still.bin", None, None),  # no media type, but a JPEG: read
])
def test_each_fixable_cause_is_named_and_no_password_is_shown(camera, path, credentials, said):
    url = snapshot_url(camera, path, f"admin:{QUOTED_PASSWORD}@" if credentials is None
                       else credentials)
    if said is None:
        assert fetched_greys(url, 0.05, 1)[0] == [0]
        return
    message = opening_error(url)
    assert said.format(port=camera.port) in message, message
    assert "hunter2" not in message and PASSWORD not in message
    assert QUOTED_PASSWORD not in message


def test_a_busy_answer_or_a_cut_snapshot_is_skipped_and_three_in_a_row_reopen(camera, caplog):
    """A user check: one 503 or one JPEG cut short reopened the camera each time (7 reconnects
    in 25 s of a camera that fails every fourth snapshot)."""
    camera.snapshot_faults = {2: "busy", 5: "cut", 6: "busy"}
    with caplog.at_level(logging.WARNING, logger="edge.sources.snapshot"):
        greys, _ = fetched_greys(snapshot_url(camera), 0.05, 6)
    assert greys == [0, 8, 24, 32, 56, 64]  # snapshots 2, 5 and 6 skipped
    warned = [r.getMessage() for r in caplog.records]
    assert len(warned) == 1, warned  # at most one a minute, with the count after
    assert warned[0].endswith(
        f"a snapshot skipped, the next fetched at its time: 127.0.0.1:{camera.port}"
        "/snapshot.jpg answered HTTP 503 instead of an image"), warned
    camera.snapshot_faults = {index: ("cut" if index % 2 else "busy")
                              for index in range(camera.snapshots_served + 1, 100)}
    source = source_from_uri(snapshot_url(camera), Snapshots.within(0.05, 10.0))
    source.open()
    try:
        source.read().release()  # the snapshot its open fetched
        with pytest.raises(SourceError) as raised:
            source.read()  # 503, cut short, 503
    finally:
        source.close()
    assert str(raised.value) == (f"127.0.0.1:{camera.port}/snapshot.jpg answered HTTP 503 "
                                 "instead of an image (3 snapshots in a row missed)")


def test_an_empty_snapshot_is_skipped_as_a_missed_one(camera, caplog):
    """An HTTP 200 with no body (a camera between frames): OpenCV's imdecode raises on an
    empty buffer, which would have failed the camera as an internal error."""
    camera.snapshot_faults = {2: "empty"}
    with caplog.at_level(logging.WARNING, logger="edge.sources.snapshot"):
        greys, _ = fetched_greys(snapshot_url(camera), 0.05, 3)
    assert greys == [0, 8, 24]  # snapshot 2 skipped
    assert "/snapshot.jpg answered HTTP 200 with no image (0 bytes)" in caplog.text


def test_a_redirect_is_followed_with_the_credentials_to_the_same_host(camera, tmp_path,
                                                                       caplog):
    """A user check: a 302 to the real snapshot path (firmware that moves a short path to a
    CGI one), or a 301 from http:// to https:// (a camera set to HTTPS only), failed with
    "answered HTTP 302 instead of an image"."""
    secure = MjpegServer(free_port(), credentials=("admin", PASSWORD),
                         certificate=certificate(tmp_path))
    secure.start()
    camera.redirects = {"/snap": "/snapshot.jpg",
                        "/tls": f"https://127.0.0.1:{secure.port}/snapshot.jpg",
                        "/loop": "/loop",
                        "/away": f"http://localhost:{camera.port}/snapshot.jpg"}
    try:
        with caplog.at_level(logging.INFO, logger="edge.sources.snapshot"):
            moved, _ = fetched_greys(snapshot_url(camera, "/snap"), 0.05, 3)
            to_tls, _ = fetched_greys(snapshot_url(camera, "/tls"), 0.05, 2)
        looping = opening_error(snapshot_url(camera, "/loop"))
        away = opening_error(snapshot_url(camera, "/away"))
    finally:
        secure.stop()
    assert moved == [0, 8, 16] and to_tls == [0, 8]
    assert secure.snapshots_served == 2  # the https camera's Digest answered there too
    said = [r.getMessage() for r in caplog.records if "redirects" in r.getMessage()]
    assert said == [f"http://REDACTED@127.0.0.1:{camera.port}/snap redirects (HTTP 302) to "
                    f"http://127.0.0.1:{camera.port}/snapshot.jpg: fetching that",
                    f"http://REDACTED@127.0.0.1:{camera.port}/tls redirects (HTTP 302) to "
                    f"https://127.0.0.1:{secure.port}/snapshot.jpg: fetching that"], said
    assert looping == (f"127.0.0.1:{camera.port}/loop redirects again after 3 redirects; give "
                       "the snapshot's own URL")
    # another host gets no credentials, and the message says why it asks for them
    assert away == (f"localhost:{camera.port}/snapshot.jpg needs a user name and password "
                    "(HTTP 401), and those in the URL were not sent to it: the camera redirected "
                    "from 127.0.0.1 to another host, localhost. Give the URL it redirects to as "
                    "the camera's source, with the user and password before its host")


def test_credentials_in_the_query_are_named_when_refused():
    """A user check: Reolink's and Foscam's snapshots take the password in the query; a wrong
    one was told to write USER:PASSWORD@ before the host."""
    server = MjpegServer(free_port())  # no HTTP authentication: the query is the only way in
    server.start()
    base = f"http://127.0.0.1:{server.port}/cgi-bin/snap.cgi?user=admin&password="
    try:
        greys, _ = fetched_greys(base + "pw", 0.05, 1)
        refused = opening_error(base + "nope")
    finally:
        server.stop()
    assert greys == [0]
    assert refused == (
        f"127.0.0.1:{server.port}/cgi-bin/snap.cgi refused the credentials in the URL's query "
        "(HTTP 401): check them (a character such as &, = or # in the password is written "
        "%26, %3D or %23)")


def test_a_snapshot_short_of_its_content_length_is_skipped_on_a_new_connection(camera):
    """A user check: a camera that announced more bytes than it sent reopened the camera each
    time ("fetching the snapshot failed: Request-sent", the connection left mid-answer)."""
    camera.snapshot_faults = {2: "short", 4: "short"}
    greys, _ = fetched_greys(snapshot_url(camera), 0.05, 4)
    assert greys == [0, 8, 24, 40]


def test_a_camera_slow_to_make_its_snapshot_has_most_of_what_its_stall_s_leaves(camera):
    camera.snapshot_faults = {index: "slow" for index in range(100)}
    camera.slow_s = 1.2
    url = snapshot_url(camera)
    greys, _ = fetched_greys(url, 0.5, 2)  # 8.55 s a fetch: 0.9 x (stall_s 10 - 0.5)
    assert greys == [0, 8]
    source = source_from_uri(url, Snapshots.within(0.4, 1.2))  # 0.72 s a fetch
    with pytest.raises(SourceError) as raised:
        source.open()
    source.close()
    assert str(raised.value) == (
        f"127.0.0.1:{camera.port} did not answer within 0.72 s (each fetch gets most of the "
        "camera's stall_s less the interval: for a camera that is slow to make a snapshot, "
        "raise stall_s in its [[cameras]] block, and try it with edge probe --config)")
    camera.snapshot_faults = {index: "stall" for index in range(100)}
    source = source_from_uri(url, Snapshots.within(0.4, 1.2))
    with pytest.raises(SourceError) as raised:
        source.open()
    source.close()
    assert str(raised.value) == (f"127.0.0.1:{camera.port}/snapshot.jpg began a snapshot and "
                                 "sent nothing more for 0.72 s")


def test_a_probe_stopped_between_snapshots_stops_at_once(camera):
    """A user check: Ctrl-C on `edge probe` during a 5 s interval took 2 s, and its line spoke
    of a stream's opening burst."""
    stop = threading.Event()
    finished = []
    trying = threading.Thread(target=lambda: finished.append(try_source(
        "porch", snapshot_url(camera), 5, 30.0, stop, Snapshots.within(5.0, 10.0))))
    trying.start()
    deadline = time.monotonic() + 10
    while camera.snapshots_served < 1 and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(0.3)
    asked = time.monotonic()
    stop.set()
    trying.join(5)
    assert time.monotonic() - asked < 0.6
    (trial,) = finished
    assert trial.frames == 1 and trial.error == "interrupted"
    assert "a rate not measured (too few snapshots: ask for more --frames), 1 frame" in \
        trial.describe(), trial.describe()


def test_a_snapshot_camera_stops_at_once_between_snapshots(camera):
    """A user check: with a snapshot camera every stop took 2 s more (its reader slept until
    the next snapshot), and every camera's streaming time took it in."""
    supervisor = SourceSupervisor("porch", snapshot_url(camera), snapshot_interval_s=4.0)
    supervisor.start()
    try:
        deadline = time.monotonic() + 10
        while supervisor.frames < 1 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert supervisor.frames == 1
    finally:
        asked = time.monotonic()
        supervisor.stop(5.0)
    assert time.monotonic() - asked < 0.5
    assert supervisor.status().state == "ended"


def test_a_camera_that_is_not_there_or_not_http_is_named(tmp_path, monkeypatch):
    """Worded as the stream probe words the same failures (edge.sources.unreached)."""
    closed = free_port()
    assert opening_error(f"http://127.0.0.1:{closed}/snapshot.jpg") == (
        f"127.0.0.1:{closed} refused the connection: nothing listens on that port (the "
        "camera's HTTP port is usually 80; check its network settings, and that its HTTP "
        "service is on)")
    assert opening_error("http://camera-7.invalid/snapshot.jpg").startswith(
        "the host name 'camera-7.invalid' does not resolve (")
    missing = tmp_path / "no-such-ca.pem"
    monkeypatch.setenv(CAPTURE_OPTIONS, f"tls_verify;1|ca_file;{missing}")
    assert opening_error(f"https://127.0.0.1:{closed}/snapshot.jpg") == (
        f"the ca_file in {CAPTURE_OPTIONS} cannot be read as certificates ({missing}: No such "
        "file or directory): give the path of the camera's CA certificate (PEM)")
    with pytest.raises(SourceError, match=r"a snapshot interval \(snapshot_interval_s, edge "
                                          r"probe's --snapshot-interval\) fetches an http:// or "
                                          "https:// still image, not a rtsp:// source; leave it "
                                          "out for this one"):
        source_from_uri("rtsp://127.0.0.1/stream", Snapshots.within(1.0, 10.0))


def test_an_interval_over_half_the_stall_limit_is_refused_in_the_config(tmp_path):
    config = write_config(tmp_path, tmp_path / "m.onnx", 1883,
                          {"porch": "http://127.0.0.1/snapshot.jpg"},
                          "stall_s = 5\nsnapshot_interval_s = 3\n")
    with pytest.raises(ConfigError, match=r"cameras\.0\.snapshot_interval_s: 3 must be at "
                                          "most half of stall_s 5, or the wait for a snapshot that "
                                          "is slow to come reads as a stalled camera; raise "
                                          "stall_s to 6 or more"):
        load_config(config)
    config.write_text(config.read_text().replace("snapshot_interval_s = 3",
                                                 "snapshot_interval_s = 0.001"))
    with pytest.raises(ConfigError, match=r"cameras\.0\.snapshot_interval_s: must be at "
                                          r"least 0\.05; got 0\.001"):
        load_config(config)


@pytest.mark.slow
def test_edge_run_reads_a_snapshot_camera_through_an_outage(tmp_path, mosquitto, demo_model):
    """Four snapshots a second, the camera away from 2 s to 4 s into a 7 s run: it is
    reopened once it answers again, and the run's summary counts its frames and the
    reconnect."""
    server = MjpegServer(free_port(), credentials=("admin", PASSWORD))
    server.start()
    config = write_config(tmp_path, demo_model, mosquitto.port, {"porch": snapshot_url(server)},
                          "stall_s = 3\nreconnect_max_s = 0.5\nsnapshot_interval_s = 0.25\n")

    def outage() -> None:
        time.sleep(3.0)  # the daemon starts in about 1 s
        server.stop()
        time.sleep(2.0)
        server.start()

    away = threading.Thread(target=outage, daemon=True)
    away.start()
    try:
        result = subprocess.run([sys.executable, "-m", "edge", "run", "--config", str(config),
                                 "--seconds", "7", "--json"], capture_output=True, text=True,
                                timeout=90)
    finally:
        away.join(10)
        server.stop()
    assert result.returncode == 0, result.stderr
    porch = json.loads(result.stdout.strip().splitlines()[-1])["cameras"]["porch"]
    assert porch["reconnects"] == 1, (porch, result.stderr[-3000:])
    assert 3.0 <= porch["streaming_s"] <= 6.0, porch  # up to the run's end, not the stop's
    # every snapshot reached the model, but one fetched as the daemon stopped and one the
    # camera sent as it went away
    assert server.snapshots_served - 2 <= porch["frames"] <= server.snapshots_served, porch
    assert 2.8 <= porch["fps"] <= 4.4, porch
    assert f"127.0.0.1:{server.port} refused the connection" in result.stderr
    assert PASSWORD not in result.stderr and QUOTED_PASSWORD not in result.stderr


def test_the_probe_of_a_snapshot_url_names_the_setting_that_reads_it(camera):
    from edge.sources.stream_probe import diagnose_stream

    said = diagnose_stream(snapshot_url(camera))
    assert said is not None and said.endswith(
        "or, for a camera that has none, have this URL fetched at an interval: "
        "snapshot_interval_s = 1 in its [[cameras]] block (edge probe --snapshot-interval 1 "
        "tries it)"), said


def test_edge_probe_tries_a_snapshot_url_at_the_interval_given_or_configured(camera, tmp_path,
                                                                           demo_model):
    url = snapshot_url(camera)
    given = subprocess.run([sys.executable, "-m", "edge", "probe", url, "--snapshot-interval",
                            "0.25", "--json"], capture_output=True, text=True, timeout=60)
    assert given.returncode == 0, given.stderr
    assert re.search(r"source 1: http://REDACTED@127\.0\.0\.1:\d+/snapshot\.jpg: 320x240 at "
                     r"[34]\.\d fps \(one snapshot every 0\.25 s asked for\), 5 frames",
                     given.stdout), given.stdout
    config = write_config(tmp_path, demo_model, 1883, {"porch": url},
                          "snapshot_interval_s = 0.5\n")
    configured = subprocess.run([sys.executable, "-m", "edge", "probe", "--config", str(config),
                                 "--frames", "3"], capture_output=True, text=True, timeout=60)
    # 5 snapshots by default (a user check: 30 in 15 s, which no interval of 0.5 s could give)
    slow = subprocess.run([sys.executable, "-m", "edge", "probe", url, "--snapshot-interval",
                           "4"], capture_output=True, text=True, timeout=60)
    both = subprocess.run([sys.executable, "-m", "edge", "probe", "--config", str(config),
                           "--snapshot-interval", "1"], capture_output=True, text=True,
                          timeout=60)
    assert configured.returncode == 0, configured.stderr
    assert slow.returncode == 0, slow.stdout + slow.stderr
    assert "0.25 fps (one snapshot every 4 s asked for), 5 frames" in slow.stdout, slow.stdout
    assert "(one snapshot every 0.5 s asked for), 3 frames" in configured.stdout
    assert both.returncode == 2
    assert "--snapshot-interval is for the sources given here; a config's cameras set " \
           "snapshot_interval_s in their own blocks" in both.stderr
    assert PASSWORD not in given.stdout + configured.stdout + both.stderr


"""HLS playlists (`http://.../live.m3u8`) as camera sources: a real live HLS stream
(tests/hls_server.py: GStreamer's segmenter, Python's HTTP server) hands over whole one-second
segments at once, three of them at the start; edge hands its frames on at their presentation
times, so the model sees the stream's rate instead of the newest frame of each burst."""

from __future__ import annotations

import itertools
import json
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator

import numpy as np
import pytest

from edge.broker import free_port
from edge.sources import opencv as opencv_source
from edge.sources import source_from_uri
from edge.sources import trial as trial_module
from edge.sources.base import MAX_LATE_S, MAX_STEP_S, PresentationPacer
from edge.sources.stream_probe import diagnose_stream
from tests.hls_server import HlsServer, missing_reason
from tests.test_supervisor import supervise

hls = pytest.mark.skipif(missing_reason() is not None, reason=str(missing_reason()))


@pytest.fixture
def stream(tmp_path) -> Iterator[HlsServer]:
    """A live 15 fps HLS stream whose playlist lists three segments or more, started."""
    server = HlsServer(tmp_path / "hls", free_port(), fps=15)
    server.start()
    yield server
    server.stop()


@hls
@pytest.mark.parametrize("opencv", ["4.11 on", "before 4.11"])
def test_an_hls_stream_reaches_the_loop_at_its_own_rate_with_no_frame_replaced(
        stream, monkeypatch, opencv):
    """Unpaced, the frames of each segment came within milliseconds and the newest replaced
    the others before a 50 fps model took them: `edge run` processed 5.8 of 15 fps. OpenCV
    before 4.11 (JetPack 6's 4.8) has no `CAP_PROP_PTS`: a user check, every camera failed to
    open there."""
    if opencv == "before 4.11":
        monkeypatch.setattr(opencv_source, "FRAME_TIMESTAMP", None)
    supervisor, recorder = supervise(stream.url, hold_s=0.02)
    supervisor.start()
    try:
        recorder.wait_for("streaming", 15)
        time.sleep(4.0)
    finally:
        supervisor.stop()
    ids, arrivals = recorder.frame_ids, np.array(recorder.frames)
    assert len(ids) >= 45, len(ids)
    assert all(later == earlier + 1 for earlier, later in itertools.pairwise(ids)), ids
    # the stream's own 15 fps, the opening burst of three segments included
    intervals = np.diff(arrivals)
    assert 0.055 < float(np.median(intervals)) < 0.08, intervals
    assert float(intervals.max()) < 0.5, intervals


@hls
def test_edge_probe_measures_an_hls_stream_at_its_rate(stream):
    result = subprocess.run([sys.executable, "-m", "edge", "probe", stream.url, "--frames", "30",
                             "--json"], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    trial = json.loads(result.stdout.strip().splitlines()[-1])["sources"][0]
    assert trial["frames"] == 30 and trial["sizes"] == [[320, 240]], trial
    assert 13 <= trial["fps"] <= 17, trial


def test_only_a_playlist_is_paced_by_its_timestamps():
    assert source_from_uri("http://127.0.0.1:1/api/stream.m3u8?src=cam")._presented
    assert source_from_uri("https://cdn.example/live/INDEX.M3U8")._presented
    assert not source_from_uri("http://127.0.0.1:1/video.mjpg")._presented
    assert not source_from_uri("rtsp://127.0.0.1:1/cam")._presented


def test_frames_are_held_until_their_presentation_time():
    pacer = PresentationPacer()
    started = time.monotonic()
    for shown in (10.0, 10.1, 10.2, 10.3):  # the stream's clock need not start at 0
        pacer.wait_for(shown)
    assert 0.29 <= time.monotonic() - started < 0.4


def test_a_late_frame_or_a_timestamp_step_restarts_the_schedule_instead_of_a_burst_or_a_wait():
    pacer = PresentationPacer()
    pacer.wait_for(0.0)
    time.sleep(MAX_LATE_S + 0.2)  # the network held the next segment back
    started = time.monotonic()
    pacer.wait_for(0.1)  # late: handed on now, and the schedule starts again here
    pacer.wait_for(0.2)
    assert 0.09 <= time.monotonic() - started < 0.2
    started = time.monotonic()
    pacer.wait_for(0.2 + MAX_STEP_S + 60)  # a discontinuity: not a minute's wait
    pacer.wait_for(0.1)  # nor a step back
    assert time.monotonic() - started < 0.05


@pytest.mark.parametrize(
    ("times", "expected"),
    [
        # a steady 10 fps camera
        ([0.1 * i for i in range(30)], 10.0),
        # RTSP: 13 buffered frames at once at the start, then 10 fps
        ([0.001 * i for i in range(13)] + [0.1 * i for i in range(1, 18)], 10.0),
        # HLS: each second's 15 frames handed over at once (the median interval: 2717 fps)
        ([second + 0.0003 * i for second in range(6) for i in range(15)], 15.0),
        # frames that come in pairs, 5 pairs a second
        ([0.2 * (i // 2) + 0.002 * (i % 2) for i in range(40)], 10.0),
    ],
)
def test_a_probe_rate_is_the_streams_however_its_frames_are_bunched(times, expected):
    measured = trial_module._measured_fps(times, live=True)
    assert measured is not None and abs(measured - expected) / expected < 0.1, measured


@hls
@pytest.mark.skipif(opencv_source.FRAME_TIMESTAMP is None,
                    reason="OpenCV before 4.11 gives no presentation timestamps: a stalled "
                           "playlist's last segments are read again at each reopen (README)")
def test_a_playlist_whose_writer_stopped_is_not_replayed_as_new_frames(tmp_path):
    """A user check: a restreamer whose camera went away still serves its last playlist; at
    each reopen FFmpeg started three segments from its end again, and 88 frames the model had
    seen were published again as new, every 16 s, with the camera said to be streaming."""
    stream = HlsServer(tmp_path / "hls", free_port(), pattern="snow")
    stream.start()
    supervisor, recorder = supervise(stream.url, hold_s=0.02, stall_s=2, reconnect_max_s=1)
    supervisor.start()
    try:
        recorder.wait_for("streaming", 15)
        time.sleep(1.0)
        stream.stop_writing()
        stopped_at = len(recorder.statuses)
        recorder.wait_for("reconnecting", 10, after=stopped_at)
        seen = len(recorder.frame_ids)
        time.sleep(12.0)  # reopened, the open offering only old segments till FFmpeg's 10 s
        replayed = len(recorder.frame_ids) - seen
        reason = recorder.last().reason
        states = recorder.states()[stopped_at:]
        shutil.rmtree(stream.folder)  # the restreamer starts again, a new playlist
        stream.start()
        recorder.wait_for("streaming", 20, after=len(recorder.statuses))
        back = len(recorder.frame_ids) - seen
    finally:
        supervisor.stop()
        stream.stop()
    assert replayed == 0, replayed
    assert "streaming" not in states, states
    assert "its playlist offers only the" in reason and "stopped adding segments" in reason, \
        reason
    assert back > 0


@hls
def test_a_playlist_that_is_not_there_is_named_in_a_restreamers_terms(stream):
    """A user check: a playlist's 404 and refused port were said in an IP camera's words
    ("the camera's HTTP port is usually 80", "see the camera's manual")."""
    missing = diagnose_stream(stream.url.replace("/live.m3u8", "/strem.m3u8"))
    refused = diagnose_stream(f"http://127.0.0.1:{free_port()}/api/stream.m3u8?src=cam")
    assert missing is not None and "path /strem.m3u8: the server has no playlist at that " \
        "path (404 Not Found); check the HLS URL the restreamer or NVR gives" in missing
    assert refused is not None and "refused the connection: nothing listens on that port " \
        "(check the port the restreamer or NVR serves its HLS on, as go2rtc's 1984" in refused
    assert "usually 80" not in refused and "manual" not in missing

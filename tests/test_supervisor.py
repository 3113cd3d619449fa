"""Camera supervision against real sources: video files, a missing V4L2 device, and a real RTSP
server (GStreamer's, tests/rtsp_server.py) that is stopped, frozen and restarted under it."""

from __future__ import annotations

import itertools
import logging
import os
import random
import signal
import socket
import threading
import time

import cv2
import numpy as np
import pytest

from edge.errors import SourceError
from edge.sources import LatestFrame
from edge.sources import supervisor as supervisor_module
from edge.sources.supervisor import Backoff, CameraStatus, SourceSupervisor
from edge.sources.synthetic import SyntheticSource
from edge.timing import RateMeter
from tests.rtsp_server import missing_reason
from tests.test_sources import write_video


class Recorder:
    """Collects every status the supervisor reports and drains the hand-off like a camera loop."""

    def __init__(self, hold_s: float = 0.0) -> None:
        self.hold_s = hold_s  # how long each frame keeps the "loop" busy (a slow model)
        self.statuses: list[CameraStatus] = []
        self.latest = LatestFrame()
        self.frames: list[float] = []  # arrival times (monotonic)
        self.frame_ids: list[int] = []
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._drain, daemon=True)
        self._thread.start()

    def __call__(self, status: CameraStatus) -> None:
        with self._lock:
            self.statuses.append(status)

    def _drain(self) -> None:
        while not self.latest.closed or self.latest.ready():
            frame = self.latest.take(timeout=0.1)
            if frame is not None:
                self.frames.append(time.monotonic())
                self.frame_ids.append(frame.frame_id)
                frame.release()
                time.sleep(self.hold_s)

    def states(self) -> list[str]:
        with self._lock:
            return [s.state for s in self.statuses]

    def last(self) -> CameraStatus:
        with self._lock:
            return self.statuses[-1]

    def wait_for(self, state: str, timeout: float, after: int = 0) -> float:
        """Seconds until the status list holds `state` at index >= `after`."""
        began = time.monotonic()
        while time.monotonic() - began < timeout:
            if state in self.states()[after:]:
                return time.monotonic() - began
            time.sleep(0.05)
        raise AssertionError(f"no {state!r} within {timeout} s; saw {self.states()}")


def supervise(uri: str, hold_s: float = 0.0,
              **kwargs: float) -> tuple[SourceSupervisor, Recorder]:
    recorder = Recorder(hold_s)
    supervisor = SourceSupervisor("cam", uri, recorder.latest, recorder,
                                  rng=random.Random(0), **kwargs)
    return supervisor, recorder


@pytest.mark.parametrize(
    ("first_s", "max_s", "expected_ceilings"),
    [
        (1.0, 30.0, [1, 2, 4, 8, 16, 30, 30, 30]),
        (1.0, 2.0, [1, 2, 2, 2]),
        (0.5, 0.5, [0.5, 0.5, 0.5]),
    ],
)
def test_backoff_doubles_to_the_cap_with_jitter_below_it(first_s, max_s, expected_ceilings):
    backoff, rng = Backoff(first_s, max_s), random.Random(1)
    for attempt, ceiling in enumerate(expected_ceilings, start=1):
        delays = [backoff.delay(attempt, rng) for _ in range(200)]
        assert ceiling / 2 <= min(delays) and max(delays) <= ceiling
        assert max(delays) - min(delays) > ceiling / 4  # jittered, not constant
    assert backoff.delay(10_000, rng) <= max_s


def test_rate_decays_to_zero_when_events_stop():
    meter = RateMeter(horizon_s=1.0)
    for _ in range(11):
        meter.tick()
        time.sleep(0.02)
    steady = meter.rate()
    assert 30 < steady < 60, steady
    time.sleep(0.3)
    assert meter.rate() < steady / 2  # 10 events over ~0.5 s instead of ~0.2 s
    time.sleep(0.8)
    assert meter.rate() == 0.0
    # what the source ran at before it went quiet stays readable
    assert meter.rate_up_to_last() == pytest.approx(steady, rel=0.2)
    meter.clear()
    assert meter.rate_up_to_last() == 0.0


def test_a_burst_at_the_start_does_not_raise_the_rate(monkeypatch):
    """A stream that just opened delivers what its server buffered at once, then its own rate:
    a 15 fps camera read 34 fps a second after reconnecting."""
    clock = [100.0]
    monkeypatch.setattr("edge.timing.time.monotonic", lambda: clock[0])
    meter = RateMeter()
    for _ in range(11):  # the burst: 2 ms apart
        meter.tick()
        clock[0] += 0.002
    for _ in range(15):  # a second at 15 fps
        clock[0] += 1 / 15
        meter.tick()
    assert meter.rate() == pytest.approx(15.0, rel=0.05)
    assert meter.rate_up_to_last() == pytest.approx(15.0, rel=0.05)
    paired = RateMeter()  # frames that come two at a time keep their rate
    monkeypatch.setattr("edge.timing.time.monotonic", lambda: clock[0])
    for _ in range(21):
        for gap in (0.001, 2 / 30 - 0.001):
            clock[0] += gap
            paired.tick()
    assert paired.rate() == pytest.approx(30.0, rel=0.05)


def test_a_few_frames_at_once_read_no_faster_than_a_tenth_of_the_horizon_allows(monkeypatch):
    """A user check: the stats sent as a 15 fps stream came back read 57 fps (its first
    frames, handed over at once); a rate over less than a tenth of the horizon reads low."""
    clock = [100.0]
    monkeypatch.setattr("edge.timing.time.monotonic", lambda: clock[0])
    meter = RateMeter()  # a 10 s horizon: 1 s at least
    for _ in range(6):
        meter.tick()
        clock[0] += 0.01
    clock[0] += 0.05
    assert meter.rate() == pytest.approx(5.0)  # 5 gaps over 1 s, not over 0.1 s


def test_a_source_faster_than_the_window_reads_its_rate_once_past_its_first_moments(
        monkeypatch):
    """A user check: a replay camera at 400 fps read 59.0 fps in every stats message, the
    60-event window's rate over the tenth of the horizon that was meant for young rates
    only."""
    clock = [100.0]
    monkeypatch.setattr("edge.timing.time.monotonic", lambda: clock[0])
    meter = RateMeter()  # 60 events, a 10 s horizon
    for _ in range(200):  # half a second at 400 fps: young, read low
        clock[0] += 1 / 400
        meter.tick()
    assert meter.rate() <= 60
    for _ in range(600):  # 1.5 s more
        clock[0] += 1 / 400
        meter.tick()
    assert meter.rate() == pytest.approx(400.0, rel=0.02)
    meter.clear()  # an outage: young again
    meter.tick()
    clock[0] += 0.0025
    meter.tick()
    assert meter.rate() <= 1.0


def test_a_rate_stopped_on_purpose_keeps_its_value():
    """The last stats a stopped daemon leaves retained showed 50 FPS for a camera that ran at
    90: they were taken after the stop, and the silence since counted as a dying camera."""
    meter = RateMeter(horizon_s=1.0)
    for _ in range(11):
        meter.tick()
        time.sleep(0.02)
    meter.stop()
    stopped = meter.rate()
    assert 30 < stopped < 60, stopped
    time.sleep(0.3)
    assert meter.rate() == stopped
    time.sleep(0.8)
    assert meter.rate() == stopped


def test_a_file_plays_once_and_ends(tmp_path):
    path = tmp_path / "clip.avi"
    write_video(path, 8)
    supervisor, recorder = supervise(f"file://{path}?fps=50")
    assert not supervisor.live
    supervisor.start()
    assert supervisor.finished.wait(10)
    supervisor.stop()
    assert recorder.states() == ["starting", "streaming", "ended"]
    assert recorder.last().reason == "end of the source" and recorder.last().attempts == 0
    assert supervisor.frames == 8 and recorder.latest.closed


def test_a_file_cut_short_says_so_when_it_ends(tmp_path, caplog):
    """A recording cut off (an interrupted copy) ended like a whole one, "end of the source",
    after half its frames: its header's count tells the two apart."""
    path = tmp_path / "clip.avi"
    write_video(path, 24)
    data = path.read_bytes()
    path.write_bytes(data[:len(data) // 2])
    supervisor, recorder = supervise(f"file://{path}?fps=0")
    supervisor.start()
    assert supervisor.finished.wait(10)
    supervisor.stop()
    assert recorder.states() == ["starting", "streaming", "ended"]
    assert 0 < supervisor.frames < 20
    assert recorder.last().reason == (
        f"end of the source, after {supervisor.frames} of the 24 frames its header announces: "
        "the file is cut short or damaged (an interrupted copy or recording?)")
    assert any(r.levelno == logging.WARNING and "ended after" in r.getMessage()
               for r in caplog.records)


@pytest.mark.parametrize("kind", ["clip", "folder", "scene"])
def test_a_recording_at_fps_0_waits_for_a_slow_model_and_at_a_rate_drops(tmp_path, kind):
    """fps=0: every frame reaches a loop that takes 30 ms a frame, in order; the same recording
    at 500 FPS delivers all of them too, but the loop sees only some (newer ones replaced the
    waiting one, as with a live camera). The synthetic scene alike (a user check: at fps=0 it
    rendered as fast as it could and dropped 4 frames in 5)."""
    if kind == "clip":
        write_video(tmp_path / "clip.avi", 12)
        source = f"file://{tmp_path / 'clip.avi'}?"
    elif kind == "folder":
        for i in range(12):
            cv2.imwrite(str(tmp_path / f"{i:02d}.png"), np.full((40, 60, 3), i * 10, np.uint8))
        source = f"file://{tmp_path}?"
    else:
        source = "synthetic://shapes?frames=12&width=240&height=240&"
    seen = {}
    for fps in (0, 500):
        supervisor, recorder = supervise(f"{source}fps={fps}", hold_s=0.03)
        supervisor.start()
        assert supervisor.finished.wait(10)
        supervisor.stop()
        deadline = time.monotonic() + 2
        while recorder._thread.is_alive() and time.monotonic() < deadline:
            time.sleep(0.02)
        assert supervisor.frames == 12
        seen[fps] = recorder.frame_ids
    assert seen[0] == list(range(1, 13))
    assert len(seen[500]) < 12 and seen[500] == sorted(seen[500])


def test_an_endless_scene_reports_its_fps_and_ends_with_the_daemon():
    supervisor, recorder = supervise("synthetic://shapes?fps=20&width=320&height=240")
    supervisor.start()
    recorder.wait_for("streaming", 5)
    time.sleep(1.0)
    assert 15 < supervisor.status().fps < 25
    supervisor.stop()
    assert recorder.states() == ["starting", "streaming", "ended"]
    assert recorder.last().reason == "the daemon stopped"


def test_a_camera_is_streaming_before_its_first_frame_is_handed_on():
    """`edge monitor` showed a camera's first detections before its `streaming` status: the
    frame went to the camera loop first, the status after it."""
    handed_on: list[int] = []

    class Watching(Recorder):
        def __call__(self, status: CameraStatus) -> None:
            if status.state == "streaming":
                handed_on.append(supervisor.frames + len(self.frame_ids) +
                                 int(self.latest.ready()))
            super().__call__(status)

    recorder = Watching()
    supervisor = SourceSupervisor("cam", "synthetic://shapes?fps=50&width=320&height=240",
                                  recorder.latest, recorder, rng=random.Random(0))
    supervisor.start()
    try:
        recorder.wait_for("streaming", 5)
        deadline = time.monotonic() + 5
        while not recorder.frame_ids and time.monotonic() < deadline:
            time.sleep(0.02)
    finally:
        supervisor.stop()
    assert handed_on == [0]
    assert recorder.frame_ids[0] == 1


def test_frame_ids_go_on_across_reopens(monkeypatch):
    """Each reopen makes a new source, whose own ids start at 1: a camera's frame ids started
    again after every reconnect, and `edge monitor --frames` (files named by frame id) then
    wrote a later frame over an earlier one. Here a 5-frame scene taken for a live camera
    ends, and is reopened, three times."""
    monkeypatch.setattr(SyntheticSource, "live", True)
    supervisor, recorder = supervise("synthetic://shapes?fps=50&frames=5&width=320&height=240",
                                     reconnect_max_s=0.1)
    supervisor.start()
    try:
        deadline = time.monotonic() + 10
        while supervisor.reconnects < 3 and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        supervisor.stop()
    assert supervisor.reconnects >= 3
    ids = recorder.frame_ids
    assert len(ids) >= 15 and ids[0] == 1
    assert all(later > earlier for earlier, later in itertools.pairwise(ids)), ids
    assert ids[-1] == supervisor.last_frame_id <= supervisor.frames


def test_a_finite_source_that_breaks_mid_run_fails_for_good(tmp_path):
    for i in range(3):
        cv2.imwrite(str(tmp_path / f"{i}.png"), np.full((40, 40, 3), 50 * i, np.uint8))
    supervisor, recorder = supervise(f"file://{tmp_path}?fps=20&loop=1")
    supervisor.start()
    recorder.wait_for("streaming", 5)
    for path in tmp_path.glob("*.png"):
        path.write_bytes(b"not an image any more")
    assert supervisor.finished.wait(5)
    supervisor.stop()
    assert recorder.states() == ["starting", "streaming", "failed"]
    assert "none of the 3 images" in recorder.last().reason and recorder.latest.closed


@pytest.mark.parametrize(
    ("uri", "message"),
    [
        ("gopher://camera", "unknown scheme"),
        ("synthetic://shapes?colour=1", "unknown option"),
        ("v4l2:///dev/video0?exposure=3", "unknown option"),
        ("file:///no/such/clip.mp4", "does not exist"),
    ],
)
def test_config_errors_raise_before_anything_starts(uri, message):
    with pytest.raises(SourceError, match=message):
        SourceSupervisor("cam", uri, LatestFrame())


def test_an_unreadable_file_is_an_error_at_start(tmp_path):
    corrupt = tmp_path / "broken.mp4"
    corrupt.write_bytes(b"\x00\x00\x00\x18ftypmp42" + bytes(range(256)) * 40)
    supervisor, _ = supervise(f"file://{corrupt}")
    with pytest.raises(SourceError, match=r"OpenCV could not read .*broken.mp4 as a video; it "
                                          r"may be cut short|no frame could be decoded"):
        supervisor.start()


def test_a_missing_camera_device_is_retried_with_backoff(caplog):
    caplog.set_level(logging.DEBUG, logger="edge.sources.supervisor")
    supervisor, recorder = supervise("v4l2:///dev/video-edge-test-absent", reconnect_max_s=0.2)
    assert supervisor.live
    supervisor.start()
    deadline = time.monotonic() + 5
    while recorder.last().attempts < 4 and time.monotonic() < deadline:
        time.sleep(0.05)
    supervisor.stop()
    attempts = [s.attempts for s in recorder.statuses if s.state == "reconnecting"]
    assert attempts[:4] == [1, 2, 3, 4]
    assert "does not exist" in recorder.statuses[1].reason
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "attempt 1" in warnings[0].getMessage()  # once, not per try
    assert sum("reopening" in r.getMessage() for r in caplog.records) >= 4
    assert recorder.states()[-1] == "ended"


rtsp = pytest.mark.skipif(missing_reason() is not None, reason=str(missing_reason()))


@rtsp
@pytest.mark.slow
def test_rtsp_camera_comes_back_after_the_server_stops_and_restarts(rtsp_server):
    rtsp_server.start()
    supervisor, recorder = supervise(rtsp_server.url, stall_s=3, reconnect_max_s=2)
    supervisor.start()
    try:
        recorder.wait_for("streaming", 15)
        time.sleep(1)
        rtsp_server.stop()
        stopped_at = len(recorder.statuses)
        recorder.wait_for("reconnecting", 5, after=stopped_at)
        # a camera that is down delivers nothing (a user check: 8, then 3 fps while down)
        assert supervisor.stats()["source_fps"] == 0.0
        time.sleep(10)
        assert supervisor.status().state == "reconnecting"
        assert recorder.last().attempts >= 3  # backoff capped at 2 s: several tries in 10 s
        # the retained status says the rate the camera ran at, in every republication (it
        # fell across them: 15.2, 7.9, 5.7 ... 3.1, 0.0)
        down = [s for s in recorder.statuses[stopped_at:] if s.state == "reconnecting"]
        assert len(down) >= 3 and len({s.fps for s in down}) == 1, down
        assert down[0].fps > 5 and supervisor.status().fps == down[0].fps
        rtsp_server.start()
        back = recorder.wait_for("streaming", 2 + 5, after=stopped_at)
        time.sleep(1.5)
        assert supervisor.status().fps > 5
    finally:
        supervisor.stop()
    assert supervisor.stats()["source_fps"] > 5  # stopped while streaming: the rate it ran at
    assert back <= 7 and supervisor.reconnects == 1
    ids = recorder.frame_ids  # the reopened stream's frames go on from the last id
    assert all(later > earlier for earlier, later in itertools.pairwise(ids))
    assert recorder.states()[:3] == ["starting", "streaming", "reconnecting"]


@rtsp
@pytest.mark.slow
def test_rtsp_camera_unreachable_at_start_streams_once_the_server_appears(rtsp_server):
    supervisor, recorder = supervise(rtsp_server.url, stall_s=3, reconnect_max_s=1)
    supervisor.start()
    try:
        recorder.wait_for("reconnecting", 5)
        time.sleep(2)
        assert recorder.last().attempts >= 2 and supervisor.frames == 0
        assert "could not be opened" in recorder.last().reason
        rtsp_server.start()
        assert recorder.wait_for("streaming", 1 + 5) <= 6
    finally:
        supervisor.stop()


@rtsp
@pytest.mark.slow
def test_rtsp_stream_that_freezes_is_abandoned_after_stall_s_and_reopened(rtsp_server):
    rtsp_server.start()
    supervisor, recorder = supervise(rtsp_server.url, stall_s=2, reconnect_max_s=1)
    supervisor.start()
    try:
        recorder.wait_for("streaming", 15)
        frozen_at = len(recorder.statuses)
        os.kill(rtsp_server.pid, signal.SIGSTOP)  # the socket stays open; nothing arrives
        try:
            waited = recorder.wait_for("reconnecting", 8, after=frozen_at)
            assert "no frame for 2 s" in recorder.statuses[frozen_at].reason
            assert waited >= 1.5
        finally:
            os.kill(rtsp_server.pid, signal.SIGCONT)
        recorder.wait_for("streaming", 15, after=frozen_at + 1)
    finally:
        supervisor.stop()


def test_a_frozen_stream_whose_read_times_out_with_stall_s_is_no_sign_of_life(rtsp_server,
                                                                             monkeypatch):
    """A user check: with FFmpeg's read timeout as long as `stall_s` (both 10 s by default),
    each timed-out read of a frozen stream handed over a frame its decoder still held, which
    reset the stall timer: the camera read "streaming" at 0 fps for ~30 s, its stale frames
    went out as new detections, and it was then reopened as "the stream ended"."""
    from edge.sources import opencv

    monkeypatch.setattr(opencv, "LIVE_TIMEOUT_MS", 2000)
    rtsp_server.start()
    supervisor, recorder = supervise(rtsp_server.url, stall_s=2, reconnect_max_s=1)
    supervisor.start()
    try:
        recorder.wait_for("streaming", 15)
        time.sleep(1.0)
        frozen_at, frozen_frames = len(recorder.statuses), len(recorder.frames)
        os.kill(rtsp_server.pid, signal.SIGSTOP)
        frozen, frozen_wall = time.monotonic(), time.time()
        try:
            waited = recorder.wait_for("reconnecting", 8, after=frozen_at)
            late = [t - frozen for t in recorder.frames[frozen_frames:] if t - frozen > 0.5]
        finally:
            os.kill(rtsp_server.pid, signal.SIGCONT)
        recorder.wait_for("streaming", 15, after=frozen_at + 1)
    finally:
        supervisor.stop()
    assert recorder.statuses[frozen_at].reason == "no frame for 2 s"
    assert 1.5 <= waited <= 3.5, waited
    # down since the last frame (one came < 0.5 s before the freeze), not since the stall showed
    assert -0.5 < recorder.statuses[frozen_at].since - frozen_wall < 0.5
    assert late == []  # nothing the frozen stream's decoder still held went out as new


def test_a_camera_still_opening_a_silent_stream_stops_at_once():
    """A stop while OpenCV waits on a server that accepted the connection and never answers:
    that open() cannot be interrupted, so the supervisor no longer waits 2 s on it (a daemon's
    SIGTERM took 4.4 s); the reader closes whatever the open returns."""
    with socket.create_server(("127.0.0.1", 0)) as silent:
        supervisor, recorder = supervise(f"rtsp://127.0.0.1:{silent.getsockname()[1]}/x")
        supervisor.start()
        silent.settimeout(10)
        connection, _ = silent.accept()  # the reader is inside open() now
        began = time.monotonic()
        supervisor.stop()
        stopped_in = time.monotonic() - began
        connection.close()
    assert stopped_in < 1.0
    assert recorder.last().state == "ended"


def test_a_camera_whose_open_hangs_past_stall_s_is_named_with_the_source(monkeypatch):
    """The stall timer, not OpenCV's open timeout, may end an attempt still opening a silent
    stream; its warning said only "no frame for 10 s", without the source or what to check.
    Now it names the source and what its server did (asked by `edge.sources.stream_probe`)."""
    with socket.create_server(("127.0.0.1", 0)) as silent:
        port = silent.getsockname()[1]
        uri = f"rtsp://127.0.0.1:{port}/x"
        supervisor, recorder = supervise(uri, stall_s=1, reconnect_max_s=1)
        monkeypatch.setattr(supervisor_module, "FIRST_FRAME_S", 1.0)
        supervisor.start()
        try:
            recorder.wait_for("reconnecting", 10)
        finally:
            supervisor.stop()
    reason = next(s.reason for s in recorder.statuses if s.state == "reconnecting")
    assert reason.startswith(f"source '{uri}' did not open within 1 s: 127.0.0.1:{port} took "
                             "the connection but did not answer an RTSP request"), reason



def _closed_port() -> int:
    with socket.create_server(("127.0.0.1", 0)) as server:
        return int(server.getsockname()[1])


def test_a_camera_down_at_the_stop_keeps_its_cause_in_the_ended_status():
    """The retained status is what a remote watcher reads after the stop: "ended: the daemon
    stopped" alone hid that the camera had been down, since when, and why."""
    port = _closed_port()
    supervisor, recorder = supervise(f"rtsp://127.0.0.1:{port}/stream", reconnect_max_s=1)
    supervisor.start()
    try:
        recorder.wait_for("reconnecting", 10)
        time.sleep(1.5)  # a second attempt
    finally:
        supervisor.stop()
    down = [s for s in recorder.statuses if s.state == "reconnecting"][-1]
    ended = recorder.last()
    assert ended.state == "ended" and ended.attempts == down.attempts >= 1
    # it never streamed: not "down", nothing "reopened" (a user check)
    assert ended.reason.startswith(
        f"the daemon stopped before the camera delivered its first frame ({down.attempts} "
        f"attempt"), ended.reason
    assert ended.reason.endswith(
        f"to open it, failing since {down.payload()['since']}): {down.reason}")
    assert f"127.0.0.1:{port}" in ended.reason and "refused" in ended.reason


def test_a_camera_stopped_while_it_opens_says_it_never_streamed(monkeypatch):
    with socket.create_server(("127.0.0.1", 0)) as silent:  # takes connections, never answers
        supervisor, recorder = supervise(f"rtsp://127.0.0.1:{silent.getsockname()[1]}/x")
        monkeypatch.setattr(supervisor_module, "FIRST_FRAME_S", 30.0)
        supervisor.start()
        time.sleep(0.5)
        supervisor.stop()
    assert recorder.states() == ["starting", "ended"]
    assert recorder.last().reason == \
        "the daemon stopped before the camera delivered its first frame"


def test_a_camera_down_at_the_stop_names_the_first_cause_of_its_outage_too(monkeypatch):
    """A user check: a camera refused with 401 for its whole run, whose server then died,
    ended with "refused the connection" alone: the credentials problem was gone."""
    monkeypatch.setattr(supervisor_module, "FIRST_FRAME_S", 1.0)
    silent = socket.create_server(("127.0.0.1", 0))  # takes connections, never answers
    port = silent.getsockname()[1]
    supervisor, recorder = supervise(f"rtsp://127.0.0.1:{port}/x", stall_s=1,
                                     reconnect_max_s=1)
    supervisor.start()
    try:
        recorder.wait_for("reconnecting", 10)
        first = recorder.last().reason
        silent.close()  # now the port refuses
        deadline = time.monotonic() + 15
        while "refused" not in recorder.last().reason and time.monotonic() < deadline:
            time.sleep(0.1)
    finally:
        supervisor.stop()
        silent.close()
    last_down = [s for s in recorder.statuses if s.state == "reconnecting"][-1]
    assert "refused" in last_down.reason and "refused" not in first
    assert recorder.last().reason.endswith(f": {last_down.reason} (before that: {first})")

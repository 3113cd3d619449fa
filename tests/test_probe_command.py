"""`edge probe`: camera sources tried as a person commissioning them would, against a real
GStreamer RTSP server (tests/rtsp_server.py), the synthetic scene and files."""

from __future__ import annotations

import json
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np
import pytest

from edge.broker import free_port
from edge.demo import bundled_model
from edge.sources import trial as trial_module
from edge.sources.trial import try_source
from tests.mjpeg_server import MjpegServer
from tests.rtsp_server import RtspServer, missing_reason
from tests.scenes import SlowScene
from tests.test_sources import write_cut_short_mp4

rtsp = pytest.mark.skipif(missing_reason() is not None, reason=str(missing_reason()))
PASSWORD = "pa@ss"


def probe(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "edge", "probe", *args], capture_output=True,
                          text=True, timeout=timeout)


def with_model(folder: Path, name: str = "m.onnx") -> None:
    """The demo model at `folder/name`, where a config's relative `model.path` finds it."""
    shutil.copyfile(bundled_model(), folder / name)


def summary(result: subprocess.CompletedProcess[str]) -> dict:
    return dict(json.loads(result.stdout.strip().splitlines()[-1]))


@pytest.fixture
def guarded_server() -> Iterator[RtspServer]:
    """The real server asking for admin / PASSWORD by Digest, at 15 fps, started."""
    server = RtspServer(free_port(), fps=15, credentials=("admin", PASSWORD))
    server.start()
    yield server
    server.stop()


@rtsp
@pytest.mark.slow
def test_a_camera_and_the_scene_are_measured_and_their_last_frames_saved(tmp_path,
                                                                          guarded_server):
    camera = f"rtsp://admin:pa%40ss@127.0.0.1:{guarded_server.port}/cam"
    result = probe(camera, "synthetic://shapes?fps=10", "--frames", "20", "--save",
                   str(tmp_path / "frames"), "--json")
    assert result.returncode == 0, result.stderr
    streamed, scene = summary(result)["sources"]
    assert (streamed["ok"], streamed["width"], streamed["height"], streamed["frames"]) == \
        (True, 320, 240, 20)
    assert 12 <= streamed["fps"] <= 18, streamed  # a 15 fps stream, measured
    assert 0 < streamed["first_frame_s"] < 10
    assert (scene["width"], scene["height"], scene["declared_fps"]) == (640, 480, 10)
    assert 9 <= scene["fps"] <= 11
    # a user check: the stream states no rate, and its origin read "declared"
    assert (streamed["declared_fps"], streamed["fps_origin"]) == (None, None)
    assert scene["fps_origin"] == "asked"
    assert streamed["source"] == f"rtsp://REDACTED@127.0.0.1:{guarded_server.port}/cam"
    assert "pa%40ss" not in result.stdout + result.stderr
    assert f"source 1: rtsp://REDACTED@127.0.0.1:{guarded_server.port}/cam: 320x240 at " \
           in result.stdout
    saved = cv2.imread(str(tmp_path / "frames" / "source-1.jpg"))
    assert saved is not None and saved.shape == (240, 320, 3)
    assert float(np.std(saved)) > 5  # a picture, not a blank
    assert cv2.imread(str(tmp_path / "frames" / "source-2.jpg")).shape == (480, 640, 3)


@rtsp
def test_a_config_with_a_refused_password_exits_1_saying_why_for_that_camera(tmp_path,
                                                                             guarded_server):
    config = tmp_path / "edge.toml"
    with_model(tmp_path, "model.onnx")
    config.write_text(f"""
[model]
path = "model.onnx"
[[cameras]]
name = "gate"
source = "rtsp://admin:hunter2@127.0.0.1:{guarded_server.port}/cam"
[[cameras]]
name = "yard"
source = "synthetic://shapes?fps=15"
[mqtt]
url = "mqtt://127.0.0.1:1883"
""")
    result = probe("--config", str(config), "--frames", "5", "--json")
    assert result.returncode == 1, result.stderr
    gate, yard = summary(result)["sources"]
    assert (gate["name"], gate["ok"], yard["ok"]) == ("gate", False, True)
    assert "refused the user name and password in the URL (401 Unauthorized)" in gate["error"]
    assert result.stdout.startswith("gate: rtsp://REDACTED@127.0.0.1:")
    assert "hunter2" not in result.stdout + result.stderr


def test_a_stream_that_never_answers_is_given_up_at_the_timeout_with_why():
    with socket.create_server(("127.0.0.1", 0)) as silent:
        port = silent.getsockname()[1]
        started = time.monotonic()
        result = probe(f"rtsp://127.0.0.1:{port}/cam", "--timeout", "2", "--json")
        took = time.monotonic() - started
    assert result.returncode == 1, result.stderr
    assert took < 10, "the trial must not wait out FFmpeg's 10 s open timeout"
    (trial,) = summary(result)["sources"]
    assert f"127.0.0.1:{port} took the connection but did not answer an RTSP request" \
        in trial["error"]


def test_a_video_file_shorter_than_the_frames_asked_for_is_fine(tmp_path):
    clip = tmp_path / "clip.avi"
    writer = cv2.VideoWriter(str(clip), cv2.VideoWriter_fourcc(*"MJPG"), 10, (160, 120))
    for index in range(6):
        writer.write(np.full((120, 160, 3), 40 * index, np.uint8))
    writer.release()
    result = probe(f"file://{clip}?fps=0", "--frames", "30", "--json")
    assert result.returncode == 0, result.stderr
    (trial,) = summary(result)["sources"]
    assert (trial["frames"], trial["width"], trial["height"], trial["error"]) == \
        (6, 160, 120, None)


def _zoned_config(tmp_path: Path, source: str, zones: dict[str, str]) -> Path:
    config = tmp_path / "edge.toml"
    with_model(tmp_path)
    config.write_text("device_id = \"d\"\n[model]\npath = \"m.onnx\"\n"
                      f"[[cameras]]\nname = \"gate\"\nsource = \"{source}\"\n"
                      + "".join(f"[[cameras.zones]]\nname = \"{name}\"\npoints = {points}\n"
                                for name, points in zones.items()))
    return config


ZONES = {"inside": "[[10, 10], [150, 10], [150, 110]]",
         "door": "[[10, 10], [150, 10], [150, 250]]"}
OUTSIDE = ("camera 'gate', zone 'door': the polygon reaches outside the {} frame; use "
           "pixel coordinates within it")


def test_a_configs_pixel_zone_outside_the_frame_measured_fails_the_probe_naming_it(tmp_path):
    """A stream's size is known only once it streams, so `edge run` can only log such a zone;
    the probe the README recommends for drawing zones checks them against what it measured."""
    server = MjpegServer(free_port(), width=160, height=120, fps=20)
    server.start()
    try:
        config = _zoned_config(tmp_path, server.url, ZONES)
        result = probe("--config", str(config), "--frames", "4", "--json")
    finally:
        server.stop()
    assert result.returncode == 1, result.stderr
    outside = OUTSIDE.format("160x120")
    assert f"  {outside}" in result.stdout
    (trial,) = summary(result)["sources"]
    assert trial["zones_error"].startswith(outside) and trial["frames"] == 4
    config.write_text(config.read_text().replace("[150, 250]", "[80, 10]"))  # on one line
    flat = probe("--config", str(config), "--frames", "4")
    assert flat.returncode == 2, flat.stderr
    assert "zone 'door': the polygon encloses no area" in flat.stderr


@pytest.mark.parametrize("kind", ["file", "synthetic"])
def test_a_zone_outside_a_size_known_before_opening_exits_2_as_edge_run_does(tmp_path, kind):
    """A user check: a synthetic scene's zone outside its frame made `edge run` exit 2 at
    start and the probe exit 1 after trying the camera."""
    if kind == "file":
        source = f"file://{tmp_path / 'clip.avi'}?fps=0"
        writer = cv2.VideoWriter(str(tmp_path / "clip.avi"), cv2.VideoWriter_fourcc(*"MJPG"),
                                 10, (160, 120))
        for index in range(4):
            writer.write(np.full((120, 160, 3), 40 * index, np.uint8))
        writer.release()
    else:
        source = "synthetic://shapes?width=320&height=240&fps=10"
    outside = OUTSIDE.format("160x120" if kind == "file" else "320x240")
    config = _zoned_config(tmp_path, source, ZONES)
    result = probe("--config", str(config), "--frames", "4", "--json")
    assert result.returncode == 2, result.stdout
    assert outside in result.stderr and "Traceback" not in result.stderr
    assert '"sources"' not in result.stdout  # refused before any camera was tried
    run = subprocess.run([sys.executable, "-m", "edge", "run", "--config", str(config),
                          "--seconds", "1"], capture_output=True, text=True, timeout=60)
    assert run.returncode == 2 and outside in run.stderr


@pytest.mark.parametrize(("args", "message"), [
    ([], "give the sources to try (edge probe rtsp://camera/stream ...) or --config"),
    (["synthetic://shapes", "--config", "edge.toml"], "give the sources to try or --config, "
                                                      "not both"),
    (["gopher://camera/1"], "unknown scheme 'gopher://'"),
    (["file:///no/such/clip.mp4"], "/no/such/clip.mp4 does not exist"),
    (["synthetic://shapes?colour=red"], "unknown option(s) colour"),
    (["synthetic://shapes", "--frames", "0"], "argument --frames"),
    (["rtsp://[::1/cam"], "is not a valid URI (Invalid IPv6 URL); an IPv6 host is written in "
                          "brackets"),
    (["rtsp://admin:pw@127.0.0.1:notaport/cam"], "its port 'notaport' is not a number from 1 "
                                                 "to 65535; write it as rtsp://192.168.1.20:554/"
                                                 "stream"),
    # a user check: a missing host was told about port ranges
    (["rtsp:///cam"], "it names no host; write it as rtsp://192.168.1.20:554/stream"),
    (["rtsp://:554/cam"], "it names no host"),
    # a user check: tried, then "does not resolve", exit 1 (and the daemon retried it forever)
    (["rtsp://cam host/stream"], "its host 'cam host' holds a space, which no host name or "
                                 "address has; write it as rtsp://192.168.1.20:554/stream"),
    (["rtsp://127.0.0.1:0/cam"], "its port '0' is not a number from 1 to 65535"),
    (["rtsps://[::1]:70000/cam"], "its port '70000' is not a number from 1 to 65535; write it "
                                  "as rtsps://192.168.1.20:554/stream"),
    (["--config", "/no/such/edge.toml"], "cannot read config /no/such/edge.toml"),
])
def test_bad_input_exits_2_naming_it(args, message):
    result = probe(*args)
    assert result.returncode == 2, result.stderr
    assert message in result.stderr and "Traceback" not in result.stderr


def test_a_configs_missing_or_empty_source_is_refused_naming_the_camera_as_edge_run_does(
        tmp_path):
    """An operator's `--config` with a missing clip said only the source; an empty image
    folder was refused by `edge run` only once the other cameras streamed."""
    empty = tmp_path / "stills"
    empty.mkdir()
    (empty / "notes.txt").write_text("no images here")
    config = tmp_path / "edge.toml"
    with_model(tmp_path)
    for source, said in [(f"file://{tmp_path}/no/clip.mp4", "no/clip.mp4 does not exist"),
                         (f"file://{empty}?fps=5", f"folder {empty} holds no images")]:
        config.write_text("device_id = \"d\"\n[model]\npath = \"m.onnx\"\n"
                          "[[cameras]]\nname = \"gate\"\nsource = \"synthetic://shapes\"\n"
                          f"[[cameras]]\nname = \"stills\"\nsource = \"{source}\"\n")
        result = probe("--config", str(config))
        assert result.returncode == 2, result.stderr
        assert (f"error: {config}: cameras.1.source (camera 'stills'): source '{source}': "
                in result.stderr)
        assert said in result.stderr and result.stdout == ""  # no camera was tried


def test_a_configs_missing_model_is_refused_before_any_camera_as_edge_run_does(tmp_path):
    """A user check: `edge probe --config`, the check systemd/README.md runs before installing,
    passed a config whose model.path did not exist; `edge run` then exited 2 under systemd."""
    config = tmp_path / "edge.toml"
    config.write_text('device_id = "d"\n[model]\npath = "models/m.onnx"\n'
                      '[[cameras]]\nname = "gate"\nsource = "synthetic://shapes"\n')
    result = probe("--config", str(config))
    assert result.returncode == 2, result.stderr
    assert (f"{config}: model.path: model file {tmp_path}/models/m.onnx does not exist; check "
            "the path, or make a model with `edge convert`") in result.stderr
    assert result.stdout == ""  # no camera was tried
    (tmp_path / "models").mkdir()
    with_model(tmp_path / "models")
    fine = probe("--config", str(config), "--frames", "3")
    assert fine.returncode == 0, fine.stderr
    assert fine.stdout.startswith("gate: synthetic://shapes")


def test_save_into_a_file_is_refused_before_any_source_is_opened(tmp_path):
    taken = tmp_path / "frames"
    taken.write_text("not a folder")
    result = probe("synthetic://shapes", "--save", str(taken))
    assert result.returncode == 2
    assert f"--save {taken} is a file" in result.stderr


def test_the_command_is_listed_with_what_it_does():
    listed = subprocess.run([sys.executable, "-m", "edge", "--help"], capture_output=True,
                            text=True, timeout=30).stdout
    assert "probe" in listed and "try camera sources" in listed


@rtsp
@pytest.mark.slow
def test_frames_that_do_not_fit_the_timeout_are_counted_and_measured(guarded_server):
    """`--frames 1000 --timeout 4` on a 15 fps stream said "no frame for the rest of the 4 s",
    gave no rate, and the process aborted under a reader still inside OpenCV (exit 134)."""
    camera = f"rtsp://admin:pa%40ss@127.0.0.1:{guarded_server.port}/cam"
    result = probe(camera, "--frames", "1000", "--timeout", "4", "--json")
    assert result.returncode == 1, result.stderr  # not 134
    assert "terminate called" not in result.stderr
    (trial,) = summary(result)["sources"]
    assert 20 <= trial["frames"] < 1000 and 12 <= trial["fps"] <= 18, trial
    assert trial["error"] == (f"{trial['frames']} of 1000 frames within 4 s; raise --timeout or "
                              "ask for fewer --frames")


def test_a_stream_that_opens_after_the_timeout_is_said_to_need_a_longer_one(monkeypatch):
    """A user check: `--timeout 2` on a stream that took 1.9-3.8 s to open said only "0 of 30
    frames within 2 s", though its server answered and it was still opening."""
    monkeypatch.setattr(trial_module, "source_from_uri",
                        lambda text, snapshots=None: SlowScene("synthetic://shapes?fps=30", 1.5))
    trial = try_source("gate", "rtsp://127.0.0.1:8554/cam", 30, 0.5)
    assert trial.frames == 0 and trial.opened_s is not None and trial.opened_s >= 1.5
    assert trial.error == (f"0 of 30 frames within 0.5 s: the source took "
                           f"{trial.opened_s:.1f} s to open, so the time was up before its "
                           "first frame; raise --timeout")
    assert trial.describe().endswith(f"FAILED: {trial.error}")


@rtsp
def test_a_rate_from_a_burst_of_buffered_frames_is_not_given(guarded_server):
    """With a few frames, all of them the burst an RTSP stream hands over first, the rate
    read 8000 fps (a user check)."""
    camera = f"rtsp://admin:pa%40ss@127.0.0.1:{guarded_server.port}/cam"
    result = probe(camera, "--frames", "4", "--json")
    assert result.returncode == 0, result.stderr
    (trial,) = summary(result)["sources"]
    assert trial["fps"] is None, trial
    assert "a rate not measured (too few frames after the burst a stream starts with: ask " \
           "for more --frames)" in result.stdout


def test_ctrl_c_ends_a_probe_at_once_with_what_was_found():
    """Signals were ignored until --timeout ran out (a user check)."""
    process = subprocess.Popen([sys.executable, "-m", "edge", "probe", "--frames", "100000",
                                "--timeout", "60", "synthetic://shapes?fps=10", "--json"],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    time.sleep(4)
    signalled = time.monotonic()
    process.send_signal(signal.SIGINT)
    out, err = process.communicate(timeout=30)
    assert time.monotonic() - signalled < 3
    assert process.returncode == 130, err
    (trial,) = json.loads(out.strip().splitlines()[-1])["sources"]
    assert trial["error"] == "interrupted" and trial["frames"] >= 5


def test_a_frame_that_cannot_be_saved_is_said_and_fails_the_probe(tmp_path):
    """--save is checked at start; a folder taken away meanwhile (here a file put in its
    place) must not end the command with a traceback."""
    folder = tmp_path / "frames"
    process = subprocess.Popen([sys.executable, "-m", "edge", "probe", "--frames", "30",
                                "synthetic://shapes?fps=10", "--save", str(folder)],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    time.sleep(1.5)
    folder.write_text("taken")
    out, err = process.communicate(timeout=30)
    assert process.returncode == 1, err
    assert f"its last frame could not be saved in {folder}: " in out
    assert "Traceback" not in err


def test_a_rate_nothing_declared_is_called_the_sources_default_pace(tmp_path):
    """A user check: a folder without fps= read "(the source declares 10)": a folder declares
    nothing; 10 is the pace it keeps unless fps= asks for another."""
    folder = tmp_path / "images"
    folder.mkdir()
    for name in ("a.jpg", "b.jpg", "c.jpg"):
        cv2.imwrite(str(folder / name), np.full((48, 64, 3), 90, np.uint8))
    result = probe(f"file://{folder}", "synthetic://shapes?fps=20", "--frames", "3", "--json")
    assert result.returncode == 0, result.stderr
    # The rate read is measured over the last frames (one interval of three), so it is not
    # asserted exactly: a slow decode then a catching-up frame reads 10.7 fps, say.
    assert re.search(r"at \d+\.\d fps \(its default pace, 10; fps= sets another\)", result.stdout)
    assert "(fps= asks for 20)" in result.stdout and "declares" not in result.stdout
    assert [s["fps_origin"] for s in summary(result)["sources"]] == ["default", "asked"]


def test_a_folder_of_mixed_sizes_is_named_and_its_pixel_zones_checked_on_each(tmp_path):
    """A user check: a folder of 640x480 and 1280x720 images read "640x480 at 5.0 fps", and a
    pixel zone that fits only the larger frames passed."""
    folder = tmp_path / "images"
    folder.mkdir()
    for name, (width, height) in (("a.jpg", (640, 480)), ("b.jpg", (1280, 720)),
                                  ("c.jpg", (640, 480))):
        cv2.imwrite(str(folder / name), np.full((height, width, 3), 90, np.uint8))
    result = probe(f"file://{folder}?fps=20", "--frames", "3", "--json")
    assert result.returncode == 0, result.stderr
    assert summary(result)["sources"][0]["sizes"] == [[640, 480], [1280, 720]]
    assert re.search(r"640x480 at \d+\.\d fps \(fps= asks for 20\), 3 frames, the first after ",
                     result.stdout)
    assert 10 < summary(result)["sources"][0]["fps"] < 40  # one interval, paced at 20 fps
    assert ('; frames of other sizes too (1280x720): zones in pixels fit one size only; give '
            'them in units = "normalised"') in result.stdout
    config = tmp_path / "edge.toml"
    with_model(tmp_path)
    config.write_text(f'[model]\npath = "m.onnx"\n[[cameras]]\nname = "gate"\nsource = '
                      f'"file://{folder}?fps=20"\n[[cameras.zones]]\nname = "far"\n'
                      'points = [[700, 500], [1200, 500], [1200, 700]]\n')
    zoned = probe("--config", str(config), "--frames", "3", "--json")
    assert zoned.returncode == 2, zoned.stdout  # as `edge run`, on the first image's size
    assert "zone 'far': the polygon reaches outside the 640x480 frame" in zoned.stderr


def test_a_cut_short_video_is_said_once_without_ffmpeg_s_own_line(tmp_path):
    """A user check: after the probe's own line naming the video cut short, FFmpeg's "[mov,mp4,
    ...] moov atom not found" followed on stderr, saying the same in its words."""
    result = probe(f"file://{write_cut_short_mp4(tmp_path)}")
    assert result.returncode == 1
    assert "cut.mp4 as a video; it may be cut short" in result.stdout + result.stderr
    assert "moov atom not found" not in result.stderr, result.stderr

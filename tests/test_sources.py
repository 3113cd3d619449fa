from __future__ import annotations

import time
from pathlib import Path

import cv2
import numpy as np
import pytest

from edge.errors import SourceError
from edge.sources import LatestFrame, source_from_uri
from edge.synthetic import ShapeScene


def read_all(uri: str, limit: int = 1000) -> list:
    source = source_from_uri(uri)
    source.open()
    frames = []
    try:
        while len(frames) < limit:
            frame = source.read()
            if frame is None:
                break
            frames.append((frame.frame_id, frame.image.copy(), frame.truth))
            frame.release()
    finally:
        source.close()
    return frames


def write_video(path: Path, count: int) -> list[np.ndarray]:
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 25, (160, 120))
    frames = []
    for i in range(count):
        frame = np.full((120, 160, 3), i * 10, np.uint8)
        writer.write(frame)
        frames.append(frame)
    writer.release()
    return frames


def write_cut_short_mp4(folder: Path) -> Path:
    """`folder/cut.mp4`: the first half of a 30-frame MP4, so without its index (moov), as a
    recording stopped before it was finished."""
    whole = folder / "whole.mp4"
    writer = cv2.VideoWriter(str(whole), cv2.VideoWriter_fourcc(*"mp4v"), 10, (160, 120))
    for i in range(30):
        writer.write(np.full((120, 160, 3), i * 8, np.uint8))
    writer.release()
    data = whole.read_bytes()
    (folder / "cut.mp4").write_bytes(data[:len(data) // 2])
    return folder / "cut.mp4"


def test_synthetic_source_is_the_seeded_scene_with_truth():
    frames = read_all("synthetic://shapes?fps=0&seed=4&frames=5")
    assert [f[0] for f in frames] == [1, 2, 3, 4, 5]
    scene = ShapeScene(seed=4)
    for _, image, truth in frames:
        expected = scene.next_truth()
        np.testing.assert_array_equal(truth.boxes, expected.boxes)
        assert image.shape == (480, 640, 3)


def test_video_file_plays_once_or_loops(tmp_path):
    path = tmp_path / "clip.avi"
    written = write_video(path, 6)
    once = read_all(f"file://{path}?fps=0")
    assert len(once) == 6
    for (_, image, _), original in zip(once, written, strict=True):
        assert abs(float(image.mean()) - float(original.mean())) < 3  # MJPG is lossy
    looped = read_all(f"file://{path}?fps=0&loop=1", limit=15)
    assert len(looped) == 15 and [f[0] for f in looped] == list(range(1, 16))


@pytest.mark.parametrize("count", [1, 2, 5])
def test_a_short_video_plays_every_frame_once_or_looped(tmp_path, count):
    """A user check: a 1-frame video delivered no frame, looped or not ("never delivered a
    frame"; probe: "the source ended after 0 frames"): seeking back to its first frame, after
    the frame `open` reads, reads nothing."""
    path = tmp_path / "short.mp4"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 10, (160, 120))
    for i in range(count):
        writer.write(np.full((120, 160, 3), 40 * (i + 1), np.uint8))
    writer.release()
    levels = [40 * (i + 1) for i in range(count)]
    once = [int(f[1][0, 0, 0]) for f in read_all(f"file://{path}?fps=0")]
    assert len(once) == count
    assert all(abs(a - b) <= 6 for a, b in zip(once, levels, strict=True)), once
    looped = [int(f[1][0, 0, 0]) for f in read_all(f"file://{path}?fps=0&loop=1", limit=11)]
    expected = (levels * 11)[:11]
    assert len(looped) == 11
    assert all(abs(a - b) <= 6 for a, b in zip(looped, expected, strict=True)), looped


def test_image_folder_sorted_and_unreadable_files_skipped(tmp_path, caplog):
    for i in range(3):
        cv2.imwrite(str(tmp_path / f"{i:02d}.png"), np.full((50, 60, 3), i * 50, np.uint8))
    (tmp_path / "01b.jpg").write_bytes(b"not an image")
    frames = read_all(f"file://{tmp_path}?fps=0")
    assert [int(f[1][0, 0, 0]) for f in frames] == [0, 50, 100]
    assert "skipping unreadable image" in caplog.text
    caplog.clear()  # looped: said once a file, not on every pass (a user saw it 3 times a second)
    looped = read_all(f"file://{tmp_path}?fps=0&loop=1", limit=12)
    assert [int(f[1][0, 0, 0]) for f in looped] == [0, 50, 100] * 4
    assert caplog.text.count("skipping unreadable image") == 1


def test_an_image_file_caught_empty_while_written_is_skipped_not_an_internal_error(tmp_path,
                                                                                   caplog):
    """Seen in CI: a file rewritten under a playing folder source (truncated, then written) was
    read at 0 bytes, and OpenCV's imdecode raises on an empty buffer: the camera failed with
    "internal error" instead of skipping the file."""
    from edge.sources.opencv import read_image

    (tmp_path / "empty.jpg").write_bytes(b"")
    assert read_image(tmp_path / "empty.jpg") is None
    cv2.imwrite(str(tmp_path / "00.png"), np.full((50, 60, 3), 80, np.uint8))
    frames = read_all(f"file://{tmp_path}?fps=0")
    assert [int(f[1][0, 0, 0]) for f in frames] == [80]
    assert "empty.jpg (empty: 0 bytes)" in caplog.text


def test_a_folder_skips_a_cut_short_jpeg_and_hidden_files_saying_why(tmp_path, caplog):
    """A user check: a JPEG cut to its first third played as a frame, its lower part grey
    (libjpeg's "Premature end of JPEG file" naming no file), and macOS's hidden ._ copies were
    played (calibration leaves both out)."""
    for i in range(3):
        cv2.imwrite(str(tmp_path / f"{i:02d}.jpg"), np.full((48, 64, 3), 40 + i * 50, np.uint8))
    whole = cv2.imencode(".jpg", np.random.default_rng(0).integers(0, 255, (120, 160, 3),
                                                                     np.uint8))[1].tobytes()
    (tmp_path / "01b.jpg").write_bytes(whole[:len(whole) // 3])
    (tmp_path / "._00.jpg").write_bytes(whole)  # hidden: not played, not warned of
    frames = read_all(f"file://{tmp_path}?fps=0")
    assert [int(f[1][0, 0, 0]) for f in frames] == [40, 90, 140]
    assert "skipping unreadable image" in caplog.text and "01b.jpg (a JPEG cut short)" in \
        caplog.text
    assert "._00.jpg" not in caplog.text
    motion_photo = whole + b"\x00\x00\x00\x18ftypmp42" + bytes(64)  # a video after the end
    (tmp_path / "03.jpg").write_bytes(motion_photo)
    assert len(read_all(f"file://{tmp_path}?fps=0")) == 4


def test_a_single_photo_is_a_source_read_upright_by_its_exif_orientation(tmp_path):
    """A user check: a phone's portrait photo given alone was read by the video reader,
    sideways (480x640 where a folder of it read 640x480)."""
    from tests.calibration.test_images import _with_orientation

    stored = np.zeros((40, 80, 3), np.uint8)
    stored[:10, :20] = 255
    (tmp_path / "phone.jpg").write_bytes(_with_orientation(stored, 6, "II"))
    alone = read_all(f"file://{tmp_path}/phone.jpg")
    in_folder = read_all(f"file://{tmp_path}")
    assert len(alone) == 1 and alone[0][1].shape == (80, 40, 3)
    assert np.array_equal(alone[0][1], in_folder[0][1])
    assert len(read_all(f"file://{tmp_path}/phone.jpg?fps=0&loop=1", limit=5)) == 5
    whole = (tmp_path / "phone.jpg").read_bytes()
    (tmp_path / "cut.jpg").write_bytes(whole[:len(whole) // 2])
    with pytest.raises(SourceError, match=r"cut.jpg is no image that can be read \(a JPEG cut "
                                          r"short\); replace it"):
        source_from_uri(f"file://{tmp_path}/cut.jpg")


def test_a_folder_of_which_no_image_reads_is_refused_at_start(tmp_path):
    """A user check: it ran, failed the camera and exited 1 "so that systemd restarts the
    daemon", which would have restarted it every 5 s for good; an empty folder was exit 2."""
    for name in ("a.jpg", "b.png", "c.jpg", "d.jpg"):
        (tmp_path / name).write_text("not an image")
    with pytest.raises(SourceError, match=r"none of the 4 images in .* could be read \(a.jpg, "
                                          r"b.png, c.jpg, \.\.\.\); they are damaged or no "
                                          r"images: replace them"):
        source_from_uri(f"file://{tmp_path}?loop=1")


def test_an_empty_or_cut_short_video_is_named_as_such(tmp_path):
    """A user check: both read "could not be opened by OpenCV; check that the device or
    stream exists and that you may read it", of a file that exists and is readable."""
    (tmp_path / "zero.mp4").write_bytes(b"")
    with pytest.raises(SourceError, match=r"zero.mp4 is empty \(0 bytes\): the recording or "
                                          r"copy did not finish"):
        source_from_uri(f"file://{tmp_path}/zero.mp4")
    cut = write_cut_short_mp4(tmp_path)
    with pytest.raises(SourceError, match=r"OpenCV could not read .*cut.mp4 as a video; it may "
                                          r"be cut short"):
        source_from_uri(f"file://{cut}").open()


def test_percent_escapes_in_a_file_path_are_decoded(tmp_path):
    """What a file manager's "copy as URI" writes; a path that exists as written wins."""
    path = tmp_path / "clip é 1.avi"
    write_video(path, 3)
    assert len(read_all(f"file://{tmp_path}/clip%20%C3%A9%201.avi?fps=0")) == 3
    assert len(read_all(f"file://{path}?fps=0")) == 3
    literal = tmp_path / "100%25.avi"  # exists as written: not read as 100%.avi
    write_video(literal, 2)
    write_video(tmp_path / "100%.avi", 4)
    assert len(read_all(f"file://{literal}?fps=0")) == 2
    with pytest.raises(SourceError, match=r"nope%20x.avi does not exist \(nor .*/nope x.avi, "
                                          r"its %-escapes decoded\)"):
        source_from_uri(f"file://{tmp_path}/nope%20x.avi")
    with pytest.raises(SourceError, match=r"a '#' in a URI starts a fragment, so the path would "
                                          r"end at .*/clip; write a '#' of the file's name as "
                                          r"%23"):
        source_from_uri(f"file://{tmp_path}/clip#2.avi")
    hashed = tmp_path / "clip#2.avi"
    write_video(hashed, 5)
    assert len(read_all(f"file://{tmp_path}/clip%232.avi?fps=0")) == 5


@pytest.mark.parametrize(
    ("uri", "message"),
    [
        ("gopher://camera", "unknown scheme 'gopher://'"),
        ("/dev/video0", r"is not a URI; a camera device is written v4l2:///dev/video0$"),
        # a user check: a clip's path given bare got only the generic examples
        ("/data/my clip.mp4", r"is not a URI; a file or folder is written "
                              r"file:///data/my%20clip\.mp4 \(file:// and the absolute path"),
        ("camera1", r"is not a URI; write it as scheme://location, e\.g\. v4l2:///dev/video0"),
        ("file:///no/such/clip.mp4", "does not exist"),
        ("v4l2:///dev/video99", "does not exist"),
        ("synthetic://cubes", "unknown synthetic scene"),
        ("synthetic://shapes?fps=fast", "fps='fast' must be a number"),
        ("synthetic://shapes?colour=1", "unknown option"),
        # a user check: the fix left pip's OpenCV in the venv, ahead of JetPack's
        ("csi://0", r"this OpenCV \(/.*cv2\) has no GStreamer support .* `pip uninstall "
                    r"opencv-python-headless` and `pip install 'numpy<2'`"),
        # relative paths would be looked up where the daemon starts (the service's folder)
        ("file://clip.mp4", r"file:// takes an absolute path, after three slashes \(file:///"
                            r"data/clip.mp4\); 'clip.mp4' is relative, .*edge.service.s is "
                            r"/var/lib/edge"),
        ("file://data/clip.mp4?fps=5", "'data/clip.mp4' is relative"),
        ("replay://clips/a.mp4", r"replay:// takes an absolute path, after three slashes"),
        ("replay:///no/such/clip.mp4", r"/no/such/clip.mp4 does not exist; replay:// takes"),
        # a user check: a folder "does not exist"
        ("replay:///tmp", r"/tmp is a folder; replay:// takes replay://shapes or replay:///path"
                          r"/to/video \(a folder of images is file:///tmp\)"),
    ],
)
def test_bad_uris_are_clear_errors(uri, message):
    with pytest.raises(SourceError, match=message):
        source_from_uri(uri).open()


def test_corrupt_video_and_empty_folder(tmp_path):
    corrupt = tmp_path / "broken.mp4"
    corrupt.write_bytes(b"\x00\x00\x00\x18ftypmp42" + bytes(range(256)) * 40)
    with pytest.raises(SourceError, match=r"could not read .* as a video|no frame could be "
                                          r"decoded"):
        source_from_uri(f"file://{corrupt}").open()
    empty = tmp_path / "empty"
    empty.mkdir()
    # refused when the source is made, as a missing file is: `edge run` refused it only once
    # the other cameras streamed
    with pytest.raises(SourceError, match=r"holds no images .*; put the images there or point "
                                          r"file:// at a folder that holds them"):
        source_from_uri(f"file://{empty}")
    image = empty / "1.jpg"
    cv2.imwrite(str(image), np.zeros((8, 8, 3), np.uint8))
    source = source_from_uri(f"file://{empty}")
    image.unlink()  # gone before the camera opens it
    with pytest.raises(SourceError, match="holds no images"):
        source.open()


def test_latest_frame_keeps_only_the_newest_and_counts_drops():
    source = source_from_uri("synthetic://shapes?fps=0&seed=1")
    source.open()
    slot = LatestFrame()
    for _ in range(4):
        frame = source.read()
        assert frame is not None
        slot.put(frame)
    newest = slot.take(timeout=0.1)
    assert newest is not None and newest.frame_id == 4 and slot.dropped == 3
    assert slot.take(timeout=0.01) is None
    slot.close()
    assert slot.closed
    # a frame handed over once the loop stopped taking is released, not counted as dropped
    late = source.read()
    assert late is not None
    buffer = late.image.ctypes.data
    slot.put(late)
    assert slot.dropped == 3 and slot.take(timeout=0.01) is None
    again = source.read()  # its buffer went back to the pool, the next frame's
    assert again is not None and again.image.ctypes.data == buffer


def test_frame_buffers_are_recycled():
    source = source_from_uri("synthetic://shapes?fps=0&seed=1")
    source.open()
    seen = set()
    for _ in range(20):
        frame = source.read()
        assert frame is not None
        seen.add(frame.image.ctypes.data)
        frame.release()
    assert len(seen) == 1


def test_a_stream_whose_server_never_answers_is_given_up_before_ffmpeg_is_asked():
    """A server that accepts the connection and never answers (a hung camera, a wrong port
    behind a proxy) was given up after FFmpeg's open timeout (10 s), during which OpenCV's
    FFmpeg backend, which opens one stream at a time in the whole process, held every other
    camera's open. Now its server is asked first, for 3 s, without that lock, and the error
    says what it did; a refused connection fails at once, named refused."""
    import socket

    with socket.create_server(("127.0.0.1", 0)) as silent:
        source = source_from_uri(f"rtsp://127.0.0.1:{silent.getsockname()[1]}/x")
        started = time.monotonic()
        with pytest.raises(SourceError, match=r"could not be opened: 127.0.0.1:\d+ took the "
                                              r"connection but did not answer an RTSP request "
                                              r"within 3 s"):
            source.open()
        assert time.monotonic() - started < 5
    with socket.create_server(("127.0.0.1", 0)) as closed:
        port = closed.getsockname()[1]
    refused = source_from_uri(f"rtsp://127.0.0.1:{port}/x")
    with pytest.raises(SourceError, match=rf"could not be opened: 127.0.0.1:{port} refused the "
                                          r"connection: nothing listens on that port"):
        refused.open()


def test_a_cameras_rate_is_asked_for_only_with_fps_in_its_uri():
    """A user check: `edge probe --json` said `fps_origin: asked` for a plain RTSP URL (the
    camera's own unpaced reading was taken for an fps= asked for)."""
    assert source_from_uri("rtsp://127.0.0.1:1/cam").fps_origin == "declared"
    assert source_from_uri("v4l2:///dev/video0").fps_origin == "declared"
    assert source_from_uri("v4l2:///dev/video0?fps=30").fps_origin == "asked"

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


def test_image_folder_sorted_and_unreadable_files_skipped(tmp_path, caplog):
    for i in range(3):
        cv2.imwrite(str(tmp_path / f"{i:02d}.png"), np.full((50, 60, 3), i * 50, np.uint8))
    (tmp_path / "01b.jpg").write_bytes(b"not an image")
    frames = read_all(f"file://{tmp_path}?fps=0")
    assert [int(f[1][0, 0, 0]) for f in frames] == [0, 50, 100]
    assert "skipping unreadable image" in caplog.text


@pytest.mark.parametrize(
    ("uri", "message"),
    [
        ("gopher://camera", "unknown scheme 'gopher://'"),
        ("/dev/video0", "is not a URI"),
        ("file:///no/such/clip.mp4", "does not exist"),
        ("v4l2:///dev/video99", "does not exist"),
        ("synthetic://cubes", "unknown synthetic scene"),
        ("synthetic://shapes?fps=fast", "fps='fast' must be a number"),
        ("synthetic://shapes?colour=1", "unknown option"),
        ("csi://0", "GStreamer"),
        # relative paths would be looked up where the daemon starts (a service: /)
        ("file://clip.mp4", r"file:// takes an absolute path, after three slashes \(file:///"
                            r"data/clip.mp4\); 'clip.mp4' is relative, .*a service's is /"),
        ("file://data/clip.mp4?fps=5", "'data/clip.mp4' is relative"),
        ("replay://clips/a.mp4", r"replay:// takes an absolute path, after three slashes"),
    ],
)
def test_bad_uris_are_clear_errors(uri, message):
    with pytest.raises(SourceError, match=message):
        source_from_uri(uri).open()


def test_corrupt_video_and_empty_folder(tmp_path):
    corrupt = tmp_path / "broken.mp4"
    corrupt.write_bytes(b"\x00\x00\x00\x18ftypmp42" + bytes(range(256)) * 40)
    with pytest.raises(SourceError, match=r"could not be opened|no frame could be decoded"):
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

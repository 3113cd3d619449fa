from __future__ import annotations

import logging
import re
import threading
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

from calibration.readers import Prefetched, frames_from
from edge.errors import EdgeError, InputError
from edge.spec import InputSpec, ModelSpec

SPEC = ModelSpec(task="detect", labels=("a",), head="anchor_free", output="o",
                 input=InputSpec(name="images", width=64, height=48))


def mixed_folder(folder: Path) -> None:
    rng = np.random.default_rng(0)
    colour = rng.integers(0, 256, (40, 60, 3), np.uint8)
    for suffix in (".jpg", ".png", ".bmp", ".tiff", ".webp"):
        cv2.imwrite(str(folder / f"good{suffix}"), colour)
    cv2.imwrite(str(folder / "grey.png"), colour[..., 0])
    cv2.imwrite(str(folder / "alpha.png"), np.dstack([colour, colour[..., :1]]))
    cv2.imwrite(str(folder / "deep.png"), colour.astype(np.uint16) * 256)  # 16-bit
    (folder / "empty.jpg").write_bytes(b"")
    (folder / "corrupt.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"garbage" * 20)
    data = (folder / "good.jpg").read_bytes()
    (folder / "truncated.jpg").write_bytes(data[: len(data) // 3])
    (folder / "notes.csv").write_text("not,an,image\n")
    (folder / ".DS_Store").write_bytes(b"\0\0\0\1Bud1")  # a Mac's folder metadata
    (folder / "._good.jpg").write_bytes(b"\0\5\26\7")  # AppleDouble: an image name, no image
    (folder / ".thumbs").mkdir()
    cv2.imwrite(str(folder / ".thumbs" / "small.jpg"), colour)


def test_mixed_folder_skips_and_names_bad_files(tmp_path, caplog):
    mixed_folder(tmp_path)
    with caplog.at_level(logging.WARNING):
        frames = frames_from(tmp_path, min_images=1)
    names = {p.name for p in frames.paths}
    assert names >= {"good.jpg", "good.png", "good.bmp", "good.tiff", "good.webp", "grey.png",
                     "alpha.png"}
    assert not names & {"deep.png", "empty.jpg", "corrupt.png", "notes.csv"}
    (tmp_path / "gone.jpg").symlink_to(tmp_path / "deleted.jpg")
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        frames = frames_from(tmp_path, min_images=1)
    # each file left out is named with why, and what to do where something can be done
    assert "deep.png (16-bit; save it as 8-bit, as a camera delivers its frames)" in caplog.text
    assert "empty.jpg (empty: 0 bytes)" in caplog.text
    assert "truncated.jpg (truncated, damaged or not an image)" in caplog.text
    assert "gone.jpg (a broken link)" in caplog.text
    assert not names & {"._good.jpg", "small.jpg"}  # hidden files and folders: not read
    assert ".DS_Store" not in caplog.text and "._good" not in caplog.text  # nor warned about
    inputs = list(frames.inputs(SPEC))
    assert len(inputs) == len(names)
    assert all(i["images"].shape == (1, 48, 64, 3) and i["images"].dtype == np.uint8
               for i in inputs)


def test_folders_linked_in_are_read_each_once(tmp_path, caplog):
    """A user check: a calibration folder of two linked subfolders had "0 usable images", and
    a linked subfolder beside real images was dropped unsaid (`edge eval` follows them)."""
    stored = tmp_path / "stored"
    for folder, count in (("day", 3), ("night", 2)):
        (stored / folder).mkdir(parents=True)
        for index in range(count):
            cv2.imwrite(str(stored / folder / f"{folder}{index}.png"),
                        np.full((40, 60, 3), 40 * index, np.uint8))
    calibration = tmp_path / "calibration"
    (calibration / "real").mkdir(parents=True)
    cv2.imwrite(str(calibration / "real" / "own.png"), np.zeros((40, 60, 3), np.uint8))
    (calibration / "day").symlink_to(stored / "day")
    (calibration / "day again").symlink_to(stored / "day")  # the same folder twice: read once
    (stored / "night" / "up").symlink_to(stored)  # a link to a folder above: no loop
    (calibration / "night").symlink_to(stored / "night")
    with caplog.at_level(logging.WARNING):
        frames = frames_from(calibration, min_images=1)
    shown = sorted(str(path.relative_to(calibration)) for path in frames.paths)
    assert shown == ["day/day0.png", "day/day1.png", "day/day2.png",
                     "night/night0.png", "night/night1.png", "real/own.png"], shown
    assert caplog.text == ""
    only_links = tmp_path / "only-links"
    only_links.mkdir()
    (only_links / "day").symlink_to(stored / "day")
    assert len(frames_from(only_links, min_images=1).paths) == 3


def test_a_labelled_datasets_own_files_go_unmentioned(tmp_path, caplog):
    """Calibrating on an `edge collect` or YOLO dataset folder warned of its data.yaml on
    every run (a user check); a file of another kind is still named."""
    cv2.imwrite(str(tmp_path / "a.png"), np.zeros((48, 64, 3), np.uint8))
    for name in ("data.yaml", "classes.txt", "manifest.jsonl", "manifest.csv",
                 "annotations.coco.json", "a.xml", "labels.cache", "report.pdf"):
        (tmp_path / name).write_text("x\n")
    with caplog.at_level(logging.WARNING):
        frames_from(tmp_path, min_images=1)
    assert "skipped 1 file" in caplog.text
    assert ("report.pdf (a .pdf file, not one of the image types read: .bmp .jpeg .jpg .png "
            ".tif .tiff .webp)") in caplog.text
    assert "data.yaml" not in caplog.text and "manifest" not in caplog.text


def test_skipped_files_in_subfolders_are_named_with_their_folder(tmp_path, caplog):
    """A user check: a class-folder calibration set skipped "mpl_logo2.png, mpl_logo2.png,
    mpl_logo2.png, mpl_logo2.png", one in each folder, none telling which."""
    for folder in ("0", "90"):
        (tmp_path / folder).mkdir()
        cv2.imwrite(str(tmp_path / folder / "a.png"), np.zeros((48, 64, 3), np.uint8))
        (tmp_path / folder / "logo.png").write_bytes(b"\x89PNG cut")
    with caplog.at_level(logging.WARNING):
        frames_from(tmp_path, min_images=1)
    assert "skipped 2 file(s)" in caplog.text
    assert "0/logo.png (" in caplog.text and "90/logo.png (" in caplog.text


def test_too_few_usable_images_and_empty_folder(tmp_path):
    mixed_folder(tmp_path)
    with pytest.raises(InputError, match=r"usable image.*at least 50 are needed: add more, "
                                         r"or lower --min-images"):
        frames_from(tmp_path, min_images=50)
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(InputError, match="0 usable image") as error:
        frames_from(empty)
    # lowering --min-images cannot help; which files count can
    assert str(error.value).endswith(": add images (.bmp, .jpeg, .jpg, .png, .tif, .tiff, "
                                     ".webp; other files are not read)")
    (empty / "labels.txt").write_text("0 0.5 0.5 0.1 0.1\n")  # a folder of label files only
    with pytest.raises(InputError, match=r"0 usable image\(s\); .*add images \(.bmp"):
        frames_from(empty)
    for index in range(3):  # images that only look hidden: the error says why they are not read
        (empty / f".{index}.jpg").write_bytes((tmp_path / "good.jpg").read_bytes())
    with pytest.raises(InputError, match=r"other files are not read\); 3 file\(s\) here with "
                                         r"image names start with '\.' and are not read "
                                         r"\(hidden.*rename any that are images"):
        frames_from(empty)


def test_one_image_file_is_pointed_to_a_folder(tmp_path):
    cv2.imwrite(str(tmp_path / "photo.jpg"), np.zeros((48, 64, 3), np.uint8))
    with pytest.raises(InputError, match=r"photo.jpg is one image; --images takes a folder of "
                                         r"them"):
        frames_from(tmp_path / "photo.jpg")


def test_subset_is_deterministic(tmp_path):
    for i in range(30):
        cv2.imwrite(str(tmp_path / f"{i:02d}.png"), np.full((8, 8, 3), i, np.uint8))
    first = frames_from(tmp_path, max_images=10, seed=3).paths
    assert first == frames_from(tmp_path, max_images=10, seed=3).paths
    assert first != frames_from(tmp_path, max_images=10, seed=4).paths
    assert len(first) == 10


def test_video_and_synthetic_sources(tmp_path):
    writer = cv2.VideoWriter(str(tmp_path / "clip.avi"), cv2.VideoWriter_fourcc(*"MJPG"), 10,
                             (64, 48))
    for i in range(12):
        writer.write(np.full((48, 64, 3), i * 10, np.uint8))
    writer.release()
    assert frames_from(tmp_path / "clip.avi", max_images=5).count == 5
    synthetic = frames_from("synthetic://shapes?seed=2", max_images=3)
    assert len(list(synthetic.inputs(SPEC))) == 3
    with pytest.raises(InputError, match="does not exist"):
        frames_from(tmp_path / "missing")


def _grey_clip(path: Path, frames: int) -> Path:
    """An MJPG clip whose frame i is flat grey 4 * i (JPEG keeps a flat frame's value)."""
    return write_clip(path, [np.full((48, 64, 3), 4 * i, np.uint8) for i in range(frames)])


def _frame_numbers(frames) -> list[int]:
    return [round(float(image.mean()) / 4) for image in frames.images()]


def test_video_frames_are_spread_over_the_whole_clip_not_its_start(tmp_path, caplog):
    clip = _grey_clip(tmp_path / "clip.avi", 60)
    with caplog.at_level(logging.INFO):
        frames = frames_from(clip, max_images=6)
    assert frames.count == 6
    assert _frame_numbers(frames) == [5, 15, 25, 35, 45, 55]  # the middle of each tenth...
    assert "6 frames spread over its 60" in caplog.text
    shorter = frames_from(clip, max_images=100)  # fewer than asked: every one, in order
    assert shorter.count == 60 and _frame_numbers(shorter) == list(range(60))


def _numbered(index: int) -> np.ndarray:
    """A flat frame whose blue and green say `index` (< 3600) to within JPEG's rounding."""
    frame = np.zeros((48, 64, 3), np.uint8)
    frame[..., 0], frame[..., 1] = 4 * (index % 60), 4 * (index // 60)
    return frame


def _number(image: np.ndarray) -> int:
    blue, green = (round(float(image[..., channel].mean()) / 4) for channel in (0, 1))
    return blue + 60 * green


def test_frames_far_apart_are_the_picked_ones_when_reached_by_seeking(tmp_path):
    clip = write_clip(tmp_path / "long.avi", [_numbered(i) for i in range(400)])
    frames = frames_from(clip, max_images=4)  # 100 frames apart: seeks are tried and timed
    assert [_number(image) for image in frames.images()] == [50, 150, 250, 350]


def test_a_video_cut_short_is_calibrated_on_what_it_holds_with_a_warning(tmp_path, caplog):
    clip = _grey_clip(tmp_path / "clip.avi", 50)
    data = clip.read_bytes()
    clip.write_bytes(data[:len(data) // 2])  # its header still announces 50 frames
    with caplog.at_level(logging.WARNING):
        frames = frames_from(clip, max_images=8)
    assert "after" in caplog.text and "of the 50 frames its header announces" in caplog.text
    assert "cut short" in caplog.text
    numbers = _frame_numbers(frames)
    assert len(numbers) == frames.count == 8
    readable = int(re.search(r"after (\d+) of the 50", caplog.text).group(1))
    assert 10 < readable < 40
    assert numbers == sorted(numbers) and numbers[-1] >= readable * 3 // 4  # over all it holds


def test_a_file_that_is_no_video_is_refused_by_name(tmp_path):
    fake = tmp_path / "clip.mp4"
    fake.write_text("not a video")
    with pytest.raises(InputError, match=r"clip.mp4 has 0 usable frame.*OpenCV could read no "
                                         r"frame of it: not a video"):
        frames_from(fake)


PAD_SPEC = ModelSpec(task="detect", labels=("a",), head="anchor_free", output="o",
                     input=InputSpec(name="images", width=64, height=64, pad_value=114))


def _bars(buffer: np.ndarray, source_width: int, source_height: int) -> np.ndarray:
    """Every pixel of a [1, H, W, 3] input outside the letterboxed image, flattened."""
    from edge.preprocess import LetterboxGeometry

    image = buffer[0]
    geometry = LetterboxGeometry.fit(source_width, source_height, image.shape[1], image.shape[0])
    inside = np.zeros(image.shape[:2], bool)
    inside[geometry.pad_top:geometry.pad_top + geometry.resized_height,
           geometry.pad_left:geometry.pad_left + geometry.resized_width] = True
    return image[~inside]


def write_clip(path: Path, frames: list[np.ndarray]) -> Path:
    """`frames` as an MJPG video at `path`, 10 FPS."""
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 10,
                             (frames[0].shape[1], frames[0].shape[0]))
    for frame in frames:
        writer.write(frame)
    writer.release()
    return path


@pytest.mark.parametrize("kind", ["folder", "video", "synthetic"])
def test_pad_bars_hold_the_pad_value_in_every_input(tmp_path, kind):
    """Regression: the letterboxer used to remember painted buffers by id(); freed buffers' ids
    are reused, so most calibration frames kept stale pad bars. Buffers are dropped here as a
    calibration loop drops them, and memory is dirtied in between."""
    rng = np.random.default_rng(1)
    frames = [rng.integers(0, 256, (36, 80, 3), np.uint8) for _ in range(12)]
    if kind == "folder":
        for i, frame in enumerate(frames):
            cv2.imwrite(str(tmp_path / f"{i:02d}.png"), frame)
        source: str | Path = tmp_path
    elif kind == "video":
        source = write_clip(tmp_path / "clip.avi", frames)
    else:
        source = "synthetic://shapes?seed=3"
    frame_set = frames_from(source, max_images=12)
    size = (640, 480) if kind == "synthetic" else (80, 36)
    checked = 0
    for inputs in frame_set.inputs(PAD_SPEC):
        bars = _bars(inputs["images"], *size)
        assert bars.size > 0
        assert np.all(bars == 114), f"frame {checked}: {np.count_nonzero(bars != 114)} stale"
        checked += 1
        del inputs, bars
        garbage = np.full((1, 64, 64, 3), 7, np.uint8)  # the next np.empty may reuse this memory
        del garbage
    assert checked == 12


@pytest.mark.parametrize(("uri", "expected"), [
    ("synthetic://shapes?seed=4&width=320&height=240", (4, 240, 320)),
    ("synthetic://shapes", (0, 480, 640)),
])
def test_synthetic_frames_parsed_like_the_camera_source(uri, expected):
    frames = frames_from(uri, max_images=2)
    image = next(frames.images())
    assert (frames.synthetic_seed, *image.shape[:2]) == expected


@pytest.mark.parametrize(("uri", "message"), [
    ("synthetic://shapes?sead=4", "unknown option(s) sead"),
    ("synthetic://shapes?seed=x", "option seed"),
    ("synthetic://cubes", "unknown synthetic scene"),
])
def test_bad_synthetic_uris_name_the_problem(uri, message):
    with pytest.raises(EdgeError, match=re.escape(message)):
        frames_from(uri)


def test_prefetched_starts_at_once_keeps_order_and_stays_bounded():
    produced: list[int] = []
    started = threading.Event()

    def items():
        for index in range(20):
            produced.append(index)
            started.set()
            yield index

    with Prefetched(items(), depth=4) as ready:
        assert started.wait(5)  # before anything was read
        time.sleep(0.2)
        assert len(produced) <= 4 + 2  # the queue, the item being put, the next one made
        assert list(ready) == list(range(20))
        assert list(ready) == []


def test_prefetched_hands_the_producer_error_to_the_reader_and_close_stops_it():
    def failing():
        yield 1
        raise InputError("frame 2 is broken")

    ready = Prefetched(failing())
    assert next(ready) == 1
    with pytest.raises(InputError, match="frame 2 is broken"):
        next(ready)

    made: list[int] = []

    def endless():
        index = 0
        while True:
            made.append(index)
            index += 1
            yield index

    with Prefetched(endless(), depth=2) as ready:
        assert next(ready) == 1
    time.sleep(0.2)
    stopped_at = len(made)
    time.sleep(0.2)
    assert len(made) == stopped_at  # the worker has ended

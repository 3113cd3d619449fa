from __future__ import annotations

import cv2
import numpy as np
import pytest

from edge.errors import InputError
from edge.preprocess import Letterboxer, LetterboxGeometry, letterbox


@pytest.mark.parametrize(
    ("source", "target", "scale", "resized", "pad"),
    [
        ((640, 480), (320, 320), 0.5, (320, 240), (0, 40)),
        ((1920, 1080), (640, 640), 1 / 3, (640, 360), (0, 140)),
        ((480, 640), (320, 320), 0.5, (240, 320), (40, 0)),
        ((320, 320), (320, 320), 1.0, (320, 320), (0, 0)),
        ((100, 50), (320, 320), 3.2, (320, 160), (0, 80)),
    ],
)
def test_geometry_fits_and_centres(source, target, scale, resized, pad):
    geometry = LetterboxGeometry.fit(*source, *target)
    assert (geometry.scale_x, geometry.scale_y) == (pytest.approx(scale), pytest.approx(scale))
    assert (geometry.resized_width, geometry.resized_height) == resized
    assert (geometry.pad_left, geometry.pad_top) == pad


def test_boxes_round_trip_between_source_and_input():
    geometry = LetterboxGeometry.fit(1920, 1080, 640, 640)
    boxes = np.array([[100, 200, 500, 700], [0, 0, 1920, 1080]], np.float32)
    back = geometry.boxes_to_source(geometry.boxes_to_input(boxes))
    np.testing.assert_allclose(back, boxes, atol=1e-3)


def test_boxes_reaching_into_the_pad_bars_are_clipped_to_the_source_frame():
    """A detector's box can reach past the image into the pad bars (a face at the top edge of
    a 512x512 photo letterboxed to 320x320 came out as y1 = -0.9); published boxes are in the
    source frame. The clip once wrote into a copy and was lost."""
    geometry = LetterboxGeometry.fit(1280, 720, 320, 320)  # pad bars above and below
    boxes = np.array([[-10, 30, 400, 200], [50, 100, 250, 300], [100, 40, 120, 60]], np.float32)
    mapped = geometry.boxes_to_source(boxes.copy())
    # scale 1/4, 70 px bars above and below: y = (y_input - 70) * 4
    np.testing.assert_allclose(mapped, [[0, 0, 1280, 520], [200, 120, 1000, 720],
                                        [400, 0, 480, 0]])


def test_letterbox_matches_the_naive_reference():
    rng = np.random.default_rng(0)
    frame = rng.integers(0, 256, (1080, 1920, 3), dtype=np.uint8)
    buffer = np.zeros((2, 640, 640, 3), np.uint8)
    geometry = Letterboxer(pad_value=114)(frame, buffer, slot=1)
    reference = np.full((640, 640, 3), 114, np.uint8)
    reference[140:500] = cv2.resize(frame, (640, 360), interpolation=cv2.INTER_LINEAR)
    np.testing.assert_array_equal(buffer[1], reference)
    assert not buffer[0].any(), "other slots must stay untouched"
    assert geometry.pad_top == 140


def _reference(frame: np.ndarray, region: tuple[slice, slice], size: tuple[int, int],
               at: tuple[int, int], target: tuple[int, int]) -> np.ndarray:
    """By hand: `frame[region]` resized to `size` (w, h), placed at `at` (x, y) in a pad-114
    image of `target` (w, h)."""
    out = np.full((target[1], target[0], 3), 114, np.uint8)
    part = cv2.resize(np.ascontiguousarray(frame[region]), size, interpolation=cv2.INTER_LINEAR)
    out[at[1]:at[1] + size[1], at[0]:at[0] + size[0]] = part
    return out


@pytest.mark.parametrize(("resize", "region", "size", "at"), [
    # 1280x720 into 320x256: scale 1/4 fits 320x180
    ("letterbox", (slice(None), slice(None)), (320, 180), (0, 38)),
    ("letterbox-top-left", (slice(None), slice(None)), (320, 180), (0, 0)),
    ("stretch", (slice(None), slice(None)), (320, 256), (0, 0)),
    # covering: scale 256/720, the centre 900x720 of the frame
    ("crop", (slice(0, 720), slice(190, 1090)), (320, 256), (0, 0)),
])
def test_each_resize_writes_what_the_network_was_trained_on(resize, region, size, at):
    """The four ways of `edge convert --resize`, pixel for pixel against a resize by hand, and
    boxes mapped back to the source frame exactly."""
    frame = np.random.default_rng(3).integers(0, 256, (720, 1280, 3), np.uint8)
    buffer = np.zeros((1, 256, 320, 3), np.uint8)
    geometry = Letterboxer(resize=resize)(frame, buffer)
    np.testing.assert_array_equal(buffer[0], _reference(frame, region, size, at, (320, 256)))
    # a box around the part of the frame the input shows maps to the input's picture area
    left, top = region[1].start or 0, region[0].start or 0
    shown = np.array([[left, top, left + (region[1].stop or 1280) - left,
                       top + (region[0].stop or 720) - top]], np.float32)
    np.testing.assert_allclose(geometry.boxes_to_input(shown),
                               [[at[0], at[1], at[0] + size[0], at[1] + size[1]]], atol=1e-3)
    inside = np.array([[300, 100, 700, 500]], np.float32)
    np.testing.assert_allclose(geometry.boxes_to_source(geometry.boxes_to_input(inside)),
                               inside, atol=1e-3)


def test_a_crop_clips_boxes_to_the_source_and_a_stretch_scales_each_axis():
    crop = LetterboxGeometry.fit(1280, 720, 320, 320, "crop")  # the centre 720x720
    assert (crop.crop_left, crop.crop_width, crop.scale_x) == (280, 720, pytest.approx(4 / 9))
    # a box over the whole input covers the centre square of the frame
    np.testing.assert_allclose(crop.boxes_to_source(np.array([[0, 0, 320, 320]], np.float32)),
                               [[280, 0, 1000, 720]], atol=1e-3)
    stretch = LetterboxGeometry.fit(1280, 720, 320, 320, "stretch")
    np.testing.assert_allclose(
        stretch.boxes_to_source(np.array([[32, 32, 64, 64]], np.float32)),
        [[128, 72, 256, 144]], atol=1e-3)


def test_letterbox_writes_in_place_and_repaints_padding_when_geometry_changes():
    buffer = np.zeros((1, 320, 320, 3), np.uint8)
    letterboxer = Letterboxer(pad_value=7)
    letterboxer(np.full((480, 640, 3), 200, np.uint8), buffer)  # bars top and bottom
    assert buffer[0, 0, 0, 0] == 7 and buffer[0, 160, 160, 0] == 200
    letterboxer(np.full((640, 480, 3), 100, np.uint8), buffer)  # bars left and right now
    assert buffer[0, 0, 0, 0] == 7 and buffer[0, 0, 160, 0] == 100 and buffer[0, 160, 0, 0] == 7


def test_rgb_models_get_swapped_channels():
    frame = np.zeros((320, 320, 3), np.uint8)
    frame[..., 0] = 255  # blue in BGR
    out, _ = letterbox(frame, 320, 320)
    buffer = np.zeros((1, 320, 320, 3), np.uint8)
    Letterboxer(swap_channels=True)(frame, buffer)
    assert out[0, 0, 0] == 255 and buffer[0, 0, 0, 2] == 255 and buffer[0, 0, 0, 0] == 0


@pytest.mark.parametrize(
    "frame",
    [np.zeros((10, 10), np.uint8), np.zeros((10, 10, 4), np.uint8),
     np.zeros((10, 10, 3), np.uint16)],
    ids=["grey", "bgra", "uint16"],
)
def test_bad_frames_are_rejected(frame):
    with pytest.raises(InputError, match="uint8"):
        Letterboxer()(frame, np.zeros((1, 32, 32, 3), np.uint8))


def test_each_letterbox_sizes_its_image_as_its_own_training_code_did():
    """Ultralytics rounds the resized size, YOLOX (and ddddocr) truncate it: 550x660 into 416
    is 346.67 px wide, and 660 * (416 / 660) is 415.99999999999994 in floating point, which
    YOLOX's `int(h * r)` makes 415."""
    centred = LetterboxGeometry.fit(550, 660, 416, 416)
    assert (centred.resized_width, centred.resized_height) == (347, 416)
    top_left = LetterboxGeometry.fit(550, 660, 416, 416, "letterbox-top-left")
    assert (top_left.resized_width, top_left.resized_height, top_left.pad_left) == (346, 415, 0)


def _smooth_frame(width: int, height: int) -> np.ndarray:
    """Low-frequency content, so resampling the same scene two ways agrees closely."""
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    channels = [127 + 120 * np.sin(x / 37 + k) * np.cos(y / 29 - k) for k in range(3)]
    return np.clip(np.dstack(channels), 0, 255).astype(np.uint8)


@pytest.mark.parametrize(("resize", "reference_size"), [("crop", None), ("stretch", (256, 256))])
def test_a_crop_fraction_is_resize_256_then_centre_crop_224(resize, reference_size):
    """torchvision's ImageNet evaluation (Resize(256), CenterCrop(224); with a square Resize,
    open-nsfw's) against `--resize crop|stretch --crop-fraction 0.875`: the same centre of the
    frame, resampled once instead of twice."""
    frame = _smooth_frame(640, 480)
    size = reference_size or (round(640 * 256 / 480), 256)  # the shorter side to 256
    resized = cv2.resize(frame, size, interpolation=cv2.INTER_LINEAR)
    left, top = (size[0] - 224) // 2, (size[1] - 224) // 2
    reference = resized[top:top + 224, left:left + 224]
    buffer = np.zeros((1, 224, 224, 3), np.uint8)
    geometry = Letterboxer(resize=resize, crop_fraction=224 / 256)(frame, buffer)
    # resampled once, and the crop offsets rounded once: within a pixel of the frame
    assert np.abs(buffer[0].astype(int) - reference).mean() < 2.0
    expected = (420, 420) if resize == "crop" else (560, 420)  # 0.875 of 480 / of 640x480
    assert (geometry.crop_width, geometry.crop_height) == expected
    # a box over the whole input is that centre of the frame
    np.testing.assert_allclose(geometry.boxes_to_source(np.array([[0, 0, 224, 224]],
                                                                 np.float32)),
                               [[(640 - expected[0]) / 2, 30, (640 + expected[0]) / 2, 450]],
                               atol=1e-3)

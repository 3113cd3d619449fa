"""Image decoding for calibration: JPEG headers, the cheap usability check, decoding in order."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from calibration.images import jpeg_size, read_image, usable_image_size
from calibration.readers import decoded_in_order


def jpeg(width: int, height: int, **params: int) -> bytes:
    image = np.random.default_rng(0).integers(0, 256, (height, width, 3), np.uint8)
    flags = [cv2.IMWRITE_JPEG_PROGRESSIVE, params.get("progressive", 0)]
    ok, data = cv2.imencode(".jpg", image, flags)
    assert ok
    return data.tobytes()


@pytest.mark.parametrize(("data", "size"), [
    (jpeg(64, 48), (64, 48)),
    (jpeg(33, 17, progressive=1), (33, 17)),
    (jpeg(64, 48)[:10], None),  # header cut short
    (b"\x89PNG\r\n\x1a\n", None),
    (b"", None),
])
def test_jpeg_size_from_the_header(data, size):
    assert jpeg_size(data) == size


def test_full_decode_and_cheap_check(tmp_path):
    path = tmp_path / "big.jpg"
    path.write_bytes(jpeg(1280, 720))
    assert read_image(path).shape == (720, 1280, 3)
    assert usable_image_size(path) == (1280, 720)
    (tmp_path / "cut.jpg").write_bytes(path.read_bytes()[:20])
    assert usable_image_size(tmp_path / "cut.jpg") is None
    assert read_image(tmp_path / "cut.jpg") is None


def test_sizes_of_other_formats_come_from_the_decoded_frame(tmp_path):
    grey = tmp_path / "grey.png"
    cv2.imwrite(str(grey), np.full((30, 50), 128, np.uint8))
    deep = tmp_path / "deep.png"
    cv2.imwrite(str(deep), np.full((30, 50, 3), 1000, np.uint16))
    assert usable_image_size(grey) == (50, 30) and read_image(grey).shape == (30, 50, 3)
    assert usable_image_size(deep) is None and read_image(deep) is None


def test_parallel_decoding_keeps_the_order_and_the_pixels(tmp_path):
    paths = []
    for index in range(9):
        path = tmp_path / f"{index}.jpg"
        cv2.imwrite(str(path), np.full((48 + index, 64, 3), 20 * index, np.uint8))
        paths.append(path)
    (tmp_path / "bad.jpg").write_bytes(b"not a jpeg")
    paths.insert(4, tmp_path / "bad.jpg")
    sequential = list(decoded_in_order(paths, threads=1))
    parallel = list(decoded_in_order(paths, threads=3))
    assert [None if i is None else i.shape[0] for i in parallel] == \
        [48, 49, 50, 51, None, 52, 53, 54, 55, 56]
    for one, other in zip(sequential, parallel, strict=True):
        assert (one is None and other is None) or np.array_equal(one, other)

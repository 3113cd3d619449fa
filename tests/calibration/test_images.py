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


def _with_orientation(image: np.ndarray, orientation: int, byte_order: str) -> bytes:
    """A JPEG of `image` (its stored pixels) with an EXIF block that sets `orientation`, in
    `byte_order` ("II" little-endian, as phones write it, or "MM"), behind a JFIF APP0."""
    ok, data = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, 100])
    assert ok
    order = "little" if byte_order == "II" else "big"
    entry = ((0x0112).to_bytes(2, order) + (3).to_bytes(2, order) + (1).to_bytes(4, order)
             + orientation.to_bytes(2, order) + b"\0\0")
    tiff = (byte_order.encode() + (42).to_bytes(2, order) + (8).to_bytes(4, order)
            + (1).to_bytes(2, order) + entry + (0).to_bytes(4, order))
    segment = b"Exif\0\0" + tiff
    app1 = b"\xff\xe1" + (len(segment) + 2).to_bytes(2, "big") + segment
    raw = data.tobytes()
    return raw[:2] + app1 + raw[2:]


@pytest.mark.parametrize("byte_order", ["II", "MM"])
@pytest.mark.parametrize("orientation", [1, 3, 6, 8])
def test_a_phone_photo_is_read_upright_with_its_upright_size(tmp_path, orientation, byte_order):
    """A phone stores a portrait photo as landscape pixels with an EXIF orientation; it was
    decoded sideways (OpenCV's IMREAD_UNCHANGED ignores the tag), so a YOLO label drawn on the
    upright photo, as Ultralytics reads it, fell on other pixels."""
    from PIL import Image, ImageOps

    stored = np.zeros((40, 80, 3), np.uint8)
    stored[:10, :20] = 255  # a white block in the stored top-left corner
    path = tmp_path / "phone.jpg"
    path.write_bytes(_with_orientation(stored, orientation, byte_order))
    upright = np.asarray(ImageOps.exif_transpose(Image.open(path)))[..., ::-1]
    image = read_image(path)
    assert image is not None and image.shape == upright.shape
    assert usable_image_size(path) == (image.shape[1], image.shape[0])
    assert np.abs(image.astype(int) - upright.astype(int)).max() <= 8  # decoders' rounding
    assert image.shape[:2] == ((80, 40) if orientation in (6, 8) else (40, 80))

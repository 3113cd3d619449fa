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


def _camera_like(width: int, height: int) -> np.ndarray:
    """Smooth gradients with noise and sharp edges: what JPEG's subsampling and IDCT round
    differently when decoders differ."""
    rng = np.random.default_rng(width * height)
    y, x = np.mgrid[0:height, 0:width]
    image = np.stack([x * 255 // width, y * 255 // height, (x + y) % 256], -1).astype(np.int16)
    image += rng.integers(-20, 21, image.shape, dtype=np.int16)
    image[height // 3:height // 2, width // 4:width // 2] = (250, 10, 30)
    return np.clip(image, 0, 255).astype(np.uint8)


def _encoded(image: np.ndarray, *flags: int) -> bytes:
    ok, data = cv2.imencode(".jpg", image, list(flags))
    assert ok
    return data.tobytes()


@pytest.mark.parametrize("flags", [
    (),  # 4:2:0, as cameras write
    (cv2.IMWRITE_JPEG_SAMPLING_FACTOR, cv2.IMWRITE_JPEG_SAMPLING_FACTOR_444),
    (cv2.IMWRITE_JPEG_SAMPLING_FACTOR, cv2.IMWRITE_JPEG_SAMPLING_FACTOR_422),
    (cv2.IMWRITE_JPEG_PROGRESSIVE, 1),
    (cv2.IMWRITE_JPEG_QUALITY, 30),
    (cv2.IMWRITE_JPEG_RST_INTERVAL, 4),
], ids=["420", "444", "422", "progressive", "quality30", "restarts"])
@pytest.mark.parametrize("size", [(1280, 720), (333, 201)])
def test_jpegs_decode_to_opencvs_pixels_exactly(tmp_path, flags, size):
    """The fast JPEG path must not move a calibration range: its pixels are OpenCV's own."""
    path = tmp_path / "frame.jpg"
    path.write_bytes(_encoded(_camera_like(*size), *flags))
    expected = cv2.imread(str(path), cv2.IMREAD_COLOR)
    image = read_image(path)
    assert image is not None and image.dtype == np.uint8 and image.flags.c_contiguous
    assert np.array_equal(image, expected)


def test_a_grey_jpeg_decodes_to_three_equal_channels_as_opencv_does(tmp_path):
    path = tmp_path / "grey.jpg"
    path.write_bytes(_encoded(cv2.cvtColor(_camera_like(160, 90), cv2.COLOR_BGR2GRAY)))
    image = read_image(path)
    assert image is not None and image.shape == (90, 160, 3)
    assert np.array_equal(image, cv2.imread(str(path), cv2.IMREAD_COLOR))
    assert np.array_equal(image[..., 0], image[..., 2])


@pytest.mark.parametrize("orientation", range(1, 9))
def test_every_exif_orientation_is_turned_as_opencv_turns_it(tmp_path, orientation):
    path = tmp_path / "phone.jpg"
    path.write_bytes(_with_orientation(_camera_like(96, 40), orientation, "II"))
    image = read_image(path)
    assert image is not None
    assert np.array_equal(image, cv2.imread(str(path), cv2.IMREAD_COLOR))


def test_a_cmyk_jpeg_decodes_to_opencvs_pixels(tmp_path):
    from PIL import Image

    path = tmp_path / "cmyk.jpg"
    Image.fromarray(_camera_like(128, 96)[..., ::-1]).convert("CMYK").save(path)
    image = read_image(path)
    assert image is not None and np.array_equal(image, cv2.imread(str(path), cv2.IMREAD_COLOR))


def test_a_damaged_jpeg_is_left_to_opencv(tmp_path, monkeypatch):
    """Strict decoding refuses what libjpeg only warns about (damaged scan data): the frame is
    then read as OpenCV reads it, as before; a good JPEG never reaches OpenCV."""
    pytest.importorskip("simplejpeg")  # the convert extra's; a device reads JPEGs with OpenCV
    from calibration import images

    calls = []
    imdecode = cv2.imdecode
    monkeypatch.setattr(images.cv2, "imdecode", lambda *a: calls.append(1) or imdecode(*a))
    good = tmp_path / "good.jpg"
    good.write_bytes(_encoded(_camera_like(128, 96)))
    assert read_image(good) is not None and calls == []

    damaged = tmp_path / "damaged.jpg"
    data = bytearray(good.read_bytes())
    scan = data.index(b"\xff\xda") + 40
    data[scan:scan + 30] = bytes(range(30))
    damaged.write_bytes(bytes(data))
    image = read_image(damaged)
    assert calls
    assert image is not None and np.array_equal(image, cv2.imread(str(damaged), cv2.IMREAD_COLOR))


def test_without_simplejpeg_opencv_decodes_the_same_pixels(tmp_path, monkeypatch):
    """A device's install (the jetson extra, whose hardware self-test reads images here) has
    no simplejpeg: it failed with ModuleNotFoundError; now OpenCV decodes every JPEG."""
    from calibration import images

    paths = []
    for index, orientation in enumerate((1, 6, 8)):
        path = tmp_path / f"{index}.jpg"
        path.write_bytes(_with_orientation(_camera_like(96, 40), orientation, "II"))
        paths.append(path)
    fast = [read_image(path) for path in paths]
    monkeypatch.setattr(images, "simplejpeg", None)
    for path, expected in zip(paths, fast, strict=True):
        image = read_image(path)
        assert image is not None and np.array_equal(image, expected)

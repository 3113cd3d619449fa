"""Image files -> BGR frames, decoded no larger than the model needs.

A camera-sized JPEG (1920x1080) fed to a 320x320 model is shrunk 6x by the letterbox anyway.
libjpeg can decode at 1/2, 1/4 or 1/8 scale by dropping DCT coefficients (OpenCV's
`IMREAD_REDUCED_*`), 2-3x faster than a full decode. A reduced decode averages pixels where
the device's bilinear letterbox samples them, so it smooths sensor noise the device keeps; the
largest scale that leaves the image at least twice its letterboxed size is used, which keeps
the median range within 1% of a full decode's (measured on the demo detector: 0.2% or less
for minmax, percentile and mse; the largest percentile range deviation 0.2-1.4%; entropy's
search jumps by a few percent, tests/calibration/test_images.py). Evaluation reads full
frames: its boxes are in source pixels.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import cv2
import numpy as np
import numpy.typing as npt

_REDUCED_COLOUR = {2: cv2.IMREAD_REDUCED_COLOR_2, 4: cv2.IMREAD_REDUCED_COLOR_4,
                   8: cv2.IMREAD_REDUCED_COLOR_8}
# Start-of-frame markers (baseline, progressive, lossless...): C0-CF less DHT, JPG and DAC.
_SOF_MARKERS = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}
_STANDALONE_MARKERS = frozenset({0x01, *range(0xD0, 0xD9)})  # TEM, RSTn, SOI, EOI


def jpeg_size(data: bytes | npt.NDArray[np.uint8]) -> tuple[int, int] | None:
    """(width, height) from a JPEG's start-of-frame header, or None when `data` is not a JPEG
    or its header is cut short."""
    raw = data.tobytes() if isinstance(data, np.ndarray) else data
    if raw[:2] != b"\xff\xd8":
        return None
    index = 2
    while index + 4 <= len(raw):
        if raw[index] != 0xFF:
            return None
        marker = raw[index + 1]
        if marker == 0xFF:  # fill byte
            index += 1
        elif marker in _STANDALONE_MARKERS:
            index += 2
        elif marker in _SOF_MARKERS:
            if index + 9 > len(raw):
                return None
            height = int.from_bytes(raw[index + 5:index + 7], "big")
            width = int.from_bytes(raw[index + 7:index + 9], "big")
            return (width, height) if width and height else None
        else:
            index += 2 + int.from_bytes(raw[index + 2:index + 4], "big")
    return None


def reduction_for(width: int, height: int, fit: tuple[int, int]) -> int:
    """1, 2, 4 or 8: the largest JPEG scale-down after which a `width` x `height` image is still
    at least twice its letterboxed size in a `fit` = (width, height) model input."""
    scale = min(fit[0] / width, fit[1] / height)
    factor = 1
    while factor < 8 and scale * factor * 4 <= 1.0:
        factor *= 2
    return factor


def read_image(path: Path, fit: tuple[int, int] | None = None) -> npt.NDArray[np.uint8] | None:
    """BGR uint8 [H, W, 3], or None for anything that is not a usable 8-bit image (corrupt,
    truncated, empty, 16-bit, not an image). Grey images are expanded to three channels.

    With `fit` (the model input's width, height), a large JPEG is decoded at a reduced scale
    (module docstring); otherwise at full size."""
    data = _file_bytes(path)
    if data is None:
        return None
    size = jpeg_size(data) if fit is not None else None
    factor = reduction_for(*size, fit) if size is not None and fit is not None else 1
    if factor > 1:
        # IMREAD_UNCHANGED ignores EXIF orientation; the reduced decode must do the same
        flags = _REDUCED_COLOUR[factor] | cv2.IMREAD_IGNORE_ORIENTATION
        image = cv2.imdecode(data, flags)
    else:
        image = cv2.imdecode(data, cv2.IMREAD_UNCHANGED)
    return _bgr(image)


def is_usable_image(path: Path) -> bool:
    """Whether `read_image` would return a frame. A JPEG with a frame header and its end marker
    is taken without decoding (libjpeg decodes any such file, damaged data or not); a JPEG cut
    short gets a 1/8-scale grey decode, anything else a full one."""
    data = _file_bytes(path)
    if data is None:
        return False
    if jpeg_size(data) is not None:
        if data[-2:].tobytes() == b"\xff\xd9":
            return True
        image = cv2.imdecode(data, cv2.IMREAD_REDUCED_GRAYSCALE_8)
        return image is not None and image.size > 0
    return _bgr(cv2.imdecode(data, cv2.IMREAD_UNCHANGED)) is not None


def _file_bytes(path: Path) -> npt.NDArray[np.uint8] | None:
    try:
        if path.stat().st_size == 0:
            return None
        return np.fromfile(path, np.uint8)
    except OSError:
        return None


def _bgr(image: npt.NDArray[Any] | None) -> npt.NDArray[np.uint8] | None:
    if image is None or image.dtype != np.uint8 or image.size == 0:
        return None
    if image.ndim == 2:
        image = cv2.cvtColor(image, cv2.COLOR_GRAY2BGR)
    elif image.shape[2] == 4:
        image = cv2.cvtColor(image, cv2.COLOR_BGRA2BGR)
    if image.ndim != 3 or image.shape[2] != 3:
        return None
    return np.asarray(image, np.uint8)

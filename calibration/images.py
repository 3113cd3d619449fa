"""Image files -> BGR frames, decoded in full and turned upright.

A phone stores a portrait photo as landscape pixels with an EXIF orientation tag; it is
decoded as `cv2.imread` reads it (and Ultralytics, whose labels are drawn on the upright
image, and the device's image-folder source), turned by the tag, and its size read from the
header is the upright one too.

Calibration frames are decoded at full size, as the device decodes its camera frames, so the
letterbox sees the same pixels and the ranges are those of the frames the device will see.
libjpeg can decode at 1/2, 1/4 or 1/8 scale (OpenCV's `IMREAD_REDUCED_*`), 2-3x faster, and
an earlier version did for JPEGs at least twice the letterboxed size; but a reduced decode
averages the sensor noise that the device's bilinear letterbox keeps, which moved a few
early-layer ranges by 1.4-3%, and decoding on two threads instead (calibration.readers) made
whole runs as fast or faster (256 camera JPEGs into the demo detector: 3.3-3.4 s vs 3.7-3.9 s
reduced; 128 into a YOLOv8n: the same 5.3-5.7 s, inference-bound).

JPEGs are decoded by libjpeg-turbo's TurboJPEG interface (simplejpeg): the same pixels as
`cv2.imdecode` (the same library underneath, at its exact IDCT and smooth upsampling) in
about 60% of its time on camera frames (OpenCV 5.1: 5.9 ms against 3.6 ms a 720p-1080p
frame). What it refuses or only decodes with a warning (CMYK, 12-bit samples, damaged data)
is left to OpenCV, which decides as it always did; so is every JPEG where simplejpeg is not
installed (the `convert` extra installs it; a device's `jetson` install, whose self-test reads
images here, need not).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Literal

import cv2
import numpy as np
import numpy.typing as npt

from edge.sources.jpeg_end import jpeg_cut_short

try:  # the convert extra installs it; a device's install (the jetson extra) may not
    import simplejpeg
except ImportError:
    simplejpeg = None

# Start-of-frame markers (baseline, progressive, lossless...): C0-CF less DHT, JPG and DAC.
_SOF_MARKERS = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}
_STANDALONE_MARKERS = frozenset({0x01, *range(0xD0, 0xD9)})  # TEM, RSTn, SOI, EOI
_APP1 = 0xE1  # where a JPEG keeps its EXIF block
_ORIENTATION_TAG = 0x0112
#: EXIF orientations that turn the image a quarter: its width and height trade places.
_QUARTER_TURNS = frozenset({5, 6, 7, 8})
#: As `cv2.imread` decodes (turned upright by EXIF, greys and alpha as three channels), but
#: keeping 16 bits so that such a file can be named as what it is.
_DECODE = cv2.IMREAD_COLOR | cv2.IMREAD_ANYDEPTH
#: Bytes searched for a JPEG's start-of-frame header (the EXIF block before it holds
#: at most 64 kB, and a thumbnail in it counts within that).
_HEADER_SEARCH = 1 << 17
_END_OF_IMAGE = b"\xff\xd9"


def jpeg_size(data: bytes | npt.NDArray[np.uint8]) -> tuple[int, int] | None:
    """(width, height) of a JPEG as it is shown, upright (its start-of-frame header's, traded
    where its EXIF orientation turns it a quarter), or None when `data` is not a JPEG or its
    header is cut short."""
    header = _jpeg_header(data.tobytes() if isinstance(data, np.ndarray) else data)
    if header is None:
        return None
    width, height, orientation = header
    return (height, width) if orientation in _QUARTER_TURNS else (width, height)


def _jpeg_header(raw: bytes) -> tuple[int, int, int] | None:
    """(stored width, stored height, EXIF orientation 1-8, 1 without one) from a JPEG's
    markers up to its start-of-frame header, or None when `raw` is not a JPEG or its header
    is cut short."""
    if raw[:2] != b"\xff\xd8":
        return None
    orientation = 1
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
            return (width, height, orientation) if width and height else None
        else:
            length = int.from_bytes(raw[index + 2:index + 4], "big")
            if marker == _APP1:
                orientation = exif_orientation(raw[index + 4:index + 2 + length]) or orientation
            index += 2 + length
    return None


def exif_orientation(segment: bytes) -> int | None:
    """The orientation (1-8) an APP1 segment's EXIF block records, or None where it holds
    none (XMP, say) or is cut short: `Exif\\0\\0`, a TIFF header (II or MM byte order), then
    the first directory's 12-byte entries."""
    if segment[:6] != b"Exif\x00\x00" or segment[6:8] not in (b"II", b"MM"):
        return None
    tiff = segment[6:]
    order: Literal["little", "big"] = "little" if tiff[:2] == b"II" else "big"
    directory = int.from_bytes(tiff[4:8], order)
    if directory + 2 > len(tiff):
        return None
    for entry in range(int.from_bytes(tiff[directory:directory + 2], order)):
        start = directory + 2 + 12 * entry
        if start + 12 > len(tiff):
            return None
        if int.from_bytes(tiff[start:start + 2], order) == _ORIENTATION_TAG:
            value = int.from_bytes(tiff[start + 8:start + 10], order)  # a SHORT, left-aligned
            return value if 1 <= value <= 8 else None
    return None


def files_below(folder: Path) -> list[Path]:
    """Every file below `folder` (and every link to nothing, for the caller to name), sorted,
    through links to folders too, as `edge eval`'s class folders are followed and as a user
    links a dataset in (a user check: a calibration folder of two linked subfolders had "0
    usable images"). Each real folder is walked once, so a folder linked twice is read once
    and a link to a folder above cannot loop. Paths are as seen from `folder`, links not
    resolved."""
    found: list[Path] = []
    walked: set[str] = set()
    for top, folders, files in os.walk(folder, followlinks=True):
        real = os.path.realpath(top)
        if real in walked:  # linked twice, or a link to a folder above
            folders.clear()
            continue
        walked.add(real)
        folders.sort()  # which of two links to one folder is read: the first by name
        found += [Path(top, name) for name in files]
    return sorted(found)


def is_hidden(path: Path, root: Path) -> bool:
    """Whether `path` is, or lies in, a hidden file or folder below `root` (.DS_Store, macOS's
    ._photo.jpg, .thumbs/): never an image of the user's, never worth a warning."""
    return any(part.startswith(".") for part in path.relative_to(root).parts)


def shown_path(path: Path, root: Path | None) -> str:
    """`270/readme.jpg`: an image relative to the folder it was found in, `root` (a dataset's,
    a calibration set's: a name alone may be in any class folder), or with its own folder
    where it lies outside."""
    if root is not None and path.is_relative_to(root):
        return str(path.relative_to(root))
    return f"{path.parent.name}/{path.name}" if path.parent.name else path.name


def read_image(path: Path) -> npt.NDArray[np.uint8] | None:
    """BGR uint8 [H, W, 3], or None for anything that is not a usable 8-bit image (corrupt,
    truncated, empty, 16-bit, not an image). Grey images are expanded to three channels."""
    data = _file_bytes(path)
    if data is None:
        return None
    return _bgr(_decoded(data))


def _decoded(data: npt.NDArray[np.uint8]) -> npt.NDArray[Any] | None:
    """`data` decoded as `cv2.imdecode(data, _DECODE)` decodes it, JPEGs faster (see the
    module's docstring)."""
    header = _jpeg_header(data[:_HEADER_SEARCH].tobytes())
    if header is not None and _cut_short(data):
        return None  # OpenCV before 5 decodes it, the missing part grey (a user check)
    if header is not None and simplejpeg is not None:
        try:  # strict: a warning (damaged data, say) is an error, and OpenCV decides
            decoded = simplejpeg.decode_jpeg(data, colorspace="BGR")
        except ValueError:
            pass
        else:
            return upright(decoded, header[2])
    return cv2.imdecode(data, _DECODE)


def upright(image: npt.NDArray[Any], orientation: int) -> npt.NDArray[Any]:
    """`image` as stored, turned as its EXIF `orientation` (1-8) says it is shown."""
    if orientation in _QUARTER_TURNS:
        image = cv2.transpose(image)  # 5: as shown; 6, 7 and 8 then a flip more
        orientation = {5: 1, 6: 2, 7: 3, 8: 4}[orientation]
    flip = {2: 1, 3: -1, 4: 0}.get(orientation)  # mirrored, half a turn, upside down
    return image if flip is None else cv2.flip(image, flip)


def usable_image_size(path: Path) -> tuple[int, int] | None:
    """(width, height) of the frame `read_image` would return, or None where it would return
    none. A JPEG with a frame header and its end marker is taken on its header, without
    decoding (libjpeg decodes any such file, damaged data or not); a JPEG cut short is none; one
    with data after its end marker gets a 1/8-scale grey decode, anything else a full one."""
    data = _file_bytes(path)
    if data is None:
        return None
    size = jpeg_size(data)
    if size is not None:
        if data[-2:].tobytes() == _END_OF_IMAGE:
            return size
        if _cut_short(data):
            return None
        image = cv2.imdecode(data, cv2.IMREAD_REDUCED_GRAYSCALE_8)
        return size if image is not None and image.size > 0 else None
    decoded = _bgr(cv2.imdecode(data, _DECODE))
    return None if decoded is None else (decoded.shape[1], decoded.shape[0])


def unusable_reason(path: Path) -> str:
    """Why `read_image` returns no frame for `path`, with the fix where there is one (for
    the warning that names the files left out)."""
    if path.is_symlink() and not path.exists():
        return "a broken link"
    try:
        if path.stat().st_size == 0:
            return "empty: 0 bytes"
        data = np.fromfile(path, np.uint8)
    except OSError as exc:
        return f"unreadable: {exc.strerror}"
    decoded = cv2.imdecode(data, _DECODE)
    if decoded is not None and decoded.size and decoded.dtype != np.uint8:
        bits = 8 * decoded.dtype.itemsize
        return f"{bits}-bit; save it as 8-bit, as a camera delivers its frames"
    return "truncated, damaged or not an image"


def _cut_short(data: npt.NDArray[np.uint8]) -> bool:
    """Whether `data`, a JPEG, stops before its end-of-image marker: libjpeg decodes such a
    file, the missing part grey (OpenCV 5 refuses it; 4.8, JetPack 6's, does not). A file that
    ends in the marker is whole, the common case, checked without a copy."""
    return data[-2:].tobytes() != _END_OF_IMAGE and jpeg_cut_short(data.tobytes())


def _file_bytes(path: Path) -> npt.NDArray[np.uint8] | None:
    try:
        if path.stat().st_size == 0:
            return None
        data = np.fromfile(path, np.uint8)
    except OSError:
        return None
    return data if data.size else None  # emptied since: OpenCV's imdecode raises on it


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

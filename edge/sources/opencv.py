"""Sources read through OpenCV: video files, image folders, V4L2 cameras, RTSP and HTTP streams,
CSI (GStreamer).

    file:///data/clip.mp4?loop=1&fps=0   video file (fps=0: every frame, as fast as the model
                                         takes them; default: its own rate)
    file:///data/images?fps=5&loop=1     folder of images, sorted by name
    file:///data/photo.jpg?loop=1        one image (10 a second with loop=1; once without)
    v4l2:///dev/video0?width=1280&height=720&fps=30
    rtsp://user:pass@camera/stream
    http://user:pass@camera/video.mjpg   MJPEG (or any stream FFmpeg reads) over HTTP
    csi://0?width=1920&height=1080&fps=30   Jetson CSI camera via nvarguscamerasrc
"""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import cv2
import numpy as np
import numpy.typing as npt

from edge.errors import SourceError
from edge.redact import redact_uri
from edge.sources.base import CHECK_UNOPENED, Frame, Pacer, PresentationPacer, Source
from edge.sources.delivered import DeliveredFrames
from edge.sources.ffmpeg_options import trust_camera_certificates
from edge.sources.jpeg_end import jpeg_cut_short
from edge.sources.stream_probe import diagnose_stream, unreachable_stream
from edge.sources.stream_url import TLS_SCHEMES, StreamTarget
from edge.sources.uri import SourceUri
from edge.sources.v4l2_probe import diagnose_v4l2

log = logging.getLogger(__name__)

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp"}
#: Why a video file that exists does not open, and what to do.
UNREADABLE_VIDEO = ("it may be cut short (a recording stopped before it was finished: an MP4 "
                    "without its index, FFmpeg's 'moov atom not found') or use a codec this "
                    "OpenCV lacks; check it with `ffprobe`, copy or record it again, or convert "
                    "it to H.264 MP4")
EMPTY_VIDEO = "is empty (0 bytes): the recording or copy did not finish; copy or record it again"
LIVE_TIMEOUT_MS = 10_000
#: The property that holds the presentation timestamp of the frame read last, by which a
#: reopened playlist's frames are told from new ones: OpenCV's from 4.11 on. Before it
#: (JetPack 6's OpenCV is 4.8) there is none, and every frame counts as new (a user check:
#: every camera failed to open there). Its position in ms is no substitute: it counts from
#: where each open starts, so a new playlist's frames were taken for replays.
FRAME_TIMESTAMP: int | None = getattr(cv2, "CAP_PROP_PTS", None)


def _timestamp(capture: cv2.VideoCapture) -> float | None:
    """The presentation timestamp of the frame `capture` read last, where OpenCV has one."""
    return None if FRAME_TIMESTAMP is None else capture.get(FRAME_TIMESTAMP)
#: A file that ends more than this share of its announced frames early is said to be cut
#: short (an AVI cut in half read 23 of its 50).
SHORT_END_SHARE = 0.1


#: FFmpeg's log level that prints nothing (libavutil's AV_LOG_QUIET).
AV_LOG_QUIET = -8


def quiet_ffmpeg() -> None:
    """Keep FFmpeg's own lines ("moov atom not found", "401 Unauthorized") off the terminal of
    a command that says what failed itself; OpenCV reads the setting when it first opens a
    video, so call this before. A user's own OPENCV_FFMPEG_LOGLEVEL wins."""
    os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", str(AV_LOG_QUIET))


def cut_short(announced: int, read: int) -> str | None:
    """Why a video file that ended after `read` of the `announced` frames its header gives is
    cut short, or None where the two are close (a header's count may be an estimate from the
    duration, a few frames off)."""
    if announced - read <= max(2, SHORT_END_SHARE * announced):
        return None
    return (f"after {read} of the {announced} frames its header announces: the file is cut "
            "short or damaged (an interrupted copy or recording?)")


class VideoCaptureSource(Source):
    """Anything `cv2.VideoCapture` opens. Frames are decoded into recycled buffers."""

    def __init__(self, uri: SourceUri, target: str | int, backend: int = cv2.CAP_ANY,
                 loop: bool = False, fps: float | None = None, live: bool = False,
                 presented: bool = False) -> None:
        """`presented`: each frame is handed over when its presentation timestamp comes round
        (`PresentationPacer`), for a stream that delivers in bursts (HLS)."""
        super().__init__()
        self.uri = uri.text
        self.live = live
        self._target = target
        self._backend = backend
        if live and backend == cv2.CAP_FFMPEG:
            self.read_timeout_s = LIVE_TIMEOUT_MS / 1e3
        self._loop = loop
        self._requested_fps = fps
        if "fps" in uri.options:  # a camera's own fps=0.0 (unpaced) is not asked for
            self.fps_origin = "asked"
        self._size = (uri.integer("width", 0), uri.integer("height", 0))
        self.fps = fps
        self._capture: cv2.VideoCapture | None = None
        #: the frames `open` read, served first, each with its presentation time (ms) and
        #: timestamp (the stream's units)
        self._opened_with: list[tuple[npt.NDArray[np.uint8], float, float | None]] = []
        self._announced = 0  # frames a file's header announces (0: a stream, or unknown)
        self._read_this_pass = 0  # frames read since the file's start (it may loop)
        self._pacer = Pacer(None)
        self._presented = presented
        self._presentation = PresentationPacer()
        self._delivered = DeliveredFrames()  # a playlist's, taken over at a reopen (`follow`)
        self._replayed = 0  # frames this open read again that an earlier one delivered
        self._fresh = 0  # frames this open delivered

    def open(self) -> None:
        if self._backend == cv2.CAP_V4L2 and not Path(str(self._target)).exists():
            raise SourceError(f"source '{self.uri}': {diagnose_v4l2(str(self._target))}")
        if self._backend == cv2.CAP_FFMPEG:  # a stream: its server asked first, unlocked
            unreachable = unreachable_stream(self.uri)
            if unreachable is not None:
                raise SourceError(f"source '{self.uri}' could not be opened: {unreachable}")
        started = time.monotonic()
        capture = cv2.VideoCapture(self._target, self._backend, self._timeouts())
        if not capture.isOpened():
            raise SourceError(self._unopened(time.monotonic() - started))
        if self._size[0] and self._size[1]:
            capture.set(cv2.CAP_PROP_FRAME_WIDTH, self._size[0])
            capture.set(cv2.CAP_PROP_FRAME_HEIGHT, self._size[1])
        self._replayed = self._fresh = 0
        ok, first = capture.read()
        if not ok or first is None or first.ndim != 3:
            capture.release()
            raise SourceError(f"source '{self.uri}' opened but no frame could be decoded"
                              f"{self._no_frame_why()}")
        self._opened_with = [] if self._replay(capture, first) else [
            (np.asarray(first, np.uint8), capture.get(cv2.CAP_PROP_POS_MSEC),
             _timestamp(capture))]
        self._presentation = PresentationPacer()  # a new stream: a new schedule
        if self.live and str(self._target).startswith("http") and not self._presented:
            self._opened_with += self._second_frame(capture)  # (a playlist is no snapshot)
        # Served as the first frame, of a file too: rewinding a 1-frame video to read it again
        # reads nothing (OpenCV's FFmpeg backend). On a stream the seek to 0 stays: it skips
        # what the server buffered while connecting (without it `edge probe` measured a
        # 15 fps RTSP camera on that burst, too fast to rate). Not on a stream paced by its
        # timestamps: HLS's skipped to the next segment, a second's gap in the frames.
        if not self._seekable(capture) and not self._presented:
            capture.set(cv2.CAP_PROP_POS_FRAMES, 0)
        self._shape = first.shape
        self._announced = 0 if self.live else max(0, int(capture.get(cv2.CAP_PROP_FRAME_COUNT)))
        self._read_this_pass = 0
        own_fps = capture.get(cv2.CAP_PROP_FPS) or None
        self.fps = own_fps if self._requested_fps is None else (self._requested_fps or None)
        self._pacer = Pacer(self.fps)
        # A recording read as fast as it goes loses nothing: the capture waits for the model
        # instead of replacing frames it had no time for (a camera cannot wait: it drops).
        self.paced_by_consumer = not self.live and self.fps is None
        self._capture = capture

    def _no_frame_why(self) -> str:
        if self._backend != cv2.CAP_V4L2:
            return "; the file may be corrupt or the stream may use an unsupported codec"
        camera = diagnose_v4l2(str(self._target))
        return (f": {camera}" if camera else "; the camera may not support the width, height "
                "or fps asked for (`v4l2-ctl --list-formats-ext` lists what it does)")

    def _unopened(self, seconds: float) -> str:
        """Why the capture did not open: for a stream, what its server answers (OpenCV itself
        says only that it could not)."""
        # a stream whose server accepted the connection but never answered
        waited = bool(self._timeouts()) and seconds >= 0.9 * LIVE_TIMEOUT_MS / 1e3
        # (after its timeout, not "no answer": the time may have gone on another camera's
        # open, FFmpeg's being one at a time, and this server then answers: a user check)
        why = f" (after {LIVE_TIMEOUT_MS / 1e3:g} s)" if waited else ""
        diagnosis = (diagnose_stream(self.uri) if self._backend == cv2.CAP_FFMPEG else
                     diagnose_v4l2(str(self._target)) if self._backend == cv2.CAP_V4L2 else None)
        if diagnosis is not None:
            return f"source '{self.uri}' could not be opened{why}: {diagnosis}"
        if self._backend == cv2.CAP_ANY and Path(str(self._target)).is_file():
            return (f"source '{self.uri}': OpenCV could not read {self._target} as a video; "
                    f"{UNREADABLE_VIDEO}")
        return f"source '{self.uri}' could not be opened by OpenCV{why}; {CHECK_UNOPENED}"

    def _timeouts(self) -> list[int]:
        """FFmpeg's limits on a blocking open and read of a stream (its default is 30 s). The
        supervisor gives up on a stalled reader sooner; this bound lets the abandoned read return
        and release the stream. Other backends reject these parameters."""
        if self.read_timeout_s is None:
            return []
        return [cv2.CAP_PROP_OPEN_TIMEOUT_MSEC, LIVE_TIMEOUT_MS,
                cv2.CAP_PROP_READ_TIMEOUT_MSEC, LIVE_TIMEOUT_MS]

    @staticmethod
    def _seekable(capture: cv2.VideoCapture) -> bool:
        return capture.get(cv2.CAP_PROP_FRAME_COUNT) > 0

    def read(self) -> Frame | None:
        if self._capture is None:
            raise SourceError(f"source '{self.uri}' was read before open()")
        self._pacer.wait()
        if self._opened_with:
            self._read_this_pass += 1
            opened, shown_ms, timestamp = self._opened_with.pop(0)
            self._present(shown_ms, timestamp, opened)
            return self._frame(opened)
        buffer = self.pool.take(*self._shape[:2])
        ok, image = self._capture.read(buffer)
        while ok and image is not None and self._replay(self._capture, image):
            ok, image = self._capture.read(buffer)
        if not ok:
            replayed_only = self.why_stalled()
            if replayed_only:
                self.pool.give_back(buffer)
                raise SourceError(f"source '{self.uri}': {replayed_only}")
            self._check_the_length()
        if not ok and self._loop and self._seekable(self._capture):
            ok, image = self._rewound().read(buffer)
            self._read_this_pass = 0
        if not ok or image is None:
            self.pool.give_back(buffer)
            return None
        self._read_this_pass += 1
        if image is not buffer:
            self._shape = image.shape
        if self._presented:  # (no timestamps asked of any other source, frame by frame)
            self._present(self._capture.get(cv2.CAP_PROP_POS_MSEC),
                          _timestamp(self._capture), image)
        return self._frame(np.asarray(image, np.uint8))

    def follow(self, earlier: Source) -> None:
        if self._presented and isinstance(earlier, VideoCaptureSource):
            self._delivered = earlier._delivered

    def why_stalled(self) -> str | None:
        if not self._replayed or self._fresh:
            return None
        return (f"its playlist offers only the {self._replayed} frames read before, and nothing "
                "after them: whatever writes it (the camera's restreamer or encoder) has "
                "stopped adding segments")

    def _replay(self, capture: cv2.VideoCapture, image: npt.NDArray[Any]) -> bool:
        """Whether `image`, just read, is a playlist's frame delivered before (counted)."""
        timestamp = _timestamp(capture)
        if not self._presented or timestamp is None or \
                not self._delivered.replays(timestamp, image):
            return False
        self._replayed += 1
        return True

    def _present(self, shown_ms: float, timestamp: float | None,
                 image: npt.NDArray[Any]) -> None:
        """Hold a playlist's frame until it is due, and remember it as delivered."""
        if self._presented:
            self._presentation.wait_for(shown_ms / 1e3)
            if timestamp is not None:
                self._delivered.add(timestamp, image)
            self._fresh += 1

    def _second_frame(self, capture: cv2.VideoCapture
                      ) -> list[tuple[npt.NDArray[np.uint8], float, float | None]]:
        """An HTTP stream's second frame, read at open: a URL that serves one still image (a
        camera's snapshot URL) opens in FFmpeg and ends at once; it is refused here, before it
        reads as streaming (a user check: `edge run` polled such a camera, a reopen and a
        warning every 0.7 s)."""
        ok, second = capture.read()
        while ok and second is not None and second.ndim == 3 and self._replay(capture, second):
            ok, second = capture.read()
        if ok and second is not None and second.ndim == 3:
            return [(np.asarray(second, np.uint8), capture.get(cv2.CAP_PROP_POS_MSEC),
                     _timestamp(capture))]
        capture.release()
        diagnosis = diagnose_stream(self.uri)
        raise SourceError(f"source '{self.uri}' ended after its first frame"
                          + (f": {diagnosis}" if diagnosis else ""))

    def _check_the_length(self) -> None:
        """At a file's end: `ended_short` where it read well under the frames its header
        announces (a header's count may be an estimate from the duration, a few frames off)."""
        if self.ended_short is None:
            self.ended_short = cut_short(self._announced, self._read_this_pass)

    def _rewound(self) -> cv2.VideoCapture:
        """The capture at the file's first frame again; opened anew where seeking back reads
        nothing (a 1-frame video)."""
        assert self._capture is not None
        self._capture.set(cv2.CAP_PROP_POS_FRAMES, 0)
        if self._capture.get(cv2.CAP_PROP_FRAME_COUNT) <= 1:
            self._capture.release()
            self._capture = cv2.VideoCapture(self._target, self._backend)
        return self._capture

    def close(self) -> None:
        if self._capture is not None:
            self._capture.release()
            self._capture = None


class ImageFolderSource(Source):
    """Images in a folder, sorted by name, or one image (`only`); unreadable files are skipped
    with a warning."""

    def __init__(self, uri: SourceUri, folder: Path, only: Path | None = None) -> None:
        super().__init__()
        self.uri = uri.text
        self._folder = folder
        self._only = only
        self._loop = uri.flag("loop")
        self.fps = uri.number("fps", 10.0) or None
        self.fps_origin = "asked" if "fps" in uri.options else "default"
        self.paced_by_consumer = self.fps is None  # fps=0: every image, as the model takes them
        self._paths: list[Path] = []
        self._unreadable: set[Path] = set()  # said once each, skipped on every later pass
        self._index = 0
        self._pacer = Pacer(self.fps)

    def open(self) -> None:
        self._paths = [self._only] if self._only is not None else folder_images(self._folder)
        if not self._paths:
            raise no_images_error(self.uri, self._folder)
        self._index = 0
        self._pacer = Pacer(self.fps)

    def read(self) -> Frame | None:
        for _ in range(len(self._paths)):
            if self._index >= len(self._paths):
                if not self._loop:
                    return None
                self._index = 0
            path = self._paths[self._index]
            self._index += 1
            if path in self._unreadable:
                continue
            image = read_image(path)
            if image is not None:
                self._pacer.wait()
                return self._frame(image)
            self._unreadable.add(path)
            log.warning("source %s: skipping unreadable image %s (%s)", redact_uri(self.uri),
                        path, unreadable_why(path))
        raise unreadable_folder_error(self.uri, self._folder, self._paths)


def folder_images(folder: Path) -> list[Path]:
    """The image files in `folder`, sorted by name (the order a folder source plays them);
    hidden ones left out (macOS's ._photo.jpg beside each copied photo is no image), as
    calibration leaves them."""
    return sorted(p for p in folder.iterdir()
                  if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file()
                  and not p.name.startswith("."))


def read_image(path: Path) -> npt.NDArray[np.uint8] | None:
    """A BGR uint8 image from `path`, upright as its EXIF orientation says (as `cv2.imread`
    reads it), or None where it cannot be decoded as one or is a JPEG cut short (libjpeg
    decodes the part there is and greys the rest: a user check)."""
    try:
        data = path.read_bytes()
    except OSError:
        return None
    if not data or jpeg_cut_short(data):  # empty: caught while written (OpenCV raises on it)
        return None
    image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    return np.asarray(image, np.uint8) if image is not None and image.dtype == np.uint8 else None


def unreadable_why(path: Path) -> str:
    """Why `read_image` reads no image from `path`, in a few words."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        return f"unreadable: {exc.strerror}"
    if not data:
        return "empty: 0 bytes"
    return "a JPEG cut short" if jpeg_cut_short(data) else "damaged or not an image"


def unreadable_folder_error(uri: str, folder: Path, paths: list[Path]) -> SourceError:
    return SourceError(f"source '{uri}': none of the {len(paths)} images in {folder} could be "
                       f"read ({', '.join(p.name for p in paths[:3])}"
                       f"{', ...' if len(paths) > 3 else ''}); they are damaged or no images: "
                       "replace them, or point file:// at a folder of readable ones")


def no_images_error(uri: str, folder: Path) -> SourceError:
    return SourceError(f"source '{uri}': folder {folder} holds no images "
                       f"({', '.join(sorted(IMAGE_SUFFIXES))}); put the images there or point "
                       "file:// at a folder that holds them")


def file_source(uri: SourceUri) -> Source:
    uri.reject_unknown({"loop", "fps"})
    path = uri.local_path()
    if not path.exists():
        decoded = unquote(str(path))
        nor = f" (nor {decoded}, its %-escapes decoded)" if decoded != str(path) else ""
        raise SourceError(f"source '{uri.text}': {path} does not exist{nor}; file:// takes the "
                          "path of a video file or an image folder, e.g. file:///data/clip.mp4")
    if path.is_dir():  # refused at start, as a missing file is, when nothing could play
        images = folder_images(path)
        if not images:
            raise no_images_error(uri.text, path)
        if all(read_image(image) is None for image in images):  # stops at the first it reads
            raise unreadable_folder_error(uri.text, path, images)
        return ImageFolderSource(uri, path)
    if path.is_file() and path.stat().st_size == 0:
        raise SourceError(f"source '{uri.text}': {path} {EMPTY_VIDEO}")
    if path.suffix.lower() in IMAGE_SUFFIXES:  # read as a folder's images are: upright by EXIF
        if read_image(path) is None:
            raise SourceError(f"source '{uri.text}': {path} is no image that can be read "
                              f"({unreadable_why(path)}); replace it, or point file:// at a "
                              "video or a folder of images")
        return ImageFolderSource(uri, path.parent, only=path)
    return VideoCaptureSource(uri, str(path), cv2.CAP_ANY, loop=uri.flag("loop"),
                              fps=uri.number("fps", None))


def v4l2_source(uri: SourceUri) -> Source:
    uri.reject_unknown({"width", "height", "fps"})
    # A missing device is checked at open, not here: a USB camera may be plugged in later,
    # and its supervisor keeps trying.
    return VideoCaptureSource(uri, uri.location, cv2.CAP_V4L2, fps=0.0, live=True)


def stream_source(uri: SourceUri) -> Source:
    """An RTSP or HTTP stream, read by OpenCV's FFmpeg as the camera delivers it (its own
    rate: what FFmpeg says of an MJPEG stream's is a guess, 25); an HLS playlist (`.m3u8`),
    which delivers whole segments at once, at its frames' presentation times."""
    # the scheme in lower case: FFmpeg fails on `RTSP://` without a word, and schemes are
    # case-insensitive (RFC 3986)
    target = uri.scheme + uri.text[uri.text.index("://"):]
    problem = StreamTarget.problem(target)
    if problem is not None:
        example = ("192.168.1.20:554/stream" if uri.scheme.startswith("rtsp") else
                   "192.168.1.20/video.mjpg")
        raise SourceError(f"source '{uri.text}': {problem}; write it as "
                          f"{uri.scheme}://{example}, with any user name and password before "
                          "the host")
    if uri.scheme in TLS_SCHEMES:
        trust_camera_certificates()
    parsed = StreamTarget.parse(target)
    return VideoCaptureSource(uri, target, cv2.CAP_FFMPEG, fps=0.0, live=True,
                              presented=parsed is not None and parsed.playlist)


def csi_source(uri: SourceUri) -> Source:
    uri.reject_unknown({"width", "height", "fps"})
    if "GStreamer:                   YES" not in cv2.getBuildInformation():
        raise SourceError(
            f"source '{uri.text}': this OpenCV ({Path(cv2.__file__).parent}) has no GStreamer "
            "support (pip's opencv-python never has); CSI cameras need JetPack's: `sudo apt "
            "install python3-opencv`, a venv made with --system-site-packages, and in it `pip "
            "uninstall opencv-python-headless` and `pip install 'numpy<2'` (JetPack's OpenCV "
            "is built against NumPy 1)")
    width, height = uri.integer("width", 1920), uri.integer("height", 1080)
    fps = uri.integer("fps", 30)
    sensor = uri.location.strip("/") or "0"
    if not sensor.isdigit():
        raise SourceError(f"source '{uri.text}': the CSI sensor id must be a number, e.g. csi://0")
    pipeline = (f"nvarguscamerasrc sensor-id={sensor}"
                f" ! video/x-raw(memory:NVMM), width={width}, height={height}, "
                f"framerate={fps}/1 ! nvvidconv ! video/x-raw, format=BGRx ! videoconvert ! "
                "video/x-raw, format=BGR ! appsink drop=true max-buffers=1")
    return VideoCaptureSource(uri, pipeline, cv2.CAP_GSTREAMER, fps=0.0, live=True)

"""Calibration and evaluation frames: an image folder, a video file, or the synthetic scene.

Every frame is letterboxed by the daemon's own `Letterboxer`, so calibration sees exactly the
pixels the device will feed the model. A reader is an iterator of model input dicts
(`{input_name: uint8 [1, H, W, 3]}`), the shape ONNX Runtime's calibration readers have.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from queue import Queue
from typing import TypeVar

import numpy as np
import numpy.typing as npt

from calibration.images import (
    files_below,
    is_hidden,
    read_image,
    shown_path,
    unusable_reason,
    usable_image_size,
)
from calibration.video_frames import VideoPick, pick_frames, picked_frames
from edge.concurrency import in_order
from edge.errors import InputError
from edge.interruption import raise_if_interrupted
from edge.preprocess import letterboxer_from_spec
from edge.sources.opencv import EMPTY_VIDEO, IMAGE_SUFFIXES, UNREADABLE_VIDEO
from edge.sources.uri import SourceUri
from edge.spec import ModelSpec
from edge.synthetic.scene import SceneConfig, ShapeScene
from edge.system import usable_cores

log = logging.getLogger(__name__)

T = TypeVar("T")

VIDEO_SUFFIXES = {".mp4", ".avi", ".mkv", ".mov", ".webm", ".m4v"}

#: Threads that decode a folder's images ahead of the model run.
DECODE_THREADS = min(2, usable_cores())


#: How long `Prefetched.close` waits for its worker to finish the item in hand (seconds).
CLOSE_WAIT_S = 10.0


class Prefetched(Iterator[T]):
    """`items`, produced by a worker thread from the moment this object is made, up to `depth`
    ahead: image decoding and resizing release the GIL, so they overlap the model run and
    whatever the caller prepares before it reads the first item. Bounded, so memory stays
    flat. `close()`, or leaving a `with` block, stops the worker."""

    def __init__(self, items: Iterable[T], depth: int = 2) -> None:
        self._queue: Queue[tuple[bool, object]] = Queue(maxsize=depth)
        self._stop = threading.Event()
        self._finished = False
        self._worker = threading.Thread(target=self._produce, args=(items,),
                                        name="frame-prefetch", daemon=True)
        self._worker.start()

    def __next__(self) -> T:
        if self._finished:
            raise StopIteration
        raise_if_interrupted()  # a Ctrl-C a finalizer swallowed ends the loop at the next item
        more, value = self._queue.get()
        if not more:
            self._finished = True
            if isinstance(value, BaseException):
                raise value
            raise StopIteration
        return value  # type: ignore[return-value]

    def __enter__(self) -> Prefetched[T]:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        """Stop the worker (it ends at its next item), drop what it made ahead, and wait for
        it: a worker still decoding in OpenCV when the interpreter exits (an error ending the
        command) aborts the process ("terminate called without an active exception")."""
        self._finished = True
        self._stop.set()
        self._drain()  # unblocks a worker waiting to put
        self._worker.join(CLOSE_WAIT_S)
        self._drain()

    def _drain(self) -> None:
        while not self._queue.empty():
            self._queue.get_nowait()

    def _produce(self, items: Iterable[T]) -> None:
        try:
            for item in items:
                if self._stop.is_set():
                    return
                self._queue.put((True, item))
            self._queue.put((False, None))
        except BaseException as exc:  # noqa: BLE001 - handed to the consumer, re-raised there
            self._queue.put((False, exc))


@dataclass
class FrameSet:
    """Chosen frames of one source, letterboxed on the fly for a model."""

    description: str
    paths: list[Path] = field(default_factory=list)  # image folders
    sizes: list[tuple[int, int]] = field(default_factory=list)  # (width, height) of each path
    video: VideoPick | None = None  # a video's frames read
    synthetic_seed: int | None = None
    synthetic_config: SceneConfig = field(default_factory=SceneConfig)
    count: int = 0
    skipped: list[str] = field(default_factory=list)
    #: A folder with more images than --max-images: how many it holds (the frames are a
    #: subsample of them), else None
    sampled_from: int | None = None
    #: ... and its images the subsample left out (not checked), in the random order that
    #: `top_up` draws them in
    unpicked: list[Path] = field(default_factory=list)
    #: Image files of a folder that are hidden (.DS_Store, macOS's ._photo.jpg): not read
    hidden: int = 0
    #: The folder the images are named relative to (`0/photo.jpg`, `90/photo.jpg`: a name
    #: alone repeats across class folders, a user check)
    root: Path | None = None

    @property
    def warning(self) -> str | None:
        """What was warned about the source as a whole (a video cut short), else None."""
        return self.video.cut_short if self.video is not None else None

    @property
    def picked_from(self) -> str | None:
        """How the frames were picked from a source that holds more, in words, else None."""
        if self.sampled_from:
            return f"a --max-images sample of the folder's {self.sampled_from} images"
        if self.video is not None and self.video.spread:
            return f"spread over the video's {self.video.total} frames"
        return None

    def images(self) -> Iterator[npt.NDArray[np.uint8]]:
        """Source frames, BGR uint8 [h, w, 3], in a fixed order (a folder's decoded on
        `DECODE_THREADS` threads)."""
        if self.video is not None:
            yield from picked_frames(self.video)
        elif self.synthetic_seed is not None:
            scene = ShapeScene(seed=self.synthetic_seed, config=self.synthetic_config)
            for _ in range(self.count):
                for _ in range(5):
                    image, _ = scene.next()
                yield image
        else:
            for decoded in decoded_in_order(self.paths):
                if decoded is not None:
                    yield decoded

    def drop(self, indices: Sequence[int], reason: str) -> list[str]:
        """Leave out the folder images at `indices` (of `paths`), each counted as skipped for
        `reason`; returns their names."""
        dropped = set(indices)
        names = [shown_path(self.paths[i], self.root) for i in sorted(dropped)]
        self.skipped += [f"{name} ({reason})" for name in names]
        self.paths = [p for i, p in enumerate(self.paths) if i not in dropped]
        self.sizes = [size for i, size in enumerate(self.sizes) if i not in dropped]
        self.count = len(self.paths)
        return names

    def top_up(self, wanted: int, fits: Callable[[tuple[int, int]], str | None] | None = None
               ) -> list[str]:
        """Draw images the subsample left out (`unpicked`, in their random order) in place of
        those skipped, until `wanted` are usable or none is left (a user check: a sample of 10
        that held two thumbnails calibrated on 8, and a --min-images 10 was told to "add
        more" to a folder of 35). `fits(size)`: why an image of that (width, height) is left
        out too, or None. Returns the names of those left out by `fits`."""
        unfit: list[str] = []
        while self.count < wanted and self.unpicked:
            path = self.unpicked.pop(0)
            size = usable_image_size(path)
            if size is None:
                self.skipped.append(f"{shown_path(path, self.root)} ({unusable_reason(path)})")
                continue
            why = fits(size) if fits is not None else None
            if why is not None:
                self.skipped.append(f"{shown_path(path, self.root)} ({why})")
                unfit.append(shown_path(path, self.root))
                continue
            self.paths.append(path)
            self.sizes.append(size)
            self.count += 1
        order = sorted(range(self.count), key=lambda i: self.paths[i])  # the folder's order
        self.paths = [self.paths[i] for i in order]
        self.sizes = [self.sizes[i] for i in order]
        return unfit

    def require(self, min_images: int) -> None:
        """InputError naming the source and the fix when it has fewer than `min_images` usable
        frames."""
        if self.count >= min_images:
            return
        what = "frame(s)" if self.video is not None else "image(s)"
        skipped = f" ({len(self.skipped)} file(s) skipped)" if self.skipped else ""
        needed = f"{min_images} {'is' if min_images == 1 else 'are'} needed"
        if self.count:
            fix = "add more, or lower --min-images"
        elif self.video is not None:
            fix = f"OpenCV could read no frame of it: not a video, or {UNREADABLE_VIDEO}"
        else:  # label .txt files and hidden files go unmentioned among the skipped
            fix = f"add images ({', '.join(sorted(IMAGE_SUFFIXES))}; other files are not read)"
            if self.hidden:
                fix += (f"; {self.hidden} file(s) here with image names start with '.' and "
                        "are not read (hidden; macOS's ._ copies hold no image): rename any "
                        "that are images")
        raise InputError(f"{self.description} has {self.count} usable {what}{skipped}; at least "
                         f"{needed}: {fix}")

    def inputs(self, spec: ModelSpec) -> Iterator[dict[str, npt.NDArray[np.uint8]]]:
        """Model input dicts `{input name: uint8 [1, H, W, 3]}`, a new buffer per frame."""
        letterbox = letterboxer_from_spec(spec)
        for image in self.images():
            buffer = np.empty((1, spec.input.height, spec.input.width, 3), np.uint8)
            letterbox(image, buffer)
            yield {spec.input.name: buffer}


def decoded_in_order(paths: Sequence[Path], threads: int = 0
                     ) -> Iterator[npt.NDArray[np.uint8] | None]:
    """`read_image` of each path, in order, decoded `threads` at a time (0: `DECODE_THREADS`)
    with a bounded look-ahead, so memory stays flat. JPEG decoding releases the GIL; on 2 cores
    two decoders beside the model run measured 5-10% faster for a cheap model than one."""
    workers = threads or DECODE_THREADS
    if workers == 1:
        yield from map(read_image, paths)
        return
    with ThreadPoolExecutor(workers, thread_name_prefix="decode") as pool:
        yield from in_order(pool, read_image, paths, 2 * workers)


def frames_from(source: str | Path, max_images: int = 500, seed: int = 0,
                min_images: int = 1) -> FrameSet:
    """`source`: an image folder, a video file, or `synthetic://shapes?seed=N`.

    Folders are checked up front: unusable files are skipped, counted and named in a warning;
    fewer than `min_images` usable ones is an error. More than `max_images` are subsampled
    deterministically with `seed`."""
    if str(source).startswith("synthetic://"):
        return _synthetic(SourceUri.parse(str(source)), max_images, seed)
    path = Path(source)
    if not path.exists():
        raise InputError(f"calibration data {path} does not exist; pass an image folder, a "
                         "video file or synthetic://shapes")
    if path.is_file():
        if path.suffix.lower() in IMAGE_SUFFIXES:
            raise InputError(f"{path} is one image; --images takes a folder of them (frames like "
                             "the camera's, a few hundred: put them in one folder), a video "
                             "file or synthetic://shapes")
        if path.suffix.lower() not in VIDEO_SUFFIXES:
            raise InputError(f"{path} is not a video file ({', '.join(sorted(VIDEO_SUFFIXES))})"
                             " or an image folder")
        if path.stat().st_size == 0:
            raise InputError(f"video {path} {EMPTY_VIDEO}")
        pick = pick_frames(path, max_images)
        if pick.spread:
            log.info("%s: %d frames spread over its %d (one in %.3g)", path, pick.count,
                     pick.total, pick.total / pick.count)
        frames = FrameSet(f"video {path}", video=pick, count=pick.count)
    else:
        frames = _folder(path, max_images, seed)
    frames.require(min_images)
    return frames


def _synthetic(uri: SourceUri, count: int, seed: int) -> FrameSet:
    """The demo scene as calibration frames, parsed like the camera source of the same URI
    (`synthetic://shapes?seed=N&width=W&height=H`; pacing and shift options do not apply)."""
    if uri.location.strip("/") != "shapes":
        raise InputError(f"'{uri.text}': unknown synthetic scene "
                         f"'{uri.location}'; the available scene is synthetic://shapes")
    uri.reject_unknown({"seed", "width", "height"})
    scene_seed = uri.integer("seed", seed)
    config = SceneConfig(width=uri.integer("width", 640), height=uri.integer("height", 480))
    return FrameSet(f"synthetic scene seed {scene_seed}", synthetic_seed=scene_seed,
                    synthetic_config=config, count=count)


#: A labelled dataset's files beside its images (YOLO labels, data.yaml and Ultralytics'
#: label .cache, Pascal VOC's XML, COCO and Label Studio JSON, `edge collect`'s manifests):
#: calibrating on a dataset folder is expected, so they go unsaid.
DATASET_SUFFIXES = (".txt", ".yaml", ".yml", ".json", ".jsonl", ".csv", ".xml", ".cache")


def _not_read(path: Path) -> str:
    """Why a file in an image folder is not read (a user check: an animated GIF was called
    "not an image file")."""
    kind = f"a {path.suffix.lower()} file" if path.suffix else "a file without a suffix"
    return f"{kind}, not one of the image types read: {' '.join(sorted(IMAGE_SUFFIXES))}"


def _folder(folder: Path, max_images: int, seed: int) -> FrameSet:
    # hidden files (.DS_Store, macOS's ._photo.jpg) and a labelled dataset's own files (label
    # .txt files, its data.yaml, COCO .json annotations) go unmentioned
    found = files_below(folder)
    candidates = [p for p in found if not is_hidden(p, folder)]
    hidden = sum(1 for p in set(found) - set(candidates)
                 if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
    broken = [f"{shown_path(p, folder)} ({unusable_reason(p)})" for p in candidates
              if p.is_symlink() and not p.exists()]
    candidates = [p for p in candidates if p.is_file()]
    images = [p for p in candidates if p.suffix.lower() in IMAGE_SUFFIXES]
    skipped = broken + [f"{shown_path(p, folder)} ({_not_read(p)})" for p in candidates
                        if p.suffix.lower() not in (*IMAGE_SUFFIXES, *DATASET_SUFFIXES)]
    sampled_from = len(images) if len(images) > max_images else None
    unpicked: list[Path] = []
    if sampled_from is not None:
        random = np.random.default_rng(seed)
        chosen = set(random.choice(len(images), max_images, replace=False).tolist())
        unpicked = [path for i, path in enumerate(images) if i not in chosen]
        unpicked = [unpicked[i] for i in random.permutation(len(unpicked))]
        images = [path for i, path in enumerate(images) if i in chosen]
    usable, sizes = [], []
    for path in images:
        size = usable_image_size(path)
        if size is None:
            skipped.append(f"{shown_path(path, folder)} ({unusable_reason(path)})")
        else:
            usable.append(path)
            sizes.append(size)
    frames = FrameSet(f"folder {folder}", paths=usable, sizes=sizes, count=len(usable),
                      skipped=skipped, sampled_from=sampled_from, unpicked=unpicked,
                      hidden=hidden, root=folder)
    frames.top_up(max_images)  # others in place of those that do not decode
    if frames.skipped:
        log.warning("skipped %d file(s) in %s: %s", len(frames.skipped), folder,
                    "; ".join(frames.skipped[:10]) + (" …" if len(frames.skipped) > 10 else ""))
    return frames

"""Letterbox resize straight into a preallocated model input buffer.

The naive path (resize -> pad -> transpose -> astype -> divide -> contiguous copy) allocates five
frame-sized arrays per frame. Here the converted model takes uint8 NHWC and does the float
conversion and normalisation itself, so the device only resizes: `cv2.resize` writes into a view
of the input buffer.

The pad bars are painted on every frame, and only the bars (for a 16:9 frame in a square input
about a third of the buffer, a memset of tens of microseconds). Remembering which buffers were
already painted needs buffer identity, and every cheap identity is reused: `id()` and the data
pointer both come back for a new array once the old one is freed (the calibration pad-bar bug:
fresh buffers per frame inherited stale bars). A buffer row may also be shared between cameras.
"""

from __future__ import annotations

import math
import shlex
import sys
from dataclasses import dataclass

import cv2
import numpy as np
import numpy.typing as npt

from edge.errors import InputError, ModelError
from edge.resizing import (
    DEFAULT_INTERPOLATION,
    DEFAULT_PAD_VALUE,
    PIL_FILTERS,
    Interpolation,
    Resize,
)
from edge.spec import ModelSpec


@dataclass(frozen=True)
class LetterboxGeometry:
    """How a source frame maps into the model input: `input = source * scale + offset`, per
    axis; the part of the source used (`crop_*`: all of it for a letterbox, its centre for a
    crop or a crop fraction) is resized into the rectangle at `pad_left`, `pad_top` of
    `resized_width` x `resized_height` (the rest of the input is pad bars).

    All values are in pixels; `scale_x`, `scale_y` are model pixels per source pixel.
    """

    source_width: int
    source_height: int
    input_width: int
    input_height: int
    scale_x: float
    scale_y: float
    resized_width: int
    resized_height: int
    pad_left: int
    pad_top: int
    crop_left: int = 0
    crop_top: int = 0
    crop_width: int = 0  # 0: the whole source
    crop_height: int = 0

    @classmethod
    def fit(cls, source_width: int, source_height: int, input_width: int, input_height: int,
            resize: Resize = "letterbox", crop_fraction: float = 1.0) -> LetterboxGeometry:
        """The geometry of `resize` (see `edge.resizing.Resize`); `letterbox` is the largest
        aspect-preserving fit of the source inside the input, centred. `crop_fraction` (with
        `stretch` and `crop`): only that central part of what the resize would take is used,
        as `Resize(256)` then `CenterCrop(224)` uses 224/256 of it."""
        if min(source_width, source_height, input_width, input_height) <= 0:
            raise InputError(
                f"cannot letterbox a {source_width}x{source_height} frame into "
                f"{input_width}x{input_height}: sizes must be positive")
        if resize == "stretch":
            return cls._centre(source_width, source_height, input_width, input_height,
                               source_width * crop_fraction, source_height * crop_fraction)
        if resize == "text-line":
            return cls._text_line(source_width, source_height, input_width, input_height)
        if resize == "crop":
            scale = max(input_width / source_width, input_height / source_height)
            return cls._centre(source_width, source_height, input_width, input_height,
                               input_width / scale * crop_fraction,
                               input_height / scale * crop_fraction)
        scale = min(input_width / source_width, input_height / source_height)
        centred = resize == "letterbox"
        # Ultralytics' centred letterbox rounds the resized size; YOLOX's top-left one (and
        # ddddocr's, its copy) truncates it with int()
        size = round if centred else int
        resized_width = min(input_width, max(1, size(source_width * scale)))
        resized_height = min(input_height, max(1, size(source_height * scale)))
        return cls(source_width, source_height, input_width, input_height, scale, scale,
                   resized_width, resized_height,
                   (input_width - resized_width) // 2 if centred else 0,
                   (input_height - resized_height) // 2 if centred else 0)

    @classmethod
    def _text_line(cls, source_width: int, source_height: int, input_width: int,
                   input_height: int) -> LetterboxGeometry:
        """PaddleOCR's text-line rule (`resize_norm_img`): the height scaled to the input's,
        the width in proportion rounded up, at most the input's (a longer line is squeezed);
        the bar on the right."""
        ratio = source_width / float(source_height)
        resized_width = min(input_width, math.ceil(input_height * ratio))
        return cls(source_width, source_height, input_width, input_height,
                   resized_width / source_width, input_height / source_height, resized_width,
                   input_height, 0, 0)

    @classmethod
    def _centre(cls, source_width: int, source_height: int, input_width: int,
                input_height: int, width: float, height: float) -> LetterboxGeometry:
        """The source's centre `width` x `height` (rounded to pixels), filling the input."""
        width = min(source_width, max(1, round(width)))
        height = min(source_height, max(1, round(height)))
        return cls(source_width, source_height, input_width, input_height,
                   input_width / width, input_height / height, input_width, input_height, 0, 0,
                   (source_width - width) // 2, (source_height - height) // 2, width, height)

    @property
    def offset_x(self) -> float:
        return self.pad_left - self.crop_left * self.scale_x

    @property
    def offset_y(self) -> float:
        return self.pad_top - self.crop_top * self.scale_y

    def source_region(self, frame: npt.NDArray[np.uint8]) -> npt.NDArray[np.uint8]:
        """The part of `frame` ([H, W, C]) that is resized into the input (a view)."""
        if not self.crop_width or (self.crop_width, self.crop_height) == (self.source_width,
                                                                       self.source_height):
            return frame
        return frame[self.crop_top:self.crop_top + self.crop_height,
                     self.crop_left:self.crop_left + self.crop_width]

    def boxes_to_source(self, boxes: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
        """Map x1 y1 x2 y2 boxes [K, 4] from model-input pixels to source pixels, in place,
        clipped to the source frame."""
        # strided views: a list index (boxes[:, [0, 2]]) would change a copy and drop it
        xs, ys = boxes[:, 0::2], boxes[:, 1::2]
        xs -= self.offset_x
        ys -= self.offset_y
        xs /= self.scale_x
        ys /= self.scale_y
        np.clip(xs, 0, self.source_width, out=xs)
        np.clip(ys, 0, self.source_height, out=ys)
        return boxes

    def boxes_to_input(self, boxes: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
        """Map x1 y1 x2 y2 boxes [K, 4] from source pixels to model-input pixels (a new array)."""
        out = boxes.astype(np.float32)
        out[:, 0::2] = out[:, 0::2] * self.scale_x + self.offset_x
        out[:, 1::2] = out[:, 1::2] * self.scale_y + self.offset_y
        return out


class Letterboxer:
    """Writes frames into one slot of a uint8 NHWC input buffer [N, H, W, 3].

    The buffer is owned by the caller (usually a runner), so the resized pixels land exactly
    where the inference engine reads them.
    """

    def __init__(self, pad_value: int = DEFAULT_PAD_VALUE, swap_channels: bool = False,
                 interpolation: Interpolation = DEFAULT_INTERPOLATION,
                 resize: Resize = "letterbox", crop_fraction: float = 1.0) -> None:
        """`interpolation`: `bilinear` (OpenCV's INTER_LINEAR, as Ultralytics' letterbox),
        `area` (INTER_AREA on each axis that shrinks, antialiased, and INTER_LINEAR on one that
        grows) or `pil-bilinear`, `pil-bicubic`, `pil-lanczos` (Pillow's resize with that
        filter, as PIL-trained classifiers saw their images; see `_pil_resample`). A 1080p
        frame to a 224x224 crop on one core: 0.2, 3, 10, 16 and 25 ms. `resize`, `crop_fraction`:
        see `LetterboxGeometry.fit`."""
        self._pad_value = pad_value
        self._resize: Resize = resize
        self._crop_fraction = crop_fraction
        self._swap_channels = swap_channels
        self._area = interpolation == "area"
        self._pil_filter = _pil_filter(interpolation)

    def __call__(self, frame: npt.NDArray[np.uint8], buffer: npt.NDArray[np.uint8],
                 slot: int = 0) -> LetterboxGeometry:
        """Letterbox `frame` (uint8 [h, w, 3]) into `buffer[slot]`; returns the geometry used."""
        if frame.ndim != 3 or frame.shape[2] != 3 or frame.dtype != np.uint8:
            raise InputError(f"expected a uint8 [H, W, 3] frame, got {frame.dtype} {frame.shape}")
        target = buffer[slot]
        geometry = LetterboxGeometry.fit(frame.shape[1], frame.shape[0],
                                         target.shape[1], target.shape[0], self._resize,
                                         self._crop_fraction)
        self._paint_bars(target, geometry)
        roi = target[geometry.pad_top:geometry.pad_top + geometry.resized_height,
                     geometry.pad_left:geometry.pad_left + geometry.resized_width]
        if self._pil_filter is not None:
            np.copyto(roi, self._pil_resample(frame, geometry))
        else:
            source = geometry.source_region(frame)
            if (geometry.resized_width, geometry.resized_height) == source.shape[1::-1]:
                np.copyto(roi, source)
            else:
                self._resample(source, roi)
        if self._swap_channels:
            cv2.cvtColor(roi, cv2.COLOR_BGR2RGB, dst=roi)
        return geometry

    def _resample(self, source: npt.NDArray[np.uint8], roi: npt.NDArray[np.uint8]) -> None:
        """Resize `source` into `roi` ([h, w, 3] views). With `area`, each axis that shrinks
        is averaged by pixel area (OpenCV's INTER_AREA, which grows an image by something
        close to nearest neighbour, so an axis that grows is resampled bilinear after it)."""
        height, width = roi.shape[:2]
        flag = cv2.INTER_LINEAR
        if self._area:
            shrunk = (min(width, source.shape[1]), min(height, source.shape[0]))
            if shrunk == (width, height):
                flag = cv2.INTER_AREA
            elif shrunk != source.shape[1::-1]:  # one axis shrinks, the other grows
                source = np.asarray(cv2.resize(source, shrunk, interpolation=cv2.INTER_AREA),
                                    np.uint8)
        written = cv2.resize(source, (width, height), dst=roi, interpolation=flag)
        if written is not None and not np.shares_memory(written, roi):
            np.copyto(roi, written)  # OpenCV could not write in place; keep correctness

    def _pil_resample(self, frame: npt.NDArray[np.uint8],
                      geometry: LetterboxGeometry) -> npt.NDArray[np.uint8]:
        """`frame` resized by Pillow into the geometry's resized image ([h, w, 3]). A crop is
        made as torchvision's `Resize` then `CenterCrop` make it (`torchvision_resize`): the
        whole frame resized, then its centre cut out. (Pillow's `box=` would resize the crop
        alone, but it may run its two passes in the other order, and with bicubic's
        overshoot clipped in between that moved values by up to 21 levels.) Pillow filters
        each channel alike, so BGR frames need no conversion."""
        from PIL import Image  # noqa: PLC0415  (Pillow only for the models that resize with it)

        image = Image.fromarray(np.ascontiguousarray(frame))
        if not geometry.crop_width:
            size = (geometry.resized_width, geometry.resized_height)
            return np.asarray(image.resize(size, self._pil_filter), np.uint8)
        (width, height), (left, top) = torchvision_resize(
            geometry.source_width, geometry.source_height, geometry.input_width,
            geometry.input_height, self._resize, self._crop_fraction)
        resized = np.asarray(image.resize((width, height), self._pil_filter), np.uint8)
        return resized[top:top + geometry.input_height, left:left + geometry.input_width]

    def _paint_bars(self, target: npt.NDArray[np.uint8], geometry: LetterboxGeometry) -> None:
        """Fill everything of `target` ([H, W, 3]) outside the resized image with the pad value."""
        top, left = geometry.pad_top, geometry.pad_left
        bottom, right = top + geometry.resized_height, left + geometry.resized_width
        target[:top].fill(self._pad_value)
        target[bottom:].fill(self._pad_value)
        target[top:bottom, :left].fill(self._pad_value)
        target[top:bottom, right:].fill(self._pad_value)


def _pil_filter(interpolation: Interpolation) -> int | None:
    """Pillow's resampling filter for a `pil-` interpolation (None for OpenCV's)."""
    if interpolation not in PIL_FILTERS:
        return None
    try:
        from PIL import Image  # noqa: PLC0415  (Pillow only for the models that resize with it)
    except ImportError as missing:
        raise ModelError(
            f"the model resizes frames with Pillow ({interpolation}, as it was trained), and "
            f"Pillow cannot be imported ({missing}); install it: "
            f"{shlex.quote(sys.executable)} -m pip install 'Pillow>=9.1'") from missing
    return int(getattr(Image.Resampling, PIL_FILTERS[interpolation]))


def torchvision_resize(source_width: int, source_height: int, input_width: int,
                       input_height: int, resize: Resize, crop_fraction: float
                       ) -> tuple[tuple[int, int], tuple[int, int]]:
    """((width, height), (left, top)): the size torchvision's `Resize` gives the frame and
    where `CenterCrop` then cuts the input from it, in pixels. `Resize(S)` for `crop` (the
    axis that fills the input at `S = floor(side / crop_fraction)`, the other in proportion,
    truncated), `Resize((H, W))` for `stretch`; the offsets rounded as `CenterCrop` rounds
    them (half to even)."""
    if resize == "crop":
        if input_width / source_width >= input_height / source_height:
            width = math.floor(input_width / crop_fraction)
            height = int(width * source_height / source_width)
        else:
            height = math.floor(input_height / crop_fraction)
            width = int(height * source_width / source_height)
    else:
        width = math.floor(input_width / crop_fraction)
        height = math.floor(input_height / crop_fraction)
    # a side truncated a pixel short of the input (a float product just under it), where
    # CenterCrop would pad a black line: resized to the input's instead
    width, height = max(width, input_width), max(height, input_height)
    return (width, height), (round((width - input_width) / 2.0),
                             round((height - input_height) / 2.0))


def letterboxer_from_spec(spec: ModelSpec) -> Letterboxer:
    """The letterboxer a model expects: its resize, pad value and resampling, and its colour
    order (frames arrive BGR from OpenCV; an RGB model gets its channels swapped here)."""
    return Letterboxer(spec.input.pad_value, swap_channels=spec.input.colour_order == "RGB",
                       interpolation=spec.input.interpolation, resize=spec.input.resize,
                       crop_fraction=spec.input.crop_fraction)


def letterbox(frame: npt.NDArray[np.uint8], input_width: int, input_height: int,
              pad_value: int = DEFAULT_PAD_VALUE, resize: Resize = "letterbox"
              ) -> tuple[npt.NDArray[np.uint8], LetterboxGeometry]:
    """Convenience for offline use (training, calibration): a new [H, W, 3] letterboxed image."""
    buffer = np.empty((1, input_height, input_width, 3), np.uint8)
    geometry = Letterboxer(pad_value, resize=resize)(frame, buffer)
    return buffer[0], geometry

"""The ways a camera frame can become a network's input (`edge convert --resize`), in a module
of its own so that the command line names them without importing the spec's pydantic models."""

from __future__ import annotations

from typing import Literal

#: How a camera frame becomes the model's input, as the network was trained:
Resize = Literal["letterbox", "letterbox-top-left", "stretch", "crop", "text-line"]
RESIZE_HELP = (
    "letterbox: the whole frame, aspect kept, centred between pad bars (Ultralytics); "
    "letterbox-top-left: the same at the top-left corner, bars right and below (YOLOX, "
    "ddddocr); stretch: the whole frame, aspect not kept (Keras, torchvision "
    "Resize((h, w)), PaddleOCR v5's text-line orientation); crop: aspect kept, the frame's "
    "centre filling the input, the rest cut off (classifiers trained with a centre crop, "
    "Ultralytics classify); text-line: the frame's height filling the input's, aspect kept, a "
    "bar on the right, a frame too wide for that squeezed to the input's width (PaddleOCR's "
    "48-high text-direction classifiers and recognisers; the bar is the network's normalised "
    "0 unless --pad-value says otherwise)")
#: The resizes that leave bars around the frame (a pad value applies; no crop fraction).
PADDED_RESIZES = frozenset({"letterbox", "letterbox-top-left", "text-line"})
CROP_FRACTION_HELP = (
    "with stretch or crop: the central part of the frame that is used, as torchvision's "
    "Resize(256) then CenterCrop(224) uses 224/256 = 0.875 of it (ImageNet classifiers)")


#: The grey of Ultralytics' and YOLOX's letterbox bars (camera pixel levels, every channel).
DEFAULT_PAD_VALUE = 114
PAD_VALUE_HELP = (
    "with a letterbox or text-line: the pixel level (0-255, every channel) the bars are filled "
    "with, as the network's training images were padded (a letterbox's default 114, "
    "Ultralytics' and YOLOX's grey; a text line's, the network's normalised 0, 255 x --mean; "
    "0 black, 255 white)")


#: How pixels are resampled (`edge convert --interpolation`):
Interpolation = Literal["bilinear", "area", "pil-bilinear", "pil-bicubic", "pil-lanczos"]
DEFAULT_INTERPOLATION: Interpolation = "bilinear"
INTERPOLATION_HELP = (
    "how pixels are resampled, as the network's training images were: bilinear (OpenCV's, "
    "without antialiasing: Ultralytics' and most OpenCV pipelines' letterbox; the default "
    "except for Ultralytics classify exports); pil-bilinear, pil-bicubic, pil-lanczos: "
    "Pillow's resize with that filter, pixel for pixel as PIL, torchvision and timm resize "
    "PIL images (classifiers trained that way, Ultralytics classify; with a crop fraction, "
    "as Resize then CenterCrop); area: each input pixel the mean of the frame pixels it "
    "covers when shrinking, bilinear when enlarging (antialiased, close to PIL's bilinear). "
    "On one core, a 1080p frame to a 224x224 crop: bilinear 0.2 ms, area 3, pil-bilinear 10, "
    "pil-bicubic 16, pil-lanczos 25 ms")

#: Pillow's resampling filter of each `pil-` interpolation, by Pillow's name.
PIL_FILTERS = {"pil-bilinear": "BILINEAR", "pil-bicubic": "BICUBIC", "pil-lanczos": "LANCZOS"}


#: The spec input's fields `resize_words` reads.
RESIZE_FIELDS = ("resize", "crop_fraction", "pad_value", "interpolation")


def resize_words(resize: str = "letterbox", crop_fraction: float = 1.0,
                 pad_value: int = DEFAULT_PAD_VALUE,
                 interpolation: str = DEFAULT_INTERPOLATION) -> str:
    """`crop`, `stretch of the central 0.875`, `letterbox padded with 255`, `crop, area
    resampled`: how a spec's input is made, for people."""
    words = resize
    if crop_fraction != 1:
        words = f"{resize} of the central {crop_fraction:g}"
    elif resize in PADDED_RESIZES and pad_value != DEFAULT_PAD_VALUE:
        words = f"{resize} padded with {pad_value}"
    if interpolation != DEFAULT_INTERPOLATION:
        words += f", {interpolation} resampled"
    return words

"""The ways a camera frame can become a network's input (`edge convert --resize`), in a module
of its own so that the command line names them without importing the spec's pydantic models."""

from __future__ import annotations

from typing import Literal

#: How a camera frame becomes the model's input, as the network was trained:
Resize = Literal["letterbox", "letterbox-top-left", "stretch", "crop"]
RESIZE_HELP = (
    "letterbox: the whole frame, aspect kept, centred between pad bars (Ultralytics); "
    "letterbox-top-left: the same at the top-left corner, bars right and below (YOLOX, "
    "ddddocr); stretch: the whole frame, aspect not kept (Keras, torchvision "
    "Resize((h, w)), PaddleOCR's text classifiers); crop: aspect kept, the frame's centre "
    "filling the input, the rest cut off (classifiers trained with a centre crop, "
    "Ultralytics classify)")
CROP_FRACTION_HELP = (
    "with stretch or crop: the central part of the frame that is used, as torchvision's "
    "Resize(256) then CenterCrop(224) uses 224/256 = 0.875 of it (ImageNet classifiers)")


def resize_words(resize: str, crop_fraction: float = 1.0) -> str:
    """`crop`, `stretch of the central 0.875`: how a spec's input is made, for people."""
    return resize if crop_fraction == 1 else f"{resize} of the central {crop_fraction:g}"

"""Ultralytics ONNX exports carry `names`, `imgsz`, `stride`, `task`, `end2end` and the export
`args` in metadata_props (each a Python literal as text)."""

from __future__ import annotations

import ast
import math
from dataclasses import dataclass

import onnx

from converters.errors import ConversionError
from edge.resizing import Interpolation, Resize

#: Ultralytics' classify predictor resizes the shorter side to the input and crops the centre
#: (`classify_transforms`), with torchvision's resize of a PIL image (Pillow's bilinear filter);
#: its detectors letterbox, centred, with OpenCV's bilinear resize: edge's defaults.
ULTRALYTICS_CLASSIFY_RESIZE: Resize = "crop"
ULTRALYTICS_CLASSIFY_INTERPOLATION: Interpolation = "pil-bilinear"


@dataclass(frozen=True)
class UltralyticsMetadata:
    labels: tuple[str, ...] | None
    image_size: tuple[int, int] | None  # height, width
    stride: int | None
    task: str | None
    #: The output is final detections, [N, K, 6] (YOLO26 and YOLOv10 by default, `end2end`;
    #: any detector exported with `nms=True`)
    end_to_end: bool = False
    #: A pose model's values per anchor after its classes: keypoints x values each (kpt_shape)
    keypoint_values: int | None = None

    @classmethod
    def from_onnx(cls, model: onnx.ModelProto) -> UltralyticsMetadata | None:
        """None when the model carries no Ultralytics metadata."""
        props = {p.key: p.value for p in model.metadata_props}
        if not {"names", "imgsz"} & set(props):
            return None
        return cls(_labels(props.get("names")), _image_size(props.get("imgsz")),
                   int(props["stride"]) if props.get("stride", "").isdigit() else None,
                   props.get("task"), _end_to_end(props), _keypoint_values(props))


def _end_to_end(props: dict[str, str]) -> bool:
    if props.get("end2end") == "True":
        return True
    try:
        args = ast.literal_eval(props.get("args", "{}"))
    except (ValueError, SyntaxError):  # the export arguments are informative only
        return False
    return isinstance(args, dict) and args.get("nms") is True


def _keypoint_values(props: dict[str, str]) -> int | None:
    try:
        shape = ast.literal_eval(props.get("kpt_shape", "None"))
    except (ValueError, SyntaxError):  # then the class count is the metadata's alone
        return None
    if isinstance(shape, list | tuple) and shape and all(isinstance(d, int) for d in shape):
        return math.prod(shape)
    return None


def _literal(text: str, key: str) -> object:
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError) as exc:
        raise ConversionError(f"Ultralytics metadata '{key}' is unreadable: {text[:80]!r}") from exc


def _labels(text: str | None) -> tuple[str, ...] | None:
    if text is None:
        return None
    names = _literal(text, "names")
    if isinstance(names, dict):
        return tuple(str(names[k]) for k in sorted(names))
    if isinstance(names, list | tuple):
        return tuple(str(n) for n in names)
    raise ConversionError(
        f"Ultralytics metadata 'names' is neither a dict nor a list: {text[:80]!r}")


def _image_size(text: str | None) -> tuple[int, int] | None:
    if text is None:
        return None
    size = _literal(text, "imgsz")
    if isinstance(size, int):
        return size, size
    if isinstance(size, list | tuple) and len(size) == 2 and all(isinstance(s, int) for s in size):
        return int(size[0]), int(size[1])
    raise ConversionError(f"Ultralytics metadata 'imgsz' is not a size: {text[:80]!r}")

"""The model spec: the versioned JSON that makes a model artifact self-describing.

It lives in the ONNX `metadata_props` under `SPEC_KEY` (and in a sidecar JSON next to a TensorRT
engine), so the daemon needs no hand-written labels or preprocessing settings.
"""

from __future__ import annotations

import importlib.util
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from edge.errors import NOT_A_MODEL_FIX, ModelError
from edge.files import require_model_file
from edge.mqtt.topics import MAX_DETECTIONS
from edge.ort_session import session_from_onnx
from edge.resizing import (
    CROP_FRACTION_HELP,
    DEFAULT_INTERPOLATION,
    DEFAULT_PAD_VALUE,
    INTERPOLATION_HELP,
    PADDED_RESIZES,
    RESIZE_HELP,
    Interpolation,
    Resize,
)
from edge.wording import validation_problems

SPEC_KEY = "edge.spec"
SPEC_VERSION = 1

HeadLayout = Literal[
    "anchor_free",             # Ultralytics v8/v11: [N, 4+nc, A], cx cy w h in input pixels, scores
    "anchor_free_transposed",  # the same, [N, A, 4+nc]
    "yolov5",                  # [N, A, 5+nc], cx cy w h, objectness, class scores
    "end_to_end",              # NMS-free (YOLO26, YOLOv10, nms=True exports): [N, K, 6],
                               # x1 y1 x2 y2 in input pixels, score, class index; K by score
    "logits",                  # classifier: [N, nc] raw scores
    "probabilities",           # classifier: [N, nc] softmax output
]

#: Columns of an `end_to_end` head's rows: x1 y1 x2 y2 score class.
END_TO_END_COLUMNS = 6

Quantization = Literal[
    "float",         # no Q/DQ nodes: the engine precision is a build choice (fp16/fp32)
    "int8-qdq",      # symmetric QDQ by TensorRT's rules (`edge calibrate --profile tensorrt`)
    "int8-qdq-cpu",  # uint8 activations for ONNX Runtime's CPU kernels; TensorRT rejects it
]


#: What MQTT topics cannot carry in a level: the level separator, the wildcards and NUL. A
#: label is a level of its count topic (`<camera>/<label>/count`).
TOPIC_RESERVED = ("/", "+", "#", "\0")


def unusable_labels(labels: Sequence[str]) -> str | None:
    """Why `labels` cannot name classes in topics (`<camera>/<label>/count`), naming each
    label: empty ones, repeated ones, ones holding what MQTT reserves; None when all can."""
    problems = []
    blank = [str(index) for index, label in enumerate(labels) if not label.strip()]
    if blank:
        problems.append(f"class {', '.join(blank)} has an empty label; every class needs a "
                        "name (it is a level of MQTT topics)")
    repeated = sorted({label for label in labels if label.strip() and labels.count(label) > 1})
    if repeated:
        problems.append(f"label {', '.join(map(repr, repeated))} names several classes; each "
                        "needs its own (its count topic would hold two)")
    bad = [f"{label!r} (class {index})" for index, label in enumerate(labels)
           if any(mark in label for mark in TOPIC_RESERVED)]
    if bad:
        which = (f"label {bad[0]} holds" if len(bad) == 1 else
                 f"labels {', '.join(bad[:5])} hold")
        problems.append(f"{which} / + # or NUL, which MQTT topics reserve (edge publishes "
                        "<camera>/<label>/count); name the classes without them")
    return f"{'; '.join(problems)}; edge convert --labels names the classes" if problems else None


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class InputSpec(_Strict):
    """The model's image input: uint8 [batch, height, width, 3] in `colour_order`."""

    name: str
    width: int = Field(gt=0)
    height: int = Field(gt=0)
    batch: int | None = Field(default=1, ge=1, description="None: dynamic batch")
    colour_order: Literal["BGR", "RGB"] = "BGR"
    pad_value: int = Field(default=DEFAULT_PAD_VALUE, ge=0, le=255)
    resize: Resize = Field(default="letterbox", description=RESIZE_HELP)
    crop_fraction: float = Field(default=1.0, ge=0.5, le=1, description=CROP_FRACTION_HELP)
    interpolation: Interpolation = Field(default=DEFAULT_INTERPOLATION,
                                         description=INTERPOLATION_HELP)

    @model_validator(mode="after")
    def _cropping_resize(self) -> InputSpec:
        if self.crop_fraction != 1.0 and self.resize in PADDED_RESIZES:
            raise ValueError(f"crop_fraction {self.crop_fraction:g} needs resize stretch or "
                             f"crop, not {self.resize} (it keeps the whole frame)")
        return self


class PostprocessSpec(_Strict):
    score_threshold: float = Field(default=0.25, gt=0, lt=1)
    iou_threshold: float = Field(default=0.45, gt=0, le=1)
    max_detections: int = Field(default=100, gt=0, le=MAX_DETECTIONS)


class ModelSpec(_Strict):
    """Everything the device needs to run a converted model."""

    spec_version: int = SPEC_VERSION
    task: Literal["detect", "classify"]
    labels: tuple[str, ...]
    input: InputSpec
    head: HeadLayout
    output: str = Field(description="name of the output tensor the head layout describes")
    postprocess: PostprocessSpec = PostprocessSpec()
    name: str = ""
    source: str = Field(default="", description="where the model came from, for humans")
    quantization: Quantization | None = Field(
        default=None, description="how the graph is quantized; written by `edge convert` and "
        "`edge calibrate` so the device decides the engine precision without the onnx package "
        "(None: a spec written before edge recorded it)")

    @model_validator(mode="after")
    def _head_matches_task(self) -> ModelSpec:
        classify = self.head in ("logits", "probabilities")
        if classify != (self.task == "classify"):
            raise ValueError(f"head layout '{self.head}' does not fit task '{self.task}'")
        if not self.labels:
            raise ValueError("labels must not be empty")
        return self

    @field_validator("labels")
    @classmethod
    def _usable_labels(cls, labels: tuple[str, ...]) -> tuple[str, ...]:
        """Checked as a field, so a spec's other problems are named with these."""
        unusable = unusable_labels(labels)
        if unusable:
            raise ValueError(unusable)
        return labels

    @property
    def num_classes(self) -> int:
        return len(self.labels)

    def to_json(self) -> str:
        # defaults of later fields are left out, so edge versions before them read the spec
        later = {name for name, default in (("resize", "letterbox"), ("crop_fraction", 1.0),
                                            ("interpolation", DEFAULT_INTERPOLATION))
                 if getattr(self.input, name) == default}
        return self.model_dump_json(exclude={"input": later} if later else None)

    @classmethod
    def from_json(cls, text: str, origin: str) -> ModelSpec:
        """Parse a spec; `origin` names the file for the error message."""
        try:
            version = json.loads(text).get("spec_version")
        except (json.JSONDecodeError, AttributeError) as exc:
            raise ModelError(f"{origin}: the model spec is not a JSON object ({exc})") from exc
        if version != SPEC_VERSION:
            raise ModelError(
                f"{origin}: model spec version {version!r} is not supported by this edge "
                f"version (it reads version {SPEC_VERSION}); re-convert the model with "
                "`edge convert` or upgrade edge")
        try:
            return cls.model_validate_json(text)
        except ValidationError as exc:
            raise ModelError(f"{origin}: invalid model spec: {_spec_problems(exc)}") from exc


def _spec_problems(error: ValidationError) -> str:
    """A spec's problems in one line, and the fix: fields or values this version does not know
    may come from a newer edge, which re-converting with this one cannot bring back."""
    errors = error.errors()
    unknown = [".".join(map(str, e["loc"])) for e in errors if e["type"] == "extra_forbidden"]
    known = validation_problems(error, inputs=False, leaving_out={"extra_forbidden"})
    parts = [known] if known else []
    if unknown:
        parts.append(f"fields this version does not know: {', '.join(unknown)}")
    if unknown or any(e["type"] == "literal_error" and isinstance(e["input"], str)
                      for e in errors):  # a value a newer edge may write
        return ("; ".join(parts) + "; the model may come from a newer edge: upgrade edge, or "
                "re-convert the model with this version's `edge convert`")
    return "; ".join(parts) + "; re-convert the model with `edge convert`"


def spec_from_onnx_file(path: Path | str) -> ModelSpec:
    """The model spec from an ONNX file's metadata, with whichever reader is installed."""
    path = Path(path)
    if importlib.util.find_spec("onnx") is None:  # the device install: ONNX Runtime alone
        require_model_file(path)
        return spec_from_session(session_from_onnx(path), str(path))
    return spec_from_model(read_onnx_model(path), str(path))


def read_onnx_model(path: Path, external_data: bool = False) -> Any:
    """The `onnx.ModelProto` at `path` (the `onnx` package must be installed), or an error
    saying what the file is instead: a folder, missing, not ONNX, empty."""
    import onnx  # noqa: PLC0415 - optional (convert extra)
    from google.protobuf.message import DecodeError  # noqa: PLC0415 - comes with onnx

    require_model_file(path)
    try:
        # protobuf whatever the name: onnx reads a `.json` path as JSON (a traceback on a
        # JSON file, and a model `edge convert -o m.json` wrote could not be read back)
        model = onnx.load(str(path), format="protobuf", load_external_data=external_data)
    except (DecodeError, OSError, ValueError) as exc:
        raise ModelError(f"{path} is not an ONNX model ({exc}); {NOT_A_MODEL_FIX}") from exc
    if not model.graph.node:  # protobuf reads an empty or foreign file as an empty model
        raise ModelError(f"{path} is not an ONNX model (its graph has no nodes); "
                         f"{NOT_A_MODEL_FIX}")
    return model


def no_spec(origin: str) -> str:
    return (f"{origin} has no '{SPEC_KEY}' metadata, so its labels and preprocessing are "
            "unknown; convert it with `edge convert` first")


def spec_from_model(model: Any, origin: str) -> ModelSpec:
    """The model spec in an `onnx.ModelProto`'s metadata."""
    props = {p.key: p.value for p in model.metadata_props}
    if SPEC_KEY not in props:
        raise ModelError(no_spec(origin))
    return ModelSpec.from_json(props[SPEC_KEY], origin)


def spec_from_session(session: Any, origin: str) -> ModelSpec:
    """The model spec from an ONNX Runtime session's metadata."""
    metadata = session.get_modelmeta().custom_metadata_map
    if SPEC_KEY not in metadata:
        raise ModelError(no_spec(origin))
    return ModelSpec.from_json(metadata[SPEC_KEY], origin)

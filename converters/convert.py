"""`edge convert`: a fine-tuned CNN (PyTorch checkpoint, TorchScript or ONNX) -> the model artifact.

Every source goes through the same chain: a plain ONNX graph -> head recognised from its output
-> camera preprocessing folded in front -> simplified and checked -> spec written into the
metadata -> parity against the source model on the same frames.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import numpy.typing as npt
import onnx
from google.protobuf.message import DecodeError

from converters.errors import ConversionError
from converters.fold import (
    ColourOrder,
    ImageInput,
    Normalisation,
    image_input,
    onnx_with_preprocess,
)
from converters.heads import Head, head_from_shape
from converters.metadata import onnx_with_spec
from converters.onnx_from_torch import DEFAULT_OPSET, onnx_from_torch
from converters.simplify import checked_onnx, simplified_onnx
from converters.ultralytics import UltralyticsMetadata
from converters.verify import (
    DEFAULT_TOLERANCE,
    Parity,
    check_parity,
    parity_frames,
    preprocess_by_hand,
)
from edge.files import write_bytes_atomic
from edge.spec import HeadLayout, InputSpec, ModelSpec, PostprocessSpec

#: Runs the source model on float64 input; returns every output by name.
SourceRunner = Callable[[npt.NDArray[np.float64]], dict[str, npt.NDArray[Any]]]


@dataclass(frozen=True)
class ConvertOptions:
    """What cannot be read from the source. None means: take it from the source or a default."""

    input_size: tuple[int, int] | None = None  # height, width
    labels: tuple[str, ...] | None = None
    camera_order: ColourOrder = "BGR"
    normalisation: Normalisation = field(default_factory=Normalisation)
    task: Literal["detect", "classify"] | None = None
    head: HeadLayout | None = None
    module: str | None = None  # package.module:Class or file.py:Class, for checkpoints
    module_args: dict[str, Any] | None = None
    batch: int | None = 1  # None: dynamic batch
    opset: int = DEFAULT_OPSET
    stride: int | None = None
    simplify: bool = True
    verify: bool = True
    tolerance: float = DEFAULT_TOLERANCE
    name: str | None = None
    postprocess: PostprocessSpec = field(default_factory=PostprocessSpec)


@dataclass(frozen=True)
class Converted:
    model: onnx.ModelProto
    spec: ModelSpec
    parity: Parity | None
    source_kind: str

    def write(self, out: Path) -> None:
        """Atomically: a reader never sees a half-written file at `out`."""
        write_bytes_atomic(out, self.model.SerializeToString())


@dataclass(frozen=True)
class _Plain:
    """A source model as a plain ONNX graph, plus how to run the source itself."""

    model: onnx.ModelProto
    run_source: SourceRunner
    kind: str
    labels: tuple[str, ...] | None = None
    image_size: tuple[int, int] | None = None
    stride: int | None = None


def convert(source: Path, options: ConvertOptions) -> Converted:
    """Convert the model file at `source`; nothing is written (see `Converted.write`)."""
    if not source.is_file():
        raise ConversionError(f"source model {source} does not exist")
    return _converted(_plain_from_file(source, options), options, source.stem)


def convert_module(network: Any, options: ConvertOptions, name: str,
                   source_kind: str = "pytorch") -> Converted:
    """Convert an in-memory torch.nn.Module (used by training scripts)."""
    return _converted(_plain_from_torch(network, options, source_kind), options, name)


def _plain_from_file(source: Path, options: ConvertOptions) -> _Plain:
    if source.suffix.lower() == ".onnx" or _looks_like_onnx(source):
        return _plain_from_onnx(source)
    from converters.torch_loading import (
        is_torchscript,
        module_class_from_spec,
        module_from_checkpoint,
        module_from_torchscript,
    )

    if is_torchscript(source):
        return _plain_from_torch(module_from_torchscript(source), options, "torchscript")
    if options.module is None:
        raise ConversionError(
            f"{source} is not an ONNX or TorchScript model; for a PyTorch checkpoint "
            "(state_dict) pass the module class with --module package.module:Class")
    network = module_from_checkpoint(module_class_from_spec(options.module), source,
                                     options.module_args)
    return _plain_from_torch(network, options, "pytorch")


def _looks_like_onnx(source: Path) -> bool:
    try:
        model = onnx.load(str(source), load_external_data=False)
    except (DecodeError, OSError, ValueError, RuntimeError):
        return False
    return len(model.graph.node) > 0


def _plain_from_onnx(source: Path) -> _Plain:
    import onnxruntime as ort

    try:
        model = onnx.load(str(source))
    except (DecodeError, OSError, ValueError) as exc:
        raise ConversionError(f"{source} is not a readable ONNX model ({exc})") from exc
    if not model.graph.node:
        raise ConversionError(f"{source} is not a model: its graph has no nodes")
    metadata = UltralyticsMetadata.from_onnx(model)
    session = ort.InferenceSession(str(source), providers=["CPUExecutionProvider"])
    input_name = session.get_inputs()[0].name
    outputs = [o.name for o in session.get_outputs()]

    def run_source(x: npt.NDArray[np.float64]) -> dict[str, npt.NDArray[Any]]:
        results = session.run(outputs, {input_name: x.astype(np.float32)})
        return dict(zip(outputs, results, strict=True))

    return _Plain(model, run_source, "ultralytics-onnx" if metadata else "onnx",
                  metadata.labels if metadata else None,
                  metadata.image_size if metadata else None,
                  metadata.stride if metadata else None)


def _plain_from_torch(network: Any, options: ConvertOptions, kind: str) -> _Plain:
    import torch

    if options.input_size is None:
        raise ConversionError(f"a {kind} model does not record its input size; pass "
                              "--input-size HEIGHTxWIDTH (or one number for a square)")
    height, width = options.input_size
    model = onnx_from_torch(network, height, width, batch=options.batch, opset=options.opset)
    reference_net = _float64_copy(network)
    names = [o.name for o in model.graph.output]

    def run_source(x: npt.NDArray[np.float64]) -> dict[str, npt.NDArray[Any]]:
        with torch.no_grad():
            result = reference_net(torch.from_numpy(x))
        tensors = list(result) if isinstance(result, list | tuple) else [result]
        return dict(zip(names, (t.numpy() for t in tensors), strict=False))

    return _Plain(model, run_source, kind)


def _float64_copy(network: Any) -> Any:
    import copy

    return copy.deepcopy(network).double().eval()


def _converted(plain: _Plain, options: ConvertOptions, default_name: str) -> Converted:
    image = image_input(plain.model)
    height, width = _input_size(image, plain, options)
    labels = options.labels or plain.labels
    output, head = _recognise_head(plain, _output_shapes(plain, image, height, width), labels,
                                   options)
    if options.task is not None and head.task != options.task:
        raise ConversionError(f"--task {options.task} given, but the output {output} looks like "
                              f"a {head.task} head ({head.layout})")
    if labels is None:
        raise ConversionError(f"the model's labels are unknown; pass --labels with its "
                              f"{head.num_classes} class names (a file or a comma list)")
    _check_stride(height, width, options.stride or plain.stride or
                  (32 if head.task == "detect" else 1))
    batch = _batch(image, options, plain.kind)
    folded = onnx_with_preprocess(plain.model, options.camera_order, options.normalisation,
                                  height, width)
    folded = simplified_onnx(folded) if options.simplify else checked_onnx(folded)
    spec = ModelSpec(
        task=head.task, labels=labels, head=head.layout, output=output,  # type: ignore[arg-type]
        input=InputSpec(name=image.name, width=width, height=height, batch=batch,
                        colour_order=options.camera_order),
        postprocess=options.postprocess, name=options.name or default_name,
        source=plain.kind, quantization="float")
    converted = onnx_with_spec(folded, spec)
    parity = _verify(converted, plain, image, spec, options) if options.verify else None
    return Converted(converted, spec, parity, plain.kind)


def _input_size(image: ImageInput, plain: _Plain, options: ConvertOptions) -> tuple[int, int]:
    size = options.input_size or plain.image_size
    if image.height is not None and image.width is not None:
        if size is not None and size != (image.height, image.width):
            raise ConversionError(f"the model's input is fixed at {image.height}x{image.width}, "
                                  f"but --input-size asks for {size[0]}x{size[1]}")
        return image.height, image.width
    if size is None:
        raise ConversionError(f"the model's input {image.name} has no fixed size; pass "
                              "--input-size HEIGHTxWIDTH")
    return size


def _check_stride(height: int, width: int, stride: int) -> None:
    if height % stride or width % stride:
        raise ConversionError(f"input size {height}x{width} is not divisible by the model stride "
                              f"{stride}; use a multiple of {stride}, e.g. "
                              f"{_round_up(height, stride)}x{_round_up(width, stride)}")


def _round_up(value: int, multiple: int) -> int:
    return -(-value // multiple) * multiple


def _batch(image: ImageInput, options: ConvertOptions, kind: str) -> int | None:
    if kind in ("pytorch", "torchscript"):
        return options.batch
    source_batch = image.batch if isinstance(image.batch, int) else None
    if options.batch is not None and source_batch is not None and options.batch != source_batch:
        raise ConversionError(f"the ONNX model has a fixed batch of {source_batch}; re-export it "
                              f"with batch {options.batch} (or dynamic) to change it")
    return source_batch


def _output_shapes(plain: _Plain, image: ImageInput, height: int,
                   width: int) -> dict[str, tuple[int, ...]]:
    """Concrete output shapes from one run of the source on a batch-1 frame (symbolic dims in a
    dynamic-batch export are not resolved by shape inference)."""
    shape = (1, 3, height, width) if image.layout == "NCHW" else (1, height, width, 3)
    return {name: tuple(value.shape)
            for name, value in plain.run_source(np.zeros(shape, np.float64)).items()}


def _recognise_head(plain: _Plain, shapes: dict[str, tuple[int, ...]],
                    labels: tuple[str, ...] | None,
                    options: ConvertOptions) -> tuple[str, Head]:
    """The first output that fits a head layout, and that layout."""
    model = plain.model
    softmax_outputs = {n.output[0] for n in model.graph.node if n.op_type == "Softmax"}
    seen = []
    for output in model.graph.output:
        shape = list(shapes[output.name])
        seen.append(f"{output.name} {shape}")
        nc = len(labels) if labels else None
        try:
            return output.name, head_from_shape(shape, nc, options.head,
                                                 output.name in softmax_outputs)
        except ConversionError as fitted_error:
            if nc is None:
                raise
            try:
                unlabelled = head_from_shape(shape, None, options.head,
                                             output.name in softmax_outputs)
            except ConversionError:
                if len(model.graph.output) == 1:
                    raise fitted_error from None
                continue
            raise ConversionError(
                f"{len(labels or ())} labels were given but the model's output {output.name} "
                f"{shape} has {unlabelled.num_classes} classes; pass exactly "
                f"{unlabelled.num_classes} labels") from None
    raise ConversionError(f"no output fits a supported head; outputs seen: {'; '.join(seen)}")


def _verify(converted: onnx.ModelProto, plain: _Plain, image: ImageInput, spec: ModelSpec,
            options: ConvertOptions) -> Parity:
    frames = parity_frames(spec.input.height, spec.input.width)
    by_hand = preprocess_by_hand(frames, options.camera_order, options.normalisation,
                                 image.layout)

    def reference(x: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
        return np.asarray(plain.run_source(x)[spec.output], np.float64)

    return check_parity(converted, spec.output, reference, frames, by_hand, options.tolerance)

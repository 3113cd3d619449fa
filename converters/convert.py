"""`edge convert`: a fine-tuned CNN (PyTorch checkpoint, TorchScript or ONNX) -> the model artifact.

Every source goes through the same chain: a plain ONNX graph -> head recognised from its output
-> camera preprocessing folded in front -> simplified and checked -> spec written into the
metadata -> parity against the source model on the same frames.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

import numpy as np
import numpy.typing as npt
import onnx
from google.protobuf.message import DecodeError

from converters.affine_folding import affine_folded_into_layers
from converters.errors import ConversionError, first_line
from converters.fold import (
    ColourOrder,
    ImageInput,
    Normalisation,
    image_input,
    onnx_with_preprocess,
)
from converters.grey import check_grey_normalisation, colour_input_model, colour_input_runner
from converters.head_choice import (
    check_class_indices,
    check_label_count,
    highest_class_index,
    labels_given,
    per_frame,
    recognise_head,
    unread_outputs_note,
)
from converters.head_values import check_detector_values
from converters.heads import Head
from converters.labels import labels_from_paddle_metadata
from converters.metadata import onnx_with_preprocessing, onnx_with_spec
from converters.onnx_from_torch import (
    onnx_from_torch,
    torchscript_noise_muted,
    traced_branch_advice,
)
from converters.onnx_source import source_onnx_from_file
from converters.pooled_head import flattened_output, pooled_scores
from converters.simplify import checked_onnx, simplified_onnx
from converters.ultralytics import (
    ULTRALYTICS_CLASSIFY_INTERPOLATION,
    ULTRALYTICS_CLASSIFY_RESIZE,
    UltralyticsMetadata,
)
from converters.ultralytics_tasks import (
    detector_of,
    keeping_leading_rows,
    keeping_only,
    pose_without_metadata,
    segment_without_metadata,
)
from converters.verify import (
    DEFAULT_TOLERANCE,
    Parity,
    SourceRunner,
    check_parity,
    parity_frames,
    preprocess_by_hand,
)
from converters.yolox_head import STRIDES as YOLOX_STRIDES
from converters.yolox_head import (
    Grid,
    grid_decoded_runner,
    holds_raw_offsets,
    with_grid_decode,
)
from edge.files import write_bytes_atomic
from edge.opsets import DEFAULT_OPSET, MIN_OPSET
from edge.resizing import (
    DEFAULT_INTERPOLATION,
    DEFAULT_PAD_VALUE,
    PADDED_RESIZES,
    Interpolation,
    Resize,
    resize_words,
)
from edge.spec import HeadLayout, InputSpec, ModelSpec, PostprocessSpec, unusable_labels
from edge.wording import listed

#: A fixed batch size, None for a dynamic batch, or "source": what an ONNX source has (a
#: PyTorch source: 1).
Batch = int | None | Literal["source"]


@dataclass(frozen=True)
class ConvertOptions:
    """What cannot be read from the source. None means: take it from the source or a default."""

    input_size: tuple[int, int] | None = None  # height, width
    labels: tuple[str, ...] | None = None
    camera_order: ColourOrder = "BGR"
    normalisation: Normalisation = field(default_factory=Normalisation)
    task: Literal["detect", "classify"] | None = None
    resize: Resize | None = None  # None: the source's own, else letterbox
    crop_fraction: float | None = None  # None: 1, all of what `resize` takes
    pad_value: int | None = None  # None: DEFAULT_PAD_VALUE; letterboxes only
    interpolation: Interpolation | None = None  # None: the source's own, else bilinear
    #: "yolox": a `yolov5` head whose output holds raw grid offsets (see converters.yolox_head)
    head: HeadLayout | Literal["yolox"] | None = None
    head_output: str | None = None  # None: the output that fits a head (`recognise_head`)
    module: str | None = None  # package.module:Class or file.py:Class, for checkpoints
    module_args: dict[str, Any] | None = None
    weights_entry: str | None = None  # the checkpoint entry to read (an EMA copy's)
    batch: Batch = "source"
    opset: int = DEFAULT_OPSET
    stride: int | None = None
    simplify: bool = True
    verify: bool = True
    tolerance: float = DEFAULT_TOLERANCE
    name: str | None = None
    postprocess: PostprocessSpec = field(default_factory=PostprocessSpec)
    #: The preprocessing options the user gave (`network_order`, `mean`, `std`), so a default
    #: passed on purpose is not reported as an assumption.
    stated: frozenset[str] = frozenset()


@dataclass(frozen=True)
class Converted:
    model: onnx.ModelProto
    spec: ModelSpec
    parity: Parity | None
    source_kind: str
    notes: tuple[str, ...] = ()  # what was changed in the source on the way, one line each

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
    notes: tuple[str, ...] = ()
    #: How its training images were made, where the source says (Ultralytics classify)
    resize: Resize | None = None
    interpolation: Interpolation | None = None
    #: The head layout the source says (Ultralytics' end2end) or its loader built (GFL)
    head: HeadLayout | None = None
    #: A traced PyTorch network's tracer warnings (`converters.onnx_from_torch.Exported`)
    tracer_warnings: tuple[str, ...] = ()


def convert(source: Path, options: ConvertOptions) -> Converted:
    """Convert the model file at `source`; nothing is written (see `Converted.write`)."""
    if source.is_dir():
        raise ConversionError(f"source model {source} is a folder; pass the model file (.onnx, "
                              ".pt, .pth or .torchscript)")
    if not source.is_file():
        raise ConversionError(f"source model {source} does not exist")
    return _converted(_plain_from_file(source, options), options, _model_name(source))


def _model_name(source: Path) -> str:
    """The source file's name without its extension, a timm checkpoint's two included
    (`net.pth.tar` -> `net`: a user check read `net.pth`)."""
    stem = Path(source.stem)
    return stem.stem if source.suffix.lower() == ".tar" and \
        stem.suffix.lower() in (".pth", ".pt") else stem.name


def convert_module(network: Any, options: ConvertOptions, name: str,
                   source_kind: str = "pytorch") -> Converted:
    """Convert an in-memory torch.nn.Module (used by training scripts)."""
    return _converted(_plain_from_torch(network, options, source_kind), options, name)


def _plain_from_file(source: Path, options: ConvertOptions) -> _Plain:
    if source.suffix.lower() == ".onnx" or _looks_like_onnx(source):
        return _with_module_unused(_plain_from_onnx(source, options.labels is not None),
                                   options, "an ONNX file")
    from converters.torch_loading import (  # noqa: PLC0415 - torch is optional: only PyTorch sources need it
        checkpoint_problem,
        damaged_archive,
        is_torchscript,
        module_class_from_spec,
        module_from_checkpoint,
        module_from_torchscript,
    )

    damage = damaged_archive(source)
    if damage is not None:
        raise ConversionError(damage)
    if is_torchscript(source):
        return _with_module_unused(
            _plain_from_torch(module_from_torchscript(source), options, "torchscript"),
            options, "a TorchScript file")
    if options.module is None:
        raise ConversionError(checkpoint_problem(source, options.weights_entry) or (
            f"{source} is a PyTorch checkpoint (weights, not the network): pass the network's "
            "class with --module package.module:Class (or path/to/file.py:Class)"))
    network = module_from_checkpoint(module_class_from_spec(options.module), source,
                                     options.module_args, options.weights_entry)
    return _plain_from_torch(network, options, "pytorch")


def _with_module_unused(plain: _Plain, options: ConvertOptions, holder: str) -> _Plain:
    """`plain` with a note that --module was not used, where it was given: `holder` carries
    its own network, and the class was not what got converted; for an ONNX file, that
    --opset was not used either (a user check: `--opset 99` passed without a word)."""
    given = " and ".join(name for name, value in (("--module", options.module),
                                                  ("--module-args", options.module_args),
                                                  ("--weights-entry", options.weights_entry))
                         if value is not None)
    notes = [f"{given} not used: {holder} holds its own network (--module names the class of "
             "a state_dict checkpoint's network)"] if given else []
    if "opset" in options.stated and holder == "an ONNX file":
        notes.append(f"--opset {options.opset} not used: it sets the opset of a PyTorch "
                     "network's export, and an ONNX file keeps its own (one below "
                     f"{MIN_OPSET} is upgraded to {MIN_OPSET})")
    return replace(plain, notes=(*plain.notes, *notes)) if notes else plain


def _looks_like_onnx(source: Path) -> bool:
    try:
        model = onnx.load(str(source), format="protobuf", load_external_data=False)
    except (DecodeError, OSError, ValueError, RuntimeError):
        return False
    return len(model.graph.node) > 0


def _plain_from_onnx(source: Path, labels_given: bool = False) -> _Plain:
    """`labels_given`: --labels name the classes (metadata that does not fit is then no error)."""
    from onnxruntime.capi.onnxruntime_pybind11_state import (  # noqa: PLC0415 - heavy; only the parity check needs it
        Fail,
        InvalidArgument,
        InvalidGraph,
        InvalidProtobuf,
        NotImplemented,
        RuntimeException,
    )

    ort_errors = (Fail, InvalidArgument, InvalidGraph, InvalidProtobuf, NotImplemented,
                  RuntimeException)
    loaded = source_onnx_from_file(source)
    model = loaded.model
    _check_float32(image_input(model))  # several inputs, float16: before ONNX Runtime sees them
    metadata = UltralyticsMetadata.from_onnx(model)
    notes = tuple(loaded.notes)
    detector = detector_of(model, metadata, labels_given) if metadata else None
    if detector is not None:
        model, notes = detector.model, (*notes, detector.note)
    labels = (None if detector is not None and not detector.names_fit
              else metadata.labels if metadata else labels_from_paddle_metadata(model))
    try:
        session = _source_session(model)
    except ort_errors as exc:
        raise ConversionError(f"ONNX Runtime cannot load {source}: {first_line(exc)}; the "
                              "source must run in ONNX Runtime on the CPU to be converted and "
                              "checked") from exc
    image = session.get_inputs()[0]
    fixed = image.shape[0] if isinstance(image.shape[0], int) and image.shape[0] > 1 else None
    outputs = [o.name for o in session.get_outputs()]

    def run_source(x: npt.NDArray[np.float64]) -> dict[str, npt.NDArray[Any]]:
        feed = x if fixed is None else np.resize(x, (fixed, *x.shape[1:]))
        try:
            results = session.run(outputs, {image.name: feed.astype(np.float32)})
        except ort_errors as exc:
            raise ConversionError(
                f"the source model fails on an input of shape {list(x.shape)}: "
                f"{first_line(exc)}; check --input-size (the size it was trained at)") from exc
        if fixed is None:  # an output's first axis need not be the batch (time-major CTC)
            return dict(zip(outputs, results, strict=True))
        return {name: result[:len(x)] for name, result in zip(outputs, results, strict=True)}

    head = "end_to_end" if metadata and metadata.end_to_end else loaded.head
    classify = metadata is not None and metadata.task == "classify"
    return _Plain(model, run_source, "ultralytics-onnx" if metadata else "onnx", labels,
                  metadata.image_size if metadata else None,
                  metadata.stride if metadata else None, notes,
                  ULTRALYTICS_CLASSIFY_RESIZE if classify else None,
                  ULTRALYTICS_CLASSIFY_INTERPOLATION if classify else None, head)


def _source_session(model: onnx.ModelProto) -> Any:
    import onnxruntime as ort  # noqa: PLC0415 - heavy; only the parity check needs it

    options = ort.SessionOptions()
    options.log_severity_level = 4  # load and run errors are raised and reported; no log spam
    return ort.InferenceSession(model.SerializeToString(), options,
                                providers=["CPUExecutionProvider"])



def _plain_from_torch(network: Any, options: ConvertOptions, kind: str) -> _Plain:
    import torch  # noqa: PLC0415 - optional: only PyTorch sources need it

    if options.input_size is None:
        raise ConversionError(f"a {kind} model does not record its input size; pass "
                              "--input-size HEIGHTxWIDTH (or one number for a square)")
    height, width = options.input_size
    batch = 1 if options.batch == "source" else options.batch
    exported = onnx_from_torch(network, height, width, batch=batch, opset=options.opset)
    model = exported.model
    reference_net = _float64_copy(network)
    names = [o.name for o in model.graph.output]

    def run_source(x: npt.NDArray[np.float64]) -> dict[str, npt.NDArray[Any]]:
        with torch.no_grad():
            result = reference_net(torch.from_numpy(x))
        tensors = (list(result.values()) if isinstance(result, dict) else
                   list(result) if isinstance(result, list | tuple) else [result])
        return dict(zip(names, (t.numpy() for t in tensors), strict=False))

    traced = exported.tracer_warnings
    more = f" (and {len(traced) - 1} more)" if traced[1:] else ""
    notes: tuple[str, ...] = (
        f"tracing warned: {traced[0]}{more}; the graph keeps what that line did on the trace's "
        "input: harmless where it read a shape (at this input size), and the check frames "
        "(dark, bright, busy) agreed, but a branch on values they do not cross stays as traced: "
        "if forward branches on values, script the network",) if traced else ()
    if image_input(model).layout == "NHWC":
        notes += (f"the network runs on channels-last input [N, {height}, {width}, 3] (not on "
                  "[N, 3, H, W]): exported and fed that way",)
    return _Plain(model, run_source, kind, notes=notes, tracer_warnings=traced)


def _float64_copy(network: Any) -> Any:
    with torchscript_noise_muted():
        return copy.deepcopy(network).double().eval()


def _converted(plain: _Plain, options: ConvertOptions, default_name: str) -> Converted:
    image = image_input(plain.model)
    grey = image.channels == 1
    if grey:  # its luma weights go in the camera's order: no channel swap in front
        options = replace(options, normalisation=replace(options.normalisation,
                                                         colour_order=options.camera_order))
        plain = _taking_colour(plain, image, options.normalisation)
        image = image_input(plain.model)
    height, width = _input_size(image, plain, options)
    labels = options.labels or plain.labels
    unusable = unusable_labels(labels or ())
    if unusable:  # before the source runs: nothing to wait for
        raise ConversionError(unusable + ("" if options.labels else
                                          " (these come from the model's metadata)"))
    known_stride = options.stride or plain.stride
    if known_stride:  # before the source runs: a wrong size fails inside it, in its own words
        _check_stride(height, width, known_stride)
    plain, first = _detector_of_bare_export(plain, _first_outputs(plain, image, height, width),
                                            labels)
    plain, first = _pooled_scores_flattened(plain, first)
    shapes = {name: tuple(value.shape) for name, value in first.items()}
    requested = _head_layout(plain, options)
    raw_grid = next((name for name, value in first.items()
                     if holds_raw_offsets(value, height, width)), None)
    # a raw YOLOX head is a yolov5 one after its decode: its columns then tell the class count
    if options.head == "yolox" and not any(len(s) == 3 and s[1] > s[2] > 5  # [N, A, 5+nc]
                                           for s in shapes.values()):
        outputs = "; ".join(f"{name} {list(shape)}" for name, shape in shapes.items())
        raise ConversionError(f"--head yolox: no output is a YOLOX head ([N, A, 5+nc]; "
                              f"outputs: {outputs}); leave --head out")
    output, head = recognise_head(plain.model, first, labels,
                                  requested or ("yolov5" if raw_grid else None),
                                  from_metadata=options.labels is None,
                                  wanted=options.head_output)
    grid_decoded_here = options.head == "yolox" or (head.layout == "yolov5"
                                                     and output == raw_grid)
    check_detector_values(output, head, first[output], height, width, grid_decoded_here)
    highest = None
    if head.layout == "end_to_end":
        highest = highest_class_index([first[output], *_parity_outputs(
            plain, image, options, output, (height, width))])
    check_label_count(plain.labels, options.labels, highest)
    if highest is not None:
        check_class_indices(output, highest, head.num_classes, options.labels is None)
        plain = replace(plain, notes=(*plain.notes, *_unused_nms_note(options)))
    if grid_decoded_here:
        preprocessing_given = (options.resize is not None or bool(
            {"network_order", "mean", "std"} & set(options.stated)))
        plain = _grid_decoded(plain, output, first[output], height, width,
                              preprocessing_given)
    if options.task is not None and head.task != options.task:
        raise ConversionError(f"--task {options.task} given, but the output {output} looks like "
                              f"a {head.task} head ({head.layout})")
    if len(plain.model.graph.output) > 1:  # the device reads the head alone: run nothing else
        plain = replace(plain, model=keeping_only(plain.model, output))
    if not known_stride:
        _check_stride(height, width, 32 if head.task == "detect" else 1)
    batch = _batch(image, options, plain.kind)
    folded = onnx_with_preprocess(_with_batch(plain.model, image, batch), options.camera_order,
                                  options.normalisation, height, width)
    folded = simplified_onnx(folded) if options.simplify else checked_onnx(folded)
    folded, affine = affine_folded_into_layers(folded)
    spec = ModelSpec(
        task=head.task, labels=labels, head=head.layout, output=output,  # type: ignore[arg-type]
        input=_input_spec(plain, options, image.name, (height, width), batch),
        postprocess=options.postprocess, name=options.name or default_name,
        source=plain.kind, quantization="float")
    converted = onnx_with_preprocessing(onnx_with_spec(folded, spec), options.normalisation,
                                        grey)
    parity = _verify(converted, plain, image, spec, options, head) if options.verify else None
    return Converted(converted, spec, parity, plain.kind,
                     plain.notes + _folded_affine_note(affine)
                     + _assumed_preprocessing_note(plain.kind, options, grey, spec.task)
                     + _resize_notes(plain, options, spec) + unread_outputs_note(output, head,
                                                                                 shapes))


def _default_pad(resize: str, normalisation: Normalisation) -> int:
    """Ultralytics' grey for a letterbox; for a text line the network's normalised 0 (its
    mean in pixel levels), as PaddleOCR pads its normalised lines with zeros."""
    if resize != "text-line":
        return DEFAULT_PAD_VALUE
    return round(255 * sum(normalisation.mean) / len(normalisation.mean) + 1e-9)


def _folded_affine_note(count: int) -> tuple[str, ...]:
    return ((f"folded {count} per-channel Mul/Add/Sub by constants behind convolutions or "
             "dense layers (a BatchNorm the exporter left unfused) into them, so INT8 quantizes "
             "the normalised output",) if count else ())


def _input_spec(plain: _Plain, options: ConvertOptions, name: str, size: tuple[int, int],
                batch: int | None) -> InputSpec:
    """The spec's input: `size` (height, width), `batch`, and how frames become it (the
    options' resize and interpolation, else the source's, else a bilinear letterbox; a crop
    fraction only where the frame is cut, a pad value only where there are bars)."""
    resize = options.resize or plain.resize or "letterbox"
    crop_fraction = 1.0 if options.crop_fraction is None else options.crop_fraction
    if crop_fraction != 1.0 and resize in PADDED_RESIZES:
        raise ConversionError(f"--crop-fraction {crop_fraction:g} needs --resize stretch or "
                              f"crop; the frames are made by {resize}, which keeps all of "
                              "the frame")
    if options.pad_value is not None and resize not in PADDED_RESIZES:
        raise ConversionError(f"--pad-value {options.pad_value} needs bars (--resize "
                              f"letterbox, letterbox-top-left or text-line); {resize} fills "
                              "the whole input, so there are no bars to pad")
    return InputSpec(name=name, height=size[0], width=size[1], batch=batch,
                     colour_order=options.camera_order, resize=resize,
                     crop_fraction=crop_fraction,
                     pad_value=_default_pad(resize, options.normalisation)
                     if options.pad_value is None else options.pad_value,
                     interpolation=(options.interpolation or plain.interpolation
                                    or DEFAULT_INTERPOLATION))


def _detector_of_bare_export(plain: _Plain, first: dict[str, npt.NDArray[Any]],
                             labels: tuple[str, ...] | None
                             ) -> tuple[_Plain, dict[str, npt.NDArray[Any]]]:
    """An Ultralytics segmentation or pose export without the metadata that says so, cut to
    its detector (`first`: the source's outputs, cut alike); anything else as it is."""
    if plain.kind != "onnx":  # Ultralytics metadata said what the export is
        return plain, first
    shapes = {name: tuple(value.shape) for name, value in first.items()}
    segment = segment_without_metadata(shapes, len(labels) if labels else None)
    if segment is not None:
        return _without_masks(plain, first, *segment, labels)
    pose = pose_without_metadata(shapes, len(labels) if labels else None)
    if pose is not None:
        return _without_keypoints(plain, first, *pose)
    return plain, first


def _without_masks(plain: _Plain, first: dict[str, npt.NDArray[Any]], output: str, kept: int,
                   prototypes: str, labels: tuple[str, ...] | None
                   ) -> tuple[_Plain, dict[str, npt.NDArray[Any]]]:
    """A segmentation export without its metadata, cut to its detector's `kept` rows of
    `output` once --labels say how many classes it has (see `segment_without_metadata`)."""
    classes, masks = kept - 4, first[output].shape[1] - kept
    layout = (f"outputs {output} ({per_frame(first[output].shape)}) and {prototypes} "
              f"({per_frame(first[prototypes].shape)}) look like an Ultralytics segmentation "
              f"export without its metadata: 4 box rows, {classes} class rows and {masks} mask "
              "coefficients, with the mask prototypes")
    if labels is None or len(labels) != classes:
        given = "" if labels is None else f"{labels_given(len(labels))}; "
        raise ConversionError(f"{given}{layout}; pass --labels with its {classes} class names "
                              "(or export it again with Ultralytics, whose metadata names them)")

    return _detector_rows(plain, first, output, kept, (
        f"{layout}: read as its detector (rows 0..{kept - 1} of {output}); the mask "
        f"coefficients and {prototypes} are left out of the converted model"))


def _without_keypoints(plain: _Plain, first: dict[str, npt.NDArray[Any]], output: str,
                       kept: int) -> tuple[_Plain, dict[str, npt.NDArray[Any]]]:
    """A pose export without its metadata, cut to its detector's `kept` rows of `output`
    (`pose_without_metadata`: --labels said how many classes it has)."""
    keypoints = first[output].shape[1] - kept
    values = "x, y and visibility" if keypoints % 3 == 0 else "x and y"
    return _detector_rows(plain, first, output, kept, (
        f"output {output} ({per_frame(first[output].shape)}) with {kept - 4} class(es) looks "
        f"like an Ultralytics pose export without its metadata: 4 box rows, {kept - 4} class "
        f"row(s) and {keypoints} keypoint values (17 keypoints of {values}): read as its "
        f"detector (rows 0..{kept - 1}); the keypoints are left out of the converted model"))


def _detector_rows(plain: _Plain, first: dict[str, npt.NDArray[Any]], output: str, kept: int,
                   note: str) -> tuple[_Plain, dict[str, npt.NDArray[Any]]]:
    """`plain` whose only output is `output` cut to its first `kept` rows, with `note`."""

    def run(x: npt.NDArray[np.float64]) -> dict[str, npt.NDArray[Any]]:
        return {output: plain.run_source(x)[output][:, :kept]}

    cut = replace(plain, model=keeping_leading_rows(plain.model, output, 1, kept),
                  run_source=run, notes=(*plain.notes, note))
    return cut, {output: first[output][:, :kept]}


def _pooled_scores_flattened(plain: _Plain, first: dict[str, npt.NDArray[Any]]
                             ) -> tuple[_Plain, dict[str, npt.NDArray[Any]]]:
    """`plain` with each output of scores on a 1x1 map ([N, C, 1, 1]) flattened to [N, C] in
    the graph (`converters.pooled_head`), and `first` and the source's outputs alike."""
    pooled = [name for name, value in first.items() if pooled_scores(value.shape)]
    if not pooled:
        return plain, first
    model = plain.model
    for name in pooled:
        model = flattened_output(model, name)

    def flat(outputs: dict[str, npt.NDArray[Any]]) -> dict[str, npt.NDArray[Any]]:
        return {name: value.reshape(len(value), -1) if name in pooled else value
                for name, value in outputs.items()}

    note = (f"flattened {listed(pooled)} ({', '.join(per_frame(first[n].shape) for n in pooled)}"
            f": scores on a 1x1 map, as networks ending in a global pool or 1x1 convolution "
            "without a Flatten write them) to one row of scores a frame")
    return (replace(plain, model=model, run_source=lambda x: flat(plain.run_source(x)),
                    notes=(*plain.notes, note)), flat(first))


def _parity_outputs(plain: _Plain, image: ImageInput, options: ConvertOptions, output: str,
                    size: tuple[int, int]) -> list[npt.NDArray[Any]]:
    """The source's `output` on each parity frame (scenes of many shapes)."""
    _, inputs = _parity_inputs(image, options, *size)
    return [plain.run_source(inputs[i:i + 1])[output] for i in range(len(inputs))]


def _parity_inputs(image: ImageInput, options: ConvertOptions, height: int, width: int
                   ) -> tuple[npt.NDArray[np.uint8], npt.NDArray[np.float64]]:
    """The parity check's camera frames and the source's inputs made from them by hand."""
    frames = parity_frames(height, width)
    return frames, preprocess_by_hand(frames, options.camera_order, options.normalisation,
                                      image.layout)


def _unused_nms_note(options: ConvertOptions) -> tuple[str, ...]:
    if options.postprocess.iou_threshold == PostprocessSpec().iou_threshold:
        return ()
    return ("--iou-threshold has no effect on this model: its output is final detections (an "
            "end-to-end head, no NMS after it)",)


def _check_float32(image: ImageInput) -> None:
    """A half- or double-precision source is refused: the INT8 profiles quantize float32, and
    TensorRT makes its FP16 layers itself (a uint8 input is the converted-model check's)."""
    if image.elem_type in (onnx.TensorProto.FLOAT, onnx.TensorProto.UINT8):
        return
    kind = onnx.TensorProto.DataType.Name(image.elem_type).lower()
    raise ConversionError(f"the model's input {image.name} is {kind}: edge converts float32 "
                          "models (edge calibrate quantizes from float32; TensorRT builds "
                          "its FP16 layers itself): export it in float32 (Ultralytics: "
                          "without half=True; PyTorch: model.float() before exporting)")


def _taking_colour(plain: _Plain, image: ImageInput, normalisation: Normalisation) -> _Plain:
    """A grey network's source, made to take the camera's 3 channels (see converters.grey)."""
    check_grey_normalisation(normalisation.mean, normalisation.std)
    order = normalisation.colour_order
    model, note = colour_input_model(plain.model, image, order)
    return replace(plain, model=model, notes=(*plain.notes, note),
                   run_source=colour_input_runner(plain.run_source, image.layout, order))


def _assumed_preprocessing_note(kind: str, options: ConvertOptions, grey: bool = False,
                                task: str = "detect") -> tuple[str, ...]:
    """A note when the network's preprocessing is the default by assumption: only Ultralytics
    exports say theirs (RGB / 255), and a wrong guess costs accuracy without any error. A
    `grey` network has no channel order to assume; a classifier's resampling is named too
    (PIL-trained ones are common, and their answers move with it)."""
    if kind == "ultralytics-onnx":
        return ()
    default, given, stated = Normalisation(), options.normalisation, options.stated
    assumed, examples = [], []
    if given.colour_order == default.colour_order and not grey and "network_order" not in stated:
        assumed.append(f"{default.colour_order} channel order (--network-order)")
        examples.append("PaddlePaddle models often BGR")
    default_mean = tuple(given.mean) == tuple(default.mean) and "mean" not in stated
    default_std = tuple(given.std) == tuple(default.std) and "std" not in stated
    if default_mean and default_std:
        assumed.append("pixels / 255 with no mean or std (--mean, --std)")
        examples.insert(0, "e.g. --mean 0.5 --std 0.5" if grey else
                        "ImageNet-trained: --mean 0.485,0.456,0.406 --std 0.229,0.224,0.225")
    elif default_mean or default_std:  # one given, the other left at its default
        assumed.append("no mean (--mean)" if default_mean else "a std of 1 (--std)")
        examples.append("give --mean too, 0 if it has none" if default_mean else
                        "give --std too, 1 if it has none")
    if options.resize is None:
        assumed.append("whole frames letterboxed, centred (--resize)")
        examples.append("trained on images resized to the input, as Keras and torchvision's "
                        "Resize((h, w)) do: --resize stretch")
    if options.interpolation is None and task == "classify":
        assumed.append("frames resampled bilinear without antialiasing (--interpolation)")
        examples.append("trained on PIL images, as torchvision and timm load them: "
                        "--interpolation pil-bilinear, or pil-bicubic for timm's defaults")
    if not assumed:
        return ()
    takes = ", ".join(assumed[:-1]) + " and " + assumed[-1] if len(assumed) > 1 else assumed[0]
    return (f"assumed the network takes {takes}; if it was trained otherwise, pass that "
            f"({'; '.join(examples)}), or its accuracy drops with no error",)


def _resize_notes(plain: _Plain, options: ConvertOptions, spec: ModelSpec) -> tuple[str, ...]:
    """What the resize the source implies, or a crop of a detector's frames, leaves out."""
    if options.resize is None and plain.resize is not None:
        unlike = plain.interpolation not in (None, spec.input.interpolation)
        made = resize_words(plain.resize, interpolation=(DEFAULT_INTERPOLATION if unlike else
                                                         spec.input.interpolation))
        asked = (f"; resampled {spec.input.interpolation} as --interpolation asks, not as the "
                 "predictor's resize" if unlike else "")
        return (f"frames are made into the input by {made}, as Ultralytics' classify "
                "predictor does (the frame's centre, its shorter side to the input's, resized "
                f"by Pillow's bilinear filter){asked}; pass --resize letterbox to keep the "
                "whole frame",)
    notes: tuple[str, ...] = ()
    if spec.input.resize == "text-line" and options.pad_value is None:
        notes += (f"the text-line bar is padded with {spec.input.pad_value}, the network's "
                  "normalised 0 (255 x its --mean), as PaddleOCR pads its lines; pass "
                  "--pad-value to change it",)
    if spec.input.resize == "text-line" and spec.input.width <= spec.input.height:
        notes += (f"--resize text-line into a {spec.input.height}x{spec.input.width} input (HxW), "
                  "no wider than high: PaddleOCR's text-line models take wide inputs (48x192 "
                  "for its direction classifiers, 48x320 and wider for its recognisers), and a "
                  "line wider than the input is squeezed to its width; check the image shape "
                  "the package's own code uses (its cls_image_shape or rec_image_shape) and "
                  "pass that as --input-size",)
    if spec.input.resize == "text-line" and spec.task == "detect":
        notes += ("--resize text-line on a detector: frames are made as PaddleOCR makes text "
                  "lines (the height to the input's, a bar on the right); a detector trained on "
                  "whole images wants the default, letterbox",)
    if spec.input.resize == "crop" and spec.task == "detect":
        notes += ("--resize crop on a detector: only the centre of each frame, in the input's "
                  f"aspect ({spec.input.width}x{spec.input.height}), is searched; objects "
                  "beyond it are not found (a detector trained on whole images wants the "
                  "default, letterbox)",)
    return notes


def _input_size(image: ImageInput, plain: _Plain, options: ConvertOptions) -> tuple[int, int]:
    size = options.input_size or plain.image_size
    if image.height is not None and image.width is not None:
        if size is not None and size != (image.height, image.width):
            fixed, wanted = f"{image.height}x{image.width}", f"{size[0]}x{size[1]}"
            if options.input_size is None:
                raise ConversionError(f"the model's input is fixed at {fixed}, but its "
                                      f"metadata says {wanted}; export it again")
            raise ConversionError(
                f"the model's input is fixed at {fixed}, but --input-size asks for {wanted}: "
                f"leave --input-size out to convert it at {fixed}, or export it again at "
                f"{wanted} (or with a dynamic height and width) to run it at {wanted}")
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
    """The converted model's batch: None is dynamic."""
    if kind in ("pytorch", "torchscript"):
        return 1 if options.batch == "source" else options.batch
    source_batch = image.batch if isinstance(image.batch, int) else None
    if options.batch == "source" or options.batch == source_batch:  # noqa: PLR1714 - narrows
        return source_batch
    if source_batch is None:
        return options.batch  # a dynamic source can be fixed to any batch
    wanted = "a dynamic batch" if options.batch is None else f"batch {options.batch}"
    raise ConversionError(
        f"the ONNX model's batch is fixed at {source_batch} by its exporter, so {wanted} cannot "
        f"be made from it; convert without --batch (batch {source_batch}), or export it again "
        f"with a dynamic batch axis (PyTorch's torch.onnx.export: dynamic_shapes=({{0: "
        f"torch.export.Dim('batch')}},), or with dynamo=False dynamic_axes={{'{image.name}': "
        "{0: 'batch'}}; Ultralytics: dynamic=True)")


def _with_batch(model: onnx.ModelProto, image: ImageInput, batch: int | None) -> onnx.ModelProto:
    """`model` with its image input's batch dim fixed at `batch` (None: left as it is)."""
    if batch is None or image.batch == batch:
        return model
    fixed = onnx.ModelProto()
    fixed.CopyFrom(model)
    value = next(v for v in fixed.graph.input if v.name == image.name)
    dim = value.type.tensor_type.shape.dim[0]
    dim.Clear()
    dim.dim_value = batch
    return fixed


def _first_outputs(plain: _Plain, image: ImageInput, height: int,
                   width: int) -> dict[str, npt.NDArray[Any]]:
    """The outputs of one run of the source on a batch-1 frame: their concrete shapes (symbolic
    dims in a dynamic-batch export are not resolved by shape inference), and values."""
    shape = (1, 3, height, width) if image.layout == "NCHW" else (1, height, width, 3)
    return dict(plain.run_source(np.zeros(shape, np.float64)))


def _grid_decoded(plain: _Plain, output: str, value: npt.NDArray[Any], height: int,
                  width: int, preprocessing_given: bool = False) -> _Plain:
    """The source with the grid decode appended to its raw YOLOX-style `output` (`value`: its
    first run's). Unless `preprocessing_given` (any of --network-order, --mean, --std,
    --resize), its note says how YOLOX's own models take their pixels, as advice beside the
    preprocessing assumed (a user read it as applied, next to the note saying what was)."""
    anchors = Grid.for_input(height, width).anchors
    if value.shape[1] != anchors:
        raise ConversionError(f"--head yolox: output {output} has {value.shape[1]} anchors, but "
                              f"a YOLOX head at {height}x{width} has {anchors} (one a cell at "
                              f"strides {', '.join(map(str, YOLOX_STRIDES))}); check "
                              "--input-size, or leave --head out")
    if not holds_raw_offsets(value, height, width):
        reach = float(np.abs(value[..., :2]).max())
        raise ConversionError(f"--head yolox: the box centres in output {output} reach "
                              f"{reach:.0f} px, so they are decoded already (raw offsets stay "
                              "within a few cells); leave --head out")
    note = (f"output {output} holds raw grid offsets (YOLOX's export without "
            "--decode_in_inference): appended the grid decode (strides "
            f"{', '.join(map(str, YOLOX_STRIDES))}), so it reads as [N, A, 5+nc] in input "
            "pixels")
    if not preprocessing_given:
        note += (". YOLOX's own models take BGR pixels 0..255 as they are, letterboxed at the "
                 "top left, which is not what is assumed here (the note on the assumed "
                 "preprocessing says what is): for one of them, convert again with "
                 "--network-order BGR --mean 0 --std 0.00392157 --resize letterbox-top-left")
    return replace(plain, model=with_grid_decode(plain.model, output, height, width),
                   run_source=grid_decoded_runner(plain.run_source, output, height, width),
                   notes=(*plain.notes, note))


def _head_layout(plain: _Plain, options: ConvertOptions) -> HeadLayout | None:
    """The layout to check the output against: the one the source says or its loader built (a
    folded GFL head), else --head, else None (recognised from the shape and label count)."""
    if plain.head is not None and options.head not in (None, plain.head):
        source = ("its Ultralytics metadata says the output is final detections (end2end or "
                  "nms=True), end_to_end ([N, K, 6])" if plain.head == "end_to_end" else
                  f"the output is the one edge convert builds from its GFL head, {plain.head} "
                  "([N, A, 4+nc])")
        raise ConversionError(f"--head {options.head}: {source}; leave --head out")
    return plain.head or ("yolov5" if options.head == "yolox" else options.head)


def _verify(converted: onnx.ModelProto, plain: _Plain, image: ImageInput, spec: ModelSpec,
            options: ConvertOptions, head: Head) -> Parity:
    """The parity check; then the `head`'s values on the check frames, which show more than
    the first run's blank one (`check_detector_values`)."""
    frames, by_hand = _parity_inputs(image, options, spec.input.height, spec.input.width)
    seen: list[npt.NDArray[np.float64]] = []

    def reference(x: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
        seen.append(np.asarray(plain.run_source(x)[spec.output], np.float64))
        return seen[-1]

    advice = (traced_branch_advice(plain.tracer_warnings) if plain.tracer_warnings else None)
    parity = check_parity(converted, spec.output, reference, frames, by_hand, options.tolerance,
                          spec.head, advice)
    check_detector_values(spec.output, head, np.concatenate(seen), spec.input.height,
                          spec.input.width)
    return parity

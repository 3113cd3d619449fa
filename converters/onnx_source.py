"""An exported ONNX file -> a plain graph every later step can rely on.

Real exporters disagree on details that later steps trip over: paddle2onnx and keras2onnx mark
a dynamic batch as `dim_value = -1` (or 0); paddle2onnx holds every weight in a `Constant` node,
where the quantizers look for initializers; many exporters still write opset 9-12, below the
per-channel DequantizeLinear (opset 13) both INT8 profiles need, and the oldest (IR version 3)
list every weight among the graph inputs. Each of these is fixed here,
once, and said in a note; a file that is not a model, or is a model this tool wrote already,
is refused with a message that names the file.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import onnx
from google.protobuf.message import DecodeError
from onnx import numpy_helper, version_converter

from converters.errors import ConversionError
from converters.fold import value_dims
from converters.gfl_head import fold_gfl_head, gfl_levels
from converters.graph_order import sort_nodes
from converters.model_report import quantization_summary
from edge.errors import EMPTY_FILE, ModelError
from edge.opsets import MIN_OPSET
from edge.spec import SPEC_KEY, HeadLayout, spec_from_model

#: What to do with a model `edge convert` wrote, by its spec's quantization.
_USE_AS_IT_IS = {
    "float": "`edge calibrate`, `edge run`",
    "int8-qdq": "`edge run`, `edge build-engine`; it is INT8 already",
    "int8-qdq-cpu": "`edge run` on ONNX Runtime; it is INT8 for the CPU already",
}


@dataclass
class SourceOnnx:
    """A loaded, normalised source graph and what was changed on the way (one line each)."""

    model: onnx.ModelProto
    notes: list[str] = field(default_factory=list)
    #: The layout of the head output this module built (a folded GFL head: its [N, A, 4+nc]
    #: cannot be told from YOLOv5's [N, A, 5+nc] by shape, but is known here), else None
    head: HeadLayout | None = None


def source_onnx_from_file(path: Path) -> SourceOnnx:
    """Load `path`, refuse what cannot be converted, and normalise the rest (see module doc)."""
    notes: list[str] = []
    model = _loaded(path, notes)
    _refuse_converted(model, path)
    _initializers_out_of_inputs(model, notes)
    _dynamic_dims_named(model, notes)
    _contradicted_output_shapes_replaced(model, notes)
    _constants_as_initializers(model, notes)
    _kernel_shapes_written(model)
    model = _opset_at_least(model, MIN_OPSET, notes)
    folded = _gfl_head_folded(model, notes)
    head: HeadLayout | None = "anchor_free_transposed" if folded is not model else None
    return SourceOnnx(folded, notes, head)


def _initializers_out_of_inputs(model: onnx.ModelProto, notes: list[str]) -> None:
    """Weights listed among the graph inputs as well (IR version 3 required it: Caffe2's and
    early PyTorch exports) -> weights only, at IR version 4 or later. Every later step adds
    initializers of its own (the colour swap, the scaling), which IR 3 would require as inputs
    too, and TensorRT would take such inputs for the network's."""
    weights = {i.name for i in model.graph.initializer}
    listed = [i for i in model.graph.input if i.name in weights]
    if not listed:
        return
    kept = [i for i in model.graph.input if i.name not in weights]
    del model.graph.input[:]
    model.graph.input.extend(kept)
    model.ir_version = max(model.ir_version, 4)
    notes.append(f"took the {len(listed)} weights the exporter also listed as graph inputs "
                 "out of the inputs (as ONNX's IR version 3 required)")


def _kernel_shapes_written(model: onnx.ModelProto) -> None:
    """A Conv's `kernel_shape` is optional (its weight's dims say it); the rewrites that
    re-index a conv's taps read it, so it is written where an exporter left it out."""
    dims = {i.name: list(i.dims) for i in model.graph.initializer}
    for node in model.graph.node:
        weight = dims.get(node.input[1]) if node.op_type == "Conv" and len(node.input) > 1 \
            else None
        if weight is not None and len(weight) > 2 and \
                not any(a.name == "kernel_shape" for a in node.attribute):
            node.attribute.append(onnx.helper.make_attribute("kernel_shape", weight[2:]))


#: ONNX's checker on an input no earlier node makes: "... input 'x' of node: \nname: conv
#: OpType: Conv\n is not output of any previous nodes."
UNMADE_INPUT = re.compile(r"input '(?P<input>[^']*)' of node:\s*name:\s*(?P<node>\S*)\s+"
                          r"OpType:\s*(?P<op>\S+)")


def _loaded(path: Path, notes: list[str]) -> onnx.ModelProto:
    if path.is_file() and path.stat().st_size == 0:
        raise ConversionError(f"{path} {EMPTY_FILE}")
    try:
        model = onnx.load(str(path), format="protobuf", load_external_data=False)
    except (DecodeError, OSError, ValueError, RuntimeError) as exc:
        raise ConversionError(f"{path} is not an ONNX model ({exc}); the file may be cut "
                              "short or another format: copy or export it again in full") from exc
    _refuse_missing_external_data(model, path)
    try:
        onnx.load_external_data_for_model(model, str(path.parent))
    except (OSError, ValueError, onnx.checker.ValidationError) as exc:
        raise ConversionError(f"{path}: its weights' external data could not be read ({exc}); "
                              "copy the model's data files beside it again in full") from exc
    if not model.graph.node:
        raise ConversionError(f"{path} is not a model: its graph has no nodes")
    moved = sort_nodes(model.graph)
    if moved:
        notes.append(f"put the graph's nodes in topological order, as ONNX requires ({moved} "
                     "came before the nodes that make their inputs; ONNX Runtime sorts them "
                     "for itself)")
    try:
        onnx.checker.check_model(model)
    except onnx.checker.ValidationError as exc:
        unmade = UNMADE_INPUT.search(str(exc))
        if unmade:  # the nodes were sorted above: what is left is a name nothing makes
            raise ConversionError(
                f"{path} is not a valid ONNX model: node {unmade['node']} ({unmade['op']}) "
                f"reads {unmade['input']}, which no node, input or initializer makes (or only "
                "a cycle of nodes does); the graph is broken: export it again") from exc
        said = " ".join(str(exc).split())
        raise ConversionError(f"{path} is not a valid ONNX model ({said}); the file may be "
                              "damaged: copy or export it again") from exc
    return model


def _refuse_missing_external_data(model: onnx.ModelProto, path: Path) -> None:
    """A model saved with its weights in external data files (ONNX's 2 GB protobuf limit, or
    `save_as_external_data`) is only whole with those files beside it."""
    locations = {entry.value for tensor in model.graph.initializer
                 if tensor.data_location == onnx.TensorProto.EXTERNAL
                 for entry in tensor.external_data if entry.key == "location"}
    missing = sorted(name for name in locations if not (path.parent / name).is_file())
    if missing:
        raise ConversionError(
            f"{path} keeps its weights in external data file(s) {', '.join(missing)}, not found "
            f"in {path.parent}; copy them beside the model (an exporter writes them next to "
            "the .onnx file: they travel together)")


def _refuse_converted(model: onnx.ModelProto, path: Path) -> None:
    if any(p.key == SPEC_KEY for p in model.metadata_props):
        try:
            quantization = spec_from_model(model, str(path)).quantization or "float"
            use = _USE_AS_IT_IS.get(quantization, _USE_AS_IT_IS["float"])
        except ModelError:  # a spec this version cannot read: still ours, still refused
            use = "`edge inspect` says what it is"
        raise ConversionError(
            f"{path} was converted by `edge convert` already (it carries an edge spec); use it "
            f"as it is ({use}), or convert the original export instead")
    quantized = quantization_summary(model)
    if quantized["quantized"]:
        how = ("dynamically quantized" if quantized["dynamic"] else
               f"quantized already ({quantized['format']}, "
               f"{quantized['quantized_weights']} quantized weights)")
        raise ConversionError(
            f"{path} is {how}; `edge convert` takes the float (FP32) export: convert the model "
            "it was quantized from, then quantize that with `edge calibrate`")
    initializers = {i.name for i in model.graph.initializer}
    frames = [v.name for v in model.graph.input if v.name not in initializers
              and v.type.tensor_type.elem_type == onnx.TensorProto.UINT8
              and len(v.type.tensor_type.shape.dim) == 4]
    if frames:
        raise ConversionError(
            f"{path} takes uint8 frames already (input {frames[0]}), so its preprocessing is in "
            "the graph: it looks converted (with its spec removed); convert the original export "
            "instead")


def _dynamic_dims_named(model: onnx.ModelProto, notes: list[str]) -> None:
    """`dim_value` -1 or 0 (how some exporters mark a dynamic axis) -> a named dynamic dim."""
    graph = model.graph
    inputs = {v.name for v in graph.input}
    renamed = []
    for value in [*graph.input, *graph.output, *graph.value_info]:
        for index, dim in enumerate(value.type.tensor_type.shape.dim):
            if dim.HasField("dim_value") and dim.dim_value <= 0:
                marker = dim.dim_value
                dim.Clear()
                dim.dim_param = "batch" if index == 0 else f"{value.name}_dim{index}"
                if value.name in inputs:
                    renamed.append(f"{value.name}[{index}]={marker}")
    if renamed:
        batch = (" (the batch axis then takes what --batch says; without it, the source's "
                 "dynamic batch)"
                 if any(marker.split("=")[0].endswith("[0]") for marker in renamed) else "")
        notes.append(f"read dim_value <= 0 as a dynamic axis: {', '.join(renamed)}{batch}")


def _contradicted_output_shapes_replaced(model: onnx.ModelProto, notes: list[str]) -> None:
    """Declared output shapes the graph contradicts are replaced by those ONNX infers (and
    every intermediate `value_info`, only a hint, is dropped): paddle2onnx declares some
    outputs as scalars (rank 0) that its Softmax computes as [N, 2], and ONNX's strict
    shape inference, which every later check runs, refuses the graph."""
    try:
        onnx.shape_inference.infer_shapes(model, strict_mode=True)
        return
    except onnx.shape_inference.InferenceError:
        pass
    except ValueError:  # past protobuf's 2 GB: later steps say what they cannot do
        return
    bare = onnx.ModelProto()
    bare.CopyFrom(model)
    del bare.graph.value_info[:]
    for output in bare.graph.output:
        output.type.tensor_type.ClearField("shape")
    inferred = {v.name: v for v in onnx.shape_inference.infer_shapes(bare).graph.output}
    replaced: list[str] = []
    for output in model.graph.output:
        declared = _shape_words(output)
        found = inferred.get(output.name)
        if found is None or not found.type.tensor_type.HasField("shape"):
            continue
        computed = _shape_words(found)
        if not _shapes_agree(output, found):
            output.type.CopyFrom(found.type)
            replaced.append(f"{output.name} {declared} where the graph computes {computed}")
    if replaced:
        del model.graph.value_info[:]
        notes.append(f"replaced the output shape the exporter declared, which the graph "
                     f"contradicts: {'; '.join(replaced)}")


def _shape_words(value: onnx.ValueInfoProto) -> str:
    # ONNX names the dims it cannot know unk__0, unk__1...
    return "[" + ", ".join("?" if dim is None or str(dim).startswith("unk__") else str(dim)
                           for dim in value_dims(value)) + "]"


def _shapes_agree(declared: onnx.ValueInfoProto, inferred: onnx.ValueInfoProto) -> bool:
    """Same rank, and no fixed dim that differs (a named or unknown dim agrees with any)."""
    ours, theirs = value_dims(declared), value_dims(inferred)
    return len(ours) == len(theirs) and all(
        not (isinstance(a, int) and isinstance(b, int) and a != b)
        for a, b in zip(ours, theirs, strict=True))


def _constants_as_initializers(model: onnx.ModelProto, notes: list[str]) -> None:
    """Tensor-valued Constant nodes -> initializers of the same name (weights the quantizers and
    TensorRT's weight rules recognise)."""
    graph = model.graph
    kept, moved = [], []
    for node in graph.node:
        tensor = _constant_tensor(node)
        if tensor is None:
            kept.append(node)
            continue
        tensor.name = node.output[0]
        moved.append(tensor)
    if not moved:
        return
    del graph.node[:]
    graph.node.extend(kept)
    graph.initializer.extend(moved)
    model.ir_version = max(model.ir_version, 4)  # before IR 4 each would be an input too
    notes.append(f"moved {len(moved)} Constant node(s) to initializers")


def _constant_tensor(node: onnx.NodeProto) -> onnx.TensorProto | None:
    if node.op_type != "Constant" or node.domain not in ("", "ai.onnx"):
        return None
    for attribute in node.attribute:
        if attribute.name == "value":
            copied = onnx.TensorProto()
            copied.CopyFrom(attribute.t)
            return copied
        if attribute.name in ("value_float", "value_int", "value_floats", "value_ints"):
            value = onnx.helper.get_attribute_value(attribute)
            dtype = "float32" if "float" in attribute.name else "int64"
            return numpy_helper.from_array(np.array(value, dtype))
    return None


def _gfl_head_folded(model: onnx.ModelProto, notes: list[str]) -> onnx.ModelProto:
    levels = gfl_levels(model)
    if levels is None:
        return model
    notes.append(f"folded the GFL (PicoDet) head's decode into the graph: {len(levels)} levels, "
                 f"strides {'/'.join(str(level.stride) for level in levels)}, "
                 f"{levels[0].bins} distance bins -> one [N, A, 4+nc] output")
    return fold_gfl_head(model, levels)


def opset_of(model: onnx.ModelProto) -> int:
    return next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 0)


def _opset_at_least(model: onnx.ModelProto, wanted: int, notes: list[str]) -> onnx.ModelProto:
    current = opset_of(model)
    if current >= wanted:
        return model
    try:
        upgraded = version_converter.convert_version(model, wanted)
        onnx.checker.check_model(upgraded)
    except (RuntimeError, ValueError, onnx.checker.ValidationError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ConversionError(
            f"the model uses opset {current}; INT8 needs opset {wanted} and ONNX's upgrade "
            f"failed ({first}); export it again with opset {wanted} or newer") from exc
    notes.append(f"upgraded the model from opset {current} to {wanted} (INT8 per-channel "
                 f"weights need opset {wanted})")
    return upgraded

"""`edge inspect`: what a model file holds — spec, inputs/outputs, ops, quantization."""

from __future__ import annotations

import hashlib
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import onnx
from onnx import TensorProto, numpy_helper

from calibration.layers import weighted_nodes
from converters.errors import ConversionError
from converters.grey import LUMA_RGB
from converters.heads import head_from_shape
from converters.labels import labels_from_paddle_metadata
from converters.metadata import PREPROCESSING_KEY, preprocessing_of
from converters.ultralytics import UltralyticsMetadata
from edge.errors import ModelError
from edge.resizing import RESIZE_FIELDS, resize_words
from edge.spec import SPEC_KEY, ModelSpec, read_onnx_model
from edge.wording import counted, listed

QOPERATOR_OPS = {"QLinearConv", "QLinearMatMul", "QLinearAdd", "QLinearMul", "ConvInteger",
                 "MatMulInteger", "QGemm", "QLinearGlobalAveragePool", "QLinearConcat"}
#: QOperator nodes with a weight: (index of the quantized weight, index of its scale or None).
#: ConvInteger and MatMulInteger (dynamic quantization) take no scale: their activations are
#: quantized at run time by DynamicQuantizeLinear.
_QOPERATOR_WEIGHTS = {"QLinearConv": (3, 4), "QLinearMatMul": (3, 4), "QGemm": (3, 4),
                      "ConvInteger": (1, None), "MatMulInteger": (1, None)}
#: QOperator nodes with an int32 bias: the index of that input.
_QOPERATOR_BIASES = {"QLinearConv": 8, "QGemm": 6}


def _tensor_info(value: onnx.ValueInfoProto) -> dict[str, Any]:
    tensor = value.type.tensor_type
    shape = [d.dim_value if d.HasField("dim_value") else (d.dim_param or "?")
             for d in tensor.shape.dim]
    return {"name": value.name, "dtype": onnx.helper.tensor_dtype_to_np_dtype(
        tensor.elem_type).name if tensor.elem_type else "unknown", "shape": shape}


def quantization_summary(model: onnx.ModelProto) -> dict[str, Any]:
    """Whether and how `model` is quantized (QDQ or QOperator; activation type; weights)."""
    ops = Counter(node.op_type for node in model.graph.node)
    initializers = {i.name: i for i in model.graph.initializer}
    q_nodes = [n for n in model.graph.node if n.op_type == "QuantizeLinear"]
    dq_nodes = [n for n in model.graph.node if n.op_type == "DequantizeLinear"]
    qoperators = sum(ops[op] for op in QOPERATOR_OPS)
    dynamic = ops["DynamicQuantizeLinear"] > 0
    if not q_nodes and not dq_nodes and not qoperators and not dynamic:
        return {"quantized": False, "format": "none"}
    activation_types = {"uint8"} if dynamic else set()  # DynamicQuantizeLinear's output type
    for node in q_nodes:
        if len(node.input) > 2 and node.input[2] in initializers:
            activation_types.add(numpy_helper.to_array(initializers[node.input[2]]).dtype.name)
    zero_points_all_zero = 0
    constant_dq = [n for n in dq_nodes if n.input[0] in initializers]
    biases = [n.input[0] for n in constant_dq
              if initializers[n.input[0]].data_type == TensorProto.INT32]
    # a quantized scalar (a Mul's or an Add's constant operand) is not a layer's weights
    weight_scales = [n.input[1] for n in constant_dq if n.input[0] not in biases
                     and int(np.prod(initializers[n.input[0]].dims)) > 1]
    for node in model.graph.node:
        weight, scale = _QOPERATOR_WEIGHTS.get(node.op_type, (-1, None))
        if len(node.input) > weight >= 0 and node.input[weight] in initializers:
            weight_scales.append(node.input[scale] if scale is not None else None)
        bias = _QOPERATOR_BIASES.get(node.op_type, -1)
        if len(node.input) > bias >= 0 and node.input[bias] in initializers:
            biases.append(node.input[bias])
    per_channel = sum(1 for scale in weight_scales if scale in initializers
                      and numpy_helper.to_array(initializers[scale]).size > 1)
    for node in q_nodes + dq_nodes:
        if len(node.input) > 2 and node.input[2] in initializers:
            zero_points_all_zero += int(not np.any(numpy_helper.to_array(
                initializers[node.input[2]])))
    with_zero_point = sum(1 for n in q_nodes + dq_nodes if len(n.input) > 2)
    return {
        "quantized": True,
        # a QOperator model keeps Q/DQ nodes only where float enters and leaves it
        "format": "qoperator" if qoperators else "qdq",
        "dynamic": dynamic,
        "quantize_linear": len(q_nodes), "dequantize_linear": len(dq_nodes),
        "qoperator_nodes": qoperators,
        "activation_types": sorted(activation_types),
        "quantized_weights": len(weight_scales),
        "per_channel_weights": per_channel,
        "quantized_biases": len(biases),
        # weighted layers that read float weights: kept float by the profile, --exclude or
        # --keep-float (a detector's box decoding, a stem conv, depthwise convs)
        "float_layers": [node.name or node.output[0] for node in weighted_nodes(model)],
        # DynamicQuantizeLinear computes a zero point for every tensor at run time
        "symmetric": not dynamic and zero_points_all_zero == with_zero_point,
    }


def inspect_model(path: Path) -> dict[str, Any]:
    if path.is_dir():
        raise ModelError(f"{path} is a folder; pass a model file (.onnx or .engine) or a "
                         "calibration cache")
    model = read_onnx_model(path)
    data = path.read_bytes()
    props = {p.key: p.value for p in model.metadata_props}
    spec = ModelSpec.from_json(props[SPEC_KEY], str(path)).model_dump(mode="json") \
        if SPEC_KEY in props else None
    initializer_names = {i.name for i in model.graph.initializer}
    inputs = [_tensor_info(v) for v in model.graph.input if v.name not in initializer_names]
    outputs = [_tensor_info(v) for v in model.graph.output]
    ultralytics = _ultralytics_export(model)
    return {
        "path": str(path), "bytes": len(data), "sha256": hashlib.sha256(data).hexdigest(),
        "external_data": _external_data(model, path.parent),
        "ultralytics": ultralytics,
        "spec": spec,
        "to_convert": (_conversion_outline(inputs[0]["shape"], [o["shape"] for o in outputs],
                                           labels_from_paddle_metadata(model))
                       if spec is None and ultralytics is None and inputs and outputs
                       else None),
        "preprocessing": preprocessing_of(model),
        "ir_version": model.ir_version,
        "opsets": {o.domain or "ai.onnx": o.version for o in model.opset_import},
        "producer": f"{model.producer_name} {model.producer_version}".strip(),
        "inputs": inputs,
        "outputs": outputs,
        "parameters": _parameters(model),
        # subgraphs' nodes too: a model whose layers sit in If/Loop branches (silero-vad's
        # spox export) otherwise reads as 5 ops and 1 parameter
        "ops": dict(Counter(n.op_type for g in graphs_within(model.graph)
                            for n in g.node).most_common()),
        "subgraphs": sum(1 for _ in graphs_within(model.graph)) - 1,
        "nodes": [{"name": n.name, "op": n.op_type} for n in model.graph.node],
        "quantization": quantization_summary(model),
        "other_metadata": {k: v[:200] for k, v in props.items()
                           if k not in (SPEC_KEY, PREPROCESSING_KEY)},
    }


def _ultralytics_export(model: onnx.ModelProto) -> dict[str, Any] | None:
    """What an Ultralytics export's metadata says (`edge convert` reads it), None for other
    models; `error` where the metadata cannot be read."""
    props = {p.key: p.value for p in model.metadata_props}
    try:
        metadata = UltralyticsMetadata.from_onnx(model)
    except ConversionError as exc:
        return {"version": props.get("version"), "error": str(exc)}
    if metadata is None:
        return None
    return {"version": props.get("version"), "task": metadata.task,
            "image_size": list(metadata.image_size) if metadata.image_size else None,
            "labels": len(metadata.labels) if metadata.labels is not None else None,
            "end_to_end": metadata.end_to_end}


def graphs_within(graph: onnx.GraphProto) -> Iterator[onnx.GraphProto]:
    """`graph` and every subgraph its nodes hold (If branches, Loop and Scan bodies), nested
    ones included."""
    yield graph
    for node in graph.node:
        for attribute in node.attribute:
            for subgraph in (*([attribute.g] if attribute.HasField("g") else []),
                             *attribute.graphs):
                yield from graphs_within(subgraph)


def _parameters(model: onnx.ModelProto) -> int:
    """Values in the initializers and in tensor-valued Constant nodes (paddle2onnx keeps every
    weight in one), subgraphs' included."""
    graphs = list(graphs_within(model.graph))
    constants = (a.t for graph in graphs for node in graph.node if node.op_type == "Constant"
                 for a in node.attribute if a.name == "value")
    initializers = (t for graph in graphs for t in graph.initializer)
    return int(sum(np.prod(t.dims) for t in (*initializers, *constants)))


def _external_data(model: onnx.ModelProto, folder: Path) -> list[dict[str, Any]]:
    """The files beside the model that hold its external weights (PyTorch writes models past
    2 GB, and some exporters any model, so): each `location` with its size in bytes (None
    where the file is missing) and the bytes the model reads from it (`needed`: past the
    size, the file is cut short)."""
    needed: dict[str, int] = {}
    for tensor in model.graph.initializer:
        if tensor.data_location != TensorProto.EXTERNAL:
            continue
        entries = {entry.key: entry.value for entry in tensor.external_data}
        end = int(entries.get("offset", 0) or 0) + int(entries.get("length", 0) or 0)
        location = entries.get("location", "")
        needed[location] = max(needed.get(location, 0), end)
    return [{"location": location, "needed": end,
             "bytes": (folder / location).stat().st_size if (folder / location).is_file()
             else None} for location, end in sorted(needed.items())]


#: Symbolic dims longer than this are exporters' shape formulas (a YOLOv8's anchor count comes
#: out as 400 characters of floor()): the text report shows `?`, --json the whole formula.
SHORT_DIM = 24


def _short_dim(dim: Any) -> Any:
    return "?" if isinstance(dim, str) and len(dim) > SHORT_DIM else dim


def format_report(report: dict[str, Any]) -> str:
    external = "".join(f" + {item['location']} {_external_size(item)}"
                       for item in report["external_data"])
    lines = [f"{report['path']}  ({report['bytes'] / 1e6:.2f} MB{external}, sha256 "
             f"{report['sha256'][:16]}…)"]
    spec = report["spec"]
    if spec is None:
        lines.append("spec: none (not converted; run `edge convert`)")
        if report["ultralytics"] is not None:
            lines.append(_ultralytics_line(report["ultralytics"]))
        elif report["to_convert"]:
            lines.append(f"to convert: {report['to_convert']}")
    else:
        size = f"{spec['input']['height']}x{spec['input']['width']} (HxW, as --input-size)"
        made = resize_words(**{key: value for key, value in spec["input"].items()
                               if key in RESIZE_FIELDS})
        lines.append(f"spec: {spec['name']} — {spec['task']}, head {spec['head']} on "
                     f"{spec['output']}, input {size} {spec['input']['colour_order']} uint8, "
                     f"batch {spec['input']['batch'] or 'dynamic'}; frames by "
                     f"{made}")
        lines.append(f"labels ({len(spec['labels'])}): {', '.join(spec['labels'][:20])}"
                     f"{' …' if len(spec['labels']) > 20 else ''}")
        if spec["task"] == "detect":  # what `edge run` keeps unless its config says otherwise
            post = spec["postprocess"]
            nms = ("no NMS (the model's own selection, end to end)" if spec["head"] ==
                   "end_to_end" else f"NMS IoU {post['iou_threshold']:g}")
            lines.append(f"postprocess: score >= {post['score_threshold']:g}, {nms}, at most "
                         f"{post['max_detections']} detections a frame")
    if report["preprocessing"] is not None:
        camera = spec["input"]["colour_order"] if spec else None
        lines.append(f"preprocessing folded in: {_preprocessing(report['preprocessing'], camera)}")
    for kind in ("inputs", "outputs"):
        for tensor in report[kind]:
            shape = [_short_dim(d) for d in tensor["shape"]]
            lines.append(f"{kind[:-1]:6s} {tensor['name']}: {tensor['dtype']} {shape}")
    opsets = ", ".join(f"{domain} {version}" for domain, version in report["opsets"].items())
    producer = f"; made by {report['producer']}" if report["producer"] else ""
    lines.append(f"parameters: {report['parameters']:,}; opsets {opsets}{producer}")
    within = (f" (with the nodes of {counted(report['subgraphs'], 'subgraph')})"
              if report["subgraphs"] else "")
    lines.append(f"ops{within}: " + ", ".join(f"{op} {n}" for op, n in report["ops"].items()))
    q = report["quantization"]
    if not q["quantized"]:
        lines.append("quantization: none (float)")
    else:
        recorded = spec.get("quantization") if spec else None
        profile = {"int8-qdq": "tensorrt profile, ", "int8-qdq-cpu": "cpu profile, "}.get(
            recorded or "", "")
        activations = "/".join(q["activation_types"]) or "float"
        if q["dynamic"]:
            activations += " (quantized at run time: dynamic quantization)"
        lines.append(f"quantization: {profile}{q['format']}, activations {activations}"
                     f", {q['quantized_weights']} quantized weights ({q['per_channel_weights']} "
                     f"per-channel), {q['quantized_biases']} int32 biases, "
                     f"{'symmetric' if q['symmetric'] else 'asymmetric'}")
        lines.append(_float_layers_line(q["float_layers"]))
    return "\n".join(lines)


#: The text report names this many float layers at most (--json names all).
NAMED_FLOAT_LAYERS = 8


def _float_layers_line(names: list[str]) -> str:
    """`float layers: none`, or `float layers (2): a, b`, the first `NAMED_FLOAT_LAYERS`."""
    if not names:
        return "float layers: none (every Conv, Gemm and MatMul reads INT8 weights)"
    more = len(names) - NAMED_FLOAT_LAYERS
    rest = f" and {more} more (--json lists them)" if more > 0 else ""
    return f"float layers ({len(names)}): {', '.join(names[:NAMED_FLOAT_LAYERS])}{rest}"


def _external_size(item: dict[str, Any]) -> str:
    """`44.76 MB`, `MISSING`, or `20.00 MB, CUT SHORT: the model reads 44.76 MB from it`."""
    if item["bytes"] is None:
        return "MISSING"
    size = f"{item['bytes'] / 1e6:.2f} MB"
    if item["bytes"] < item["needed"]:
        size += f", CUT SHORT: the model reads {item['needed'] / 1e6:.2f} MB from it"
    return size


def _ultralytics_line(export: dict[str, Any]) -> str:
    """`source: an Ultralytics 8.4.8 detect export (input 1024x1024, 11 class names): ...`."""
    version = f" {export['version']}" if export.get("version") else ""
    if "error" in export:
        return (f"source: an Ultralytics{version} export whose metadata is unreadable "
                f"({export['error']}); pass --labels and --input-size to `edge convert`")
    size = export["image_size"]
    held = ", ".join(part for part in (
        f"input {size[0]}x{size[1]}" if size else "",
        f"{export['labels']} class names" if export["labels"] is not None else "",
        "end-to-end detections" if export["end_to_end"] else "") if part)
    return (f"source: an Ultralytics{version} {export['task'] or ''} export ({held}): "
            "`edge convert` reads its metadata, no options needed").replace("  ", " ")


def _conversion_outline(input_shape: list[Any], output_shapes: list[list[Any]],
                        labels: tuple[str, ...] | None = None) -> str:
    """What `edge convert` will need for a model that is neither converted nor an Ultralytics
    export, from its first input's shape and its outputs' (a head among several is chosen
    on a run of the model, which inspecting does not do): `NCHW input, its height and width
    dynamic: pass --input-size HxW ...; the output ['?', 2] reads as a classifier of 2 classes:
    pass --labels with 2 names`. `labels`: those its metadata gives, which convert reads."""
    dims = [d if isinstance(d, int) and d > 0 else None for d in input_shape]
    parts = []
    if len(dims) == 4:
        channels_first = dims[1] in (1, 3)
        layout = "NCHW" if channels_first else "NHWC" if dims[3] in (1, 3) else None
        height, width = (dims[2], dims[3]) if channels_first or layout is None else \
            (dims[1], dims[2])
        size = (f"its size {height}x{width} (HxW) fixed" if height and width else
                "its height and width dynamic: pass --input-size HxW, the size the model's "
                "own code feeds it")
        parts.append(f"{layout + ' ' if layout else ''}input, {size}")
    if len(output_shapes) > 1:
        parts.append(f"{len(output_shapes)} outputs: `edge convert` runs the model once to "
                     "tell which is its head")
        return "; ".join(parts)
    output_shape = [d if isinstance(d, int) and d > 0 else "?" for d in output_shapes[0]]
    try:
        head = head_from_shape(output_shape, None)
    except ConversionError as exc:
        parts.append(f"{exc}".split("; supported:")[0])
    else:
        what = (f"a classifier of {head.num_classes} classes" if head.task == "classify" else
                f"a detector ({head.layout} head) of {head.num_classes} classes")
        named = (f"its metadata names them ({listed(list(labels), 8)}), as convert reads them"
                 if labels is not None and len(labels) == head.num_classes else
                 f"pass --labels with {head.num_classes} names")
        parts.append(f"the output {output_shape} reads as {what}: {named}")
    return "; ".join(parts)


def _preprocessing(record: dict[str, Any], camera_order: str | None) -> str:
    """`(pixel / 255 - mean) / std, mean 0.485, ... std ..., network order RGB (the camera's
    BGR swapped)`, or for a grey network the luma it computes first."""
    mean, std = record.get("mean") or [0.0], record.get("std") or [1.0]
    values = "pixel / 255" if all(m == 0 for m in mean) and all(s == 1 for s in std) else (
        f"(pixel / 255 - mean) / std, mean {_numbers(mean)}, std {_numbers(std)}")
    if record.get("grey"):
        r, g, b = LUMA_RGB
        return (f"grey network: pixel = {r} R + {g} G + {b} B (BT.601 luma of the camera's "
                f"colour), then {values}")
    order = record.get("network_order")
    swapped = (f" (the camera's {camera_order} swapped)"
               if camera_order and order and camera_order != order else "")
    return f"{values}, network order {order}{swapped}"


def _numbers(values: list[float]) -> str:
    return ", ".join(f"{v:g}" for v in values)

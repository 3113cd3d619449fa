"""Ultralytics segmentation and pose exports read as the detectors they contain.

A `task=segment` export's first output is the detector's, with 32 mask coefficients after each
anchor's classes ([N, 4+nc+32, A]; end to end, [N, K, 6+32]), and a second output holds the
mask prototypes ([N, 32, H/4, W/4]); `task=pose` puts each anchor's keypoints where the mask
coefficients would be. edge publishes boxes and classes, so the converted model keeps the
detector's rows and drops the rest of the graph: the mask branch and the prototypes no longer
run on the device. Oriented-box (`obb`) exports hold rotated boxes, which no axis-aligned box
read from them would match: refused.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import onnx
from onnx import helper, numpy_helper

from converters.errors import ConversionError
from converters.ultralytics import UltralyticsMetadata
from converters.weights import drop_unused_initializers
from edge.wording import counted

#: What follows the classes in each task's first output.
EXTRA_ROWS = {"segment": "mask coefficients", "pose": "keypoints"}


@dataclass(frozen=True)
class Detector:
    """A segmentation or pose export cut down to its detector."""

    model: onnx.ModelProto
    note: str
    #: Whether the metadata's class names fit the output (else they are not to be used)
    names_fit: bool = True


def detector_of(model: onnx.ModelProto, metadata: UltralyticsMetadata,
                labels_given: bool = False) -> Detector | None:
    """`model` cut down to its detector (boxes and classes) with a note saying so, for a
    segmentation or pose export; None for a detect or classify one. The class count comes
    from the output's rows less the extra ones where both are known (metadata naming another
    count is not used: refused unless `labels_given`), else from the metadata's names."""
    task = metadata.task
    if task in (None, "detect", "classify"):
        return None
    if task == "obb":
        raise ConversionError(
            "this is an Ultralytics oriented-box export (task=obb): its boxes are rotated, and "
            "edge reads axis-aligned ones; export a detection model instead (a yolo11n.pt-style "
            "checkpoint trained for task=detect)")
    if task not in EXTRA_ROWS:
        raise ConversionError(f"this Ultralytics export's task is {task!r}; edge converts "
                              "detect, segment and pose exports (as detectors) and classify "
                              "ones")
    output = model.graph.output[0].name
    dropped = [o.name for o in model.graph.output[1:]]
    named = len(metadata.labels) if metadata.labels else None
    by_rows = None if metadata.end_to_end else _classes_by_structure(model, task, metadata)
    classes = by_rows if by_rows is not None else named
    if classes is None and not metadata.end_to_end:
        raise ConversionError(f"this Ultralytics {task} export names no classes in its "
                              "metadata ('names'), so its detection rows cannot be told from "
                              f"its {EXTRA_ROWS[task]}; export it again with Ultralytics")
    kept = 6 if metadata.end_to_end else 4 + (classes or 0)
    axis = 2 if metadata.end_to_end else 1
    cut = keeping_leading_rows(model, output, axis, kept)
    where = (f"columns 0..{kept - 1}" if metadata.end_to_end else f"rows 0..{kept - 1}")
    others = (f" and its other output{'s' if len(dropped) > 1 else ''} ({', '.join(dropped)})"
              if dropped else "")
    note = (f"an Ultralytics {task} export: read as its detector (boxes and classes, {where} of "
            f"{output}); its {EXTRA_ROWS[task]}{others} are left out of the converted model "
            "(edge publishes boxes and classes)")
    names_fit = named is None or by_rows is None or by_rows == named
    if by_rows is not None and named is not None and not names_fit:
        misfit = (f"metadata names {counted(named, 'class')}, but {output} holds {by_rows} (4 box "
                  f"rows, {counted(by_rows, 'class row')}, then its {EXTRA_ROWS[task]}): the "
                  "names are not used")
        if not labels_given:
            raise ConversionError(f"this Ultralytics {task} export's {misfit}; pass --labels "
                                  f"with its {counted(by_rows, 'class name')}")
        note += f". Its {misfit}"
    return Detector(cut, note, names_fit)


def _classes_by_structure(model: onnx.ModelProto, task: str,
                          metadata: UltralyticsMetadata) -> int | None:
    """The class count of a segment or pose export's first output, [N, 4+nc+extra, A], from
    its declared rows less the extra ones (the prototypes' channels, kpt_shape's values)."""
    rows = _declared(model.graph.output[0], 1)
    if task == "segment":
        extra = _declared(model.graph.output[1], 1) if len(model.graph.output) > 1 else None
    else:
        extra = metadata.keypoint_values
    if rows is None or extra is None:
        return None
    classes = rows - 4 - extra
    if classes < 1:
        raise ConversionError(f"this Ultralytics {task} export's first output has {rows} rows, "
                              f"fewer than 4 box rows, a class and {extra} "
                              f"{EXTRA_ROWS[task]}: it is no {task} head edge can read")
    return classes


def _declared(value: onnx.ValueInfoProto, axis: int) -> int | None:
    dims = value.type.tensor_type.shape.dim
    return dims[axis].dim_value if len(dims) > axis and dims[axis].dim_value > 0 else None


def segment_without_metadata(shapes: dict[str, tuple[int, ...]],
                             labels: int | None) -> tuple[str, int, str] | None:
    """(output, detector rows, prototypes output) for a segmentation export that lost its
    Ultralytics metadata: two outputs, [N, R, A] and prototypes [N, P, h, w] with R > 4 + P;
    None when the outputs are not so, or `labels` (a count) fit the rows without the P mask
    coefficients (the user reads them as classes)."""
    if len(shapes) != 2:
        return None
    (first, rows_shape), (second, proto_shape) = shapes.items()
    if len(rows_shape) != 3 or len(proto_shape) != 4:
        return None
    rows, prototypes = rows_shape[1], proto_shape[1]
    if rows <= 4 + prototypes or rows_shape[2] <= rows or labels == rows - 4:
        return None
    return first, rows - prototypes, second


#: What an Ultralytics pose export adds to each anchor's rows: 17 COCO keypoints of x, y and
#: visibility, or of x and y (`kpt_shape` [17, 3] or [17, 2]).
POSE_KEYPOINT_VALUES = (51, 34)


def pose_without_metadata(shapes: dict[str, tuple[int, ...]],
                          labels: int | None) -> tuple[str, int] | None:
    """(output, detector rows) for a pose export that lost its Ultralytics metadata: one output
    [N, 4+nc+K, A] where --labels give nc and K is 17 keypoints' values; None otherwise (and
    always without labels: the rows alone cannot tell keypoints from classes)."""
    if len(shapes) != 1 or labels is None:
        return None
    ((output, shape),) = shapes.items()
    if len(shape) != 3 or shape[2] <= shape[1]:
        return None
    return (output, 4 + labels) if shape[1] - 4 - labels in POSE_KEYPOINT_VALUES else None


def keeping_leading_rows(model: onnx.ModelProto, output: str, axis: int,
                          kept: int) -> onnx.ModelProto:
    """A copy of `model` whose only output is `output` cut to its first `kept` entries along
    `axis`, without the nodes that only fed what was cut off. Where `output` is a Concat
    whose first inputs make exactly those entries (as Ultralytics' heads write it), the
    Concat takes only those, so the cut-off branch does not run at all; else a Slice."""
    inferred = onnx.shape_inference.infer_shapes(model, data_prop=True)
    sizes = {value.name: [d.dim_value if d.HasField("dim_value") else None
                          for d in value.type.tensor_type.shape.dim]
             for value in (*inferred.graph.value_info, *inferred.graph.input)}
    cut = onnx.ModelProto()
    cut.CopyFrom(model)
    graph = cut.graph
    producer = next(node for node in graph.node if output in node.output)
    leading = _leading_inputs(producer, sizes, axis, kept)
    if leading is not None:
        producer.input[:] = leading
    else:
        full = f"{output}__with_extra_rows"
        producer.output[:] = [full if name == output else name for name in producer.output]
        bounds = {"start": 0, "end": kept, "axis": axis}
        graph.initializer.extend(numpy_helper.from_array(np.array([value], np.int64),
                                                         f"{output}__cut_{name}")
                                 for name, value in bounds.items())
        graph.node.append(helper.make_node(
            "Slice", [full, *(f"{output}__cut_{name}" for name in bounds)], [output],
            name=f"{output}__cut"))
    del graph.output[1:]
    dims = graph.output[0].type.tensor_type.shape.dim
    if len(dims) > axis:
        dims[axis].Clear()
        dims[axis].dim_value = kept
    _drop_dead_nodes(graph)
    return cut


def keeping_only(model: onnx.ModelProto, output: str) -> onnx.ModelProto:
    """A copy of `model` whose only output is `output`, without the nodes and initializers
    that fed only the others (a captcha net's other heads, MTCNN's box regression)."""
    kept = onnx.ModelProto()
    kept.CopyFrom(model)
    wanted = [value for value in kept.graph.output if value.name == output]
    del kept.graph.output[:]
    kept.graph.output.extend(wanted)
    _drop_dead_nodes(kept.graph)
    return kept


def _leading_inputs(node: onnx.NodeProto, sizes: dict[str, list[int | None]], axis: int,
                    kept: int) -> list[str] | None:
    """The first inputs of a Concat `node` along `axis` whose sizes add up to `kept`, or None."""
    concat_axis = next((a.i for a in node.attribute if a.name == "axis"), None)
    if node.op_type != "Concat" or concat_axis not in (axis, axis - 3):  # rank 3
        return None
    total = 0
    for count, name in enumerate(node.input, 1):
        dims = sizes.get(name)
        size = dims[axis] if dims is not None and len(dims) == 3 else None
        if size is None:
            return None
        total += size
        if total == kept:
            return list(node.input[:count])
        if total > kept:
            return None
    return None


def _drop_dead_nodes(graph: onnx.GraphProto) -> None:
    """Remove the nodes none of the graph's outputs depends on, and their weights."""
    needed = {o.name for o in graph.output}
    live: list[onnx.NodeProto] = []
    for node in reversed(graph.node):  # topologically sorted: consumers come after producers
        if needed.intersection(node.output):
            live.append(node)
            needed.update(name for name in node.input if name)
            needed.update(_read_by_subgraphs(node))
    del graph.node[:]
    graph.node.extend(reversed(live))
    known = {name for node in graph.node for name in node.output} - {
        o.name for o in graph.output}  # an output's shape is its own entry's (cut: changed)
    kept_info = [v for v in graph.value_info if v.name in known]
    del graph.value_info[:]
    graph.value_info.extend(kept_info)
    drop_unused_initializers(graph)


def _read_by_subgraphs(node: onnx.NodeProto) -> set[str]:
    """Every name the subgraphs of `node` (If, Loop, Scan) read, outer-scope ones included."""
    names: set[str] = set()
    for attribute in node.attribute:
        for subgraph in (*attribute.graphs, *([attribute.g] if attribute.HasField("g") else [])):
            for inner in subgraph.node:
                names.update(inner.input)
                names.update(_read_by_subgraphs(inner))
    return names

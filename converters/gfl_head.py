"""Fold a GFL-style detection head (PP-PicoDet, NanoDet) into one anchor-free output.

paddle2onnx exports PicoDet without its post-processing: per feature level (strides 8, 16, 32,
64) one output of class scores [N, A_l, nc] (sigmoid applied) and one of box distributions
[N, A_l, 4 * (R + 1)]: for each side (left, top, right, bottom) a softmax over R + 1 bins whose
expectation, times the stride, is the side's distance from the anchor centre
((column + 0.5) * stride, (row + 0.5) * stride). This module appends exactly that decode to the
graph and replaces the 2L outputs with one [N, A, 4 + nc] output (cx cy w h in input pixels,
then the class scores: the `anchor_free_transposed` head the device decodes), so calibration,
the device and TensorRT see an ordinary one-output detector.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
import onnx
from onnx import TensorProto, helper, numpy_helper

#: Strides a GFL head's levels may have, finest first.
STRIDES = (8, 16, 32, 64, 128)
OUTPUT = "gfl_boxes_scores"


@dataclass(frozen=True)
class GflLevel:
    scores: str  # [N, A, nc]
    boxes: str  # [N, A, 4 * (bins)]
    stride: int
    rows: int
    columns: int
    bins: int


def gfl_levels(model: onnx.ModelProto) -> list[GflLevel] | None:
    """The head's levels when every graph output pairs into (scores, distributions) per level
    of a 4-D image input with a static size; None for any other model."""
    height, width = _input_size(model)
    if height is None or width is None or len(model.graph.output) < 4:
        return None
    shapes: dict[str, tuple[int, int]] = {}
    for output in model.graph.output:
        dims = [d.dim_value for d in output.type.tensor_type.shape.dim]
        if len(dims) != 3 or min(dims[1:]) <= 0:
            return None
        shapes[output.name] = (dims[1], dims[2])
    producers = {out: node for node in model.graph.node for out in node.output}
    by_anchors: dict[int, list[str]] = {}
    for name, (anchors, _) in shapes.items():
        by_anchors.setdefault(anchors, []).append(name)
    levels = []
    for stride in STRIDES:
        rows, columns = math.ceil(height / stride), math.ceil(width / stride)
        pair = by_anchors.pop(rows * columns, [])
        if len(pair) != 2:
            continue
        scores = [name for name in pair if _after_sigmoid(producers, name)]
        if len(scores) != 1:
            return None
        boxes = next(name for name in pair if name != scores[0])
        if shapes[boxes][1] % 4 or shapes[boxes][1] < 8:
            return None
        levels.append(GflLevel(scores[0], boxes, stride, rows, columns, shapes[boxes][1] // 4))
    classes = {shapes[level.scores][1] for level in levels}
    if len(levels) < 2 or by_anchors or len(classes) != 1:
        return None
    return levels


def fold_gfl_head(model: onnx.ModelProto, levels: list[GflLevel]) -> onnx.ModelProto:
    """A copy of `model` whose only output is OUTPUT, [N, A, 4 + nc] (A summed over levels)."""
    folded = onnx.ModelProto()
    folded.CopyFrom(model)
    graph = folded.graph
    boxes, scores = [], []
    for index, level in enumerate(levels):
        boxes.append(_decode_level(graph, level, f"gfl{index}"))
        scores.append(level.scores)
    graph.node.extend([
        helper.make_node("Concat", boxes, ["gfl_boxes"], axis=1, name="gfl_concat_boxes"),
        helper.make_node("Concat", scores, ["gfl_scores"], axis=1, name="gfl_concat_scores"),
        helper.make_node("Concat", ["gfl_boxes", "gfl_scores"], [OUTPUT], axis=2,
                         name="gfl_concat")])
    classes = next(o for o in graph.output if o.name == levels[0].scores) \
        .type.tensor_type.shape.dim[2].dim_value
    anchors = sum(level.rows * level.columns for level in levels)
    del graph.output[:]
    graph.output.append(helper.make_tensor_value_info(OUTPUT, TensorProto.FLOAT,
                                                      [None, anchors, 4 + classes]))
    return folded


def _decode_level(graph: onnx.GraphProto, level: GflLevel, prefix: str) -> str:
    """Nodes turning one level's distributions into cx cy w h [N, A_l, 4]; returns its name."""
    anchors = level.rows * level.columns
    rows, columns = np.meshgrid(np.arange(level.rows), np.arange(level.columns), indexing="ij")
    centres = np.stack([columns.ravel(), rows.ravel()], axis=1).astype(np.float32)
    constants: dict[str, npt.NDArray[Any]] = {
        f"{prefix}_shape4": np.array([0, anchors, 4, level.bins], np.int64),
        f"{prefix}_bins": np.arange(level.bins, dtype=np.float32),
        f"{prefix}_last": np.array([-1], np.int64),
        f"{prefix}_stride": np.array(level.stride, np.float32),
        f"{prefix}_centres": (centres + 0.5) * level.stride,  # [A_l, 2], x then y
        f"{prefix}_half": np.array(0.5, np.float32),
        f"{prefix}_split": np.array([2, 2], np.int64),
    }
    graph.initializer.extend(numpy_helper.from_array(v, k) for k, v in constants.items())
    p = prefix
    graph.node.extend([
        helper.make_node("Reshape", [level.boxes, f"{p}_shape4"], [f"{p}_bins4"]),
        helper.make_node("Softmax", [f"{p}_bins4"], [f"{p}_probs"], axis=-1),
        # The expectation as Mul + ReduceSum, not MatMul: INT8 profiles quantize MatMuls, and
        # this is decoding, which stays float.
        helper.make_node("Mul", [f"{p}_probs", f"{p}_bins"], [f"{p}_weighted"]),
        helper.make_node("ReduceSum", [f"{p}_weighted", f"{p}_last"], [f"{p}_cells"],
                         keepdims=0),
        helper.make_node("Mul", [f"{p}_cells", f"{p}_stride"], [f"{p}_ltrb"]),
        helper.make_node("Split", [f"{p}_ltrb", f"{p}_split"], [f"{p}_lt", f"{p}_rb"], axis=2),
        helper.make_node("Sub", [f"{p}_rb", f"{p}_lt"], [f"{p}_shift2"]),
        helper.make_node("Mul", [f"{p}_shift2", f"{p}_half"], [f"{p}_shift"]),
        helper.make_node("Add", [f"{p}_centres", f"{p}_shift"], [f"{p}_cxcy"]),
        helper.make_node("Add", [f"{p}_lt", f"{p}_rb"], [f"{p}_wh"]),
        helper.make_node("Concat", [f"{p}_cxcy", f"{p}_wh"], [f"{p}_cxcywh"], axis=2),
    ])
    return f"{p}_cxcywh"


#: Ops that move or reshape values without changing them.
_RESHAPING = frozenset({"Transpose", "Reshape", "Flatten", "Squeeze", "Unsqueeze", "Identity"})


def _after_sigmoid(producers: dict[str, onnx.NodeProto], name: str) -> bool:
    """Whether `name` is a Sigmoid's output, reshaped or transposed at most (`producers`:
    tensor name -> the node writing it)."""
    node = producers.get(name)
    while node is not None and node.op_type in _RESHAPING:
        node = producers.get(node.input[0])
    return node is not None and node.op_type == "Sigmoid"


def _input_size(model: onnx.ModelProto) -> tuple[int | None, int | None]:
    initializers = {i.name for i in model.graph.initializer}
    inputs = [i for i in model.graph.input if i.name not in initializers]
    if len(inputs) != 1:
        return None, None
    dims = [d.dim_value for d in inputs[0].type.tensor_type.shape.dim]
    if len(dims) != 4:
        return None, None
    # NCHW or NHWC: the two dims that are not the 3 channels
    spatial = dims[2:] if dims[1] == 3 else dims[1:3]
    return (spatial[0] or None), (spatial[1] or None)

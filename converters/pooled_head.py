"""Class scores that come out as a 1x1 map -> the [N, nc] a classify head is.

Caffe-era networks (SqueezeNet, DenseNet as the ONNX model zoo holds them) end in a 1x1
convolution or a global pool without a Flatten, so their scores are [N, nc, 1, 1]. A Flatten
appended in the graph gives the converted model the [N, nc] output every classifier has, so
nothing downstream (the spec, the runtime, calibration) meets a fourth axis.
"""

from __future__ import annotations

from collections.abc import Sequence

import onnx
from onnx import helper

from converters.graph_names import rename_value


def pooled_scores(shape: Sequence[int]) -> bool:
    """Whether an output of `shape` (from a run) holds several values a frame on a 1x1 map:
    [N, C, 1, 1], C > 1. ([N, A, 1] is left alone: a detector's per-anchor score, say.)"""
    return len(shape) == 4 and shape[1] > 1 and shape[2] == shape[3] == 1


def flattened_output(model: onnx.ModelProto, output: str) -> onnx.ModelProto:
    """A copy of `model` whose `output` is its former value flattened to [N, C] by a Flatten
    node; whatever else read the former value reads it under its new name."""
    flat = onnx.ModelProto()
    flat.CopyFrom(model)
    graph = flat.graph
    pooled = f"{output}__pooled"
    rename_value(graph, output, pooled)
    graph.node.append(helper.make_node("Flatten", [pooled], [output], name=f"{output}__flatten",
                                       axis=1))
    declared = next(o for o in graph.output if o.name == output)
    dims = declared.type.tensor_type.shape.dim
    del dims[2:]
    return flat

"""Append the grid decode to a YOLOX-style head that outputs raw grid offsets.

YOLOX's own ONNX export (`tools/export_onnx.py`, without `--decode_in_inference`) writes one
output [N, A, 5 + nc] with one anchor per cell of the stride 8, 16 and 32 grids (level by
level, rows then columns): x and y as offsets from the cell's corner in cells, w and h as logs
of their size in cells, then objectness and class scores (sigmoid applied). Read as the
`yolov5` layout ([N, A, 5+nc], cx cy w h in input pixels) every box would sit in the top-left
corner, without any error. This module recognises such an output by its anchor count and its
values, and appends the decode (`xy = (offset + cell) * stride`, `wh = exp(log) * stride`),
so the output becomes an ordinary `yolov5` head that calibration, the device and TensorRT read.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
import onnx
from onnx import helper, numpy_helper

from converters.graph_names import rename_value
from converters.verify import SourceRunner

#: The strides of YOLOX's three levels, finest first.
STRIDES = (8, 16, 32)
#: Raw offsets stay within a few cells of their anchor; a decoded output's centres span the
#: input (hundreds of pixels): this many pixels or fewer in every centre means raw.
RAW_CENTRE_LIMIT = 8.0


@dataclass(frozen=True)
class Grid:
    """Each anchor's cell corner [A, 2] (x, y, in cells) and stride [A, 1], in output order."""

    cells: npt.NDArray[np.float32]
    strides: npt.NDArray[np.float32]

    @classmethod
    def for_input(cls, height: int, width: int) -> Grid:
        cells, strides = [], []
        for stride in STRIDES:
            rows, columns = height // stride, width // stride
            y, x = np.meshgrid(np.arange(rows), np.arange(columns), indexing="ij")
            cells.append(np.stack([x.ravel(), y.ravel()], 1))
            strides.append(np.full((rows * columns, 1), stride))
        return cls(np.concatenate(cells).astype(np.float32),
                   np.concatenate(strides).astype(np.float32))

    @property
    def anchors(self) -> int:
        return len(self.cells)


def holds_raw_offsets(output: npt.NDArray[Any], height: int, width: int) -> bool:
    """Whether `output` ([N, A, 5+nc] from one run of the source) is a YOLOX-style raw head:
    one anchor per cell of the stride 8/16/32 grids, and every centre within a few pixels of
    the origin (decoded centres reach across the input)."""
    if output.ndim != 3 or output.shape[1] != Grid.for_input(height, width).anchors:
        return False
    centres = np.abs(output[..., :2])
    return bool(np.isfinite(centres).all() and centres.max() <= RAW_CENTRE_LIMIT)


def with_grid_decode(model: onnx.ModelProto, output: str, height: int,
                     width: int) -> onnx.ModelProto:
    """A copy of `model` whose output `output` (raw, [N, A, 5+nc]) is decoded to cx cy w h in
    input pixels, objectness and class scores; the output keeps its name."""
    grid = Grid.for_input(height, width)
    decoded = onnx.ModelProto()
    decoded.CopyFrom(model)
    graph = decoded.graph
    raw = f"{output}__raw_grid"
    rename_value(graph, output, raw)
    prefix = f"{output}__grid"
    constants: dict[str, npt.NDArray[Any]] = {
        "cells": grid.cells[None], "strides": grid.strides[None], "axis": np.array([2], np.int64)}
    graph.initializer.extend(numpy_helper.from_array(value, f"{prefix}_{name}")
                             for name, value in constants.items())

    def part(start: int, end: int, name: str) -> onnx.NodeProto:
        """raw[:, :, start:end] as `{prefix}_{name}`."""
        bounds = [f"{prefix}_{name}_start", f"{prefix}_{name}_end"]
        graph.initializer.extend(numpy_helper.from_array(np.array([value], np.int64), bound)
                                 for value, bound in zip((start, end), bounds, strict=True))
        return helper.make_node("Slice", [raw, *bounds, f"{prefix}_axis"],
                                [f"{prefix}_{name}"], name=f"{prefix}_{name}")

    graph.node.extend([
        part(0, 2, "offsets"), part(2, 4, "log_sizes"), part(4, 2**31 - 1, "scores"),
        helper.make_node("Add", [f"{prefix}_offsets", f"{prefix}_cells"], [f"{prefix}_xy_cells"],
                         name=f"{prefix}_add_cells"),
        helper.make_node("Mul", [f"{prefix}_xy_cells", f"{prefix}_strides"], [f"{prefix}_xy"],
                         name=f"{prefix}_xy_pixels"),
        helper.make_node("Exp", [f"{prefix}_log_sizes"], [f"{prefix}_wh_cells"],
                         name=f"{prefix}_exp"),
        helper.make_node("Mul", [f"{prefix}_wh_cells", f"{prefix}_strides"], [f"{prefix}_wh"],
                         name=f"{prefix}_wh_pixels"),
        helper.make_node("Concat", [f"{prefix}_xy", f"{prefix}_wh", f"{prefix}_scores"],
                         [output], axis=2, name=f"{prefix}_concat"),
    ])
    return decoded


def grid_decoded_runner(run_raw: SourceRunner, output: str, height: int,
                        width: int) -> SourceRunner:
    """Runs the source and decodes its raw `output` in float64, by hand: the reference the
    converted model's appended decode is checked against."""
    grid = Grid.for_input(height, width)
    cells, strides = grid.cells.astype(np.float64), grid.strides.astype(np.float64)

    def run(x: npt.NDArray[np.float64]) -> dict[str, npt.NDArray[Any]]:
        outputs = dict(run_raw(x))
        raw = np.asarray(outputs[output], np.float64)
        outputs[output] = np.concatenate([(raw[..., :2] + cells) * strides,
                                          np.exp(raw[..., 2:4]) * strides, raw[..., 4:]], -1)
        return outputs

    return run

"""Fold camera preprocessing into an ONNX graph, so the device only letterboxes.

The image input becomes `uint8 [N, H, W, 3]` in the camera's colour order, followed by
Cast -> Transpose (for NCHW networks) -> Gather (channel swap, when the network was trained on
the other order) -> Sub (mean) -> Mul (1 / (255 * std)) -> the original network. The Cast is the
first and only consumer of the uint8 input: TensorRT (>= 8.5) accepts a uint8 network input
only when it feeds a Cast.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from converters.errors import ConversionError

ColourOrder = Literal["BGR", "RGB"]


#: Below any std a network of 8-bit pixels is trained with (raw 0..255 values: 1/255).
MIN_STD = 1e-4
#: Above any std in 0..1 units: pixels divided by 256 (dlib's convention) are 1.00390625, and
#: a std given in 0..255 units by mistake is far larger (ImageNet's 58.395, 127.5 for -1..1).
MAX_STD = 2.0


@dataclass(frozen=True)
class Normalisation:
    """What the network was trained on: `(pixel / 255 - mean) / std`, channels in `colour_order`."""

    colour_order: ColourOrder = "RGB"
    mean: Sequence[float] = (0.0, 0.0, 0.0)
    std: Sequence[float] = (1.0, 1.0, 1.0)

    def __post_init__(self) -> None:
        if len(self.mean) != 3 or len(self.std) != 3:
            raise ConversionError("--mean and --std take three values each (one per channel)")
        for option, values in (("--mean", self.mean), ("--std", self.std)):
            if not all(math.isfinite(v) for v in values):
                raise ConversionError(f"{option} {option_values(values)} is not a finite "
                                      "number; pass the network's own, in 0..1 units")
        mean, std = option_values(self.mean), option_values(self.std)
        if any(s <= 0 for s in self.std):
            raise ConversionError(f"--std must be positive, got {std}")
        if any(s < MIN_STD for s in self.std):
            raise ConversionError(f"--std {std} is below {MIN_STD:g}, less than any "
                                  "network of 8-bit pixels is trained with: one fed raw 0..255 "
                                  "values has --std 0.00392157 (1/255)")
        if any(not 0 <= m <= 1 for m in self.mean) or any(s > MAX_STD for s in self.std):
            raise ConversionError(
                f"--mean {mean} --std {std}: these are in 0..1 units "
                "(a pixel mean of 0..1; 0..255 values divided by 255: --mean 127.5 is 0.5), "
                f"so a mean lies in 0..1 and a std is at most {MAX_STD:g} (pixels / 256: "
                "--std 1.00390625)")


def option_values(values: Sequence[float]) -> str:
    """The values as the option took them: one where all channels share it."""
    shown = values[:1] if len(set(values)) == 1 else values
    return ",".join(f"{v:.10g}" for v in shown)


@dataclass(frozen=True)
class ImageInput:
    name: str
    layout: Literal["NCHW", "NHWC"]
    batch: int | str | None  # a number, a symbolic name, or None (unknown)
    height: int | None
    width: int | None
    elem_type: int
    channels: int = 3  # or 1: a grey network (see converters.grey)


def value_dims(value: onnx.ValueInfoProto) -> list[int | str | None]:
    """A tensor's declared dims: numbers, named dims, None where neither is given."""
    dims: list[int | str | None] = []
    for d in value.type.tensor_type.shape.dim:
        if d.HasField("dim_value"):
            dims.append(d.dim_value)
        else:
            dims.append(d.dim_param or None)
    return dims


def image_input(model: onnx.ModelProto) -> ImageInput:
    """The one image-like input ([N, 3, H, W] or [N, H, W, 3]) of `model`."""
    initializers = {i.name for i in model.graph.initializer}
    inputs = [v for v in model.graph.input if v.name not in initializers]
    images = []
    for value in inputs:
        dims = value_dims(value)
        if len(dims) != 4:
            continue
        elem_type = value.type.tensor_type.elem_type
        if dims[1] in (1, 3):
            images.append(ImageInput(value.name, "NCHW", dims[0], _num(dims[2]), _num(dims[3]),
                                     elem_type, int(dims[1])))
        elif dims[3] in (1, 3):
            images.append(ImageInput(value.name, "NHWC", dims[0], _num(dims[1]), _num(dims[2]),
                                     elem_type, int(dims[3])))
    described = ", ".join(f"{v.name} {value_dims(v)}" for v in inputs) or "none"
    if len(images) > 1:
        raise ConversionError(f"the model has several image-like inputs ({described}); a converted "
                              "model has exactly one image input: export the network with one "
                              "image input (feed the others as constants or compute them in "
                              "the graph), then convert that")
    if not images:
        raise ConversionError(f"the model has no image-like input [N, 3, H, W] or [N, H, W, 3] "
                              f"(or 1 channel for grey; inputs: {described}): export the "
                              "network with an image input of 3 colour or 1 grey channel "
                              "(one that takes other channels: wrap it to make them from "
                              "those), then convert that")
    if len(inputs) > 1:
        raise ConversionError(f"besides the image the model has other inputs ({described}); "
                              "only single-input models can be converted: export the network "
                              "with the image as its only input (PaddleDetection's im_shape "
                              "and scale_factor: export without them or feed them as "
                              "constants), then convert that")
    return images[0]


def _num(dim: int | str | None) -> int | None:
    return dim if isinstance(dim, int) else None


def onnx_with_preprocess(model: onnx.ModelProto, camera_order: ColourOrder,
                         normalisation: Normalisation, height: int, width: int) -> onnx.ModelProto:
    """Return a copy of `model` whose image input takes raw uint8 camera frames."""
    image = image_input(model)
    if image.elem_type == TensorProto.UINT8:
        raise ConversionError(f"input {image.name} already takes uint8 frames; the model looks "
                              "converted already (see `edge inspect`)")
    for known, wanted, what in ((image.height, height, "height"), (image.width, width, "width")):
        if known is not None and known != wanted:
            raise ConversionError(f"the model's input {what} is fixed at {known}, but {wanted} was "
                                  "asked for; omit --input-size or re-export the model")
    folded = onnx.ModelProto()
    folded.CopyFrom(model)
    graph = folded.graph
    internal = f"{image.name}__normalised"
    for node in graph.node:
        node.input[:] = [internal if name == image.name else name for name in node.input]
    nodes, constants = _preprocess_nodes(image, camera_order, normalisation, internal)
    original = list(graph.node)
    del graph.node[:]
    graph.node.extend(nodes + original)  # onnx graphs are stored in topological order
    graph.initializer.extend(constants)
    batch = image.batch if image.batch is not None else "batch"
    new_input = helper.make_tensor_value_info(image.name, TensorProto.UINT8,
                                              [batch, height, width, 3])
    index = next(i for i, v in enumerate(graph.input) if v.name == image.name)
    graph.input.remove(graph.input[index])
    graph.input.insert(index, new_input)
    return folded


def _preprocess_nodes(image: ImageInput, camera_order: ColourOrder, norm: Normalisation,
                      output: str) -> tuple[list[onnx.NodeProto], list[onnx.TensorProto]]:
    prefix = f"{image.name}__pre"
    nodes = [helper.make_node("Cast", [image.name], [f"{prefix}_float"], to=TensorProto.FLOAT,
                              name=f"{prefix}_cast")]
    current = f"{prefix}_float"
    channel_axis = 3
    if image.layout == "NCHW":
        nodes.append(helper.make_node("Transpose", [current], [f"{prefix}_nchw"],
                                      perm=[0, 3, 1, 2], name=f"{prefix}_transpose"))
        current, channel_axis = f"{prefix}_nchw", 1
    constants = []
    if camera_order != norm.colour_order:
        constants.append(numpy_helper.from_array(np.array([2, 1, 0], np.int64),
                                                 f"{prefix}_swap_index"))
        nodes.append(helper.make_node("Gather", [current, f"{prefix}_swap_index"],
                                      [f"{prefix}_swapped"], axis=channel_axis,
                                      name=f"{prefix}_swap_channels"))
        current = f"{prefix}_swapped"
    shape = [1, 3, 1, 1] if channel_axis == 1 else [1, 1, 1, 3]
    mean = np.array(norm.mean, np.float32).reshape(shape) * 255.0
    scale = (1.0 / (255.0 * np.array(norm.std, np.float32))).reshape(shape)
    if np.any(mean != 0):
        constants.append(numpy_helper.from_array(mean.astype(np.float32), f"{prefix}_mean"))
        nodes.append(helper.make_node("Sub", [current, f"{prefix}_mean"], [f"{prefix}_centred"],
                                      name=f"{prefix}_subtract_mean"))
        current = f"{prefix}_centred"
    constants.append(numpy_helper.from_array(scale.astype(np.float32), f"{prefix}_scale"))
    nodes.append(helper.make_node("Mul", [current, f"{prefix}_scale"], [output],
                                  name=f"{prefix}_scale"))
    return nodes, constants

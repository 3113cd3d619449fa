"""Grey (1-channel) networks take the camera's colour frames: luma folded into the graph.

A network trained on grey images (mono industrial cameras, OCR, some face and emotion models)
takes `[N, 1, H, W]` or `[N, H, W, 1]`. Cameras give 3 channels (a mono camera through OpenCV
or RTSP too, with equal channels), so the network is rewritten to take 3 channels in
`network_order` and compute grey as ITU-R BT.601 luma, `0.299 R + 0.587 G + 0.114 B`, the
weights OpenCV's `COLOR_BGR2GRAY` and Pillow's `convert("L")` use. After that it is an ordinary
colour network for everything downstream (folding, quantization, the device).

Where the grey input feeds only plain convolutions with constant weights, the luma weights are
multiplied into them (`[O, 1, kh, kw]` -> `[O, 3, kh, kw]`): no extra layer, and exact, since a
per-channel normalisation with equal mean and std commutes with the weighted sum (the weights
sum to 1) and zero padding stays zero. Anything else reading the input gets a 1x1 luma layer in
front of it (a `Conv` for NCHW, a `MatMul` for NHWC).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import numpy.typing as npt
import onnx
from onnx import TensorProto, helper, numpy_helper

from converters.errors import ConversionError
from converters.fold import ColourOrder, ImageInput, option_values
from converters.verify import SourceRunner

#: ITU-R BT.601 luma weights, in R, G, B order.
LUMA_RGB = (0.299, 0.587, 0.114)


def luma_weights(network_order: ColourOrder) -> npt.NDArray[np.float64]:
    """The three luma weights in `network_order`, shape [3]."""
    weights = np.array(LUMA_RGB, np.float64)
    return weights if network_order == "RGB" else weights[::-1].copy()


def check_grey_normalisation(mean: Sequence[float], std: Sequence[float]) -> None:
    """A grey network has one mean and one std: per-channel values that differ mean nothing."""
    if len(set(mean)) > 1 or len(set(std)) > 1:
        raise ConversionError(f"the network takes 1-channel (grey) input, so it has one mean "
                              f"and one std, but --mean {option_values(mean)} "
                              f"--std {option_values(std)} differ by channel: pass one value "
                              "each (e.g. --mean 0.5 --std 0.5), those it was trained with")


def colour_input_model(model: onnx.ModelProto, image: ImageInput,
                       network_order: ColourOrder) -> tuple[onnx.ModelProto, str]:
    """A copy of grey `model` whose input `image` takes 3 channels in `network_order`, and a
    line saying how grey is now computed."""
    luma = luma_weights(network_order).astype(np.float32)
    result = onnx.ModelProto()
    result.CopyFrom(model)
    graph = result.graph
    channel_axis = 1 if image.layout == "NCHW" else 3
    folded = _fold_into_convolutions(graph, image, luma)
    if not folded:
        _insert_luma_layer(graph, image, luma)
    value = next(v for v in graph.input if v.name == image.name)
    value.type.tensor_type.shape.dim[channel_axis].Clear()
    value.type.tensor_type.shape.dim[channel_axis].dim_value = 3
    where = ("folded into its first convolution" + ("s" if folded > 1 else "") if folded
             else "as a 1x1 layer in front of it")
    return result, (f"the network takes grey (1-channel) input: it now takes the camera's 3 "
                    f"channels and computes grey as {_luma_formula()} (BT.601, as OpenCV and "
                    f"Pillow do), {where}")


def colour_input_runner(run_grey: SourceRunner, layout: str,
                        network_order: ColourOrder) -> SourceRunner:
    """Runs the grey source on 3-channel input `x` ([N, 3, H, W] or [N, H, W, 3], normalised,
    in `network_order`): its luma, in float64, is what the source gets."""
    axis = 1 if layout == "NCHW" else 3
    shape = [1, 1, 1, 1]
    shape[axis] = 3
    weights = luma_weights(network_order).reshape(shape)

    def run(x: npt.NDArray[np.float64]) -> dict[str, npt.NDArray[Any]]:
        return run_grey((x * weights).sum(axis=axis, keepdims=True))

    return run


def _luma_formula() -> str:
    r, g, b = LUMA_RGB
    return f"{r} R + {g} G + {b} B"


def _fold_into_convolutions(graph: onnx.GraphProto, image: ImageInput,
                            luma: npt.NDArray[np.float32]) -> int:
    """Multiply `luma` into the weights of the convolutions reading `image`, when they are all
    that reads it; how many were changed (0: none, the graph untouched)."""
    if image.layout != "NCHW" or any(o.name == image.name for o in graph.output):
        return 0
    readers = [n for n in graph.node if image.name in n.input]
    initializers = {i.name: i for i in graph.initializer}
    weights = []
    for node in readers:
        weight = initializers.get(node.input[1]) if len(node.input) > 1 else None
        if (node.op_type != "Conv" or list(node.input).count(image.name) != 1
                or node.input[0] != image.name or _group(node) != 1 or weight is None
                or weight.data_type != TensorProto.FLOAT or len(weight.dims) != 4
                or weight.dims[1] != 1):
            return 0
        weights.append(weight)
    for node, weight in zip(readers, weights, strict=True):
        grey = numpy_helper.to_array(weight)
        colour = (grey * luma.reshape(1, 3, 1, 1)).astype(np.float32)  # [O, 3, kh, kw]
        name = f"{weight.name}__from_colour"
        if name not in initializers:
            initializers[name] = numpy_helper.from_array(colour, name)
            graph.initializer.append(initializers[name])
        node.input[1] = name
    still_read = _names_read(graph)
    replaced = {w.name for w in weights} - still_read
    kept = [i for i in graph.initializer if i.name not in replaced]
    del graph.initializer[:]
    graph.initializer.extend(kept)
    return len(readers)


def _names_read(graph: onnx.GraphProto) -> set[str]:
    """Every tensor name a node of `graph` or of its subgraphs reads."""
    names = set()
    for node in graph.node:
        names.update(node.input)
        for attribute in node.attribute:
            subgraphs = [*attribute.graphs, *([attribute.g] if attribute.HasField("g") else [])]
            for subgraph in subgraphs:
                names |= _names_read(subgraph)
    return names


def _group(node: onnx.NodeProto) -> int:
    return next((int(a.i) for a in node.attribute if a.name == "group"), 1)


def _insert_luma_layer(graph: onnx.GraphProto, image: ImageInput,
                       luma: npt.NDArray[np.float32]) -> None:
    """Every reader of `image` reads its luma instead, computed by a new first node."""
    grey = f"{image.name}__grey"
    for node in graph.node:
        node.input[:] = [grey if name == image.name else name for name in node.input]
    for output in graph.output:
        if output.name == image.name:
            raise ConversionError(f"the grey input {image.name} is also an output of the "
                                  "model; export the network without it")
    weight = f"{image.name}__luma"
    if image.layout == "NCHW":
        constant = numpy_helper.from_array(luma.reshape(1, 3, 1, 1), weight)
        node = helper.make_node("Conv", [image.name, weight], [grey], name=f"{image.name}__luma",
                                kernel_shape=[1, 1])
    else:
        constant = numpy_helper.from_array(luma.reshape(3, 1), weight)
        node = helper.make_node("MatMul", [image.name, weight], [grey],
                                name=f"{image.name}__luma")
    graph.initializer.append(constant)
    original = list(graph.node)
    del graph.node[:]
    graph.node.extend([node, *original])

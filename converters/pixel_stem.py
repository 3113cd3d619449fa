"""The `cpu` profile's int8 stem: the first two stride-2 convolutions read the camera's pixels.

A detector's stem (an RGB conv with stride 2, then another stride-2 conv: Ultralytics YOLO and the
demo detector both start this way) is the slowest part of an int8 model on ONNX Runtime's CPU:
its fast int8 kernel needs a multiple of 4 input channels, so a 3-channel int8 conv ran 3x slower
than the float one, and a float stem pays for a layout change and a QuantizeLinear over its whole
output. Here the uint8 frame [N, H, W, 3] is viewed, without copying, as [N, H, W/4, 12] (four
neighbouring pixels per position). The first conv reads that view and writes two output pixels
per position ([N, 2*O, H1, W/4]); the second conv reads those pairs and writes the ordinary
layout; elementwise ops between them (ReLU, or SiLU as QDQ Sigmoid and Mul) run unchanged on
the pairs. Both are exact re-indexings of the original kernels (padding included), so the model
computes the same function; only the first conv's weights are newly quantized (per output
channel, symmetric, within +-64 so that CPUs without VNNI do not saturate on full-range pixels:
`converters.weights.U8S8_WEIGHT_LIMIT`), with the normalisation and the BGR/RGB swap folded
into them and the pixels entering as uint8 with scale 1.

Applies to models made by `edge convert` (uint8 NHWC input, Transpose -> [Gather] -> Cast ->
[Sub/Mul/Div by constants] -> Conv) whose width is a multiple of 4. Anything else is left as it
is, and `pixel_stem` says why.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import onnx
from onnx import TensorProto, helper, numpy_helper

from converters.weights import U8S8_WEIGHT_LIMIT, drop_unused_initializers, quantize_weight

#: Pixels per position of the uint8 view, and output pixels per position of the first conv.
PIXELS = 4
PAIRS = 2
#: Appended to the names of the tensors in the pair layout.
PAIRED_SUFFIX = "_pairs"

FloatArray = npt.NDArray[np.float32]


class StemMismatchError(Exception):
    """The model's stem is not the pattern this rewrite handles; the message says how."""


@dataclass(frozen=True)
class _Stem:
    """The matched nodes, in graph order, and what they compute."""

    removed: list[onnx.NodeProto]  # layout, Cast, affine, first conv, Relu
    first: onnx.NodeProto
    quantize: onnx.NodeProto
    region: list[onnx.NodeProto]  # elementwise nodes between `quantize` and `second`
    second: onnx.NodeProto
    second_weight: str  # the int8 initializer behind the second conv's weight
    weight: FloatArray  # [O, C, kh, kw], camera channel order, normalisation folded in
    bias: FloatArray  # [O]
    zero_point: int  # the pixel value that the normalisation maps to 0


def pixel_stem(model: onnx.ModelProto, keep_float: Collection[str] = ()) -> str:
    """Rewrite `model`'s stem in place; returns '' when done, else why it was left as it is.
    Convs named in `keep_float` are never touched."""
    graph = _Graph(model)
    try:
        stem = _match(graph, set(keep_float))
        width = graph.image_width()
        quads = _taps(*_halving(stem.first, width, "the first conv"), group=PIXELS, outputs=PAIRS)
        pairs = _taps(*_halving(stem.second, width // 2, "the second conv"), group=PAIRS,
                      outputs=1)
    except StemMismatchError as reason:
        return str(reason)
    _rewrite(graph, stem, quads, pairs, width)
    return ""


class _Graph:
    """Lookups over one graph: producers, consumers, constants."""

    def __init__(self, model: onnx.ModelProto) -> None:
        self.graph = model.graph
        self.initializers = {i.name: i for i in self.graph.initializer}
        self.constants: dict[str, npt.NDArray[np.generic]] = {
            name: numpy_helper.to_array(tensor) for name, tensor in self.initializers.items()}
        for node in self.graph.node:
            if node.op_type == "Constant" and node.attribute and node.attribute[0].name == "value":
                self.constants[node.output[0]] = numpy_helper.to_array(node.attribute[0].t)
        self.outputs = {o.name for o in self.graph.output}

    def consumers(self, tensor: str) -> list[onnx.NodeProto]:
        return [n for n in self.graph.node if tensor in n.input]

    def only_consumer(self, tensor: str, what: str) -> onnx.NodeProto:
        users = self.consumers(tensor)
        if len(users) != 1 or tensor in self.outputs:
            raise StemMismatchError(f"{what} feeds {len(users)} nodes; the stem must be a chain")
        return users[0]

    def producer(self, tensor: str) -> onnx.NodeProto | None:
        return next((n for n in self.graph.node if tensor in n.output), None)

    def image_width(self) -> int:
        dims = self.graph.input[0].type.tensor_type.shape.dim
        width = dims[2].dim_value if len(dims) == 4 else 0
        if width <= 0 or width % PIXELS:
            raise StemMismatchError(f"the input width must be fixed and a multiple of {PIXELS}")
        return int(width)


def _ints(node: onnx.NodeProto, name: str, default: list[int]) -> list[int]:
    """An integer-list (or integer) attribute of `node`."""
    for attribute in node.attribute:
        if attribute.name == name:
            value = helper.get_attribute_value(attribute)
            return [int(v) for v in value] if isinstance(value, list) else [int(value)]
    return default


def _match(graph: _Graph, keep_float: set[str]) -> _Stem:
    image = graph.graph.input[0]
    if image.type.tensor_type.elem_type != TensorProto.UINT8:
        raise StemMismatchError("the input is not uint8 camera frames")
    node = graph.only_consumer(image.name, "the input")
    removed: list[onnx.NodeProto] = []
    if node.op_type != "Transpose" or _ints(node, "perm", []) != [0, 3, 1, 2]:
        raise StemMismatchError("the input is not transposed NHWC -> NCHW first")
    swap = np.arange(3)
    while node.op_type in ("Transpose", "Gather"):
        if node.op_type == "Gather":
            swap = _channel_swap(graph, node)
        removed.append(node)
        node = graph.only_consumer(node.output[0], node.op_type)
    if node.op_type != "Cast":
        raise StemMismatchError(f"expected the input Cast, found {node.op_type}")
    removed.append(node)
    scale, offset = np.ones(3, np.float64), np.zeros(3, np.float64)
    node = graph.only_consumer(node.output[0], "the Cast")
    while node.op_type in ("Sub", "Add", "Mul", "Div"):
        scale, offset = _compose(graph, node, scale, offset)
        removed.append(node)
        node = graph.only_consumer(node.output[0], node.op_type)
    first = node
    return _match_convs(graph, removed, first, swap, scale, offset, keep_float)


def _channel_swap(graph: _Graph, gather: onnx.NodeProto) -> npt.NDArray[np.int64]:
    index = graph.constants.get(gather.input[1])
    if _ints(gather, "axis", [0]) != [1] or index is None or \
            sorted(index.reshape(-1).tolist()) != [0, 1, 2]:
        raise StemMismatchError("the channel Gather is not a permutation of the 3 colours")
    return np.asarray(index, np.int64).reshape(-1)


def _compose(graph: _Graph, node: onnx.NodeProto, scale: npt.NDArray[np.float64],
             offset: npt.NDArray[np.float64]) -> tuple[npt.NDArray[np.float64],
                                                        npt.NDArray[np.float64]]:
    """Fold one elementwise op with a per-channel constant into y = scale * x + offset."""
    value = graph.constants.get(node.input[1])
    if value is None or value.size not in (1, 3) or (value.size == 3 and value.ndim == 4 and
                                                     value.shape[1] != 3):
        raise StemMismatchError(f"{node.op_type} {node.name} is not by a per-channel constant")
    per_channel = np.broadcast_to(np.asarray(value, np.float64).reshape(-1), (3,))
    if node.op_type == "Sub":
        return scale, offset - per_channel
    if node.op_type == "Add":
        return scale, offset + per_channel
    factor = per_channel if node.op_type == "Mul" else 1.0 / per_channel
    return scale * factor, offset * factor


def _match_convs(graph: _Graph, removed: list[onnx.NodeProto], first: onnx.NodeProto,
                 swap: npt.NDArray[np.int64], scale: npt.NDArray[np.float64],
                 offset: npt.NDArray[np.float64], keep_float: set[str]) -> _Stem:
    if first.op_type != "Conv" or first.input[1] not in graph.constants:
        raise StemMismatchError("the first node after preprocessing is not a float Conv")
    weight = graph.constants[first.input[1]].astype(np.float64)
    if weight.ndim != 4 or weight.shape[1] != 3:
        raise StemMismatchError("the first Conv does not take the 3 colour channels")
    zero = -offset / scale
    if not np.allclose(zero, zero[0], atol=1e-4) or abs(zero[0] - round(zero[0])) > 1e-4 or \
            not 0 <= round(zero[0]) <= 255:
        raise StemMismatchError("the normalisation's mean is not one whole pixel value for all "
                                "channels, so the first conv's zero padding (the pixel that "
                                "normalises to 0) could not be given as a uint8 pixel")
    folded = weight * scale.reshape(1, 3, 1, 1)
    camera = np.empty_like(folded)
    camera[:, swap] = folded  # model channel k reads camera channel swap[k]
    bias = graph.constants[first.input[2]] if len(first.input) > 2 and first.input[2] else \
        np.zeros(weight.shape[0])
    removed.append(first)
    node = graph.only_consumer(first.output[0], "the first Conv")
    relu = node.op_type == "Relu"
    if relu:
        removed.append(node)
        node = graph.only_consumer(node.output[0], "the stem's Relu")
    quantize = node
    if quantize.op_type != "QuantizeLinear" or len(quantize.input) < 3:
        raise StemMismatchError("the first Conv's output is not quantized next")
    # uint8 with zero point 0 clamps at 0 exactly like the Relu it replaces
    zero_point = graph.constants.get(quantize.input[2])
    if zero_point is None or zero_point.dtype != np.uint8 or (relu and int(zero_point) != 0):
        raise StemMismatchError("the stem's output is not uint8 with a zero point of 0 after "
                                "its Relu")
    region, second = _activation_region(graph, quantize)
    if {first.name, second.name} & keep_float:
        raise StemMismatchError("a stem conv is to stay float (--exclude)")
    weight_dq = graph.producer(second.input[1])
    if weight_dq is None or weight_dq.op_type != "DequantizeLinear" or \
            weight_dq.input[0] not in graph.initializers or \
            graph.constants[weight_dq.input[0]].dtype != np.int8 or \
            len(graph.consumers(weight_dq.input[0])) != 1:
        raise StemMismatchError("the second Conv's weight is not an int8 initializer of its own")
    return _Stem(removed, first, quantize, region, second, weight_dq.input[0],
                 camera.astype(np.float32), np.asarray(bias, np.float32), round(float(zero[0])))


#: Ops that act on each value alone, so they work unchanged on the pair layout. SiLU in a QDQ
#: model is DequantizeLinear -> Sigmoid and Mul -> QuantizeLinear.
ELEMENTWISE = {"QuantizeLinear", "DequantizeLinear", "Relu", "Clip", "LeakyRelu", "Sigmoid",
               "HardSigmoid", "HardSwish", "Tanh", "Mul", "Add"}


def _activation_region(graph: _Graph, quantize: onnx.NodeProto) -> tuple[list[onnx.NodeProto],
                                                                         onnx.NodeProto]:
    """The elementwise nodes from the stem's QuantizeLinear to the one Conv they all lead to
    (a ReLU leaves only Q -> DQ; a SiLU adds Sigmoid and Mul with their own Q/DQ)."""
    region: list[onnx.NodeProto] = []
    inside = {quantize.output[0]}
    second: onnx.NodeProto | None = None
    frontier = [quantize.output[0]]
    while frontier:
        tensor = frontier.pop()
        if tensor in graph.outputs:
            raise StemMismatchError("the stem's output is a model output")
        for user in graph.consumers(tensor):
            if user.op_type == "Conv" and user.input[0] == tensor:
                if second is not None and user is not second:
                    raise StemMismatchError("the stem's output feeds more than one Conv")
                second = user
            elif user.op_type in ELEMENTWISE and all(id(user) != id(n) for n in region):
                region.append(user)
                inside.update(user.output)
                frontier.extend(user.output)
            elif user.op_type not in ELEMENTWISE:
                raise StemMismatchError(f"the stem's output reaches {user.op_type} "
                                        f"{user.name}, which the pair layout would change")
    if second is None:
        raise StemMismatchError("the stem's output does not reach a Conv")
    for node in region:  # other operands must be per-tensor constants (scales, zero points)
        for name in node.input:
            value = graph.constants.get(name)
            if name and name not in inside and (value is None or value.size != 1):
                raise StemMismatchError(f"{node.op_type} {node.name} mixes in a tensor that is "
                                        "not one constant value")
    return region, second


@dataclass(frozen=True)
class _Taps:
    """A stride-2 conv's horizontal taps re-indexed onto positions of `group` input pixels."""

    taps: list[tuple[int, int, int, int]]  # (tap v, output pixel r, position offset d, pixel q)
    kernel: int  # kernel width in positions
    left: int  # padding in positions
    right: int


def _halving(conv: onnx.NodeProto, width: int, what: str) -> tuple[int, int]:
    """Kernel width and left padding of `conv`, after checking that it is a plain conv with
    stride 2 across that turns `width` pixels into `width // 2`."""
    kernel = _ints(conv, "kernel_shape", [])
    pads = _ints(conv, "pads", [0, 0, 0, 0])
    if len(kernel) != 2 or _ints(conv, "strides", [1, 1])[1] != 2 or \
            _ints(conv, "dilations", [1, 1])[1] != 1 or _ints(conv, "group", [1]) != [1] or \
            any(a.name == "auto_pad" and a.s not in (b"", b"NOTSET") for a in conv.attribute):
        raise StemMismatchError(f"{what} is not a plain convolution with stride 2 across")
    if (width + pads[1] + pads[3] - kernel[1]) // 2 + 1 != width // 2:
        raise StemMismatchError(f"{what} does not halve the width exactly")
    return kernel[1], pads[1]


def _taps(kernel_width: int, left: int, group: int, outputs: int) -> _Taps:
    """Output pixel r of position m reads input pixel group*m + 2r - left + v for tap v."""
    taps = []
    for r in range(outputs):
        for v in range(kernel_width):
            d, q = divmod(2 * r - left + v, group)
            taps.append((v, r, d, q))
    low = min(t[2] for t in taps)
    kernel = max(t[2] for t in taps) - low + 1
    if kernel - 1 + low < 0:
        raise StemMismatchError("the conv's padding has no equivalent on grouped pixels")
    return _Taps([(v, r, d - low, q) for v, r, d, q in taps], kernel, -low, kernel - 1 + low)


def _on_positions(conv: onnx.NodeProto, taps: _Taps) -> dict[str, list[int]]:
    """`conv`'s attributes with the horizontal axis re-indexed onto positions (stride 1 across);
    the vertical axis is unchanged."""
    pads = _ints(conv, "pads", [0, 0, 0, 0])
    return {"kernel_shape": [_ints(conv, "kernel_shape", [])[0], taps.kernel],
            "strides": [_ints(conv, "strides", [1, 1])[0], 1],
            "pads": [pads[0], taps.left, pads[2], taps.right],
            "dilations": [_ints(conv, "dilations", [1, 1])[0], 1]}


def _with_attributes(node: onnx.NodeProto, values: dict[str, list[int]]) -> onnx.NodeProto:
    """`node` with these attributes set (replacing any of the same name)."""
    kept = [a for a in node.attribute if a.name not in values]
    del node.attribute[:]
    node.attribute.extend(kept)
    node.attribute.extend(helper.make_attribute(k, v) for k, v in values.items())
    return node


def _rewrite(graph: _Graph, stem: _Stem, quad: _Taps, pairs: _Taps, width: int) -> None:
    prefix = stem.first.name or "stem"
    names = _first_conv_tensors(graph, stem, quad, prefix, width)
    image = graph.graph.input[0].name
    feeding = stem.quantize.input[0]
    nodes = [
        helper.make_node("Reshape", [image, names["shape"]], [f"{prefix}_quads"],
                         name=f"{prefix}_quads"),
        helper.make_node("Transpose", [f"{prefix}_quads"], [f"{prefix}_quads_nchw"],
                         perm=[0, 3, 1, 2], name=f"{prefix}_quads_nchw"),
        helper.make_node("DequantizeLinear", [f"{prefix}_quads_nchw", names["x_scale"],
                                              names["x_zero"]], [f"{prefix}_pixels"],
                         name=f"{prefix}_pixels"),
        helper.make_node("DequantizeLinear", [names["w"], names["w_scale"], names["w_zero"]],
                         [f"{prefix}_weight"], axis=0, name=f"{prefix}_weight"),
        helper.make_node("DequantizeLinear", [names["b"], names["b_scale"], names["b_zero"]],
                         [f"{prefix}_bias"], axis=0, name=f"{prefix}_bias"),
        _with_attributes(
            helper.make_node("Conv", [f"{prefix}_pixels", f"{prefix}_weight", f"{prefix}_bias"],
                             [feeding], name=stem.first.name), _on_positions(stem.first, quad)),
    ]
    _second_conv_on_pairs(graph, stem, pairs)
    removed = {id(n) for n in stem.removed}
    position = next(i for i, n in enumerate(graph.graph.node) if id(n) == id(stem.removed[0]))
    kept = [n for n in graph.graph.node if id(n) not in removed]
    kept[position:position] = nodes
    del graph.graph.node[:]
    graph.graph.node.extend(kept)
    paired = {o for n in stem.region for o in n.output} | {stem.quantize.output[0], feeding}
    _renamed(graph.graph, {name: f"{name}{PAIRED_SUFFIX}" for name in paired})
    stale = {o for n in stem.removed for o in n.output} | paired
    kept_info = [v for v in graph.graph.value_info if v.name not in stale]
    del graph.graph.value_info[:]
    graph.graph.value_info.extend(kept_info)
    drop_unused_initializers(graph.graph)


def _renamed(graph: onnx.GraphProto, names: dict[str, str]) -> None:
    """Every node input and output in `names` renamed: the tensors between the two stem convs
    hold pairs of pixels now ([N, 2*O, H1, W/4]), and a tensor that kept the FP32 model's name
    would be compared with the FP32 one by name (layer SQNR, reports) and fail to match."""
    for node in graph.node:
        node.input[:] = [names.get(name, name) for name in node.input]
        node.output[:] = [names.get(name, name) for name in node.output]


def _first_conv_tensors(graph: _Graph, stem: _Stem, quad: _Taps, prefix: str,
                        width: int) -> dict[str, str]:
    """Quantized weights for the first conv on pixel quads: [PAIRS*O, PIXELS*C, kh, positions]."""
    out_channels, channels, kernel_h, _ = stem.weight.shape
    spread = np.zeros((PAIRS, out_channels, PIXELS, channels, kernel_h, quad.kernel), np.float32)
    for v, r, d, q in quad.taps:
        spread[r, :, q, :, :, d] = stem.weight[:, :, :, v]
    weight = spread.reshape(PAIRS * out_channels, PIXELS * channels, kernel_h, quad.kernel)
    w_int8, w_scale = quantize_weight(weight, axis=0, limit=U8S8_WEIGHT_LIMIT)
    bias = np.tile(stem.bias, PAIRS).astype(np.float64)
    b_int32 = np.clip(np.round(bias / w_scale), -2**31, 2**31 - 1).astype(np.int32)
    height = graph.graph.input[0].type.tensor_type.shape.dim[1].dim_value
    tensors: dict[str, npt.NDArray[np.generic]] = {
        "shape": np.array([0, height, width // PIXELS, PIXELS * channels], np.int64),
        "x_scale": np.array(1.0, np.float32), "x_zero": np.array(stem.zero_point, np.uint8),
        "w": w_int8, "w_scale": w_scale, "w_zero": np.zeros(len(w_scale), np.int8),
        "b": b_int32, "b_scale": w_scale.copy(), "b_zero": np.zeros(len(w_scale), np.int32),
    }
    names = {key: f"{prefix}_quad_{key}" for key in tensors}
    graph.graph.initializer.extend(numpy_helper.from_array(value, names[key])
                                   for key, value in tensors.items())
    return names


def _second_conv_on_pairs(graph: _Graph, stem: _Stem, pairs: _Taps) -> None:
    """Re-index the second conv's int8 weight [O2, O, kh, kw] to [O2, PAIRS*O, kh, positions];
    its scales, zero points and bias stay as they are."""
    original = graph.constants[stem.second_weight]
    out_channels, channels, kernel_h, _ = original.shape
    spread = np.zeros((out_channels, PAIRS, channels, kernel_h, pairs.kernel), np.int8)
    for v, _, d, q in pairs.taps:  # one output pixel per position: r is always 0
        spread[:, q, :, :, d] = original[:, :, :, v]
    weight = spread.reshape(out_channels, PAIRS * channels, kernel_h, pairs.kernel)
    graph.initializers[stem.second_weight].CopyFrom(
        numpy_helper.from_array(weight, stem.second_weight))
    _with_attributes(stem.second, _on_positions(stem.second, pairs))

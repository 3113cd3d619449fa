"""Small edits both INT8 profiles make to a graph's weights."""

from __future__ import annotations

from collections import Counter

import numpy as np
import numpy.typing as npt
import onnx

#: The largest |int8 weight| of a conv that reads uint8 camera pixels (the `cpu` profile's
#: stem). x86 CPUs without VNNI (AVX2, AVX-512F) multiply uint8 activations by int8 weights
#: with `vpmaddubsw`, which adds each pair of neighbouring products into int16 with saturation:
#: 255 * 127 * 2 > 32767. Pixels fill 0..255, so a stem with full-range weights comes out
#: clipped; within +-64 a pair stays at most 32640, exact on every CPU (the fix quantizers
#: apply to the first layer). Measured on an AMD EPYC (AVX2): a 3x3 QLinearConv over
#: full-range uint8 inputs with +-127 weights put 24-64% of its outputs off by up to 18 steps,
#: +-64 none; the corpus YOLOv8n's `cpu` model went from 26.6 dB output SQNR through ONNX
#: Runtime's kernels (31.6 dB computed exactly) to 31.9 dB (31.9 exactly).
U8S8_WEIGHT_LIMIT = 64


def quantize_weight(weight: npt.NDArray[np.float32], axis: int, limit: int = 127
                    ) -> tuple[npt.NDArray[np.int8], npt.NDArray[np.float32]]:
    """Symmetric per-channel int8 along `axis`, in [-limit, limit]: returns (quantized weight,
    scale per channel). An all-zero channel gets scale 1, so a bias quantized with that scale
    stays representable."""
    moved = np.moveaxis(weight, axis, 0).reshape(weight.shape[axis], -1)
    amax = np.abs(moved).max(axis=1)
    scale = np.where(amax > 0, amax / limit, 1.0).astype(np.float32)
    shape = [1] * weight.ndim
    shape[axis] = -1
    quantized = np.clip(np.round(weight / scale.reshape(shape)), -limit, limit).astype(np.int8)
    return quantized, scale


def drop_unused_initializers(graph: onnx.GraphProto) -> None:
    """Remove the initializers no node reads any more (the float weights int8 copies replaced)."""
    used = {name for node in graph.node for name in node.input}
    kept = [i for i in graph.initializer if i.name in used]
    del graph.initializer[:]
    graph.initializer.extend(kept)


#: Ops whose inputs after the first, where they are initializers, are a weight and a bias
#: that a quantizer rewrites for that node alone.
WEIGHTED_OPS = frozenset({"Conv", "ConvTranspose", "Gemm", "MatMul"})


def parameters_of_their_own(model: onnx.ModelProto) -> onnx.ModelProto:
    """`model` with each initializer that a weighted node (`WEIGHTED_OPS`) reads as its weight
    or bias, and that something else reads too, copied for that node alone. A quantizer writes
    a node's weight in int8 at its own scales and its bias in int32 at its input's scale times
    its weight's, so one tensor cannot serve two nodes (a user check: a model whose two convs
    read one bias, as exporters write equal constants once, failed the `cpu` profile with a
    KeyError). Returns `model` itself where nothing is shared, else a copy."""
    readers = Counter(name for node in model.graph.node for name in node.input)
    initializers = {i.name: i for i in model.graph.initializer}
    shared = {name for name, count in readers.items() if count > 1 and name in initializers}
    if not any(name in shared for node in model.graph.node if node.op_type in WEIGHTED_OPS
               for name in node.input[1:]):
        return model
    owned = onnx.ModelProto()
    owned.CopyFrom(model)
    taken = {*initializers, *(i.name for i in owned.graph.input),
             *(o for node in owned.graph.node for o in node.output)}
    for index, node in enumerate(owned.graph.node):
        if node.op_type not in WEIGHTED_OPS:
            continue
        for slot in range(1, len(node.input)):
            name = node.input[slot]
            if name not in shared:
                continue
            copy_name = _unused(f"{name}__{node.name or index}", taken)
            copy = owned.graph.initializer.add()
            copy.CopyFrom(initializers[name])
            copy.name = copy_name
            node.input[slot] = copy_name
    drop_unused_initializers(owned.graph)
    return owned


def _unused(name: str, taken: set[str]) -> str:
    """`name`, or `name_2`, `name_3`... whichever no tensor has yet (then taken)."""
    candidate, number = name, 1
    while candidate in taken:
        number += 1
        candidate = f"{name}_{number}"
    taken.add(candidate)
    return candidate

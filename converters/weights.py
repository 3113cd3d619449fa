"""Small edits both INT8 profiles make to a graph's weights."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
import onnx


def quantize_weight(weight: npt.NDArray[np.float32], axis: int
                    ) -> tuple[npt.NDArray[np.int8], npt.NDArray[np.float32]]:
    """Symmetric per-channel int8 along `axis`: returns (quantized weight, scale per channel).
    An all-zero channel gets scale 1, so a bias quantized with that scale stays representable."""
    moved = np.moveaxis(weight, axis, 0).reshape(weight.shape[axis], -1)
    amax = np.abs(moved).max(axis=1)
    scale = np.where(amax > 0, amax / 127.0, 1.0).astype(np.float32)
    shape = [1] * weight.ndim
    shape[axis] = -1
    quantized = np.clip(np.round(weight / scale.reshape(shape)), -127, 127).astype(np.int8)
    return quantized, scale


def drop_unused_initializers(graph: onnx.GraphProto) -> None:
    """Remove the initializers no node reads any more (the float weights int8 copies replaced)."""
    used = {name for node in graph.node for name in node.input}
    kept = [i for i in graph.initializer if i.name in used]
    del graph.initializer[:]
    graph.initializer.extend(kept)

"""Buffer planning: from an engine's I/O tensor list to the host/device buffers a runner needs.

On an integrated GPU (Jetson) host and device share DRAM: the uint8 input and the outputs live
in mapped pinned memory that the GPU reads and writes directly, so nothing is copied. On a
discrete GPU each tensor gets a pinned host buffer and a device buffer, copied asynchronously on
the slot's stream.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from edge.errors import ModelError


@dataclass(frozen=True)
class IoTensor:
    """One engine I/O tensor as TensorRT reports it (-1 marks a dynamic dimension)."""

    name: str
    is_input: bool
    shape: tuple[int, ...]
    dtype: str  # numpy dtype name, e.g. "uint8", "float32", "float16"


@dataclass(frozen=True)
class PlannedBuffer:
    name: str
    is_input: bool
    shape: tuple[int, ...]
    dtype: str
    mapped: bool  # zero-copy: the GPU reads/writes the host buffer itself

    @property
    def nbytes(self) -> int:
        return int(np.prod(self.shape)) * np.dtype(self.dtype).itemsize


@dataclass(frozen=True)
class BufferPlan:
    buffers: tuple[PlannedBuffer, ...]
    slots: int

    @property
    def input(self) -> PlannedBuffer:
        return next(b for b in self.buffers if b.is_input)

    @property
    def outputs(self) -> tuple[PlannedBuffer, ...]:
        return tuple(b for b in self.buffers if not b.is_input)

    @property
    def host_bytes(self) -> int:
        """Pinned host memory over all slots."""
        return self.slots * sum(b.nbytes for b in self.buffers)

    @property
    def device_bytes(self) -> int:
        """Separate device memory over all slots (zero on an integrated GPU)."""
        return self.slots * sum(b.nbytes for b in self.buffers if not b.mapped)


def plan_buffers(tensors: Sequence[IoTensor], batch: int, integrated: bool,
                 slots: int = 2) -> BufferPlan:
    """Resolve dynamic batch dimensions to `batch` and decide where each buffer lives."""
    inputs = [t for t in tensors if t.is_input]
    if len(inputs) != 1:
        raise ModelError(f"the engine has {len(inputs)} inputs "
                         f"({', '.join(t.name for t in inputs)}); edge runs single-input models")
    image = inputs[0]
    if image.dtype != "uint8" or len(image.shape) != 4 or image.shape[3] != 3:
        raise ModelError(f"the engine input {image.name} is {image.dtype} {list(image.shape)}, not "
                         "uint8 [N, H, W, 3]; build it from a model converted by `edge convert`")
    planned = []
    for tensor in tensors:
        shape = list(tensor.shape)
        if shape and shape[0] == -1:
            shape[0] = batch
        if any(d < 0 for d in shape):
            raise ModelError(f"tensor {tensor.name} has dynamic dimensions {list(tensor.shape)} "
                             "beyond the batch; rebuild the engine with fixed image sizes")
        planned.append(PlannedBuffer(tensor.name, tensor.is_input, tuple(shape), tensor.dtype,
                                     mapped=integrated))
    return BufferPlan(tuple(planned), slots)

"""The runner interface every inference backend implements.

A runner owns its input and output buffers, allocated once from the model's spec: `slots`
independent sets, so cameras can letterbox into one slot while the other runs. Each slot holds
`max_batch` rows; a dynamic-batch model runs only the rows submitted, a fixed-batch model always
runs all of them. Buffers handed out stay valid (same memory) for the runner's lifetime.

A runner is not thread-safe and need not be: in the daemon one inference thread creates it and
makes every call (see `edge.service`).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from types import TracebackType

import numpy as np
import numpy.typing as npt

from edge.spec import ModelSpec


class Runner(ABC):
    """Runs one model on preallocated buffers. Use as a context manager, or call `close()`."""

    #: Short backend name for status and stats ("onnxruntime", "tensorrt").
    backend: str
    spec: ModelSpec
    slots: int
    #: Rows per slot: the model's fixed batch, or the most a dynamic-batch model runs at once.
    max_batch: int
    #: What the backend computes in ("int8", "fp16", "fp32"): a TensorRT engine's build
    #: precision; for ONNX Runtime, int8 for a Q/DQ model (status and the start's log line).
    precision: str = "fp32"

    @property
    @abstractmethod
    def output_shape(self) -> tuple[int, ...]:
        """Shape of a full slot's output for `spec.output`: [max_batch, ...]."""

    @abstractmethod
    def input_buffer(self, slot: int) -> npt.NDArray[np.uint8]:
        """The uint8 [max_batch, H, W, 3] input of `slot`; write frames here before
        `submit(slot)`."""

    @abstractmethod
    def submit(self, slot: int, batch: int | None = None) -> None:
        """Start inference on the first `batch` rows of `slot`'s input (None: all of them);
        a fixed-batch model runs every row regardless."""

    @abstractmethod
    def wait(self, slot: int) -> npt.NDArray[np.float32]:
        """Block until `slot`'s inference is done; returns its output for `spec.output`
        ([rows run, ...], valid until the slot is submitted again)."""

    def infer(self, slot: int = 0, batch: int | None = None) -> npt.NDArray[np.float32]:
        """Synchronous convenience: submit and wait."""
        self.submit(slot, batch)
        return self.wait(slot)

    def _rows(self, batch: int | None) -> int:
        """Rows to run for a request of `batch` (checked against the slot size)."""
        rows = self.max_batch if batch is None else batch
        if not 1 <= rows <= self.max_batch:
            raise ValueError(f"batch {batch} outside 1..{self.max_batch}")
        return rows if self.spec.input.batch is None else self.max_batch

    def close(self) -> None:
        """Release backend resources; buffers must not be used afterwards."""

    def __enter__(self) -> Runner:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

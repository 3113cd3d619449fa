"""The runner interface every inference backend implements.

A runner owns its input and output buffers, allocated once from the model's spec: `slots`
independent sets, so the loop can letterbox frame n+1 into one slot while frame n runs in the
other. Buffers handed out stay valid (same memory) for the runner's lifetime.
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

    @abstractmethod
    def input_buffer(self, slot: int) -> npt.NDArray[np.uint8]:
        """The uint8 [B, H, W, 3] input of `slot`; write frames here before `submit(slot)`."""

    @abstractmethod
    def submit(self, slot: int) -> None:
        """Start inference on `slot`'s input; returns without waiting for the result."""

    @abstractmethod
    def wait(self, slot: int) -> npt.NDArray[np.float32]:
        """Block until `slot`'s inference is done; returns its output for `spec.output`
        ([B, ...], valid until the slot is submitted again)."""

    def infer(self, slot: int = 0) -> npt.NDArray[np.float32]:
        """Synchronous convenience: submit and wait."""
        self.submit(slot)
        return self.wait(slot)

    def close(self) -> None:
        """Release backend resources; buffers must not be used afterwards."""

    def __enter__(self) -> Runner:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

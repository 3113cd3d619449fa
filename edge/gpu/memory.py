"""The GPU memory interface the TensorRT runner uses.

Two adapters implement it: cuda-python (`cuda.bindings`, what NVIDIA's TensorRT samples use
since 10.14) and pycuda (the classic choice, built from source on Jetson); `edge.gpu.select`
picks one. An adapter belongs to the thread that constructed it: its CUDA context is made
current there (the inference service's thread, which makes every backend call), and every
method refuses to run on another thread.
"""

from __future__ import annotations

import threading
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any, Literal

import numpy.typing as npt

from edge.errors import EdgeError
from edge.tensorrt.engine_cache import GpuIdentity

AdapterName = Literal["auto", "cuda-python", "pycuda"]


NO_GPU_FIX = ("TensorRT needs an NVIDIA GPU and its driver: on a Jetson flash JetPack 6 or 7; "
              "elsewhere install the NVIDIA driver; or set model.backend = \"onnxruntime\" to run "
              "on the CPU")


class GpuError(EdgeError):
    """A CUDA call failed; the message names the call, CUDA's error and what to check."""


class GpuUnavailableError(GpuError):
    """No usable NVIDIA driver or device, or a CUDA binding built for another driver."""


@dataclass(frozen=True)
class DeviceInfo:
    identity: GpuIdentity
    integrated: bool  # shares DRAM with the CPU (Jetson): mapped memory needs no copies
    total_bytes: int


@dataclass
class HostBuffer:
    """Pinned host memory as a numpy array; `device_pointer` is the GPU's address of the same
    memory when it was allocated mapped (0 otherwise)."""

    array: npt.NDArray[Any]
    device_pointer: int
    handle: Any  # keeps the allocation alive / lets the adapter free it


class GpuMemory(ABC):
    """Allocation, streams, copies and events for one CUDA device."""

    name: str
    #: threading.get_ident() of the thread that created the adapter (and its CUDA context).
    owner: int

    def check_thread(self) -> None:
        """Raise unless called on the thread that owns this adapter's CUDA context."""
        if threading.get_ident() != self.owner:
            raise RuntimeError(f"{self.name} GPU memory belongs to thread {self.owner} and was "
                               f"used from thread {threading.get_ident()}; every backend call "
                               "must run on the inference thread that created it")

    @abstractmethod
    def device(self) -> DeviceInfo: ...

    @abstractmethod
    def free_bytes(self) -> int: ...

    @abstractmethod
    def host_buffer(self, shape: tuple[int, ...], dtype: str, mapped: bool) -> HostBuffer: ...

    @abstractmethod
    def device_buffer(self, nbytes: int) -> int:
        """A device allocation; returns its address."""

    @abstractmethod
    def stream(self) -> int:
        """A new CUDA stream; returns its handle (what execute_async_v3 takes)."""

    @abstractmethod
    def copy_to_device(self, destination: int, source: npt.NDArray[Any], stream: int) -> None: ...

    @abstractmethod
    def copy_to_host(self, destination: npt.NDArray[Any], source: int, stream: int) -> None: ...

    @abstractmethod
    def event(self) -> Any: ...

    @abstractmethod
    def record(self, event: Any, stream: int) -> None: ...

    @abstractmethod
    def wait(self, event: Any) -> None:
        """Block the CPU until `event` has completed."""

    @abstractmethod
    def close(self) -> None:
        """Free everything this adapter allocated."""

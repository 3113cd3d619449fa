"""The GPU memory interface the TensorRT runner uses, and the choice of adapter.

Two adapters implement it: cuda-python (`cuda.bindings`, what NVIDIA's TensorRT samples use
since 10.14) and pycuda (the classic choice, built from source on Jetson). `gpu_memory("auto")`
takes cuda-python when importable, else pycuda.
"""

from __future__ import annotations

import importlib.util
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any, Literal

import numpy.typing as npt

from edge.errors import MissingDependencyError
from edge.tensorrt.engine_cache import GpuIdentity

AdapterName = Literal["auto", "cuda-python", "pycuda"]


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


def available_adapters() -> list[str]:
    found = []
    if importlib.util.find_spec("cuda") is not None:
        found.append("cuda-python")
    if importlib.util.find_spec("pycuda") is not None:
        found.append("pycuda")
    return found


def gpu_memory(choice: AdapterName = "auto", device: int = 0) -> GpuMemory:
    """The adapter `choice` names, or the first available one for "auto"."""
    available = available_adapters()
    if choice == "auto":
        if not available:
            raise MissingDependencyError("cuda-python or pycuda", "jetson", "GPU memory")
        choice = "cuda-python" if "cuda-python" in available else "pycuda"
    if choice == "cuda-python":
        from edge.gpu.cuda_python import CudaPythonMemory

        return CudaPythonMemory(device)
    from edge.gpu.pycuda import PycudaMemory

    return PycudaMemory(device)

"""GpuMemory on cuda-python's runtime bindings (`cuda.bindings.runtime`, or `cuda.cudart` in
cuda-python < 12.6). Every call returns (error, values...); errors raise with the CUDA name."""

from __future__ import annotations

import ctypes
from typing import Any

import numpy as np
import numpy.typing as npt

from edge.errors import MissingDependencyError
from edge.gpu.memory import DeviceInfo, GpuMemory, HostBuffer
from edge.tensorrt.engine_cache import GpuIdentity


def _runtime() -> Any:
    try:
        from cuda.bindings import runtime
    except ImportError:
        try:
            from cuda import cudart as runtime
        except ImportError as exc:
            raise MissingDependencyError("cuda-python", "jetson", "GPU memory") from exc
    return runtime


class CudaError(RuntimeError):
    pass


class CudaPythonMemory(GpuMemory):
    name = "cuda-python"

    def __init__(self, device: int = 0) -> None:
        self._rt = _runtime()
        self._device = device
        self._call(self._rt.cudaSetDevice, device)
        self._call(self._rt.cudaSetDeviceFlags, self._rt.cudaDeviceMapHost)
        self._host: list[int] = []
        self._device_buffers: list[int] = []
        self._streams: list[Any] = []

    def _call(self, function: Any, *args: Any) -> Any:
        result = function(*args)
        error, values = (result[0], result[1:]) if isinstance(result, tuple) else (result, ())
        if int(error) != 0:
            name = self._rt.cudaGetErrorName(error)[1]
            text = name.decode() if isinstance(name, bytes) else str(name)
            raise CudaError(f"{function.__name__} failed: {text}")
        return values[0] if len(values) == 1 else values

    def device(self) -> DeviceInfo:
        props = self._call(self._rt.cudaGetDeviceProperties, self._device)
        name = props.name.decode() if isinstance(props.name, bytes) else str(props.name)
        name = name.split("\x00")[0]
        identity = GpuIdentity(name, f"{props.major}.{props.minor}", int(props.multiProcessorCount))
        return DeviceInfo(identity, bool(props.integrated), int(props.totalGlobalMem))

    def free_bytes(self) -> int:
        free, _total = self._call(self._rt.cudaMemGetInfo)
        return int(free)

    def host_buffer(self, shape: tuple[int, ...], dtype: str, mapped: bool) -> HostBuffer:
        nbytes = int(np.prod(shape)) * np.dtype(dtype).itemsize
        flags = self._rt.cudaHostAllocMapped if mapped else self._rt.cudaHostAllocDefault
        pointer = int(self._call(self._rt.cudaHostAlloc, nbytes, flags))
        self._host.append(pointer)
        raw = memoryview((ctypes.c_uint8 * nbytes).from_address(pointer)).cast("B")
        array = np.frombuffer(raw, np.uint8).view(dtype).reshape(shape)
        device_pointer = int(self._call(self._rt.cudaHostGetDevicePointer, pointer, 0)) \
            if mapped else 0
        return HostBuffer(array, device_pointer, pointer)

    def device_buffer(self, nbytes: int) -> int:
        pointer = int(self._call(self._rt.cudaMalloc, nbytes))
        self._device_buffers.append(pointer)
        return pointer

    def stream(self) -> int:
        stream = self._call(self._rt.cudaStreamCreate)
        self._streams.append(stream)
        return int(stream)

    def copy_to_device(self, destination: int, source: npt.NDArray[Any], stream: int) -> None:
        self._call(self._rt.cudaMemcpyAsync, destination, source.ctypes.data, source.nbytes,
                   self._rt.cudaMemcpyKind.cudaMemcpyHostToDevice, stream)

    def copy_to_host(self, destination: npt.NDArray[Any], source: int, stream: int) -> None:
        self._call(self._rt.cudaMemcpyAsync, destination.ctypes.data, source, destination.nbytes,
                   self._rt.cudaMemcpyKind.cudaMemcpyDeviceToHost, stream)

    def event(self) -> Any:
        return self._call(self._rt.cudaEventCreate)

    def record(self, event: Any, stream: int) -> None:
        self._call(self._rt.cudaEventRecord, event, stream)

    def wait(self, event: Any) -> None:
        self._call(self._rt.cudaEventSynchronize, event)

    def close(self) -> None:
        for stream in self._streams:
            self._rt.cudaStreamSynchronize(stream)
            self._rt.cudaStreamDestroy(stream)
        for pointer in self._device_buffers:
            self._rt.cudaFree(pointer)
        for pointer in self._host:
            self._rt.cudaFreeHost(pointer)
        self._streams, self._device_buffers, self._host = [], [], []

"""GpuMemory on cuda-python's runtime bindings (`cuda.bindings.runtime`, or `cuda.cudart` in
cuda-python < 12.6). Every call returns (error, values...); a failure becomes a GpuError naming
the call and CUDA's error. cuda-python 12.x below 12.6 raises RuntimeError itself when it cannot
load the driver, before any error code exists: that is a GpuUnavailableError too."""

from __future__ import annotations

import ctypes
import threading
from typing import Any

import numpy as np
import numpy.typing as npt

from edge.errors import MissingDependencyError
from edge.gpu.memory import (
    NO_GPU_FIX,
    DeviceInfo,
    GpuError,
    GpuMemory,
    GpuUnavailableError,
    HostBuffer,
)
from edge.tensorrt.engine_cache import GpuIdentity

#: CUDA errors that mean "no usable driver or device" rather than a failed call.
UNAVAILABLE = {"cudaErrorInsufficientDriver", "cudaErrorNoDevice", "cudaErrorInitializationError",
               "cudaErrorStubLibrary", "cudaErrorDevicesUnavailable", "cudaErrorSystemNotReady"}


def runtime_module() -> Any:
    """The CUDA runtime bindings of whichever cuda-python is installed."""
    try:
        from cuda.bindings import runtime  # noqa: PLC0415 - optional (the jetson extra)
    except ImportError:
        try:
            from cuda import cudart as runtime  # noqa: PLC0415 - optional (the jetson extra)
        except ImportError as exc:
            raise MissingDependencyError("cuda-python", "jetson", "GPU memory") from exc
    return runtime


def _version(number: int) -> str:
    """CUDA's 12060 -> '12.6'."""
    return f"{number // 1000}.{number % 1000 // 10}"


def unavailable_message(rt: Any, error_name: str) -> str:
    """Why CUDA is unusable here, from the driver's and the binding's CUDA versions."""
    try:
        driver = int(rt.cudaDriverGetVersion()[1])
    except RuntimeError:  # cuda-python < 12.6 raises when libcuda.so.1 is missing
        driver = 0
    runtime = int(rt.cudaRuntimeGetVersion()[1])
    if driver == 0:
        return f"no NVIDIA driver on this machine (CUDA: {error_name}). {NO_GPU_FIX}"
    if driver // 1000 < runtime // 1000:
        major = driver // 1000
        return (f"cuda-python is built for CUDA {_version(runtime)}, but this NVIDIA driver "
                f"supports CUDA {_version(driver)} ({error_name}); install the binding that "
                f"matches the driver: pip install 'cuda-python>={major}.0,<{major + 1}'")
    return (f"CUDA cannot use a GPU here ({error_name}, driver CUDA {_version(driver)}). "
            f"{NO_GPU_FIX}")


class CudaPythonMemory(GpuMemory):
    name = "cuda-python"

    def __init__(self, device: int = 0) -> None:
        self._rt = runtime_module()
        self.owner = threading.get_ident()
        self._device = device
        self._host: list[int] = []
        self._device_buffers: list[int] = []
        self._streams: list[Any] = []
        self._events: list[Any] = []
        # cudaSetDevice makes the device's primary context current on this thread only.
        self._call(self._rt.cudaSetDevice, device)
        self._call(self._rt.cudaSetDeviceFlags, self._rt.cudaDeviceMapHost)

    def _call(self, function: Any, *args: Any) -> Any:
        self.check_thread()
        try:
            result = function(*args)
        except RuntimeError as exc:  # raised by the binding itself: no driver to call
            raise GpuUnavailableError(f"{function.__name__}: " + unavailable_message(
                self._rt, str(exc))) from exc
        error, values = (result[0], result[1:]) if isinstance(result, tuple) else (result, ())
        if int(error) != 0:
            name = self._rt.cudaGetErrorName(error)[1]
            text = name.decode() if isinstance(name, bytes) else str(name)
            if text in UNAVAILABLE:
                raise GpuUnavailableError(f"{function.__name__}: "
                                          + unavailable_message(self._rt, text))
            raise GpuError(f"CUDA {function.__name__} failed: {text}; check free GPU memory "
                           "(tegrastats or nvidia-smi) and the kernel log (dmesg)")
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
        # blocking sync: the waiting thread sleeps instead of spinning on a core the cameras'
        # letterboxing needs (a Jetson has 6-12 of them); no timing, which it never reads
        event = self._call(self._rt.cudaEventCreateWithFlags,
                           self._rt.cudaEventBlockingSync | self._rt.cudaEventDisableTiming)
        self._events.append(event)
        return event

    def record(self, event: Any, stream: int) -> None:
        self._call(self._rt.cudaEventRecord, event, stream)

    def wait(self, event: Any) -> None:
        self._call(self._rt.cudaEventSynchronize, event)

    def close(self) -> None:
        """Synchronise and free everything; on the owning thread, like every other call."""
        self.check_thread()
        for stream in self._streams:
            self._rt.cudaStreamSynchronize(stream)
            self._rt.cudaStreamDestroy(stream)
        for event in self._events:
            self._rt.cudaEventDestroy(event)
        for pointer in self._device_buffers:
            self._rt.cudaFree(pointer)
        for pointer in self._host:
            self._rt.cudaFreeHost(pointer)
        self._streams, self._events, self._device_buffers, self._host = [], [], [], []

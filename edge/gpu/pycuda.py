"""GpuMemory on pycuda (JetPack users often build it from source; it needs `cuda.h` and nvcc
on the PATH at install time)."""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt

from edge.errors import MissingDependencyError
from edge.gpu.memory import DeviceInfo, GpuMemory, HostBuffer
from edge.tensorrt.engine_cache import GpuIdentity


def _driver() -> Any:
    try:
        from pycuda import driver
    except ImportError as exc:
        raise MissingDependencyError("pycuda", "jetson", "GPU memory") from exc
    return driver


class PycudaMemory(GpuMemory):
    name = "pycuda"

    def __init__(self, device: int = 0) -> None:
        self._cuda = _driver()
        self._cuda.init()
        self._device = self._cuda.Device(device)
        self._context = self._device.make_context(flags=self._cuda.ctx_flags.MAP_HOST)
        self._keep: list[Any] = []

    def device(self) -> DeviceInfo:
        attribute = self._cuda.device_attribute
        major, minor = self._device.compute_capability()
        identity = GpuIdentity(self._device.name(), f"{major}.{minor}",
                               int(self._device.get_attribute(attribute.MULTIPROCESSOR_COUNT)))
        return DeviceInfo(identity, bool(self._device.get_attribute(attribute.INTEGRATED)),
                          int(self._device.total_memory()))

    def free_bytes(self) -> int:
        free, _total = self._cuda.mem_get_info()
        return int(free)

    def host_buffer(self, shape: tuple[int, ...], dtype: str, mapped: bool) -> HostBuffer:
        flags = self._cuda.host_alloc_flags.DEVICEMAP if mapped else 0
        array = self._cuda.pagelocked_empty(shape, np.dtype(dtype), mem_flags=flags)
        pointer = int(array.base.get_device_pointer()) if mapped else 0
        self._keep.append(array)
        return HostBuffer(array, pointer, array.base)

    def device_buffer(self, nbytes: int) -> int:
        allocation = self._cuda.mem_alloc(nbytes)
        self._keep.append(allocation)
        return int(allocation)

    def stream(self) -> int:
        stream = self._cuda.Stream()
        self._keep.append(stream)
        return int(stream.handle)

    def _stream(self, handle: int) -> Any:
        return next(s for s in self._keep if isinstance(s, self._cuda.Stream) and
                    int(s.handle) == handle)

    def copy_to_device(self, destination: int, source: npt.NDArray[Any], stream: int) -> None:
        self._cuda.memcpy_htod_async(destination, source, self._stream(stream))

    def copy_to_host(self, destination: npt.NDArray[Any], source: int, stream: int) -> None:
        self._cuda.memcpy_dtoh_async(destination, source, self._stream(stream))

    def event(self) -> Any:
        return self._cuda.Event()

    def record(self, event: Any, stream: int) -> None:
        event.record(self._stream(stream))

    def wait(self, event: Any) -> None:
        event.synchronize()

    def close(self) -> None:
        self._keep.clear()
        self._context.pop()

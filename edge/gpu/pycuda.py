"""GpuMemory on pycuda (JetPack users build it from source: it needs `cuda.h` and nvcc on the
PATH at install time, hence its own extra).

The adapter creates its own context with `make_context` on the constructing thread (current
there only) and pops it in `close()` on that same thread; it never pops a context it did not
push."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
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


def driver_module() -> Any:
    """`pycuda.driver`; it links against libcuda, so a machine without the driver fails here."""
    try:
        from pycuda import driver  # noqa: PLC0415 - optional (the jetson extra)
    except ImportError as exc:
        if exc.name in ("pycuda", "pycuda.driver"):
            raise MissingDependencyError("pycuda", "pycuda", "GPU memory") from exc
        raise GpuUnavailableError(f"pycuda cannot load the NVIDIA driver ({exc}). "
                                  f"{NO_GPU_FIX}") from exc
    return driver


class PycudaMemory(GpuMemory):
    name = "pycuda"

    def __init__(self, device: int = 0) -> None:
        self._cuda = driver_module()
        self.owner = threading.get_ident()
        with self._errors("creating a CUDA context", unavailable=True):
            self._cuda.init()
            self._device = self._cuda.Device(device)
            self._context = self._device.make_context(flags=self._cuda.ctx_flags.MAP_HOST)
        self._keep: list[Any] = []

    @contextmanager
    def _errors(self, what: str, unavailable: bool = False) -> Iterator[None]:
        """pycuda's exceptions as GpuErrors naming what failed."""
        self.check_thread()
        try:
            yield
        except self._cuda.Error as exc:
            if unavailable:
                raise GpuUnavailableError(f"pycuda: {what} failed ({exc}). {NO_GPU_FIX}") from exc
            raise GpuError(f"pycuda: {what} failed ({exc}); check free GPU memory (tegrastats "
                           "or nvidia-smi) and the kernel log (dmesg)") from exc

    def device(self) -> DeviceInfo:
        attribute = self._cuda.device_attribute
        with self._errors("reading the device properties"):
            major, minor = self._device.compute_capability()
            identity = GpuIdentity(self._device.name(), f"{major}.{minor}",
                                   int(self._device.get_attribute(attribute.MULTIPROCESSOR_COUNT)))
            integrated = bool(self._device.get_attribute(attribute.INTEGRATED))
            return DeviceInfo(identity, integrated, int(self._device.total_memory()))

    def free_bytes(self) -> int:
        with self._errors("mem_get_info"):
            free, _total = self._cuda.mem_get_info()
        return int(free)

    def host_buffer(self, shape: tuple[int, ...], dtype: str, mapped: bool) -> HostBuffer:
        flags = self._cuda.host_alloc_flags.DEVICEMAP if mapped else 0
        with self._errors(f"allocating {shape} {dtype} pinned memory"):
            array = self._cuda.pagelocked_empty(shape, np.dtype(dtype), mem_flags=flags)
            pointer = int(array.base.get_device_pointer()) if mapped else 0
        self._keep.append(array)
        return HostBuffer(array, pointer, array.base)

    def device_buffer(self, nbytes: int) -> int:
        with self._errors(f"allocating {nbytes} bytes of device memory"):
            allocation = self._cuda.mem_alloc(nbytes)
        self._keep.append(allocation)
        return int(allocation)

    def stream(self) -> int:
        with self._errors("creating a stream"):
            stream = self._cuda.Stream()
        self._keep.append(stream)
        return int(stream.handle)

    def _stream(self, handle: int) -> Any:
        return next(s for s in self._keep if isinstance(s, self._cuda.Stream) and
                    int(s.handle) == handle)

    def copy_to_device(self, destination: int, source: npt.NDArray[Any], stream: int) -> None:
        with self._errors("memcpy_htod_async"):
            self._cuda.memcpy_htod_async(destination, source, self._stream(stream))

    def copy_to_host(self, destination: npt.NDArray[Any], source: int, stream: int) -> None:
        with self._errors("memcpy_dtoh_async"):
            self._cuda.memcpy_dtoh_async(destination, source, self._stream(stream))

    def event(self) -> Any:
        with self._errors("creating an event"):  # sleeps while waited on, as in cuda_python
            return self._cuda.Event(self._cuda.event_flags.BLOCKING_SYNC
                                    | self._cuda.event_flags.DISABLE_TIMING)

    def record(self, event: Any, stream: int) -> None:
        with self._errors("recording an event"):
            event.record(self._stream(stream))

    def wait(self, event: Any) -> None:
        with self._errors("waiting for an event"):
            event.synchronize()

    def close(self) -> None:
        """Free the buffers, then pop and release our context (on the owning thread)."""
        self.check_thread()
        if self._cuda.Context.get_current() != self._context:
            raise RuntimeError("another CUDA context is current on the inference thread; it "
                               "must be popped by whoever pushed it before this one")
        self._keep.clear()
        self._context.pop()
        self._context.detach()

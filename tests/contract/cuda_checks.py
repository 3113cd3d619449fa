"""Contract checks of the cuda-python adapter against ONE real cuda-python (run by
test_cuda_python_contract.py in a subprocess per version, on a machine without an NVIDIA driver).

The real module answers every call we make without a driver, so: the import path per version,
every function we call exists and binds our arguments by name in our order, the real function
accepts their types, and "no driver" is a GpuUnavailableError naming the cause and the fix.
"""

from __future__ import annotations

import contextlib
import ctypes
import inspect
import os
import subprocess
import sys
import threading
import types
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from edge.gpu import cuda_python
from edge.gpu.cuda_python import CudaPythonMemory, runtime_module
from edge.gpu.memory import GpuUnavailableError
from edge.gpu.select import available_adapters

pytestmark = pytest.mark.contract
REAL = runtime_module()
ROOT = Path(__file__).resolve().parents[2]


class Recording:
    """Stands between the adapter and the real module: records each call, answers success
    with plausible values; enums and constants are the real ones."""

    def __init__(self, real: Any, fail: dict[str, Any] | None = None) -> None:
        self.real = real
        self.calls: list[tuple[str, tuple[Any, ...]]] = []
        self.fail = fail or {}
        self.blocks: list[Any] = []

    def __getattr__(self, name: str) -> Any:
        value = getattr(self.real, name)
        if inspect.isclass(value) or not callable(value):
            return value

        def call(*args: Any) -> Any:
            self.calls.append((name, args))
            if name in self.fail:
                return self.fail[name]
            return self.answer(name, args)
        call.__name__ = name
        return call

    def answer(self, name: str, args: tuple[Any, ...]) -> Any:
        ok = self.real.cudaError_t.cudaSuccess
        if name in ("cudaHostAlloc", "cudaMalloc"):
            block = ctypes.create_string_buffer(int(args[0]))
            self.blocks.append(block)
            return ok, ctypes.addressof(block)
        if name == "cudaHostGetDevicePointer":
            return ok, int(args[0])
        if name == "cudaGetDeviceProperties":
            return ok, types.SimpleNamespace(name=b"Orin\x00", major=8, minor=7,
                                             multiProcessorCount=16, integrated=1,
                                             totalGlobalMem=8 << 30)
        if name == "cudaMemGetInfo":
            return ok, 6 << 30, 8 << 30
        if name in ("cudaStreamCreate", "cudaEventCreateWithFlags"):
            return ok, len(self.calls)
        if name in ("cudaDriverGetVersion", "cudaRuntimeGetVersion", "cudaGetErrorName"):
            return getattr(self.real, name)(*args)  # answered without a driver
        return (ok,)


def exercise(memory: CudaPythonMemory) -> dict[str, Any]:
    """Every adapter method once; returns what was passed where."""
    info = memory.device()
    stream = memory.stream()
    pinned = memory.host_buffer((2, 4), "float32", mapped=False)
    mapped = memory.host_buffer((1, 8, 8, 3), "uint8", mapped=True)
    device = memory.device_buffer(pinned.array.nbytes)
    memory.copy_to_device(device, pinned.array, stream)
    memory.copy_to_host(pinned.array, device, stream)
    event = memory.event()
    memory.record(event, stream)
    memory.wait(event)
    memory.free_bytes()
    memory.close()
    return {"info": info, "pinned": pinned, "mapped": mapped, "device": device,
            "stream": stream}


def test_the_real_module_per_version():
    assert REAL.__name__ == os.environ["EDGE_EXPECT_CUDA_MODULE"]
    assert "cuda-python" in available_adapters()


def test_no_driver_is_a_clear_error():
    with pytest.raises(GpuUnavailableError) as caught:
        CudaPythonMemory(0)
    message = str(caught.value)
    assert "cudaSetDevice" in message and "no NVIDIA driver" in message
    assert 'backend = "onnxruntime"' in message and "JetPack" in message


def test_every_call_binds_to_the_real_signature(monkeypatch):
    recording = Recording(REAL)
    monkeypatch.setattr(cuda_python, "runtime_module", lambda: recording)
    used = exercise(CudaPythonMemory(0))
    assert used["info"].identity.name == "Orin" and used["info"].integrated
    assert used["mapped"].device_pointer == used["mapped"].handle
    seen = set()
    for name, args in recording.calls:
        function = getattr(REAL, name)
        bound = inspect.signature(function).bind(*args).arguments  # TypeError: wrong arity
        seen.add(name)
        if name == "cudaMemcpyAsync":
            towards_device = bound["kind"] == REAL.cudaMemcpyKind.cudaMemcpyHostToDevice
            host = used["pinned"].array.ctypes.data
            assert (bound["dst"], bound["src"]) == ((used["device"], host) if towards_device
                                                    else (host, used["device"]))
            assert bound["count"] == used["pinned"].array.nbytes
            assert int(bound["stream"]) == used["stream"]
        if name == "cudaEventCreateWithFlags":  # an audit: default events spin while waited on
            assert bound["flags"] == REAL.cudaEventBlockingSync | REAL.cudaEventDisableTiming
        # The real binding must accept our argument types; cuda-python < 12.6 without libcuda
        # raises RuntimeError after converting them.
        with contextlib.suppress(RuntimeError):
            function(*args)
    assert {"cudaSetDevice", "cudaSetDeviceFlags", "cudaHostAlloc", "cudaHostGetDevicePointer",
            "cudaMalloc", "cudaMemcpyAsync", "cudaStreamCreate", "cudaEventCreateWithFlags",
            "cudaEventRecord", "cudaEventSynchronize", "cudaMemGetInfo", "cudaStreamDestroy",
            "cudaFree", "cudaFreeHost", "cudaEventDestroy"} <= seen


def test_used_only_on_its_own_thread(monkeypatch):
    monkeypatch.setattr(cuda_python, "runtime_module", lambda: Recording(REAL))
    memory = CudaPythonMemory(0)
    failures: list[BaseException] = []

    def elsewhere() -> None:
        try:
            memory.stream()
        except RuntimeError as exc:
            failures.append(exc)

    worker = threading.Thread(target=elsewhere)
    worker.start()
    worker.join()
    assert failures and "inference thread" in str(failures[0])


def test_binding_newer_than_the_driver(monkeypatch):
    runtime = int(REAL.cudaRuntimeGetVersion()[1])
    older = (runtime // 1000 - 1) * 1000 + 60
    recording = Recording(REAL, fail={
        "cudaSetDevice": (REAL.cudaError_t.cudaErrorInsufficientDriver,),
        "cudaDriverGetVersion": (REAL.cudaError_t.cudaSuccess, older)})
    monkeypatch.setattr(cuda_python, "runtime_module", lambda: recording)
    with pytest.raises(GpuUnavailableError, match=(
            rf"built for CUDA {runtime // 1000}\.\d+, but this NVIDIA driver supports CUDA "
            rf"{older // 1000}\.6.*cuda-python>={older // 1000}\.0,<{runtime // 1000}")):
        CudaPythonMemory(0)


def test_a_failed_call_is_a_gpu_error(monkeypatch):
    from edge.gpu.memory import GpuError

    recording = Recording(REAL, fail={
        "cudaMalloc": (REAL.cudaError_t.cudaErrorMemoryAllocation, None)})
    monkeypatch.setattr(cuda_python, "runtime_module", lambda: recording)
    memory = CudaPythonMemory(0)
    with pytest.raises(GpuError, match="cudaMalloc failed: cudaErrorMemoryAllocation"):
        memory.device_buffer(1 << 20)


def edge_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "edge", *args], capture_output=True, text=True,
                          timeout=120, env=dict(os.environ), cwd=ROOT)


@pytest.fixture
def float_model(tmp_path):
    from tests.contract.tiny_models import tiny_model

    return tiny_model(tmp_path / "tiny.onnx", qdq=False)


def test_cli_without_gpu_exits_2(tmp_path, float_model):
    pytest.importorskip("tensorrt")
    config = tmp_path / "edge.toml"
    config.write_text(f'[model]\npath = "{float_model}"\nbackend = "tensorrt"\n'
                      '[[cameras]]\nname = "c"\nsource = "synthetic://shapes"\n')
    for args in (("build-engine", str(float_model)), ("selftest", "--hardware"),
                 ("run", "--config", str(config), "--seconds", "5")):
        result = edge_cli(*args)
        assert result.returncode == 2, (args, result.stderr[-2000:])
        assert "no NVIDIA driver" in result.stderr and "Traceback" not in result.stderr, args


def test_pinned_memory_view(monkeypatch):
    """The array over pinned memory has the shape and dtype asked for (host side only)."""
    monkeypatch.setattr(cuda_python, "runtime_module", lambda: Recording(REAL))
    memory = CudaPythonMemory(0)  # owns the allocation: keep it while the array is used
    buffer = memory.host_buffer((3, 5), "float16", mapped=False)
    buffer.array[:] = np.arange(15, dtype=np.float16).reshape(3, 5)
    assert buffer.array.dtype == np.float16 and float(buffer.array[2, 4]) == 14.0

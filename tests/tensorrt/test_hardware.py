"""Hardware tests: they run where TensorRT and/or an NVIDIA GPU are present and are skipped
elsewhere (see conftest). A Jetson owner's acceptance command is `edge selftest --hardware`."""

from __future__ import annotations

import numpy as np
import pytest

from edge.gpu.select import available_adapters, gpu_memory


def adapters() -> list[str]:
    return available_adapters() or ["cuda-python"]


@pytest.mark.gpu
@pytest.mark.parametrize("adapter", adapters())
def test_memory_adapter_round_trip(adapter):
    memory = gpu_memory(adapter)  # type: ignore[arg-type]
    try:
        info = memory.device()
        assert info.identity.sm_count > 0 and info.total_bytes > 0
        stream = memory.stream()
        source = memory.host_buffer((4, 1024), "float32", mapped=False)
        source.array[:] = np.arange(4096, dtype=np.float32).reshape(4, 1024)
        device = memory.device_buffer(source.array.nbytes)
        back = memory.host_buffer((4, 1024), "float32", mapped=False)
        memory.copy_to_device(device, source.array, stream)
        memory.copy_to_host(back.array, device, stream)
        done = memory.event()
        memory.record(done, stream)
        memory.wait(done)
        np.testing.assert_array_equal(back.array, source.array)
        mapped = memory.host_buffer((1, 320, 320, 3), "uint8", mapped=True)
        assert mapped.device_pointer != 0 and mapped.array.shape == (1, 320, 320, 3)
    finally:
        memory.close()


@pytest.mark.jetson
def test_jetson_gpu_is_integrated():
    memory = gpu_memory("auto")
    try:
        assert memory.device().integrated
    finally:
        memory.close()


@pytest.mark.tensorrt
@pytest.mark.gpu
@pytest.mark.slow
def test_int8_engine_matches_onnxruntime(tmp_path):
    from edge.selftest import hardware_selftest

    result = hardware_selftest(frames=150, workdir=tmp_path, daemon_seconds=5.0)
    assert result["passed"], result["checks"]
    assert result["map50_tensorrt_int8"] >= result["map50_onnxruntime_fp32"] - 0.02
    assert result["fps_tensorrt"] > 0
    assert list(tmp_path.glob("shapes.int8.int8.*.engine"))

"""The shared inference service: thread ownership, batching, fairness, failures."""

from __future__ import annotations

import threading
import time
from collections import Counter
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest

from edge.errors import ConfigError
from edge.gpu.memory import DeviceInfo, GpuMemory, HostBuffer
from edge.runners.base import Runner
from edge.service import (
    InferenceError,
    InferenceService,
    ServiceClosedError,
    batch_capacity,
)
from edge.spec import InputSpec, ModelSpec
from edge.tensorrt.engine_cache import GpuIdentity

SIZE = 8


def spec(batch: int | None) -> ModelSpec:
    return ModelSpec(task="classify", labels=("b", "g", "r"), head="logits", output="out",
                     input=InputSpec(name="images", width=SIZE, height=SIZE, batch=batch))


class RecordingMemory(GpuMemory):
    """GPU memory on the host that records which thread made each call and what is live."""

    name = "recording"

    def __init__(self) -> None:
        self.owner = threading.get_ident()
        self.calls: list[tuple[str, int]] = []
        self.live: set[int] = set()
        self.created = 0
        self._next = 1

    def _call(self, what: str) -> None:
        self.calls.append((what, threading.get_ident()))

    def _new(self) -> int:
        handle, self._next = self._next, self._next + 1
        self.live.add(handle)
        self.created += 1
        return handle

    def device(self) -> DeviceInfo:
        self._call("device")
        return DeviceInfo(GpuIdentity("host", "0.0", 1), integrated=True, total_bytes=1 << 30)

    def free_bytes(self) -> int:
        self._call("free_bytes")
        return 1 << 30

    def host_buffer(self, shape: tuple[int, ...], dtype: str, mapped: bool) -> HostBuffer:
        self._call("host_buffer")
        return HostBuffer(np.zeros(shape, dtype), 0, self._new())

    def device_buffer(self, nbytes: int) -> int:
        self._call("device_buffer")
        return self._new()

    def stream(self) -> int:
        self._call("stream")
        return self._new()

    def copy_to_device(self, destination: int, source: npt.NDArray[Any], stream: int) -> None:
        self._call("copy_to_device")

    def copy_to_host(self, destination: npt.NDArray[Any], source: int, stream: int) -> None:
        self._call("copy_to_host")

    def event(self) -> int:
        self._call("event")
        return self._new()

    def record(self, event: Any, stream: int) -> None:
        self._call("record")

    def wait(self, event: Any) -> None:
        self._call("wait")

    def close(self) -> None:
        self._call("close")
        self.live.clear()


class RecordingRunner(Runner):
    """A backend whose output row is the mean of each colour channel of its input row, with
    every buffer, stream and event from a RecordingMemory and every call's thread recorded."""

    backend = "recording"

    def __init__(self, model_spec: ModelSpec, memory: RecordingMemory, max_batch: int = 1,
                 fail_after: int | None = None, run_s: float = 0.0) -> None:
        self.spec = model_spec
        self.slots = 2
        self.max_batch = model_spec.input.batch or max_batch
        self.memory = memory
        self.fail_after = fail_after
        self.run_s = run_s
        self.calls: list[tuple[str, int]] = [("create", threading.get_ident())]
        memory.device()
        shape = (self.max_batch, SIZE, SIZE, 3)
        self._inputs = [memory.host_buffer(shape, "uint8", True) for _ in range(2)]
        self._outputs = [memory.host_buffer((self.max_batch, 3), "float32", True)
                         for _ in range(2)]
        self._streams = [memory.stream() for _ in range(2)]
        self._events = [memory.event() for _ in range(2)]
        self._ran = [0, 0]
        self.runs: list[int] = []

    @property
    def output_shape(self) -> tuple[int, ...]:
        return (self.max_batch, 3)

    def input_buffer(self, slot: int) -> npt.NDArray[np.uint8]:
        self.calls.append(("input_buffer", threading.get_ident()))
        array: npt.NDArray[np.uint8] = self._inputs[slot].array
        return array

    def submit(self, slot: int, batch: int | None = None) -> None:
        self.calls.append(("submit", threading.get_ident()))
        if self.fail_after is not None and len(self.runs) >= self.fail_after:
            raise RuntimeError("device lost")
        rows = self._ran[slot] = self._rows(batch)
        self.runs.append(rows)
        time.sleep(self.run_s)
        self.memory.copy_to_device(0, self._inputs[slot].array, self._streams[slot])
        pixels = self._inputs[slot].array[:rows].reshape(rows, -1, 3).astype(np.float32)
        self._outputs[slot].array[:rows] = pixels.mean(axis=1)
        self.memory.record(self._events[slot], self._streams[slot])

    def wait(self, slot: int) -> npt.NDArray[np.float32]:
        self.calls.append(("wait", threading.get_ident()))
        self.memory.wait(self._events[slot])
        output: npt.NDArray[np.float32] = self._outputs[slot].array[:self._ran[slot]]
        return output

    def close(self) -> None:
        self.calls.append(("close", threading.get_ident()))
        self.memory.close()


def drive(service: InferenceService, camera: int, frames: int, value_of: Any,
          results: dict[int, list[float]]) -> None:
    """A camera loop: claim, write a constant frame, commit, wait, check its own value back."""
    for n in range(frames):
        ticket = service.claim(camera)
        ticket.rows[ticket.row].fill(value_of(camera, n))
        service.commit(ticket)
        output = service.wait(ticket, timeout=10)
        results.setdefault(camera, []).append(float(output[0]))


@pytest.mark.parametrize(("cameras", "batch"), [(1, 1), (4, 1), (4, None)])
def test_every_backend_call_on_the_inference_thread(cameras, batch):
    memory_box: dict[str, Any] = {}

    def factory() -> Runner:
        memory_box["memory"] = memory = RecordingMemory()
        memory_box["runner"] = runner = RecordingRunner(spec(batch), memory, max_batch=4)
        return runner

    service = InferenceService(factory, batch_timeout_ms=2)
    ids = [service.register(f"cam{i}") for i in range(cameras)]
    results: dict[int, list[float]] = {}

    def value(camera: int, n: int) -> int:
        return (camera * 40 + n) % 250

    threads = [threading.Thread(target=drive, args=(service, i, 30, value, results))
               for i in ids]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    service.close()
    runner, memory = memory_box["runner"], memory_box["memory"]
    owner = service.thread.ident
    assert owner != threading.get_ident()
    assert {thread for _, thread in runner.calls} == {owner}
    assert {thread for _, thread in memory.calls} == {owner}
    assert memory.owner == owner
    assert runner.calls[0][0] == "create" and runner.calls[-1][0] == "close"
    assert memory.created == 8 and memory.live == set()  # 4 buffers, 2 streams, 2 events
    for camera in ids:  # each camera got back its own frame's value, in order
        assert results[camera] == [float(value(camera, n)) for n in range(30)]
    assert sum(runner.runs) == cameras * 30
    if batch is None and cameras == 4:
        assert max(runner.runs) > 1  # frames of different cameras ran together


def test_batches_of_ready_cameras_fill_up_to_max_batch():
    runners: list[RecordingRunner] = []

    def factory() -> Runner:
        runners.append(RecordingRunner(spec(None), RecordingMemory(), max_batch=4,
                                       run_s=0.01))
        return runners[-1]

    service = InferenceService(factory, batch_timeout_ms=50)
    ids = [service.register(f"cam{i}") for i in range(4)]
    results: dict[int, list[float]] = {}
    threads = [threading.Thread(target=drive, args=(service, i, 20, lambda c, n: c, results))
               for i in ids]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    stats = service.stats()
    service.close()
    sizes = Counter(runners[0].runs)
    assert sum(sizes.values()) == stats["batches"]
    assert sizes[4] >= 0.7 * stats["batches"], sizes  # cameras that keep up share batches
    assert stats["runners"] == 1 and stats["max_batch"] == 4


def test_a_lone_camera_never_waits_for_company():
    service = InferenceService(lambda: RecordingRunner(spec(None), RecordingMemory(), 4),
                               batch_timeout_ms=1000)
    camera = service.register("only")
    began = time.perf_counter()
    drive(service, camera, 20, lambda c, n: 9, {})
    elapsed = time.perf_counter() - began
    service.close()
    assert elapsed < 1.0  # 20 frames, none waited the 1 s batch timeout


def test_a_silent_camera_delays_others_by_at_most_the_timeout():
    service = InferenceService(lambda: RecordingRunner(spec(None), RecordingMemory(), 4),
                               batch_timeout_ms=20)
    busy = service.register("busy")
    service.register("silent")  # registered, never sends a frame
    began = time.perf_counter()
    drive(service, busy, 10, lambda c, n: 1, {})
    per_frame = (time.perf_counter() - began) / 10
    service.close()
    assert 0.015 < per_frame < 0.2


def test_first_come_first_served_when_cameras_outnumber_rows():
    """Batch-1 model, 3 cameras: a camera that claims again at once cannot overtake one that
    has been waiting."""
    runner_box: list[RecordingRunner] = []

    def factory() -> Runner:
        runner_box.append(RecordingRunner(spec(1), RecordingMemory(), run_s=0.002))
        return runner_box[0]

    service = InferenceService(factory)
    ids = [service.register(f"cam{i}") for i in range(3)]
    results: dict[int, list[float]] = {}
    stop = threading.Event()

    def loop(camera: int) -> None:
        while not stop.is_set():
            try:
                drive(service, camera, 1, lambda c, n: c, results)
            except ServiceClosedError:
                return

    threads = [threading.Thread(target=loop, args=(i,)) for i in ids]
    for thread in threads:
        thread.start()
    time.sleep(1.0)
    stop.set()
    for thread in threads:
        thread.join(10)
    service.close()
    counts = [len(results.get(i, [])) for i in ids]
    assert min(counts) > 0.8 * max(counts), counts


def test_backend_failure_reaches_every_camera_and_closes_the_runner(caplog):
    runners: list[RecordingRunner] = []

    def factory() -> Runner:
        runners.append(RecordingRunner(spec(None), RecordingMemory(), 2, fail_after=5))
        return runners[-1]

    service = InferenceService(factory)
    ids = [service.register(f"cam{i}") for i in range(2)]
    errors: list[BaseException] = []

    def camera(index: int) -> None:
        try:
            drive(service, index, 1000, lambda c, n: 3, {})
        except InferenceError as exc:
            errors.append(exc)

    threads = [threading.Thread(target=camera, args=(i,)) for i in ids]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    assert not any(t.is_alive() for t in threads)  # nobody hangs
    assert len(errors) == 2 and all("device lost" in str(e) for e in errors)
    assert not service.alive() and service.stats()["state"] == "failed"
    assert runners[0].calls[-1][0] == "close"
    assert sum("inference failed" in r.message for r in caplog.records) == 1
    service.close()


def test_a_runner_that_cannot_load_raises_on_the_caller_thread():
    def factory() -> Runner:
        raise ConfigError("model.path is wrong")

    with pytest.raises(ConfigError, match=r"model\.path"):
        InferenceService(factory)


def test_capacity_errors_close_the_runner_on_its_thread():
    memory = RecordingMemory()

    def capacity(model_spec: ModelSpec) -> int:
        return batch_capacity(model_spec.input.batch, 8, 2)

    with pytest.raises(ConfigError, match=r"max_batch = 8 .* fixed batch of 4"):
        InferenceService(lambda: RecordingRunner(spec(4), memory), capacity)
    assert memory.calls[-1][0] == "close"


@pytest.mark.parametrize(
    ("model_batch", "configured", "cameras", "expected", "error"),
    [
        (None, None, 1, 1, None),
        (None, None, 4, 4, None),
        (None, None, 20, 8, None),
        (None, 3, 4, 3, None),
        (1, None, 4, 1, None),
        (1, 4, 4, 1, None),  # warned, runs one at a time
        (4, None, 2, 4, None),
        (4, 2, 2, 2, None),
        (4, 8, 2, None, "max_batch = 8 is more than the model's fixed batch of 4"),
    ],
)
def test_batch_capacity(model_batch, configured, cameras, expected, error, caplog):
    if error:
        with pytest.raises(ConfigError, match=error):
            batch_capacity(model_batch, configured, cameras)
        return
    assert batch_capacity(model_batch, configured, cameras) == expected
    if model_batch == 1 and configured and configured > 1:
        assert "fixed batch of 1" in caplog.text

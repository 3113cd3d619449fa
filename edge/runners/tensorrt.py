"""TensorRT backend: the named-tensor API (TensorRT 8.5, 8.6, 10 and 11 all have it).

One execution context and one stream per slot, so slot n+1's input can be written while slot n
runs. On Jetson the input and outputs are mapped pinned memory: the GPU reads the letterboxed
frame where the CPU wrote it. On a discrete GPU, inputs and outputs are copied asynchronously
on the slot's stream. An event per slot is the only synchronisation: `wait(slot)` blocks on it
before the CPU reads outputs, and `submit` refuses a slot still in flight.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

from edge.errors import ModelError
from edge.gpu.memory import GpuMemory, HostBuffer
from edge.runners.base import Runner
from edge.runners.validate import check_output_shape
from edge.spec import ModelSpec
from edge.tensorrt import load_tensorrt
from edge.tensorrt.buffers import BufferPlan, IoTensor, plan_buffers
from edge.tensorrt.builder import tensorrt_object

log = logging.getLogger(__name__)


def io_tensors(trt: Any, engine: Any) -> list[IoTensor]:
    tensors = []
    for index in range(engine.num_io_tensors):
        name = engine.get_tensor_name(index)
        tensors.append(IoTensor(
            name, engine.get_tensor_mode(name) == trt.TensorIOMode.INPUT,
            tuple(int(d) for d in engine.get_tensor_shape(name)),
            np.dtype(trt.nptype(engine.get_tensor_dtype(name))).name))
    return tensors


def _set_input_shape(context: Any, name: str, shape: tuple[int, ...]) -> None:
    """TensorRT answers False, and logs why, for a shape outside the engine's profile: said
    here, rather than as the execute_async_v3 failure that follows."""
    if not context.set_input_shape(name, shape):
        raise ModelError(f"the engine takes no {list(shape)} {name} (outside its optimization "
                         "profile; see the TensorRT log above); rebuild it for these rows "
                         "(`edge build-engine --max-batch N`, or let the daemon build it)")


@dataclass
class _Slot:
    context: Any
    stream: int
    event: Any
    host: dict[str, HostBuffer] = field(default_factory=dict)
    device: dict[str, int] = field(default_factory=dict)
    result: npt.NDArray[np.float32] | None = None  # float32 copy of a half-precision output
    in_flight: bool = False
    rows: int = 0  # rows of the batch submitted last


class TrtRunner(Runner):
    backend = "tensorrt"

    def __init__(self, engine_bytes: bytes, spec: ModelSpec, memory: GpuMemory,
                 slots: int = 2, max_batch: int = 1, dla_core: int = -1,
                 precision: str = "fp32") -> None:
        """`dla_core`: the Jetson DLA core the engine was built for (its key's), -1 for the
        GPU; the runtime must be told before it deserializes such an engine. `precision`: the
        one it was built in (its key's)."""
        trt = load_tensorrt()
        self.spec = spec
        self.precision = precision
        self.slots = slots
        self.max_batch = spec.input.batch or max_batch
        self._memory = memory
        self._logger = trt.Logger(trt.Logger.WARNING)
        self._runtime = tensorrt_object(trt.Runtime, self._logger, trt.__version__)
        if dla_core >= 0:
            self._runtime.DLA_core = dla_core
        self._slots: list[_Slot] = []
        try:
            self._engine = self._runtime.deserialize_cuda_engine(engine_bytes)
            if self._engine is None:
                raise ModelError("TensorRT could not deserialize the engine: it was built by "
                                 "another TensorRT version or for another GPU; rebuild it "
                                 "(`edge build-engine`)")
            info = memory.device()
            self.plan: BufferPlan = plan_buffers(io_tensors(trt, self._engine),
                                                 self.max_batch, info.integrated, slots)
            if spec.output not in {b.name for b in self.plan.outputs}:
                raise ModelError(f"the engine has no output {spec.output}; its sidecar does not "
                                 "match it; rebuild the engine")
            check_output_shape(spec, next(b.shape for b in self.plan.outputs
                                          if b.name == spec.output))
            for _ in range(slots):
                self._slots.append(self._make_slot())
        except BaseException:
            self._release_tensorrt()  # the caller still owns `memory` and closes it
            raise
        log.info("TensorRT %s engine on %s (%s memory, %s): %d MB host, %d MB device",
                 trt.__version__, info.identity.name, memory.name,
                 "zero-copy" if info.integrated else "copied",
                 self.plan.host_bytes >> 20, self.plan.device_bytes >> 20)

    def _make_slot(self) -> _Slot:
        context = self._engine.create_execution_context()
        slot = _Slot(context, self._memory.stream(), self._memory.event())
        image = self.plan.input
        if -1 in self._engine.get_tensor_shape(image.name):
            _set_input_shape(context, image.name, image.shape)
        for buffer in self.plan.buffers:
            host = self._memory.host_buffer(buffer.shape, buffer.dtype, mapped=buffer.mapped)
            slot.host[buffer.name] = host
            address = host.device_pointer if buffer.mapped else \
                self._memory.device_buffer(buffer.nbytes)
            slot.device[buffer.name] = address
            context.set_tensor_address(buffer.name, address)
        slot.host[image.name].array.fill(self.spec.input.pad_value)
        output = slot.host[self.spec.output].array
        if output.dtype != np.float32:  # converted in place per frame, allocated once here
            slot.result = np.empty(output.shape, np.float32)
        return slot

    @property
    def output_shape(self) -> tuple[int, ...]:
        return next(b.shape for b in self.plan.outputs if b.name == self.spec.output)

    def input_buffer(self, slot: int) -> npt.NDArray[np.uint8]:
        array: npt.NDArray[np.uint8] = self._slots[slot].host[self.plan.input.name].array
        return array

    def submit(self, slot: int, batch: int | None = None) -> None:
        """Dynamic-batch engines run only the first `batch` rows: the input shape is set per
        submit, and rows are contiguous, so every tensor's first rows are the ones that ran."""
        state = self._slots[slot]
        if state.in_flight:
            raise RuntimeError(f"slot {slot} is still in flight; wait() for it first")
        rows = self._rows(batch)
        image = self.plan.input
        if self.spec.input.batch is None:
            _set_input_shape(state.context, image.name, (rows, *image.shape[1:]))
        state.rows = rows
        if not image.mapped:
            self._memory.copy_to_device(state.device[image.name],
                                        state.host[image.name].array[:rows], state.stream)
        if not state.context.execute_async_v3(state.stream):
            raise RuntimeError("TensorRT execute_async_v3 failed; see the TensorRT log above")
        for output in self.plan.outputs:
            if not output.mapped:
                self._memory.copy_to_host(state.host[output.name].array[:rows],
                                          state.device[output.name], state.stream)
        self._memory.record(state.event, state.stream)
        state.in_flight = True

    def wait(self, slot: int) -> npt.NDArray[np.float32]:
        state = self._slots[slot]
        if not state.in_flight:
            raise RuntimeError(f"slot {slot} was not submitted")
        self._memory.wait(state.event)
        state.in_flight = False
        output: npt.NDArray[np.float32] = state.host[self.spec.output].array[:state.rows]
        if state.result is None:
            return output
        result = state.result[:state.rows]
        np.copyto(result, output)
        return result

    def close(self) -> None:
        self._finish_in_flight()  # in its own frame: no slot stays referenced from here
        self._release_tensorrt()
        self._memory.close()

    def _finish_in_flight(self) -> None:
        for index, state in enumerate(self._slots):
            if state.in_flight:
                self.wait(index)

    def _release_tensorrt(self) -> None:
        """Drop the execution contexts, then the engine, then the runtime, while the CUDA
        context is still current: left to the garbage collector, TensorRT frees the engine's
        device memory later, on whatever thread, after pycuda's context is popped and
        detached ("Cuda Runtime (invalid argument)" in deallocate, or a crash at exit)."""
        self._slots.clear()
        self._engine = None
        self._runtime = None

"""ONNX Runtime backend: IO binding on preallocated numpy buffers (CPU execution provider)."""

from __future__ import annotations

from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from edge.ort_session import import_onnxruntime, session_from_onnx
from edge.runners.base import Runner
from edge.runners.validate import check_io, check_output_shape
from edge.spec import ModelSpec, spec_from_session


class OrtRunner(Runner):
    """Runs a converted model on ONNX Runtime's CPU provider.

    Inference for a slot runs on a single worker thread (ONNX Runtime releases the GIL), so the
    caller can letterbox the next frame meanwhile.
    """

    backend = "onnxruntime"

    def __init__(self, session: Any, spec: ModelSpec, slots: int = 2) -> None:
        ort = import_onnxruntime()
        self._session = session
        self.spec = spec
        self.slots = slots
        batch = spec.input.batch or 1
        shape = (batch, spec.input.height, spec.input.width, 3)
        check_io(spec, [(i.name, i.type, i.shape) for i in session.get_inputs()],
                 [o.name for o in session.get_outputs()])
        self._inputs = [np.full(shape, spec.input.pad_value, np.uint8) for _ in range(slots)]
        probe = session.run([spec.output], {spec.input.name: self._inputs[0]})[0]
        check_output_shape(spec, probe.shape)
        self._outputs = [np.empty_like(probe, dtype=np.float32) for _ in range(slots)]
        self._bindings = []
        for inp, out in zip(self._inputs, self._outputs, strict=True):
            binding = session.io_binding()
            binding.bind_input(spec.input.name, "cpu", 0, np.uint8, inp.shape, inp.ctypes.data)
            binding.bind_output(spec.output, "cpu", 0, np.float32, out.shape, out.ctypes.data)
            self._bindings.append(binding)
        self._run_options = ort.RunOptions()
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="ort-infer")
        self._pending: list[Future[None] | None] = [None] * slots

    @classmethod
    def from_path(cls, path: Path, threads: int = 0, slots: int = 2) -> OrtRunner:
        session = session_from_onnx(path, threads)
        return cls(session, spec_from_session(session, str(path)), slots)

    @property
    def output_shape(self) -> tuple[int, ...]:
        return tuple(self._outputs[0].shape)

    def input_buffer(self, slot: int) -> npt.NDArray[np.uint8]:
        return self._inputs[slot]

    def submit(self, slot: int) -> None:
        if self._pending[slot] is not None:
            raise RuntimeError(f"slot {slot} is still in flight; wait() for it first")
        binding = self._bindings[slot]
        self._pending[slot] = self._pool.submit(
            self._session.run_with_iobinding, binding, self._run_options)

    def wait(self, slot: int) -> npt.NDArray[np.float32]:
        pending = self._pending[slot]
        if pending is None:
            raise RuntimeError(f"slot {slot} was not submitted")
        self._pending[slot] = None
        pending.result()
        return self._outputs[slot]

    def close(self) -> None:
        self._pool.shutdown(wait=True)

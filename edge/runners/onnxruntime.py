"""ONNX Runtime backend: IO binding on preallocated numpy buffers (CPU execution provider)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from edge.ort_session import import_onnxruntime, session_from_onnx
from edge.runners.base import Runner
from edge.runners.validate import check_io, check_output_shape
from edge.spec import ModelSpec, spec_from_session


class OrtRunner(Runner):
    """Runs a converted model on ONNX Runtime's CPU provider, on the calling thread.

    ONNX Runtime computes on the thread that calls `run` (plus its own intra-op pool, and it
    releases the GIL), so `submit` runs the slot to completion and `wait` only hands the output
    back. In the daemon the calling thread is the inference service's; cameras letterbox into
    the other slot meanwhile. Dynamic-batch models get one IO binding per slot and batch size,
    all on the same preallocated memory.
    """

    backend = "onnxruntime"

    def __init__(self, session: Any, spec: ModelSpec, slots: int = 2,
                 max_batch: int = 1) -> None:
        ort = import_onnxruntime()
        self._session = session
        self.spec = spec
        self.slots = slots
        self.max_batch = spec.input.batch or max_batch
        self.precision = "fp32" if spec.quantization in (None, "float") else "int8"
        shape = (self.max_batch, spec.input.height, spec.input.width, 3)
        check_io(spec, [(i.name, i.type, i.shape) for i in session.get_inputs()],
                 [o.name for o in session.get_outputs()])
        self._inputs = [np.full(shape, spec.input.pad_value, np.uint8) for _ in range(slots)]
        probe = session.run([spec.output], {spec.input.name: self._inputs[0]})[0]
        check_output_shape(spec, probe.shape)
        self._outputs = [np.empty_like(probe, dtype=np.float32) for _ in range(slots)]
        sizes = range(1, self.max_batch + 1) if spec.input.batch is None else [self.max_batch]
        self._bindings = [{rows: self._bind(inp, out, rows) for rows in sizes}
                          for inp, out in zip(self._inputs, self._outputs, strict=True)]
        self._run_options = ort.RunOptions()
        self._ran: list[int | None] = [None] * slots

    def _bind(self, inp: npt.NDArray[np.uint8], out: npt.NDArray[np.float32],
              rows: int) -> Any:
        binding = self._session.io_binding()
        binding.bind_input(self.spec.input.name, "cpu", 0, np.uint8, (rows, *inp.shape[1:]),
                           inp.ctypes.data)
        binding.bind_output(self.spec.output, "cpu", 0, np.float32, (rows, *out.shape[1:]),
                            out.ctypes.data)
        return binding

    @classmethod
    def from_path(cls, path: Path, threads: int = 0, slots: int = 2,
                  max_batch: int = 1, qdq_in_float: bool = False) -> OrtRunner:
        """`qdq_in_float`: see `edge.ort_session.session_from_onnx`."""
        session = session_from_onnx(path, threads, qdq_in_float)
        return cls(session, spec_from_session(session, str(path)), slots, max_batch)

    @property
    def output_shape(self) -> tuple[int, ...]:
        return tuple(self._outputs[0].shape)

    def input_buffer(self, slot: int) -> npt.NDArray[np.uint8]:
        return self._inputs[slot]

    def submit(self, slot: int, batch: int | None = None) -> None:
        if self._ran[slot] is not None:
            raise RuntimeError(f"slot {slot} is still in flight; wait() for it first")
        rows = self._rows(batch)
        self._session.run_with_iobinding(self._bindings[slot][rows], self._run_options)
        self._ran[slot] = rows

    def wait(self, slot: int) -> npt.NDArray[np.float32]:
        rows = self._ran[slot]
        if rows is None:
            raise RuntimeError(f"slot {slot} was not submitted")
        self._ran[slot] = None
        return self._outputs[slot][:rows]

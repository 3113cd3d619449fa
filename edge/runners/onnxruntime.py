"""ONNX Runtime backend: IO binding on preallocated numpy buffers (CPU execution provider)."""

from __future__ import annotations

from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from edge.errors import MissingDependencyError, ModelError
from edge.runners.base import Runner
from edge.runners.validate import check_io, check_output_shape
from edge.spec import SPEC_KEY, ModelSpec


def _import_onnxruntime() -> Any:
    try:
        import onnxruntime
    except ImportError as exc:
        raise MissingDependencyError("onnxruntime", "cpu", "the ONNX Runtime backend") from exc
    return onnxruntime


def _load_errors() -> tuple[type[Exception], ...]:
    """ONNX Runtime's own exception classes for a model it cannot load (they derive from
    Exception directly)."""
    from onnxruntime.capi import onnxruntime_pybind11_state as state

    names = ("Fail", "InvalidArgument", "InvalidGraph", "InvalidProtobuf", "NoModel",
             "NoSuchFile", "NotImplemented", "RuntimeException")
    return tuple(getattr(state, name) for name in names if hasattr(state, name))


def session_from_onnx(path: Path, threads: int = 0) -> Any:
    """An ONNX Runtime CPU session for `path`; `threads` 0 lets ONNX Runtime choose."""
    if not path.is_file():
        raise ModelError(f"model file {path} does not exist; check model.path or convert a "
                         "model with `edge convert`")
    ort = _import_onnxruntime()
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.log_severity_level = 3
    load_errors: tuple[type[Exception], ...] = (*_load_errors(), OSError, RuntimeError,
                                                ValueError)
    try:
        return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    except load_errors as exc:
        first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ModelError(f"{path} is not a loadable ONNX model ({first_line}); point "
                         "model.path at a model produced by `edge convert`") from exc


def spec_from_session(session: Any, origin: str) -> ModelSpec:
    metadata = session.get_modelmeta().custom_metadata_map
    if SPEC_KEY not in metadata:
        raise ModelError(
            f"{origin} has no '{SPEC_KEY}' metadata, so its labels and preprocessing are "
            "unknown; convert it with `edge convert` first")
    return ModelSpec.from_json(metadata[SPEC_KEY], origin)


class OrtRunner(Runner):
    """Runs a converted model on ONNX Runtime's CPU provider.

    Inference for a slot runs on a single worker thread (ONNX Runtime releases the GIL), so the
    caller can letterbox the next frame meanwhile.
    """

    backend = "onnxruntime"

    def __init__(self, session: Any, spec: ModelSpec, slots: int = 2) -> None:
        ort = _import_onnxruntime()
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

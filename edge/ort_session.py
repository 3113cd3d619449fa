"""ONNX Runtime sessions from model files, shared by the spec reader and the ONNX Runtime runner.

It sits below both so that reading a model's spec needs no runner (the device install has ONNX
Runtime but not the `onnx` package, so the spec is read through a session there).
"""

from __future__ import annotations

import functools
import logging
from pathlib import Path
from typing import Any

from edge.errors import NOT_A_MODEL_FIX, MissingDependencyError, ModelError
from edge.files import require_model_file
from edge.system import physical_cores, usable_cores

log = logging.getLogger(__name__)


def import_onnxruntime() -> Any:
    """The `onnxruntime` module, or a MissingDependencyError naming the `cpu` extra."""
    try:
        import onnxruntime  # noqa: PLC0415 - optional (the cpu extra)
    except ImportError as exc:
        raise MissingDependencyError("onnxruntime", "cpu", "the ONNX Runtime backend") from exc
    return onnxruntime


def _load_errors() -> tuple[type[Exception], ...]:
    """ONNX Runtime's own exception classes for a model it cannot load (they derive from
    Exception directly)."""
    from onnxruntime.capi import onnxruntime_pybind11_state as state  # noqa: PLC0415 - as above

    names = ("Fail", "InvalidArgument", "InvalidGraph", "InvalidProtobuf", "NoModel",
             "NoSuchFile", "NotImplemented", "RuntimeException")
    return tuple(getattr(state, name) for name in names if hasattr(state, name))


def intra_op_threads(threads: int) -> int:
    """ONNX Runtime's `intra_op_num_threads` for `threads` (0: choose): one a physical core
    this process may run on, as ONNX Runtime chooses, but given explicitly. Left to choose,
    it pins each of its threads to a core, which a service's syscall filter (systemd's
    `@resources`, as edge.service sets) or a container's cpuset refuses with an error line
    per thread at every start; threads it is given are not pinned."""
    cores = usable_cores()
    if threads > cores:
        _warn_of_more_threads_than_cores(threads, cores)
    return threads if threads > 0 else physical_cores()


@functools.cache
def _warn_of_more_threads_than_cores(threads: int, cores: int) -> None:
    """Said once a process: a user check gave model.threads = 64 on 2 cores and got 8.6 FPS
    against 235.9 with 1, without a word."""
    log.warning("ONNX Runtime was given %d inference threads (model.threads, --threads) on the "
                "%d CPU(s) this process may use: its threads then wait on each other, and run "
                "the model many times slower than %d would; give 0 (one a physical core) or at "
                "most %d", threads, cores, cores, cores)


#: The session setting that computes a QDQ model's quantize/dequantize pairs in float, as its
#: graph defines them, instead of fusing them into ONNX Runtime's int8 kernels.
QDQ_IN_FLOAT = ("session.disable_quant_qdq", "1")


def session_from_onnx(path: Path, threads: int = 0, qdq_in_float: bool = False) -> Any:
    """An ONNX Runtime CPU session for `path`; `threads` 0: one a physical core.
    `qdq_in_float`: a QDQ model's quantize/dequantize pairs computed in float as the graph
    defines them (the arithmetic TensorRT implements, the same on every CPU), instead of fused
    into ONNX Runtime's int8 kernels, which round differently from CPU to CPU."""
    require_model_file(path)
    ort = import_onnxruntime()
    options = ort.SessionOptions()
    options.intra_op_num_threads = intra_op_threads(threads)
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.log_severity_level = 3
    if qdq_in_float:
        options.add_session_config_entry(*QDQ_IN_FLOAT)
    load_errors: tuple[type[Exception], ...] = (*_load_errors(), OSError, RuntimeError,
                                                ValueError)
    try:
        return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    except load_errors as exc:
        first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ModelError(f"{path} is not an ONNX model ONNX Runtime can load ({first_line}); "
                         f"{NOT_A_MODEL_FIX}") from exc

"""Check, infer shapes and simplify an ONNX graph with onnxsim (constant folding, dead nodes)."""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import tempfile
from collections.abc import Iterator

import onnx

from converters.errors import ConversionError
from edge.errors import MissingDependencyError

log = logging.getLogger(__name__)

#: How onnxsim's C++ side starts the line it prints for each node it cannot constant-fold
#: (harmless: the node stays as it is; a YOLOv8 head gives eleven).
UNFOLDED_NODE = 'WARNING: failed to run "'


def checked_onnx(model: onnx.ModelProto) -> onnx.ModelProto:
    """Shape-inferred copy of `model` that passes the full ONNX checker."""
    try:
        inferred = onnx.shape_inference.infer_shapes(model, check_type=True, strict_mode=True)
        onnx.checker.check_model(inferred, full_check=True)
    except (onnx.checker.ValidationError, onnx.shape_inference.InferenceError) as exc:
        raise ConversionError(f"the converted graph is not valid ONNX: {exc}") from exc
    return inferred


def simplified_onnx(model: onnx.ModelProto) -> onnx.ModelProto:
    """onnxsim's simplification, then the checker; metadata is carried over unchanged."""
    try:
        import onnxsim  # noqa: PLC0415 - optional, heavy
    except ImportError as exc:
        raise MissingDependencyError("onnxsim", "convert", "graph simplification") from exc
    try:
        with _unfolded_nodes_to_debug_log():
            simplified, ok = onnxsim.simplify(model)
    except (RuntimeError, ValueError, onnx.checker.ValidationError,
            onnx.shape_inference.InferenceError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ConversionError(f"onnxsim could not simplify the graph ({first}); convert with "
                              "--no-simplify") from exc
    if not ok:
        raise ConversionError("onnxsim could not verify the simplified graph; convert with "
                              "--no-simplify")
    del simplified.metadata_props[:]
    simplified.metadata_props.extend(model.metadata_props)
    return checked_onnx(simplified)


@contextlib.contextmanager
def _unfolded_nodes_to_debug_log() -> Iterator[None]:
    """While onnxsim runs, its native stderr goes to a file: its per-node "failed to run ...
    skip" lines go to the debug log (a user saw eleven WARNING lines about nothing to act on),
    anything else back to stderr as it was."""
    sys.stderr.flush()
    with tempfile.TemporaryFile() as sink:
        saved = os.dup(2)
        os.dup2(sink.fileno(), 2)
        try:
            yield
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            sink.seek(0)
            for line in sink.read().decode(errors="replace").splitlines(keepends=True):
                if line.startswith(UNFOLDED_NODE):
                    log.debug("onnxsim: %s", line.rstrip())
                else:
                    sys.stderr.write(line)
            sys.stderr.flush()

"""Check, infer shapes and simplify an ONNX graph with onnxsim (constant folding, dead nodes)."""

from __future__ import annotations

import onnx

from converters.errors import ConversionError
from edge.errors import MissingDependencyError


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

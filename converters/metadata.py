"""Read and write the model spec in an ONNX model's metadata_props."""

from __future__ import annotations

import onnx

from edge.spec import SPEC_KEY, ModelSpec


def onnx_with_spec(model: onnx.ModelProto, spec: ModelSpec) -> onnx.ModelProto:
    """Store `spec` under SPEC_KEY, replacing an earlier one; other metadata is kept."""
    kept = [p for p in model.metadata_props if p.key != SPEC_KEY]
    del model.metadata_props[:]
    model.metadata_props.extend(kept)
    entry = model.metadata_props.add()
    entry.key, entry.value = SPEC_KEY, spec.to_json()
    return model

"""Read and write the model spec, and the preprocessing folded in, in an ONNX model's
metadata_props."""

from __future__ import annotations

import json
from typing import Any

import onnx

from converters.fold import Normalisation
from edge.spec import SPEC_KEY, ModelSpec

#: What `edge convert` folded in front of the network, for people (`edge inspect`): the device
#: needs none of it, so it stays out of the spec.
PREPROCESSING_KEY = "edge.preprocessing"


def onnx_with_spec(model: onnx.ModelProto, spec: ModelSpec) -> onnx.ModelProto:
    """Store `spec` under SPEC_KEY, replacing an earlier one; other metadata is kept."""
    kept = [p for p in model.metadata_props if p.key != SPEC_KEY]
    del model.metadata_props[:]
    model.metadata_props.extend(kept)
    entry = model.metadata_props.add()
    entry.key, entry.value = SPEC_KEY, spec.to_json()
    return model


def onnx_with_preprocessing(model: onnx.ModelProto, normalisation: Normalisation,
                            grey: bool) -> onnx.ModelProto:
    """Record the network's normalisation under PREPROCESSING_KEY (`grey`: it takes BT.601
    luma, one mean and std)."""
    record = {"network_order": None if grey else normalisation.colour_order, "grey": grey,
              "mean": list(normalisation.mean)[:1 if grey else 3],
              "std": list(normalisation.std)[:1 if grey else 3]}
    kept = [p for p in model.metadata_props if p.key != PREPROCESSING_KEY]
    del model.metadata_props[:]
    model.metadata_props.extend(kept)
    entry = model.metadata_props.add()
    entry.key, entry.value = PREPROCESSING_KEY, json.dumps(record)
    return model


def preprocessing_of(model: onnx.ModelProto) -> dict[str, Any] | None:
    """What PREPROCESSING_KEY records, or None (a model converted before it was recorded)."""
    text = next((p.value for p in model.metadata_props if p.key == PREPROCESSING_KEY), None)
    if text is None:
        return None
    try:
        record = json.loads(text)
    except json.JSONDecodeError:
        return None
    return record if isinstance(record, dict) else None

"""Checks that a model's real inputs and outputs agree with its spec, before anything runs."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from edge.errors import ModelError
from edge.spec import END_TO_END_COLUMNS, ModelSpec


def check_io(spec: ModelSpec, inputs: Sequence[tuple[str, str, Sequence[Any]]],
             outputs: Sequence[str]) -> None:
    """`inputs`: (name, ONNX type string such as 'tensor(uint8)', shape) per model input."""
    if len(inputs) != 1:
        raise ModelError(f"the model has {len(inputs)} inputs ({', '.join(i[0] for i in inputs)}); "
                         "a converted model has exactly one image input")
    name, dtype, shape = inputs[0]
    expected = [spec.input.batch, spec.input.height, spec.input.width, 3]
    static = [d if isinstance(d, int) else None for d in shape]
    if name != spec.input.name or dtype != "tensor(uint8)" or len(static) != 4 or any(
            s is not None and e is not None and s != e for s, e in zip(static, expected,
                                                                        strict=True)):
        raise ModelError(
            f"the model input is {name} {dtype} {list(shape)} but its spec describes "
            f"{spec.input.name} uint8 {expected} (NHWC); re-convert the model with `edge convert`")
    if spec.output not in outputs:
        raise ModelError(f"the spec names output '{spec.output}' but the model has "
                         f"{', '.join(outputs)}; re-convert the model with `edge convert`")


def check_output_shape(spec: ModelSpec, shape: Sequence[int]) -> None:
    """The head output must fit the spec's layout and class count."""
    nc = spec.num_classes
    expected: dict[str, str] = {
        "anchor_free": f"[N, {4 + nc}, A]",
        "anchor_free_transposed": f"[N, A, {4 + nc}]",
        "yolov5": f"[N, A, {5 + nc}]",
        "end_to_end": "[N, K, 6]",
        "logits": f"[N, {nc}]",
        "probabilities": f"[N, {nc}]",
    }
    fits = {
        "anchor_free": len(shape) == 3 and shape[1] == 4 + nc,
        "anchor_free_transposed": len(shape) == 3 and shape[2] == 4 + nc,
        "yolov5": len(shape) == 3 and shape[2] == 5 + nc,
        "end_to_end": len(shape) == 3 and shape[2] == END_TO_END_COLUMNS,
        "logits": len(shape) == 2 and shape[1] == nc,
        "probabilities": len(shape) == 2 and shape[1] == nc,
    }
    if not fits[spec.head]:
        raise ModelError(
            f"the model output {spec.output} has shape {list(shape)}, which does not fit the "
            f"'{spec.head}' layout with {nc} labels (expected {expected[spec.head]}); "
            "re-convert the model with the right --task/labels")

"""Which of a source model's outputs is its head, of which layout, and whether the labels fit.

Works on the outputs of one run of the source (`first`: name -> value), so that values can
decide what shapes cannot (an end-to-end head's [N, K, 6] against a two-class [N, A, 4+nc]).
Every refusal names the outputs and how many labels each would take.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import numpy.typing as npt
import onnx

from converters.errors import ConversionError
from converters.gfl_head import OUTPUT as GFL_OUTPUT
from converters.heads import NO_DECODER, SUPPORTED, Head, head_from_shape, looks_end_to_end
from converters.ultralytics_tasks import POSE_KEYPOINT_VALUES
from edge.spec import HeadLayout
from edge.wording import counted, listed

#: Ops that pass a classifier's scores through unchanged in value.
_PASS_THROUGH = {"Identity", "Reshape", "Flatten", "Squeeze", "Unsqueeze"}

Outputs = dict[str, npt.NDArray[Any]]


def recognise_head(model: onnx.ModelProto, first: Outputs, labels: tuple[str, ...] | None,
                   requested: HeadLayout | None, from_metadata: bool = False,
                   wanted: str | None = None) -> tuple[str, Head]:
    """The output read as the head, and its layout (`requested`, else recognised): `wanted`
    (`--head-output`), else the first output that fits one, except that among classifier
    outputs one ending in Softmax or Sigmoid comes first (MTCNN's R-Net puts its box
    regression, [N, 4], before its face probabilities, [N, 2]), and a single value (a feature,
    a confidence) last. With the labels unknown and several outputs fitting, an error names
    each with its class count; several fitting alike (a captcha net's one classifier per
    character) are refused without `wanted`.
    `from_metadata`: the labels are the model's own (its metadata's), not --labels."""
    nc = len(labels) if labels else None
    names = [o.name for o in model.graph.output]
    if wanted is not None and wanted not in names:
        raise ConversionError(f"--head-output {wanted}: the model has no output of that name; "
                              f"its outputs: {_outputs_seen(names, first)}")
    fitting: list[tuple[str, Head]] = []
    first_error: ConversionError | None = None
    for name in [wanted] if wanted is not None else names:
        try:
            fitting.append((name, _head_of(model, requested, name, first[name], nc)))
        except ConversionError as exc:
            first_error = first_error or exc
    if not fitting:
        if wanted is not None and first_error is not None:
            raise first_error
        raise _no_head_error(model, first, nc, requested, first_error, from_metadata)
    if all(head.task == "classify" for _, head in fitting):  # stable sort: else in order
        fitting.sort(key=lambda fit: (fit[1].layout != "probabilities", fit[1].num_classes == 1))
    if labels is None:
        raise _labels_needed(fitting)
    alike = [name for name, head in fitting if head == fitting[0][1]]
    if len(alike) > 1:
        head = fitting[0][1]
        raise ConversionError(
            f"outputs {listed(alike)} each fit the head alike ({head.task}, {head.layout}, "
            f"{counted(head.num_classes, 'class')}), and edge reads one head a model; pass "
            "--head-output NAME to choose it (a model that answers with all of them at once, "
            "such as one classifier per captcha character, is not one edge runs)")
    return fitting[0]


def _outputs_seen(names: Sequence[str], first: Outputs) -> str:
    return ", ".join(f"{name} ({per_frame(tuple(first[name].shape))})" for name in names)


def check_label_count(known: Sequence[str] | None, given: Sequence[str] | None,
                      highest_class: int | None = None) -> None:
    """--labels (`given`) must name as many classes as the model's own metadata (`known`)
    does (an end-to-end head's class count is in no shape to check it against), unless the
    model writes a class index (`highest_class`) the metadata has no name for."""
    if highest_class is not None and known and highest_class >= len(known):
        return  # the metadata is short: `check_class_indices` holds the labels to the model
    if known and given and len(known) != len(given):
        raise ConversionError(f"{labels_given(len(given))} but the model's metadata names "
                              f"{counted(len(known), 'class')} ({listed(known)}); pass "
                              f"{counted(len(known), 'label')}, or leave --labels out to use "
                              "those")


def highest_class_index(values: Sequence[npt.NDArray[Any]]) -> int:
    """The highest class index an end-to-end head's rows ([N, K, 6] `values`) hold."""
    return int(np.rint(max(value[..., 5].max(initial=0) for value in values)))


def check_class_indices(output: str, highest: int, classes: int,
                        from_metadata: bool = False) -> None:
    """An end-to-end head's class indices (`highest`: see `highest_class_index`) must not
    pass the labels (`from_metadata`: the model's own)."""
    if highest >= classes:
        given = (f"its metadata names {classes}" if from_metadata else labels_given(classes))
        raise ConversionError(f"output {output} holds class index {highest}, so the model has "
                              f"at least {highest + 1} classes, but {given}; pass --labels "
                              "with one name for each of its classes")


def unread_outputs_note(output: str, head: Head, shapes: dict[str, tuple[int, ...]]
                        ) -> tuple[str, ...]:
    """A note naming the output the spec reads and the others (cut from the converted model
    with what only they need), when the model has several (a face net's box regression can be
    as wide as a class list)."""
    others = [f"{name} ({per_frame(shape)})" for name, shape in shapes.items() if name != output]
    if not others:
        return ()
    return (f"took output {output} ({per_frame(shapes[output])}) as the {head.task} head "
            f"({head.layout}, {head.num_classes} classes); left out of the converted model: "
            f"{', '.join(others)}. If that is the wrong output, pass --head-output NAME (and as "
            "many --labels as it has classes)",)


def labels_given(count: int) -> str:
    return "1 label was given" if count == 1 else f"{count} labels were given"


def _labels_needed(fitting: list[tuple[str, Head]]) -> ConversionError:
    """The labels are unknown: how many to pass, for each output that could be the head."""
    output, head = fitting[0]
    counts = f"its {head.num_classes} class names"
    if len(fitting) > 1:
        others = "; ".join(f"{other.num_classes} for {name} ({other.layout})"
                           for name, other in fitting[1:])
        counts += (f" for output {output} ({head.layout}), the one taken; or, for another "
                   f"output, as many as it has classes: {others}")
    if len(fitting) == 1 and head.layout == "anchor_free":
        if_pose = [str(head.num_classes - values) for values in POSE_KEYPOINT_VALUES
                   if head.num_classes > values]
        if if_pose:
            counts += ("; or, for an Ultralytics pose export stripped of its metadata, its own "
                       f"{' or '.join(if_pose)} class names (the 17 keypoints' values after "
                       "them are then cut)")
    return ConversionError(f"the model's labels are unknown; pass --labels (a file or a comma "
                           f"list) with {counts}")


def _no_head_error(model: onnx.ModelProto, first: Outputs, nc: int | None,
                   requested: HeadLayout | None, first_error: ConversionError | None,
                   from_metadata: bool) -> ConversionError:
    """Why no output fits: a label count no output has (naming each output's class count), or
    no output of a supported layout at all."""
    shapes = {name: tuple(value.shape) for name, value in first.items()}
    outputs = [o.name for o in model.graph.output]
    unlabelled = {name: _unlabelled_head(model, first, name, requested) for name in outputs}
    fitting = {name: head for name, head in unlabelled.items() if head is not None}
    given = (f"the model's metadata names {counted(nc, 'class')}" if from_metadata and
             nc is not None
             else labels_given(nc or 0))
    if nc is not None and len(outputs) == 1 and fitting:
        classes = fitting[outputs[0]].num_classes
        # a user check: the name alone meant nothing beside the model's own outputs
        output = (f"output {outputs[0]}, the one edge convert builds from its GFL head's "
                  "outputs," if outputs[0] == GFL_OUTPUT else f"model's output {outputs[0]}")
        return ConversionError(f"{given} but the {output} "
                               f"({per_frame(shapes[outputs[0]])}) has "
                               f"{counted(classes, 'class')}; pass exactly "
                               f"{counted(classes, 'label')}"
                               + (" with --labels" if from_metadata else ""))
    if len(outputs) == 1 and first_error is not None:
        return first_error
    seen = "; ".join(f"{name} ({per_frame(shapes[name])}" + (
        f", {head.num_classes} classes)" if (head := unlabelled[name]) else ")")
        for name in outputs)
    if nc is not None and fitting:
        return ConversionError(f"{given} but no output of the model has {nc} "
                               f"classes (outputs: {seen}); pass as many labels as the output "
                               "you want has classes")
    return ConversionError(f"no output fits a supported head; outputs: {seen}. Supported: "
                           f"{SUPPORTED}. {NO_DECODER}")


def per_frame(shape: tuple[int, ...]) -> str:
    """An output's shape from a batch-1 run, without that batch: `22 x 2100 a frame` (a
    dynamic-batch model has no batch of 1 to speak of)."""
    return f"{' x '.join(map(str, shape[1:])) or 'a scalar'} a frame"


def _unlabelled_head(model: onnx.ModelProto, first: Outputs, name: str,
                     requested: HeadLayout | None) -> Head | None:
    try:
        return _head_of(model, requested, name, first[name], None)
    except ConversionError:
        return None


def _head_of(model: onnx.ModelProto, requested: HeadLayout | None, name: str,
             value: npt.NDArray[Any], nc: int | None) -> Head:
    """The head output `name` (`value` from the source's first run) fits, with `nc` classes."""
    return head_from_shape(list(value.shape), nc, requested, _ends_in_probabilities(model, name),
                           None if requested else looks_end_to_end(value))


def _ends_in_probabilities(model: onnx.ModelProto, output: str) -> bool:
    """Whether `output` comes from a Softmax or Sigmoid, through ops that only reshape."""
    producers = {out: node for node in model.graph.node for out in node.output}
    node = producers.get(output)
    while node is not None and node.op_type in _PASS_THROUGH:
        node = producers.get(node.input[0])
    return node is not None and node.op_type in ("Softmax", "Sigmoid")

"""INT8 models of one FP32 model for any ranges, and which layers to keep in float.

`edge calibrate` makes many INT8 models of one FP32 model: one per range method, per-tensor
mixes, and with `--keep-float` one per layer kept in float. Under the `tensorrt` profile they
share everything but their activation scales, which is what makes them cheap to build and to
judge (calibration.selection.SharedSession).
"""

from __future__ import annotations

from collections.abc import Collection
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Literal

import onnx

from calibration.layers import weighted_nodes
from calibration.ranges import TensorRange, TensorRanges
from calibration.selection import Fidelity, HeldOutJudge, SharedSession, best_of
from converters.cpu_rescaling import CpuRescaling
from converters.qdq_cpu import cpu_quantized_nodes
from converters.qdq_rules import check_tensorrt_qdq
from converters.qdq_tensorrt import (
    activation_scales,
    qdq_for_tensorrt,
    quantizable_inputs,
    with_activation_ranges,
)
from converters.weights import parameters_of_their_own
from edge.concurrency import in_background, in_order
from edge.system import usable_cores

Profile = Literal["tensorrt", "cpu"]


class Int8Models:
    """INT8 models of one FP32 model under one profile and one exclusion list, for any ranges.

    The `tensorrt` profile's models differ only in their activation scales: one model is built
    and checked in full (every weight quantized), on a background thread from the moment this
    object exists (it needs no ranges, so the statistics pass hides it); each model asked
    for is a copy of it with its scales set (YOLOv8n: 5 ms instead of 60-110 ms), and
    `shared_session` judges them all through one session. The `cpu` profile's models are
    ONNX Runtime's quantizer's layout with the range-dependent values rewritten
    (`CpuRescaling`: two built, the others rewritten); their scales and zero points are folded
    into ONNX Runtime's int8 kernels, so each is judged in a session of its own."""

    def __init__(self, model: onnx.ModelProto, profile: Profile, exclude: list[str],
                 tensors: Collection[str]) -> None:
        """`tensors`: the activations the profile quantizes (`tensors_to_observe`)."""
        if profile == "cpu":  # its biases are int32 at each conv's own scale
            model = parameters_of_their_own(model)
        self.model, self.profile, self.exclude = model, profile, list(exclude)
        self._template: Future[onnx.ModelProto] | None = None
        self._rescaling: CpuRescaling | None = None
        if profile == "tensorrt":
            placeholder = TensorRanges("template", 0, {name: TensorRange(-1.0, 1.0, 1.0)
                                                       for name in tensors})
            self._template = in_background("qdq-template", self._checked, placeholder)
        else:
            self._rescaling = CpuRescaling(model, self.exclude)

    def __call__(self, ranges: TensorRanges) -> onnx.ModelProto:
        if self._rescaling is not None:
            return self._rescaling(ranges)
        assert self._template is not None
        return with_activation_ranges(self._template.result(), ranges)

    def shared_session(self) -> SharedSession | None:
        """One judging session for all of this quantizer's models (None on the `cpu`
        profile)."""
        if self._template is None:
            return None
        template = self._template
        return SharedSession(template.result,
                             lambda quantized: activation_scales(quantized).values())

    def _checked(self, ranges: TensorRanges) -> onnx.ModelProto:
        quantized = qdq_for_tensorrt(self.model, ranges, self.exclude)
        check_tensorrt_qdq(quantized, "the quantized model")
        return quantized


def quantized_nodes(model: onnx.ModelProto, profile: Profile) -> set[str]:
    """Names of the nodes `profile` quantizes: what `--exclude` can keep in float."""
    if profile == "tensorrt":
        return set(quantizable_inputs(model))
    return cpu_quantized_nodes(model)


def float_layers_by_output_gain(model: onnx.ModelProto, ranges: TensorRanges, judge: HeldOutJudge,
                          excluded: list[str], count: int) -> list[str]:
    """The `count` weighted layers that, each kept in float alone, bring the output closest to
    FP32 on the held-out frames: one INT8 model per layer, judged like the candidates.

    A layer's own SQNR is a poor guide: on a YOLOv8n the six worst by SQNR (all in the
    stride-32 class branch) changed nothing in float, while one 1x1 conv whose input channels
    span maxima of 8 to 176 under one scale took the boxes from 19.8 to 36.2 dB."""
    layers = [node.name for node in weighted_nodes(model) if node.name not in excluded]
    built = ((layer, qdq_for_tensorrt(model, ranges, [*excluded, layer])) for layer in layers)

    def judged(candidate: tuple[str, onnx.ModelProto]) -> Fidelity:
        layer, quantized = candidate
        return judge.fidelity(layer, quantized, 1)

    with ThreadPoolExecutor(usable_cores(), thread_name_prefix="keep-float") as pool:
        # models are built on this thread, at most two per core ahead of judging (memory)
        left = list(in_order(pool, judged, built, 2 * usable_cores()))
    kept: list[str] = []
    while left and len(kept) < count:  # best first, by the rule that picks range methods
        best = best_of(left)
        left.remove(best)
        kept.append(best.method)
    return kept

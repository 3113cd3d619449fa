"""`edge calibrate`'s orchestration: a converted FP32 model + calibration frames -> INT8 artifacts.

frames -> streaming statistics -> ranges (every method, each judged on held-out frames) -> QDQ
model for the chosen profile (`tensorrt`: TensorRT's rules, validated; `cpu`: fastest on ONNX
Runtime) and optionally a TensorRT calibration cache and the ranges as JSON.
"""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import onnx

from calibration.fidelity import layer_sqnr
from calibration.latency import LatencyComparison, compare_cpu_latency
from calibration.layers import WEIGHTED_OPS, weighted_nodes
from calibration.observing import Feed
from calibration.ranges import METHODS, TensorRanges, range_method
from calibration.readers import FrameSet, Prefetched
from calibration.result import Calibrated
from calibration.selection import (
    MAX_HELD_OUT,
    Fidelity,
    HeldOutJudge,
    SharedSession,
    all_flat,
    best_of,
    clear_loss,
    far_from_fp32,
    fp32_capped,
    fp32_flat,
    held_out_count,
    held_out_every,
    kept_float_loss,
    needs_refinement,
    refined_tensors,
    thin_agreement,
    unmeasured_agreement,
)
from calibration.stats import StatsCollector, TensorStats, float_tensors
from converters.int8_models import (
    Int8Models,
    Profile,
    float_layers_by_output_gain,
    quantized_nodes,
)
from converters.metadata import onnx_with_spec
from converters.model_report import quantization_summary
from converters.onnx_source import opset_of
from converters.qdq_cpu import float_narrow_convs, float_stem, unfolded_batchnorms
from converters.qdq_tensorrt import (
    check_exclusions,
    decode_tail_tensors,
    head_outputs,
    kept_float_tensors,
    quantizable_inputs,
)
from edge.errors import InputError, ModelError
from edge.opsets import MIN_OPSET
from edge.spec import ModelSpec, read_onnx_model, spec_from_model
from edge.wording import counted

log = logging.getLogger(__name__)

#: Letterboxed calibration frames decoded ahead of the statistics pass, at most: enough to
#: keep the decoders busy while the statistics session and the INT8 template are made
#: (0.1-0.15 s of one core on a YOLOv8n, 15-20 frames), 10 MB at 320x320.
FRAMES_AHEAD = 32


@dataclass(frozen=True)
class CalibrateOptions:
    profile: Profile = "tensorrt"
    method: str = "auto"  # or one of calibration.ranges.METHODS
    percentile: float = 99.99
    exclude: tuple[str, ...] = ()
    keep_float: int = 0  # automatically keep this many worst layers (by SQNR) in float
    with_cache: bool = False  # collect every float tensor, as a TensorRT cache needs
    threads: int = 0
    progress: bool = True
    compare: bool = True  # judge every method on held-out frames (auto always does)
    #: The labelled data the report scores both models on (its split), which the warnings
    #: then point to instead of asking for a check on labelled images.
    labelled_data: str | None = None

    @property
    def int8_kernels(self) -> bool:
        """Whether INT8 models are scored through ONNX Runtime's int8 kernels (`cpu`, as they
        run there) rather than as their QDQ graph computes (`tensorrt`)."""
        return self.profile == "cpu"



def load_float_model(path: Path) -> tuple[onnx.ModelProto, ModelSpec]:
    """The FP32 model `edge convert` wrote at `path`, and its spec."""
    model = read_onnx_model(path, external_data=True)
    spec = spec_from_model(model, str(path))
    if quantization_summary(model)["quantized"]:
        raise ModelError(f"{path} is already quantized; calibrate the FP32 model it came from")
    if opset_of(model) < MIN_OPSET:
        raise ModelError(f"{path} uses ONNX opset {opset_of(model)}; INT8's per-channel "
                         f"weights need opset {MIN_OPSET}: convert it again with `edge "
                         f"convert` (its default opset, or --opset {MIN_OPSET} or later)")
    return model, spec


def tensors_to_observe(model: onnx.ModelProto, options: CalibrateOptions) -> list[str]:
    """Only what the outputs need: the TensorRT profile needs the inputs it quantizes; the CPU
    profile and a calibration cache need every float activation."""
    if options.profile == "cpu" or options.with_cache:
        return float_tensors(model)
    plan = quantizable_inputs(model)
    wanted = {node.input[i] for node in model.graph.node for i in plan.get(node.name, [])}
    return [name for name in float_tensors(model) if name in wanted]


def _progress(items: Iterable[Any], total: int, enabled: bool) -> Iterator[Any]:
    """`items`, with a progress bar on a terminal (in a log or a pipe, its redraws would be
    a flood of carriage returns)."""
    if not (enabled and sys.stderr.isatty()):
        yield from items
        return
    try:
        from tqdm import tqdm  # noqa: PLC0415 - optional progress bar
    except ImportError:
        yield from items
        return
    yield from tqdm(items, total=total, desc="calibrating", unit="frame", leave=False)


def calibrate(model: onnx.ModelProto, spec: ModelSpec, frames: FrameSet,
              options: CalibrateOptions) -> Calibrated:
    """Statistics on the calibration frames, then one INT8 model per range method judged on the
    frames held back (calibration.selection): `auto` keeps the best, an explicit method is kept
    but warned about when it loses clearly."""
    phases = _Phases()
    check_options(model, options)
    held_out: list[Feed] = []
    judging = options.method == "auto" or options.compare
    every = held_out_every(frames.count)
    feeds = _holding_out(frames.inputs(spec), held_out, every) if judging else frames.inputs(spec)
    holding = held_out_count(frames.count) if judging else 0
    log.info("calibrating on %d frames%s (%s profile, method %s): %d for the statistics%s",
             frames.count, f", {frames.picked_from}" if frames.picked_from else "",
             options.profile, options.method,
             frames.count - holding,
             f", {holding} held out to judge the range methods" if holding else "")
    # frames are decoded from here on, while the models and sessions below are made
    with Prefetched(feeds, FRAMES_AHEAD) as ready:
        tensors = tensors_to_observe(model, options)
        excluded = _effective_exclusions(model, options)
        quantize = Int8Models(model, options.profile, excluded, tensors)
        shared = quantize.shared_session() if judging else None
        stats, counted = _statistics(model, tensors, options, frames.count - holding,
                                     _progress(ready, frames.count - holding, options.progress))
    phases.lap("statistics")
    warning = _with_warning(None, f"{counted} calibration frames are too few to hold every "
                            f"{every}th back and compare range methods; using mse"
                            if options.method == "auto" and not held_out else None)
    chosen = "mse" if options.method == "auto" else options.method
    candidates = _Candidates(stats, counted, options.percentile, head_outputs(model))
    comparison: list[Fidelity] = []
    judge = None
    if held_out:
        judge = HeldOutJudge(model, spec, held_out, int8_kernels=options.int8_kernels)
        chosen, models, comparison, warning = _judged(
            model, spec.task, judge, held_out, candidates, quantize, shared, options,
            frames.sampled_from)
        phases.lap("ranges_and_judging")
    else:
        candidates.add(chosen)
        phases.lap("ranges")
        models = {chosen: quantize(candidates[chosen])}
        phases.lap("quantize")
    ranges, quantized = candidates[chosen], models[chosen]
    written = None
    if options.keep_float:
        excluded += _kept_float(model, quantized, ranges, judge, excluded,
                                held_out or frames.inputs(spec), options)
        quantized = Int8Models(model, options.profile, excluded, tensors)(ranges)
        if judge is not None:  # did it help? judged like the candidates
            written = judge.fidelity(f"{chosen}, {len(excluded)} float", quantized)
            warning = _with_warning(warning, _kept_float_loss(written, comparison, chosen,
                                                              options, spec.task))
        phases.lap("keep_float")
    if comparison:
        warning = _with_warning(warning, far_from_fp32(
            [*comparison, *([written] if written else [])], spec.task, options.profile,
            kept_float=bool(options.keep_float), labelled=options.labelled_data, said=warning,
            written=written or next(f for f in comparison if f.method == chosen)))
    if not quantization_summary(quantized).get("quantized_weights"):
        stem = ("; the cpu profile keeps a 3-channel stem conv float where ONNX Runtime's int8 "
                "kernel would be slower" if options.profile == "cpu" else "")
        raise InputError(_nothing_quantized(options, excluded) + stem)
    latency = None
    if options.int8_kernels:  # the cpu profile is for speed: say when it brings none here
        latency = _cpu_latency(model, quantized, held_out[0] if held_out
                               else next(frames.inputs(spec)))
        phases.lap("latency")
    recorded = "int8-qdq" if options.profile == "tensorrt" else "int8-qdq-cpu"
    quantized = onnx_with_spec(quantized, spec.model_copy(update={"quantization": recorded}))
    return Calibrated(quantized, ranges, stats, excluded, phases.total, counted,
                      comparison, warning, written, phases, options.method,
                      decode_tail_tensors(model), options.profile, held_out, latency,
                      sorted(unfolded_batchnorms(model)) if options.profile == "cpu" else [],
                      _float_stem(quantized, excluded, options.profile),
                      float_narrow_convs(model, quantized, excluded)
                      if options.profile == "cpu" else [],
                      excluded_tensors=kept_float_tensors(model, excluded))


def _float_stem(quantized: onnx.ModelProto, excluded: list[str], profile: str) -> str | None:
    stem = float_stem(quantized) if profile == "cpu" else None
    return stem if stem not in excluded else None


def _kept_float_loss(written: Fidelity, comparison: list[Fidelity], chosen: str,
                     options: CalibrateOptions, task: str) -> str | None:
    without = next(fidelity for fidelity in comparison if fidelity.method == chosen)
    return kept_float_loss(written, without, options.keep_float, options.profile, task)


def _with_warning(warning: str | None, more: str | None) -> str | None:
    """`more` logged and added to the run's `warning` (the summary's, one string)."""
    if more is None:
        return warning
    log.warning("%s", more)
    return f"{warning}; {more}" if warning else more


def _statistics(model: onnx.ModelProto, tensors: list[str], options: CalibrateOptions,
                count: int, frames: Iterable[Feed]) -> tuple[dict[str, TensorStats], int]:
    """(the statistics of `tensors` over `frames`, `count` of them expected; how many there
    were). The statistics session goes when this returns, and with it ONNX Runtime's arena for
    the observed activations (every float tensor of an 800x608 PP-PicoDet, two frames in
    flight: 2 GB), before any candidate is judged."""
    collector = StatsCollector(model, tensors, options.threads, count)
    return collector.collect(frames), collector.frames


def _cpu_latency(model: onnx.ModelProto, quantized: onnx.ModelProto, feed: Feed
                 ) -> LatencyComparison:
    """`quantized` against FP32 `model` on this CPU, with a warning when it is not faster."""
    latency = compare_cpu_latency(model, quantized, feed)
    slower = latency.slower_warning()
    if slower is not None:
        log.warning("%s", slower)
    return latency


def _nothing_quantized(options: CalibrateOptions, excluded: list[str]) -> str:
    kept = f" with {', '.join(excluded)} kept float" if excluded else ""
    return (f"nothing would be quantized: the {options.profile} profile leaves no weighted "
            f"layer (Conv, Gemm, MatMul) of this model in INT8{kept}, so the output would be "
            "the FP32 model labelled INT8; keep fewer layers float (--exclude, --keep-float), "
            "try the other --profile, or use the FP32 model as it is")


def _effective_exclusions(model: onnx.ModelProto, options: CalibrateOptions) -> list[str]:
    """`--exclude` less the nodes the profile does not quantize anyway (said once, so the
    report's "kept float" lists only what the option changed)."""
    quantized = quantized_nodes(model, options.profile)
    named = list(dict.fromkeys(options.exclude))  # each once, however often it was given
    ignored = [name for name in named if name not in quantized]
    if ignored:
        log.warning("--exclude %s: not quantized under the %s profile anyway; nothing to keep in "
                    "float there", ", ".join(ignored), options.profile)
    return [name for name in named if name in quantized]


def _kept_float(model: onnx.ModelProto, quantized: onnx.ModelProto, ranges: TensorRanges,
                judge: HeldOutJudge | None, excluded: list[str], frames: Iterable[Feed],
                options: CalibrateOptions) -> list[str]:
    """The `--keep-float` layers beyond `excluded`: on the `tensorrt` profile with held-out
    frames, those whose float alone brings the output closest to FP32; otherwise the lowest
    layer SQNR of `quantized` (on the first 8 of `frames`)."""
    if judge is not None and options.profile == "tensorrt":
        picked = float_layers_by_output_gain(model, ranges, judge, excluded, options.keep_float)
        rule = "largest gain on held-out frames"
    else:
        sqnr = layer_sqnr(model, quantized, frames, limit=8, int8_kernels=options.int8_kernels)
        int8 = _int8_layers(quantized)  # not a stem the profile keeps float anyway
        worst = sorted((value, name) for name, value in sqnr.items()
                       if name not in excluded and name in int8)
        picked = [name for _, name in worst[:options.keep_float]]
        rule = "worst layer SQNR"
        if len(picked) < options.keep_float:
            log.warning("--keep-float %d: the layer SQNR of only %d int8 layer(s) could be "
                        "measured (a layer the profile rewrites, such as the pixel stem, has "
                        "no FP32 output to compare); keeping those", options.keep_float,
                        len(picked))
    log.info("--keep-float %d keeps in float (%s): %s", options.keep_float, rule,
             ", ".join(picked))
    return picked


def _int8_layers(quantized: onnx.ModelProto) -> set[str]:
    """The weighted layers of `quantized` that read int8 weights (a DequantizeLinear's)."""
    dequantized = {n.output[0] for n in quantized.graph.node if n.op_type == "DequantizeLinear"}
    return {n.name for n in quantized.graph.node
            if n.op_type in WEIGHTED_OPS and len(n.input) > 1 and n.input[1] in dequantized}


def check_options(model: onnx.ModelProto, options: CalibrateOptions) -> None:
    """Refuse what `calibrate` would only trip over after the statistics pass: an unknown
    method, a percentile out of range, --exclude naming nodes the model lacks, --keep-float
    leaving nothing in INT8."""
    if options.method != "auto":
        range_method(options.method, options.percentile)
    range_method("percentile", options.percentile)  # `auto` and the comparison use it too
    check_exclusions(model, options.exclude)
    _check_keep_float(model, options)


def _check_keep_float(model: onnx.ModelProto, options: CalibrateOptions) -> None:
    """Some weighted layer the profile quantizes must stay INT8 after --exclude and
    --keep-float."""
    quantizable = quantized_nodes(model, options.profile)
    layers = [n for n in weighted_nodes(model) if n.name in quantizable]
    if layers and all(n.name in options.exclude for n in layers):
        raise InputError(_nothing_quantized(options, [n.name for n in layers]))
    layers = [n for n in layers if n.name not in options.exclude]
    if options.keep_float >= len(layers) > 0:
        left = " not in --exclude" if options.exclude else ""
        raise InputError(f"--keep-float {options.keep_float} would keep all {len(layers)} "
                         f"weighted layers{left} in float and leave nothing in INT8; pass at "
                         f"most {len(layers) - 1}")


class _Phases(dict[str, float]):
    """Seconds of each phase of a calibration, in order, from a running clock."""

    def __init__(self) -> None:
        super().__init__()
        self._started = self._last = time.perf_counter()

    def lap(self, name: str) -> None:
        now = time.perf_counter()
        self[name] = now - self._last
        self._last = now

    @property
    def total(self) -> float:
        return time.perf_counter() - self._started


class _Candidates(dict[str, TensorRanges]):
    """Range methods' ranges by method name, each made from the statistics when added."""

    def __init__(self, stats: dict[str, TensorStats], frames: int, percentile: float,
                 full_range: frozenset[str]) -> None:
        """`full_range`: the tensors every method gives their whole range (`head_outputs`)."""
        super().__init__()
        self._stats, self._frames, self._percentile = stats, frames, percentile
        self._full_range = full_range

    def add(self, method: str) -> TensorRanges:
        self[method] = TensorRanges.from_stats(self._stats, range_method(method, self._percentile),
                                               self._frames, self._full_range)
        return self[method]


def _judged(model: onnx.ModelProto, task: str, judge: HeldOutJudge, held_out: list[Feed],
            candidates: _Candidates, quantize: Int8Models, shared: SharedSession | None,
            options: CalibrateOptions, folder_images: int | None
            ) -> tuple[str, dict[str, onnx.ModelProto], list[Fidelity], str | None]:
    """Every method's INT8 model judged on the held-out frames, each method's ranges and model
    made while the ones before it are judged: the method to keep, the models by method, the
    comparison and what to warn about (`_chosen`)."""
    judged = judge.judged(METHODS, lambda method: quantize(candidates.add(method)), shared)
    models = {name: quantized for name, (quantized, _) in judged.items()}
    comparison = [fidelity for _, fidelity in judged.values()]
    best = best_of(comparison)
    if options.method == "auto" and needs_refinement(best):
        _refine(model, candidates, models, best.method, comparison, judge, held_out, quantize,
                shared)
    chosen, warning = _chosen(options.method, comparison, task, folder_images,  # mixes too
                              options.labelled_data)
    return chosen, models, comparison, warning


def _chosen(requested: str, comparison: list[Fidelity], task: str,
            folder_images: int | None = None, labelled: str | None = None
            ) -> tuple[str, str | None]:
    """The method to keep and what the user should be warned about (logged): an explicit method
    that loses clearly, or held-out frames too poor to measure agreement on. `folder_images`:
    how many images the folder held where --max-images picked fewer; `labelled`: the data
    the report scores on (`labelled_check`)."""
    best = best_of(comparison)
    if requested == "auto":
        log.info("range method %s chosen on %s", best.method,
                 counted(best.frames, "held-out frame"))
        chosen = best
    else:
        chosen = next(f for f in comparison if f.method == requested)
    warnings = [w for w in (fp32_flat(comparison), fp32_capped(comparison),
                            clear_loss(chosen, best, task), all_flat(comparison),
                            unmeasured_agreement(chosen, task, requested, folder_images,
                                                 labelled),
                            thin_agreement(chosen, task, labelled)) if w]
    for warning in warnings:
        log.warning("%s", warning)
    return chosen.method, "; ".join(warnings) or None


def _refine(model: onnx.ModelProto, candidates: dict[str, TensorRanges],
            models: dict[str, onnx.ModelProto], best: str, comparison: list[Fidelity],
            judge: HeldOutJudge, held_out: list[Feed], quantize: Int8Models,
            shared: SharedSession | None) -> None:
    """Per tensor where it helps: the best method's ranges with another method's on the inputs
    of the layers that suffer most; each mix joins `candidates`, `models` and `comparison`."""
    sensitivity = layer_sqnr(model, models[best], held_out, limit=len(held_out),
                             int8_kernels=judge.int8_kernels)
    tensors = refined_tensors(model, sensitivity, candidates[best].ranges)
    mixes = [candidates[best].with_ranges_of(candidates[other], tensors)
             for other in METHODS if other != best and other in candidates]
    candidates.update({mixed.method: mixed for mixed in mixes})
    judged = judge.judged([mixed.method for mixed in mixes],
                          lambda name: quantize(candidates[name]), shared)
    for name, (quantized, fidelity) in judged.items():
        models[name] = quantized
        comparison.append(fidelity)
    log.info("per-tensor refinement on %s: %s best", ", ".join(tensors),
             best_of(comparison).method)


def _holding_out(feeds: Iterable[Feed], held_out: list[Feed], every: int) -> Iterator[Feed]:
    """`feeds` less every `every`-th one (up to `MAX_HELD_OUT`), which goes to `held_out`
    instead (each feed owns its buffer, so keeping it is safe)."""
    for index, feed in enumerate(feeds):
        if index % every == every - 1 and len(held_out) < MAX_HELD_OUT:
            held_out.append(feed)
        else:
            yield feed

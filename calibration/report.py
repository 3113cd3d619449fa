"""FP32-vs-INT8 accuracy report: Markdown index plus PNG plots."""

from __future__ import annotations

import math
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import numpy as np
import numpy.typing as npt
import onnx

from calibration.datasets import dataset_from, scored_images
from calibration.evaluate import (
    Accuracy,
    evaluate_models,
    scene_frames,
    top1_agreement,
    unreadable_images,
    unscored_labels,
    with_unreadable,
)
from calibration.fidelity import layer_sqnr, output_sqnr
from calibration.plotting import pyplot
from calibration.readers import FrameSet, frames_from
from calibration.result import Calibrated
from calibration.stats import TensorStats
from edge.files import files_shown
from edge.sources.uri import SourceUri
from edge.spec import ModelSpec
from edge.wording import counted

#: The first line of `index.md`: what tells an earlier report, to write over, from other files.
REPORT_HEADING = "# INT8 calibration report"
WORST_LAYERS = 5
#: INT8 this many points of top-1 or mAP@0.5 below FP32 on the report's data is warned about.
ACCURACY_LOSS_POINTS = 2.0
#: ... and this many points of a detector's precision or recall at its score threshold (one
#: operating point, coarser than mAP on a small set): mAP ranks scores and holds when INT8
#: lowers every score, while the device, which publishes only what passes the threshold,
#: loses the objects.
OPERATING_POINT_LOSS_POINTS = 5.0
#: A classifier's INT8 model that gives FP32's top-1 answer on fewer of the labelled images
#: than this is warned about, whatever its accuracy (answers changed both ways cancel out).
TOP1_AGREEMENT_FLOOR = 0.95
#: The plots a report writes into its folder besides its index.md.
_PLOT_NAME = re.compile(r"(?:hist_\d+|class_ap)\.png")
#: The files a report may write beside its index.md (at most one histogram a worst layer).
REPORT_PLOTS = ("class_ap.png", *(f"hist_{i}.png" for i in range(WORST_LAYERS)))
#: Calibration frames the written model's output and layer SQNR are measured on where none
#: were held out (else on the held-out frames, as the range methods were judged).
OUTPUT_SQNR_FRAMES = 8
#: A synthetic:// calibration scene's report scores the scene of this seed more.
UNSEEN_SEED_OFFSET = 10_000
HISTOGRAM_BASELINE = 0.5  # counts: under one, so an empty bin shows as none on a log axis
#: Bins a histogram plot shows at most: about one per pixel column of its 770-pixel-wide
#: figure. The statistics' 16 k fine bins as one outline made a 33 k-vertex path that
#: matplotlib took 1.6 s a plot to lay out and save (0.23 s at 512 bins, fixed margins).
PLOTTED_BINS = 512
#: How each profile's INT8 model is scored (`calibration.evaluate.evaluate_models`).
PROFILE_SCORING = {
    "tensorrt": "as TensorRT computes it (its Q/DQ in float, the same on every CPU)",
    "cpu": "through ONNX Runtime's int8 kernels on this CPU, as it runs there",
}


def earlier_report_files(folder: Path) -> tuple[str, ...]:
    """The files an earlier report in `folder` wrote: its index.md and the plots it shows,
    which a rewritten report replaces or removes; files of the same look that it does not
    show are the user's, and kept (a user check: a `hist_9.png` of theirs was deleted)."""
    index = folder / "index.md"
    try:
        text = index.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return ("index.md",)
    return ("index.md", *(name for name in files_shown(text) if _PLOT_NAME.fullmatch(name)))


@dataclass(frozen=True)
class Report:
    """A written report: its index, and both models' accuracy on the data it names."""

    index: Path
    evaluated_on: str
    fp32: Accuracy
    int8: Accuracy

    def summary(self) -> dict[str, Any]:
        """The accuracies for `edge calibrate --json`."""
        summary: dict[str, Any] = {"evaluated_on": self.evaluated_on,
                                   "fp32": self.fp32.as_dict(),
                                   "int8": self.int8.as_dict()}
        agreement = top1_agreement(self.fp32, self.int8)
        if agreement is not None:  # a user check: the report gave it, --json did not
            summary["top1_agreement"] = round(agreement, 4)
        return summary

    def accuracy_lost(self) -> str | None:
        """A warning when INT8 scores more than `ACCURACY_LOSS_POINTS` below FP32 on the
        labelled data (top-1, or a detector's mAP@0.5), or a detector's precision or recall at
        its score threshold more than `OPERATING_POINT_LOSS_POINTS` below: written in the
        report's table only, a model that lost 68 points reached the terminal as "report:
        R/index.md", and one whose recall at the threshold fell from 1.00 to 0.25 with mAP
        unchanged was not warned about at all."""
        objects, detections = self.int8.objects, self.int8.detections
        losses = [_loss(metric, fp32, int8, limit, of) for metric, fp32, int8, limit, of in (
            [("top-1", self.fp32.top1, self.int8.top1,
              _beyond_one(ACCURACY_LOSS_POINTS, self.int8.images), None)]
            if self.fp32.task == "classify" else
            [("mAP@0.5", self.fp32.map50, self.int8.map50, ACCURACY_LOSS_POINTS, None),
             ("recall (at the model's score threshold)", self.fp32.recall, self.int8.recall,
              _beyond_one(OPERATING_POINT_LOSS_POINTS, objects),
              None if objects is None else counted(objects, "labelled object")),
             ("precision (at the model's score threshold)", self.fp32.precision,
              self.int8.precision, _beyond_one(OPERATING_POINT_LOSS_POINTS, detections),
              None if detections is None else f"INT8's {counted(detections, 'detection')}")])]
        said = [loss for loss in losses if loss is not None]
        changed = self._answers_changed()
        if not said and changed is None:
            return None
        fixes = ("the report names the layers that lose most; calibrate on more frames like the "
                 "deployment's, keep layers in float (--keep-float N, --exclude NODE), try the "
                 "other --profile, or deploy the FP32 model")
        scored = f"{counted(self.int8.images, 'labelled image')} of {self.evaluated_on}"
        lost = [f"INT8 scores {', '.join(said)} on {scored}"] if said else []
        return f"{'; '.join([*lost, *([changed] if changed else [])])}: {fixes}"

    def _answers_changed(self) -> str | None:
        """`INT8 gives FP32's top-1 answer on only 97 of the 120 labelled images of val
        (80.8%: ...)`, for a classifier under `TOP1_AGREEMENT_FLOOR`."""
        agreement = top1_agreement(self.fp32, self.int8)
        if agreement is None or agreement >= TOP1_AGREEMENT_FLOOR:
            return None
        images = len(self.fp32.answers)
        return (f"INT8 gives FP32's top-1 answer on only {round(agreement * images)} of the "
                f"{images} labelled images of {self.evaluated_on} ({100 * agreement:.1f}%: "
                "answers changed both ways, which top-1 alone does not show)")


def _beyond_one(points: float, count: int | None) -> float:
    """`points`, or the points one of `count` images, objects or detections weighs where
    that is more: on a small labelled set one object missed (1 of 10 is 10 points of recall)
    or one image's top class changed (1 of 40 is 2.5 points) is no loss worth a warning."""
    return max(points, 100.0 / count) if count else points


def _loss(metric: str, fp32: float | None, int8: float | None, limit: float,
          of: str | None = None) -> str | None:
    """`metric`'s loss from FP32 to INT8 in words, if it is more than `limit` points; `of`:
    what INT8's figure is a share of (`12 labelled objects`)."""
    if fp32 is None or int8 is None or 100 * (fp32 - int8) <= limit + 1e-9:
        return None
    counts = "" if of is None else f"; of {of}"
    return (f"{metric} {int8:.3f} against FP32's {fp32:.3f} "
            f"({100 * (int8 - fp32):.1f} points{counts})")


def write_report(folder: Path, fp32_path: Path, int8_path: Path, result: Calibrated,
                 spec: ModelSpec, eval_data: Path | str, frames: FrameSet) -> Report:
    """Evaluate both models, plot, and write `folder/index.md`."""
    folder.mkdir(parents=True, exist_ok=True)
    fp32, int8, evaluated_on = _accuracies(fp32_path, int8_path, spec, eval_data)
    reference = onnx.load(str(fp32_path), format="protobuf")
    measured_on = result.held_out or list(_first(frames, spec, OUTPUT_SQNR_FRAMES))
    sqnr_outputs = output_sqnr(reference, result.model, measured_on, spec, result.int8_kernels)
    sqnr_layers = layer_sqnr(reference, result.model, measured_on, limit=len(measured_on),
                             int8_kernels=result.int8_kernels)
    kept_float = set(result.kept_float)  # listed apart
    quantized = {name: value for name, value in sqnr_layers.items() if name not in kept_float}
    worst = sorted(quantized.items(), key=lambda item: item[1])[:WORST_LAYERS]
    inputs_of = {n.name: n.input[0] for n in reference.graph.node if n.input}
    plots = _plot_histograms(folder, [(name, inputs_of[name]) for name, _ in worst], result)
    bars = _plot_class_ap(folder, fp32, int8) if fp32.task == "detect" else None
    report = Report(folder / "index.md", evaluated_on, fp32, int8)
    report.index.write_text(_markdown(fp32, int8, sqnr_outputs, worst, plots, bars, result,
                                      evaluated_on, report.accuracy_lost()))
    return report


def _accuracies(fp32_path: Path, int8_path: Path, spec: ModelSpec,
                eval_data: Path | str) -> tuple[Accuracy, Accuracy, str]:
    """Both models' accuracy on `eval_data`, and what was scored: the data, or the split of a
    YOLO dataset that was chosen (`data/images/val`, not the training images beside it)."""
    if str(eval_data).startswith("synthetic://"):
        fp32, int8 = evaluate_models([fp32_path, int8_path], scene_frames(str(eval_data)))
        return fp32, int8, str(eval_data)
    dataset = dataset_from(Path(eval_data), spec.labels, spec.task)
    fp32, int8 = evaluate_models([fp32_path, int8_path], dataset.images())
    return (with_unreadable(fp32, dataset), with_unreadable(int8, dataset),
            str(scored_images(Path(eval_data), spec.task)))


def evaluation_data(images: Path | str) -> Path | str:
    """What a report scores on without --eval-data: the calibration `images`, or for a
    synthetic:// scene one calibration never saw, its seed + 10 000, as the URI `edge eval
    --data` takes to score it again."""
    if not str(images).startswith("synthetic://"):
        return images
    uri = SourceUri.parse(str(images))
    seed = frames_from(str(images)).synthetic_seed or 0
    options = {**uri.options, "seed": str(seed + UNSEEN_SEED_OFFSET)}
    return f"synthetic://{uri.location}?{urlencode(options)}"


def _first(frames: FrameSet, spec: ModelSpec,
           count: int) -> Iterator[dict[str, npt.NDArray[np.uint8]]]:
    for index, feed in enumerate(frames.inputs(spec)):
        if index >= count:
            return
        yield feed


def _plot_histograms(folder: Path, layers: list[tuple[str, str]],
                     result: Calibrated) -> list[tuple[str, str]]:
    plt = pyplot("the calibration report")
    written: list[tuple[str, str]] = []  # (file, the layer whose input it shows)
    for node, tensor in layers:
        stats: TensorStats | None = result.stats.get(tensor)
        if stats is None or stats.range == 0:
            continue
        counts, width = plotted_bins(stats)
        edges = np.arange(len(counts) + 1) * width
        figure, axis = plt.subplots(figsize=(7, 3.2))
        # empty bins sit at the baseline, below one count on the log scale
        axis.stairs(np.maximum(counts, HISTOGRAM_BASELINE), edges, fill=True,
                    baseline=HISTOGRAM_BASELINE, color="#4477aa")
        axis.set_yscale("log")
        axis.set_ylim(HISTOGRAM_BASELINE, max(float(counts.max()), 1.0) * 2)
        amax = result.ranges.ranges[tensor].amax
        axis.axvline(amax, color="#cc3311", label=f"{result.ranges.method} amax {amax:.3g}")
        axis.axvline(stats.abs_max, color="#999999", linestyle="--",
                     label=f"max |x| {stats.abs_max:.3g}")
        axis.set_xlim(0, stats.abs_max * 1.05)
        axis.set_title(f"|x| at the input of {node}", fontsize=9)
        axis.set_ylabel(f"sampled values per {width:.3g}", fontsize=8)
        axis.legend(fontsize=8, loc="upper right")  # "best" searched 16 s over the outline
        name = f"hist_{len(written)}.png"
        # fixed margins: tight_layout draws the figure once more to measure it (0.1 s a plot)
        figure.subplots_adjust(left=0.1, right=0.98, bottom=0.1, top=0.91)
        figure.savefig(folder / name, dpi=110)
        plt.close(figure)
        written.append((name, node))
    return written


def plotted_bins(stats: TensorStats) -> tuple[npt.NDArray[np.int64], float]:
    """(counts, bin width) of `stats`' |x| histogram over [0, max |x|] in at most
    `PLOTTED_BINS` bins, each the sum of whole fine bins (the fine bins past max |x|, left by
    the range's doublings, are empty and not shown)."""
    used = min(len(stats.histogram), math.floor(stats.abs_max / stats.bin_width) + 1)
    merged = math.ceil(used / PLOTTED_BINS)
    fine = np.zeros(math.ceil(used / merged) * merged, np.int64)
    fine[:used] = stats.histogram[:used]
    return fine.reshape(-1, merged).sum(axis=1), merged * stats.bin_width


def _plot_class_ap(folder: Path, fp32: Accuracy, int8: Accuracy) -> str:
    plt = pyplot("the calibration report")
    labels = list(fp32.per_class_ap50)
    x = np.arange(len(labels))
    figure, axis = plt.subplots(figsize=(max(5, len(labels) * 0.8), 3.2))
    for offset, accuracy, name in ((-0.2, fp32, "FP32"), (0.2, int8, "INT8")):
        bars = axis.bar(x + offset, [accuracy.per_class_ap50.get(k, 0.0) for k in labels], 0.4,
                        label=name)
        # the values, since INT8 often differs from FP32 by less than a bar's outline
        axis.bar_label(bars, fmt="%.3f", fontsize=7, rotation=90, padding=2)
    axis.set_xticks(x, labels, rotation=30, ha="right")
    axis.set_ylim(0, 1.2)  # room for the values above the bars
    axis.set_yticks(np.linspace(0, 1, 6))
    axis.set_ylabel("AP@0.5")
    # above the axes: APs near 1.0 fill the plot to its top, where a legend inside would sit
    axis.legend(loc="lower center", bbox_to_anchor=(0.5, 1.0), ncol=2, frameon=False)
    figure.tight_layout()
    figure.savefig(folder / "class_ap.png", dpi=110)
    plt.close(figure)
    return "class_ap.png"


def _comparison(result: Calibrated) -> list[str]:
    if not result.comparison:
        return []
    lines = ["", f"## Range methods on {counted(result.comparison[0].frames, 'held-out frame')}",
             "",
             "| method | agreement with FP32 | output SQNR (dB; a detector's weaker part) | |",
             "|---|---|---|---|"]
    written = [result.written] if result.written else []
    lines += [f"| {f.method} | "
              f"{f'{100 * f.agreement:.1f}%' if f.telling else 'not measured'} ({f.behind}) | "
              f"{f.sqnr_db:.1f}"
              f"{''.join(f', {part} {db:.1f}' for part, db in f.parts_db.items())} | "
              f"{result.role(f)} |"
              for f in result.comparison + written]
    if result.warning:
        lines += ["", f"**Warning:** {result.warning}"]
    return lines


def _latency(result: Calibrated) -> list[str]:
    latency = result.cpu_latency
    if latency is None:
        return []
    slower = latency.slower_warning()
    return ["", "## Latency on the calibrating machine's CPU (ONNX Runtime, one thread, one "
            "frame)", "", f"FP32 {latency.fp32_ms:.2f} ms, INT8 {latency.int8_ms:.2f} ms: "
            f"{latency.ratio:.2f}x (median of {latency.runs} runs each)."] + (
        ["", f"**Warning:** {slower}"] if slower else [])


def _markdown(fp32: Accuracy, int8: Accuracy, outputs: dict[str, float],
              worst: list[tuple[str, float]], plots: list[tuple[str, str]], bars: str | None,
              result: Calibrated, eval_data: Path | str, lost: str | None) -> str:
    lines = [REPORT_HEADING, "",
             f"`{result.profile}` profile, method `{result.ranges.method}`, {result.frames} "
             f"calibration frames, {result.tensors_words}, "
             f"{result.seconds:.1f} s. Evaluated on `{eval_data}` ({fp32.images} images); "
             f"INT8 {PROFILE_SCORING[result.profile]}.", ""]
    if fp32.task == "detect":
        lines += ["| | FP32 | INT8 | change |", "|---|---|---|---|"]
        for key in ("map50", "map50_95", "precision", "recall"):
            a, b = getattr(fp32, key), getattr(int8, key)
            lines.append(f"| {key} | {a:.4f} | {b:.4f} | {100 * (b - a):+.2f} pt |")
        lines += ["", f"**Warning:** {lost}"] if lost else []
        lines += ["", "## Per-class AP@0.5", "", "| class | FP32 | INT8 |", "|---|---|---|"]
        lines += [f"| {k} | {v:.4f} | {int8.per_class_ap50.get(k, 0.0):.4f} |"
                  for k, v in fp32.per_class_ap50.items()]
        if fp32.unscored_classes:
            lines += ["", "Not in mAP (no ground-truth objects): "
                      + ", ".join(fp32.unscored_classes)]
        if fp32.unlabelled_classes:
            lines += ["", "Not labelled in the data (their detections not scored, in mAP or "
                      "precision): " + ", ".join(fp32.unlabelled_classes)]
        if bars:
            lines += ["", f"![per-class AP]({bars})"]
    else:
        agreement = top1_agreement(fp32, int8)
        same = (f"; INT8 gives FP32's answer on {round((agreement or 0.0) * fp32.images)} of "
                f"the {fp32.images} images ({100 * (agreement or 0.0):.1f}%)"
                if agreement is not None else "")
        lines += [f"Top-1: FP32 {fp32.top1:.4f}, INT8 {int8.top1:.4f}{same}"]
        lines += ["", f"**Warning:** {lost}"] if lost else []
        lines += ["", "## Per-class top-1", "", "| class | images | FP32 | INT8 | change |",
                  "|---|---|---|---|---|"]
        for label, before in fp32.per_class_top1.items():
            after = int8.per_class_top1.get(label, 0.0)  # both scored on the same images
            lines.append(f"| {label} | {fp32.per_class_images[label]} | {before:.4f} | "
                         f"{after:.4f} | {100 * (after - before):+.2f} pt |")
        if fp32.unscored_classes:
            lines += ["", f"Not scored, no image in the data: {unscored_labels(fp32)}"]
    if fp32.unreadable_images:
        lines += ["", f"Not scored, unreadable: {unreadable_images(fp32)}"]
    lines += _comparison(result) + _latency(result)
    frames = (f"the {counted(len(result.held_out), 'held-out frame')}" if result.held_out else
              f"the first {OUTPUT_SQNR_FRAMES} calibration frames (none were held out)")
    lines += ["", f"## Output SQNR of the written model (dB, higher is better; on {frames}; "
              "a detector's boxes and class scores apart)", ""]
    lines += [f"- `{name}`: {value:.1f}" for name, value in outputs.items()]
    lines += ["", f"## The {len(worst)} INT8 layers with the lowest SQNR (each layer's own "
              "output against FP32's, on the same frames)", ""]
    lines += [f"- `{name}`: {value:.1f} dB" for name, value in worst]
    lines += [""] + [f"![|x| at the input of {node}]({name})" for name, node in plots]
    if result.kept_float:
        lines += ["", "Kept in float: " + ", ".join(f"`{n}`" for n in result.kept_float)]
    return "\n".join(lines) + "\n"

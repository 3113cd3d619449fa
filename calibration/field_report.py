"""The field-accuracy report: Markdown plus a PNG of accuracy over time."""

from __future__ import annotations

import math
from pathlib import Path

from calibration.field import (
    Estimate,
    FieldReport,
    audit_words,
    figure,
    left_out_words,
    unchanged_words,
)
from calibration.plotting import pyplot
from edge.wording import counted

#: The first line of `index.md`: what tells an earlier report, to write over, from other files.
REPORT_HEADING = "# Field accuracy"
#: The files the report writes beside its index.md.
REPORT_PLOTS = ("accuracy_over_time.png",)


def require_plotting() -> None:
    """MissingDependencyError (naming the install command) before any work, when the report
    could not be drawn."""
    pyplot("the field-accuracy report")


def write_field_report(folder: Path, report: FieldReport, source: Path) -> Path:
    """Write `folder/index.md` and `folder/accuracy_over_time.png`; returns the index."""
    folder.mkdir(parents=True, exist_ok=True)
    plot = _plot_over_time(folder, report)
    index = folder / "index.md"
    index.write_text(_markdown(report, source, plot))
    return index


def _plot_over_time(folder: Path, report: FieldReport) -> str:
    plt = pyplot("the field-accuracy report")
    days = list(report.per_day)
    figure, axis = plt.subplots(figsize=(max(5.0, len(days) * 0.9), 3.4))
    # a marker each, largest first and hollow: series of equal value still all show
    for key, colour, marker, size in (("precision", "#4477aa", "o", 10),
                                      ("recall", "#228833", "s", 7),
                                      ("map50", "#cc6677", "^", 5)):
        values = [getattr(report.per_day[d], key) for d in days]
        axis.plot(days, [math.nan if v is None else v for v in values], marker=marker,
                  markersize=size, markerfacecolor="none", markeredgewidth=1.5,
                  color=colour, label=key.replace("map50", "AP@0.5"))
    for key, colour in (("precision", "#4477aa"), ("recall", "#228833")):
        estimate = report.audit.get(key)
        if estimate is not None and days:
            axis.axhspan(estimate.low, estimate.high, color=colour, alpha=0.12,
                         label=f"audit {key} 95 % interval")
    axis.set_ylim(0, 1.02)
    axis.set_ylabel("at the device's threshold")
    axis.tick_params(axis="x", rotation=30)
    axis.legend(fontsize=7, loc="lower left")
    figure.tight_layout()
    figure.savefig(folder / REPORT_PLOTS[0], dpi=110)
    plt.close(figure)
    return REPORT_PLOTS[0]


def _interval(estimate: Estimate) -> str:
    return (f"{figure(estimate.value)} [{estimate.low:.4f}, {estimate.high:.4f}] "
            f"({estimate.successes}/{estimate.trials})")


def _markdown(report: FieldReport, source: Path, plot: str) -> str:
    o = report.overall
    lines = [REPORT_HEADING, "",
             f"Recorded predictions of the deployed model vs corrected labels in `{source}`: "
             f"{report.images} images ({'; '.join(left_out_words(report) or ['none'])} "
             f"left out; {unchanged_words(report)}). "
             "IoU 0.5; AP@0.5 ranks only what the device published (above its threshold).", "",
             "Precision is a share of the detections, recall of the labelled objects.", "",
             "| | precision | recall | AP@0.5 | images | objects | detections |",
             "|---|---|---|---|---|---|---|"]
    lines += [f"| {day} | {figure(s.precision)} | {figure(s.recall)} | {figure(s.map50)} | "
              f"{s.images} | {s.objects} | {s.detections} |"
              for day, s in {"all": o, **report.per_day}.items()]
    lines += ["", f"![accuracy over time]({plot})", "", "## Per class (all days)", "",
              "| class | precision | recall | AP@0.5 | objects | detections |",
              "|---|---|---|---|---|---|"]
    for label, ap in o.per_class_ap50.items():
        lines.append(f"| {label} | {figure(o.per_class_precision[label])} | "
                     f"{figure(o.per_class_recall[label])} | {figure(ap)} | "
                     f"{o.per_class_objects[label]} | {o.per_class_detections[label]} |")
    lines += ["", "## Audit sample (unbiased, Wilson 95 % intervals)", "",
              f"- images: {audit_words(report)}"]
    lines += [f"- {name}: {_interval(estimate)}" for name, estimate in report.audit.items()]
    if report.ratings is not None:
        lines += ["", "## Match/miss ratings", "", f"- precision: {_interval(report.ratings)}"]
        if report.unknown_rated:
            lines.append(f"- skipped {counted(len(report.unknown_rated), 'unknown image id')}: "
                         + ", ".join(f"`{i}`" for i in report.unknown_rated[:20]))
    return "\n".join(lines) + "\n"

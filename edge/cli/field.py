"""`edge eval --field` (recorded predictions vs corrected labels) and `--drift-reference`
(the profile the device's drift monitor compares with), for `edge eval` and `edge calibrate`."""

from __future__ import annotations

import argparse
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from edge.cli.common import parse_path, print_json
from edge.files import StagedOutputs
from edge.wording import counted

if TYPE_CHECKING:  # the command line loads on the client install, which has no numpy
    import numpy as np
    import numpy.typing as npt


def add_eval_arguments(evaluate: argparse.ArgumentParser) -> None:
    evaluate.add_argument("--field", action="store_true",
                          help="field accuracy: --data is a folder written by `edge collect`; "
                               "its recorded predictions are scored against corrected labels")
    evaluate.add_argument("--labels", type=parse_path, metavar="PATH",
                          help="with --field: the corrected labels (a YOLO folder, its label "
                               "files alone, paired by name with --data's images, or COCO JSON "
                               "whose file names are relative to --data; default: the --data "
                               "folder's own labels/)")
    evaluate.add_argument("--ratings", type=parse_path, metavar="CSV",
                          help="with --field: image_id,verdict (match/miss) ratings")
    evaluate.add_argument("--report", type=parse_path, metavar="DIR",
                          help="with --field: write a Markdown + PNG report")
    add_drift_reference_argument(evaluate, "the --data images")


class _PathOrBeside(argparse.Action):
    """`--drift-reference` alone: "" (the profile beside the model); `--drift-reference PATH`:
    PATH. An empty PATH (`--drift-reference=`, an unset shell variable) is refused: it read as
    the option alone, and wrote the profile where it was not asked for."""

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace,
                 values: object, option_string: str | None = None) -> None:
        if values is not None and not str(values).strip():
            raise argparse.ArgumentError(self, "an empty path; name the file to write the "
                                               "profile to, or give the option alone to "
                                               "write <model>.drift.json")
        setattr(namespace, self.dest, "" if values is None else str(values))


def add_drift_reference_argument(parser: argparse.ArgumentParser, frames: str) -> None:
    parser.add_argument("--drift-reference", nargs="?", action=_PathOrBeside, metavar="PATH",
                        help=f"write the model's drift reference profile from {frames} (default "
                             "path: <model>.drift.json, which the daemon finds by itself)")


def cmd_field_eval(args: argparse.Namespace) -> int:
    from calibration.field import (
        AUDIT_DENOMINATORS,
        audit_words,
        counts,
        field_accuracy,
        figure,
        left_out_words,
        unchanged_words,
    )
    from edge.errors import InputError

    if args.drift_reference is not None:
        raise InputError("--drift-reference needs a model run on the images; --field scores "
                         "recorded predictions, so leave one of them out")
    if args.report is not None:
        from calibration.field_report import REPORT_HEADING, REPORT_PLOTS, require_plotting
        from edge.files import require_report_folder

        require_report_folder(args.report, REPORT_HEADING, plots=REPORT_PLOTS)
        require_plotting()
    report = field_accuracy(args.data, args.labels, args.ratings)
    summary = report.as_dict()
    if args.report is not None:
        from calibration.field_report import write_field_report
        from edge.files import write_failures_named

        with write_failures_named([args.report]):
            summary["report"] = str(write_field_report(args.report, report, args.data))
    if args.json:
        print_json(summary)
        return 0
    o = report.overall
    left_out = "".join(f"; {words}, left out" for words in left_out_words(report))
    print(f"field accuracy over {counted(report.images, 'image')}: precision "
          f"{figure(o.precision)}  recall {figure(o.recall)}  AP@0.5 {figure(o.map50)}  "
          f"({counts(o)}{left_out})")
    for label, ap in o.per_class_ap50.items():
        print(f"  {label:12s} precision {figure(o.per_class_precision[label])}  recall "
              f"{figure(o.per_class_recall[label])}  AP@0.5 {figure(ap)}  "
              f"({counts(o, label)})")
    for day, scores in report.per_day.items():
        print(f"  {day}  precision {figure(scores.precision)}  recall "
              f"{figure(scores.recall)}  AP@0.5 {figure(scores.map50)}  "
              f"({counted(scores.images, 'image')}, {counts(scores)})")
    print(f"  pre-annotations: {unchanged_words(report)}")
    print(f"  audit sample: {audit_words(report)}")
    for name, estimate in report.audit.items():
        print(f"  audit sample {name} {figure(estimate.value)} "
              f"[{estimate.low:.4f}, {estimate.high:.4f}] (Wilson 95%; {estimate.successes} of "
              f"{counted(estimate.trials, AUDIT_DENOMINATORS[name])})")
    if report.ratings is not None:
        r = report.ratings
        unknown = counted(len(report.unknown_rated), "unknown image id")
        print(f"  rated precision {figure(r.value)} [{r.low:.4f}, {r.high:.4f}] from "
              f"{counted(r.trials, 'rating')}; {unknown} skipped")
    if args.report is not None:
        print(f"report: {summary['report']}")
    return 0


def write_drift_reference(args: argparse.Namespace, model: Path,
                          images: Iterable[npt.NDArray[np.uint8]], source: str,
                          staged: StagedOutputs | None = None,
                          published: Path | None = None) -> str | None:
    """Write the profile when `--drift-reference` was given; returns its path. With `staged`,
    `model` is the staged copy of `published` and the profile is staged too."""
    if args.drift_reference is None:
        return None
    from calibration.drift_reference import drift_reference_from_images
    from edge.drift import default_reference_path

    named = published or model
    path = Path(args.drift_reference) if args.drift_reference else default_reference_path(named)
    reference = drift_reference_from_images(model, images, source, args.threads, named)
    reference.save(staged.file(path) if staged is not None else path)
    return str(path)


def labelled_images(dataset: Any) -> Iterable[npt.NDArray[np.uint8]]:
    """The images of a `calibration.datasets.Dataset`."""
    for _, image in dataset.images():
        yield image

"""Field accuracy: what the deployed model said (recorded in a collected dataset's manifest)
against what people corrected it to, per class and per day.

The recorded predictions are the device's own, at its operating threshold, so precision and
recall are the field's figures; AP@0.5 ranks only what passed that threshold (a floor of the
model's AP). Frames sampled for `audit` are an unbiased sample of what the camera saw, so their
precision and recall estimate the whole stream: they get Wilson score intervals. Those count
objects, which cluster by frame, so the intervals are somewhat too narrow when frames hold many
related mistakes. Match/miss ratings (one verdict per image) give a precision estimate of their
own, with its interval.
"""

from __future__ import annotations

import csv
import logging
import math
from collections import defaultdict
from dataclasses import asdict, dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np
import numpy.typing as npt

from calibration.datasets import (
    LabelledImage,
    dataset_from,
    label_files_only,
    labels_for_images,
    listed_yolo_images,
)
from calibration.yolo_layout import yolo_layout
from edge.collect.dataset import pre_annotations
from edge.collect.manifest import manifest_rows
from edge.detections import Detections
from edge.errors import InputError
from edge.metrics import DetectionScorer, match_frame
from edge.wording import counted, listed

log = logging.getLogger(__name__)

Z95 = 1.959964
VERDICTS = {"match": True, "correct": True, "yes": True, "1": True, "true": True,
            "miss": False, "wrong": False, "no": False, "0": False, "false": False}
#: What --labels takes, as its errors say.
CORRECTED_LABELS = ("give the corrected labels: a folder of YOLO label files (a .txt per image, "
                    "named as the image), a YOLO dataset or a COCO JSON file")
#: How messages and the README name them.
VERDICT_WORDS = "match or miss; correct/wrong, yes/no, true/false and 1/0 alike"


def wilson(successes: int, trials: int, z: float = Z95) -> tuple[float, float]:
    """Wilson score interval of a binomial proportion (95 % by default); (0, 1) for no trials."""
    if trials == 0:
        return 0.0, 1.0
    p = successes / trials
    denominator = 1 + z * z / trials
    centre = (p + z * z / (2 * trials)) / denominator
    half = z * math.sqrt(p * (1 - p) / trials + z * z / (4 * trials * trials)) / denominator
    return max(0.0, centre - half), min(1.0, centre + half)


@dataclass(frozen=True)
class Estimate:
    value: float | None  # None for 0 trials
    low: float
    high: float
    successes: int
    trials: int

    @classmethod
    def of(cls, successes: int, trials: int) -> Estimate:
        low, high = wilson(successes, trials)
        value = successes / trials if trials else None
        return cls(None if value is None else round(value, 4), round(low, 4), round(high, 4),
                   successes, trials)


#: What each audit estimate is a share of.
AUDIT_DENOMINATORS = {"precision": "detection", "recall": "object"}


@dataclass(frozen=True)
class Scores:
    """Precision and recall at the device's threshold, AP@0.5 over what it published, with
    what each is a share of: `detections` published (precision's denominator) and labelled
    `objects` (recall's; difficult ones left out)."""

    images: int
    precision: float | None  # None where it is a share of nothing (0 detections)
    recall: float | None  # ... of 0 objects
    map50: float | None  # ... where no class has an object
    objects: int
    detections: int
    #: Per class seen (predicted or labelled); None where undefined: precision of a class
    #: never predicted, recall and AP of one never labelled (0/0, not a score of 0).
    per_class_ap50: dict[str, float | None]
    per_class_precision: dict[str, float | None]
    per_class_recall: dict[str, float | None]
    per_class_objects: dict[str, int]
    per_class_detections: dict[str, int]


@dataclass
class FieldReport:
    images: int
    overall: Scores
    per_day: dict[str, Scores]
    audit: dict[str, Estimate] = field(default_factory=dict)
    ratings: Estimate | None = None
    unknown_rated: list[str] = field(default_factory=list)
    unlabelled: int = 0
    #: Listed images no longer in images/ (deleted by hand), left out
    missing_images: int = 0
    #: Scored images whose labels are still the device's pre-annotations, box for box
    unchanged: int = 0
    #: Collected images drawn for the audit, and how many of them were scored (labelled)
    audit_collected: int = 0
    audit_scored: int = 0

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class _Tally:
    """Detection outcomes of a group of frames at IoU 0.5."""

    labels: tuple[str, ...]
    scorer: DetectionScorer = field(init=False)
    true_pos: npt.NDArray[np.int64] = field(init=False)
    false_pos: npt.NDArray[np.int64] = field(init=False)
    ground_truth: npt.NDArray[np.int64] = field(init=False)
    images: int = 0

    def __post_init__(self) -> None:
        classes = len(self.labels)
        self.scorer = DetectionScorer(classes, (0.5,))
        self.true_pos = np.zeros(classes, np.int64)
        self.false_pos = np.zeros(classes, np.int64)
        self.ground_truth = np.zeros(classes, np.int64)

    def add(self, predicted: Detections, truth: LabelledImage) -> None:
        self.scorer.add(predicted, truth.boxes, truth.class_ids, truth.difficult)
        outcome = match_frame(predicted, truth.boxes, truth.class_ids, truth.difficult, 0.5)
        classes = len(self.labels)
        self.true_pos += np.bincount(predicted.class_ids[outcome == 1], minlength=classes)
        self.false_pos += np.bincount(predicted.class_ids[outcome == 0], minlength=classes)
        self.ground_truth += np.bincount(truth.class_ids[~truth.difficult], minlength=classes)
        self.images += 1

    def scores(self) -> Scores:
        ap = self.scorer.average_precision()[:, 0]
        present = ~np.isnan(ap)
        detected = self.true_pos + self.false_pos
        seen = [int(c) for c in np.flatnonzero(present | (detected > 0) | (self.ground_truth > 0))]
        true_pos, detections = int(self.true_pos.sum()), int(detected.sum())
        objects = int(self.ground_truth.sum())
        return Scores(
            self.images, _share(true_pos, detections), _share(true_pos, objects),
            round(float(ap[present].mean()), 4) if present.any() else None, objects, detections,
            {self.labels[c]: round(float(ap[c]), 4) if present[c] else None for c in seen},
            {self.labels[c]: _share(self.true_pos[c], detected[c]) for c in seen},
            {self.labels[c]: _share(self.true_pos[c], self.ground_truth[c]) for c in seen},
            {self.labels[c]: int(self.ground_truth[c]) for c in seen},
            {self.labels[c]: int(detected[c]) for c in seen})


def audit_words(report: FieldReport) -> str:
    """How many collected images the audit drew and how many of those were scored."""
    collected = report.images + report.unlabelled
    if not report.audit_collected:  # said, rather than a line left out (a user check)
        return (f"none of the {collected} collected images (the devices drew none: "
                "[sampling] audit_rate)")
    return (f"{report.audit_collected} of the {collected} collected images, "
            f"{report.audit_scored} of them with labels (scored)")


def left_out_words(report: FieldReport) -> list[str]:
    """The collected images the scores leave out, and why, one phrase each."""
    return [words for count, words in (
        (report.unlabelled, f"{counted(report.unlabelled, 'collected image')} not among the "
                            "corrected labels"),
        (report.missing_images, f"{counted(report.missing_images, 'listed image')} gone from "
                                "images/")) if count]


def unchanged_words(report: FieldReport) -> str:
    """How many scored images still hold the device's own detections as their labels."""
    return (f"{report.unchanged} of the {counted(report.images, 'scored image')} unchanged "
            "(labels as the device detected them: not corrected, or the model was right)")


def counts(scores: Scores, label: str | None = None) -> str:
    """What a line of scores is a share of: "1 object, 2 detections" (of `label`, or all)."""
    objects = scores.objects if label is None else scores.per_class_objects[label]
    detections = scores.detections if label is None else scores.per_class_detections[label]
    return f"{counted(objects, 'object')}, {counted(detections, 'detection')}"


def figure(value: float | None) -> str:
    """A score as the terminal and the report show it: four decimals, `n/a` where undefined."""
    return "n/a" if value is None else f"{value:.4f}"


def _share(part: int, whole: int) -> float | None:
    return round(float(part / whole), 4) if whole else None


def field_accuracy(collected: Path, corrected: Path | None = None,
                   ratings: Path | None = None) -> FieldReport:
    """`collected`: a folder written by `edge collect`; `corrected`: its corrected labels (a
    YOLO folder or COCO JSON; default: `collected` itself, whose labels/ people edited). The
    folder's manifest.jsonl names the folder too."""
    if collected.name == "manifest.jsonl" and collected.is_file():
        collected = collected.parent
    rows = read_manifest(collected)
    if not rows:
        raise InputError(f"{collected / 'manifest.jsonl'} lists no images: nothing was "
                         "collected into it yet (run `edge collect --out` on it), or it was "
                         "emptied (an earlier copy of the file lists them)")
    labels = _labels_of(collected)
    gone = {row["id"] for row in rows if not (collected / row["file"]).is_file()}
    listed = [collected / row["file"] for row in rows if row["id"] not in gone]
    truths = _truths(corrected or collected, labels, collected, listed)
    overall = _Tally(labels)
    per_day: defaultdict[str, _Tally] = defaultdict(lambda: _Tally(labels))
    audit = _Tally(labels)
    unlabelled = missing = unchanged = 0
    for row in rows:
        truth = truths.get(row["id"])
        if truth is None:
            missing += row["id"] in gone
            unlabelled += row["id"] not in gone
            continue
        predicted = detections_from_row(row)
        unchanged += as_pre_annotated(truth, row)
        overall.add(predicted, truth)
        per_day[str(row.get("time", ""))[:10] or "unknown"].add(predicted, truth)
        if "audit" in row.get("reasons", []):
            audit.add(predicted, truth)
    if overall.images == 0:
        raise InputError(f"none of the {len(rows)} images in {collected / 'manifest.jsonl'} has "
                         f"corrected labels in {corrected or collected}")
    report = FieldReport(overall.images, overall.scores(),
                         {day: tally.scores() for day, tally in sorted(per_day.items())},
                         unlabelled=unlabelled, missing_images=missing, unchanged=unchanged,
                         audit_scored=audit.images,
                         audit_collected=sum("audit" in row.get("reasons", [])
                                             and row["id"] not in gone for row in rows))
    if unchanged == overall.images:
        log.warning("all %s scored still hold the device's own detections as their labels: "
                    "if nobody has corrected them yet, these figures score the model against "
                    "itself; correct the labels (labels/, or --labels from a labelling tool) "
                    "first", counted(unchanged, "image"))
    if audit.images:
        tp, fp, gt = (int(a.sum()) for a in (audit.true_pos, audit.false_pos, audit.ground_truth))
        report.audit = {"precision": Estimate.of(tp, tp + fp), "recall": Estimate.of(tp, gt)}
    if ratings is not None:
        report.ratings, report.unknown_rated = rated_precision(ratings, {r["id"] for r in rows})
    return report


def as_pre_annotated(truth: LabelledImage, row: dict[str, Any],
                     tolerance_px: float = 1.0) -> bool:
    """Whether `truth` holds the device's own detections of `row`, as `edge collect` wrote
    them for labelling, to within `tolerance_px`: labels nobody corrected, or an image the
    model got exactly right."""
    expected = pre_annotations(row)
    if len(expected) != len(truth.class_ids):
        return False
    unmatched = list(zip(truth.class_ids.tolist(), truth.boxes, strict=True))
    for class_id, box in expected:
        found = next((i for i, (other_class, other_box) in enumerate(unmatched)
                      if other_class == class_id
                      and float(np.abs(other_box - np.asarray(box)).max()) <= tolerance_px),
                     None)
        if found is None:
            return False
        unmatched.pop(found)
    return True


def read_manifest(collected: Path) -> list[dict[str, Any]]:
    if collected.is_file():
        raise InputError(f"{collected} is a file; field accuracy reads the folder `edge collect` "
                         "wrote (it holds manifest.jsonl, classes.txt and labels/)")
    path = collected / "manifest.jsonl"
    if not collected.exists():
        raise InputError(f"{collected} does not exist; field accuracy reads a folder written "
                         "by `edge collect` (its --out)")
    if not path.is_file():
        raise InputError(f"{collected} has no manifest.jsonl; field accuracy reads a folder "
                         "written by `edge collect`")
    classes = collected / "classes.txt"  # its rows' detections are checked against it
    return manifest_rows(path, _labels_of(collected) if classes.is_file() else None)


def _labels_of(collected: Path) -> tuple[str, ...]:
    classes = collected / "classes.txt"
    if not classes.is_file():
        raise InputError(f"{collected} has no classes.txt; it was not written by `edge collect`")
    return tuple(name for name in classes.read_text().splitlines() if name)


def _truths(corrected: Path, labels: tuple[str, ...], collected: Path, listed: list[Path]
            ) -> dict[str, LabelledImage]:
    """The corrected labels by image id; a COCO file's images, and those of a folder of YOLO
    label files alone, are the collected folder's, wherever the labels are (a labelling
    tool's export is saved anywhere). `listed`: the manifest's images that are there; in the
    collected folder itself only those are read (files put into images/ by hand are no part
    of the dataset, and were warned about as unlabelled images scored as empty)."""
    if corrected != collected and not corrected.exists():
        raise InputError(f"--labels {corrected} does not exist; {CORRECTED_LABELS}")
    label_files = label_files_only(corrected) if corrected != collected else None
    if label_files is None and corrected.is_dir() and yolo_layout(corrected) is None:
        raise InputError(f"--labels {corrected} holds no label files; {CORRECTED_LABELS}")
    if label_files is not None:
        dataset = labels_for_images(collected / "images", label_files, labels)
    elif corrected == collected and yolo_layout(collected) is not None:
        dataset = listed_yolo_images(collected, labels, listed)
    else:
        dataset = dataset_from(corrected, labels, "detect", images_root=collected)
    return {item.path.stem: item for item in dataset.items}


def detections_from_row(row: dict[str, Any]) -> Detections:
    return Detections.from_payload(row.get("objects", []))


#: The key under which csv.DictReader puts a row's fields beyond the header's
_EXTRA = "\x00extra"


def _image_id(rated: str, known: set[str]) -> str:
    """The manifest id a rating names: the id itself, or the image's file name or path
    (`images/dev_cam_00000001.jpg`), as people rating image files write it."""
    if rated in known:
        return rated
    name = PurePosixPath(rated.replace("\\", "/")).name
    stem = name.rsplit(".", 1)[0] if "." in name else name
    return stem if stem in known else rated


def rated_precision(path: Path, known: set[str]) -> tuple[Estimate, list[str]]:
    """A CSV of `image_id,verdict` (match/miss): the share of matches with its interval, and
    the ids that are not in the dataset (listed, skipped). An image rated twice alike counts
    once; one rated both ways is refused, naming both lines."""
    try:  # utf-8-sig: spreadsheets save "CSV UTF-8" with a byte-order mark
        with path.open(newline="", encoding="utf-8-sig") as handle:
            reader = csv.DictReader(handle, skipinitialspace=True, restkey=_EXTRA)
            header = reader.fieldnames or []
            records = list(reader)
    except OSError as exc:
        raise InputError(f"cannot read ratings {path}: {exc.strerror}") from exc
    except (UnicodeDecodeError, csv.Error) as exc:
        raise InputError(f"{path} is not a CSV file of image_id,verdict rows ({exc})") from exc
    if not {"image_id", "verdict"} <= set(header):  # a first row of data is no header either
        found = f"found {', '.join(header)}" if header else "the file is empty"
        raise InputError(f"{path}: expected a header line of the columns image_id and verdict "
                         f"({VERDICT_WORDS}); {found}")
    unknown: list[str] = []
    repeated: list[str] = []  # `id (lines 3 and 9)`: rated again alike
    verdicts: dict[str, tuple[bool, int]] = {}  # image id -> (match, its line)
    for number, record in enumerate(records, start=2):
        if record["image_id"] is None or record["verdict"] is None or _EXTRA in record:
            extra = (f"; found {len(header) + len(record[_EXTRA])} fields, the header has "
                     f"{len(header)}" if _EXTRA in record else "")
            raise InputError(f"{path}:{number}: expected image_id,verdict ({VERDICT_WORDS})"
                             f"{extra}")
        image_id = _image_id(record["image_id"].strip(), known)
        verdict = record["verdict"].strip().lower()
        if image_id not in known:
            unknown.append(image_id)
            continue
        if verdict not in VERDICTS:
            raise InputError(f"{path}:{number}: verdict {record['verdict']!r} is not "
                             f"{VERDICT_WORDS}")
        earlier = verdicts.setdefault(image_id, (VERDICTS[verdict], number))
        if earlier[0] != VERDICTS[verdict]:
            raise InputError(f"{path}:{number}: {image_id} is rated {verdict} here and "
                             f"{'match' if earlier[0] else 'miss'} on line {earlier[1]}; keep "
                             "the one that is right")
        if earlier[1] != number:
            repeated.append(f"{image_id} (lines {earlier[1]} and {number})")
    if repeated:
        log.warning("%s: %s rated again alike, counted once: %s", path,
                    counted(len(repeated), "image"), listed(repeated, 5))
    matches, total = sum(match for match, _ in verdicts.values()), len(verdicts)
    example = f", e.g. {min(known)}" if known else ""
    if unknown:
        log.warning("%s: %d rated image id(s) are not in the dataset, skipped: %s (an id is "
                    "the manifest's: the image's file name without .jpg%s)", path,
                    len(unknown), ", ".join(unknown[:20]) + (" …" if len(unknown) > 20 else ""),
                    example)
    if total == 0:
        found = f"all {len(unknown)} rated ids are unknown" if unknown else "it has no rows"
        raise InputError(f"{path} rates no image of the dataset ({found}); expected image_id,"
                         "verdict rows (match or miss) for images the dataset holds, each "
                         f"named by its manifest id (the image's file name without .jpg{example})")
    return Estimate.of(matches, total), unknown

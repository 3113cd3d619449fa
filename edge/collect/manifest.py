"""The manifest of a collected dataset: `manifest.jsonl`, one JSON row per image, the source
of truth the exports are rewritten from (see `edge.collect.dataset`)."""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from edge.errors import InputError
from edge.rfc3339 import utc_seconds

log = logging.getLogger(__name__)

MANIFEST = "manifest.jsonl"

#: Keys every manifest row holds, with the type of each.
ROW_KEYS: dict[str, type | tuple[type, ...]] = {
    "id": str, "file": str, "device": str, "camera": str, "width": int, "height": int,
    "bytes": int, "phash": str, "objects": list}
#: Keys a row may hold (rows of earlier versions lack some), with the type of each.
OPTIONAL_KEYS: dict[str, type | tuple[type, ...]] = {
    "frame_id": int, "time": str, "ts": (int, float), "model": str, "reasons": list,
    "below": list}
#: Keys of each detection in a row's `objects` (and `below`), with the type of each.
OBJECT_KEYS: dict[str, type | tuple[type, ...]] = {
    "label": str, "class_id": int, "score": (int, float), "box": list}


def manifest_rows(manifest: Path, labels: Sequence[str] | None = None) -> list[dict[str, Any]]:
    """The rows of `manifest` (`MANIFEST`, one JSON object a line), their detections of
    `labels` (the dataset's classes.txt, where it has one). A torn last line, what a crash or a
    full disk leaves of an interrupted append, is dropped with a warning; any other line that
    is not a row is an InputError naming it (an edit or a damaged file: dropping it would take
    its image out of every export at the next resume)."""
    try:
        lines = manifest.read_text(encoding="utf-8").splitlines()
    except UnicodeDecodeError as exc:
        raise InputError(f"{manifest}: not UTF-8 text (byte {exc.start}); it was damaged or "
                         "replaced: restore it from a backup") from exc
    rows = []
    line_of: dict[str, int] = {}  # row id -> its line
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except (ValueError, RecursionError):
            row = None
        problem = _row_problem(row, labels)
        if problem is None and row["id"] in line_of:
            raise InputError(f"{manifest}:{number}: the row of {row['id']!r} again (line "
                             f"{line_of[row['id']]} holds it too), which would count its "
                             "image twice; the file was edited: delete one of the two lines")
        if problem is None:
            line_of[row["id"]] = number
            rows.append(row)
        elif row is None and number == len(lines):
            log.warning("%s:%d: torn last row (an interrupted write) dropped", manifest, number)
        else:
            raise InputError(
                f"{manifest}:{number}: {problem}; the file was edited or damaged: restore the "
                "line (manifest.csv and annotations.coco.json list the images as of the last "
                "export) or delete it (its image then leaves the dataset)")
    return rows


def _row_problem(row: object, labels: Sequence[str] | None) -> str | None:
    """Why `row` (a parsed line, None when not JSON) is not a manifest row, or None."""
    if row is None:
        return "not JSON"
    if not isinstance(row, dict):
        return f"a JSON {type(row).__name__}, not a row"
    for key, kind in ROW_KEYS.items():
        if not _is(row.get(key), kind):
            return f"no {key!r}" if key not in row else f"{key!r} is {row[key]!r}"
    for key, kind in OPTIONAL_KEYS.items():
        if key in row and not _is(row[key], kind):
            return f"{key!r} is {row[key]!r}"
    if not all(isinstance(reason, str) for reason in row.get("reasons", [])):
        return f"'reasons' is {row['reasons']!r}, not a list of names"
    if row.get("time"):
        try:
            utc_seconds(row["time"])
        except ValueError as exc:
            return f"'time': {exc}"
    for key in ("objects", "below"):
        for index, item in enumerate(row.get(key, [])):
            problem = _object_problem(item, labels)
            if problem is not None:
                return f"{key}[{index}] {problem}"
    return None


def _object_problem(item: object, labels: Sequence[str] | None) -> str | None:
    """Why `item` is not a detection of `labels` (None: of any) as rows hold them, or None."""
    if not isinstance(item, dict):
        return f"is {item!r}, not an object"
    for key, kind in OBJECT_KEYS.items():
        if not _is(item.get(key), kind):
            return f"has no {key!r}" if key not in item else f"{key!r} is {item[key]!r}"
    box, score = item["box"], item["score"]
    if len(box) != 4 or not all(_is(value, (int, float)) and math.isfinite(value)
                                for value in box) or box[2] < box[0] or box[3] < box[1]:
        return f"'box' is {box!r}, not [x1, y1, x2, y2] in pixels"
    if not (math.isfinite(score) and 0.0 <= score <= 1.0):
        return f"'score' is {score!r}, not between 0 and 1"
    class_id = item["class_id"]
    if class_id < 0 or (labels is not None and class_id >= len(labels)):
        known = f" (classes.txt holds {len(labels)}: 0 to {len(labels) - 1})" if labels else ""
        return f"'class_id' is {class_id!r}{known}"
    if labels is not None and item["label"] != labels[class_id]:
        return (f"'label' is {item['label']!r}, but class {class_id} is {labels[class_id]!r} "
                "in classes.txt")
    return None


def _is(value: object, kind: type | tuple[type, ...]) -> bool:
    """`isinstance`, where a JSON true or false is no number."""
    return isinstance(value, kind) and not isinstance(value, bool)

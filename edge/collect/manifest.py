"""The manifest of a collected dataset: `manifest.jsonl`, one JSON row per image, the source
of truth the exports are rewritten from (see `edge.collect.dataset`)."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

from edge.errors import InputError

log = logging.getLogger(__name__)

MANIFEST = "manifest.jsonl"

#: Keys every manifest row holds, with the type of each.
ROW_KEYS: dict[str, type | tuple[type, ...]] = {
    "id": str, "file": str, "device": str, "camera": str, "width": int, "height": int,
    "bytes": int, "phash": str, "objects": list}


def manifest_rows(manifest: Path) -> list[dict[str, Any]]:
    """The rows of `manifest` (`MANIFEST`, one JSON object a line). A torn last line, what a
    crash or a full disk leaves of an interrupted append, is dropped with a warning; any other
    line that is not a row is an InputError naming it (an edit or a damaged file: dropping it
    would take its image out of every export at the next resume)."""
    try:
        lines = manifest.read_text(encoding="utf-8").splitlines()
    except UnicodeDecodeError as exc:
        raise InputError(f"{manifest}: not UTF-8 text (byte {exc.start}); it was damaged or "
                         "replaced: restore it from a backup") from exc
    rows = []
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except (ValueError, RecursionError):
            row = None
        problem = _row_problem(row)
        if problem is None:
            rows.append(row)
        elif row is None and number == len(lines):
            log.warning("%s:%d: torn last row (an interrupted write) dropped", manifest, number)
        else:
            raise InputError(
                f"{manifest}:{number}: {problem}; the file was edited or damaged: restore the "
                "line (manifest.csv and annotations.coco.json list the images as of the last "
                "export) or delete it (its image then leaves the dataset)")
    return rows


def _row_problem(row: object) -> str | None:
    """Why `row` (a parsed line, None when not JSON) is not a manifest row, or None."""
    if row is None:
        return "not JSON"
    if not isinstance(row, dict):
        return f"a JSON {type(row).__name__}, not a row"
    for key, kind in ROW_KEYS.items():
        if not isinstance(row.get(key), kind) or isinstance(row.get(key), bool):
            return f"no {key!r}" if key not in row else f"{key!r} is {row[key]!r}"
    return None

"""Labels from the command line (a file, one per line or a JSON list, or a comma list) and from
exporters' metadata."""

from __future__ import annotations

import json
import re
from pathlib import Path

import onnx

from converters.errors import ConversionError


def _is_file(path: Path) -> bool:
    """False also for a name the system cannot look up (a comma list of COCO's 80 class names
    is longer than a file name may be)."""
    try:
        return path.is_file()
    except OSError:
        return False


def labels_from_option(value: str) -> tuple[str, ...]:
    """`labels.txt`, `labels.json` or `cat,dog,bird`."""
    path = Path(value)
    if _is_file(path):
        text = path.read_text(encoding="utf-8")
        if path.suffix == ".json":
            try:
                labels = json.loads(text)
            except json.JSONDecodeError as exc:
                raise ConversionError(f"labels file {path} is not valid JSON: {exc}") from exc
            if isinstance(labels, dict):  # {"0": "cat", ...} as some exporters write
                labels = [labels[k] for k in sorted(labels, key=int)]
            if not isinstance(labels, list) or not all(isinstance(x, str) for x in labels):
                raise ConversionError(f"labels file {path} must hold a JSON list of strings")
            found = tuple(labels)
        else:
            found = _without_line_numbers(
                tuple(line.strip() for line in text.splitlines() if line.strip()))
    elif path.suffix in (".txt", ".json", ".names") or "/" in value:
        raise ConversionError(f"labels file {value} does not exist")
    else:
        found = tuple(item.strip() for item in value.split(",") if item.strip())
    if not found:
        raise ConversionError(f"no labels found in {value!r}; pass a file or a comma list")
    if len(set(found)) != len(found):
        repeated = sorted({x for x in found if found.count(x) > 1})
        raise ConversionError(f"labels must be unique; repeated: {', '.join(repeated)}")
    return found


_NUMBERED = re.compile(r"(\d+)\s*[:,]?\s+(\S.*)")


def _without_line_numbers(lines: tuple[str, ...]) -> tuple[str, ...]:
    """`0 person` / `1: car` lines (class id, then name, as label maps are often written) as
    their names, when every line is numbered 0, 1, 2... or 1, 2, 3... in order; else as
    they are."""
    numbered = [_NUMBERED.fullmatch(line) for line in lines]
    if not all(numbered):
        return lines
    ids = [int(match.group(1)) for match in numbered if match]
    if ids not in (list(range(len(ids))), list(range(1, len(ids) + 1))):
        return lines
    return tuple(match.group(2).strip() for match in numbered if match)


def labels_from_paddle_metadata(model: onnx.ModelProto) -> tuple[str, ...] | None:
    """Class names that PaddlePaddle exports (paddle2onnx, as PaddleOCR and RapidOCR ship them)
    keep newline-separated under the `character` metadata key; None when absent or unusable."""
    text = next((p.value for p in model.metadata_props if p.key == "character"), None)
    labels = tuple(line.strip() for line in (text or "").splitlines() if line.strip())
    return labels if labels and len(set(labels)) == len(labels) else None

"""Labels from the command line (a file, one per line or a JSON list, or a comma list) and from
exporters' metadata."""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import onnx

from converters.errors import ConversionError, first_line
from edge.errors import InputError
from edge.text_files import read_text
from edge.wording import listed

log = logging.getLogger(__name__)


def _holds(check: Callable[[], bool]) -> bool:
    """`path.is_file` or `path.is_dir`, False also for a name the system cannot look up (a
    comma list of COCO's 80 class names is longer than a file name may be)."""
    try:
        return check()
    except OSError:
        return False


def labels_from_option(value: str) -> tuple[str, ...]:
    """`labels.txt` (one per line, `0 person` numbering allowed), `labels.json` (a list, or
    `{"0": "cat", ...}` / `{"cat": 0, ...}`), an Ultralytics dataset's `data.yaml` (its
    `names`), or `cat,dog,bird`."""
    if not value.strip():
        raise ConversionError("--labels has no label names; pass a file with one name a line "
                              "or a comma list")
    path = Path(value)
    suffix = path.suffix.lower()
    if _holds(path.is_file):
        text = _text(path)
        if suffix == ".json":
            found = _from_json(path, text)
        elif suffix in (".yaml", ".yml"):
            found = _from_yaml(path, text)
        else:
            found = _without_line_numbers(
                path, tuple(line.strip() for line in text.splitlines() if line.strip()))
        where = f"labels file {path}"
    elif _holds(path.is_dir):
        single = (f"; for one class named {value!r}, end it with a comma: --labels {value},"
                  if "," not in value and "/" not in value else "")
        raise ConversionError(f"--labels {value} is a folder; pass a labels file (one name a "
                              f"line, a JSON list or a data.yaml) or a comma list{single}")
    elif suffix in (".txt", ".json", ".names", ".yaml", ".yml") or ("/" in value
                                                                     and "," not in value):
        raise ConversionError(f"labels file {value} does not exist")
    else:
        found = _comma_list(value)
        where = "--labels"
    if not found:
        raise ConversionError(f"{where} {'holds' if where != '--labels' else 'has'} no label "
                              "names; pass a file with one name a line or a comma list")
    if len(set(found)) != len(found):
        repeated = sorted({x for x in found if found.count(x) > 1})
        raise ConversionError(f"labels must be unique; repeated in {where}: "
                              f"{', '.join(repeated)}")
    return found


def _comma_list(value: str) -> tuple[str, ...]:
    """`cat,dog,bird`; one trailing comma is allowed (`text,`: one class named like a folder),
    an empty name elsewhere is refused rather than dropped (the count would not be the one
    typed)."""
    items = [item.strip() for item in value.split(",")]
    if len(items) > 1 and not items[-1]:
        items.pop()
    empty = [position for position, item in enumerate(items, 1) if not item]
    if empty and len(empty) < len(items):
        raise ConversionError(f"--labels {value} has an empty name (position "
                              f"{', '.join(map(str, empty))}); give every class a name")
    return tuple(item for item in items if item)


def _text(path: Path) -> str:
    """A labels file's text (see `edge.text_files`), its encoding error as the converter's."""
    try:
        return read_text(path, "labels file")
    except InputError as exc:
        raise ConversionError(str(exc)) from exc


def _from_json(path: Path, text: str) -> tuple[str, ...]:
    """A JSON list of names, or a mapping between class ids and names either way round:
    `{"0": "cat"}` (index to name), `{"cat": 0}` (Keras' `class_indices`), or torchvision's
    `imagenet_class_index.json` (`{"0": ["n01440764", "tench"]}`: the last item is the name)."""
    try:
        labels = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ConversionError(f"labels file {path} is not valid JSON: {exc}") from exc
    if isinstance(labels, list) and labels and all(isinstance(x, str) for x in labels):
        return tuple(labels)
    if isinstance(labels, dict) and labels:
        by_id = _json_ids(path, labels)
        if by_id is not None:
            return _in_id_order(path, by_id)
    raise ConversionError(f"labels file {path} must hold a JSON list of names, or a mapping "
                          'from class id to name ({"0": "cat", ...}, or to [wnid, name] pairs '
                          "as torchvision's imagenet_class_index.json) or from name to class "
                          'id ({"cat": 0, ...}, as Keras\' class_indices)')


def _json_ids(path: Path, mapping: dict[str, Any]) -> dict[int, str] | None:
    """Class id -> name from a JSON object keyed by ids (values names, or lists ending in
    one) or by names (values ids); None for any other shape."""
    if all(_is_id(key) for key in mapping):
        names = {int(key): value[1] if _is_wnid_pair(value) else value
                 for key, value in mapping.items()}
        return names if all(isinstance(name, str) for name in names.values()) else None
    if all(isinstance(value, int) and not isinstance(value, bool) and value >= 0
           for value in mapping.values()):
        by_id = {index: name for name, index in mapping.items()}
        if len(by_id) != len(mapping):
            repeated = sorted({i for i in mapping.values()
                               if list(mapping.values()).count(i) > 1})
            raise ConversionError(f"labels file {path} maps several names to class id(s) "
                                  f"{listed(repeated)}; give each class one name")
        return by_id
    return None


def _is_wnid_pair(value: Any) -> bool:
    """torchvision's `[wnid, name]` entry."""
    return isinstance(value, list) and len(value) == 2 and all(isinstance(x, str)
                                                               for x in value)


def _is_id(key: str) -> bool:
    return key.strip().isdigit()


def _in_id_order(path: Path, names: dict[int, str]) -> tuple[str, ...]:
    """`names` by class id 0, 1, 2...; refused when an id between is missing."""
    missing = sorted(set(range(max(names) + 1)) - set(names))
    if missing:
        raise ConversionError(f"labels file {path}: its names skip class id(s) "
                              f"{listed(missing)}; name every class from 0")
    return tuple(names[index] for index in range(len(names)))


def _from_yaml(path: Path, text: str) -> tuple[str, ...]:
    """The `names` of an Ultralytics dataset file: a list, or a mapping from class id."""
    try:
        import yaml  # noqa: PLC0415 - only for .yaml labels (Ultralytics installs it)
    except ImportError as exc:
        raise ConversionError(f"reading {path} needs PyYAML: pip install pyyaml, or pass the "
                              "names as a txt file, one per line") from exc
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConversionError(f"labels file {path} is not valid YAML: {first_line(exc)}") from exc
    names = data.get("names") if isinstance(data, dict) else None
    if isinstance(names, dict) and names and all(isinstance(key, int) for key in names):
        names = list(_in_id_order(path, {key: str(name) for key, name in names.items()}))
    if not isinstance(names, list) or not names:
        raise ConversionError(f"labels file {path} has no `names:` list or mapping from class "
                              "ids 0, 1, 2... (as an Ultralytics dataset's data.yaml has); pass "
                              "the names as a txt file, one per line")
    return tuple(str(name) for name in names)


_NUMBERED = re.compile(r"(\d+)\s*[:,]?\s+(\S.*)")


def _without_line_numbers(path: Path, lines: tuple[str, ...]) -> tuple[str, ...]:
    """`0 person` / `1: car` lines (class id, then name, as label maps are often written) as
    their names, when every line is numbered 0, 1, 2... or 1, 2, 3... in order; else the lines
    as they are, with a warning where every line starts with a number (a numbered map with a
    gap, or names such as `5 cent`: which one cannot be told)."""
    numbered = [_NUMBERED.fullmatch(line) for line in lines]
    if not all(numbered):
        _refuse_nameless_ids(path, lines, numbered)
        return lines
    ids = [int(match.group(1)) for match in numbered if match]
    if ids not in (list(range(len(ids))), list(range(1, len(ids) + 1))):
        log.warning("labels file %s: every line starts with a number (%s), not 0, 1, 2... in "
                    "order, so the lines are the labels, numbers included; if they are class "
                    "ids, a class is missing or out of place: list every class, one per line, "
                    "in class-id order", path, listed(ids))
        return lines
    names = tuple(match.group(2).strip() for match in numbered if match)
    if ids[:1] == [1]:
        log.info("labels file %s numbers its classes from 1: %r is read as class 0's name; if "
                 "the model's class 0 is a background class, add a first line `0 background`",
                 path, names[0])
    return names




def _refuse_nameless_ids(path: Path, lines: tuple[str, ...],
                         numbered: list[re.Match[str] | None]) -> None:
    """A label map numbered 0, 1, 2... in order whose other lines hold a class id alone
    (`1` after `0 person`): a class without a name, refused rather than read as names."""
    bare = {index: line.rstrip(":,").strip() for index, (line, match)
            in enumerate(zip(lines, numbered, strict=True)) if match is None}
    if not any(numbered) or not all(text.isdigit() for text in bare.values()):
        return
    ids = [int(match.group(1)) if match else int(bare[index])
           for index, match in enumerate(numbered)]
    if ids in (list(range(len(ids))), list(range(1, len(ids) + 1))):
        raise ConversionError(f"labels file {path}: class id(s) {listed(list(bare.values()))} "
                              "have no name; give every class a name")


def labels_from_paddle_metadata(model: onnx.ModelProto) -> tuple[str, ...] | None:
    """Class names that PaddlePaddle exports (paddle2onnx, as PaddleOCR and RapidOCR ship them)
    keep newline-separated under the `character` metadata key; None when absent or unusable."""
    text = next((p.value for p in model.metadata_props if p.key == "character"), None)
    labels = tuple(line.strip() for line in (text or "").splitlines() if line.strip())
    return labels if labels and len(set(labels)) == len(labels) else None

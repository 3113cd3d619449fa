"""Helpers shared by the command modules: JSON output and argument types."""

from __future__ import annotations

import argparse
import json
import logging
import math
import re
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, TypeVar

from edge.errors import InputError
from edge.opsets import MIN_OPSET

if TYPE_CHECKING:
    from edge.mqtt.subscriber import TlsFiles

_Number = TypeVar("_Number", int, float)

_USER_AND_PASSWORD = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://[^/@]*:[^/@]*@")


def print_json(payload: dict[str, Any]) -> None:
    """The last stdout line of a --json command: one JSON object."""
    sys.stdout.write(json.dumps(payload, separators=(",", ":")) + "\n")
    sys.stdout.flush()


def failed_with_json(prog: str, error: Exception, payload: dict[str, Any]) -> int:
    """Exit 2 for a --json command whose last line is its own report (`payload`) with the
    error added: said on stderr as every command's error is, and the JSON line last."""
    print(f"{prog}: error: {error}", file=sys.stderr)
    print_json({**payload, "error": str(error), "exit_code": 2})
    return 2


#: The largest model input side `parse_size` takes (pixels): past it the example tensor alone
#: is gigabytes (`--input-size 100000` was a PyTorch allocation traceback).
MAX_INPUT_SIDE = 16384


def parse_size(text: str) -> tuple[int, int]:
    """`640` or `480x640` (height x width), each side 1..MAX_INPUT_SIDE."""
    parts = text.lower().split("x")
    try:
        values = [int(p) for p in parts]
    except ValueError:
        values = []
    if len(values) not in (1, 2) or min(values, default=0) <= 0:
        raise argparse.ArgumentTypeError(f"{text!r} is not a size; use 640 or HEIGHTxWIDTH")
    if max(values) > MAX_INPUT_SIDE:
        raise argparse.ArgumentTypeError(f"{text!r} is larger than a model input can be: at "
                                         f"most {MAX_INPUT_SIDE} pixels a side")
    return (values[0], values[-1])


def parse_opset(text: str) -> int:
    """An opset `edge convert` may export to: calibrating an opset 12 export failed in
    ONNX's checker."""
    return _number(text, int, lambda v: v >= MIN_OPSET,
                   f"an opset of {MIN_OPSET} or later (INT8's per-channel weights need "
                   f"{MIN_OPSET})")


def parse_triple(text: str) -> tuple[float, float, float]:
    """Three comma-separated numbers, one per channel, or one number for all three."""
    try:
        values = tuple(float(v) for v in text.split(","))
    except ValueError:
        values = ()
    if len(values) == 1:
        values *= 3
    if len(values) != 3:
        raise argparse.ArgumentTypeError(f"{text!r} must be one number (for every channel) "
                                         "or three, e.g. 0.5 or 0.485,0.456,0.406")
    return values[0], values[1], values[2]


def _number(text: str, kind: Callable[[str], _Number], accepted: Callable[[_Number], bool],
            requirement: str) -> _Number:
    """`text` as `kind`, when `accepted`; else argparse's error saying what it `must be`."""
    try:
        value = kind(text)
    except ValueError:
        value = None
    if value is None or not accepted(value):
        raise argparse.ArgumentTypeError(f"{text!r} must be {requirement}")
    return value


def parse_fraction(text: str) -> float:
    return _number(text, float, lambda v: 0 < v < 1, "a number above 0 and below 1")


def parse_crop_fraction(text: str) -> float:
    """0.5..1 (a central part smaller than half the frame is no training preprocessing)."""
    hint = " (a fraction: 87.5% is 0.875)" if _is_percentage(text) else ""
    return _number(text, float, lambda v: 0.5 <= v <= 1,
                   f"a fraction from 0.5 to 1, e.g. 0.875 for Resize(256) + CenterCrop(224){hint}")


def parse_pad_value(text: str) -> int:
    """A uint8 level: the bars are painted into the uint8 frame buffer the model reads. A
    normalised zero (mean 0.5: 127.5) is one the user rounds, and is told so."""
    hint = ""
    try:
        level = float(text)
        if 0 < level < 1:
            hint = f"; in 0..1 units, {text} is level {round(level * 255 + 1e-9)}"
        elif 1 < level < 255 and not level.is_integer():
            hint = (f"; the bars are uint8 levels in the frame the model reads: pass "
                    f"{round(level + 1e-9)} for {text}")
    except ValueError:
        pass
    return _number(text, int, lambda v: 0 <= v <= 255,
                   f"a pixel level, a whole number from 0 to 255 (114: Ultralytics' grey){hint}")


def _is_percentage(text: str) -> bool:
    try:
        return 50 <= float(text) <= 100
    except ValueError:
        return False


def parse_percentile(text: str) -> float:
    return _number(text, float, lambda v: 0 < v <= 100, "a percentile in (0, 100], e.g. 99.99")


def parse_positive_int(text: str) -> int:
    return _number(text, int, lambda v: v >= 1, "a whole number >= 1")


def parse_non_negative_int(text: str) -> int:
    return _number(text, int, lambda v: v >= 0, "a whole number >= 0")


def parse_positive_float(text: str) -> float:
    return _number(text, float, lambda v: 0 < v < math.inf, "a number > 0")


def parse_non_negative_float(text: str) -> float:
    return _number(text, float, lambda v: 0 <= v < math.inf, "a number >= 0")


def parse_path(text: str) -> Path:
    """A path option's value; an empty one is refused (a user check: `--cache=` read as `.`,
    then "--cache . is a folder")."""
    return Path(parse_location(text))


def parse_location(text: str) -> str:
    """A path or URI option's value as written (`synthetic://...` stays whole); an empty one
    is refused, as by `parse_path`."""
    if not text.strip():
        raise argparse.ArgumentTypeError("an empty path; give a file or folder name")
    return text


def parse_batch(text: str) -> int | Literal["dynamic"]:
    if text == "dynamic":
        return "dynamic"
    if text.isdigit() and int(text) > 0:
        return int(text)
    raise argparse.ArgumentTypeError(f"{text!r}: use a positive number or 'dynamic'")


def add_tls_arguments(parser: argparse.ArgumentParser) -> None:
    """--ca-file, --certfile and --keyfile of a subscriber tool's mqtts:// connection."""
    parser.add_argument("--ca-file", metavar="PEM",
                        help="mqtts://: the CA that signed the broker's certificate (default: the "
                             "system's CAs)")
    parser.add_argument("--certfile", metavar="PEM",
                        help="mqtts://: a client certificate, for brokers that want one (with "
                             "--keyfile)")
    parser.add_argument("--keyfile", metavar="PEM", help="mqtts://: the client certificate's key")


def warn_of_a_password_in(url: str) -> None:
    """A password in a command line's broker URL is redacted from everything this prints, but
    `ps` and the shell's history keep it: say so, and where it belongs."""
    if _USER_AND_PASSWORD.match(url):
        logging.getLogger("edge.cli").warning(
            "the broker URL holds a password, which ps and your shell history can show; give "
            "only the user in the URL and the password in $EDGE_MQTT_PASSWORD")


def tls_files(args: argparse.Namespace) -> TlsFiles:
    """The TLS files the command line gave; each must be a file. The broker URL is checked
    first: one without its scheme is told so, not that the files need mqtts://."""
    from edge.mqtt.subscriber import TlsFiles, checked_broker_url

    if args.mqtt:
        checked_broker_url(args.mqtt)
    for option in ("ca_file", "certfile", "keyfile"):
        path = getattr(args, option)
        if path is not None and not Path(path).is_file():
            raise InputError(f"--{option.replace('_', '-')} {path} is not a file")
    given = any(getattr(args, option) is not None for option in ("ca_file", "certfile", "keyfile"))
    if given and not (args.mqtt or "").lower().startswith("mqtts://"):
        raise InputError("--ca-file, --certfile and --keyfile are for TLS: give an mqtts:// "
                         "broker URL")
    return TlsFiles(args.ca_file, args.certfile, args.keyfile)


def recover_model_argument(args: argparse.Namespace, missing: str) -> Path:
    """MODEL, also where an option before it took it as its own value: argparse gives every
    following word to `--exclude NODE ...` and the path to `--drift-reference [PATH]`, so
    `edge calibrate --exclude NODE model.onnx ...` would otherwise lose its model. When no
    MODEL was given, the first of those values that names an .onnx file is MODEL (no node is
    named like a model file, and a drift reference is JSON); a missing one then gets the
    usual "does not exist" error. Else the error is `missing`, with that advice for the
    options this command has."""
    if args.model is not None:
        return Path(args.model)
    excluded = getattr(args, "exclude", None) or []
    named = [value for value in excluded if _names_onnx(value)]
    if named:
        excluded.remove(named[0])
        args.model = Path(named[0])
    elif getattr(args, "drift_reference", None) and _names_onnx(args.drift_reference):
        args.model, args.drift_reference = Path(args.drift_reference), ""
    else:
        greedy = [option for option, field in (("--exclude", "exclude"),
                                                ("--drift-reference", "drift_reference"))
                  if hasattr(args, field)]
        if not greedy:
            raise InputError(missing)
        takes = ("takes what follows as its value" if len(greedy) == 1 else
                 "take what follows as their values")
        raise InputError(f"{missing} (give it before {' and '.join(greedy)}, which {takes})")
    return Path(args.model)


def _names_onnx(value: str) -> bool:
    return value.lower().endswith(".onnx")

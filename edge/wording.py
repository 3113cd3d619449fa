"""Small pieces of the wording of user-facing messages."""

from __future__ import annotations

import difflib
from collections.abc import Collection, Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pydantic import ValidationError


#: Labels listed in a message about labels a model lacks; a 1000-class model's whole list made
#: a 6000-character line.
LABELS_SHOWN = 20
#: How alike a misspelt name and the one meant are (difflib's ratio): `--lables` and
#: `--labels` 0.88, `--dta` and `--data` 0.91; `--frames` and `--ranges`, unrelated, 0.75.
ALIKE = 0.8


def not_labels_of_the_model(unknown: Sequence[str], labels: Sequence[str]) -> str:
    """`Dog is not a label of the model (Dog: did you mean dog?); its 3 labels: ...`: the
    alike label (in any case) for each unknown one that has one, and the model's labels; long
    lists cut to their first `LABELS_SHOWN`."""
    verb = "is not a label" if len(unknown) == 1 else "are not labels"
    by_folded = {label.lower(): label for label in labels}
    alike = {name: by_folded[found[0]] for name in unknown
             if (found := difflib.get_close_matches(name.lower(), by_folded, n=1, cutoff=0.8))}
    meant = (" (" + "; ".join(f"{name}: did you mean {label}?" for name, label in alike.items())
             + ")" if alike else "")
    return (f"{listed(unknown, LABELS_SHOWN)} {verb} of the model{meant}; its "
            f"{counted(len(labels), 'label')}: {listed(labels, LABELS_SHOWN)}")


def likely_meant(name: str, names: Collection[str], cutoff: float = ALIKE) -> str | None:
    """The one of `names` that `name` most likely misspells: the same letters in another case
    or order (`TensorRT`, `qso` for `qos`, `rtps`), else the only one it begins (`onnx`),
    else the closest by difflib at `cutoff` or above (`stal_s` for `stall_s`); None where none
    is alike. Two swapped letters of a short word score too low for difflib alone (`qso`
    against `qos`: 0.67)."""
    folded = sorted(name.lower())
    same_letters = [known for known in names if sorted(known.lower()) == folded]
    begun = [known for known in names if known.startswith(name)]
    close = difflib.get_close_matches(name, list(names), n=1, cutoff=cutoff)
    for found in (same_letters, begun if len(begun) == 1 else [], close):
        if found:
            return found[0]
    return None


def listed(items: Sequence[object], shown: int = 6) -> str:
    """`a, b, c` - the first `shown` items, then `...` where there are more."""
    return ", ".join(map(str, items[:shown])) + (", ..." if len(items) > shown else "")


def rate_words(per_second: float) -> str:
    """A rate as said: `14.9`, and under 1 with two figures (a snapshot camera's `0.25`, not
    `0.2`)."""
    return f"{per_second:.1f}" if per_second >= 1 else f"{per_second:.2g}"


def counted(count: int, noun: str) -> str:
    """`1 image`, `2 images`, `3 classes`, `2 categories`: a count and its regular English
    plural."""
    if count == 1:
        return f"{count} {noun}"
    if noun.endswith("y") and noun[-2:-1] not in ("a", "e", "i", "o", "u", ""):
        return f"{count} {noun[:-1]}ies"
    plural = "es" if noun.endswith(("s", "sh", "ch", "x")) else "s"
    return f"{count} {noun}{plural}"


def events_among(count: object) -> str:
    """` (8 events)` after a count of dropped messages with `count` events among them; ''
    where none were (or the figure is not a count)."""
    return f" ({counted(count, 'event')})" if isinstance(count, int) and count > 0 else ""


def validation_problems(error: ValidationError, whole: str = "", inputs: bool = True,
                        leaving_out: Collection[str] = (), most: int | None = None) -> str:
    """pydantic's errors as one line, one `where: what` per problem (`detections.0.score:
    Input should be a valid number (got '0.9')`), `whole` naming the object where a problem
    is with no one field; `inputs`: quote each offending value (not where it is the whole
    object), cut to `QUOTED_CHARS`; `leaving_out`: error types the caller words itself;
    `most`: the problems listed, then how many more there are. pydantic's own text spans
    lines, with the input and a link on every one."""
    parts = []
    for problem in error.errors(include_url=False):
        if problem["type"] in leaving_out:
            continue
        where = ".".join(str(part) for part in problem["loc"]) or whole
        message = str(problem["msg"]).removeprefix("Value error, ")
        got = (f" (got {_quoted(problem['input'])})"
               if inputs and problem["type"] != "missing" else "")
        parts.append(f"{where}: {message}{got}" if where else f"{message}{got}")
    if most is not None and len(parts) > most:
        parts[most:] = [f"and {counted(len(parts) - most, 'more problem')}"]
    return "; ".join(parts)


#: The most characters of an offending value an error quotes.
QUOTED_CHARS = 80


def _quoted(value: object) -> str:
    text = repr(value)
    return text if len(text) <= QUOTED_CHARS else f"{text[:QUOTED_CHARS - 3]}..."

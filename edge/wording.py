"""Small pieces of the wording of user-facing messages."""

from __future__ import annotations

from collections.abc import Sequence


def listed(items: Sequence[object], shown: int = 6) -> str:
    """`a, b, c` - the first `shown` items, then `...` where there are more."""
    return ", ".join(map(str, items[:shown])) + (", ..." if len(items) > shown else "")


def counted(count: int, noun: str) -> str:
    """`1 image`, `2 images`, `3 classes`: a count and its regular English plural."""
    plural = "es" if noun.endswith(("s", "sh", "ch", "x")) else "s"
    return f"{count} {noun}{'' if count == 1 else plural}"

"""The warnings a command logs while it runs, kept for its `--json` line: a script reads that
line, not stderr, and a figure measured beside a warning (a busy machine, an ignored option)
means less without it."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager


class _Keeper(logging.Handler):
    def __init__(self, lines: list[str]) -> None:
        super().__init__(logging.WARNING)
        self._lines = lines

    def emit(self, record: logging.LogRecord) -> None:
        self._lines.append(record.getMessage())


@contextmanager
def warnings_kept(logger: str = "edge") -> Iterator[list[str]]:
    """Within the block, every warning or error logged under `logger` (by any thread) is also
    appended, as its message, to the list yielded; logging goes on as before."""
    lines: list[str] = []
    keeper = _Keeper(lines)
    target = logging.getLogger(logger)
    target.addHandler(keeper)
    try:
        yield lines
    finally:
        target.removeHandler(keeper)

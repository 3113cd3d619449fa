"""A descriptor pointed at /dev/null: standard output for good once its reader is gone
(`edge.cli.stdout`), or descriptor 1 for a while around native code that writes there unasked
(`converters.onnx_from_torch`). Python's file objects keep their identity; only the
descriptor moves, which is where C++ writes too."""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterator

#: The process's standard output descriptor: where C++ writes, whatever Python's `sys.stdout`
#: is (a test's capture object has no descriptor of its own).
STDOUT = 1


def to_devnull(descriptor: int) -> None:
    """`descriptor` on /dev/null from now on (what is still buffered for it goes there too)."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, descriptor)
    finally:
        os.close(devnull)


@contextlib.contextmanager
def stdout_silenced() -> Iterator[None]:
    """Descriptor 1 on /dev/null inside the block, as it was after it."""
    sys.stdout.flush()
    saved = os.dup(STDOUT)
    try:
        to_devnull(STDOUT)
        yield
    finally:
        os.dup2(saved, STDOUT)
        os.close(saved)

"""A lock file that one process at a time holds, the others waiting for it: for a cache that
several processes fill at once (pytest's workers, two benchmark runs), each download then
done once and never read half-written."""

from __future__ import annotations

import fcntl
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


@contextmanager
def held(lock_file: Path) -> Iterator[None]:
    """Holds `lock_file` (made, with its folder, where missing) until the block ends; blocks
    while another process holds it. The lock goes with the process, however it ends."""
    lock_file.parent.mkdir(parents=True, exist_ok=True)
    with lock_file.open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)

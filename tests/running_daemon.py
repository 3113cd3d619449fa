"""A `Daemon` run in-process on a thread of its own, for tests that reach into it."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager

from edge.daemon import Daemon


@contextmanager
def running(daemon: Daemon) -> Iterator[Daemon]:
    """`daemon` started and run until the block ends, then stopped as SIGTERM stops it."""
    stop = threading.Event()
    runner = threading.Thread(target=daemon.run, args=(stop,))
    daemon.start()
    runner.start()
    try:
        yield daemon
    finally:
        stop.set()
        runner.join(30)
    assert not runner.is_alive(), "the daemon did not stop within 30 s"

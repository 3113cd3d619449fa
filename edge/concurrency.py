"""Two thread-pool idioms shared by the calibration pipeline (work started in the background,
an ordered map with bounded look-ahead), and what a long-running loop waits on to stop."""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Executor, Future, ThreadPoolExecutor
from typing import Protocol, TypeVar


class StopRequest(Protocol):
    """What the daemon's, the monitor's and the collector's loops wait on: a
    `threading.Event`, or the CLI's signal-safe `edge.cli.signals.SignalStop`."""

    def is_set(self) -> bool: ...

    def wait(self, timeout: float | None = None) -> bool: ...


A = TypeVar("A")
T = TypeVar("T")


def in_background(name: str, work: Callable[..., T], *args: object) -> Future[T]:
    """`work(*args)` on a thread of its own, started now; the thread ends when it returns."""
    pool = ThreadPoolExecutor(1, thread_name_prefix=name)
    future = pool.submit(work, *args)
    pool.shutdown(wait=False)
    return future


def in_order(pool: Executor, work: Callable[[A], T], items: Iterable[A], ahead: int
             ) -> Iterator[T]:
    """`work(item)` for every item, run on `pool`, yielded in the items' order; at most `ahead`
    items are submitted beyond the one being waited for, so memory stays bounded. Leaving
    early cancels what has not started."""
    pending: deque[Future[T]] = deque()
    try:
        for item in items:
            pending.append(pool.submit(work, item))
            if len(pending) > ahead:
                yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()
    finally:
        for future in pending:
            future.cancel()

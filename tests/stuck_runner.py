"""A real runner made to stop answering on demand: what a wedged GPU driver or a deadlocked
backend looks like to the daemon (the call never returns; every thread stays alive)."""

from __future__ import annotations

import threading
from typing import Any


class StuckRunner:
    """Wraps `daemon.service`'s runner: after `hang()`, its next `wait` blocks until
    `release()` (call it in a `finally`, or the inference thread outlives the test)."""

    def __init__(self, daemon: Any) -> None:
        runner = daemon.service._runner
        assert runner is not None
        self._hang, self._release = threading.Event(), threading.Event()
        self.stuck = threading.Event()  # a wait is blocked now
        wait = runner.wait

        def hanging_wait(slot: int) -> Any:
            if self._hang.is_set():
                self.stuck.set()
                self._release.wait()
            return wait(slot)

        runner.wait = hanging_wait

    def hang(self) -> None:
        self._hang.set()

    def release(self) -> None:
        self._release.set()

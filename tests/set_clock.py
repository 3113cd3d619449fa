"""The system clock as if it had been set while a test runs."""

from __future__ import annotations

import time

import pytest


class SetClock:
    """`time.time` as if the system clock had been set by `by` seconds (NTP's first sync, or
    by hand); the monotonic clock, which no one sets, left alone."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.by = 0.0
        real = time.time
        monkeypatch.setattr(time, "time", lambda: real() + self.by)

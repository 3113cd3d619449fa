"""The shared thread-pool idioms: results in order with bounded look-ahead, work in the
background."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from edge.concurrency import in_background, in_order


def test_in_order_keeps_the_order_and_bounds_the_look_ahead():
    submitted: list[int] = []

    def items():
        for i in range(20):
            submitted.append(i)
            yield i

    with ThreadPoolExecutor(4) as pool:
        results = []
        for value in in_order(pool, lambda i: (time.sleep(0.001 * (i % 3)), i * i)[1], items(), 3):
            assert len(submitted) - len(results) <= 4  # the awaited one + 3 ahead
            results.append(value)
    assert results == [i * i for i in range(20)]


def test_in_order_raises_the_first_failure_and_cancels_what_has_not_started():
    started: list[int] = []

    def work(i: int) -> int:
        started.append(i)
        if i == 1:
            raise ValueError("item 1 failed")
        time.sleep(0.01)
        return i

    with ThreadPoolExecutor(1) as pool, pytest.raises(ValueError, match="item 1 failed"):
        list(in_order(pool, work, range(50), 5))
    assert len(started) < 10


def test_in_background_runs_now_on_its_own_thread():
    names: list[str] = []
    future = in_background("probe", lambda x: names.append(threading.current_thread().name) or x,
                           7)
    assert future.result(timeout=10) == 7 and names[0].startswith("probe")

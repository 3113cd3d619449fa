"""`edge.file_lock.held`: one process at a time fills a shared cache, the others wait."""

from __future__ import annotations

import subprocess
import sys
import time

from edge.file_lock import held

HOLDER = """
import sys, time
from pathlib import Path
from edge.file_lock import held
with held(Path(sys.argv[1])):
    print("held", flush=True)
    time.sleep(0.6)
"""


def test_a_lock_another_process_holds_is_waited_for_then_taken(tmp_path):
    lock = tmp_path / "cache" / ".lock"  # its folder made too
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, str(lock)], stdout=subprocess.PIPE,
                              text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        started = time.monotonic()
        with held(lock):  # once the holder's block has ended
            waited = time.monotonic() - started
    finally:
        holder.wait(timeout=10)
    assert waited >= 0.4


def test_a_lock_is_let_go_when_its_block_raises(tmp_path):
    lock = tmp_path / ".lock"
    try:
        with held(lock):
            raise ValueError("the download failed")
    except ValueError:
        pass
    started = time.monotonic()
    with held(lock):
        assert time.monotonic() - started < 0.1

"""SIGTERM / Ctrl-C as a stop request that a signal handler sets without taking a lock."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import time

from edge.cli.signals import SignalStop


def test_wait_times_out_then_sees_set():
    stop = SignalStop()
    began = time.monotonic()
    assert stop.wait(0.12) is False and time.monotonic() - began >= 0.12
    stop.set()
    assert stop.is_set() and stop.wait(5) is True


def test_a_signal_landing_anywhere_in_a_tight_wait_loop_stops_it():
    """The old handler set a threading.Event, whose lock the main thread holds for a moment
    inside Event.wait: a signal landing there deadlocked the handler (a daemon that logged
    "received SIGTERM" and never stopped). 300 signals fired at random moments into a loop that
    does nothing but wait must each end it, and the log line come once per stop."""
    script = textwrap.dedent("""
        import logging, os, random, signal, sys, threading, time
        logging.basicConfig(level=logging.INFO, stream=sys.stdout, format="%(message)s")
        from edge.cli.signals import stop_on_signals
        for i in range(300):
            stop = stop_on_signals()
            delay = random.uniform(0, 0.004)
            which = signal.SIGTERM if i % 2 else signal.SIGINT
            threading.Timer(delay, os.kill, (os.getpid(), which)).start()
            while not stop.wait(0.0):
                pass
        print("done")
    """)
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[-1] == "done"
    assert lines.count("received SIGTERM; stopping") == 150
    assert lines.count("received SIGINT; stopping") == 150

"""Standard output whose reader goes away: told apart from other broken pipes, and the
streaming commands' echo turning it into a stop."""

from __future__ import annotations

import os
import sys

import pytest

from edge.cli.signals import SignalStop
from edge.cli.stdout import LinesUntilClosed, reader_gone


def stdout_on_a_pipe(monkeypatch: pytest.MonkeyPatch) -> int:
    """sys.stdout on the writing end of a new pipe, for the rest of the test (pytest puts its
    own capture back between a fixture's set-up and the test); returns the reading end."""
    read_end, write_end = os.pipe()
    monkeypatch.setattr(sys, "stdout", os.fdopen(write_end, "w"))
    return read_end


def test_a_pipe_is_gone_only_once_its_reader_closed_it(monkeypatch):
    read_end = stdout_on_a_pipe(monkeypatch)
    assert not reader_gone()
    os.close(read_end)
    assert reader_gone()


def test_a_replaced_stdout_is_never_taken_for_a_closed_pipe():
    assert not reader_gone()  # pytest's capture: no descriptor of its own to look at


def test_the_echo_stops_the_command_once_nobody_reads(monkeypatch):
    read_end = stdout_on_a_pipe(monkeypatch)
    stop = SignalStop(starting=False)
    echo = LinesUntilClosed(stop)
    echo("first")
    assert os.read(read_end, 100) == b"first\n" and not stop.is_set()
    os.close(read_end)
    echo("second")  # no BrokenPipeError out of it: paho's thread would log a traceback
    assert echo.closed and stop.is_set()
    echo("third")
    print("and a summary after it", flush=True)  # stdout now points at /dev/null
    assert os.readlink(f"/proc/self/fd/{sys.stdout.fileno()}") == os.devnull

"""SIGTERM and Ctrl-C as a stop request that a signal handler can set safely.

A handler runs on the main thread between two bytecodes, wherever that thread is. Setting a
`threading.Event` there takes the event's lock, which the main thread itself holds for a moment
inside `Event.wait`: a signal landing in that moment waits on it forever (seen under load: a
daemon that logged "received SIGTERM" and never stopped, until systemd killed it and the
outbox went unflushed). So the handler only writes an attribute, and waiting polls it.

While a command is still starting (loading a model, maybe building an engine) there is nothing
to wind down: a signal then interrupts it at once (`Interrupted`, exit 128 + the signal). So
does SIGTERM, like Ctrl-C, for a command that installs no handler of its own (convert,
calibrate, eval...): the exception unwinds, so temporary files are removed on the way out. Once a
stop is requested, further SIGTERM/SIGINT are ignored: the stop is bounded, and a second signal
during the interpreter's teardown (when Python puts the default handlers back) killed the
process after its clean stop, so scripts saw 143 or 130.

SIGHUP (the terminal or ssh session of a daemon started by hand went away) is a stop like
SIGTERM: its default ended the process at once, exit 129, with no summary, no `stopped` status
and the outbox lost. Where SIGHUP is ignored (`nohup edge run ...`), it stays ignored.
"""

from __future__ import annotations

import contextlib
import logging
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator
from types import FrameType
from typing import Any

from edge.interruption import RECEIVED, Interrupted

log = logging.getLogger("edge")

#: How often `SignalStop.wait` looks at the flag: the longest a stop waits to be noticed.
POLL_S = 0.05


class SignalStop:
    """A `StopRequest` set by SIGTERM, SIGINT or SIGHUP (or `set()`), with no lock anywhere."""

    def __init__(self, starting: bool) -> None:
        self._signal: str | None = None
        self._requested = False
        self._said = False
        self._starting = starting

    def started(self) -> None:
        """From now on a signal asks for a clean stop instead of interrupting."""
        self._starting = False

    def set(self) -> None:
        self._requested = True

    @property
    def received(self) -> str | None:
        """The signal that asked for the stop (`SIGTERM`...), None while none has."""
        return self._signal

    def is_set(self) -> bool:
        # read once: a signal handled between two reads (Python 3.10 runs handlers between
        # more bytecodes) would stop the caller without the line saying why
        requested = self._requested
        if requested and self._signal is not None and not self._said:
            self._said = True  # logged here, on the thread that waits: never in the handler
            log.info("received %s; stopping", self._signal)
        return requested

    def wait(self, timeout: float | None = None) -> bool:
        """True once set; False when `timeout` seconds pass first."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while not self.is_set():
            left = POLL_S if deadline is None else deadline - time.monotonic()
            if left <= 0:
                return False
            time.sleep(min(POLL_S, left))
        return True

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        if self._starting:
            raise Interrupted(signum)
        self._signal = signal.Signals(signum).name
        self._requested = True
        for each in SIGNALS:  # one stop; see the module docstring
            signal.signal(each, signal.SIG_IGN)


SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)


def _hangup_ignored() -> bool:
    """SIGHUP set to be ignored before edge started (`nohup`): it must stay so."""
    return signal.getsignal(signal.SIGHUP) is signal.SIG_IGN


@contextlib.contextmanager
def signals_interrupt() -> Iterator[None]:
    """Inside: SIGTERM raises `Interrupted` (a KeyboardInterrupt), as Ctrl-C does (SIGTERM's
    default would end the process where it stands, leaving temporary files); Ctrl-C gets the
    same handler unless SIGINT is ignored (a background job). On the way out the previous
    handlers are put back unless a command installed its own meanwhile (`edge run`'s stop,
    which ignores further signals). Only the main thread can install handlers; elsewhere a
    no-op.

    A handler's exception can land where Python only reports it and goes on (a finalizer that
    garbage collection runs); that report is not printed (it read as a traceback), and the
    signal stays received: an output about to be put in place, or the next frame read, raises
    it instead (`edge.interruption.raise_if_interrupted`), and the block's end does for a
    command that writes nothing, so it exits 130 or 143, not 0. Any other exception leaving
    the block after a signal is the signal's too (it broke an import, say)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    RECEIVED.clear()
    unraisable = sys.unraisablehook
    sys.unraisablehook = _quiet_about_interrupts(unraisable)
    previous = {signal.SIGTERM: signal.signal(signal.SIGTERM, _raise_interrupted)}
    if signal.getsignal(signal.SIGINT) is signal.default_int_handler:  # not ignored
        previous[signal.SIGINT] = signal.signal(signal.SIGINT, _raise_interrupted)
    if not _hangup_ignored():
        previous[signal.SIGHUP] = signal.signal(signal.SIGHUP, _raise_interrupted)
    try:
        yield
        if RECEIVED:
            raise Interrupted(RECEIVED[0])
    except KeyboardInterrupt:
        raise
    except BaseException as exc:
        # The signal's exception can come out as another: ONNX Runtime's native module,
        # interrupted while it loads, raises "ImportError: initialization failed" from it
        # (then an exit 1 with a traceback, or "onnxruntime is not installed")
        if RECEIVED:
            raise Interrupted(RECEIVED[0]) from exc
        raise
    finally:
        sys.unraisablehook = unraisable
        RECEIVED.clear()  # raised by now: nothing after the block is stopped by it
        for each, handler in previous.items():
            if signal.getsignal(each) is _raise_interrupted:
                signal.signal(each, handler)


def _raise_interrupted(signum: int, frame: FrameType | None) -> None:
    RECEIVED.append(signum)
    raise Interrupted(signum)


def _quiet_about_interrupts(hook: Callable[[Any], object]) -> Callable[[Any], object]:
    """`hook`, except for an `Interrupted` that Python could not raise (it is received, and
    raised where it can be): not a traceback for the user."""
    def reporting(unraisable: Any) -> object:
        if isinstance(unraisable.exc_value, Interrupted):
            return None
        return hook(unraisable)
    return reporting


def stop_on_signals(starting: bool = False) -> SignalStop:
    """A stop request that SIGTERM, SIGINT and SIGHUP (unless ignored) set from now on (call
    on the main thread); `starting`: until `started()`, they interrupt instead."""
    stop = SignalStop(starting)
    for each in SIGNALS:
        if each != signal.SIGHUP or not _hangup_ignored():
            signal.signal(each, stop._handle)
    return stop

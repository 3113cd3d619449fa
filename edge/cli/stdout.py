"""Standard output whose reader may go away: `edge monitor | head -5`.

Once the reading end of a pipe is closed, every write raises BrokenPipeError: on a subscriber's
callback thread that was one logged traceback per message while the watch went on forever, and
at the end of a command a traceback and exit 1. A command that streams lines (monitor, demo)
stops as on Ctrl-C instead, and any command whose output cannot be written ends without a
traceback, with 141 (128 + SIGPIPE: what a shell reports for `yes | head`).
"""

from __future__ import annotations

import select
import signal
import sys

from edge.cli.signals import SignalStop
from edge.stdio import to_devnull

PIPE_CLOSED_EXIT = 128 + signal.SIGPIPE


class LinesUntilClosed:
    """`echo` for a streaming command: prints and flushes each line; once stdout's reader is
    gone it asks `stop` to end the command and prints nothing more (`closed`)."""

    def __init__(self, stop: SignalStop) -> None:
        self._stop = stop
        self.closed = False

    def __call__(self, line: str) -> None:
        if self.closed:
            return
        try:
            print(line, flush=True)
        except BrokenPipeError:
            self.closed = True
            silence_stdout()
            self._stop.set()


def reader_gone() -> bool:
    """Whether stdout is a pipe or socket whose reader has closed it (so a BrokenPipeError came
    from stdout, not from some connection of the command's)."""
    try:
        descriptor = sys.stdout.fileno()
    except (AttributeError, OSError, ValueError):  # replaced, closed or not a real file
        return False
    poller = select.poll()
    poller.register(descriptor, select.POLLOUT)
    return any(events & select.POLLERR for _, events in poller.poll(0))


def silence_stdout() -> None:
    """Point stdout's descriptor at /dev/null, so that what is still buffered, and the
    interpreter's flush at exit, do not raise again."""
    to_devnull(sys.stdout.fileno())

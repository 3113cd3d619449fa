"""A command interrupted by Ctrl-C or SIGTERM: the exception, the signals received, and what it
says on its way out. Standard library only: `edge.__main__` says it when the interrupt comes
while the command line's own modules load."""

from __future__ import annotations

import contextlib
import json
import signal
import sys


class Interrupted(KeyboardInterrupt):
    """SIGINT or SIGTERM as an exception (`edge.cli.signals`); `exit_code` is 128 + the
    signal's number, as a shell reports it."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.exit_code = 128 + signum


#: The signals whose `Interrupted` a command's handler raised (`edge.cli.signals.
#: signals_interrupt`), in order. One that landed where Python only reports it and goes on (a
#: finalizer that garbage collection ran) is still here, so what would write an output stops
#: instead (`raise_if_interrupted`).
RECEIVED: list[int] = []


def raise_if_interrupted() -> None:
    """`Interrupted` for the first signal received, if any: called before an output is put in
    place, and between frames, so a Ctrl-C that a finalizer swallowed still ends the command
    with nothing written (a user check: all outputs written, then exit 130)."""
    if RECEIVED:
        raise Interrupted(RECEIVED[0])


def say_interrupted(exit_code: int, signal_name: str, json_line: bool) -> None:
    """`edge: interrupted` on stderr; with `json_line` (the command was given --json), also
    the JSON line a script reads last: `{"error": ..., "exit_code": exit_code}`."""
    print("\nedge: interrupted", file=sys.stderr)
    if json_line:
        error = f"interrupted ({signal_name}) before the command finished"
        with contextlib.suppress(OSError):  # a reader already gone
            sys.stdout.write(json.dumps({"error": error, "exit_code": exit_code},
                                        separators=(",", ":")) + "\n")
    with contextlib.suppress(OSError):
        sys.stdout.flush()
    sys.stderr.flush()


def interruption_behind(exc: BaseException) -> KeyboardInterrupt | None:
    """The Ctrl-C or signal (as KeyboardInterrupt) that `exc` was raised while handling, if
    any. A signal's exception can land anywhere, inside threading's own lock handling too,
    whose clean-up then fails with an error of its own (`RuntimeError: release unlocked lock`
    as `edge demo` started its MQTT thread): what happened is the interruption."""
    seen: set[int] = set()
    cause = exc.__context__
    while cause is not None and id(cause) not in seen:
        if isinstance(cause, KeyboardInterrupt):
            return cause
        seen.add(id(cause))
        cause = cause.__context__
    return None

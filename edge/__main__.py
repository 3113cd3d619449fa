"""The `edge` executable: `python -m edge`, and the `edge` command a pip install makes."""

from __future__ import annotations

import os
import signal
import sys
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from typing import NoReturn


def run() -> NoReturn:
    """`edge.cli.main`, then the end of the process.

    Extension modules load with SIGINT and SIGTERM held (`edge.native_imports`), and Ctrl-C
    while the command line's modules load and its arguments are parsed (numpy, OpenCV: the
    first few tenths of a second) ends it as quietly as later on, with 130, instead of a
    traceback through them. (Ctrl-C in the interpreter's own first few tens of milliseconds,
    before this runs, is Python's.)"""
    try:
        from edge.native_imports import hold_signals_while_extensions_load  # noqa: PLC0415 - guarded

        hold_signals_while_extensions_load()
        from edge.cli import main  # noqa: PLC0415 - guarded too

        code = main()  # which handles Ctrl-C itself once the command runs
    except KeyboardInterrupt as exc:
        from edge.interruption import say_interrupted  # noqa: PLC0415 - standard library only

        code = getattr(exc, "exit_code", 130)  # edge.cli.signals.Interrupted's, if it is one
        # the arguments may not be parsed yet: a --json anywhere asks for the JSON line
        say_interrupted(code, str(exc) or "SIGINT", "--json" in sys.argv[1:])
        os._exit(code)  # no teardown of modules that stopped half-imported
    # The command has finished and said so: a SIGTERM or Ctrl-C during the interpreter's
    # teardown (a few tenths of a second after `edge convert` with PyTorch loaded) killed it
    # with 143 or 130, so a script saw a finished conversion as failed.
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    sys.exit(code)


if __name__ == "__main__":
    run()

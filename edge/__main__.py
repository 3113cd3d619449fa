"""The `edge` executable: `python -m edge`, and the `edge` command a pip install makes."""

from __future__ import annotations

import os
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
    except KeyboardInterrupt:
        print("\nedge: interrupted", file=sys.stderr, flush=True)
        os._exit(130)  # no teardown of modules that stopped half-imported
    sys.exit(code)


if __name__ == "__main__":
    run()

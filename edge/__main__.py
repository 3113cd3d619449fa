"""The `edge` executable: `python -m edge`, and the `edge` command a pip install makes."""

import gc
import os
import sys
from typing import NoReturn

from edge.native_imports import hold_signals_while_extensions_load


def run() -> NoReturn:
    """`edge.cli.main`, then the end of the process.

    Extension modules load with SIGINT and SIGTERM held (`edge.native_imports`), and Ctrl-C
    while the command line's modules load and its arguments are parsed (numpy, OpenCV: the
    first few tenths of a second) ends it as quietly as later on, with 130, instead of a
    traceback through them.
    After the command, what is left is frozen out of the cyclic garbage collector: the
    interpreter's shutdown would otherwise walk every object numpy, ONNX, ONNX Runtime and
    pydantic made, in full collections whose garbage nothing would use again (0.05 s of the
    0.13 s after a calibration, on one core). Finalizers and atexit handlers still run;
    outputs are closed and flushed before this."""
    hold_signals_while_extensions_load()
    try:
        from edge.cli import main  # noqa: PLC0415 - inside the Ctrl-C guard

        code = main()  # which handles Ctrl-C itself once the command runs
    except KeyboardInterrupt:
        print("\nedge: interrupted", file=sys.stderr, flush=True)
        os._exit(130)  # no teardown of modules that stopped half-imported
    gc.freeze()
    sys.exit(code)


if __name__ == "__main__":
    run()

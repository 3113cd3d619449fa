"""`edge` as a user at a terminal starts it, from a test.

Python leaves SIGINT ignored when it starts ignored (a background job, `nohup`, some CI
runners), as a background job should; the user at a terminal has Ctrl-C. Tests that send
SIGINT start `edge` through this command so that Ctrl-C is what the user would press.
"""

from __future__ import annotations

import sys

_WITH_CTRL_C = ("import runpy, signal; signal.signal(signal.SIGINT, signal.default_int_handler); "
                "runpy.run_module('edge', run_name='__main__')")


def edge_at_a_terminal(*args: str) -> list[str]:
    """The command line that runs `edge *args` with Ctrl-C's default handler."""
    return [sys.executable, "-c", _WITH_CTRL_C, *args]

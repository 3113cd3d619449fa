"""What a command interrupted by Ctrl-C or SIGTERM says on its way out. Standard library only:
`edge.__main__` says it when the interrupt comes while the command line's own modules load."""

from __future__ import annotations

import contextlib
import json
import sys


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

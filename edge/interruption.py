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

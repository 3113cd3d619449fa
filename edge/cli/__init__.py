"""The `edge` command line. Exit codes: 0 ok, 1 runtime failure (a bug), 2 bad input.

Commands live in `device` (what runs on the camera box) and `workstation` (converting,
quantizing, evaluating); heavy libraries are imported inside the handlers that need them.
"""

from __future__ import annotations

import os

# Before anything imports numpy or OpenCV: each loads an OpenBLAS that starts a worker per core
# which spins for a while, busy or not. Nothing a command runs needs BLAS threads (ONNX Runtime
# has its own), and on a small device the spinning takes cores from the inference and decode
# threads: 0.3-0.5 CPU-seconds of a 3 s calibration on 2 cores. A user's setting wins.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
# OpenCV's own warnings repeat what a command says in its log (a camera that cannot be opened
# logs, on every retry, "Stream timeout triggered" and "can't be used to capture by name"
# beside the daemon's one warning); FFmpeg's errors, which name the cause ("Connection
# refused", "401 Unauthorized"), still print. OPENCV_LOG_LEVEL=WARNING brings them back.
os.environ.setdefault("OPENCV_LOG_LEVEL", "ERROR")
# ONNX Runtime's telemetry (1.32 on Linux, at least) keeps a device id and an event store under
# $HOME/.cache/Microsoft from its import on: a service user whose home does not exist got a
# coloured warning in every log (a user check), and a camera box has no business sending usage
# events out. ORT_DISABLE_TELEMETRY=0 brings it back.
os.environ.setdefault("ORT_DISABLE_TELEMETRY", "1")

import argparse
import importlib.util
import logging
import re
import sys
from collections.abc import Sequence
from typing import Any, NoReturn

from edge import __version__
from edge.cli import bench, collect, device, probe, workstation
from edge.cli.common import failed_with_json, print_json
from edge.cli.extras import command_extra, extra_modules, modules_unneeded, require_runtime
from edge.cli.signals import signals_interrupt
from edge.cli.stdout import PIPE_CLOSED_EXIT, reader_gone, silence_stdout
from edge.errors import EdgeError
from edge.install_hint import install_command
from edge.interruption import Interrupted, interruption_behind, say_interrupted
from edge.wording import likely_meant

#: argparse's words for a value outside an option's (or the command's) choices.
_INVALID_CHOICE = re.compile(r"invalid choice: '(?P<value>[^']*)' \(choose from (?P<choices>.*)\)")


class _Parser(argparse.ArgumentParser):
    """argparse, with a bad option value or an unknown argument said in one line: the message
    names the option and what it takes (or the name meant, for a misspelt option, choice or
    command), and a screen of usage above it would bury it. Missing arguments keep the usage,
    which is what they need, and name an unknown option given instead (`--imagse`).

    Abbreviated options are refused (with the full name suggested): `--max-image` would work
    until a later release adds another option that starts alike, and command lines live on in
    scripts and systemd units."""

    #: A command's: `edge`'s own options, which go before the command (`--log-level`).
    outer_options: Sequence[str] = ()
    #: A command's: the extra it needs beyond the core install, and modules that extra
    #: brings. Its help then says when one is missing here: `--help` printed everything and
    #: exited 0, and only running the command said what to install.
    needs_extra: tuple[str, tuple[str, ...]] | None = None
    #: A command's: fields its `--json` line carries on every failure, a refused command line
    #: included (`edge selftest`: `"passed": false`, as its README section promises).
    json_error_fields: tuple[tuple[str, Any], ...] = ()

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("allow_abbrev", False)
        super().__init__(*args, **kwargs)

    def format_help(self) -> str:
        text = super().format_help()
        if self.needs_extra is None or all(importlib.util.find_spec(module)
                                           for module in self.needs_extra[1]):
            return text
        extra = self.needs_extra[0]
        return (f"{text}\nNot installed here: {self.prog} needs the '{extra}' extra; install "
                f"it with:\n  {install_command(extra)}\n")

    def parse_known_args(self, args: Sequence[str] | None = None,  # type: ignore[override]
                         namespace: argparse.Namespace | None = None
                         ) -> tuple[argparse.Namespace, list[str]]:
        self._given = list(sys.argv[1:] if args is None else args)
        return super().parse_known_args(args, namespace)

    def exit(self, status: int = 0, message: str | None = None) -> NoReturn:
        """As argparse's, and a refused `--json` command line ends with its error's JSON line,
        as every other failure of a --json command does (a user check: `--mean 0.1,0.2
        --json` left stdout empty for the script reading its last line)."""
        if status == 2 and message and self._wants_json():
            sys.stderr.write(message)
            error = message.removeprefix(f"{self.prog}: error: ").strip()
            print_json({**dict(self.json_error_fields), "error": error, "exit_code": 2})
            sys.exit(2)
        super().exit(status, message)

    def _wants_json(self) -> bool:
        given = getattr(self, "_given", [])
        ends = given.index("--") if "--" in given else len(given)
        return "--json" in self._option_string_actions and "--json" in given[:ends]

    def error(self, message: str) -> NoReturn:
        hint = f" ({self.prog} --help lists the options)\n"
        if message.startswith("argument ") and ": " in message:
            taken = self._taken_as_value(message)
            if taken:
                self.exit(2, f"{self.prog}: error: {taken}; {self.prog} --help lists the "
                             "options)\n")
            self.exit(2, f"{self.prog}: error: {message}{_choice_meant(message)}{hint}")
        if message.startswith("unrecognized arguments: "):
            unknown = message.removeprefix("unrecognized arguments: ").split()
            self.exit(2, f"{self.prog}: error: {message}{self._meant(unknown)}{hint}")
        if message.startswith("the following arguments are required"):
            message += self._meant(getattr(self, "_given", []), unmatched=True)
        super().error(message)

    def _taken_as_value(self, message: str) -> str:
        """For an invalid choice given right after an unknown option (`edge --log DEBUG run`:
        DEBUG taken for the command), `--log is not an option of edge: did you mean
        --log-level? ('DEBUG', after it, was read as COMMAND` (the caller closes it); else
        nothing."""
        invalid = _INVALID_CHOICE.search(message)
        given = getattr(self, "_given", [])
        if invalid is None or invalid["value"] not in given[1:]:
            return ""
        at = given.index(invalid["value"], 1)
        meant = self._meant(given[at - 1:at], unmatched=True)
        argument = message.removeprefix("argument ").partition(":")[0]
        return (f"{meant.removeprefix('; ')} ({invalid['value']!r}, after it, was read as "
                f"{argument}" if meant else "")

    def _meant(self, given: Sequence[str], unmatched: bool = False) -> str:
        """`; --lables is not an option of edge convert: did you mean --labels?` for the first
        option among `given` that this command lacks, where one of its own is alike (or, with
        `unmatched`, whether or not); else nothing."""
        known = [o for o in self._option_string_actions if o.startswith("--")]
        for token in given:
            name = token.split("=", 1)[0]
            if not name.startswith("--") or name in known:
                continue  # a value, or an option
            if name in self.outer_options:
                return (f"; {name} is an option of edge itself: give it before the command "
                        f"(edge {name} ... {self.prog.removeprefix('edge ')} ...)")
            close = likely_meant(name, known)
            if close or unmatched:
                meant = f": did you mean {close}?" if close else ""
                return f"; {name} is not an option of {self.prog}{meant}"
        return ""


def _choice_meant(message: str) -> str:
    """`; did you mean calibrate?` for argparse's invalid choice of a misspelt name (a command,
    a --profile), else nothing."""
    invalid = _INVALID_CHOICE.search(message)
    if invalid is None:
        return ""
    close = likely_meant(invalid["value"], re.findall(r"'([^']*)'", invalid["choices"]))
    return f"; did you mean {close}?" if close else ""


LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")


def _log_level(text: str) -> str:
    """`--log-level` in either case (a config's `[log] level` is lower case); a bad one is
    named as it was typed."""
    if text.upper() not in LOG_LEVELS:
        raise argparse.ArgumentTypeError(f"invalid level {text!r} (choose from "
                                         f"{', '.join(LOG_LEVELS)}, in either case)")
    return text.upper()


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="edge", description="Edge inference runtime: camera -> CNN -> MQTT.")
    parser.add_argument("--version", action="version", version=f"edge {__version__}")
    parser.add_argument("--log-level", default="INFO", type=_log_level, metavar="LEVEL",
                        help=f"{', '.join(LOG_LEVELS)}, in either case (default INFO)")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    device.add_commands(commands)
    probe.add_command(commands)
    bench.add_command(commands)
    workstation.add_commands(commands)
    collect.add_commands(commands)
    outer = [name for name in parser._option_string_actions
             if name.startswith("--") and name != "--help"]
    for name, command_parser in commands.choices.items():  # whose usage and name its errors carry
        command_parser.set_defaults(command_parser=command_parser)
        if isinstance(command_parser, _Parser):
            command_parser.outer_options = outer
            extra = command_extra(name)
            if extra is not None:
                command_parser.needs_extra = (extra, extra_modules(extra))
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args, unknown = parser.parse_known_args(argv)
    command: argparse.ArgumentParser = args.command_parser
    if unknown:  # argparse would print the top-level usage, which lists no option of a command
        command.error(f"unrecognized arguments: {' '.join(unknown)}")
    logging.basicConfig(level=args.log_level, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        require_runtime(args.command,
                        modules_unneeded(args.command, getattr(args, "mqtt", None)))
        with signals_interrupt():  # commands that handle signals themselves replace it
            return int(args.handler(args))
    except KeyboardInterrupt as exc:
        _leave_interrupted(exc, args)
    except Exception as exc:
        interruption = interruption_behind(exc)
        if interruption is not None:  # an error in the interruption's own unwinding
            _leave_interrupted(interruption, args)
        if isinstance(exc, EdgeError):  # prefixed as argparse prefixes the command's own
            if getattr(args, "json", False):  # a script reading the last line learns why too
                return failed_with_json(command.prog, exc, {})
            print(f"{command.prog}: error: {exc}", file=sys.stderr)
            return 2
        if isinstance(exc, BrokenPipeError) and reader_gone():  # not a connection of its own
            silence_stdout()
            return PIPE_CLOSED_EXIT
        raise


def _leave_interrupted(exc: KeyboardInterrupt, args: argparse.Namespace) -> NoReturn:
    code = exc.exit_code if isinstance(exc, Interrupted) else 130
    say_interrupted(code, str(exc) or "SIGINT", getattr(args, "json", False))
    # Leave at once: interpreter teardown with native work still running on background
    # threads (an ONNX Runtime session being made) can abort the process. Every output is
    # written atomically (calibrate's staged and published together), so nothing half-written
    # is left behind.
    os._exit(code)


if __name__ == "__main__":
    sys.exit(main())

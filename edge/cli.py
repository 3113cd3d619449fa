"""The `edge` command line. Exit codes: 0 ok, 1 runtime failure (a bug), 2 bad input."""

from __future__ import annotations

import argparse
import json
import logging
import signal
import sys
import threading
from collections.abc import Sequence
from pathlib import Path
from types import FrameType
from typing import Any

from edge import __version__
from edge.errors import EdgeError

log = logging.getLogger("edge")


def _print_json(payload: dict[str, Any]) -> None:
    """The last stdout line of a --json command: one JSON object."""
    sys.stdout.write(json.dumps(payload, separators=(",", ":")) + "\n")
    sys.stdout.flush()


def cmd_demo(args: argparse.Namespace) -> int:
    from edge.demo import run_demo

    echo = print if not args.quiet else (lambda line: None)
    summary = run_demo(args.seconds, args.mqtt, seed=args.seed, fps=args.fps,
                       threads=args.threads, echo=echo)
    result = summary.as_dict()
    if args.json:
        _print_json(result)
    else:
        print(f"\nframes {summary.frames} in {summary.seconds:.1f} s ({summary.fps:.1f} FPS, "
              f"{summary.dropped_frames} dropped) on {summary.backend}")
        print(f"detection messages published {summary.published}, received {summary.received}")
        print(f"precision {summary.precision:.3f}  recall {summary.recall:.3f} "
              "(IoU 0.5, against the scene's ground truth)")
        print("latency p50 (ms): " + ", ".join(
            f"{stage} {value}" for stage, value in summary.latency_ms_p50.items()))
    return 0


def _stop_on_signals(stop: threading.Event) -> None:
    def handler(signum: int, frame: FrameType | None) -> None:
        log.info("received %s; stopping", signal.Signals(signum).name)
        stop.set()

    signal.signal(signal.SIGTERM, handler)
    signal.signal(signal.SIGINT, handler)


def cmd_run(args: argparse.Namespace) -> int:
    from edge.config import load_config
    from edge.daemon import Daemon

    config = load_config(args.config)
    daemon = Daemon(config)
    stop = threading.Event()
    _stop_on_signals(stop)
    daemon.start()
    summary = daemon.run(stop, duration=args.seconds)
    log.info("stopped after %d frames (%.1f FPS); %d detection messages published, %d dropped%s",
             summary.frames, summary.fps, summary.published, summary.dropped,
             "" if summary.flushed else "; the outbox could not be flushed before exit")
    if args.json:
        _print_json({"frames": summary.frames, "fps": round(summary.fps, 2),
                     "published": summary.published, "dropped": summary.dropped,
                     "flushed": summary.flushed})
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="edge", description="Edge inference runtime: camera -> CNN -> MQTT.")
    parser.add_argument("--version", action="version", version=f"edge {__version__}")
    parser.add_argument("--log-level", default="INFO",
                        choices=["DEBUG", "INFO", "WARNING", "ERROR"])
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    demo = commands.add_parser(
        "demo", help="run camera -> detector -> MQTT -> subscriber on a synthetic scene",
        description="Runs the daemon on a synthetic camera with the bundled detector, an "
                    "embedded MQTT broker (unless --mqtt) and a subscriber that scores the "
                    "detections against the scene's ground truth.")
    demo.add_argument("--seconds", type=float, default=20.0, help="how long to run (default 20)")
    demo.add_argument("--mqtt", metavar="URL", help="use this broker instead of the embedded one")
    demo.add_argument("--seed", type=int, default=1, help="scene seed (default 1)")
    demo.add_argument("--fps", type=float, default=15.0, help="camera frame rate (default 15)")
    demo.add_argument("--threads", type=int, default=0, help="inference threads (0: auto)")
    demo.add_argument("--quiet", action="store_true", help="do not print each detection")
    demo.add_argument("--json", action="store_true", help="end with one JSON summary line")
    demo.set_defaults(handler=cmd_demo)

    run = commands.add_parser("run", help="run the daemon from a TOML config",
                              description="Runs until SIGTERM/SIGINT (status 'stopped', outbox "
                                          "flushed, exit 0) or until every source ends.")
    run.add_argument("--config", type=Path, required=True, help="TOML config file")
    run.add_argument("--seconds", type=float, default=None, help="stop after this long")
    run.add_argument("--json", action="store_true", help="end with one JSON summary line")
    run.set_defaults(handler=cmd_run)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=args.log_level, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        return int(args.handler(args))
    except EdgeError as exc:
        print(f"edge: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())

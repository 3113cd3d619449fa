"""`edge probe`: try camera sources before (or without) running the daemon."""

from __future__ import annotations

import argparse
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from edge.cli.common import parse_positive_float, parse_positive_int, print_json

#: Seconds a trial may take by default: FFmpeg's open timeout for a stream (10 s) and the
#: frames after it.
DEFAULT_TIMEOUT_S = 15.0


def cmd_probe(args: argparse.Namespace) -> int:
    import cv2

    from edge.config import load_config
    from edge.errors import InputError
    from edge.files import require_output_folder, write_bytes_atomic
    from edge.sources.trial import checked_source, try_source

    if args.sources and args.config:
        raise InputError("give the sources to try or --config, not both")
    if not args.sources and not args.config:
        raise InputError("give the sources to try (edge probe rtsp://camera/stream ...) or "
                         "--config edge.toml for its cameras")
    named = ([(camera.name, camera.source) for camera in load_config(args.config).cameras]
             if args.config else [(f"source {i}", text) for i, text in
                                  enumerate(args.sources, 1)])
    for _, text in named:
        checked_source(text)  # what is malformed is refused before anything is opened
    if args.save is not None:
        require_output_folder(args.save, "--save")
    with ThreadPoolExecutor(len(named), thread_name_prefix="probe") as pool:
        trials = list(pool.map(lambda pair: try_source(pair[0], pair[1], args.frames,
                                                       args.timeout),
                               named))
    for trial in trials:
        print(trial.describe(), flush=True)
        if args.save is not None and trial.last_frame is not None:
            args.save.mkdir(exist_ok=True)
            saved = args.save / f"{_file_name(trial.name)}.jpg"
            ok, jpeg = cv2.imencode(".jpg", trial.last_frame, [cv2.IMWRITE_JPEG_QUALITY, 90])
            if ok:
                write_bytes_atomic(saved, jpeg.tobytes())
                print(f"  its last frame: {saved}", flush=True)
    if args.json:
        print_json({"sources": [trial.as_dict() for trial in trials],
                    "ok": all(trial.error is None for trial in trials)})
    return 0 if all(trial.error is None for trial in trials) else 1


def _file_name(name: str) -> str:
    return name.replace(" ", "-")


def add_command(commands: Any) -> None:
    probe = commands.add_parser(
        "probe", help="try camera sources: size, frame rate, or why they do not open",
        description="Opens each source as `edge run` would, reads --frames frames, and says "
                    "its frame size, the frame rate measured, how long the first frame took, "
                    "or why it failed (for RTSP, what the camera's server answered). Sources "
                    "are tried side by side. Exit 0 when every source delivered its frames, 1 "
                    "when one did not, 2 for a malformed source or option.")
    probe.add_argument("sources", nargs="*", metavar="SOURCE",
                       help="source URIs as a config's cameras.source (rtsp://..., "
                            "v4l2:///dev/video0, file:///path, synthetic://shapes)")
    probe.add_argument("--config", type=Path, help="try every camera of this TOML config")
    probe.add_argument("--frames", type=parse_positive_int, default=30,
                       help="frames to read from each source (default 30)")
    probe.add_argument("--timeout", type=parse_positive_float, default=DEFAULT_TIMEOUT_S,
                       help=f"seconds each source may take in all (default "
                            f"{DEFAULT_TIMEOUT_S:g})")
    probe.add_argument("--save", type=Path, metavar="DIR",
                       help="save each source's last frame as DIR/<camera>.jpg (to check "
                            "what it sees, and draw zones on)")
    probe.add_argument("--json", action="store_true", help="end with one JSON summary line")
    probe.set_defaults(handler=cmd_probe)

"""`edge probe`: try camera sources before (or without) running the daemon."""

from __future__ import annotations

import argparse
import os
import signal
import sys
from concurrent.futures import ThreadPoolExecutor, as_completed
from pathlib import Path
from typing import TYPE_CHECKING, Any

from edge.cli.common import parse_path, parse_positive_float, parse_positive_int, print_json
from edge.errors import SourceError

if TYPE_CHECKING:
    from edge.config import CameraConfig, Config
    from edge.object_filter import ObjectFilter
    from edge.objects_config import ZoneConfig
    from edge.sources import Snapshots
    from edge.sources.trial import SourceTrial

#: Seconds a trial may take by default: FFmpeg's open timeout for a stream (10 s) and the
#: frames after it.
DEFAULT_TIMEOUT_S = 15.0
#: Frames a trial reads by default ...
DEFAULT_FRAMES = 30
#: ... and of a snapshot camera: enough to measure its pace over the second half.
SNAPSHOT_FRAMES = 5


def cmd_probe(args: argparse.Namespace) -> int:
    from edge.cli.signals import stop_on_signals
    from edge.config import load_config
    from edge.errors import InputError
    from edge.files import require_model_file, require_output_folder
    from edge.sources.opencv import quiet_ffmpeg
    from edge.sources.trial import try_source

    if args.sources and args.config:
        raise InputError("give the sources to try or --config, not both")
    if not args.sources and not args.config:
        raise InputError("give the sources to try (edge probe rtsp://camera/stream ...) or "
                         "--config edge.toml for its cameras")
    quiet_ffmpeg()  # each source's failure is said, with why and the fix
    config = load_config(args.config) if args.config else None
    if config is not None:  # as `edge run` would refuse it, before the cameras are tried
        require_model_file(config.model.path, config.key("model.path"))
    if args.snapshot_interval is not None and config is not None:
        raise InputError("--snapshot-interval is for the sources given here; a config's "
                         "cameras set snapshot_interval_s in their own blocks")
    named = _checked_sources(args.sources, config, args.snapshot_interval)
    cameras = config.cameras if config is not None else []
    zones = {camera.name: camera.zones for camera in cameras if camera.zones}
    _check_zones_at_start(cameras)
    filters = _object_filters(config) if config is not None else {}
    misplaced: dict[str, str] = {}
    if args.save is not None:
        require_output_folder(args.save, "--save")
    stop = stop_on_signals()  # Ctrl-C and SIGTERM end every trial at its next frame
    with ThreadPoolExecutor(len(named), thread_name_prefix="probe") as pool:
        running = {pool.submit(try_source, name, text, *_trial_plan(args, snapshots), stop,
                               snapshots): index
                   for index, (name, text, snapshots) in enumerate(named)}
        trials: list[SourceTrial | None] = [None] * len(named)
        unsaved = 0
        for done in as_completed(running):  # each line as soon as its source is tried
            trial = trials[running[done]] = done.result()
            print(trial.describe(), flush=True)
            problem = _zones_problem(trial, zones.get(trial.name, [])) or \
                _masks_problem(trial, filters.get(trial.name))
            if problem is not None:
                misplaced[trial.name] = problem
                print(f"  {problem}", flush=True)
            if args.save is not None and trial.last_frame is not None:
                try:
                    print(f"  its last frame: {_saved(trial, args.save)}", flush=True)
                except OSError as exc:  # a full disk, a folder taken away meanwhile
                    unsaved += 1
                    print(f"  its last frame could not be saved in {args.save}: "
                          f"{exc.strerror or exc}", flush=True)
    tried = [trial for trial in trials if trial is not None]
    ok = all(trial.error is None for trial in tried) and not misplaced
    if args.json:
        print_json({"sources": [{**trial.as_dict(), **({"zones_error": misplaced[trial.name]}
                                                        if trial.name in misplaced else {})}
                                for trial in tried], "ok": ok})
    code = (128 + signal.Signals[stop.received].value if stop.received else
            0 if ok and not unsaved else 1)
    if any(trial.stuck for trial in tried):
        # a reader still inside OpenCV (a device that hangs opening): the interpreter's
        # teardown would abort under it, so leave at once, everything printed and written
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    return code


def _checked_sources(sources: list[str], config: Config | None,
                     snapshot_interval_s: float | None
                     ) -> list[tuple[str, str, Snapshots | None]]:
    """(name, source URI, how it is fetched as snapshots or None) of each source to try:
    `sources` (the command line's, each fetched as a snapshot every `snapshot_interval_s`
    where given, with a camera's default stall_s), or the cameras of `config`; what is
    malformed is refused before anything is opened, a camera's naming its config key, as
    `edge run` does."""
    from edge.config import MIN_SNAPSHOT_INTERVAL_S, CameraConfig
    from edge.errors import InputError
    from edge.sources import Snapshots, camera_error
    from edge.sources.trial import checked_source

    if config is None:
        if snapshot_interval_s is not None and snapshot_interval_s < MIN_SNAPSHOT_INTERVAL_S:
            raise InputError(f"--snapshot-interval {snapshot_interval_s:g} is under "
                             f"{MIN_SNAPSHOT_INTERVAL_S:g} s, more snapshots a second than a "
                             "camera makes; read a faster camera's stream instead")
        default_stall_s = CameraConfig.model_fields["stall_s"].default
        snapshots = (None if snapshot_interval_s is None
                     else Snapshots.within(snapshot_interval_s, default_stall_s))
        named = [(f"source {i}", text, snapshots) for i, text in enumerate(sources, 1)]
        for _, text, _ in named:
            checked_source(text, snapshots)
        return named
    cameras = []
    for index, camera in enumerate(config.cameras):
        interval = camera.snapshot_interval_s
        snapshots = None if interval is None else Snapshots.within(interval, camera.stall_s)
        try:
            checked_source(camera.source, snapshots)
        except SourceError as exc:
            raise camera_error(config.key(f"cameras.{index}.source"), camera.name,
                               exc) from None
        cameras.append((camera.name, camera.source, snapshots))
    return cameras


def _trial_plan(args: argparse.Namespace, snapshots: Snapshots | None) -> tuple[int, float]:
    """(frames, timeout in seconds) of one trial: as asked, else the defaults, which for a
    snapshot camera are `SNAPSHOT_FRAMES` and the time they take at its pace."""
    if snapshots is None:
        return (args.frames or DEFAULT_FRAMES,
                DEFAULT_TIMEOUT_S if args.timeout is None else args.timeout)
    frames = args.frames or SNAPSHOT_FRAMES
    needed = snapshots.timeout_s + (frames - 1) * snapshots.interval_s + 2.0
    return frames, max(DEFAULT_TIMEOUT_S, needed) if args.timeout is None else args.timeout


def _check_zones_at_start(cameras: list[CameraConfig]) -> None:
    """Refuse (ConfigError) the zones `edge run` refuses at start, before any camera opens:
    those no frame could fit, and those outside a frame size known before opening (a
    synthetic scene's, a local file's: a user check had probe exit 1 where run exits 2)."""
    from edge.zones import frame_size_at_start, zone_outlines, zones_for_frame

    for camera in cameras:
        outlines = zone_outlines(camera.name, camera.zones)
        size = frame_size_at_start(camera.source, camera.zones) if camera.zones else None
        if size is not None:
            zones_for_frame(camera.name, camera.zones, outlines, size)


def _object_filters(config: Config) -> dict[str, ObjectFilter]:
    """Each camera's object filter, as `edge run` builds it: labels the model lacks (in
    `[objects]`, masks, zones and `homeassistant.labels`) and masks that cannot be drawn, or
    reach outside a frame size known before opening, are refused (ConfigError) before any
    camera opens (a user check: the probe passed what the run refused)."""
    from edge.errors import ConfigError
    from edge.homeassistant import check_labels
    from edge.object_filter import object_filter_of
    from edge.spec import spec_from_onnx_file
    from edge.zones import zones_from_config

    spec = spec_from_onnx_file(config.model.path)
    threshold = config.model.score_threshold or spec.postprocess.score_threshold
    filters = {}
    for index, camera in enumerate(config.cameras):
        try:
            zones_from_config(camera.name, camera.zones, spec.labels, None)
        except ConfigError as exc:  # named after the config's file, as `edge run` names it
            raise ConfigError(f"{config.key('')}{exc}") from None
        filters[camera.name] = object_filter_of(config, index, spec.labels, threshold)
    if config.homeassistant.enabled:
        check_labels(config, spec.labels)
    return filters


def _masks_problem(trial: SourceTrial, objects: ObjectFilter | None) -> str | None:
    """Why the camera's pixel masks do not fit the frames its trial measured, if they do not."""
    if objects is None:
        return None
    return next((problem for size in trial.sizes
                 if (problem := objects.outside(*size)) is not None), None)


def _zones_problem(trial: SourceTrial, zones: list[ZoneConfig]) -> str | None:
    """Why the camera's `zones` do not fit the frames its trial measured, if they do not (a
    stream's size is known only once it streams, so `edge run` can say so only then)."""
    from edge.errors import ConfigError
    from edge.zones import zone_outlines, zones_for_frame

    if not zones:
        return None
    try:
        for size in trial.sizes:  # a folder's images may differ in size
            zones_for_frame(trial.name, zones, zone_outlines(trial.name, zones), size)
    except ConfigError as exc:
        return str(exc)
    return None


def _saved(trial: SourceTrial, folder: Path) -> Path:
    """The trial's last frame as `folder/<name>.jpg` (JPEG quality 90), written atomically."""
    import cv2

    from edge.files import write_bytes_atomic

    assert trial.last_frame is not None
    folder.mkdir(exist_ok=True)
    saved = folder / f"{_file_name(trial.name)}.jpg"
    ok, jpeg = cv2.imencode(".jpg", trial.last_frame, [cv2.IMWRITE_JPEG_QUALITY, 90])
    if not ok:
        raise SourceError(f"the last frame of {trial.name} could not be encoded as JPEG")
    write_bytes_atomic(saved, jpeg.tobytes())
    return saved


def _file_name(name: str) -> str:
    return name.replace(" ", "-")


def add_command(commands: Any) -> None:
    probe = commands.add_parser(
        "probe", help="try camera sources: size, frame rate, or why they do not open",
        description="Opens each source as `edge run` would, reads --frames frames, and says "
                    "its frame size, the frame rate measured, how long the first frame took, "
                    "or why it failed (for RTSP, what the camera's server answered). Sources "
                    "are tried side by side, each line printed as its source is done (OpenCV "
                    "opens one stream at a time, so a few seconds each). Exit 0 when every "
                    "source delivered its frames, 1 when one did not (or, with --config, its zones "
                    "do not fit the frames measured), 2 for a malformed source, zone or option, "
                    "130/143 on Ctrl-C/SIGTERM (what was found so far printed).")
    probe.add_argument("sources", nargs="*", metavar="SOURCE",
                       help="source URIs as a config's cameras.source (rtsp://..., "
                            "http://..., v4l2:///dev/video0, file:///path, synthetic://shapes)")
    probe.add_argument("--config", type=parse_path, help="try every camera of this TOML config")
    probe.add_argument("--frames", type=parse_positive_int, default=None,
                       help=f"frames to read from each source (default {DEFAULT_FRAMES}; "
                            f"{SNAPSHOT_FRAMES} of a snapshot camera)")
    probe.add_argument("--timeout", type=parse_positive_float, default=None,
                       help=f"seconds each source may take in all (default "
                            f"{DEFAULT_TIMEOUT_S:g}, or what a snapshot camera's frames take at "
                            "its pace); a stream still opening then is asked why for up to 2 s "
                            "more")
    probe.add_argument("--snapshot-interval", type=parse_positive_float, metavar="S",
                       help="fetch each http(s) source as a still image (a camera's snapshot "
                            "URL) every S seconds, as a camera's snapshot_interval_s does")
    probe.add_argument("--save", type=parse_path, metavar="DIR",
                       help="save each source's last frame as DIR/<camera>.jpg (a config's "
                            "camera names; source-N.jpg for sources given here), to check what "
                            "it sees and draw zones on")
    probe.add_argument("--json", action="store_true", help="end with one JSON summary line")
    probe.set_defaults(handler=cmd_probe)

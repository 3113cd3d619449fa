"""Device-side commands: demo, run, monitor, build-engine, selftest."""

from __future__ import annotations

import argparse
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from edge.cli.common import (
    add_tls_arguments,
    failed_with_json,
    parse_non_negative_int,
    parse_path,
    parse_positive_float,
    parse_positive_int,
    print_json,
    tls_files,
    warn_of_a_password_in,
)
from edge.cli.signals import stop_on_signals
from edge.cli.stdout import PIPE_CLOSED_EXIT, LinesUntilClosed
from edge.redact import redact_uri
from edge.wording import counted, events_among, rate_words

if TYPE_CHECKING:  # the daemon's modules load only for `edge run`
    from edge.daemon import RunSummary

log = logging.getLogger("edge")


def cmd_demo(args: argparse.Namespace) -> int:
    from edge.demo import run_demo

    # Ctrl-C or SIGTERM while it starts interrupts it (130, 143); once the camera runs, it
    # ends the run early, like --seconds passing: the summary scores what ran, exit 0
    stop = stop_on_signals(starting=True)
    if args.mqtt:
        warn_of_a_password_in(args.mqtt)
    lines = LinesUntilClosed(stop)
    echo = lines if not args.quiet else (lambda line: None)
    summary = run_demo(args.seconds, args.mqtt, seed=args.seed, fps=args.fps,
                       threads=args.threads, echo=echo, model=args.model, stop=stop,
                       running=stop.started, tls=tls_files(args))
    if lines.closed:  # the reader of its output went away: nothing more to say
        return PIPE_CLOSED_EXIT
    result = summary.as_dict()
    if args.json:
        print_json(result)
    else:
        print(f"\nframes {summary.frames} in {summary.seconds:.1f} s ({summary.fps:.1f} FPS, "
              f"{summary.dropped_frames} dropped) on {summary.backend}, model {summary.model}")
        print(f"QoS 1 messages (detections, events, counts) published {summary.published}, "
              f"received {summary.received}")
        print(f"precision {summary.precision:.3f}  recall {summary.recall:.3f} "
              "(IoU 0.5, against the scene's ground truth)")
        tracking, events = summary.tracking, summary.events
        if events["appearances"] == 0:  # stopped within the first frames: nothing to score
            print("tracking not scored: no scene object was in view long enough "
                  f"({counted(summary.frames, 'frame')} ran)")
        else:
            print(f"tracking IDF1 {tracking['idf1']:.3f}  MOTA {tracking['mota']:.3f}  identity "
                  f"switches {tracking['id_switches']}; events: {events['matched']} of "
                  f"{events['appearances']} scene objects with one new and one end "
                  f"({events['new']} new, {events['end']} end{events_beyond_objects(events)})")
        print("latency p50 (ms): " + ", ".join(
            f"{stage} {value}" for stage, value in summary.latency_ms_p50.items()))
        if summary.broker == "embedded":
            print("nothing was written to disk; the embedded broker, and what it held, went "
                  "with the demo (`edge run` with a config runs your cameras against your "
                  "own broker)")
    return 0


def events_beyond_objects(events: dict[str, int]) -> str:
    """The `new` events beyond one per scene object, said apart: tracks that followed no
    scene object (a false detection, tracked), and the rest (an object in view too briefly
    to be scored, or followed by two tracks in turn)."""
    extra = events["new"] - events["matched"]
    if extra <= 0:
        return ""
    unmatched = events.get("unmatched_tracks", 0)
    said = [f"{counted(unmatched, 'track')} that followed no scene object (a false detection, "
            "tracked)"] if unmatched else []
    if extra > unmatched:
        said.append(f"{extra - unmatched} from objects in view too briefly to score or "
                    "followed by two tracks in turn")
    return f"; {extra} new beyond one per object: {', '.join(said)}"


def _apart(summary: RunSummary) -> bool:
    """Whether the run's one line needs each camera's own: there are several, or the one
    camera was down for part of the run (the line's FPS counts the outage)."""
    if len(summary.cameras) != 1:
        return len(summary.cameras) > 1
    (camera,) = summary.cameras
    return camera.reconnects > 0 or camera.streamed_s < 0.9 * summary.seconds


def cmd_run(args: argparse.Namespace) -> int:
    # first: a signal while the daemon's modules load, or its model (or an engine build), cuts
    # the start short with a line and 128 + the signal, not a silent death
    stop = stop_on_signals(starting=True)
    from edge.config import load_config
    from edge.daemon import Daemon
    from edge.system import tune_malloc

    tune_malloc()
    config = load_config(args.config)
    if config.log.level is not None:  # the config's level wins over --log-level's default
        logging.getLogger().setLevel(config.log.level.upper())
    if args.no_build:
        config = config.model_copy(update={"model": config.model.model_copy(
            update={"build_engine": False})})
    daemon = Daemon(config)
    stop.started()  # from here a signal asks the running daemon for a clean stop
    daemon.start()
    summary = daemon.run(stop, duration=args.seconds)
    log.info("stopped after %s (%.1f FPS over the %.*f s run; %s dropped, replaced by newer "
             "ones); messages: %d produced%s = %d published + %d queued + %d dropped%s%s; %s "
             "(counts, discovery configs)%s", counted(summary.frames, "frame"), summary.fps,
             1 if summary.seconds < 10 else 0, summary.seconds,  # not "over the 0 s run"
             counted(summary.frames_dropped, "camera frame"), summary.produced,
             f" ({summary.recovered} from an earlier run)" if summary.recovered else "",
             summary.published, summary.queued, summary.dropped,
             events_among(summary.events_dropped),
             "" if summary.flushed else "; the outbox could not be flushed before exit",
             counted(summary.states_sent, "retained value") + " set",
             f"; of those published, this device's {', '.join(summary.not_back)} never came back "
             "from the broker (said above: its ACL or its message_size_limit)"
             if summary.not_back else "")
    for camera in summary.cameras if _apart(summary) else ():
        log.info("camera %s: %s, %s FPS over its %.*f s streaming; %s dropped%s", camera.name,
                 counted(camera.frames, "frame"), rate_words(camera.fps),
                 1 if camera.streamed_s < 10 else 0, camera.streamed_s,
                 counted(camera.frames_dropped, "camera frame"),
                 f"; {counted(camera.reconnects, 'reconnect')}" if camera.reconnects else "")
    # a timed run is a trial: a script must see a camera or a broker that never worked (a run
    # that a signal stopped still exits 0, or systemd would count every stop a failure)
    outcome = _outcome(summary, trial=args.seconds is not None and stop.received is None,
                       broker=redact_uri(config.mqtt.url))
    if args.json:  # "dropped": messages, as in the line above
        report: dict[str, Any] = {
            "frames": summary.frames, "fps": round(summary.fps, 2),
            "frames_dropped": summary.frames_dropped,
            "produced": summary.produced, "recovered": summary.recovered,
            "published": summary.published,
            "queued": summary.queued, "dropped": summary.dropped,
            "events_dropped": summary.events_dropped,
            "states_sent": summary.states_sent,
            "never_streamed": list(summary.never_streamed),
            "not_back": list(summary.not_back),
            "broker_reached": summary.broker_reached, "flushed": summary.flushed,
            "failure": summary.failure, "model_error": summary.model_error,
            "cameras": {camera.name: {
                "frames": camera.frames, "fps": round(camera.fps, 2),
                "streaming_s": round(camera.streamed_s, 1),
                "frames_dropped": camera.frames_dropped,
                "reconnects": camera.reconnects} for camera in summary.cameras}}
        if outcome is not None:  # as every command's --json ends on an error (README)
            report.update(error=outcome.error, exit_code=outcome.code)
        print_json(report)
    if outcome is None:
        return 0
    log.error("exiting %d%s: %s%s", outcome.code, outcome.why_this_code, outcome.error,
              outcome.see)
    return outcome.code


@dataclass(frozen=True)
class _Outcome:
    """Why a run exits other than 0, and with what: `error` as `--json` gives it; the log line
    adds why that code (`why_this_code`) and where the cause was said (`see`)."""

    code: int
    error: str
    why_this_code: str = ""
    see: str = ""


def _outcome(summary: RunSummary, trial: bool, broker: str) -> _Outcome | None:
    """None for a run that ends as it should (exit 0)."""
    if summary.gave_way is not None:
        return _Outcome(2, summary.gave_way, ", not to be restarted")
    if summary.model_error is not None:
        return _Outcome(2, summary.model_error, ", not to be restarted (re-convert the model)")
    if summary.failure is not None:
        return _Outcome(1, summary.failure, " so that systemd restarts the daemon")
    # the run's own length: a file source that ends first ends it (a user check: "in the 5 s
    # run" after a clip ended at 1.8 s)
    ran = f"{summary.seconds:.{1 if summary.seconds < 10 else 0}f} s run"
    if trial and summary.never_streamed:
        return _Outcome(1, f"{_cameras(summary.never_streamed)} delivered no frame in the "
                           f"{ran}", see=" (the reason is above)")
    if trial and not summary.broker_reached:
        # "reached" read wrong for a broker that answered and refused every connection
        return _Outcome(1, f"the MQTT broker {broker} accepted no connection in the {ran}, so "
                           "nothing was published", see=" (the reason is above)")
    return None


def _cameras(names: Sequence[str]) -> str:
    return f"camera {names[0]}" if len(names) == 1 else f"cameras {', '.join(names)}"


def cmd_monitor(args: argparse.Namespace) -> int:
    from edge.monitor import run_monitor

    stop = stop_on_signals()  # SIGTERM and Ctrl-C end the watch normally: exit 0
    warn_of_a_password_in(args.mqtt)
    lines = LinesUntilClosed(stop)
    summary = run_monitor(args.mqtt, args.prefix, args.seconds, args.frames,
                          echo=lines, stop=stop, events=args.events,
                          share_group=args.share_group, tls=tls_files(args),
                          quiet=args.quiet)
    if lines.closed:
        return PIPE_CLOSED_EXIT
    if args.json:
        print_json(summary)
    return 0


def cmd_build_engine(args: argparse.Namespace) -> int:
    from edge.tensorrt import load_tensorrt
    from edge.tensorrt.precision import check_engine_request

    check_engine_request(args.model, args.precision, calibration_cache=args.cache)
    trt = load_tensorrt()
    from edge.gpu.select import gpu_memory
    from edge.tensorrt.builder import BuildOptions
    from edge.tensorrt.precision import engine_precision
    from edge.tensorrt.store import resolve_engine
    from edge.tensorrt.versions import TrtVersion

    precision = engine_precision(args.model, args.precision, TrtVersion.parse(trt.__version__),
                                 calibration_cache=args.cache is not None)
    log.info("precision %s for %s (TensorRT %s)", precision, args.model, trt.__version__)
    options = BuildOptions(precision=precision, workspace_mb=args.workspace_mb,
                           calibration_cache=args.cache, timing_cache=args.timing_cache,
                           max_batch=args.max_batch, dla_core=args.dla_core)
    memory = gpu_memory(args.gpu_memory)
    try:
        info = memory.device()
        resolved = resolve_engine(args.model, options, info.identity, args.engine_dir,
                                  free_gpu_bytes=memory.free_bytes(), force=args.force)
    finally:
        memory.close()
    summary = {"engine": str(resolved.entry.engine), "sidecar": str(resolved.entry.sidecar),
               "built": resolved.built, "reason": resolved.reason,
               "build_seconds": round(resolved.sidecar.build_seconds, 1),
               "precision": precision, "gpu": info.identity.name}
    if args.json:
        print_json(summary)
    else:
        print(f"{'built' if resolved.built else 'reused'} {resolved.entry.engine} "
              f"({precision}, {info.identity.name}): {resolved.reason}")
    return 0


def cmd_selftest(args: argparse.Namespace) -> int:
    from edge.errors import EdgeError
    from edge.selftest import hardware_selftest

    try:
        result = hardware_selftest(args.frames, daemon_seconds=args.daemon_seconds)
    except EdgeError as exc:
        if not args.json:
            raise
        # `--json | tail -n 1 > selftest.json` gets why, in the report's own shape
        return failed_with_json("edge selftest", exc, {"passed": False})
    if args.json:
        print_json(result)
    else:
        for key, value in result.items():
            print(f"{key:28s} {value}")
    return 0 if result["passed"] else 1  # the failed checks are named in the output


def add_commands(commands: Any) -> None:
    demo = commands.add_parser(
        "demo", help="run camera -> detector -> MQTT -> subscriber on a synthetic scene",
        description="Runs the daemon on a synthetic camera with the bundled detector, an "
                    "embedded MQTT broker (unless --mqtt) and a subscriber that scores the "
                    "detections against the scene's ground truth.")
    demo.add_argument("--seconds", type=parse_positive_float, default=20.0,
                      help="how long to run (default 20)")
    demo.add_argument("--mqtt", metavar="URL",
                      help="use this broker instead of the embedded one (mqtt[s]://[user@]host"
                           "[:port]; a user's password in $EDGE_MQTT_PASSWORD)")
    demo.add_argument("--seed", type=int, default=1, help="scene seed (default 1)")
    demo.add_argument("--fps", type=parse_positive_float, default=15.0,
                      help="camera frame rate (default 15)")
    demo.add_argument("--threads", type=parse_non_negative_int, default=0,
                      help="inference threads (0: auto)")
    demo.add_argument("--model", type=parse_path, metavar="MODEL.onnx",
                      help="the bundled detector made into something else, e.g. its INT8 "
                           "calibration (`edge calibrate`); default: the bundled detector")
    demo.add_argument("--quiet", action="store_true", help="do not print each detection")
    demo.add_argument("--json", action="store_true", help="end with one JSON summary line")
    add_tls_arguments(demo)
    demo.set_defaults(handler=cmd_demo)

    run = commands.add_parser("run", help="run the daemon from a TOML config",
                              description="Runs until SIGTERM/SIGINT (status 'stopped', outbox "
                                          "flushed, exit 0) or until every source ends.")
    run.add_argument("--config", type=parse_path, required=True, help="TOML config file")
    run.add_argument("--seconds", type=parse_positive_float, default=None,
                     help="stop after this long; exit 1 if a camera delivered no frame or the "
                          "broker accepted no connection in that time (a signal before then stops "
                          "it with 0, as ever)")
    run.add_argument("--json", action="store_true", help="end with one JSON summary line")
    run.add_argument("--no-build", action="store_true",
                     help="TensorRT: a missing or stale engine is an error instead of a build")
    run.set_defaults(handler=cmd_run)

    monitor = commands.add_parser(
        "monitor", help="watch devices' status, detections and stats over MQTT (and save "
                        "their sampled frames)")
    monitor.add_argument("--mqtt", default="mqtt://127.0.0.1:1883", metavar="URL",
                         help="mqtt[s]://[user@]host[:port] (1883, or 8883 for mqtts://), "
                              "the password in $EDGE_MQTT_PASSWORD")
    monitor.add_argument("--prefix", default="edge/+",
                         help="topic prefix; edge/+ watches every device (default)")
    add_tls_arguments(monitor)
    monitor.add_argument("--frames", type=parse_path, metavar="DIR",
                         help="save sampled frames as DIR/<device>/<camera>/<frame_id>.jpg "
                              "with a .json sidecar of the frame's detections")
    monitor.add_argument("--events", action="store_true",
                         help="show tracked objects' events and counts instead of every frame")
    monitor.add_argument("--share-group", metavar="NAME",
                         help="MQTT 5 shared subscription: monitors of one group split the "
                              "messages between them")
    monitor.add_argument("--seconds", type=parse_positive_float,
                         help="stop after this long (default: Ctrl-C)")
    monitor.add_argument("--quiet", action="store_true",
                         help="print no per-message lines, only the connection's (connected, "
                              "lost, back)")
    monitor.add_argument("--json", action="store_true", help="end with a JSON summary line")
    monitor.set_defaults(handler=cmd_monitor)

    build = commands.add_parser(
        "build-engine", help="build (or reuse) the TensorRT engine for a converted model",
        description="Engines are cached next to the model (or --engine-dir), keyed by the ONNX "
                    "sha256, precision, shapes, TensorRT version and GPU; a stale one is rebuilt.")
    build.add_argument("model", type=parse_path, metavar="MODEL.onnx",
                       help="a converted model (`edge convert`, or `edge calibrate` for INT8)")
    build.add_argument("--precision", choices=["auto", "int8", "fp16", "fp32"], default="auto",
                       help="auto: int8 for a QDQ model, else fp16 (fp32 on TensorRT 11, "
                            "which builds strongly typed networks)")
    build.add_argument("--cache", type=parse_path,
                       help="INT8 from an FP32 model + calibration cache (TensorRT 8.5-10.x)")
    build.add_argument("--workspace-mb", type=parse_positive_int, default=1024,
                       help="GPU memory TensorRT may use for its tactics while building, in MB "
                            "(default 1024)")
    build.add_argument("--timing-cache", type=parse_path,
                       help="persisted timing cache (faster rebuilds)")
    build.add_argument("--max-batch", type=parse_positive_int, default=8,
                       help="for dynamic-batch models")
    build.add_argument("--dla-core", type=int, default=-1, help="Jetson DLA core (GPU fallback)")
    build.add_argument("--engine-dir", type=parse_path, metavar="DIR",
                       help="where engines are cached (default: next to the model)")
    build.add_argument("--gpu-memory", choices=["auto", "cuda-python", "pycuda"], default="auto",
                       help="the library that allocates GPU buffers (auto: cuda-python when "
                            "installed, else pycuda)")
    build.add_argument("--force", action="store_true", help="rebuild even if a match is cached")
    build.add_argument("--json", action="store_true", help="print the result as one JSON line")
    build.set_defaults(handler=cmd_build_engine)

    selftest = commands.add_parser("selftest", help="hardware acceptance test (TensorRT + GPU)")
    selftest.json_error_fields = (("passed", False),)
    selftest.add_argument("--hardware", action="store_true",
                          help="the test it runs (the default, so optional): build the demo "
                               "INT8 engine (also from a calibration cache "
                               "on TensorRT 8.5-10), rebuild a corrupted one, run the daemon "
                               "on two cameras with it; compare with ONNX Runtime FP32")
    selftest.add_argument("--frames", type=parse_positive_int, default=300,
                          help="synthetic frames each engine and ONNX Runtime are scored and "
                               "timed on (default 300)")
    selftest.add_argument("--daemon-seconds", type=parse_positive_float, default=10.0,
                          help="how long the daemon runs two synthetic cameras on the engine "
                               "(default 10)")
    selftest.add_argument("--json", action="store_true",
                          help="print the results as one JSON line")
    selftest.set_defaults(handler=cmd_selftest)

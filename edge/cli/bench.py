"""`edge bench MODEL`: the backend alone vs the whole daemon loop, N cameras, one run."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from edge.cli.common import (
    add_tls_arguments,
    parse_non_negative_float,
    parse_non_negative_int,
    parse_path,
    parse_positive_float,
    parse_positive_int,
    print_json,
    tls_files,
    warn_of_a_password_in,
)
from edge.errors import InputError
from edge.wording import counted

if TYPE_CHECKING:
    from edge.bench import BenchOptions


def cmd_bench(args: argparse.Namespace) -> int:
    from edge.bench import run_bench
    from edge.system import tune_malloc

    tune_malloc()  # as `edge run` does
    if args.mqtt:
        warn_of_a_password_in(args.mqtt)
    echo = print if not args.json else (lambda line: None)
    options = _options(args, echo)
    result = run_bench(options, echo=echo)
    if args.json:
        print_json(result)
    else:
        print(f"ratio (whole loop / backend alone at batch 1): {result['ratio']:.2f}; "
              f"{result['runners']} runner(s), {result['quantization']} model, peak RSS "
              f"{result['peak_rss_mb']} MB (of which about {result['replay_frames_mb']} MB the "
              "replay cameras' decoded frames, which live cameras do not hold)")
        for stage, values in result["latency_ms"].items():
            print(f"  {stage:12s} p50 {values['p50']:7.2f}  p90 {values['p90']:7.2f}  "
                  f"p99 {values['p99']:7.2f} ms")
    return 0


#: The options of `edge bench` named as the config's model keys they stand for.
_MODEL_OPTIONS = ("threads", "backend", "max_batch", "batch_timeout_ms")
_DEFAULTS = {"cameras": 1, "threads": 0, "backend": "auto", "max_batch": None,
             "batch_timeout_ms": 4.0}


def _options(args: argparse.Namespace, echo: Callable[[str], None]) -> BenchOptions:
    """What to measure: the options given, and for those not given, with --config, the
    config's model section and camera count (else the defaults)."""
    from edge.bench import BenchOptions

    given = {name: getattr(args, name) for name in _DEFAULTS if getattr(args, name) is not None}
    if args.config is None:
        if args.model is None:
            raise InputError("give the model to measure (edge bench MODEL.onnx) or a daemon "
                             "config to take it and its settings from (--config FILE)")
        settings = {**_DEFAULTS, **given}
        return BenchOptions(model=args.model, seconds=args.seconds, mqtt=args.mqtt,
                            tls=tls_files(args), **settings)
    from edge.config import load_config
    from edge.files import require_model_file

    config = load_config(args.config)
    section = config.model
    if args.model is None:  # as `edge run` would refuse it, naming the key
        require_model_file(section.path, config.key("model.path"))
    from_config = {"cameras": len(config.cameras),
                   **{key: getattr(section, key) for key in _MODEL_OPTIONS}}
    settings = {**from_config, **given}
    model = args.model or section.path
    echo(f"from {args.config}: model {model}{'' if args.model is None else ' (given)'}, "
         f"{counted(settings['cameras'], 'camera')} replayed"
         f"{'' if 'cameras' not in given else ' (--cameras)'} with its model settings; "
         f"broker {'--mqtt' if args.mqtt else 'a local one'} (not the config's)")
    return BenchOptions(model=model, seconds=args.seconds, mqtt=args.mqtt, tls=tls_files(args),
                        model_settings=section.model_dump(
                            exclude={"path", *_MODEL_OPTIONS}, exclude_defaults=True),
                        config=args.config,
                        camera_names=tuple(camera.name for camera in config.cameras),
                        backend_from=("--backend" if "backend" in given
                                      else config.key("model.backend")),
                        cameras_from=("--cameras" if "cameras" in given
                                      else f"the [[cameras]] of {args.config}"), **settings)


def add_command(commands: Any) -> None:
    bench = commands.add_parser(
        "bench", help="measure a model: the backend alone vs the whole daemon loop",
        description="Measures, in one run, the backend alone (batch 1 and the daemon's batch) "
                    "and the whole daemon loop with N replay cameras publishing to a real MQTT "
                    "broker (Mosquitto when installed, else the embedded one). ratio = "
                    "pipeline_fps / inference_fps at batch 1. Each phase is measured after a "
                    "1 s warm-up; the latency percentiles are over each camera's last 300 "
                    "frames, and published and dropped_messages count the whole run, warm-up "
                    "included.")
    bench.add_argument("model", type=parse_path, nargs="?", metavar="MODEL.onnx",
                       help="a converted model (with --config: instead of its model.path)")
    bench.add_argument("--config", type=parse_path, metavar="CONFIG",
                       help="a daemon config: measure its model with its model settings "
                            "(backend, precision, threads, max_batch, engine_dir...) and as "
                            "many replay cameras as it has; options given here win; the "
                            "broker is a local one (or --mqtt), never the config's")
    bench.add_argument("--cameras", type=parse_positive_int, default=None,
                       help="replay cameras the whole loop runs side by side (default 1, or "
                            "the config's)")
    bench.add_argument("--seconds", type=parse_positive_float, default=10.0,
                       help="measuring time of the whole loop (the backend alone gets a "
                            "third; default 10)")
    bench.add_argument("--threads", type=parse_non_negative_int, default=None,
                       help="inference threads (default 0: auto, one a physical core)")
    bench.add_argument("--backend", choices=["auto", "onnxruntime", "tensorrt"], default=None,
                       help="auto: TensorRT on a machine with it and a GPU, else ONNX Runtime")
    bench.add_argument("--mqtt", metavar="URL",
                       help="publish to this broker: mqtt[s]://[user@]host[:port], the password "
                            "in $EDGE_MQTT_PASSWORD")
    add_tls_arguments(bench)
    bench.add_argument("--max-batch", type=parse_positive_int, default=None,
                       help="frames of different cameras run together (model.max_batch; "
                            "default: the cameras, up to 8, for a dynamic-batch model, else the "
                            "model's batch)")
    bench.add_argument("--batch-timeout-ms", type=parse_non_negative_float, default=None,
                       help="how long a ready frame waits for other cameras' frames "
                            "(model.batch_timeout_ms; default 4)")
    bench.add_argument("--json", action="store_true", help="end with one JSON line")
    bench.set_defaults(handler=cmd_bench)

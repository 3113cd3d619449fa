"""`edge bench MODEL`: the backend alone vs the whole daemon loop, N cameras, one run."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from edge.cli.common import (
    add_tls_arguments,
    parse_non_negative_float,
    parse_non_negative_int,
    parse_positive_float,
    parse_positive_int,
    print_json,
    tls_files,
    warn_of_a_password_in,
)


def cmd_bench(args: argparse.Namespace) -> int:
    from edge.bench import BenchOptions, run_bench
    from edge.system import tune_malloc

    tune_malloc()  # as `edge run` does
    if args.mqtt:
        warn_of_a_password_in(args.mqtt)
    tls = tls_files(args)
    options = BenchOptions(model=args.model, cameras=args.cameras, seconds=args.seconds,
                           threads=args.threads, backend=args.backend, mqtt=args.mqtt, tls=tls,
                           max_batch=args.max_batch, batch_timeout_ms=args.batch_timeout_ms)
    result = run_bench(options, echo=print if not args.json else (lambda line: None))
    if args.json:
        print_json(result)
    else:
        print(f"ratio (whole loop / backend alone at batch 1): {result['ratio']:.2f}; "
              f"{result['runners']} runner(s), peak RSS {result['peak_rss_mb']} MB")
        for stage, values in result["latency_ms"].items():
            print(f"  {stage:12s} p50 {values['p50']:7.2f}  p90 {values['p90']:7.2f}  "
                  f"p99 {values['p99']:7.2f} ms")
    return 0


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
    bench.add_argument("model", type=Path, metavar="MODEL.onnx", help="a converted model")
    bench.add_argument("--cameras", type=parse_positive_int, default=1,
                       help="replay cameras the whole loop runs side by side (default 1)")
    bench.add_argument("--seconds", type=parse_positive_float, default=10.0,
                       help="measuring time of the whole loop (the backend alone gets a "
                            "third; default 10)")
    bench.add_argument("--threads", type=parse_non_negative_int, default=0,
                       help="inference threads (default 0: auto, one a physical core)")
    bench.add_argument("--backend", choices=["auto", "onnxruntime", "tensorrt"], default="auto",
                       help="auto: TensorRT on a machine with it and a GPU, else ONNX Runtime")
    bench.add_argument("--mqtt", metavar="URL",
                       help="publish to this broker: mqtt[s]://[user@]host[:port], the password "
                            "in $EDGE_MQTT_PASSWORD")
    add_tls_arguments(bench)
    bench.add_argument("--max-batch", type=parse_positive_int, default=None,
                       help="frames of different cameras run together (model.max_batch; "
                            "default: the cameras, up to 8, for a dynamic-batch model, else the "
                            "model's batch)")
    bench.add_argument("--batch-timeout-ms", type=parse_non_negative_float, default=4.0,
                       help="how long a ready frame waits for other cameras' frames "
                            "(model.batch_timeout_ms; default 4)")
    bench.add_argument("--json", action="store_true", help="end with one JSON line")
    bench.set_defaults(handler=cmd_bench)

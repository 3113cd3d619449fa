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


def _size(text: str) -> tuple[int, int]:
    """`640` or `480x640` (height x width)."""
    parts = text.lower().split("x")
    try:
        values = [int(p) for p in parts]
    except ValueError:
        values = []
    if len(values) not in (1, 2) or min(values, default=0) <= 0:
        raise argparse.ArgumentTypeError(f"{text!r} is not a size; use 640 or HEIGHTxWIDTH")
    return (values[0], values[-1])


def _triple(text: str) -> tuple[float, float, float]:
    try:
        values = tuple(float(v) for v in text.split(","))
    except ValueError:
        values = ()
    if len(values) != 3:
        raise argparse.ArgumentTypeError(f"{text!r} must be three numbers, e.g. 0.485,0.456,0.406")
    return values[0], values[1], values[2]


def _fraction(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not 0 < value < 1:
        raise argparse.ArgumentTypeError(f"{text!r} must be a number between 0 and 1")
    return value


def _batch(text: str) -> int | None:
    if text == "dynamic":
        return None
    if text.isdigit() and int(text) > 0:
        return int(text)
    raise argparse.ArgumentTypeError(f"{text!r}: use a positive number or 'dynamic'")


def cmd_convert(args: argparse.Namespace) -> int:
    from converters.convert import ConvertOptions, convert
    from converters.errors import ConversionError
    from converters.fold import Normalisation
    from converters.labels import labels_from_option
    from edge.spec import PostprocessSpec

    if not args.output.parent.is_dir():
        raise ConversionError(f"output directory {args.output.parent} does not exist; create it "
                              "or choose another -o path")
    try:
        module_args = json.loads(args.module_args) if args.module_args else None
    except json.JSONDecodeError as exc:
        raise ConversionError(f"--module-args is not valid JSON: {exc}") from exc
    if module_args is not None and not isinstance(module_args, dict):
        raise ConversionError("--module-args must be a JSON object")
    options = ConvertOptions(
        input_size=args.input_size,
        labels=labels_from_option(args.labels) if args.labels else None,
        camera_order=args.colour_order,
        normalisation=Normalisation(args.network_order, args.mean, args.std),
        task=args.task, head=args.head, module=args.module, module_args=module_args,
        batch=args.batch, opset=args.opset, stride=args.stride, simplify=args.simplify,
        verify=args.verify, tolerance=args.tolerance, name=args.name,
        postprocess=PostprocessSpec(score_threshold=args.score_threshold,
                                    iou_threshold=args.iou_threshold))
    converted = convert(args.source, options)
    converted.write(args.output)
    spec = converted.spec
    summary = {"output": str(args.output), "source_kind": converted.source_kind,
               "task": spec.task, "head": spec.head, "labels": len(spec.labels),
               "input": [spec.input.batch, spec.input.height, spec.input.width, 3],
               "max_abs_error": converted.parity.max_abs_error if converted.parity else None,
               "max_rel_error": converted.parity.max_rel_error if converted.parity else None}
    if args.json:
        _print_json(summary)
    else:
        print(f"wrote {args.output}: {spec.task} ({spec.head}), {len(spec.labels)} labels, "
              f"input uint8 {summary['input']} {spec.input.colour_order}")
        print(converted.parity.describe() if converted.parity else "parity not checked")
    return 0


def cmd_inspect(args: argparse.Namespace) -> int:
    try:
        from converters.model_report import format_report, inspect_model
    except ImportError as exc:
        from edge.errors import MissingDependencyError

        raise MissingDependencyError("onnx", "convert", "edge inspect") from exc
    report = inspect_model(args.model)
    if args.json:
        _print_json(report)
    else:
        print(format_report(report))
    return 0


def _add_convert(commands: Any) -> None:
    convert = commands.add_parser(
        "convert", help="convert a fine-tuned CNN to a self-describing ONNX model",
        description="SRC: an ONNX file (Ultralytics exports carry labels and size), a "
                    "TorchScript file, or a PyTorch state_dict checkpoint with --module. The "
                    "output takes raw uint8 camera frames; preprocessing is folded in.")
    convert.add_argument("source", type=Path, metavar="SRC")
    convert.add_argument("-o", "--output", type=Path, required=True, metavar="OUT.onnx")
    convert.add_argument("--input-size", type=_size, metavar="HxW",
                         help="network input size, e.g. 640 or 384x640")
    convert.add_argument("--labels", help="class names: a file (one per line or JSON list) or "
                                          "a comma list")
    convert.add_argument("--colour-order", choices=["BGR", "RGB"], default="BGR",
                         help="the camera frames' channel order (OpenCV: BGR; default)")
    convert.add_argument("--network-order", choices=["RGB", "BGR"], default="RGB",
                         help="the channel order the network was trained on (default RGB)")
    convert.add_argument("--mean", type=_triple, default=(0.0, 0.0, 0.0),
                         help="per-channel mean in 0..1 units, network order (default 0,0,0)")
    convert.add_argument("--std", type=_triple, default=(1.0, 1.0, 1.0),
                         help="per-channel std in 0..1 units (default 1,1,1: just /255)")
    convert.add_argument("--task", choices=["detect", "classify"])
    convert.add_argument("--head", choices=["anchor_free", "anchor_free_transposed", "yolov5",
                                            "logits", "probabilities"],
                         help="output layout when the shape alone is ambiguous")
    convert.add_argument("--module", help="for checkpoints: package.module:Class or file.py:Class")
    convert.add_argument("--module-args", help="JSON object of constructor arguments")
    convert.add_argument("--batch", type=_batch, default=1, help="batch size or 'dynamic'")
    convert.add_argument("--opset", type=int, default=17,
                         help="ONNX opset for PyTorch exports (default 17: TensorRT 8.5 parses it)")
    convert.add_argument("--stride", type=int, help="largest network stride (input sides must "
                                                    "divide by it; default 32 for detectors)")
    convert.add_argument("--name", help="model name in the spec (default: the file's stem)")
    convert.add_argument("--score-threshold", type=_fraction, default=0.25,
                         help="default score threshold stored in the spec (0..1)")
    convert.add_argument("--iou-threshold", type=_fraction, default=0.45,
                         help="default NMS IoU threshold stored in the spec (0..1)")
    convert.add_argument("--no-simplify", dest="simplify", action="store_false")
    convert.add_argument("--no-verify", dest="verify", action="store_false",
                         help="skip the parity check against the source model")
    convert.add_argument("--tolerance", type=float, default=1e-3,
                         help="parity: largest error relative to the output's range")
    convert.add_argument("--json", action="store_true")
    convert.set_defaults(handler=cmd_convert)

    inspect = commands.add_parser("inspect", help="show a model's spec, tensors, ops and "
                                                  "quantization")
    inspect.add_argument("model", type=Path)
    inspect.add_argument("--json", action="store_true")
    inspect.set_defaults(handler=cmd_inspect)


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
    _add_convert(commands)
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

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
    if args.no_build:
        config = config.model_copy(update={"model": config.model.model_copy(
            update={"build_engine": False})})
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


def cmd_monitor(args: argparse.Namespace) -> int:
    from edge.monitor import run_monitor

    summary = run_monitor(args.mqtt, args.prefix, args.seconds, args.frames,
                          echo=(lambda line: None) if args.quiet else print)
    if args.json:
        _print_json(summary)
    return 0


def cmd_build_engine(args: argparse.Namespace) -> int:
    from edge.tensorrt import load_tensorrt

    load_tensorrt()  # before anything else: the clearest error on a machine without it
    from edge.gpu.memory import gpu_memory
    from edge.runners.tensorrt_loader import precision_for
    from edge.tensorrt.builder import BuildOptions
    from edge.tensorrt.store import resolve_engine

    precision = "int8" if args.cache is not None and args.precision == "auto" else \
        precision_for(args.model, args.precision)
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
        _print_json(summary)
    else:
        print(f"{'built' if resolved.built else 'reused'} {resolved.entry.engine} "
              f"({precision}, {info.identity.name}): {resolved.reason}")
    return 0


def cmd_selftest(args: argparse.Namespace) -> int:
    from edge.selftest import hardware_selftest

    result = hardware_selftest(args.frames)
    if args.json:
        _print_json(result)
    else:
        for key, value in result.items():
            print(f"{key:28s} {value}")
    return 0


def cmd_calibrate(args: argparse.Namespace) -> int:
    from calibration.calibrate import (
        CalibrateOptions,
        calibrate,
        check_output_path,
        load_float_model,
    )
    from calibration.readers import frames_from
    from converters.files import write_bytes_atomic

    check_output_path(args.output)
    for extra in (args.cache, args.ranges):
        if extra is not None:
            check_output_path(extra)
    if args.cache is not None and args.profile != "tensorrt":
        log.info("writing a TensorRT cache alongside a %s-profile model", args.profile)
    model, spec = load_float_model(args.model)
    frames = frames_from(args.images, args.max_images, args.seed, args.min_images)
    options = CalibrateOptions(profile=args.profile, method=args.method,
                               percentile=args.percentile, exclude=tuple(args.exclude),
                               keep_float=args.keep_float, with_cache=args.cache is not None,
                               threads=args.threads, progress=not args.json)
    result = calibrate(model, spec, frames, options)
    cache = result.cache(args.trt_version, spec) if args.cache is not None else None
    write_bytes_atomic(args.output, result.model.SerializeToString())
    if cache is not None:
        cache.write(args.cache)
    if args.ranges is not None:
        result.ranges.save(args.ranges)
    summary: dict[str, Any] = {
        "output": str(args.output), "profile": args.profile, "method": args.method,
        "frames": result.frames, "skipped": len(frames.skipped),
        "tensors": len(result.ranges.ranges), "seconds": round(result.seconds, 2),
        "kept_float": result.excluded, "cache": str(args.cache) if args.cache else None}
    if args.report is not None:
        from calibration.report import write_report

        summary["report"] = str(write_report(args.report, args.model, args.output, result, spec,
                                             args.eval_data or args.images, frames))
    if args.json:
        _print_json(summary)
    else:
        print(f"wrote {args.output} ({args.profile} profile, {args.method}) from "
              f"{result.frames} frames in {result.seconds:.1f} s; {len(frames.skipped)} files "
              f"skipped; kept float: {', '.join(result.excluded) or 'none'}")
        if args.cache:
            print(f"wrote TensorRT calibration cache {args.cache}")
        if args.report:
            print(f"report: {summary['report']}")
    return 0


def cmd_eval(args: argparse.Namespace) -> int:
    from calibration.datasets import dataset_from
    from calibration.evaluate import evaluate
    from edge.runners.onnxruntime import OrtRunner

    with OrtRunner.from_path(args.model, slots=1) as runner:
        spec = runner.spec
    dataset = dataset_from(args.data, spec.labels, spec.task, args.max_images)
    accuracy = evaluate(args.model, dataset, args.threads)
    if args.json:
        _print_json(accuracy.as_dict())
    elif accuracy.task == "classify":
        print(f"top-1 {accuracy.top1:.4f} over {accuracy.images} images")
    else:
        print(f"mAP@0.5 {accuracy.map50:.4f}  mAP@0.5:0.95 {accuracy.map50_95:.4f}  "
              f"precision {accuracy.precision:.4f}  recall {accuracy.recall:.4f} "
              f"({accuracy.images} images, {dataset.kind})")
        for label, ap in accuracy.per_class_ap50.items():
            print(f"  {label:20s} AP@0.5 {ap:.4f}  AP@0.5:0.95 {accuracy.per_class_ap[label]:.4f}")
    return 0


def _add_calibrate(commands: Any) -> None:
    calibrate = commands.add_parser(
        "calibrate", help="quantize a converted model to INT8 (QDQ ONNX, TensorRT cache)",
        description="Streams calibration frames through the FP32 model, computes per-tensor "
                    "ranges and writes a QDQ model for TensorRT (symmetric int8) or ONNX "
                    "Runtime CPU (uint8 activations).")
    calibrate.add_argument("model", type=Path, metavar="MODEL.onnx")
    calibrate.add_argument("--images", required=True,
                           help="image folder, video file, or synthetic://shapes?seed=N")
    calibrate.add_argument("-o", "--output", type=Path, required=True, metavar="OUT.onnx")
    calibrate.add_argument("--profile", choices=["tensorrt", "cpu"], default="tensorrt")
    calibrate.add_argument("--method", choices=["mse", "entropy", "percentile", "minmax"],
                           default="mse",
                           help="range algorithm (default mse; entropy is TensorRT's)")
    calibrate.add_argument("--percentile", type=float, default=99.99)
    calibrate.add_argument("--max-images", type=int, default=500)
    calibrate.add_argument("--min-images", type=int, default=8)
    calibrate.add_argument("--seed", type=int, default=0, help="subset selection seed")
    calibrate.add_argument("--exclude", nargs="*", default=[], metavar="NODE",
                           help="node names to keep in float")
    calibrate.add_argument("--keep-float", type=int, default=0, metavar="N",
                           help="also keep the N layers with the worst SQNR in float")
    calibrate.add_argument("--cache", type=Path, help="also write a TensorRT calibration cache")
    calibrate.add_argument("--trt-version", default="10.3.0",
                           help="TensorRT version the cache is for (8.5-10.x; default 10.3.0)")
    calibrate.add_argument("--ranges", type=Path, help="also write the ranges as JSON")
    calibrate.add_argument("--report", type=Path, metavar="DIR",
                           help="write an FP32-vs-INT8 accuracy report (Markdown + PNG)")
    calibrate.add_argument("--eval-data", type=Path,
                           help="labelled data for the report (default: --images)")
    calibrate.add_argument("--threads", type=int, default=0)
    calibrate.add_argument("--json", action="store_true")
    calibrate.set_defaults(handler=cmd_calibrate)

    evaluate = commands.add_parser("eval", help="mAP / top-1 of a model on labelled data")
    evaluate.add_argument("model", type=Path)
    evaluate.add_argument("--data", type=Path, required=True,
                          help="YOLO dataset folder, COCO JSON, or class folders")
    evaluate.add_argument("--max-images", type=int)
    evaluate.add_argument("--threads", type=int, default=0)
    evaluate.add_argument("--json", action="store_true")
    evaluate.set_defaults(handler=cmd_eval)


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
    run.add_argument("--no-build", action="store_true",
                     help="TensorRT: a missing or stale engine is an error instead of a build")
    run.set_defaults(handler=cmd_run)

    monitor = commands.add_parser(
        "monitor", help="watch devices' status, detections, stats and frames over MQTT")
    monitor.add_argument("--mqtt", default="mqtt://127.0.0.1:1883", metavar="URL")
    monitor.add_argument("--prefix", default="edge/+",
                         help="topic prefix; edge/+ watches every device (default)")
    monitor.add_argument("--frames", type=Path, metavar="DIR",
                         help="save received JPEG frames under DIR/<device>/<camera>/")
    monitor.add_argument("--seconds", type=float, help="stop after this long (default: Ctrl-C)")
    monitor.add_argument("--quiet", action="store_true", help="print no per-message lines")
    monitor.add_argument("--json", action="store_true", help="end with a JSON summary line")
    monitor.set_defaults(handler=cmd_monitor)

    build = commands.add_parser(
        "build-engine", help="build (or reuse) the TensorRT engine for a converted model",
        description="Engines are cached next to the model (or --engine-dir), keyed by the ONNX "
                    "sha256, precision, shapes, TensorRT version and GPU; a stale one is rebuilt.")
    build.add_argument("model", type=Path, metavar="MODEL.onnx")
    build.add_argument("--precision", choices=["auto", "int8", "fp16", "fp32"], default="auto",
                       help="auto: int8 for a QDQ model, else fp16")
    build.add_argument("--cache", type=Path,
                       help="INT8 from an FP32 model + calibration cache (TensorRT 8.5-10.x)")
    build.add_argument("--workspace-mb", type=int, default=1024)
    build.add_argument("--timing-cache", type=Path, help="persisted timing cache (faster rebuilds)")
    build.add_argument("--max-batch", type=int, default=8, help="for dynamic-batch models")
    build.add_argument("--dla-core", type=int, default=-1, help="Jetson DLA core (GPU fallback)")
    build.add_argument("--engine-dir", type=Path)
    build.add_argument("--gpu-memory", choices=["auto", "cuda-python", "pycuda"], default="auto")
    build.add_argument("--force", action="store_true", help="rebuild even if a match is cached")
    build.add_argument("--json", action="store_true")
    build.set_defaults(handler=cmd_build_engine)

    selftest = commands.add_parser("selftest", help="hardware acceptance test (TensorRT + GPU)")
    selftest.add_argument("--hardware", action="store_true", required=True,
                          help="build the demo INT8 engine and compare it with ONNX Runtime")
    selftest.add_argument("--frames", type=int, default=300)
    selftest.add_argument("--json", action="store_true")
    selftest.set_defaults(handler=cmd_selftest)
    _add_convert(commands)
    _add_calibrate(commands)
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

"""Workstation commands: convert, inspect, calibrate, eval."""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import math
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, get_args

from edge.cli.common import (
    parse_batch,
    parse_crop_fraction,
    parse_fraction,
    parse_location,
    parse_non_negative_int,
    parse_opset,
    parse_pad_value,
    parse_path,
    parse_percentile,
    parse_positive_float,
    parse_positive_int,
    parse_size,
    parse_triple,
    print_json,
    recover_model_argument,
)
from edge.cli.field import (
    add_drift_reference_argument,
    add_eval_arguments,
    cmd_field_eval,
    labelled_images,
    write_drift_reference,
)
from edge.errors import EdgeError, InputError, MissingDependencyError
from edge.files import (
    StagedOutputs,
    refuse_overwriting,
    require_onnx_name,
    require_output_file,
    require_report_folder,
    write_bytes_atomic,
    write_failures_named,
)
from edge.opsets import DEFAULT_OPSET, MIN_OPSET
from edge.resizing import (
    CROP_FRACTION_HELP,
    INTERPOLATION_HELP,
    PAD_VALUE_HELP,
    RESIZE_FIELDS,
    RESIZE_HELP,
    Interpolation,
    Resize,
    resize_words,
)
from edge.system import usable_cores
from edge.wording import counted

if TYPE_CHECKING:
    import numpy as np
    import numpy.typing as npt

    from calibration.evaluate import Accuracy
    from calibration.readers import FrameSet
    from calibration.report import Report
    from calibration.result import Calibrated
    from converters.fold import Normalisation
    from edge.spec import InputSpec, ModelSpec
    from edge.tensorrt.calibration_cache import CalibrationCache

log = logging.getLogger("edge")

DEFAULT_TRT_VERSION = "10.3.0"  # JetPack 6

#: Third-party modules the workstation commands need, all from the `convert` extra (protobuf
#: comes with onnx; Pillow, a core dependency, also with matplotlib, so installing the extra
#: brings a missing one back). A missing module outside this set is a bug and is not disguised.
CONVERT_EXTRA_MODULES = {"onnx", "onnxruntime", "onnxsim", "torch", "google", "matplotlib",
                         "tqdm", "PIL"}
#: Those that need only onnx beside the device's onnxruntime and OpenCV (no torch; PyYAML
#: reads a dataset's data.yaml): a device with the `cpu` extra can inspect, calibrate and
#: evaluate a converted model with them.
ONNX_ONLY_COMMANDS = ("edge inspect", "edge calibrate", "edge eval")
ONNX_ALONE = "'onnx>=1.16' 'ml_dtypes<0.7' 'pyyaml>=6'"


@contextlib.contextmanager
def _needs_convert_extra(command: str) -> Iterator[None]:
    """Turn a missing `convert`-extra module into an exit-2 error with the install command."""
    try:
        yield
    except ModuleNotFoundError as exc:
        top = (exc.name or "").partition(".")[0]
        if top not in CONVERT_EXTRA_MODULES:
            raise
        alone = ONNX_ALONE if top == "onnx" and command in ONNX_ONLY_COMMANDS else None
        raise MissingDependencyError(top, "convert", command, alone) from exc


def cmd_convert(args: argparse.Namespace) -> int:
    with _needs_convert_extra("edge convert"):
        return _convert(args)


def _normalisation(args: argparse.Namespace) -> Normalisation:
    """--network-order, --mean and --std, each its default where not given."""
    from converters.fold import Normalisation

    default = Normalisation()
    return Normalisation(args.network_order or default.colour_order,
                         args.mean if args.mean is not None else default.mean,
                         args.std if args.std is not None else default.std)


def _convert(args: argparse.Namespace) -> int:
    from converters.convert import ConvertOptions, convert
    from converters.errors import ConversionError
    from converters.labels import labels_from_option
    from edge.spec import PostprocessSpec

    require_output_file(args.output)
    require_onnx_name(args.output)
    refuse_overwriting(args.output, args.source)
    try:
        module_args = json.loads(args.module_args) if args.module_args else None
    except json.JSONDecodeError as exc:
        raise ConversionError(f"--module-args is not valid JSON: {exc}") from exc
    if module_args is not None and not isinstance(module_args, dict):
        raise ConversionError("--module-args must be a JSON object")
    options = ConvertOptions(
        input_size=args.input_size,
        labels=labels_from_option(args.labels) if args.labels is not None else None,
        camera_order=args.colour_order,
        normalisation=_normalisation(args),
        stated=frozenset(name for name in ("network_order", "mean", "std", "opset")
                         if getattr(args, name) is not None),
        resize=args.resize, crop_fraction=args.crop_fraction, pad_value=args.pad_value,
        interpolation=args.interpolation, task=args.task, head=args.head,
        head_output=args.head_output,
        module=args.module, module_args=module_args, weights_entry=args.weights_entry,
        batch=_batch_option(args.batch), opset=args.opset or DEFAULT_OPSET, stride=args.stride,
        simplify=args.simplify, verify=args.verify, tolerance=args.tolerance, name=args.name,
        postprocess=PostprocessSpec(score_threshold=args.score_threshold,
                                    iou_threshold=args.iou_threshold))
    converted = convert(args.source, options)
    with write_failures_named([args.output]):
        converted.write(args.output)
    spec = converted.spec
    summary = {"output": str(args.output), "source_kind": converted.source_kind,
               "task": spec.task, "head": spec.head, "labels": len(spec.labels),
               "input": [spec.input.batch, spec.input.height, spec.input.width, 3],
               "resize": spec.input.resize, "crop_fraction": spec.input.crop_fraction,
               "pad_value": spec.input.pad_value, "interpolation": spec.input.interpolation,
               "max_abs_error": converted.parity.max_abs_error if converted.parity else None,
               "max_rel_error": converted.parity.max_rel_error if converted.parity else None,
               "notes": list(converted.notes)}
    if args.json:
        print_json(summary)
    else:
        for note in converted.notes:
            print(f"note: {note}")
        shape = (f"[{spec.input.batch or 'batch'}, {spec.input.height}, {spec.input.width}, "
                 "3]")  # not a Python list's text, ['batch', ...] (a user check)
        print(f"wrote {args.output}: {spec.task} ({spec.head}), "
              f"{counted(len(spec.labels), 'label')}, input uint8 {shape} "
              f"{spec.input.colour_order}, frames by "
              f"{resize_words(**spec.input.model_dump(include=set(RESIZE_FIELDS)))}")
        print(converted.parity.describe() if converted.parity else "parity not checked")
    return 0


def _batch_option(value: int | str | None) -> int | Literal["source"] | None:
    """--batch absent: what the source has; `dynamic`: None."""
    if value is None:
        return "source"
    return None if value == "dynamic" else int(value)


def cmd_inspect(args: argparse.Namespace) -> int:
    from edge.tensorrt.calibration_cache import looks_like_cache

    if args.model.suffix in (".engine", ".plan") and not _onnx_content(args.model):
        return _inspect_engine(args)
    if looks_like_cache(args.model):
        return _inspect_cache(args)
    if args.model.suffix == ".json" and _looks_like_ranges(args.model):
        return _inspect_ranges(args)
    if args.model.suffix == ".cache" and args.model.is_file():
        raise InputError(f"{args.model} is not a TensorRT calibration cache: its first line "
                         "would be a header like TRT-100300-EntropyCalibration2, as `edge "
                         "calibrate --cache` writes (a TensorRT timing cache, also .cache, is "
                         "binary and holds no ranges); edge inspect takes a calibration cache, "
                         "an .onnx model or an .engine")
    with _needs_convert_extra("edge inspect"):
        from converters.model_report import format_report, inspect_model

        report = inspect_model(args.model)
    if args.json:
        print_json(report)
    else:
        print(format_report(report))
    return 0


def _onnx_content(path: Path) -> bool:
    """Whether `path` begins as an ONNX file does (a model renamed .engine is still one)."""
    from edge.files import ONNX_FIRST_BYTE

    try:
        with path.open("rb") as file:
            return file.read(1) == ONNX_FIRST_BYTE
    except OSError:
        return False


def _inspect_cache(args: argparse.Namespace) -> int:
    """A TensorRT calibration cache (`edge calibrate --cache`): its TensorRT version, how many
    tensors it scales and over what range."""
    from edge.tensorrt.calibration_cache import (
        ALGORITHM,
        SMALLEST_AMAX,
        CalibrationCache,
        trt_version_text,
    )

    cache = CalibrationCache.read(args.model)  # refused where it holds no scales
    amax = {name: 127.0 * scale for name, scale in cache.scales.items()}
    smallest, largest = min(amax.values()), max(amax.values())
    # a user check: a scale that lost a hex digit in editing (1.9e-34) read as any other
    tiny = [name for name, value in amax.items() if value < SMALLEST_AMAX]
    report = {"calibration_cache": str(args.model), "trt_version": trt_version_text(cache.version),
              "algorithm": cache.algorithm, "tensors": len(cache.scales),
              # significant digits: a range of 1.5e-34 rounded to 6 places read as 0
              "amax_min": float(f"{smallest:.6g}"), "amax_max": float(f"{largest:.6g}"),
              "amax_below_calibrated": len(tiny)}
    if tiny:
        log.warning("%s: %s with a range (scale x 127) under %g, which edge calibrate never "
                    "writes (first: %s, %.3g): a hex digit lost in editing? Write the cache "
                    "again with `edge calibrate --cache`", args.model,
                    counted(len(tiny), "tensor"), SMALLEST_AMAX, tiny[0], amax[tiny[0]])
    if args.json:
        print_json(report)
        return 0
    # edge calibrate writes the header TensorRT reads for every method it chose the ranges by
    header = (f"header {cache.algorithm}, whatever method chose the ranges"
              if cache.algorithm == ALGORITHM else cache.algorithm)
    print(f"{args.model}: TensorRT calibration cache for TensorRT {report['trt_version']} "
          f"({header}), {counted(len(cache.scales), 'tensor')}")
    print(f"ranges: the tensors' largest |x| (scale x 127) from {smallest:.4g} to "
          f"{largest:.4g}")
    print("read by `edge build-engine MODEL --cache FILE` with the FP32 model it was made from "
          "(implicit quantization, TensorRT 8.5-10.x)")
    return 0


def _looks_like_ranges(path: Path) -> bool:
    from calibration.ranges import TensorRanges

    return TensorRanges.looks_like_file(path)


def _inspect_ranges(args: argparse.Namespace) -> int:
    """A ranges file (`edge calibrate --ranges`): the method, frames and tensors behind it (a
    user check: it was called "not an ONNX model ... Wire format was corrupt")."""
    import json

    from calibration.ranges import TensorRanges

    ranges = TensorRanges.load(args.model)  # refused, naming the file, where it is damaged
    amax = [tensor.amax for tensor in ranges.ranges.values()] or [0.0]
    percentile = json.loads(args.model.read_text()).get("percentile")
    report = {"ranges_file": str(args.model), "method": ranges.method, "percentile": percentile,
              "frames": ranges.frames, "tensors": len(ranges.ranges),
              "amax_min": round(min(amax), 6), "amax_max": round(max(amax), 6)}
    if args.json:
        print_json(report)
        return 0
    method = f"{ranges.method} at {percentile:g}%" if percentile is not None else ranges.method
    print(f"{args.model}: ranges of {counted(len(ranges.ranges), 'tensor')} by {method}, from "
          f"{counted(ranges.frames, 'calibration frame')}; largest |x| (amax) from "
          f"{report['amax_min']:.4g} to {report['amax_max']:.4g}")
    print("written by `edge calibrate --ranges` for reading (JSON: each tensor's minimum, "
          "maximum and amax); the INT8 model holds its scales itself")
    return 0


def _inspect_engine(args: argparse.Namespace) -> int:
    """A TensorRT engine is opaque without TensorRT; its sidecar says what it is."""
    from dataclasses import asdict

    from edge.errors import ModelError
    from edge.tensorrt.engine_cache import Sidecar, file_sha256
    from edge.tensorrt.precision import computes_in

    sidecar_path = args.model.with_suffix(".json")
    if not args.model.is_file():
        raise ModelError(f"engine {args.model} does not exist")
    if not sidecar_path.is_file():
        raise ModelError(f"engine {args.model} has no sidecar {sidecar_path.name}; it was not "
                         "built by `edge build-engine`, so its spec and key are unknown")
    sidecar = Sidecar.read(sidecar_path)
    key = sidecar.key
    # The cache names an engine by its key's precision and digest: a sidecar edited to claim
    # another precision no longer matches the name (and the cache rebuilds it).
    named = args.model.name.endswith(f".{key.precision}.{key.digest}{args.model.suffix}")
    intact = named and file_sha256(args.model) == sidecar.engine_sha256
    report = {"engine": str(args.model), "key": asdict(key),
              "computes_in": computes_in(key.precision, key.trt_version),
              "spec": json.loads(sidecar.spec.to_json()), "intact": intact,
              "build_seconds": sidecar.build_seconds}
    if args.json:
        print_json(report)
    else:
        print(f"{args.model}: {key.precision} engine for {sidecar.spec.name} "
              f"({sidecar.spec.task}, {len(sidecar.spec.labels)} labels), shapes "
              f"{key.shape_profile}")
        dla = "" if key.dla_core < 0 else f", DLA {key.dla_core}"
        print(f"built by TensorRT {key.trt_version} for {key.gpu_name} "
              f"(sm {key.compute_capability}, {key.sm_count} SMs{dla}) from ONNX sha256 "
              f"{key.onnx_sha256[:16]}…")
        print(f"computes in {report['computes_in']}")
        print("engine file matches its sidecar" if intact else
              "engine file does NOT match its sidecar (truncated, replaced, or the sidecar "
              "edited): rebuild it")
    return 0


def cmd_calibrate(args: argparse.Namespace) -> int:
    with _needs_convert_extra("edge calibrate"):
        return _calibrate(args)


def _calibrate(args: argparse.Namespace) -> int:
    from edge.sources.opencv import quiet_ffmpeg

    quiet_ffmpeg()  # its lines on a damaged video repeat what the command says of it
    from calibration.readers import frames_from
    from calibration.selection import held_out_count
    from converters.quantize import (
        CalibrateOptions,
        calibrate,
        check_options,
        load_float_model,
    )

    recover_model_argument(args, "edge calibrate needs MODEL.onnx, the model edge convert wrote")
    _check_outputs(args)
    if args.cache is not None and args.profile != "tensorrt":
        log.info("writing a TensorRT cache alongside a %s-profile model", args.profile)
    if args.max_images < args.min_images:
        raise InputError(f"--max-images {args.max_images} is below --min-images "
                         f"{args.min_images}; raise --max-images")
    model, spec = load_float_model(args.model)
    if spec.input.batch not in (None, 1):
        raise InputError(
            f"{args.model} has a fixed batch of {spec.input.batch}; calibration runs one frame at "
            "a time. Convert the source with --batch dynamic (the device still batches up to "
            "model.max_batch) or --batch 1, and calibrate that")
    threads = args.threads
    if threads > usable_cores():
        log.warning("--threads %d is more than the %d cores here; using %d", threads,
                    usable_cores(), usable_cores())
        threads = usable_cores()
    options = CalibrateOptions(profile=args.profile, method=args.method,
                               percentile=args.percentile, exclude=tuple(args.exclude),
                               keep_float=args.keep_float, with_cache=args.cache is not None,
                               threads=threads, progress=not args.json)
    check_options(model, options)  # before a single image is read
    _check_cache_and_report(args, spec.task, spec.labels)
    options = replace(options, labelled_data=_scored_by_report(args, spec.task))
    frames = frames_from(args.images, args.max_images, args.seed, min_images=0)
    scene = _scene_for_another_model(args.images, args.model, spec)
    # the sizes first: more images of the wrong size would not help
    _leave_out_small_images(frames, spec.input, args.images, args.max_images,
                            args.allow_upscale)
    frames.require(args.min_images)
    if frames.count < FEW_FRAMES <= args.max_images:
        log.warning("%s has %d usable frames: ranges from 128 or more camera frames are "
                    "steadier, and the range methods are judged on only %s held back; the "
                    "model is calibrated all the same", args.images, frames.count,
                    counted(held_out_count(frames.count), "frame"))
    result = calibrate(model, spec, frames, options)
    writing = time.perf_counter()
    cache = (result.cache(_trt_version(args), spec)
             if args.cache is not None else None)
    reference, report = _write_calibration_outputs(args, result, spec, frames, cache)
    outputs_seconds = time.perf_counter() - writing
    lost = report.accuracy_lost() if report is not None else None
    if lost is not None:
        log.warning("%s", lost)
    summary: dict[str, Any] = {
        "output": str(args.output), "profile": args.profile, "method": result.ranges.method,
        # the percentile method's share kept (a user check: 99.9 and 99.99 read alike)
        "percentile": args.percentile,
        "requested_method": args.method,
        "methods": [fidelity.as_dict() for fidelity in result.comparison],
        "written": result.written.as_dict() if result.written else None,
        "warning": "; ".join(w for w in (scene, frames.warning, result.warning, lost) if w)
                   or None,
        # the statistics' frames, and those held back to judge the methods (a user check:
        # 23 here against the log's "calibrating on 26 frames")
        "frames": result.frames, "held_out": len(result.held_out),
        "skipped": len(frames.skipped),
        "sampled_from": frames.sampled_from,
        "video_frames": frames.video.total if frames.video else None,
        "tensors": len(result.ranges.ranges), "quantized_tensors": result.quantized_activations,
        "seconds": round(result.seconds, 2),
        "phase_seconds": {name: round(seconds, 2) for name, seconds in result.phases.items()},
        "kept_float": result.excluded, "kept_float_batchnorms": result.float_batchnorms,
        "kept_float_stem": result.float_stem,
        "kept_float_narrow_convs": result.float_narrow_convs,
        "cache": str(args.cache) if args.cache else None,
        "cache_tensors": len(cache.scales) if cache is not None else None,
        "ranges": str(args.ranges) if args.ranges else None, "drift_reference": reference,
        "outputs_seconds": round(outputs_seconds, 2),
        "cpu_latency": result.cpu_latency.as_dict() if result.cpu_latency else None}
    if report is not None:
        summary["report"] = str(args.report / report.index.name)
        summary["report_accuracy"] = report.summary()
    if args.json:
        print_json(summary)
    else:
        _print_calibration(args, result, summary)
    return 0


def _kept_float(result: Calibrated) -> str:
    """`kept float: ...`: the layers asked for (--exclude, --keep-float), then those the `cpu`
    profile keeps by its own rules (a user check: "kept float: none, and the stem conv ...,
    and 13 depthwise convs" read as a contradiction)."""
    rules = [
        *([f"{len(result.float_batchnorms)} node(s) of BatchNorms behind activations"]
          if result.float_batchnorms else []),
        *([f"the stem conv {result.float_stem} (its int8 form did not apply: logged why)"]
          if result.float_stem else []),
        *([f"{counted(len(result.float_narrow_convs), 'depthwise or narrow conv')} (ONNX "
           "Runtime's int8 kernels are no faster for them)"] if result.float_narrow_convs
          else [])]
    asked = ", ".join(result.excluded)
    if not rules:
        return f"kept float: {asked or 'none'}"
    by_rule = f"by the cpu profile's rules, {'; '.join(rules)}"
    return f"kept float: {asked}; and {by_rule}" if asked else f"kept float {by_rule}"


def _write_calibration_outputs(args: argparse.Namespace, result: Calibrated, spec: ModelSpec,
                               frames: FrameSet, cache: CalibrationCache | None
                               ) -> tuple[str | None, Report | None]:
    """The INT8 model and whichever of the drift reference, TensorRT cache, ranges and report
    were asked for, staged beside their destinations and published together once the last
    is made (the drift reference and the report run the INT8 model: seconds to minutes), so
    an error or Ctrl-C leaves none of them. Returns (drift reference path, the report)."""
    destinations = [path for _, path in _output_files(args)]
    if args.report is not None:
        destinations.append(args.report)
    with StagedOutputs() as staged, write_failures_named(destinations):
        model = staged.file(args.output)
        write_bytes_atomic(model, result.model.SerializeToString())
        reference = write_drift_reference(args, model, frames.images(), str(args.images),
                                          staged, args.output)
        if cache is not None:
            cache.write(staged.file(args.cache))
        if args.ranges is not None:
            result.ranges.save(staged.file(args.ranges), args.percentile)
        report: Report | None = None
        evaluation = _report_data(args)
        if evaluation is not None:
            from calibration.report import earlier_report_files, write_report

            log.info("writing the report: FP32 and INT8 scored on %s (seconds to minutes)",
                     evaluation)
            owned = earlier_report_files(args.report)
            report = write_report(staged.folder(args.report, owned), args.model, model,
                                  result, spec, evaluation, frames)
        staged.publish()
    return reference, report


def _print_calibration(args: argparse.Namespace, result: Calibrated,
                       summary: dict[str, Any]) -> None:
    """The comparison table and what was written, for a person reading the terminal."""
    written = [result.written] if result.written else []
    width = max([10, *(len(f.method) for f in result.comparison + written)])
    for fidelity in result.comparison + written:
        role = result.role(fidelity)
        chosen = f"  <- {role}" if role else ""
        parts = ", ".join(f"{part} {db:.1f}" for part, db in fidelity.parts_db.items())
        agreement = (f"agreement with FP32 {100 * fidelity.agreement:5.1f}% ({fidelity.behind})"
                     if fidelity.telling else f"agreement not measured ({fidelity.behind})")
        constant = ", nearly the same output on every frame" if fidelity.constant else ""
        print(f"  {fidelity.method:{width}s} {agreement}  output SQNR "
              f"{fidelity.sqnr_db:5.1f} dB{f' ({parts})' if parts else ''}{constant}{chosen}")
    phases = ", ".join(f"{name} {seconds:.2f}" for name, seconds in result.phases.items())
    method = result.ranges.method
    if "percentile" in method:  # a user check: 99.9 and 99.99 read alike
        method += f" at {args.percentile:g}%"
    print(f"wrote {args.output} ({args.profile} profile, {method}) from "
          f"{result.frames} frames in {result.seconds:.2f} s ({phases}); "
          f"{_skipped(summary['skipped'])}{_kept_float(result)}")
    if result.cpu_latency is not None:
        latency = result.cpu_latency
        print(f"INT8 on this CPU: {latency.ratio:.2f}x FP32's latency ({latency.int8_ms:.2f} "
              f"against {latency.fp32_ms:.2f} ms a frame; ONNX Runtime, one thread)")
    for key, what in (("cache", "TensorRT calibration cache"), ("ranges", "ranges"),
                      ("drift_reference", "drift reference")):
        if summary[key]:
            kept = (f", and none for what the {counted(len(summary['kept_float']), 'layer')} "
                    "kept float read and write, so TensorRT keeps them float too (as any other "
                    "layer reading those tensors)" if summary["kept_float"] else "")
            scales = (f" ({summary['cache_tensors']} tensor scales: the input's and every float "
                      "activation's up to the last weighted layers; what follows them stays "
                      f"float{kept})" if key == "cache" else "")
            print(f"wrote {what} {summary[key]}{scales}")
    if args.report:
        print(f"report: {summary['report']}")
    slow = [what for what, asked in (("drift reference", summary["drift_reference"]),
                                     ("report", args.report)) if asked]
    if slow:  # each runs the models again: seconds to minutes beyond the calibration's time
        print(f"outputs written in {summary['outputs_seconds']:.1f} s "
              f"(with the {' and the '.join(slow)})")


def _skipped(count: int) -> str:
    """The summary's count of files left out (named in a warning above), where there are."""
    return f"{count} file{'' if count == 1 else 's'} skipped; " if count else ""


def _output_files(args: argparse.Namespace) -> list[tuple[str, Path]]:
    """(option, path) of every file calibrate was asked to write."""
    outputs = [("-o", args.output), ("--cache", args.cache), ("--ranges", args.ranges),
               ("--drift-reference", Path(args.drift_reference) if args.drift_reference
                else None)]
    return [(option, path) for option, path in outputs if path is not None]


def _check_outputs(args: argparse.Namespace) -> None:
    """Every file calibrate will write: its folder exists, it is not the input model, no two
    of them are the same file (the last written would replace the others), and the model's
    name ends in .onnx."""
    written: dict[Path, str] = {}
    for option, output in _output_files(args):
        require_output_file(output, option)
        refuse_overwriting(output, args.model, option)
        if option == "--drift-reference":
            from edge.drift import refuse_another_models_profile

            refuse_another_models_profile(output, args.output)
        earlier = written.setdefault(output.resolve(), option)
        if earlier != option:
            raise InputError(f"{earlier} and {option} both name {output}; give each its own file")
    if args.cache is not None:
        _refuse_other_files_as_cache(args.cache)
    require_onnx_name(args.output)


def _trt_version(args: argparse.Namespace) -> str:
    """--trt-version, else the default (an empty one is refused, not taken for the default)."""
    return DEFAULT_TRT_VERSION if args.trt_version is None else str(args.trt_version)


def _refuse_other_files_as_cache(path: Path) -> None:
    """--cache replaces a calibration cache, never another file (a user check: a photo of the
    calibration set, another model and a report's page were overwritten, exit 0), and is not
    named as a model is (model files are told by their extension)."""
    from edge.tensorrt.calibration_cache import looks_like_cache

    if path.suffix.lower() in (".onnx", ".engine", ".plan", ".pt", ".pth"):
        raise InputError(f"--cache {path}: a calibration cache is text, not a model; name it "
                         ".cache (the model is -o)")
    if path.is_file() and path.stat().st_size and not looks_like_cache(path):
        raise InputError(f"--cache {path}: that file exists and is not a TensorRT calibration "
                         "cache, so it would be lost; give another path, or remove the file "
                         "first")


def _report_data(args: argparse.Namespace) -> str | None:
    """The labelled data --report scores both models on: --eval-data, else --images (a
    synthetic:// scene at a seed calibration never saw); None without --report."""
    if args.report is None:
        return None
    if args.eval_data is not None:
        return str(args.eval_data)
    from calibration.report import evaluation_data

    return str(evaluation_data(args.images))


def _scored_by_report(args: argparse.Namespace, task: str) -> str | None:
    """What the report scores, as the warnings name it: the split of a YOLO dataset
    (`data/images/val`), the data itself, or None without --report. After
    `_check_cache_and_report`, which refuses what cannot be scored."""
    data = _report_data(args)
    if data is None or data.startswith("synthetic://"):
        return data
    from calibration.datasets import scored_images

    return str(scored_images(Path(data), task))


def _check_cache_and_report(args: argparse.Namespace, task: str,
                            labels: Sequence[str]) -> None:
    """--trt-version (with --cache), --report and --eval-data, before any image is read: they
    are used only after the calibration, which they would otherwise fail at the end of."""
    from calibration.datasets import dataset_layout, require_labelled_content
    from edge.tensorrt.calibration_cache import trt_version_number

    if args.cache is not None:
        trt_version_number(_trt_version(args))
    elif args.trt_version is not None:
        raise InputError("--trt-version names the TensorRT version of a calibration cache; add "
                         "--cache FILE or leave --trt-version out")
    if args.eval_data is not None and args.report is None:
        raise InputError("--eval-data is read only by --report; add --report DIR or leave "
                         "--eval-data out")
    if args.report is None:
        return
    from calibration.plotting import require_matplotlib
    from calibration.report import REPORT_HEADING, REPORT_PLOTS

    require_report_folder(args.report, REPORT_HEADING, plots=REPORT_PLOTS)
    require_matplotlib("the calibration report")
    evaluation = args.eval_data if args.eval_data is not None else args.images
    if isinstance(args.eval_data, str):  # a synthetic:// scene: its URI checked now
        from calibration.readers import frames_from

        try:
            frames_from(args.eval_data)
        except EdgeError as exc:
            raise InputError(f"--eval-data: {exc}") from exc
        _require_scene_model(f"--eval-data {args.eval_data}", args.model, task, labels)
        return
    if str(evaluation).startswith("synthetic://"):  # --images's, checked with it
        _require_scene_model(f"--report scores on --images {evaluation} without --eval-data, "
                             f"and {evaluation}", args.model, task, labels)
        return
    try:
        require_labelled_content(Path(evaluation), dataset_layout(Path(evaluation), task),
                                 labels)
    except InputError as exc:
        if args.eval_data is not None:
            raise InputError(f"--eval-data: {exc}") from exc
        raise InputError(f"--report scores FP32 and INT8 on labelled data and, without "
                         f"--eval-data, reads --images {evaluation}: {exc}. Pass --eval-data "
                         "with labelled images") from exc


#: Frames a drift profile is made of at most, from frames without labels (as many as `edge
#: calibrate` reads by default).
DRIFT_FRAMES = 500
#: Fewer calibration frames than this (where --max-images asked for more) get a warning: the
#: README asks for 128+, and 36 calibrated a document-layout YOLOv8n judged on 4 held out.
FEW_FRAMES = 64
#: A calibration image among larger ones is left out when it would be upscaled more than this
#: (a thumbnail, not a camera frame).
STRAY_UPSCALE = 1.5
#: Text lines enlarged more than this to the input's height, where most are, get a warning:
#: PaddleOCR's crops are often a little under its 48 px lines, rarely under half.
TEXT_LINE_UPSCALE = 2.0


def _leave_out_small_images(frames: FrameSet, spec_input: InputSpec, folder: Path,
                            wanted: int, allow_upscale: bool = False) -> None:
    """An image smaller than the model input would be upscaled (in both sides for a
    letterbox or a stretch; in either for a crop, which keeps the aspect): its ranges are those
    of blurred, not camera, frames (two thumbnails among 40 photos changed which method `auto`
    chose). Those upscaled more than `STRAY_UPSCALE` (a thumbnail; crops of varying size, text
    lines, are often a little under the input) are strays where most images are not such, and
    are left out with a warning; where most are (a model whose input is larger than the usual
    frame: a 608x800 layout detector on photos), every image is kept, with a warning; where
    every image is upscaled at all, the folder is refused. Strays left out of a --max-images
    sample are replaced by others of the folder, up to `wanted`. `allow_upscale` (the frames
    the model will see are that small too): every image is kept, with a warning. The sizes
    (width, height) are those the folder scan read from each image."""
    sizes = frames.sizes
    width, height, resize = spec_input.width, spec_input.height, spec_input.resize
    if resize == "text-line":
        _warn_of_small_text_lines(frames, height, folder)
        return
    upscale = [_upscale(size, spec_input) for size in sizes]
    small = [i for i, factor in enumerate(upscale) if factor > 1]
    strays = [i for i, factor in enumerate(upscale) if factor > STRAY_UPSCALE]
    where = (f"picked from {folder} (a --max-images sample of its {frames.sampled_from})"
             if frames.sampled_from else f"in {folder}")
    fraction = spec_input.crop_fraction
    needed = (math.ceil(width / fraction), math.ceil(height / fraction))
    than = (f"the model input {width}x{height} (width x height)" if fraction == 1 else
            f"{needed[0]}x{needed[1]} (width x height), what the model input {width}x{height} "
            f"takes by {resize_words(resize, fraction)}")
    than += " in either side" if resize == "crop" else ""
    if small and allow_upscale:
        log.warning("%d of the %d images %s are smaller than %s, so they are upscaled "
                    "(--allow-upscale): the ranges match frames as small as these",
                    len(small), len(sizes), where, than)
    elif small and len(small) == len(sizes) and not _any_large(frames.unpicked, spec_input):
        largest_w, largest_h = max(sizes, key=lambda size: size[0] * size[1])
        raise InputError(
            f"all {len(sizes)} images {where} are smaller than {than} (largest "
            f"{largest_w}x{largest_h}); they would be upscaled, so the ranges would not match "
            f"camera frames. Calibrate on frames from the camera (at least "
            f"{needed[0]}x{needed[1]}); if the source model takes other input sizes, convert "
            "it with a smaller --input-size; or, where the frames the model will see are this "
            "small too (its application enlarges them as well), pass --allow-upscale")
    elif strays and 2 * len(strays) < len(sizes):
        too_small = f"much smaller than {than}"
        names = frames.drop(strays, too_small)
        names += frames.top_up(wanted, lambda size: too_small if _upscale(size, spec_input)
                               > STRAY_UPSCALE else None)  # others of the folder instead
        log.warning("skipped %s %s smaller than %s that would be upscaled more than %gx, "
                    "where most would not be (thumbnails among frames; --allow-upscale keeps "
                    "them): %s", counted(len(names), "image"), where, than, STRAY_UPSCALE,
                    ", ".join(names[:10]) + (" …" if len(names) > 10 else ""))
    elif strays:
        # a sample of only small images, from a folder that has others, is judged as the
        # folder would be: most small, all kept
        log.warning("%d of the %d images %s are smaller than %s, so they are upscaled: the "
                    "ranges match camera frames as small as these", len(small), len(sizes),
                    where, than)
    if resize == "stretch":
        _warn_of_one_side_stretched(frames.sizes, spec_input, where)


def _warn_of_one_side_stretched(sizes: list[tuple[int, int]], spec_input: InputSpec,
                                where: str) -> None:
    """A stretch that shrinks one side of an image may still enlarge the other: 640x480
    photos into a 608x800 layout model, 1.67x in height (a user check found no word of it). Not
    a thumbnail, so kept, but said where it passes `STRAY_UPSCALE`."""
    along = [max(spec_input.width / w, spec_input.height / h) / spec_input.crop_fraction
             for w, h in sizes]
    stretched = [factor for factor in along if factor > STRAY_UPSCALE]
    if stretched:
        log.warning("%s %s %s enlarged more than %gx along one side (up to %.1fx) by the "
                    "stretch into the model input %dx%d (width x height): the ranges are those "
                    "of frames blurred along that side, as frames of this shape will be",
                    counted(len(stretched), "image"), where,
                    "is" if len(stretched) == 1 else "are", STRAY_UPSCALE, max(stretched),
                    spec_input.width, spec_input.height)


def _warn_of_small_text_lines(frames: FrameSet, height: int, folder: Path) -> None:
    """Text crops are enlarged to the line height as a rule, so none is left out; where most
    are enlarged more than `TEXT_LINE_UPSCALE` (icons, thumbnails, another model's folder),
    the ranges are those of blurred strokes, and a warning says so."""
    smallest = math.ceil(height / TEXT_LINE_UPSCALE)
    small = [size for size in frames.sizes if size[1] < smallest]
    if small and 2 * len(small) >= len(frames.sizes):
        log.warning("%d of the %d images in %s are under %d px high, so text-line enlarges them "
                    "more than %gx to the model's %d px lines: the ranges match text that "
                    "small and blurred; if the model reads a text detector's crops, calibrate "
                    "on such crops", len(small), len(frames.sizes), folder, smallest,
                    TEXT_LINE_UPSCALE, height)


def _upscale(size: tuple[int, int], spec_input: InputSpec) -> float:
    """How much an image of `size` (width, height) is enlarged on its way into the input."""
    along = (spec_input.width / size[0], spec_input.height / size[1])
    # a crop keeps the aspect, so the larger factor scales both sides; a stretch enlarging one
    # side and shrinking the other (a page into a tall layout model) makes no thumbnail
    factor = max(along) if spec_input.resize == "crop" else min(along)
    return factor / spec_input.crop_fraction  # only that central part fills the input


def _any_large(paths: list[Path], spec_input: InputSpec) -> bool:
    """Whether any of `paths` is a usable image not enlarged on its way into the input (read
    until the first one: only a sample of small images makes this look at the rest)."""
    from calibration.images import usable_image_size

    for path in paths:
        size = usable_image_size(path)
        if size is not None and _upscale(size, spec_input) <= 1:
            return True
    return False


def cmd_eval(args: argparse.Namespace) -> int:
    with _needs_convert_extra("edge eval"):
        return _eval(args)


def _eval(args: argparse.Namespace) -> int:
    if args.field:
        if args.model is not None:
            raise InputError(f"--field scores the predictions a device recorded, not a model: "
                             f"leave {args.model} out (or --field, to score that model on "
                             "--data's labels)")
        if isinstance(args.data, str):
            raise InputError(f"--field scores a folder written by `edge collect`, not "
                             f"{args.data}; pass that folder as --data")
        return cmd_field_eval(args)
    recover_model_argument(args, "edge eval needs MODEL (or --field to score a collected "
                                 "dataset)")
    for option in ("report", "ratings", "labels"):
        if getattr(args, option) is not None:
            advice = ("a model is scored against --data's own labels" if option == "labels"
                      else "for a model's FP32-vs-INT8 report use `edge calibrate ... --report "
                      "DIR`")
            raise InputError(f"--{option} goes with --field (a collected dataset); {advice}")
    if args.drift_reference:
        require_output_file(Path(args.drift_reference), "--drift-reference")
        refuse_overwriting(Path(args.drift_reference), args.model, "--drift-reference")
        from edge.drift import refuse_another_models_profile

        refuse_another_models_profile(Path(args.drift_reference), args.model)
    from edge.runners.onnxruntime import OrtRunner

    with OrtRunner.from_path(args.model, slots=1) as runner:
        spec = runner.spec
    from calibration.datasets import unlabelled_frames

    if args.drift_reference is not None and not isinstance(args.data, str) and \
            unlabelled_frames(args.data, spec.task):
        return _drift_reference_alone(args)
    if isinstance(args.data, str):
        accuracy, images, kind = _scene_accuracy(args, spec)
    else:
        from calibration.datasets import dataset_from
        from calibration.evaluate import evaluate

        dataset = dataset_from(args.data, spec.labels, spec.task, args.max_images)
        accuracy = evaluate(args.model, dataset, args.threads)
        images, kind = labelled_images(dataset), dataset.kind
    reference = write_drift_reference(args, args.model, images, str(args.data))
    if args.json:
        print_json({**accuracy.as_dict(), "drift_reference": reference})
    else:
        _print_accuracy(accuracy, kind)
    if reference is not None and not args.json:
        print(f"wrote drift reference {reference}")
    return 0


def _drift_reference_alone(args: argparse.Namespace) -> int:
    """`edge eval MODEL --data FRAMES --drift-reference` where the frames have no labels (the
    calibration set, a camera's usual frames, a video): the profile, the model not scored (a
    user check: the command a wrong profile's error names refused such frames, and `edge
    calibrate --drift-reference` writes the INT8 model's, not the FP32 one's a CPU runs)."""
    from calibration.readers import frames_from

    frames = frames_from(args.data, args.max_images or DRIFT_FRAMES)
    reference = write_drift_reference(args, args.model, frames.images(), str(args.data))
    if args.json:
        print_json({"drift_reference": reference, "frames": frames.count, "scored": False})
    else:
        print(f"{args.data} holds frames without labels, so the model is not scored; wrote "
              f"drift reference {reference} from {counted(frames.count, 'frame')}")
    return 0


def _print_accuracy(accuracy: Accuracy, kind: str) -> None:
    if accuracy.task == "classify":
        print(f"top-1 {accuracy.top1:.4f} over {counted(accuracy.images, 'image')}")
        for label, images in accuracy.per_class_images.items():
            mistaken = accuracy.per_class_mistaken_for.get(label, {})
            right = images - sum(mistaken.values())
            taken = f"; taken for {_taken_for(mistaken)}" if mistaken else ""
            print(f"  {label:20s} top-1 {accuracy.per_class_top1[label]:.4f} ({right} of "
                  f"{counted(images, 'image')}{taken})")
        if accuracy.unscored_classes:
            from calibration.evaluate import unscored_labels

            print(f"  not scored, no image in the data: {unscored_labels(accuracy)}")
        _print_unreadable(accuracy)
        return
    print(f"mAP@0.5 {accuracy.map50:.4f}  mAP@0.5:0.95 {accuracy.map50_95:.4f}  "
          f"precision {accuracy.precision:.4f}  recall {accuracy.recall:.4f} "
          f"({counted(accuracy.images, 'image')}, {kind})")
    for label, ap in accuracy.per_class_ap50.items():
        print(f"  {label:20s} AP@0.5 {ap:.4f}  AP@0.5:0.95 {accuracy.per_class_ap50_95[label]:.4f}")
    if accuracy.unscored_classes:
        print(f"  not in mAP (no ground-truth objects): {', '.join(accuracy.unscored_classes)}")
    if accuracy.unlabelled_classes:
        print("  not labelled in the data (their detections not scored, in mAP or precision): "
              f"{', '.join(accuracy.unlabelled_classes)}")
    _print_unreadable(accuracy)


def _print_unreadable(accuracy: Accuracy) -> None:
    if accuracy.unreadable_images:
        from calibration.evaluate import unreadable_images

        print(f"  not scored, unreadable: {unreadable_images(accuracy)}")


def _taken_for(mistaken: dict[str, int], shown: int = 3) -> str:
    """`b (4), c (3), d (2), 2 other classes (2)`: what a class's images were taken for, the
    most frequent first, with how many images each (the rest summed, so the counts add up)."""
    items = list(mistaken.items())
    named = [f"{other} ({images})" for other, images in items[:shown]]
    if len(items) > shown:
        named.append(f"{counted(len(items) - shown, 'other class')} "
                     f"({sum(images for _, images in items[shown:])})")
    return ", ".join(named)


def _scene_for_another_model(images: str | Path, model: Path, spec: ModelSpec) -> str | None:
    """A warning (logged, and returned for --json) where the synthetic scene calibrates a
    model that does not detect its shapes: its ranges come from circles and squares on a
    plain background, not the model's frames (a user check: a corpus classifier calibrated on
    it in silence, while `--eval-data` refuses the scene for it)."""
    from edge.synthetic import SHAPE_LABELS, detects_the_scene

    if not str(images).startswith("synthetic://") or detects_the_scene(spec.task, spec.labels):
        return None
    labels = ", ".join(spec.labels[:6]) + (" ..." if len(spec.labels) > 6 else "")
    warning = (f"--images {images}: the synthetic scene (shapes: {', '.join(SHAPE_LABELS)}, on "
               f"a plain background) is the demo detector's; {model} ({spec.task}: {labels}) "
               "calibrated on it gets ranges of those shapes, not of its own frames: calibrate "
               "on frames like those it will see")
    log.warning("%s", warning)
    return warning


def _require_scene_model(what: str, model: Path, task: str, labels: Sequence[str]) -> None:
    """An error unless `model` detects the synthetic scene's shapes, the only model whose
    class ids its ground truth pairs with the right names."""
    from edge.synthetic import SHAPE_LABELS, detects_the_scene

    if not detects_the_scene(task, tuple(labels)):
        raise InputError(f"{what}: the synthetic scene holds {', '.join(SHAPE_LABELS)}; "
                         f"{model} ({task}: {', '.join(labels[:6])}) is scored on its own "
                         "labelled data (a YOLO folder, a COCO JSON file, class folders)")


def _scene_accuracy(args: argparse.Namespace, spec: ModelSpec
                    ) -> tuple[Accuracy, Iterable[npt.NDArray[np.uint8]], str]:
    """(accuracy, the frames for a drift reference, what was scored) on the synthetic scene
    `--data` names, which only a detector of its shapes can be scored on."""
    from calibration.evaluate import SCENE_FRAME_STEP, SCENE_FRAMES, evaluate_models, scene_frames

    _require_scene_model(f"--data {args.data}", args.model, spec.task, spec.labels)
    count = args.max_images or SCENE_FRAMES
    accuracy = evaluate_models([args.model], scene_frames(args.data, count), args.threads)[0]
    images = (image for _, image in scene_frames(args.data, count))
    return accuracy, images, f"synthetic scene, every {SCENE_FRAME_STEP}th frame"


def _add_calibrate(commands: Any) -> None:
    calibrate = commands.add_parser(
        "calibrate", help="quantize a converted model to INT8 (QDQ ONNX, TensorRT cache)",
        description="Streams calibration frames through the FP32 model, computes per-tensor "
                    "ranges and writes a QDQ model for TensorRT (symmetric int8) or ONNX "
                    "Runtime CPU (uint8 activations).")
    calibrate.add_argument("model", type=parse_path, nargs="?", metavar="MODEL.onnx",
                           help="the FP32 model `edge convert` wrote (required)")
    calibrate.add_argument("--images", required=True, type=parse_location,
                           help="image folder, video file, or synthetic://shapes?seed=N")
    calibrate.add_argument("-o", "--output", type=parse_path, required=True, metavar="OUT.onnx",
                           help="the INT8 model to write")
    calibrate.add_argument("--profile", choices=["tensorrt", "cpu"], default="tensorrt",
                           help="who runs the INT8 model: tensorrt (Jetson; symmetric int8, "
                                "what TensorRT's rules accept; default) or cpu (ONNX Runtime "
                                "on a CPU; uint8 activations, its fused int8 kernels; timed "
                                "against FP32 on this CPU, with a warning where it is not "
                                "faster)")
    calibrate.add_argument("--method", choices=["auto", "mse", "entropy", "percentile", "minmax"],
                           default="auto",
                           help="range algorithm (default auto: every method is tried and the "
                                "one closest to FP32 on held-out frames kept; entropy is "
                                "TensorRT's)")
    calibrate.add_argument("--percentile", type=parse_percentile, default=99.99,
                           help="the percentile method's share of |x| kept unclipped, in "
                                "percent (default %(default)s)")
    calibrate.add_argument("--max-images", type=parse_positive_int, default=500,
                           help="use at most this many frames: a random subset (--seed) of a "
                                "larger folder, spread evenly over a longer video (default "
                                "%(default)s)")
    calibrate.add_argument("--min-images", type=parse_positive_int, default=8,
                           help="refuse to calibrate on fewer usable frames (default %(default)s)")
    calibrate.add_argument("--allow-upscale", action="store_true",
                           help="calibrate on images smaller than the model input, every one "
                                "kept and upscaled, where the frames the model will see are "
                                "that small too (document scans into a large input); by "
                                "default a folder of only such images is refused and a few "
                                "among larger ones are left out")
    calibrate.add_argument("--seed", type=int, default=0,
                           help="which random subset of a folder larger than --max-images "
                                "(default %(default)s)")
    calibrate.add_argument("--exclude", nargs="+", action="extend", default=[], metavar="NODE",
                           help="node names to keep in float, several after one --exclude or "
                                "one per --exclude (names from `edge inspect --json`)")
    calibrate.add_argument("--keep-float", type=parse_non_negative_int, default=0, metavar="N",
                           help="also keep N layers in float: those that, each in float alone, "
                                "bring the output closest to FP32 on the held-out frames "
                                "(tensorrt profile: one INT8 model per layer, 10-20 s for a "
                                "YOLOv8n on 2 cores); on the cpu profile, the N layers with "
                                "the lowest SQNR (default %(default)s)")
    calibrate.add_argument("--cache", type=parse_path, metavar="FILE",
                           help="also write a TensorRT calibration cache, to build the FP32 model "
                                "as int8 (`edge build-engine --cache`; TensorRT 8.5-10)")
    calibrate.add_argument("--trt-version",
                           help="with --cache: the TensorRT version the cache is for (8.5-10.x; "
                                f"default {DEFAULT_TRT_VERSION})")
    calibrate.add_argument("--ranges", type=parse_path, metavar="FILE",
                           help="also write the ranges as JSON")
    calibrate.add_argument("--report", type=parse_path, metavar="DIR",
                           help="write an FP32-vs-INT8 accuracy report (Markdown + PNG), both "
                                "models scored on labelled data: --eval-data (--images only "
                                "where they are labelled, or a synthetic scene)")
    calibrate.add_argument("--eval-data", type=_eval_data, metavar="DATA",
                           help="labelled data for the report: a YOLO dataset folder, a COCO "
                                "JSON file, (classifiers) one folder of images per label, or "
                                "synthetic://shapes?seed=N (default: --images; a synthetic "
                                "scene there is scored on an unseen one)")
    calibrate.add_argument("--threads", type=parse_non_negative_int, default=0,
                           help="inference threads in all (default 0: all cores but two, "
                                "shared by two runs in flight, at least one thread each)")
    calibrate.add_argument("--json", action="store_true",
                           help="print the result as one JSON line (methods compared, phases)")
    add_drift_reference_argument(calibrate, "the calibration frames through the output model")
    calibrate.set_defaults(handler=cmd_calibrate)

    evaluate = commands.add_parser("eval", help="mAP / top-1 of a model on labelled data")
    evaluate.add_argument("model", type=parse_path, nargs="?",
                          help="the model (not with --field, which scores recorded predictions)")
    evaluate.add_argument("--data", type=_eval_data, required=True,
                          help="YOLO dataset folder, COCO JSON, class folders, or "
                               "synthetic://shapes?seed=N (the demo's scene; 100 frames unless "
                               "--max-images); with --drift-reference also frames without "
                               "labels (a folder or a video), profiled without scoring")
    evaluate.add_argument("--max-images", type=parse_positive_int,
                          help="score at most this many images, spread evenly over the data "
                               "(every part of a split, every class folder)")
    evaluate.add_argument("--threads", type=parse_non_negative_int, default=0,
                          help="inference threads (default 0: ONNX Runtime's choice, one a "
                               "core)")
    evaluate.add_argument("--json", action="store_true",
                          help="print the result as one JSON line")
    add_eval_arguments(evaluate)
    evaluate.set_defaults(handler=cmd_eval)


def _eval_data(text: str) -> Path | str:
    """--data: a path, or a synthetic:// scene's URI as written (a Path would fold its //)."""
    return text if text.startswith("synthetic://") else parse_path(text)


def _add_convert(commands: Any) -> None:
    convert = commands.add_parser(
        "convert", help="convert a fine-tuned CNN to a self-describing ONNX model",
        description="SRC: an ONNX file (Ultralytics exports carry labels and size), a "
                    "TorchScript file, or a PyTorch state_dict checkpoint with --module. The "
                    "output takes raw uint8 camera frames; preprocessing is folded in.")
    convert.add_argument("source", type=parse_path, metavar="SRC",
                         help="the model to convert (.onnx, .torchscript, .pt/.pth with --module)")
    convert.add_argument("-o", "--output", type=parse_path, required=True, metavar="OUT.onnx",
                         help="the converted FP32 model to write")
    convert.add_argument("--input-size", type=parse_size, metavar="HxW",
                         help="network input size, e.g. 640 or 384x640 (default: what the "
                              "model records: a fixed ONNX input, Ultralytics' imgsz; PyTorch "
                              "sources need it)")
    convert.add_argument("--labels", help="class names: a file (one per line, '0 person' "
                                          "numbering allowed; a JSON list or id/name map; an "
                                          "Ultralytics data.yaml's names) or a comma list "
                                          "(default: the model's metadata, as Ultralytics "
                                          "and PaddlePaddle exports carry it)")
    convert.add_argument("--colour-order", choices=["BGR", "RGB"], default="BGR",
                         help="the camera frames' channel order (OpenCV: BGR; default)")
    convert.add_argument("--network-order", choices=["RGB", "BGR"],
                         help="the channel order the network was trained on (default RGB)")
    convert.add_argument("--mean", type=parse_triple,
                         help="per-channel mean in 0..1 units, network order, or one value "
                              "for all (a grey network's one) (default 0,0,0)")
    convert.add_argument("--std", type=parse_triple,
                         help="per-channel std in 0..1 units, network order, or one value "
                              "for all (default 1,1,1: just /255)")
    convert.add_argument("--resize", choices=get_args(Resize),
                         help="how the network's training images were made from the frames, "
                              "so the device makes its input the same way: " + RESIZE_HELP +
                              " (default letterbox; crop for Ultralytics classify exports)")
    convert.add_argument("--crop-fraction", type=parse_crop_fraction, metavar="F",
                         help=CROP_FRACTION_HELP + " (default 1: all of it)")
    convert.add_argument("--pad-value", type=parse_pad_value, metavar="LEVEL",
                         help=PAD_VALUE_HELP)
    convert.add_argument("--interpolation", choices=get_args(Interpolation),
                         help=INTERPOLATION_HELP)
    convert.add_argument("--task", choices=["detect", "classify"],
                         help="what the model does (default: read from the output's shape; "
                              "pass it to have a mismatch refused)")
    convert.add_argument("--head", choices=["anchor_free", "anchor_free_transposed", "yolov5",
                                            "yolox", "end_to_end", "logits", "probabilities"],
                         help="output layout (default: recognised from the output's shape "
                              "and values and whether it ends in Softmax/Sigmoid); for when "
                              "that is ambiguous. yolox: [N, A, 5+nc] of raw grid offsets, "
                              "decoded in the graph")
    convert.add_argument("--head-output", metavar="NAME",
                         help="the model output to read as the head (default: the one that "
                              "fits a head; for models with several that do)")
    convert.add_argument("--module", help="for a state_dict checkpoint (.pt/.pth): the "
                                          "network's class, package.module:Class or "
                                          "file.py:Class (not needed for ONNX or TorchScript)")
    convert.add_argument("--module-args", help="JSON object of the class's constructor "
                                               "arguments (default: none)")
    convert.add_argument("--weights-entry", metavar="KEY",
                         help="with --module: the checkpoint's entry that holds the weights "
                              "to convert, e.g. state_dict_ema or model_ema for a training "
                              "run's EMA copy (default: the file itself, or its state_dict, "
                              "model_state_dict or model entry)")
    convert.add_argument("--batch", type=parse_batch,
                         help="batch size or 'dynamic' (default: what an ONNX source has; 1 for "
                              "PyTorch)")
    convert.add_argument("--opset", type=parse_opset, default=None,
                         help=f"ONNX opset for PyTorch exports, {MIN_OPSET} up to the newest "
                              "the installed PyTorch exports (20 for PyTorch 2.13; default "
                              f"{DEFAULT_OPSET}: TensorRT 8.5 parses it)")
    convert.add_argument("--stride", type=parse_positive_int,
                         help="largest network stride (input sides must divide by it; default "
                              "32 for detectors)")
    convert.add_argument("--name", help="model name in the spec (default: the file's stem)")
    convert.add_argument("--score-threshold", type=parse_fraction, default=0.25,
                         help="default score threshold stored in the spec (0..1; default "
                              "%(default)s)")
    convert.add_argument("--iou-threshold", type=parse_fraction, default=0.45,
                         help="default NMS IoU threshold stored in the spec (0..1; default "
                              "%(default)s)")
    convert.add_argument("--no-simplify", dest="simplify", action="store_false",
                         help="skip onnxsim's constant folding and shape simplification")
    convert.add_argument("--no-verify", dest="verify", action="store_false",
                         help="skip the parity check against the source model")
    convert.add_argument("--tolerance", type=parse_positive_float, default=1e-3,
                         help="parity: largest error relative to the output's range "
                              "(default %(default)s)")
    convert.add_argument("--json", action="store_true",
                         help="print the result as one JSON line")
    convert.set_defaults(handler=cmd_convert)

    inspect = commands.add_parser("inspect", help="show a model's spec, tensors, ops and "
                                                  "quantization")
    inspect.add_argument("model", type=parse_path,
                         help="an ONNX model (any: converted or not), a TensorRT engine "
                              "edge built, or a calibration cache (edge calibrate --cache)")
    inspect.add_argument("--json", action="store_true",
                         help="everything as one JSON object (node names for --exclude)")
    inspect.set_defaults(handler=cmd_inspect)


def add_commands(commands: Any) -> None:
    _add_convert(commands)
    _add_calibrate(commands)

"""The precision an engine is built in, decided from data the device owns: the model spec
(`edge convert` and `edge calibrate` record the quantization there, so no `onnx` package is
needed) and the TensorRT version.

Never a silent change of precision: an INT8 QDQ model builds as int8 or not at all, and on
TensorRT 11 (strongly typed networks only) a float model computes in the types its ONNX
declares, so `fp16` there is refused instead of being written into the cache key of an engine
that runs in fp32.
"""

from __future__ import annotations

from pathlib import Path

from edge.errors import InputError, ModelError
from edge.spec import ModelSpec, Quantization, spec_from_onnx_file
from edge.tensorrt.calibration_cache import CalibrationCache
from edge.tensorrt.calibrator import refuse_a_cache_of_another_model
from edge.tensorrt.versions import Precision, TrtVersion

#: Every Q/DQ node stores its op type verbatim in the graph (weights may live in external
#: data, op types never do), so the absence of this string proves a graph has no Q/DQ nodes.
QDQ_OP = b"DequantizeLinear"


def graph_has_qdq(onnx_path: Path) -> bool:
    """Whether the ONNX file holds DequantizeLinear nodes (read in blocks, no onnx needed)."""
    tail = b""
    with onnx_path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            if QDQ_OP in tail + block:
                return True
            tail = block[-len(QDQ_OP):]
    return False


def quantization_of(onnx_path: Path, spec: ModelSpec) -> Quantization:
    """The spec's recorded quantization, checked against the graph."""
    has_qdq = graph_has_qdq(onnx_path)
    if spec.quantization is None:
        if has_qdq:
            raise ModelError(f"{onnx_path} is quantized but its spec does not record how (it was "
                             "written before edge recorded it); quantize the float model again "
                             "with `edge calibrate --profile tensorrt`")
        return "float"
    if has_qdq != (spec.quantization != "float"):
        raise ModelError(f"{onnx_path}: the spec says {spec.quantization!r} but the graph "
                         f"{'has' if has_qdq else 'has no'} Q/DQ nodes; re-run `edge convert` "
                         "or `edge calibrate` to write a consistent model")
    return spec.quantization


def precision_for(quantization: Quantization, requested: str, version: TrtVersion,
                  model: Path) -> Precision:
    """`requested` ("auto", "int8", "fp16", "fp32") resolved to what the engine computes in."""
    if quantization == "int8-qdq-cpu":
        raise ModelError(f"{model} was calibrated with --profile cpu (uint8 activations), which "
                         "TensorRT rejects; calibrate the float model with "
                         "`edge calibrate --profile tensorrt`")
    if quantization == "int8-qdq":
        if requested not in ("auto", "int8"):
            raise InputError(f"{model} is an INT8 QDQ model and builds as int8 only; use "
                             f"--precision int8 (or auto), or build the float model it came "
                             f"from as {requested}")
        return "int8"
    if requested == "auto":
        return "fp32" if version.strongly_typed_only else "fp16"
    if requested == "int8":
        raise InputError(f"{model} is a float model: an INT8 engine needs its QDQ version "
                         "(`edge calibrate MODEL.onnx --images DIR -o MODEL.int8.onnx --profile "
                         "tensorrt`) or, on TensorRT 8.5-10, a calibration cache (`edge "
                         "build-engine MODEL.onnx --cache FILE`; for the daemon, "
                         "model.calibration_cache = FILE)")
    if requested == "fp16" and version.strongly_typed_only:
        raise InputError(f"TensorRT {version} builds strongly typed networks: {model} declares "
                         "float32, so an 'fp16' engine would compute in fp32. Convert the ONNX "
                         "to float16 first (onnxconverter-common's convert_float_to_float16, "
                         "keep_io_types=True) or build with --precision fp32")
    if requested not in ("fp16", "fp32"):
        raise InputError(f"precision {requested!r} is not one of auto, int8, fp16, fp32")
    return requested  # type: ignore[return-value]


def computes_in(precision: str, trt_version: str) -> str:
    """What an engine built with `precision` by TensorRT `trt_version` computes in."""
    major = trt_version.split(".", maxsplit=1)[0]
    typed = major.isdigit() and int(major) >= 11  # strongly typed networks only
    return {
        "int8": "int8 where the QDQ model quantizes, " + (
            "fp32 elsewhere (strongly typed)" if typed else "fp16 or fp32 elsewhere"),
        "fp16": "fp16 (TensorRT keeps a layer in fp32 where fp16 is slower or unsupported)",
        "fp32": "fp32" + (" (strongly typed: the types the ONNX declares)" if typed else ""),
    }.get(precision, f"unknown precision {precision!r}: rebuild the engine")


#: A TensorRT version without the strongly-typed rule: what `engine_precision` refuses on it
#: is refused on every version.
ANY_TRT_VERSION = TrtVersion.parse("10.0")


def check_engine_request(onnx_path: Path, requested: str,
                         calibration_cache: Path | None = None) -> None:
    """Refuse, before TensorRT is even loaded, what `engine_precision` refuses on every
    TensorRT version: a missing model or one without a spec, a `cpu`-profile model, an INT8
    model asked for another precision, a float one asked for int8 without a cache. A machine
    without TensorRT then names the model's problem first (its own message would hide it
    until TensorRT is installed); only the TensorRT 11 fp16 rule waits for the version."""
    if not onnx_path.is_file():
        raise InputError(f"model {onnx_path} does not exist" if not onnx_path.exists() else
                         f"model {onnx_path} is not a file; pass the converted .onnx model")
    if calibration_cache is not None and not calibration_cache.is_file():
        raise InputError(f"calibration cache {calibration_cache} is not a file; `edge "
                         "calibrate` writes one with --cache FILE")
    engine_precision(onnx_path, requested, ANY_TRT_VERSION, calibration_cache is not None)
    if calibration_cache is not None:
        check_calibration_cache(calibration_cache, onnx_path)


def check_calibration_cache(cache: Path, onnx_path: Path) -> None:
    """InputError where `cache` is no TensorRT calibration cache, or, for a float model (whose
    INT8 engine takes its scales from the cache), one made for another model: said before
    TensorRT is loaded, so that a machine without it names the cache's problem too (a user
    check: a text file as the cache passed a dry run)."""
    CalibrationCache.read(cache)
    if quantization_of(onnx_path, spec_from_onnx_file(onnx_path)) == "float":
        refuse_a_cache_of_another_model(cache, onnx_path)


def engine_precision(onnx_path: Path, requested: str, version: TrtVersion,
                     calibration_cache: bool = False) -> Precision:
    """The precision to build `onnx_path` in, from its spec; with a calibration cache: int8."""
    quantization = quantization_of(onnx_path, spec_from_onnx_file(onnx_path))
    if calibration_cache:
        if quantization != "float":  # a user check: taken without a word
            raise InputError(f"{onnx_path} is quantized already ({quantization}): TensorRT "
                             "takes its scales from its Q/DQ nodes, not from a calibration "
                             "cache; drop the cache (--cache, model.calibration_cache) to "
                             "build it as it is, or give the FP32 model the cache was made for")
        if requested not in ("auto", "int8"):
            raise InputError(f"a calibration cache builds int8 engines only, not {requested}; "
                             "drop --cache or --precision")
        return "int8"
    return precision_for(quantization, requested, version, onnx_path)

"""The engine precision from the model spec and the TensorRT version (no TensorRT needed)."""

from __future__ import annotations

import subprocess
import sys

import pytest

from edge.errors import InputError, ModelError
from edge.tensorrt.precision import computes_in, engine_precision, graph_has_qdq
from edge.tensorrt.versions import TrtVersion
from tests.contract.tiny_models import tiny_model

T10, T11 = TrtVersion(10, 3), TrtVersion(11, 0)


@pytest.mark.parametrize(
    ("qdq", "recorded", "requested", "version", "expected"),
    [
        (True, "graph", "auto", T10, "int8"),
        (True, "graph", "int8", T11, "int8"),
        (False, "graph", "auto", T10, "fp16"),
        (False, "graph", "auto", T11, "fp32"),  # strongly typed: what the ONNX declares
        (False, "graph", "fp32", T10, "fp32"),
        (False, None, "auto", T10, "fp16"),  # an older spec, and no Q/DQ in the graph
        (True, "graph", "fp16", T10, (InputError, "builds as int8 only")),
        (False, "graph", "int8", T10, (InputError, "float model.*edge calibrate")),
        (False, "graph", "fp16", T11, (InputError, "strongly typed.*float16 first")),
        (True, None, "auto", T10, (ModelError, "does not record how")),
        (True, "int8-qdq-cpu", "auto", T10, (ModelError, "--profile tensorrt")),
        (True, "float", "auto", T10, (ModelError, "spec says 'float' but the graph has")),
        (False, "int8-qdq", "auto", T10, (ModelError, "graph has no Q/DQ")),
    ],
)
def test_engine_precision(tmp_path, qdq, recorded, requested, version, expected):
    model = tiny_model(tmp_path / "m.onnx", qdq=qdq, recorded=recorded)
    if isinstance(expected, tuple):
        with pytest.raises(expected[0], match=expected[1]):
            engine_precision(model, requested, version)
    else:
        assert engine_precision(model, requested, version) == expected


def test_calibration_cache_builds_int8_only(tmp_path):
    model = tiny_model(tmp_path / "m.onnx", qdq=False)
    assert engine_precision(model, "auto", T10, calibration_cache=True) == "int8"
    with pytest.raises(InputError, match="int8 engines only"):
        engine_precision(model, "fp16", T10, calibration_cache=True)


def test_qdq_marker_found_across_read_blocks(tmp_path):
    path = tmp_path / "big.onnx"
    path.write_bytes(b"x" * ((1 << 20) - 5) + b"DequantizeLinear" + b"y" * 10)
    assert graph_has_qdq(path)
    path.write_bytes(b"x" * (3 << 20))
    assert not graph_has_qdq(path)


def test_what_an_engine_computes_in():
    assert computes_in("int8", "10.3.0").endswith("fp16 or fp32 elsewhere")
    assert computes_in("int8", "11.0.0.114").endswith("fp32 elsewhere (strongly typed)")
    assert computes_in("fp32", "11.4.0") == "fp32 (strongly typed: the types the ONNX declares)"
    assert "rebuild" in computes_in("unknown", "10.3.0")


def test_the_device_decides_without_the_onnx_package(tmp_path):
    """The spec is read through ONNX Runtime when `onnx` is missing (the device install)."""
    model = tiny_model(tmp_path / "q.onnx", qdq=True)
    code = ("import sys; sys.modules['onnx'] = None\n"
            "from pathlib import Path\n"
            "from edge.tensorrt.precision import engine_precision\n"
            "from edge.tensorrt.versions import TrtVersion\n"
            f"print(engine_precision(Path({str(model)!r}), 'auto', TrtVersion(10, 3)))\n"
            "assert 'onnx' not in [m for m in sys.modules if sys.modules[m] is not None]")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "int8"


@pytest.mark.parametrize(("version", "message"), [("7.2.3", "older than 8.5"),
                                                  ("12.0.1", "newer than edge knows")])
def test_unsupported_tensorrt_is_exit_2_naming_the_range(tmp_path, version, message):
    (tmp_path / "tensorrt.py").write_text(f"__version__ = {version!r}\n")
    model = tiny_model(tmp_path / "m.onnx", qdq=True)
    result = subprocess.run([sys.executable, "-m", "edge", "build-engine", str(model)],
                            capture_output=True, text=True, timeout=120,
                            env={"PYTHONPATH": str(tmp_path), "PATH": "/usr/bin:/bin"})
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert message in result.stderr and "TensorRT 8.5 to 11.x" in result.stderr


@pytest.mark.parametrize(("profile", "recorded"), [("tensorrt", "int8-qdq"),
                                                   ("cpu", "int8-qdq-cpu")])
def test_calibrate_records_the_quantization_the_device_reads(tmp_path, profile, recorded):
    from calibration.readers import frames_from
    from converters.quantize import CalibrateOptions, calibrate, load_float_model
    from edge.demo import bundled_model
    from edge.files import write_bytes_atomic
    from edge.spec import spec_from_onnx_file

    model, spec = load_float_model(bundled_model())
    result = calibrate(model, spec, frames_from("synthetic://shapes?seed=3", max_images=8,
                                                min_images=8),
                       CalibrateOptions(profile=profile, progress=False))
    path = tmp_path / f"shapes.{profile}.onnx"
    write_bytes_atomic(path, result.model.SerializeToString())
    assert spec_from_onnx_file(path).quantization == recorded
    if profile == "tensorrt":
        assert engine_precision(path, "auto", T10) == "int8"
    else:
        with pytest.raises(ModelError, match="TensorRT rejects"):
            engine_precision(path, "auto", T10)

"""The engine precision from the model spec and the TensorRT version (no TensorRT needed)."""

from __future__ import annotations

import pytest

from edge.errors import InputError, ModelError
from edge.tensorrt.precision import engine_precision, graph_has_qdq
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

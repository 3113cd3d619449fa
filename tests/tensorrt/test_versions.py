from __future__ import annotations

import pytest

from edge.errors import InputError
from edge.tensorrt.versions import TrtVersion, build_plan


@pytest.mark.parametrize(
    ("text", "version"),
    [("8.5.2.2", TrtVersion(8, 5, 2)), ("8.6.1", TrtVersion(8, 6, 1)),
     ("10.3.0.30", TrtVersion(10, 3, 0)), ("10.13.3", TrtVersion(10, 13, 3)),
     ("11.0.0", TrtVersion(11, 0, 0)), ("10.3", TrtVersion(10, 3, 0))],
)
def test_parse(text, version):
    assert TrtVersion.parse(text) == version


@pytest.mark.parametrize(("text", "message"), [("8.4.3", "older than 8.5"),
                                               ("7.1.3", "older than 8.5"),
                                               ("latest", "not a TensorRT version")])
def test_unsupported(text, message):
    with pytest.raises(InputError, match=message):
        TrtVersion.parse(text)


@pytest.mark.parametrize(
    ("version", "precision", "quantization", "strongly_typed", "flags", "calibrator"),
    [
        ("8.5.2", "int8", "qdq", False, ("INT8", "FP16"), False),
        ("8.6.1", "int8", "calibration-cache", False, ("INT8", "FP16"), True),
        ("10.3.0", "int8", "qdq", False, ("INT8", "FP16"), False),
        ("10.3.0", "fp16", "none", False, ("FP16",), False),
        ("10.3.0", "fp32", "none", False, (), False),
        ("11.0.0", "int8", "qdq", True, (), False),
        ("11.0.0", "fp16", "none", True, (), False),
    ],
)
def test_builder_flags_per_version(version, precision, quantization, strongly_typed, flags,
                                   calibrator):
    plan = build_plan(TrtVersion.parse(version), precision, quantization)
    assert (plan.strongly_typed, plan.flags, plan.uses_calibration_cache) == (
        strongly_typed, flags, calibrator)


def test_dla_adds_gpu_fallback_and_bad_combinations_are_refused():
    assert "GPU_FALLBACK" in build_plan(TrtVersion(10, 3), "int8", "qdq", dla=True).flags
    with pytest.raises(InputError, match="no implicit INT8 calibration"):
        build_plan(TrtVersion(11, 0), "int8", "calibration-cache")
    with pytest.raises(InputError, match="needs a QDQ model or a calibration cache"):
        build_plan(TrtVersion(10, 3), "int8", "none")

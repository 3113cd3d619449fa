from __future__ import annotations

import pytest

from calibration.cache import (
    CalibrationCache,
    cache_from_ranges,
    hex_to_scale,
    scale_to_hex,
    trt_version_number,
)
from calibration.ranges import TensorRange, TensorRanges
from edge.errors import InputError


@pytest.mark.parametrize(
    ("version", "number"),
    [("8.5.3", 8503), ("8.6.1", 8601), ("10.3.0", 100300), ("10.13.2", 101302), ("10.0", 100000)],
)
def test_version_numbers(version, number):
    assert trt_version_number(version) == number


@pytest.mark.parametrize(
    ("version", "message"),
    [("11.0.0", "strongly typed"), ("8.4.1", "older than 8.5"), ("ten", "not like 10.3.0")],
)
def test_unsupported_versions(version, message):
    with pytest.raises(InputError, match=message):
        trt_version_number(version)


def test_scale_hex_is_the_big_endian_float_bit_pattern():
    assert scale_to_hex(1.0) == "3f800000"
    assert scale_to_hex(0.0) == "0"
    assert hex_to_scale("3c010204") == pytest.approx(0.0078740157)
    assert hex_to_scale("0") == 0.0


def test_round_trip_with_the_input_scale():
    ranges = TensorRanges("entropy", 8, {"conv1": TensorRange(-1.0, 3.0, 2.54),
                                         "relu1": TensorRange(0.0, 6.0, 6.0)})
    cache = cache_from_ranges(ranges, "10.3.0", ("images", 1.0))
    text = cache.to_text()
    lines = text.splitlines()
    assert lines[0] == "TRT-100300-EntropyCalibration2"
    assert lines[1] == "images: 3f800000"
    parsed = CalibrationCache.parse(text, "cache", expected_version=100300)
    assert parsed.scales["conv1"] == pytest.approx(2.54 / 127, rel=1e-7)
    assert list(parsed.scales) == ["images", "conv1", "relu1"]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("conv1: 3f800000\n", "line 1 is not a TensorRT cache header"),
        ("TRT-8601-EntropyCalibration2\nconv1: 3f800000\n", "written for TensorRT version "
                                                           "number 8601, not 100300"),
        ("TRT-100300-EntropyCalibration2\nconv1 3f800000\n", "line 2 is malformed"),
        ("TRT-100300-EntropyCalibration2\na: 0\nconv1: xyz\n", "line 3 is malformed"),
        ("TRT-100300-EntropyCalibration2\nconv1: 1ffffffff\n", "line 2 is malformed"),
    ],
)
def test_bad_caches_name_the_line(text, message):
    with pytest.raises(InputError, match=message):
        CalibrationCache.parse(text, "model.cache", expected_version=100300)

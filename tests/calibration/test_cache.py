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
    from edge.tensorrt.calibration_cache import trt_version_text

    assert trt_version_number(version) == number
    assert trt_version_text(number) == ".".join([*version.split("."), "0"][:3])


def test_inspect_reads_a_calibration_cache(tmp_path):
    """`edge inspect` on a cache `edge calibrate --cache` wrote called it a cut-short ONNX
    model and told its user to copy it again (a user check)."""
    import json
    import subprocess
    import sys

    cache = tmp_path / "net.cache"
    CalibrationCache.from_scales({"a": 2 / 127, "b": 0.5}, "8.6.1", ("images", 1.0)).write(cache)
    shown = subprocess.run([sys.executable, "-m", "edge", "inspect", str(cache)],
                           capture_output=True, text=True, timeout=60)
    assert shown.returncode == 0, shown.stderr
    assert shown.stdout.splitlines()[:2] == [
        f"{cache}: TensorRT calibration cache for TensorRT 8.6.1 (header EntropyCalibration2, "
        "whatever method chose the ranges), 3 tensors",
        "ranges: the tensors' largest |x| (scale x 127) from 2 to 127"]
    report = json.loads(subprocess.run(
        [sys.executable, "-m", "edge", "inspect", str(cache), "--json"], capture_output=True,
        text=True, timeout=60).stdout)
    assert report == {"calibration_cache": str(cache), "trt_version": "8.6.1",
                      "algorithm": "EntropyCalibration2", "tensors": 3, "amax_min": 2.0,
                      "amax_max": 127.0, "amax_below_calibrated": 0}
    # a user check: a scale that lost a hex digit (3c010204 -> 3c01020) read as any other
    cache.write_text("TRT-8601-EntropyCalibration2\nimages: 3f800000\na: 3c01020\n")
    edited = subprocess.run([sys.executable, "-m", "edge", "inspect", str(cache), "--json"],
                            capture_output=True, text=True, timeout=60)
    shown = json.loads(edited.stdout)
    assert edited.returncode == 0 and shown["amax_below_calibrated"] == 1
    assert shown["amax_min"] == pytest.approx(1.43e-34, rel=0.01)  # not rounded to 0
    assert ("1 tensor with a range (scale x 127) under 1e-08, which edge calibrate never writes "
            "(first: a, 1.43e-34): a hex digit lost in editing?") in edited.stderr
    cache.write_text("TRT-abc-EntropyCalibration2\nimages: 3f800000\n")  # not an ONNX model
    bad = subprocess.run([sys.executable, "-m", "edge", "inspect", str(cache)],
                         capture_output=True, text=True, timeout=60)
    assert bad.returncode == 2 and "line 1 is not a TensorRT cache header" in bad.stderr
    # a .cache that is no calibration cache was called a cut-short ONNX model (a user check)
    for junk in (b"hello\n", bytes(range(256))):  # text, and binary as a timing cache is
        cache.write_bytes(junk)
        bad = subprocess.run([sys.executable, "-m", "edge", "inspect", str(cache)],
                             capture_output=True, text=True, timeout=60)
        assert bad.returncode == 2 and "ONNX" not in bad.stderr, bad.stderr
        assert f"{cache} is not a TensorRT calibration cache: its first line would be a " \
               "header like TRT-100300-EntropyCalibration2" in bad.stderr


def test_inspect_reads_a_ranges_file(tmp_path):
    """A user check: `edge inspect` on the file `edge calibrate --ranges` wrote called it "not
    an ONNX model (... Wire format was corrupt)"."""
    import json
    import subprocess
    import sys

    path = tmp_path / "net.ranges.json"
    TensorRanges("percentile", 120, {"a": TensorRange(-1.0, 2.0, 1.5),
                                     "b": TensorRange(0.0, 6.0, 6.0)}).save(path, 99.9)
    shown = subprocess.run([sys.executable, "-m", "edge", "inspect", str(path)],
                           capture_output=True, text=True, timeout=60)
    assert shown.returncode == 0, shown.stderr
    assert shown.stdout.splitlines()[0] == (
        f"{path}: ranges of 2 tensors by percentile at 99.9%, from 120 calibration frames; "
        "largest |x| (amax) from 1.5 to 6")
    report = json.loads(subprocess.run(
        [sys.executable, "-m", "edge", "inspect", str(path), "--json"], capture_output=True,
        text=True, timeout=60).stdout)
    assert report == {"ranges_file": str(path), "method": "percentile", "percentile": 99.9,
                      "frames": 120, "tensors": 2, "amax_min": 1.5, "amax_max": 6.0}
    path.write_text(path.read_text()[:-40])  # cut short
    bad = subprocess.run([sys.executable, "-m", "edge", "inspect", str(path)],
                         capture_output=True, text=True, timeout=60)
    assert bad.returncode == 2 and "Traceback" not in bad.stderr, bad.stderr
    assert f"{path} is not a ranges file written by `edge calibrate`" in bad.stderr
    # any other JSON is no model, as before (tests/converters/test_convert_errors.py)


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
        # a user check: Python's own "invalid literal for int() with base 16" was said
        ("TRT-100300-EntropyCalibration2\na: 3c010204\nconv1: xyz\n",
         r"line 3 is malformed \('xyz' is not a scale's hex digits \(up to 8, such as "
         r"3c010204\)\): "
         r"'conv1: xyz'; write the cache again with `edge calibrate --cache`$"),
        ("TRT-100300-EntropyCalibration2\nconv1: 1ffffffff\n", "line 2 is malformed"),
        # damaged files `edge inspect` took for caches (a user check)
        ("TRT-100300-EntropyCalibration2\nconv1: 3f800000\nconv2: 3", "is cut short"),
        ("TRT-100300-EntropyCalibration2\n", "holds a header and no tensor scales"),
        ("TRT-100300-EntropyCalibration2\nconv1: 7fc00000\n",
         r"line 2 is malformed \(scale nan is not a finite non-negative number\)"),
        ("TRT-100300-EntropyCalibration2\nconv1: bf800000\n", "scale -1.0 is not a finite"),
        ("TRT-100300-FooCalibration\nconv1: 3f800000\n",
         "names the calibrator FooCalibration, which TensorRT does not have"),
        # hand-edited caches `edge inspect` took (a user check)
        ("TRT-100300-EntropyCalibration2\nconv1: 3f800000\nconv1: 3c010204\n",
         r"line 3 is malformed \(conv1 is scaled on line 2 too\)"),
        ("TRT-100300-EntropyCalibration2\nconv1: 0x3f800000\n",
         r"'0x3f800000' is not a scale's hex digits"),
        ("TRT-100300-EntropyCalibration2\nconv1: -1\n", r"'-1' is not a scale's hex digits"),
        # a user check: said as "line 1 is not a TensorRT cache header"
        ("\ufeffTRT-100300-EntropyCalibration2\nconv1: 3f800000\n",
         r"starts with a byte order mark \(an editor saved it as UTF-8 with BOM\)"),
        # scales TensorRT cannot quantize with, read as written (a user check)
        ("TRT-100300-EntropyCalibration2\nconv1: 3c010204\nconv2: 0\n",
         r"line 3 is malformed \(scale 0: TensorRT divides by a tensor's scale"),
        ("TRT-100300-EntropyCalibration2\nconv1: 1\n",
         r"scale 1.4e-45 is below float32's normal range: the GPU reads it as 0"),
        ("TRT-100300-EntropyCalibration2\nconv1: 7f7fffff\n",
         r"scale 3.4e\+38 puts the tensor's range \(scale x 127\) beyond float32"),
    ],
)
def test_bad_caches_name_the_line(text, message):
    with pytest.raises(InputError, match=message):
        CalibrationCache.parse(text, "model.cache", expected_version=100300)


@pytest.mark.parametrize(("header", "message"), [
    ("TRT-7-EntropyCalibration2", r"names TensorRT version number 7 \(0\.0\.7\): TensorRT "
                                  r"0\.0\.7 is older than 8\.5"),
    ("TRT-110000-EntropyCalibration2", r"\(11\.0\.0\): TensorRT 11\.0\.0 builds strongly typed "
                                       r"networks only and reads no calibration cache"),
    ("TRT-999999999-EntropyCalibration2", r"number 999999999 \(99999\.99\.99\)"),
])
def test_a_header_naming_a_tensorrt_that_reads_no_cache_is_refused(header, message):
    """A user check: `edge inspect` read these as TensorRT 0.0.7, 11.0.0 (then said
    build-engine reads it) and 99999.99.99."""
    with pytest.raises(InputError, match=message):
        CalibrationCache.parse(f"{header}\nconv1: 3f800000\n", "model.cache")


@pytest.mark.parametrize("version", ["10", "8.10.0", "10.300.1", "10.-3.0", "10.3.0.1.2", "",
                                     "abc", "10.3.0-", "v10.3", "10.3.x"])
def test_a_version_no_tensorrt_has_is_refused(version):
    """A user check: `10` wrote a cache for 10.0.0, `8.10.0` one headed 9.0.0, `10.-3.0` one
    headed 99.7.0, and extra parts were dropped, all with exit 0."""
    with pytest.raises(InputError, match=r"is not like 10\.3\.0|does not exist"):
        trt_version_number(version)
    assert trt_version_number("10.3.0.30") == 100300  # the build number after the patch
    # as `dpkg -l tensorrt` shows it on JetPack 6 (a user check: refused by the message that
    # names dpkg)
    assert trt_version_number("10.3.0.30-1+cuda12.5") == 100300
    assert trt_version_number("8.6.2.3-1+cuda12.2") == 8602


def test_a_binary_file_given_as_a_cache_is_named_as_such(tmp_path, demo_model):
    """A user check: `edge build-engine MODEL --cache MODEL.int8.onnx` said "'utf-8' codec
    can't decode byte 0xfd in position 20"."""
    with pytest.raises(InputError, match=r"is not a TensorRT calibration cache: it holds binary "
                                         r"data \(a model, an engine\?\), and a cache is text"):
        CalibrationCache.read(demo_model)

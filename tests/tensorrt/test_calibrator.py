from __future__ import annotations

import types

import pytest

from calibration.cache import cache_from_ranges
from calibration.ranges import TensorRange, TensorRanges
from edge.errors import InputError
from edge.tensorrt.calibrator import CacheServer, calibrator_from_cache


@pytest.fixture
def cache_file(tmp_path):
    ranges = TensorRanges("entropy", 8, {"conv1": TensorRange(0, 4, 3.0)})
    path = tmp_path / "model.cache"
    cache_from_ranges(ranges, "10.3.0", ("images", 1.0)).write(path)
    return path


def test_server_serves_the_cache_and_never_asks_for_data(cache_file):
    server = CacheServer(cache_file, "10.3.0")
    assert server.read_calibration_cache() == cache_file.read_bytes()
    assert server.tensors == 2 and server.get_batch_size() == 1
    assert server.get_batch(["images"]) is None and server.batches_requested == 1
    server.write_calibration_cache(b"TRT-100300-EntropyCalibration2\n")
    assert cache_file.read_bytes() == server.read_calibration_cache()  # not overwritten


def test_a_hand_edited_cache_reaches_tensorrt_as_tensorrt_writes_one(cache_file, tmp_path):
    """A user check: CRLF line ends, an indented name and no space after the colon were taken
    by the reader (and `edge inspect`), and handed to TensorRT as they were."""
    edited = tmp_path / "edited.cache"
    lines = cache_file.read_text().splitlines()
    edited.write_bytes(("\r\n".join([lines[0], f"  {lines[1].replace(': ', ':')}", *lines[2:]])
                        + "\r\n").encode())
    assert CacheServer(edited, "10.3.0").read_calibration_cache() == cache_file.read_bytes()


def test_cache_from_another_tensorrt_or_malformed(cache_file, tmp_path):
    with pytest.raises(InputError, match="version number 100300, not 8601"):
        CacheServer(cache_file, "8.6.1")
    broken = tmp_path / "broken.cache"
    broken.write_text("TRT-100300-EntropyCalibration2\nconv1 3c010204\n")
    with pytest.raises(InputError, match="line 2 is malformed"):
        CacheServer(broken, "10.3.0")
    with pytest.raises(InputError, match="strongly typed"):
        CacheServer(cache_file, "11.0.0")


class StandInCalibrator:
    """Plays TensorRT's IInt8EntropyCalibrator2 base (a pybind class) in the test."""

    def __init__(self) -> None:
        self.base_initialised = True


def test_tensorrt_subclass_forwards_to_the_server(cache_file):
    trt = types.SimpleNamespace(IInt8EntropyCalibrator2=StandInCalibrator)
    calibrator = calibrator_from_cache(trt, cache_file, "10.3.0")
    assert isinstance(calibrator, StandInCalibrator) and calibrator.base_initialised
    assert calibrator.read_calibration_cache() == cache_file.read_bytes()
    assert calibrator.get_batch(["images"]) is None
    with pytest.raises(InputError, match="no INT8 calibrators"):
        calibrator_from_cache(types.SimpleNamespace(), cache_file, "11.0.0")


def test_a_cache_made_for_the_model_passes_and_another_models_is_refused(tmp_path, demo_model):
    """The cache `edge calibrate --cache` writes names the model's own tensors; one of another
    export (renamed tensors) names few of them, and TensorRT would build those in FP16."""
    import onnx

    from edge.tensorrt.calibrator import refuse_a_cache_of_another_model

    graph = onnx.load(str(demo_model)).graph
    own = {node.output[0]: TensorRange(0, 4, 3.0) for node in graph.node}
    cache = tmp_path / "own.cache"
    cache_from_ranges(TensorRanges("entropy", 8, own), "10.3.0",
                      (graph.input[0].name, 1.0)).write(cache)
    refuse_a_cache_of_another_model(cache, demo_model)
    renamed = {f"/backbone/stage{i}/Conv_output_0": TensorRange(0, 4, 3.0) for i in range(10)}
    cache_from_ranges(TensorRanges("entropy", 8, {**renamed, **dict(list(own.items())[:3])}),
                      "10.3.0", (graph.input[0].name, 1.0)).write(cache)
    with pytest.raises(InputError, match=r"own\.cache scales 14 tensors, 10 of them not in "
                                         r".*\(e\.g\. /backbone/stage0/Conv_output_0"):
        refuse_a_cache_of_another_model(cache, demo_model)

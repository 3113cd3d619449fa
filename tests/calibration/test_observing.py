"""The statistics session reads observed tensors in ONNX Runtime's blocked layout where that
holds the same values, and falls back to the plain outputs where it cannot tell."""

from __future__ import annotations

import platform

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

from calibration.observing import NCHWC_DOMAIN, ObservingSession, blocked_sources


def _plain_outputs(model, tensors, feed):
    import onnxruntime as ort

    from calibration.stats import model_exposing

    session = ort.InferenceSession(model_exposing(model, tensors).SerializeToString(),
                                   providers=["CPUExecutionProvider"])
    return session.run(tensors, feed)


@pytest.fixture
def observed(demo_model):
    from calibration.readers import frames_from
    from calibration.stats import model_observing
    from converters.quantize import CalibrateOptions, load_float_model, tensors_to_observe

    model, spec = load_float_model(demo_model)
    tensors = tensors_to_observe(model, CalibrateOptions())
    feeds = list(frames_from("synthetic://shapes?seed=7", max_images=3).inputs(spec))
    return model, tensors, model_observing(model, tensors), feeds


def test_blocked_outputs_hold_each_tensors_values(observed):
    """Every output holds exactly the values the whole model computes for its tensor (in
    another order where it is read blocked), frame after frame."""
    model, tensors, observing, feeds = observed
    session = ObservingSession(observing, tensors, threads=1)
    for feed in feeds:
        for name, expected, got in zip(tensors, _plain_outputs(model, tensors, feed),
                                       session.run(feed), strict=True):
            assert got.shape == expected.shape, name
            np.testing.assert_array_equal(np.sort(got, axis=None), np.sort(expected, axis=None),
                                          err_msg=name)
    if platform.machine().lower() in ("x86_64", "amd64"):
        # ONNX Runtime's NCHWc layout is x86's: after the first batch's check, most of the
        # demo detector's 16- and 32-channel activations are still read as they are
        assert session.rewired > len(tensors) // 2


def test_a_failed_check_keeps_the_plain_outputs(observed, monkeypatch):
    """When the first batch's blocked outputs do not match the plain ones, every batch is read
    through the plain session, values in their own order."""
    import calibration.observing

    monkeypatch.setattr(calibration.observing._ValueSummary, "matches", lambda self, value: False)
    model, tensors, observing, feeds = observed
    session = ObservingSession(observing, tensors, threads=1)
    for feed in feeds:
        for expected, got in zip(_plain_outputs(model, tensors, feed), session.run(feed),
                                 strict=True):
            np.testing.assert_array_equal(got, expected)
    assert session.rewired == 0


def test_an_optimised_graph_that_cannot_be_saved_leaves_the_plain_session(observed,
                                                                          monkeypatch):
    """Where ONNX Runtime cannot save its optimised graph (a model past protobuf's 2 GB, a
    read-only temporary folder), the session is made without the save and nothing is
    rewired."""
    import onnxruntime as ort

    import calibration.observing

    real = ort.InferenceSession

    def refusing_to_save(model, options=None, **kwargs):
        if options is not None and options.optimized_model_filepath:
            raise RuntimeError("cannot save the optimized model")
        return real(model, options, **kwargs)

    monkeypatch.setattr(calibration.observing.ort, "InferenceSession", refusing_to_save)
    model, tensors, observing, feeds = observed
    session = ObservingSession(observing, tensors, threads=1)
    assert session.rewired == 0
    for expected, got in zip(_plain_outputs(model, tensors, feeds[0]), session.run(feeds[0]),
                             strict=True):
        np.testing.assert_array_equal(got, expected)


def test_statistics_from_blocked_outputs_match_the_plain_ones(observed):
    """Min, max and count are those of every value; a tensor small enough to be histogrammed
    whole gets the same histogram in either layout."""
    from calibration.stats import HISTOGRAM_SAMPLE, TensorStats

    model, tensors, observing, feeds = observed
    session = ObservingSession(observing, tensors, threads=1)
    blocked = {name: TensorStats(name, sample_values=HISTOGRAM_SAMPLE) for name in tensors}
    plain = {name: TensorStats(name, sample_values=HISTOGRAM_SAMPLE) for name in tensors}
    for feed in feeds:
        for name, value in zip(tensors, session.run(feed), strict=True):
            blocked[name].update(value)
        for name, value in zip(tensors, _plain_outputs(model, tensors, feed), strict=True):
            plain[name].update(value)
    whole = 0
    for name in tensors:
        a, b = blocked[name], plain[name]
        assert (a.minimum, a.maximum, a.count, a.range) == (b.minimum, b.maximum, b.count,
                                                             b.range), name
        assert a.histogram.sum() == b.histogram.sum(), name
        if a.count // len(feeds) <= HISTOGRAM_SAMPLE:
            whole += 1
            np.testing.assert_array_equal(a.histogram, b.histogram, err_msg=name)
    assert whole > 0


def _reorder(source: str, output: str, channels: int) -> onnx.NodeProto:
    return helper.make_node("ReorderOutput", [source], [output], domain=NCHWC_DOMAIN,
                            channels=channels)


def test_only_whole_block_conversions_nothing_else_reads_are_rewired():
    """A conversion is skipped where its channels would leave padding lanes in the last block,
    where another node reads the NCHW copy, and where the output is not an observed tensor."""
    nodes = [
        _reorder("a_blocked", "a", 32),
        _reorder("b_blocked", "b", 24),  # 24 channels: the last 16-wide block is padded
        _reorder("c_blocked", "c", 32),
        helper.make_node("Relu", ["c"], ["c_relu"]),  # reads the NCHW copy
        _reorder("d_blocked", "d", 64),  # not observed
        helper.make_node("Relu", ["x"], ["e"]),  # not a conversion
    ]
    graph = helper.make_graph(
        nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, None)],
        [helper.make_tensor_value_info(n, TensorProto.FLOAT, None) for n in "abcde"])
    model = helper.make_model(graph)
    assert blocked_sources(model, ["a", "b", "c", "e"]) == {"a": "a_blocked"}

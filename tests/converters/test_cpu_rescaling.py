"""The `cpu` profile's candidates rewritten from one ONNX Runtime build equal full builds."""

from __future__ import annotations

import dataclasses

import pytest

from calibration.ranges import TensorRange, TensorRanges, range_method
from calibration.readers import frames_from
from calibration.stats import StatsCollector
from converters import cpu_rescaling
from converters.cpu_rescaling import CpuRescaling
from converters.qdq_cpu import qdq_for_cpu
from converters.quantize import CalibrateOptions, load_float_model, tensors_to_observe


@pytest.fixture(scope="module")
def demo_ranges(demo_model):
    """The demo detector, its cpu-profile tensors and three methods' ranges over 8 frames."""
    model, spec = load_float_model(demo_model)
    tensors = tensors_to_observe(model, CalibrateOptions(profile="cpu"))
    collector = StatsCollector(model, tensors)
    stats = collector.collect(frames_from("synthetic://shapes?seed=5", max_images=8).inputs(spec))
    ranges = [TensorRanges.from_stats(stats, range_method(method), collector.frames)
              for method in ("minmax", "entropy", "mse")]
    return model, tensors, ranges


def with_edge_cases(ranges: TensorRanges) -> TensorRanges:
    """`ranges` with a dead tensor (all zero) and a positive-only one."""
    names = list(ranges.ranges)
    changed = dict(ranges.ranges)
    changed[names[3]] = TensorRange(0.0, 0.0, 0.0)
    changed[names[5]] = TensorRange(0.25, 3.0, 2.5)
    return dataclasses.replace(ranges, ranges=changed)


def test_rewritten_models_are_byte_identical_to_full_builds(demo_ranges, monkeypatch):
    model, _, ranges = demo_ranges
    builds: list[str] = []
    build = cpu_rescaling.qdq_for_cpu
    monkeypatch.setattr(cpu_rescaling, "qdq_for_cpu",
                        lambda m, r, e, said: builds.append(r.method) or build(m, r, e, said))
    rescaling = CpuRescaling(model, [])
    first = rescaling(ranges[0])
    assert rescaling.exact is None and builds == ["minmax"]  # one model: one build
    candidates = [ranges[1], ranges[2], with_edge_cases(ranges[2])]
    rewritten = [rescaling(candidate) for candidate in candidates]
    assert rescaling.exact
    assert builds == ["minmax", "minmax moved"]  # the check, then rewritten copies only
    for candidate, model_bytes in zip(candidates, rewritten, strict=True):
        assert model_bytes.SerializeToString() == \
            qdq_for_cpu(model, candidate).SerializeToString(), candidate.method
    assert first.SerializeToString() != rewritten[0].SerializeToString()  # values do differ


def test_exclusions_and_a_different_tensor_set(demo_ranges):
    model, _, ranges = demo_ranges
    conv = next(n.name for n in model.graph.node if n.op_type == "Conv" and "stem" not in n.name)
    rescaling = CpuRescaling(model, [conv])
    rescaling(ranges[0])
    assert rescaling(ranges[2]).SerializeToString() == \
        qdq_for_cpu(model, ranges[2], [conv]).SerializeToString()
    assert rescaling.exact
    fewer = TensorRanges("mse", 8, dict(list(ranges[2].ranges.items())[1:]))
    assert rescaling(fewer).SerializeToString() == \
        qdq_for_cpu(model, fewer, [conv]).SerializeToString()


def _quantizer_moved(*_: object) -> None:
    raise AttributeError("'QDQQuantizer' object has no attribute 'calc_graph_quant_params'")


_found = cpu_rescaling._rescaled_initializers


@pytest.mark.parametrize(("name", "broken"), [
    ("_quantizer", _quantizer_moved),  # ONNX Runtime's internals moved
    ("_set_values", lambda *_: None),  # writes nothing
    ("_rescaled_initializers", lambda *args: (_found(*args)[0], [])),  # misses the biases
], ids=["onnx-runtime-moved", "writes-nothing", "misses-biases"])
def test_every_model_is_built_in_full_when_rewriting_is_not_exact(demo_ranges, monkeypatch,
                                                                  name, broken):
    model, _, ranges = demo_ranges
    monkeypatch.setattr(cpu_rescaling, name, broken)
    rescaling = CpuRescaling(model, [])
    rescaling(ranges[0])
    assert rescaling(ranges[2]).SerializeToString() == \
        qdq_for_cpu(model, ranges[2]).SerializeToString()
    assert rescaling.exact is False


def test_the_int8_model_keeps_the_network_s_producer(demo_ranges):
    """A user check: after `--profile cpu`, `edge inspect` said "made by onnx.quantize", the
    network's exporter lost (the `tensorrt` profile kept it)."""
    model, _, ranges = demo_ranges
    quantized = qdq_for_cpu(model, ranges[0])
    assert (quantized.producer_name, quantized.producer_version) == \
        (model.producer_name, model.producer_version) != ("onnx.quantize", "0.1.0")

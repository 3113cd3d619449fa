"""The `cpu` profile's latency check: INT8 against FP32 on this CPU, taking turns."""

from __future__ import annotations

import numpy as np
import pytest

from calibration.latency import (
    MIN_ROUNDS,
    LatencyComparison,
    compare_cpu_latency,
    interleaved_medians_ms,
)


def test_models_take_turns_in_blocks_and_the_first_block_is_not_counted():
    order: list[str] = []
    runs = {"a": lambda: order.append("a"), "b": lambda: order.append("b")}
    medians = interleaved_medians_ms(runs, rounds=3, repeats=2)
    assert order == ["a", "a", "b", "b"] * 4  # a warm-up block each, then 3 blocks each
    assert set(medians) == {"a", "b"} and all(ms >= 0 for ms in medians.values())


def test_only_an_int8_model_no_faster_than_fp32_is_warned_about():
    assert LatencyComparison(20.0, 13.0, 10).slower_warning() is None
    assert LatencyComparison(20.0, 13.0, 10).ratio == pytest.approx(0.65)
    warning = LatencyComparison(1.4, 1.9, 90).slower_warning()
    assert warning is not None
    assert "not faster than FP32" in warning and "1.90 ms against 1.40 ms" in warning
    assert "1.36x" in warning and "deploy the FP32 model" in warning
    assert LatencyComparison(1.4, 1.9, 90).as_dict() == {
        "fp32_ms": 1.4, "int8_ms": 1.9, "ratio": 1.357, "runs": 90, "warning": warning}
    assert LatencyComparison(20.0, 13.0, 10).as_dict()["warning"] is None


def test_the_demo_detectors_models_are_timed_on_a_camera_frame(demo_model):
    from calibration.readers import frames_from
    from converters.quantize import CalibrateOptions, calibrate, load_float_model

    model, spec = load_float_model(demo_model)
    frames = frames_from("synthetic://shapes?seed=5", max_images=4)
    int8 = calibrate(model, spec, frames, CalibrateOptions(profile="cpu", progress=False,
                                                           compare=False)).model
    feed = next(frames.inputs(spec))
    latency = compare_cpu_latency(model, int8, feed, budget_s=0.2)
    assert latency.fp32_ms > 0 and latency.int8_ms > 0
    assert latency.runs >= MIN_ROUNDS
    assert np.isfinite(latency.ratio)


def test_a_slow_model_gets_fewer_rounds_never_fewer_than_the_minimum(monkeypatch):
    """Runs that fill the budget on their own are timed in `MIN_ROUNDS` blocks of one."""
    import calibration.latency as latency_module

    calls: list[str] = []

    class Session:
        def __init__(self, name: str) -> None:
            self.name = name

        def run(self, outputs, feed):
            calls.append(self.name)

    made = iter([Session("fp32"), Session("int8")])
    monkeypatch.setattr(latency_module, "quantized_session", lambda *a, **k: next(made))
    clock = iter(range(0, 10_000, 1))  # every run takes 1 s on this clock
    monkeypatch.setattr(latency_module.time, "perf_counter", lambda: float(next(clock)))
    latency = compare_cpu_latency(None, None, {}, budget_s=0.6)
    assert latency.runs == MIN_ROUNDS
    assert calls == ["fp32", "int8"] + ["fp32", "int8"] * (MIN_ROUNDS + 1)
    assert latency.fp32_ms == latency.int8_ms == 1000.0

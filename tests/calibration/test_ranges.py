from __future__ import annotations

import numpy as np
import pytest

from calibration.ranges import (
    Entropy,
    MinMax,
    Mse,
    Percentile,
    TensorRanges,
    kl_divergence_for,
    kl_divergences,
    quantization_errors,
    range_method,
)
from calibration.stats import TensorStats
from edge.errors import InputError


def stats_of(values: np.ndarray, batches: int = 4) -> TensorStats:
    stats = TensorStats("t")
    for chunk in np.array_split(values, batches):
        stats.update(chunk)
    return stats


@pytest.fixture(scope="module")
def laplace() -> np.ndarray:
    return np.random.default_rng(0).laplace(0, 1, 400_000).astype(np.float32)


def reference_entropy_threshold(values: np.ndarray) -> float:
    """Independent TensorRT-style search written as a plain loop (as in NVIDIA's
    pytorch-quantization): histogram of |x| in 2048 bins over [0, max], zero bin levelled,
    outliers folded into the last kept bin, 128-level quantization, KL = sum p log(p/q)."""

    def entropy(p: np.ndarray, q: np.ndarray) -> float:
        mask = p > 0
        if np.any(q[mask] == 0):
            return np.inf
        return float(np.sum(p[mask] * np.log(p[mask] / q[mask])))

    magnitude = np.abs(values)
    hist, edges = np.histogram(magnitude, bins=2048, range=(0, magnitude.max()))
    hist = hist.astype(np.float64)
    hist[0] = hist[1]
    best, best_kl = None, np.inf
    for i in range(128, 2049):
        reference = hist[:i].copy()
        reference[-1] += hist[i:].sum()
        space = np.linspace(0, i, num=129)
        digitized = np.digitize(np.arange(i), space) - 1
        digitized[hist[:i] == 0] = -1
        quantized = np.zeros(128)
        for index, chunk in enumerate(digitized):
            if chunk != -1:
                quantized[chunk] += hist[index]
        counts = np.bincount(digitized[digitized >= 0], minlength=128)
        expanded = np.zeros(i)
        for index, chunk in enumerate(digitized):
            if chunk != -1:
                expanded[index] = quantized[chunk] / counts[chunk]
        kl = entropy(reference / reference.sum(), expanded / expanded.sum())
        if kl < best_kl:
            best, best_kl = i, kl
    return float(edges[best])


def test_minmax_and_percentile_against_numpy(laplace):
    stats = stats_of(laplace)
    assert MinMax().amax(stats) == pytest.approx(np.abs(laplace).max())
    for q in (99.0, 99.9, 99.99):
        expected = np.percentile(np.abs(laplace), q)
        assert Percentile(q).amax(stats) == pytest.approx(expected, abs=2 * stats.bin_width)


def test_entropy_matches_an_independent_implementation(laplace):
    stats = stats_of(laplace)
    expected = reference_entropy_threshold(laplace)
    assert Entropy().amax(stats) == pytest.approx(expected, rel=0.01)
    assert Entropy().amax(stats) < np.abs(laplace).max()  # it clips the long tail


def test_vectorised_kl_equals_the_direct_definition():
    rng = np.random.default_rng(1)
    hist = np.bincount(np.minimum((np.abs(rng.standard_t(4, 100_000)) * 150).astype(int), 2047),
                       minlength=2048).astype(np.float64)
    hist[rng.integers(0, 2048, 40)] = 0
    candidates = np.arange(128, 2049)
    fast = kl_divergences(hist, candidates)
    slow = np.array([kl_divergence_for(hist, i) for i in candidates])
    assert np.array_equal(np.isinf(fast), np.isinf(slow))
    np.testing.assert_allclose(fast[np.isfinite(slow)], slow[np.isfinite(slow)], atol=1e-10)


def test_tabled_quantization_errors_equal_the_direct_sum():
    rng = np.random.default_rng(2)
    hist = rng.integers(0, 50, 2048).astype(np.float64)
    hist[rng.integers(0, 2048, 300)] = 0
    width = 0.0137
    candidates = np.arange(32, 2049, 5)
    centres = (np.arange(2048) + 0.5) * width
    direct = []
    for bin_edge in candidates:
        threshold = bin_edge * width
        step = threshold / 127
        rounded = np.round(np.minimum(centres, threshold) / step) * step
        direct.append(float(((centres - rounded) ** 2) @ hist))
    np.testing.assert_allclose(quantization_errors(hist, width, candidates), direct, rtol=1e-9)


def test_mse_minimises_the_quantization_error_of_the_samples(laplace):
    stats = stats_of(laplace)
    chosen = Mse().amax(stats)

    def error(threshold: float) -> float:
        step = threshold / 127
        clipped = np.clip(laplace, -threshold, threshold)
        return float(np.mean((laplace - np.round(clipped / step) * step) ** 2))

    grid = np.linspace(np.abs(laplace).max() * 0.05, np.abs(laplace).max(), 400)
    best = grid[np.argmin([error(t) for t in grid])]
    assert error(chosen) <= error(best) * 1.02
    assert chosen < np.abs(laplace).max()


def test_methods_by_name_and_bad_names():
    assert [range_method(n).name for n in ("minmax", "percentile", "entropy", "mse")] == [
        "minmax", "percentile", "entropy", "mse"]
    with pytest.raises(InputError, match="unknown range method 'kl'"):
        range_method("kl")
    with pytest.raises(InputError, match="percentile"):
        Percentile(0)


def test_dead_tensor_gets_a_nonzero_scale():
    stats = stats_of(np.zeros(1000, np.float32))
    ranges = TensorRanges.from_stats({"t": stats}, Entropy(), 1)
    assert ranges.ranges["t"].amax == 0 and ranges.ranges["t"].scale > 0


def test_ranges_round_trip_and_bad_files(tmp_path, laplace):
    ranges = TensorRanges.from_stats({"a": stats_of(laplace)}, Mse(), 4)
    ranges.save(tmp_path / "ranges.json")
    assert TensorRanges.load(tmp_path / "ranges.json") == ranges
    (tmp_path / "bad.json").write_text('{"method": "mse"}')
    with pytest.raises(InputError, match="not a ranges file"):
        TensorRanges.load(tmp_path / "bad.json")

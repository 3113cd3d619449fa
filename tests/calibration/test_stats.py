from __future__ import annotations

import numpy as np
import pytest

from calibration.stats import BINS, TensorStats
from edge.errors import InputError


def test_streaming_histogram_equals_one_histogram_of_everything():
    rng = np.random.default_rng(0)
    batches = [rng.normal(0, scale, 10_000).astype(np.float32) for scale in (0.1, 1, 5, 40)]
    stats = TensorStats("t")
    for batch in batches:
        stats.update(batch)  # the range doubles several times on the way
    everything = np.abs(np.concatenate(batches))
    expected = np.bincount(np.minimum((everything * (BINS / stats.range)).astype(np.intp),
                                      BINS - 1), minlength=BINS)
    # Exact up to float rounding of values that sit on a bin edge.
    assert np.abs(stats.histogram - expected).sum() <= 10
    assert stats.abs_max == pytest.approx(everything.max())
    assert stats.count == everything.size
    rebinned = stats.histogram_to_max(2048)
    direct, _ = np.histogram(everything, bins=2048, range=(0, everything.max()))
    assert rebinned.sum() == pytest.approx(direct.sum())
    assert np.abs(np.cumsum(rebinned) - np.cumsum(direct)).max() < everything.size * 0.002


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_activations_are_reported(bad):
    with pytest.raises(InputError, match="NaN or infinite"):
        TensorStats("conv1").update(np.array([0.0, bad, 1.0], np.float32))


def test_collector_memory_does_not_grow_with_frames(demo_model):
    """Peak traced memory (the samples handed to the fold; ONNX Runtime's own buffers are not
    traced) over 48 frames stays at that of 8, where the runs in flight and the batches waiting
    are already at their bound: each batch is folded and dropped."""
    import tracemalloc

    from calibration.readers import frames_from
    from calibration.stats import StatsCollector
    from converters.quantize import CalibrateOptions, load_float_model, tensors_to_observe

    model, spec = load_float_model(demo_model)
    tensors = tensors_to_observe(model, CalibrateOptions(profile="cpu"))
    peaks = []
    for count in (8, 48):
        feeds = list(frames_from("synthetic://shapes?seed=2", max_images=count).inputs(spec))
        collector = StatsCollector(model, tensors)
        tracemalloc.start()
        collector.collect(iter(feeds))
        peaks.append(tracemalloc.get_traced_memory()[1])
        tracemalloc.stop()
    assert peaks[1] < peaks[0] * 1.1, peaks


def test_large_tensors_reach_the_histogram_as_a_rotating_strided_sample():
    """Min, max and count see every value; the histogram an evenly strided sample whose offset
    moves on with every batch, so all positions are sampled in turn."""
    from calibration.stats import HISTOGRAM_SAMPLE

    batch = np.arange(11_000, dtype=np.float32).reshape(11, 1000)  # stride 11 at 1000 values
    stats = TensorStats("t", sample_values=1000)
    full = TensorStats("t")
    for _ in range(11):
        stats.update(batch)
        full.update(batch)
    assert (stats.minimum, stats.maximum, stats.count) == (0.0, 10_999.0, 121_000)
    assert stats.histogram.sum() == 11_000  # 1000 of each batch
    np.testing.assert_array_equal(stats.histogram, full.histogram // 11)  # offsets 0..10: all
    assert HISTOGRAM_SAMPLE == 1 << 16


@pytest.mark.parametrize(("size", "stride"), [(1000, 1), (3000, 3), (4000, 5), (20_000, 21)])
def test_sample_strides_are_odd(size, stride):
    """An even stride would keep sampling the same lanes of a blocked (NCHWc) layout, channels
    8 or 16 innermost; an odd one steps through all of them."""
    from calibration.stats import sample_stride

    assert sample_stride(size, 1000) == stride
    lanes = {(position % 16) for position in range(0, size, stride)}
    assert stride == 1 or len(lanes) == 16


def test_observing_model_drops_the_decode_tail_and_keeps_the_values(demo_model):
    """The statistics session runs only what the observed tensors need (no box decoding), and
    each observed tensor holds what the whole model computes for it."""
    import onnxruntime as ort

    from calibration.readers import frames_from
    from calibration.stats import model_exposing, model_observing
    from converters.qdq_tensorrt import decode_tail
    from converters.quantize import CalibrateOptions, load_float_model, tensors_to_observe

    model, spec = load_float_model(demo_model)
    tensors = tensors_to_observe(model, CalibrateOptions())
    observing = model_observing(model, tensors)
    assert [o.name for o in observing.graph.output] == tensors
    kept = {node.name for node in observing.graph.node}
    tail = decode_tail(model)
    assert tail and not kept & tail
    feed = next(frames_from("synthetic://shapes?seed=3", max_images=1).inputs(spec))
    whole = ort.InferenceSession(model_exposing(model, tensors).SerializeToString(),
                                 providers=["CPUExecutionProvider"])
    pruned = ort.InferenceSession(observing.SerializeToString(),
                                  providers=["CPUExecutionProvider"])
    for expected, observed in zip(whole.run(tensors, feed), pruned.run(tensors, feed),
                                  strict=True):
        np.testing.assert_array_equal(observed, expected)


@pytest.mark.parametrize("waiting_bytes", [None, 1])
def test_runs_in_flight_fold_as_one_at_a_time(demo_model, monkeypatch, waiting_bytes):
    """`collect` runs several batches at once but folds them in order: the statistics are
    exactly those of updating batch by batch, however many batches may wait (1: a model whose
    activations fill the byte budget with one)."""
    from calibration import stats as stats_module
    from calibration.readers import frames_from
    from calibration.stats import StatsCollector
    from converters.quantize import CalibrateOptions, load_float_model, tensors_to_observe

    if waiting_bytes is not None:
        monkeypatch.setattr(stats_module, "WAITING_BYTES", waiting_bytes)
    model, spec = load_float_model(demo_model)
    tensors = tensors_to_observe(model, CalibrateOptions())
    feeds = list(frames_from("synthetic://shapes?seed=4", max_images=10).inputs(spec))
    collector = StatsCollector(model, tensors)
    together = collector.collect(iter(feeds))
    assert collector.frames == 10
    alone = StatsCollector(model, tensors)
    for feed in feeds:
        alone.update(feed)
    assert alone.frames == 10
    assert_same_statistics(together, alone.stats, tensors)


def test_the_fold_window_shrinks_for_large_batches():
    from calibration.stats import FOLD_WINDOW, fold_window

    mb = 1 << 20
    assert fold_window(20 * mb) == FOLD_WINDOW == 3  # a YOLOv8n frame's activations
    assert fold_window(100 * mb) == 2
    assert fold_window(150 * mb) == 1  # an 800x608 PP-PicoDet frame's samples (cpu profile)
    assert fold_window(0) == FOLD_WINDOW
    assert fold_window(0) == FOLD_WINDOW


def test_a_failing_frame_stops_the_runs_in_flight(demo_model):
    """An error from the frames (or a run) reaches the caller; nothing keeps running."""
    import threading

    from calibration.readers import frames_from
    from calibration.stats import StatsCollector
    from converters.quantize import CalibrateOptions, load_float_model, tensors_to_observe

    model, spec = load_float_model(demo_model)
    collector = StatsCollector(model, tensors_to_observe(model, CalibrateOptions()))
    feeds = list(frames_from("synthetic://shapes?seed=5", max_images=6).inputs(spec))

    def failing():
        yield from feeds[:5]
        raise InputError("frame 6 is broken")

    with pytest.raises(InputError, match="frame 6 is broken"):
        collector.collect(failing())
    assert not [t for t in threading.enumerate() if t.name.startswith("stats")]


@pytest.mark.parametrize(("requested", "cores", "plan"), [
    (0, 2, (2, 1)), (0, 4, (2, 1)), (0, 8, (2, 3)),  # default: all cores but two, >= 1 a run
    (1, 8, (1, 1)), (3, 8, (2, 1)), (4, 2, (2, 2)),  # --threads N: N threads in all
])
def test_inference_plan_splits_the_threads_between_runs(monkeypatch, requested, cores, plan):
    from calibration import stats

    monkeypatch.setattr(stats, "usable_cores", lambda: cores)
    assert stats.inference_plan(requested) == plan


def test_a_batch_sample_owns_its_values_and_keeps_min_max_and_count_of_all():
    """What a worker hands to the fold: min, max and count of every value, and |x| of the
    strided sample in an array of its own (the activations can go), rotating with the batch
    number."""
    from calibration.stats import batch_sample

    values = np.arange(-500, 500, dtype=np.float32).reshape(10, 100)
    sample = batch_sample(values, 100, batch=3)  # stride 11 (odd) at 1000 values
    assert (sample.minimum, sample.maximum, sample.size) == (-500.0, 499.0, 1000)
    np.testing.assert_array_equal(sample.magnitudes, np.abs(values.ravel()[3::11]))
    assert not np.shares_memory(sample.magnitudes, values)
    assert batch_sample(values, 100, batch=14).magnitudes[0] == abs(values.ravel()[3])
    small = np.float32([0.0, 1.0, 2.0])  # post-ReLU, whole: a copy, not a view
    whole = batch_sample(small, 100, batch=0)
    np.testing.assert_array_equal(whole.magnitudes, small)
    assert not np.shares_memory(whole.magnitudes, small)


def test_the_histogram_sample_a_frame_shrinks_past_64_frames_to_a_floor():
    """Up to 64 frames every frame gives 64 k values; past that the set's total stays at
    64 x 64 k (4 M), down to 32 k a frame from 128 frames on; unknown: 64 k."""
    from calibration.stats import histogram_sample

    assert [histogram_sample(n) for n in (None, 0, 1, 64, 65, 100, 128, 256, 1000)] == [
        65536, 65536, 65536, 65536, 64527, 41943, 32768, 32768, 32768]


def test_a_collector_told_its_frame_count_samples_that_much_a_frame(demo_model):
    """The demo detector's largest tensor (over 64 k values a frame) reaches the histogram as
    the sample `histogram_sample` sets for the frame count; min, max and count see every
    value."""
    from calibration.readers import frames_from
    from calibration.stats import StatsCollector, histogram_sample, sample_stride
    from converters.quantize import CalibrateOptions, load_float_model, tensors_to_observe

    model, spec = load_float_model(demo_model)
    tensors = tensors_to_observe(model, CalibrateOptions(profile="cpu"))
    feeds = list(frames_from("synthetic://shapes?seed=2", max_images=3).inputs(spec))
    told = StatsCollector(model, tensors, frames=256)
    stats = told.collect(iter(feeds))
    default = StatsCollector(model, tensors).collect(iter(feeds))
    assert told.sample_values == histogram_sample(256) == 32768
    largest = max(tensors, key=lambda name: stats[name].count)
    per_frame = stats[largest].count // 3
    assert per_frame > 65536
    taken = len(range(0, per_frame, sample_stride(per_frame, 32768)))
    assert stats[largest].histogram.sum() == 3 * taken <= 3 * 32768
    assert default[largest].histogram.sum() > 3 * 32768
    for name in tensors:
        assert (stats[name].minimum, stats[name].maximum, stats[name].count) == (
            default[name].minimum, default[name].maximum, default[name].count)


@pytest.mark.parametrize("reduce_above", [None, 0])
def test_large_runs_hand_the_fold_samples_small_ones_activations(demo_model, monkeypatch,
                                                                  reduce_above):
    """Past `REDUCE_ON_WORKER_BYTES` a run reduces its activations to samples on its worker
    (small tensors whole, large ones at most 64 k values), so they can go before the fold;
    below it they go to the fold as they are. The statistics are the same either way."""
    from calibration import stats as stats_module
    from calibration.readers import frames_from
    from calibration.stats import HISTOGRAM_SAMPLE, BatchSample, StatsCollector
    from converters.quantize import CalibrateOptions, load_float_model, tensors_to_observe

    if reduce_above is not None:
        monkeypatch.setattr(stats_module, "REDUCE_ON_WORKER_BYTES", reduce_above)
    model, spec = load_float_model(demo_model)
    tensors = tensors_to_observe(model, CalibrateOptions(profile="cpu"))
    feeds = list(frames_from("synthetic://shapes?seed=2", max_images=6).inputs(spec))
    collector = StatsCollector(model, tensors)
    ran = collector._run((0, feeds[0]))
    assert ran.frames == 1 and len(ran.tensors) == len(tensors)
    if reduce_above is None:  # the demo detector's 4 MB a frame: activations
        assert not any(isinstance(t, BatchSample) for t in ran.tensors)
    else:
        for sample in ran.tensors:
            assert isinstance(sample, BatchSample)
            assert sample.magnitudes.size == sample.size or (
                sample.size > HISTOGRAM_SAMPLE >= sample.magnitudes.size)
        assert max(s.size for s in ran.tensors) > HISTOGRAM_SAMPLE  # the stem: sampled
    together = collector.collect(iter(feeds))
    monkeypatch.setattr(stats_module, "REDUCE_ON_WORKER_BYTES", 1 << 40)
    alone = StatsCollector(model, tensors)
    for feed in feeds:
        alone.update(feed)
    assert_same_statistics(together, alone.stats, tensors)


def test_runs_in_flight_are_limited_by_the_memory_available():
    from calibration.stats import runs_within_memory

    gb = 1 << 30
    assert runs_within_memory(2, gb // 50, 20 * gb) == 2  # a YOLOv8n frame: 20 MB
    assert runs_within_memory(2, gb, 20 * gb) == 2
    assert runs_within_memory(2, gb, 3 * gb) == 1  # two would take 2 of 3 GB: one
    assert runs_within_memory(2, 8 * gb, 3 * gb) == 1  # never none
    assert runs_within_memory(2, gb, None) == 2  # unknown: as planned


def test_a_machine_short_of_memory_runs_one_frame_at_a_time(demo_model, monkeypatch, caplog):
    """Where two runs' activations would take more than half the memory available, the
    statistics run one frame at a time (said once), with the same results."""
    import logging

    from calibration import stats as stats_module
    from calibration.readers import frames_from
    from calibration.stats import StatsCollector
    from converters.quantize import CalibrateOptions, load_float_model, tensors_to_observe

    model, spec = load_float_model(demo_model)
    tensors = tensors_to_observe(model, CalibrateOptions(profile="cpu"))
    feeds = list(frames_from("synthetic://shapes?seed=4", max_images=6).inputs(spec))
    plenty = StatsCollector(model, tensors, threads=2).collect(iter(feeds))
    assert "frames in flight would hold" not in caplog.text
    monkeypatch.setattr(stats_module, "available_memory_bytes", lambda: 1 << 20)  # 1 MB
    workers: list[int] = []
    real = stats_module.ThreadPoolExecutor
    monkeypatch.setattr(stats_module, "ThreadPoolExecutor",
                        lambda count, **kw: workers.append(count) or real(count, **kw))
    with caplog.at_level(logging.INFO, logger="calibration.stats"):
        short = StatsCollector(model, tensors, threads=2).collect(iter(feeds))
    assert workers == [1]
    assert "2 frames in flight would hold" in caplog.text
    assert "running one frame at a time (slower, as with --threads 1)" in caplog.text
    assert_same_statistics(plenty, short, tensors)


def assert_same_statistics(a: dict, b: dict, tensors: list[str]) -> None:
    """Min, max, count, range and histogram of every tensor equal in `a` and `b`."""
    for name in tensors:
        x, y = a[name], b[name]
        assert (x.minimum, x.maximum, x.count, x.range) == (y.minimum, y.maximum, y.count,
                                                             y.range), name
        np.testing.assert_array_equal(x.histogram, y.histogram, err_msg=name)

"""The calibration report's histogram plots, at the resolution a figure can show."""

from __future__ import annotations

import numpy as np

from calibration.report import PLOTTED_BINS, plotted_bins
from calibration.stats import TensorStats


def test_plotted_bins_merge_whole_fine_bins_up_to_the_largest_value():
    stats = TensorStats("t")
    values = np.concatenate([np.linspace(-3.0, 3.0, 10_001), [7.5]]).astype(np.float32)
    stats.update(values)
    stats.update(np.float32([9.0]))  # doubles the range: the fine bins past 9.0 stay empty
    assert stats.range > 9.0 * 1.5
    counts, width = plotted_bins(stats)
    assert len(counts) <= PLOTTED_BINS
    assert counts.sum() == stats.histogram.sum() == 10_003  # no value lost or counted twice
    assert len(counts) * width >= 9.0 > (len(counts) - 1) * width  # ends at max |x|
    merged = round(width / stats.bin_width)
    assert width == merged * stats.bin_width
    np.testing.assert_array_equal(counts[:4], stats.histogram[:4 * merged].reshape(4, -1).sum(1))
    # |x| <= 3 holds all but two values; the bins between 3 and 7.5 are empty
    below = int(np.ceil(3.0 / width))
    assert counts[:below].sum() == 10_001 and counts[below + 1:int(7.5 / width)].sum() == 0


def test_a_narrow_histogram_is_plotted_bin_for_bin():
    stats = TensorStats("t", histogram=np.zeros(64, np.int64))
    stats.update(np.float32([0.0, 0.5, 1.0, 1.0]))
    counts, width = plotted_bins(stats)
    assert width == stats.bin_width and counts.sum() == 4 and counts[-1] == 2


def test_an_int8_model_that_loses_accuracy_on_the_reports_data_is_warned_about(tmp_path):
    """A helper's report showed INT8 at mAP@0.5 0.321 against FP32's 1.000, and the terminal
    said only where the report was."""
    from calibration.evaluate import Accuracy
    from calibration.report import Report

    def report(task: str, fp32: float, int8: float) -> Report:
        key = "top1" if task == "classify" else "map50"
        return Report(tmp_path / "index.md", "data/images/val",
                      Accuracy(task, 20, **{key: fp32}), Accuracy(task, 20, **{key: int8}))

    lost = report("detect", 1.0, 0.3214).accuracy_lost()
    assert lost is not None and lost.startswith(
        "INT8 scores mAP@0.5 0.321 against FP32's 1.000 on 20 labelled images of "
        "data/images/val (-67.9 points): the report names the layers that lose most")
    assert "top-1 0.850 against FP32's 0.950" in (report("classify", 0.95, 0.85).accuracy_lost()
                                                   or "")
    assert report("detect", 0.95, 0.935).accuracy_lost() is None  # 1.5 points: within 2
    assert report("classify", 0.9, 0.95).accuracy_lost() is None

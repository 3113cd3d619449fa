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
        "INT8 scores mAP@0.5 0.321 against FP32's 1.000 (-67.9 points) on 20 labelled images "
        "of data/images/val: the report names the layers that lose most")
    assert "top-1 0.850 against FP32's 0.950" in (report("classify", 0.95, 0.85).accuracy_lost()
                                                   or "")
    assert report("detect", 0.95, 0.935).accuracy_lost() is None  # 1.5 points: within 2
    assert report("classify", 0.9, 0.95).accuracy_lost() is None


def test_a_detector_whose_int8_scores_fall_under_its_threshold_is_warned_about(tmp_path):
    """A helper's YOLOv8n: mAP@0.5 1.000 both ways (every INT8 score lower, the ranking the
    same), recall at the score threshold 1.00 -> 0.25: the device would publish a quarter of
    the objects, and nothing said so."""
    from calibration.evaluate import Accuracy
    from calibration.report import Report

    def report(fp32: tuple[float, float], int8: tuple[float, float]) -> Report:
        return Report(tmp_path / "index.md", "val",
                      Accuracy("detect", 8, map50=1.0, precision=fp32[0], recall=fp32[1]),
                      Accuracy("detect", 8, map50=1.0, precision=int8[0], recall=int8[1]))

    assert report((1.0, 1.0), (0.5, 0.25)).accuracy_lost() == (
        "INT8 scores recall (at the model's score threshold) 0.250 against FP32's 1.000 (-75.0 "
        "points), precision (at the model's score threshold) 0.500 against FP32's 1.000 (-50.0 "
        "points) on 8 "
        "labelled images of val: the report names the layers that lose most; calibrate on "
        "more frames like the deployment's, keep layers in float (--keep-float N, --exclude "
        "NODE), try the other --profile, or deploy the FP32 model")
    assert report((0.9, 0.9), (0.86, 0.87)).accuracy_lost() is None  # 4 and 3 points: within 5


def test_one_object_of_a_small_labelled_set_is_no_operating_point_loss(tmp_path):
    """On 10 objects one missed is 10 points of recall: warned about, it told a user whose INT8
    model lost nothing measurable to look for layers to keep in float."""
    from calibration.evaluate import Accuracy
    from calibration.report import Report

    def lost(int8_recall: float, objects: int) -> str | None:
        return Report(tmp_path / "index.md", "val",
                      Accuracy("detect", 5, map50=1.0, precision=1.0, recall=1.0,
                               objects=objects, detections=objects),
                      Accuracy("detect", 5, map50=1.0, precision=1.0, recall=int8_recall,
                               objects=objects, detections=round(objects * int8_recall))
                      ).accuracy_lost()

    assert lost(0.9, 10) is None  # one object
    assert (lost(0.8, 10) or "").startswith(
        "INT8 scores recall (at the model's score threshold) 0.800 against FP32's 1.000 "
        "(-20.0 points; of 10 labelled objects) on 5 labelled images")
    assert lost(0.94, 100) is not None  # 6 objects of 100: past the 5 points


def test_one_image_of_a_small_labelled_set_is_no_top1_loss(tmp_path):
    """A helper's 40 labelled photos: one image's top class changed (2.5 points) was warned
    about, while a detector's one missed object of 5 (20 points) was not."""
    from calibration.evaluate import Accuracy
    from calibration.report import Report

    def lost(fp32: float, int8: float, images: int) -> str | None:
        return Report(tmp_path / "index.md", "val", Accuracy("classify", images, top1=fp32),
                      Accuracy("classify", images, top1=int8)).accuracy_lost()

    assert lost(0.325, 0.300, 40) is None  # one image of 40
    assert (lost(0.325, 0.275, 40) or "").startswith(
        "INT8 scores top-1 0.275 against FP32's 0.325 (-5.0 points) on 40 labelled images")
    assert lost(0.95, 0.92, 100) is not None  # 3 images of 100: past the 2 points


def test_a_classifier_whose_int8_answers_change_is_warned_about_whatever_its_top1(tmp_path):
    """A user check: FP32 and INT8 both at top-1 0.6917 on 120 labelled images, the report
    "+0.00", while INT8 gave FP32's answer on 97 of them (per-class changes of -6.67 and +6.67
    cancelling out)."""
    from calibration.evaluate import Accuracy, top1_agreement
    from calibration.report import Report

    fp32 = Accuracy("classify", 120, top1=0.6917, answers=tuple([0, 1, 2, 3] * 30))
    changed = tuple([1, 0, 2, 3] * 5 + [0, 1, 2, 3] * 25)  # 10 of 120 answers swapped
    int8 = Accuracy("classify", 120, top1=0.6917, answers=changed)
    assert top1_agreement(fp32, int8) == 110 / 120
    lost = Report(tmp_path / "index.md", "val", fp32, int8).accuracy_lost()
    assert lost is not None and lost.startswith(
        "INT8 gives FP32's top-1 answer on only 110 of the 120 labelled images of val (91.7%: "
        "answers changed both ways, which top-1 alone does not show): the report names the "
        "layers")
    kept = Accuracy("classify", 120, top1=0.6917, answers=tuple([0, 1, 2, 3] * 29 + [1, 0, 2, 3]))
    assert Report(tmp_path / "index.md", "val", fp32, kept).accuracy_lost() is None  # 118
    assert fp32 == Accuracy("classify", 120, top1=0.6917)  # answers are not a figure

"""Range method selection (`--method auto`) and the warning for a method that loses clearly."""

from __future__ import annotations

import json
import logging
import re
import subprocess
import sys

import numpy as np
import pytest

from calibration.readers import frames_from
from calibration.selection import (
    Fidelity,
    agreement_lower_bound,
    agreement_upper_bound,
    all_flat,
    batches_for,
    best_of,
    clear_loss,
    far_from_fp32,
    held_out_count,
    held_out_every,
    kept_float_loss,
    thin_agreement,
    unmeasured_agreement,
)
from converters.quantize import CalibrateOptions, calibrate, load_float_model
from edge.errors import InputError

FRAMES = "synthetic://shapes?seed=11"


def fid(method: str, sqnr: float, agreement: float, compared: int = 16) -> Fidelity:
    return Fidelity(method, sqnr, agreement, 16, compared)


@pytest.mark.parametrize(("candidates", "best"), [
    # agreement decides first ...
    ([fid("entropy", 30.0, 0.53), fid("mse", 20.0, 0.97)], "mse"),
    # ... but within 5 points it is noise, and SQNR decides
    ([fid("minmax", 50.0, 1.0), fid("mse", 53.0, 0.98)], "mse"),
    ([fid("percentile", 40.0, 0.9), fid("mse", 35.0, 0.9), fid("minmax", 38.0, 0.9)],
     "percentile"),
    # two detections in all held-out frames: agreement is chance, SQNR decides
    ([fid("mse", 30.0, 0.0, compared=2), fid("minmax", 20.0, 1.0, compared=2)], "mse"),
    # ... except that one holding 95% beats one under it (a user check: minmax kept at 94.1%,
    # with no warning, where mse held 95.4%)
    ([fid("minmax", 20.2, 0.941), fid("mse", 18.4, 0.954)], "mse"),
    ([fid("minmax", 20.2, 0.941), fid("mse", 18.4, 0.925)], "minmax"),
    # a user check (YOLOX, 47 detections): one detection apart straddled a 5-point step, and
    # percentile won 5 dB below mse (labelled images: mAP@0.5 0.940 vs 0.961)
    ([fid("minmax", 16.2, 0.957, 47), fid("percentile", 12.1, 0.979, 47),
      fid("mse", 17.4, 0.957, 47)], "mse"),
    # ... while on many detections 3 points is beyond noise, and agreement decides
    ([fid("percentile", 12.1, 0.99, 1000), fid("mse", 17.4, 0.96, 1000)], "percentile"),
    # a user check (a YOLOX-style detector, FP32's 3 detections): minmax and mse made one of
    # their own (85.7%), percentile and entropy fewer (too few to measure); percentile won 6 dB
    # below minmax as the only ones "holding" 95%. One answer of 4 is noise: SQNR decides
    ([Fidelity("minmax", 17.0, 6 / 7, 3, 7, evidence=8, found=3),
      Fidelity("percentile", 10.9, 1.0, 3, 6, evidence=6, found=3),
      Fidelity("entropy", 1.2, 0.0, 3, 3, evidence=6, found=3),
      Fidelity("mse", 16.4, 6 / 7, 3, 7, evidence=8, found=3)], "minmax"),
    # 100 frames: one frame apart ties, four do not
    ([fid("minmax", 20.0, 1.0, 100), fid("mse", 25.0, 0.99, 100)], "mse"),
    ([fid("minmax", 20.0, 1.0, 100), fid("mse", 25.0, 0.96, 100)], "minmax"),
])
def test_best_of_ranks_agreement_then_sqnr(candidates, best):
    assert best_of(candidates).method == best


@pytest.mark.parametrize(("chosen", "best", "warned"), [
    (fid("entropy", 25.0, 0.53), fid("mse", 26.0, 0.97), True),   # top-1 under 95%
    (fid("entropy", 20.0, 0.99), fid("mse", 26.0, 1.0), True),    # 6 dB below the best
    (fid("entropy", 21.0, 0.99), fid("mse", 26.0, 1.0), False),   # close enough
    (fid("mse", 26.0, 0.90), fid("mse", 26.0, 0.90), False),      # it is the best
    (fid("entropy", 25.0, 0.93), fid("mse", 26.0, 0.93), False),  # nobody does better
    (fid("entropy", 25.0, 0.0, 2), fid("mse", 26.0, 1.0, 2), False),  # agreement by chance
    # a user check: one frame of 15 apart is noise, as `auto` counts it
    (fid("minmax", 20.7, 14 / 15, 15), fid("mse", 20.6, 1.0, 15), False),
    (fid("minmax", 20.7, 12 / 15, 15), fid("mse", 20.6, 1.0, 15), True),
])
def test_clear_loss_thresholds(chosen, best, warned):
    message = clear_loss(chosen, best, "classify")
    assert (message is not None) == warned
    if warned:
        assert f"--method {chosen.method} loses clearly to {best.method}" in message
        assert f"use --method {best.method} or --method auto" in message
        assert "top-1 agreement" in message and "output SQNR" in message


def test_a_loss_by_output_sqnr_alone_says_the_answers_held():
    """A user check: "loses clearly to minmax ...: detection agreement with FP32 100.0% vs
    98.7%, output SQNR 27.9 dB vs 34.1 dB" read as contradicting itself."""
    chosen = Fidelity("mse", 27.9, 1.0, 9, 76, evidence=76, found=38)
    best = Fidelity("minmax", 34.1, 0.987, 9, 77, evidence=78, found=38)
    message = clear_loss(chosen, best, "detect") or ""
    assert message == (
        "--method mse loses clearly to minmax in output SQNR on 9 held-out frames: 27.9 dB vs "
        "34.1 dB (6.2 dB lower); its answers held on these frames (detection agreement with "
        "FP32 100.0% vs 98.7%), but its outputs stray further from FP32's; use --method minmax "
        "or --method auto")
    unmeasured = clear_loss(Fidelity("mse", 27.9, 1.0, 9, 2, evidence=2), best, "detect") or ""
    assert unmeasured == ("--method mse loses clearly to minmax in output SQNR on 9 held-out "
                          "frames: 27.9 dB vs 34.1 dB (6.2 dB lower); use --method minmax or "
                          "--method auto")
    lost = clear_loss(Fidelity("entropy", 20.0, 0.5, 16, 16), Fidelity("mse", 30.0, 1.0, 16, 16),
                      "classify") or ""
    assert lost.startswith("--method entropy loses clearly to mse on 16 held-out frames: top-1 "
                           "agreement with FP32 50.0% vs 100.0%, output SQNR 20.0 dB vs 30.0 dB")


@pytest.fixture(scope="module")
def demo(demo_model):
    return load_float_model(demo_model)


def test_auto_compares_every_method_on_held_out_frames(demo):
    model, spec = demo
    result = calibrate(model, spec, frames_from(FRAMES, max_images=16),
                       CalibrateOptions(profile="tensorrt", progress=False))
    methods = [f.method for f in result.comparison]
    assert methods == ["minmax", "percentile", "entropy", "mse"]
    assert result.frames == 14 and all(f.frames == 2 for f in result.comparison)
    assert result.ranges.method == best_of(result.comparison).method
    assert result.warning is None


def test_explicit_method_that_loses_clearly_is_warned_about(demo, caplog):
    """TensorRT's entropy method clips the demo detector's head: well under 95% of FP32's
    detections survive, and the warning names the better method and both figures."""
    model, spec = demo
    with caplog.at_level(logging.WARNING):
        result = calibrate(model, spec, frames_from(FRAMES, max_images=16),
                           CalibrateOptions(profile="tensorrt", method="entropy",
                                            progress=False))
    assert result.ranges.method == "entropy"  # the user's choice is kept ...
    best = best_of(result.comparison)
    entropy = next(f for f in result.comparison if f.method == "entropy")
    assert entropy.agreement < 0.95 <= best.agreement
    assert result.warning is not None and result.warning in caplog.text  # ... but not silently
    assert f"loses clearly to {best.method}" in result.warning
    assert f"{100 * entropy.agreement:.1f}% vs {100 * best.agreement:.1f}%" in result.warning


@pytest.mark.parametrize(("judged", "profile", "warned"), [
    # a tf2onnx VGG16's cpu profile, before: every method and mix at 75%
    ([fid("mse", 4.3, 0.75), fid("entropy+mse@3", 4.6, 0.75)], "cpu", True),
    ([fid("mse", 4.6, 0.75)], "tensorrt", True),
    ([fid("entropy", 4.6, 0.75), fid("mse", 30.0, 0.95)], "cpu", False),  # one method holds
    ([fid("mse", 4.6, 0.0, compared=2)], "cpu", False),  # unmeasured: unmeasured_agreement
])
def test_int8_far_from_fp32_whatever_the_ranges_is_warned_about(judged, profile, warned):
    message = far_from_fp32(judged, "classify", profile)
    assert (message is not None) == warned
    if warned:
        closest = max(judged, key=lambda f: (f.agreement, f.sqnr_db))
        assert message.startswith(
            "INT8 stays far from FP32 whatever the ranges: on 16 held-out frames the closest "
            f"of the {len(judged)} models judged ({closest.method}) keeps top-1 agreement with "
            f"FP32 at 75.0% (output SQNR {closest.sqnr_db:.1f} dB); the model is written, but "
            "check it with edge eval before deploying it")
        assert "--keep-float N" in message
        # a user check: --report DIR alone is refused without labelled images
        assert "--report DIR --eval-data DIR (labelled images) names the layers" in message
        assert ("--profile tensorrt" in message) == (profile == "cpu")


def test_changed_answers_at_a_high_output_sqnr_are_said_to_be_near_ties():
    """An untrained detector, scores all near 0.5: 72% agreement at 70 dB read as INT8 being
    far from FP32, next to a figure that says it is not."""
    message = far_from_fp32([fid("mse", 70.2, 0.72)], "detect", "tensorrt") or ""
    assert ("keeps detection agreement with FP32 at 72.0% (output SQNR 70.2 dB); at 70 dB the "
            "outputs barely move, so the answers that change were near-ties (scores at the "
            "threshold, or classes scored alike, as in an untrained model); the model is "
            "written") in message
    assert "near-ties" not in (far_from_fp32([fid("mse", 25.0, 0.72)], "detect", "cpu") or "")


def test_the_far_from_fp32_warning_names_the_model_written_where_another_is_closest():
    """A user check: auto wrote percentile+entropy@3 (82.2%, within noise of the best and at a
    higher output SQNR), and the warning quoted percentile's 84.5% alone."""
    closest, mix = fid("percentile", 60.1, 0.845), fid("percentile+entropy@3", 77.8, 0.822)
    message = far_from_fp32([closest, mix], "detect", "tensorrt", written=mix) or ""
    assert ("the closest of the 2 models judged (percentile) keeps detection agreement with "
            "FP32 at 84.5% (output SQNR 60.1 dB); the model written, percentile+entropy@3, "
            "keeps 82.2% (output SQNR 77.8 dB)") in message, message
    alone = far_from_fp32([closest, mix], "detect", "tensorrt", written=closest) or ""
    assert "the model written" not in alone


def test_when_only_some_models_could_be_measured_the_warning_claims_no_more():
    """A user check: minmax alone had enough detections (7) to measure, at 28.6%; the warning
    called it "the closest of the 4 models judged" and INT8 far "whatever the ranges", beside
    the chosen mse that could not be measured."""
    def detector(method: str, sqnr: float, agreement: float, detections: int) -> Fidelity:
        found = detections // 2 + 1
        return Fidelity(method, sqnr, agreement, 12, detections, evidence=2 * found)

    judged = [detector("minmax", 3.8, 2 / 7, 7), detector("percentile", 6.8, 1.0, 2),
              detector("entropy", 0.9, 1.0, 0), detector("mse", 6.8, 1.0, 1)]
    message = far_from_fp32(judged, "detect", "tensorrt") or ""
    assert message.startswith(
        "INT8 stays far from FP32 wherever its agreement could be measured: on 12 held-out "
        "frames minmax, the only one of the 4 models judged with enough detections to measure, "
        "keeps detection agreement with FP32 at 28.6%")
    both = [judged[0], detector("mse", 6.8, 0.5, 8), *judged[2:]]
    assert "the closest of the 2 of 4 models judged with enough detections to measure (mse)" \
        in (far_from_fp32(both, "detect", "tensorrt") or "")


def test_a_check_the_run_asked_for_already_is_not_asked_for_again():
    """A user check: the report's warning asked twice to compare the accuracies in the report,
    and named --report DIR to a run that had it."""
    far = [Fidelity("mse", 8.0, 0.5, 16, 16)]
    pointed = "compare FP32's and INT8's accuracy on data/ in the report before deploying"
    said = unmeasured_agreement(Fidelity("entropy", 8.0, 1.0, 7, 7), "classify",
                                labelled="data/")
    assert said is not None and pointed in said
    message = far_from_fp32(far, "classify", "tensorrt", labelled="data/", said=said) or ""
    assert "the model is written; --keep-float N" in message and pointed not in message
    alone = far_from_fp32(far, "classify", "tensorrt", labelled="data/") or ""
    assert f"the model is written, so {pointed}" in alone
    assert "--report DIR" not in message + alone


def test_with_keep_float_given_it_is_not_suggested_again():
    message = far_from_fp32([fid("mse", 4.6, 0.75), fid("mse, 1 float", 5.0, 0.8)],
                            "classify", "cpu", kept_float=True) or ""
    assert "closest of the 2 models judged (mse, 1 float) keeps top-1 agreement" in message
    assert "--keep-float" not in message


def test_the_far_from_fp32_warning_reaches_the_summary(demo, caplog, monkeypatch):
    """With the bar raised past what any model reaches, the run still writes its model and
    says so in the log and the summary's `warning` (what --json prints)."""
    import calibration.selection

    monkeypatch.setattr(calibration.selection, "AGREEMENT_FLOOR", 1.01)
    model, spec = demo
    with caplog.at_level(logging.WARNING):
        result = calibrate(model, spec, frames_from(FRAMES, max_images=16),
                           CalibrateOptions(profile="tensorrt", progress=False))
    assert result.warning is not None and "INT8 stays far from FP32" in result.warning
    assert "INT8 stays far from FP32" in caplog.text
    assert result.model.graph.node  # written all the same


def test_auto_with_too_few_frames_says_it_uses_mse(demo, caplog):
    model, spec = demo
    with caplog.at_level(logging.WARNING):
        result = calibrate(model, spec, frames_from(FRAMES, max_images=4),
                           CalibrateOptions(profile="tensorrt", progress=False))
    assert result.ranges.method == "mse" and result.comparison == [] and result.frames == 4
    assert "too few" in caplog.text and "using mse" in caplog.text


def test_a_choice_without_enough_detections_or_frames_says_so():
    """Held-out frames with 2 detections (or 3 classifier frames) cannot measure agreement: the
    warning says the choice rests on SQNR and what to calibrate with instead."""
    from calibration.selection import unmeasured_agreement

    detector = fid("mse", 4.2, 1.0, compared=2)
    warning = unmeasured_agreement(detector, "detect")
    assert warning is not None
    assert "hold 2 detections" in warning and "output SQNR alone (mse, 4.2 dB)" in warning
    assert "frames that show the objects" in warning
    classifier = unmeasured_agreement(Fidelity("mse", 30.0, 1.0, 3, 3), "classify") or ""
    assert "top-1" in classifier and "calibrate on 64 or more images" in classifier
    assert "--max-images" not in classifier  # it only caps the count: raising it adds nothing
    capped = unmeasured_agreement(Fidelity("mse", 30.0, 1.0, 5, 5), "classify",
                                  folder_images=90) or ""
    assert "raise --max-images to 64 or more (the folder has 90 images)" in capped
    small = unmeasured_agreement(Fidelity("mse", 30.0, 1.0, 5, 5), "classify",
                                 folder_images=50) or ""  # a cap, but the folder is small too
    assert "calibrate on 64 or more images" in small and "--max-images" not in small
    assert unmeasured_agreement(fid("mse", 4.2, 0.9, compared=40), "detect") is None
    # a method the user named was not chosen by SQNR: only compared by it
    named = unmeasured_agreement(fid("minmax", -6.3, 0.0, compared=2), "detect", "minmax")
    assert named is not None and "chosen" not in named
    assert "--method minmax was compared with the others by output SQNR alone" in named
    assert "change answers" not in classifier  # 30 dB


def test_unmeasured_agreement_at_low_sqnr_asks_for_a_labelled_check():
    """A PP-OCRv4 text-direction classifier, 7 held-out frames, 17.8 dB: INT8 changed 1 answer
    in 7 on other strips, and only the few frames were mentioned."""
    from calibration.selection import unmeasured_agreement

    classifier = unmeasured_agreement(Fidelity("mse+minmax@3", 17.8, 1.0, 7, 7), "classify")
    assert classifier is not None and classifier.endswith(
        "to have it checked; at 17.8 dB, under 20 dB, INT8 may well change answers: check the "
        "INT8 model on labelled images before deploying it (edge eval with --data, or --report "
        "DIR --eval-data DIR here)")
    boxes_low = Fidelity("mse", 5.0, 1.0, 8, 2, {"boxes": 18.0, "scores": 5.0}, 2)
    assert "; at 18.0 dB (boxes), under 20 dB, INT8 may well change answers" in (
        unmeasured_agreement(boxes_low, "detect") or "")


@pytest.mark.parametrize(("agreement", "samples", "lowest"), [
    (1.0, 8, 0.747), (1.0, 16, 0.855), (1.0, 60, 0.957), (0.875, 8, 0.589), (0.5, 100, 0.419),
    (1.0, 0, 0.0),
])
def test_the_agreement_lower_bound_is_wilsons_one_sided_95_percent(agreement, samples, lowest):
    assert agreement_lower_bound(agreement, samples) == pytest.approx(lowest, abs=0.002)


@pytest.mark.parametrize(("agreement", "samples", "highest"), [
    (10 / 11, 11, 0.980), (0.75, 16, 0.883), (0.5, 100, 0.581), (1.0, 8, 1.0), (0.0, 0, 1.0),
])
def test_the_agreement_upper_bound_is_wilsons_one_sided_95_percent(agreement, samples,
                                                                    highest):
    assert agreement_upper_bound(agreement, samples) == pytest.approx(highest, abs=0.002)


def test_one_answer_changed_in_a_few_frames_is_not_called_far_from_fp32():
    """A PP-LCNet's cpu profile: 10 of 11 held-out frames agreed, and it agreed on 28 of 28
    other photos; "INT8 stays far from FP32 whatever the ranges" overstated one frame."""
    message = far_from_fp32([Fidelity("percentile", 20.3, 10 / 11, 11, 11),
                             Fidelity("mse", 19.8, 10 / 11, 11, 11)], "classify", "cpu") or ""
    assert message == (
        "INT8 may change answers: on 11 held-out frames the closest of the 2 models judged "
        "(percentile) keeps top-1 agreement with FP32 at 90.9% (output SQNR 20.3 dB), too few "
        "to tell whether it keeps 95% on other images (up to 98% fits these at 95% "
        "confidence); check the INT8 model on labelled images before deploying it (edge "
        "eval with --data, or --report DIR --eval-data DIR here)")


def test_with_a_report_on_labelled_data_the_warnings_point_to_it():
    """`--report DIR --eval-data DATA` scores both models on DATA already: asking for
    `--report DIR --eval-data DIR` again read as if it had not been given (a user check)."""
    thin = Fidelity("percentile", 19.2, 1.0, 8, 8)
    unmeasured = Fidelity("mse", 17.8, 1.0, 7, 7)
    close_call = [Fidelity("percentile", 20.3, 10 / 11, 11, 11)]
    far = [Fidelity("mse", 8.0, 0.5, 16, 16)]
    pointed = "compare FP32's and INT8's accuracy on data/ in the report before deploying"
    for warning in (thin_agreement(thin, "classify", "data/"),
                    unmeasured_agreement(unmeasured, "classify", labelled="data/"),
                    far_from_fp32(close_call, "classify", "cpu", labelled="data/"),
                    far_from_fp32(far, "classify", "cpu", labelled="data/")):
        assert warning is not None and pointed in warning and "--eval-data" not in warning
    # agreement unmeasured at a high SQNR: no labelled check asked for, but the report's named
    detector = unmeasured_agreement(Fidelity("entropy", 25.8, 1.0, 2, 0), "detect",
                                    labelled="data/")
    one = unmeasured_agreement(Fidelity("entropy", 25.8, 1.0, 1, 0), "detect") or ""
    assert one.startswith("the 1 held-out frame holds 0 detections")
    assert detector is not None and detector.endswith(
        "to have it checked; compare FP32's and INT8's accuracy on data/ in the report before "
        "deploying the INT8 model")
    assert "check it with edge eval" in (far_from_fp32(far, "classify", "cpu") or "")


def test_agreement_on_too_few_frames_at_low_sqnr_is_warned_about():
    """An 81-class classifier at 19.2 dB agreed on 8 of 8 held-out frames (92% of 101 in all):
    the figure cannot vouch for 95%. High SQNR, enough frames, unmeasured agreement (its own
    warning) or a detector whose boxes hold are left alone."""
    warning = thin_agreement(Fidelity("percentile", 19.2, 1.0, 8, 8), "classify")
    assert warning == (
        "percentile's top-1 agreement with FP32, 100.0%, rests on 8 held-out frames at 19.2 dB "
        "output SQNR: on other images it may agree less (as little as 75% fits these at 95% "
        "confidence); check the INT8 model on labelled images before deploying it (edge eval "
        "with --data, or --report DIR --eval-data DIR here)")
    assert thin_agreement(Fidelity("mse", 31.0, 1.0, 8, 8), "classify") is None
    assert thin_agreement(Fidelity("mse", 19.2, 1.0, 64, 64), "classify") is None
    assert thin_agreement(Fidelity("mse", 19.2, 1.0, 3, 3), "classify") is None
    boxes_hold = Fidelity("mse", 15.0, 1.0, 6, 12, {"boxes": 55.5, "scores": 15.0}, 12)
    assert thin_agreement(boxes_hold, "detect") is None
    boxes_drift = Fidelity("mse", 12.0, 0.9, 6, 20, {"boxes": 18.0, "scores": 12.0}, 22)
    detector = thin_agreement(boxes_drift, "detect") or ""
    assert detector.startswith("mse's detection agreement with FP32, 90.0%, rests on 20 "
                               "detections in 6 held-out frames (FP32's and INT8's together) "
                               "at 12.0 dB (boxes 18.0, scores 12.0) output SQNR: on other "
                               "images it may agree less (as little as 67% fits")
    assert [held_out_count(n) for n in (7, 8, 63, 64, 101, 127, 128, 143, 144, 200, 256, 5000)] \
        == [0, 1, 7, 8, 8, 8, 8, 8, 9, 12, 16, 16]
    counts = [held_out_count(n) for n in range(1, 3000)]
    assert counts == sorted(counts)  # more frames never hold fewer back
    for frames in (8, 64, 100, 127, 128, 200, 5000):  # spread over the whole set
        every = held_out_every(frames)
        assert frames // every == held_out_count(frames) and frames - every * \
            held_out_count(frames) < every


def test_held_out_batches_keep_large_inputs_to_a_frame_each(monkeypatch):
    monkeypatch.setattr("calibration.selection.usable_cores", lambda: 2)
    assert batches_for(8, 320 * 320) == 2  # one a core
    assert batches_for(16, 640 * 640) == 4  # four 640x640 frames a batch
    assert batches_for(6, 1280 * 1280) == 6  # a 1280x1280 frame alone
    assert batches_for(1, 1280 * 1280) == 2  # _batched makes no empty batch of the second


@pytest.mark.parametrize(("written", "warned"), [
    (fid("mse, 3 float", 9.5, 0.9), True),   # 0.1 dB further from FP32 (a corpus run's figures)
    (fid("mse, 3 float", 9.6, 0.9), True),   # no closer: float layers for nothing
    (fid("mse, 3 float", 9.7, 0.9), True),   # 0.1 dB: not measurably closer (a user check)
    (fid("mse, 3 float", 10.1, 0.9), False),  # it helped
    (fid("mse, 3 float", 9.7, 1.0, compared=100), False),  # agreement up beyond noise
    (fid("mse, 3 float", 12.0, 0.6), True),  # agreement lower beyond noise outweighs SQNR
    (fid("mse, 3 float", 12.0, 0.85), False),  # within noise on 16 frames: SQNR decides
    (fid("mse, 3 float", 10.1, 0.0, compared=2), False),  # agreement by chance: SQNR decides
])
def test_keep_float_that_brings_the_output_no_closer_to_fp32_is_warned_about(written, warned):
    chosen = fid("mse", 9.6, 0.9, compared=written.compared)
    message = kept_float_loss(written, chosen, 2, "cpu", "detect")
    assert (message is not None) == warned
    if warned:
        assert message.startswith("--keep-float 2 did not bring the output measurably closer "
                                  "to FP32: on 16 held-out frames detection agreement")
        assert f"output SQNR {written.sqnr_db:.1f} dB vs 9.6 dB without them" in message
        assert "the cpu profile keeps the layers whose own SQNR is lowest" in message


def test_the_keep_float_warning_quotes_a_detectors_parts():
    """The figure is the weaker part's (the scores): the boxes can fall 3 dB behind it."""
    written = Fidelity("percentile, 2 float", 10.6, 1.0, 8, 0,
                       {"boxes": 29.1, "scores": 10.6})
    chosen = Fidelity("percentile", 10.7, 1.0, 8, 0, {"boxes": 31.9, "scores": 10.7})
    message = kept_float_loss(written, chosen, 2, "tensorrt", "detect")
    assert message is not None
    assert ("output SQNR 10.6 dB (boxes 29.1, scores 10.6) vs 10.7 dB (boxes 31.9, scores "
            "10.7) without them (each layer was picked for what it did in float alone)") in message


def test_a_clear_loss_quotes_agreement_only_where_it_was_measured():
    message = clear_loss(fid("minmax", -6.3, 0.0, compared=2), fid("mse", 4.2, 1.0, compared=2),
                         "detect")
    assert message is not None and "agreement" not in message
    assert "in output SQNR on 16 held-out frames: -6.3 dB vs 4.2 dB (10.5 dB lower)" in message


def test_unknown_method_fails_before_any_work(demo):
    model, spec = demo
    with pytest.raises(InputError, match="unknown range method 'kl'"):
        calibrate(model, spec, frames_from(FRAMES, max_images=4),
                  CalibrateOptions(method="kl", progress=False))


def test_cli_json_reports_the_comparison(demo_model, tmp_path):
    out = tmp_path / "int8.onnx"
    run = subprocess.run([sys.executable, "-m", "edge", "calibrate", str(demo_model), "--images",
                          FRAMES, "--max-images", "16", "-o", str(out), "--json"],
                         capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr
    summary = json.loads(run.stdout.strip().splitlines()[-1])
    assert summary["requested_method"] == "auto"
    assert summary["method"] in {"minmax", "percentile", "entropy", "mse"}
    assert {m["method"] for m in summary["methods"]} == {"minmax", "percentile", "entropy", "mse"}
    assert all(m["output_sqnr_db"] > 10 for m in summary["methods"] if m["method"] != "entropy")
    phases = summary["phase_seconds"]
    assert list(phases) == ["statistics", "ranges_and_judging"]
    assert all(s >= 0 for s in phases.values())
    assert sum(phases.values()) <= summary["seconds"] + 0.05  # rounded to 10 ms each


def test_the_printed_comparison_gives_the_evidence_behind_each_agreement(demo_model, tmp_path):
    run = subprocess.run([sys.executable, "-m", "edge", "calibrate", str(demo_model), "--images",
                          FRAMES, "--max-images", "16", "-o", str(tmp_path / "int8.onnx")],
                         capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr
    table = [line for line in run.stdout.splitlines() if "output SQNR" in line]
    assert len(table) == 4
    # a user check: a bare total ("15 detections, FP32's and INT8's") read as FP32's own count
    # changing from one method's row to the next
    counts = [re.search(r"agreement with FP32 +\d+\.\d% \((\d+) FP32 and \d+ INT8 "
                        r"detections?\)  output SQNR", line) for line in table]
    assert all(counts), table
    assert len({match.group(1) for match in counts if match}) == 1  # FP32's: one count


def test_candidates_judged_side_by_side_score_as_one_at_a_time(demo):
    """`judged` builds each candidate on the calling thread and judges them on worker threads;
    the models and scores are those of building and judging each alone."""
    model, spec = demo
    frames = frames_from(FRAMES, max_images=16)
    candidates = {method: calibrate(model, spec, frames, CalibrateOptions(
        profile="tensorrt", method=method, compare=False, progress=False)).model
        for method in ("minmax", "entropy", "mse")}
    feeds = list(frames_from("synthetic://shapes?seed=12", max_images=4).inputs(spec))
    from calibration.selection import HeldOutJudge

    judge = HeldOutJudge(model, spec, feeds)
    together = judge.judged(list(candidates), candidates.__getitem__)
    alone = {method: judge.fidelity(method, quantized, threads=1)
             for method, quantized in candidates.items()}
    assert list(together) == list(candidates)
    assert {name: fidelity for name, (_, fidelity) in together.items()} == alone
    assert all(together[name][0] is candidates[name] for name in candidates)
    assert len({f.sqnr_db for f in alone.values()}) == 3  # three different models


def test_candidates_sharing_one_session_score_as_each_in_its_own(demo):
    """TensorRT-profile candidates differ only in activation scales: judged through one session
    that takes the scales as inputs, each scores exactly as its own model does, and a copy of
    one model with another method's scales is that method's model, byte for byte."""
    from calibration.ranges import TensorRanges, range_method
    from calibration.selection import HeldOutJudge, SharedSession
    from calibration.stats import StatsCollector
    from converters.qdq_tensorrt import activation_scales, qdq_for_tensorrt, with_activation_ranges
    from converters.quantize import tensors_to_observe

    model, spec = demo
    collector = StatsCollector(model, tensors_to_observe(model, CalibrateOptions()))
    stats = collector.collect(frames_from(FRAMES, max_images=12).inputs(spec))
    ranges = {method: TensorRanges.from_stats(stats, range_method(method), collector.frames)
              for method in ("minmax", "entropy", "mse")}
    built = {method: qdq_for_tensorrt(model, r) for method, r in ranges.items()}
    copied = {method: with_activation_ranges(built["minmax"], r) for method, r in ranges.items()}
    assert all(copied[m].SerializeToString() == built[m].SerializeToString() for m in built)
    from converters.errors import ConversionError

    missing = next(iter(ranges["mse"].ranges))
    partial = TensorRanges("mse", collector.frames, {name: r for name, r in
                                                     ranges["mse"].ranges.items()
                                                     if name != missing})
    with pytest.raises(ConversionError, match=f"no calibration range for tensor {missing}"):
        with_activation_ranges(built["minmax"], partial)

    feeds = list(frames_from("synthetic://shapes?seed=12", max_images=4).inputs(spec))
    judge = HeldOutJudge(model, spec, feeds, int8_kernels=False)
    session = SharedSession(lambda: built["mse"],
                            lambda quantized: activation_scales(quantized).values())
    shared = judge.judged(list(copied), copied.__getitem__, session)
    alone = {method: judge.fidelity(method, quantized, threads=1)
             for method, quantized in built.items()}
    assert {name: fidelity for name, (_, fidelity) in shared.items()} == alone
    assert len({f.sqnr_db for f in alone.values()}) == 3


def test_per_tensor_refinement_where_the_best_method_still_loses(demo, monkeypatch):
    """When the best whole-model method stays far from FP32, the inputs of the worst layers get
    each other method's ranges in turn; every mix is judged like the four methods and the best
    of all is kept. (The demo detector quantizes well, so the trigger is lowered here.)"""
    from calibration import selection

    monkeypatch.setattr(selection, "REFINE_BELOW_SQNR_DB", 1000.0)
    monkeypatch.setattr(selection, "MIN_COMPARED", 10**6)  # so the choice warning is given
    model, spec = demo
    result = calibrate(model, spec, frames_from(FRAMES, max_images=16),
                       CalibrateOptions(profile="tensorrt", progress=False))
    whole, mixed = result.comparison[:4], result.comparison[4:]
    best_whole = best_of(whole).method
    assert [f.method for f in mixed] == [f"{best_whole}+{m}@3" for m in
                                         ("minmax", "percentile", "entropy", "mse")
                                         if m != best_whole]
    assert result.ranges.method == best_of(result.comparison).method
    # the warning names what was kept, a mix included (it named the best whole method)
    assert result.warning is not None
    assert f"output SQNR alone ({result.ranges.method}, " in result.warning
    if "+" in result.ranges.method:  # a mix won: three tensors carry the other method's ranges
        other = result.ranges.method.split("+")[1].split("@")[0]
        assert result.ranges.method.endswith("@3") and other != best_whole


def test_refinement_is_not_tried_when_the_best_method_is_close(demo):
    model, spec = demo
    result = calibrate(model, spec, frames_from(FRAMES, max_images=16),
                       CalibrateOptions(profile="tensorrt", progress=False))
    assert len(result.comparison) == 4 and best_of(result.comparison).sqnr_db > 20


def test_a_detectors_output_sqnr_is_its_weaker_part_measured_apart(demo):
    """Pooled, box coordinates (hundreds of pixels) drown the class scores (0..1)."""
    import numpy as np
    import onnxruntime as ort

    from calibration.selection import HeldOutJudge
    from edge.postprocess import HEAD_DECODERS

    model, spec = demo
    result = calibrate(model, spec, frames_from(FRAMES, max_images=16),
                       CalibrateOptions(profile="tensorrt", method="entropy", progress=False))
    feeds = list(frames_from("synthetic://shapes?seed=12", max_images=3).inputs(spec))
    judged = HeldOutJudge(model, spec, feeds).fidelity("entropy", result.model)
    sessions = [ort.InferenceSession(m.SerializeToString(), providers=["CPUExecutionProvider"])
                for m in (model, result.model)]
    sums = {"boxes": [0.0, 0.0], "scores": [0.0, 0.0], "pooled": [0.0, 0.0]}
    for feed in feeds:
        reference, quantized = (s.run([spec.output], feed)[0][0].astype(np.float64)
                                for s in sessions)
        parts = zip(("boxes", "scores"), HEAD_DECODERS[spec.head](reference),
                    HEAD_DECODERS[spec.head](quantized), strict=True)
        for part, ref, out in [*parts, ("pooled", reference, quantized)]:
            sums[part][0] += float(np.square(ref).sum())
            sums[part][1] += float(np.square(ref - out).sum())
    expected = {part: 10 * np.log10(s / n) for part, (s, n) in sums.items()}
    assert judged.parts_db == pytest.approx({p: expected[p] for p in ("boxes", "scores")},
                                            abs=0.05)
    assert judged.sqnr_db == min(judged.parts_db.values())
    assert expected["scores"] < expected["pooled"] - 3  # what pooling used to hide
    from calibration.fidelity import output_sqnr  # the report's figures, measured the same way

    apart = output_sqnr(model, result.model, feeds, spec)
    assert apart == pytest.approx({f"{spec.output} {p}": expected[p] for p in ("boxes", "scores")},
                                  abs=0.05)


def test_a_detector_that_loses_every_detection_is_measured_as_disagreeing(demo):
    """FP32 finds a few objects and the candidate none: too few detections on the two sides
    together, but not on FP32's side, so the candidate's 0% is telling, not "not measured"."""
    import onnxruntime as ort

    from calibration.selection import HeldOutJudge, best_of

    model, spec = demo
    feeds = list(frames_from("synthetic://shapes?seed=12", max_images=1).inputs(spec))
    judge = HeldOutJudge(model, spec, feeds)
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    names = [o.name for o in model.graph.output]

    def blind(outputs, batch):  # FP32's boxes with every class score zeroed
        results = session.run(outputs, batch)
        results[names.index(spec.output)][:, 4:] = 0.0
        return results

    same = judge._scored("mse", session.run)
    lost = judge._scored("entropy", blind)
    found = same.compared // 2
    assert 4 <= found < 8, "the frame should hold 4-7 objects: FP32's alone are enough"
    assert same.telling and same.agreement == 1.0
    assert lost.compared == found and lost.telling and lost.agreement == 0.0
    assert best_of([lost, same]).method == "mse"


def test_an_int8_model_that_answers_the_same_on_every_frame_is_named_and_never_chosen(
        tmp_path, demo):
    """Entropy once cut a classifier's logits so that every frame read 0.875 / 0.125: at 15.8
    dB of output SQNR on near-certain probabilities, and top-1 agreeing where every held-out
    frame had the same class, nothing else showed it. A detector is not measured so (most of
    its output is empty anchors)."""
    import onnxruntime as ort

    from calibration.selection import HeldOutJudge
    from converters.convert import ConvertOptions, convert
    from edge.spec import spec_from_model
    from tests.converters.tiny_models import TinyClassifier, export_onnx, seeded

    source = export_onnx(seeded(TinyClassifier(3, softmax=True)), tmp_path / "c.onnx", 32, 32)
    model = convert(source, ConvertOptions(labels=("a", "b", "c"))).model
    spec = spec_from_model(model, "classifier")
    feeds = list(frames_from("synthetic://shapes?seed=12", max_images=3).inputs(spec))
    judge = HeldOutJudge(model, spec, feeds)
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    first = session.run(None, feeds[0])

    def fixed(outputs, batch):  # the first frame's answer, whatever the frame
        rows = len(next(iter(batch.values())))
        return [np.repeat(value[:1], rows, axis=0) for value in first]

    def nearly_fixed(outputs, batch):  # FP32's answers shrunk 20x towards the first's
        results = session.run(outputs, batch)
        return [first_value[:1] + (value - first_value[:1]) / 20
                for value, first_value in zip(results, first, strict=True)]

    faithful = judge._scored("mse", session.run)
    constant = judge._scored("entropy", fixed)
    nearly = judge._scored("percentile", nearly_fixed)
    assert faithful.variation_kept == pytest.approx(1.0)
    assert constant.variation_kept == 0.0 and constant.constant and not faithful.constant
    assert nearly.variation_kept == pytest.approx(1 / 400, rel=1e-3) and nearly.constant
    assert constant.as_dict()["constant_output"] is True
    ahead = Fidelity("entropy", faithful.sqnr_db + 20, 1.0, 3, 3, variation_kept=0.004)
    assert best_of([ahead, faithful]).method == "mse"
    message = clear_loss(ahead, faithful, "classify")
    assert message is not None and ("nearly the same output on every one of the 3 held-out "
                                    "frames (0.4% of FP32's frame-to-frame variance)") in message
    assert "use --method mse" in message
    one = HeldOutJudge(model, spec, feeds[:1])._scored("entropy", fixed)
    assert not one.constant, "one frame cannot tell"
    detector, detector_spec = demo
    detector_feeds = list(frames_from("synthetic://shapes?seed=12", max_images=3)
                          .inputs(detector_spec))
    blind = HeldOutJudge(detector, detector_spec, detector_feeds)
    assert blind._scored("entropy", lambda outputs, batch: [
        np.zeros_like(value) for value in session_outputs(detector, outputs, batch)
    ]).variation_kept is None


def session_outputs(model, outputs, batch):
    import onnxruntime as ort

    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return session.run(outputs, batch)


def test_when_every_candidate_answers_alike_the_warning_points_to_preprocessing():
    """A user check: open-nsfw-tf converted with the assumed preprocessing (its own is BGR,
    mean-subtracted) kept 0.4% of FP32's variance under the `cpu` profile's best method, and
    `auto` chose it without a word (19.6 dB output SQNR)."""
    flat = [Fidelity(m, db, 1.0, 5, 5, variation_kept=kept)
            for m, db, kept in (("minmax", 19.6, 0.004), ("entropy", 12.0, 0.0))]
    message = all_flat(flat)
    assert message is not None
    assert message.startswith("every INT8 candidate gives nearly the same output on every one "
                              "of the 5 held-out frames (the closest, minmax, keeps 0.4%")
    assert "--network-order, --mean, --std, --resize" in message and "--keep-float" in message
    assert all_flat([*flat, Fidelity("mse", 18.0, 1.0, 5, 5, variation_kept=0.9)]) is None
    assert all_flat([Fidelity("mse", 18.0, 1.0, 1, 1)]) is None  # one frame: not measured


def test_a_model_whose_fp32_output_never_changes_is_warned_about(tmp_path, caplog):
    """A user check: a classifier whose training collapsed (the same output for any input)
    calibrated to 315 dB output SQNR for every method, without a word."""
    import torch

    from converters.convert import ConvertOptions, convert
    from edge.spec import spec_from_model
    from tests.converters.tiny_models import TinyClassifier, export_onnx, seeded

    collapsed = seeded(TinyClassifier(3))
    with torch.no_grad():
        collapsed.head.weight.zero_()  # the bias alone: one answer whatever the frame
    source = export_onnx(collapsed, tmp_path / "c.onnx", 32, 32)
    model = convert(source, ConvertOptions(labels=("a", "b", "c"))).model
    spec = spec_from_model(model, "classifier")
    with caplog.at_level(logging.WARNING):
        result = calibrate(model, spec, frames_from(FRAMES, max_images=24),
                           CalibrateOptions(profile="cpu"))
    assert result.warning is not None and result.warning.startswith(
        "FP32's own output is the same on every one of the 3 held-out frames: the model tells "
        "none of them apart, so the INT8 figures (output SQNR, agreement) say nothing"), \
        result.warning
    assert "a training run that collapsed?" in caplog.text
    working = export_onnx(seeded(TinyClassifier(3)), tmp_path / "w.onnx", 32, 32)
    model = convert(working, ConvertOptions(labels=("a", "b", "c"))).model
    result = calibrate(model, spec_from_model(model, "classifier"),
                       frames_from(FRAMES, max_images=24), CalibrateOptions(profile="cpu"))
    assert "FP32's own output" not in (result.warning or "")


def _box_at_every_anchor():
    import torch

    class BoxAtEveryAnchor(torch.nn.Module):
        """A 2x2-pixel box at each stride-4 anchor (none overlaps: NMS keeps them all), class
        scores from an untrained conv (near 0.5 everywhere)."""

        def __init__(self) -> None:
            super().__init__()
            self.stem = torch.nn.Conv2d(3, 8, 4, 4)
            self.scores = torch.nn.Conv2d(8, 2, 1)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            scores = self.scores(self.stem(x).relu()).flatten(2).sigmoid()  # [N, 2, A]
            side = x.shape[-1] // 4
            ys, xs = torch.meshgrid(torch.arange(side), torch.arange(side), indexing="ij")
            centres = torch.stack([xs.flatten() * 4.0 + 2, ys.flatten() * 4.0 + 2])
            size = torch.full_like(centres, 2.0)
            boxes = torch.cat([centres, size]).unsqueeze(0).expand(x.shape[0], -1, -1)
            return torch.cat([boxes, scores], 1)

    return BoxAtEveryAnchor()


def test_a_detector_at_its_detection_cap_on_every_frame_is_warned_about(demo):
    """A user check: an untrained detector whose FP32 kept the most detections its spec allows
    on every held-out frame reported 100% agreement without a word; one with a detection at
    each of its 64 anchors (fewer than the cap) still did."""
    from converters.convert import ConvertOptions, convert_module
    from tests.converters.tiny_models import TinyDetector, seeded

    converted = convert_module(seeded(TinyDetector()), ConvertOptions(
        input_size=(64, 96), labels=("a", "b"), stride=4), "tiny")
    spec = converted.spec
    capped = spec.model_copy(update={"postprocess": spec.postprocess.model_copy(
        update={"max_detections": 3})})
    result = calibrate(converted.model, capped, frames_from(FRAMES, max_images=24),
                       CalibrateOptions(profile="cpu", progress=False))
    assert result.warning is not None and (
        "FP32 keeps the most detections the model's spec allows (3, "
        "postprocess.max_detections) on every one of the 3 held-out frames: the agreement and "
        "output SQNR then compare which of more boxes than that NMS kept, and say little. "
        "Unless these frames hold that many objects, its scores do not tell objects from "
        "background") in result.warning, result.warning
    assert "trained?" in result.warning
    every_anchor = convert_module(seeded(_box_at_every_anchor()), ConvertOptions(
        input_size=(16, 16), labels=("a", "b"), stride=4), "anchors")
    result = calibrate(every_anchor.model, every_anchor.spec, frames_from(FRAMES, max_images=24),
                       CalibrateOptions(profile="cpu", progress=False))
    assert result.warning is not None and (
        "FP32 keeps a detection at every one of its anchors on every one of the 3 held-out "
        "frames: the agreement and output SQNR then compare boxes that no score told apart"
    ) in result.warning, result.warning
    model, demo_spec = demo  # a trained detector finds what each frame holds
    trained = calibrate(model, demo_spec, frames_from(FRAMES, max_images=24),
                        CalibrateOptions(profile="cpu", progress=False))
    assert "FP32 keeps the most detections" not in (trained.warning or "")

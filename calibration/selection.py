"""Choosing a range method by what it does to the model's output, not by faith in one method.

No range method wins everywhere: entropy clips a classifier's logits so hard that top-1 can
collapse (97% -> 53% measured on a third-party classifier), minmax wastes levels on rare
outliers, mse and percentile sit in between. Every method is cheap to compute from the same
streamed histograms, so each candidate model is built and judged on frames held back from the
calibration set: output SQNR against FP32 and the agreement that matters for the task (top-1
agreement for classifiers, detection F1 against FP32's own detections for detectors).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
import onnx

from calibration.fidelity import decibels
from edge.metrics import match_frame
from edge.postprocess import decoder_from_spec
from edge.preprocess import LetterboxGeometry
from edge.spec import ModelSpec
from edge.system import usable_cores

HOLD_OUT_EVERY = 8  # every 8th calibration frame judges the candidates instead
MAX_HELD_OUT = 16
AGREEMENT_FLOOR = 0.95  # below this an explicitly chosen method "loses clearly"
SQNR_MARGIN_DB = 6.0  # ... as it does this far below the best method's output SQNR
DETECTION_IOU = 0.5

Feed = dict[str, npt.NDArray[Any]]


@dataclass(frozen=True)
class Fidelity:
    """How close one candidate INT8 model stays to FP32 on the held-out frames."""

    method: str
    sqnr_db: float  # output SQNR, all outputs and frames pooled
    agreement: float  # 0..1: top-1 agreement (classify) or detection F1 vs FP32 (detect)
    frames: int

    def rank(self) -> tuple[float, float]:
        """Agreement first, in steps of 5 points (one detection or frame more or less among a
        few held-out frames is noise, not a better method), then output SQNR."""
        return round(self.agreement * 20) / 20, self.sqnr_db

    def as_dict(self) -> dict[str, Any]:
        return {"method": self.method, "output_sqnr_db": round(self.sqnr_db, 2),
                "agreement": round(self.agreement, 4), "frames": self.frames}


def best_of(candidates: Sequence[Fidelity]) -> Fidelity:
    return max(candidates, key=Fidelity.rank)


def clear_loss(chosen: Fidelity, best: Fidelity, task: str) -> str | None:
    """A warning when `chosen` loses clearly against `best` (agreement under 95% where the best
    does better, or output SQNR 6 dB or more below the best's), else None."""
    if chosen.method == best.method:
        return None
    low_agreement = chosen.agreement < AGREEMENT_FLOOR and best.agreement > chosen.agreement
    low_sqnr = chosen.sqnr_db <= best.sqnr_db - SQNR_MARGIN_DB
    if not (low_agreement or low_sqnr):
        return None
    what = "top-1 agreement" if task == "classify" else "detection agreement"
    return (f"--method {chosen.method} loses clearly to {best.method} on {chosen.frames} "
            f"held-out frames: {what} with FP32 {100 * chosen.agreement:.1f}% vs "
            f"{100 * best.agreement:.1f}%, output SQNR {chosen.sqnr_db:.1f} dB vs "
            f"{best.sqnr_db:.1f} dB; use --method {best.method} or --method auto")


class HeldOutJudge:
    """Runs FP32 once on the held-out `feeds`, then scores candidate INT8 models against it."""

    def __init__(self, reference: onnx.ModelProto, spec: ModelSpec, feeds: list[Feed]) -> None:
        self.spec = spec
        self.feeds = feeds
        self._outputs = [o.name for o in reference.graph.output]
        self._main = self._outputs.index(spec.output) if spec.output in self._outputs else 0
        self._reference = [_session(reference).run(self._outputs, feed) for feed in feeds]
        self._decode = decoder_from_spec(spec)
        self._geometry = LetterboxGeometry.fit(spec.input.width, spec.input.height,
                                               spec.input.width, spec.input.height)

    def fidelity(self, method: str, quantized: onnx.ModelProto) -> Fidelity:
        session = _session(quantized)
        signal = noise = 0.0
        agreeing = compared = 0.0
        for feed, reference in zip(self.feeds, self._reference, strict=True):
            outputs = session.run(self._outputs, feed)
            for ref, out in zip(reference, outputs, strict=True):
                signal += float(np.square(ref, dtype=np.float64).sum())
                noise += float(np.square(ref - out, dtype=np.float64).sum())
            hits, total = self._agreement(reference[self._main], outputs[self._main])
            agreeing += hits
            compared += total
        agreement = agreeing / compared if compared else 1.0
        return Fidelity(method, decibels(signal, noise), agreement, len(self.feeds))

    def _agreement(self, reference: npt.NDArray[Any], output: npt.NDArray[Any]
                   ) -> tuple[float, float]:
        """(agreeing, compared) for one frame: classifiers count rows whose top class matches;
        detectors count 2 x matched detections over both sides' detections (F1's terms)."""
        if self.spec.task == "classify":
            ref_top = reference.reshape(reference.shape[0], -1).argmax(1)
            out_top = output.reshape(output.shape[0], -1).argmax(1)
            return float((ref_top == out_top).sum()), float(len(ref_top))
        ours = self._decode(reference[0], self._geometry)
        theirs = self._decode(output[0], self._geometry)
        matched = match_frame(theirs, ours.boxes, ours.class_ids, np.zeros(len(ours), bool),
                              DETECTION_IOU)
        return 2.0 * float((matched == 1).sum()), float(len(ours) + len(theirs))


def _session(model: onnx.ModelProto) -> Any:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = usable_cores()
    options.log_severity_level = 3
    return ort.InferenceSession(model.SerializeToString(), options,
                                providers=["CPUExecutionProvider"])

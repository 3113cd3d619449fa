"""One corpus model through the workstation chain, as a user runs it: `edge convert` with the
catalogue's documented options, `edge calibrate` with both profiles, then FP32-vs-INT8
agreement on held-out real photos (each also mirrored), through the device's own letterboxing
and decoding.

Agreement: classifiers, top-1 agreement with FP32 and output SQNR; detectors, detection F1
against FP32's detections (same class, IoU >= 0.5, scores >= DETECTION_SCORE) and output SQNR.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import numpy.typing as npt

from calibration.fidelity import SignalNoise
from calibration.readers import frames_from
from converters.corpus.catalogue import CorpusModel
from converters.corpus.fetch import CorpusFiles
from edge.detections import Detections
from edge.errors import EdgeError
from edge.postprocess import decoder_from_spec, iou_matrix
from edge.preprocess import LetterboxGeometry, letterboxer_from_spec
from edge.spec import ModelSpec, spec_from_onnx_file

PROFILES = ("tensorrt", "cpu")
#: Detections compared down to this score: photos that are not the model's domain give few
#: detections at the device's default threshold.
DETECTION_SCORE = 0.1


class CorpusRunError(EdgeError):
    """An `edge` command failed on a corpus model; the message holds its error output."""


@dataclass(frozen=True)
class Agreement:
    frames: int
    sqnr_db: float
    top1: float | None = None  # classifiers: share of frames with FP32's top class
    detection_f1: float | None = None  # detectors
    fp32_detections: int = 0


@dataclass
class CorpusResult:
    model: CorpusModel
    converted: dict[str, Any]  # `edge convert --json`
    calibrated: dict[str, dict[str, Any]] = field(default_factory=dict)  # per profile
    agreement: dict[str, Agreement] = field(default_factory=dict)  # per profile
    paths: dict[str, Path] = field(default_factory=dict)  # "fp32" and each profile


def edge_json(*args: str | Path) -> dict[str, Any]:
    """Run `edge ARGS --json` in a fresh process; its last stdout line, parsed."""
    command = [sys.executable, "-m", "edge", *map(str, args), "--json"]
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        tail = "\n".join(result.stderr.strip().splitlines()[-6:])
        raise CorpusRunError(f"`edge {' '.join(map(str, args))}` exited {result.returncode}:\n"
                             f"{tail}")
    summary: dict[str, Any] = json.loads(result.stdout.strip().splitlines()[-1])
    return summary


def run_model(model: CorpusModel, files: CorpusFiles, work: Path,
              max_images: int = 64) -> CorpusResult:
    """Convert, calibrate with both profiles and measure agreement; files land in `work`."""
    fp32 = work / f"{model.name}.onnx"
    converted = edge_json("convert", files.models[model.name], "-o", fp32, *model.convert_args)
    result = CorpusResult(model, converted, paths={"fp32": fp32})
    calibration, evaluation = files.images[model.images]
    spec = spec_from_onnx_file(fp32)
    for profile in PROFILES:
        out = work / f"{model.name}.{profile}.onnx"
        result.calibrated[profile] = edge_json(
            "calibrate", fp32, "--images", calibration, "-o", out, "--profile", profile,
            "--max-images", str(max_images))
        result.paths[profile] = out
        result.agreement[profile] = agreement(fp32, out, spec, evaluation,
                                              int8_kernels=profile == "cpu")
    return result


def evaluation_inputs(spec: ModelSpec, folder: Path) -> Iterator[npt.NDArray[np.uint8]]:
    """uint8 [1, H, W, 3] inputs: every photo in `folder` and its mirror image, letterboxed."""
    letterbox = letterboxer_from_spec(spec)
    for image in frames_from(folder).images():
        for variant in (image, cv2.flip(image, 1)):
            buffer = np.empty((1, spec.input.height, spec.input.width, 3), np.uint8)
            letterbox(np.ascontiguousarray(variant), buffer)
            yield buffer


def agreement(fp32: Path, int8: Path, spec: ModelSpec, folder: Path,
              int8_kernels: bool = True) -> Agreement:
    """How `int8` agrees with `fp32` on `folder`'s photos; `int8_kernels`: run through ONNX
    Runtime's int8 kernels (the `cpu` profile, as deployed), or False: as the QDQ graph
    defines it, as TensorRT computes it (`calibration.fidelity.quantized_session`)."""
    import onnx  # noqa: PLC0415 - heavy; only the agreement check needs it

    from calibration.fidelity import quantized_session  # noqa: PLC0415 - imports ONNX Runtime

    sessions = [quantized_session(onnx.load(str(path)), 0, kernels)
                for path, kernels in ((fp32, True), (int8, int8_kernels))]
    decode = decoder_from_spec(spec, spec.postprocess.model_copy(
        update={"score_threshold": DETECTION_SCORE}))
    geometry = LetterboxGeometry.fit(spec.input.width, spec.input.height,
                                     spec.input.width, spec.input.height)
    energy = SignalNoise()
    same_top1 = frames = matched = found_fp32 = found_int8 = 0
    for frame in evaluation_inputs(spec, folder):
        reference, quantized = (np.asarray(s.run([spec.output], {spec.input.name: frame})[0],
                                           np.float64) for s in sessions)
        energy.add(spec.output, reference, quantized)
        frames += 1
        if spec.task == "classify":
            same_top1 += int(reference[0].argmax() == quantized[0].argmax())
            continue
        ours, theirs = (decode(x[0].astype(np.float32), geometry) for x in (reference, quantized))
        matched += matched_detections(ours, theirs)
        found_fp32, found_int8 = found_fp32 + len(ours.scores), found_int8 + len(theirs.scores)
    sqnr = energy.decibels(spec.output)
    if spec.task == "classify":
        return Agreement(frames, sqnr, top1=same_top1 / max(frames, 1))
    f1 = 2 * matched / (found_fp32 + found_int8) if found_fp32 + found_int8 else 1.0
    return Agreement(frames, sqnr, detection_f1=f1, fp32_detections=found_fp32)


def matched_detections(reference: Detections, other: Detections, iou: float = 0.5) -> int:
    """Greedy one-to-one matches of the same class with IoU >= `iou`, best scores first."""
    if not len(reference.scores) or not len(other.scores):
        return 0
    overlaps = iou_matrix(reference.boxes, other.boxes)
    overlaps[reference.class_ids[:, None] != other.class_ids[None, :]] = 0.0
    taken: set[int] = set()
    count = 0
    for row in np.argsort(-reference.scores, kind="stable"):
        for column in np.argsort(-overlaps[row], kind="stable"):
            if overlaps[row, column] < iou:
                break
            if int(column) not in taken:
                taken.add(int(column))
                count += 1
                break
    return count

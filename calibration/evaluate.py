"""`edge eval`: a model's accuracy on labelled data, through the daemon's own path.

Detection: COCO-style mAP@0.5 and mAP@0.5:0.95 (101-point interpolation, at most 100
detections per image, score floor 0.001) and per-class AP. Classification: top-1 accuracy.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from calibration.datasets import Dataset
from edge.metrics import DetectionScorer
from edge.postprocess import decoder_from_spec
from edge.preprocess import Letterboxer
from edge.runners.onnxruntime import OrtRunner

COCO_IOUS = tuple(round(0.5 + 0.05 * i, 2) for i in range(10))


@dataclass(frozen=True)
class Accuracy:
    task: str
    images: int
    map50: float | None = None
    map50_95: float | None = None
    per_class_ap50: dict[str, float] = field(default_factory=dict)
    per_class_ap: dict[str, float] = field(default_factory=dict)
    precision: float | None = None
    recall: float | None = None
    top1: float | None = None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def evaluate(model: Path, dataset: Dataset, threads: int = 0) -> Accuracy:
    with OrtRunner.from_path(model, threads=threads, slots=1) as runner:
        spec = runner.spec
        letterbox = Letterboxer(spec.input.pad_value, spec.input.colour_order == "RGB")
        if spec.task == "classify":
            decode = decoder_from_spec(spec, spec.postprocess.model_copy(
                update={"score_threshold": 1e-9, "max_detections": 1}))
            hits = total = 0
            for item, image in dataset.images():
                geometry = letterbox(image, runner.input_buffer(0))
                found = decode(runner.infer(0)[0], geometry)
                hits += int(len(found) > 0 and found.class_ids[0] == item.class_ids[0])
                total += 1
            return Accuracy("classify", total, top1=round(hits / max(total, 1), 4))
        ranking = decoder_from_spec(spec, spec.postprocess.model_copy(
            update={"score_threshold": 0.001, "max_detections": 100}))
        operating = decoder_from_spec(spec)
        ranked = DetectionScorer(spec.num_classes, COCO_IOUS)
        at_threshold = DetectionScorer(spec.num_classes)
        count = 0
        for item, image in dataset.images():
            geometry = letterbox(image, runner.input_buffer(0))
            output = runner.infer(0)[0]
            ranked.add(ranking(output, geometry), item.boxes, item.class_ids, item.difficult)
            at_threshold.add(operating(output, geometry), item.boxes, item.class_ids,
                             item.difficult)
            count += 1
    ap = ranked.average_precision()
    precision, recall = at_threshold.precision_recall()
    present = ~np.isnan(ap[:, 0])
    return Accuracy(
        "detect", count,
        map50=round(float(ap[present, 0].mean()), 4) if present.any() else 0.0,
        map50_95=round(float(ap[present].mean()), 4) if present.any() else 0.0,
        per_class_ap50={spec.labels[c]: round(float(ap[c, 0]), 4) for c in np.flatnonzero(present)},
        per_class_ap={spec.labels[c]: round(float(ap[c].mean()), 4)
                      for c in np.flatnonzero(present)},
        precision=round(precision, 4), recall=round(recall, 4))

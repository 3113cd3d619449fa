"""Score the shipped demo detector through the daemon's own path on held-out scenes.

    python -m converters.demo_detector.evaluate [--model edge/models/shapes.onnx]

Frames go through the same letterbox, ONNX Runtime runner and decoder as on the device, and
boxes are compared in source pixels. mAP@0.5 uses a 0.001 score floor (COCO practice);
precision and recall use the model's own default threshold. Held-out seeds never occur in
training (training and the trainer's own check use seeds below 900 000).
"""

from __future__ import annotations

import argparse
import json
from dataclasses import asdict, dataclass
from pathlib import Path

from edge.metrics import DetectionScorer
from edge.postprocess import DetectionDecoder
from edge.preprocess import Letterboxer
from edge.runners.onnxruntime import OrtRunner
from edge.synthetic import ShapeScene

HELD_OUT_SEED = 900_000


@dataclass(frozen=True)
class Evaluation:
    frames: int
    objects: int
    map50: float
    map50_95: float
    precision: float
    recall: float


def evaluate_onnx(path: Path, scenes: int = 20, frames_per_scene: int = 20,
                  frame_step: int = 6) -> Evaluation:
    with OrtRunner.from_path(path) as runner:
        spec = runner.spec
        ranking = DetectionDecoder(spec, spec.postprocess.model_copy(
            update={"score_threshold": 0.001, "max_detections": 300}))
        operating = DetectionDecoder(spec)
        thresholds = tuple(0.5 + 0.05 * i for i in range(10))
        ranked = DetectionScorer(spec.num_classes, thresholds)
        operating_point = DetectionScorer(spec.num_classes)
        letterbox = Letterboxer(spec.input.pad_value)
        frames = objects = 0
        for scene_index in range(scenes):
            scene = ShapeScene(seed=HELD_OUT_SEED + scene_index)
            for _ in range(frames_per_scene):
                for _ in range(frame_step):
                    image, truth = scene.next()
                geometry = letterbox(image, runner.input_buffer(0))
                output = runner.infer(0)[0]
                ranked.add(ranking(output, geometry), truth.boxes, truth.class_ids,
                           truth.difficult)
                operating_point.add(operating(output, geometry), truth.boxes, truth.class_ids,
                                 truth.difficult)
                frames += 1
                objects += int((~truth.difficult).sum())
    ap = ranked.average_precision()
    precision, recall = operating_point.precision_recall()
    return Evaluation(frames, objects, round(float(ap[:, 0].mean()), 4),
                      round(float(ap.mean()), 4), round(precision, 4), round(recall, 4))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, default=Path("edge/models/shapes.onnx"))
    parser.add_argument("--scenes", type=int, default=20)
    args = parser.parse_args(argv)
    print(json.dumps(asdict(evaluate_onnx(args.model, args.scenes))))


if __name__ == "__main__":
    main()

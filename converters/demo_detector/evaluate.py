"""Score the shipped demo detector through the daemon's own path on held-out scenes.

    python -m converters.demo_detector.evaluate [--model edge/models/shapes.onnx]

Frames go through the same letterbox, ONNX Runtime runner and decoder as on the device (the one
scoring loop of `calibration.evaluate`), and boxes are compared in source pixels. mAP@0.5 uses
a 0.001 score floor and at most 100 detections per frame (COCO practice);
precision and recall use the model's own default threshold. Held-out seeds never occur in
training (training and the trainer's own check use seeds below 900 000).
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt

from calibration.evaluate import Truth, accuracy_from_runner
from edge.runners.onnxruntime import OrtRunner
from edge.synthetic import labelled_frames

HELD_OUT_SEED = 900_000


@dataclass(frozen=True)
class Evaluation:
    frames: int
    objects: int
    map50: float
    map50_95: float
    precision: float
    recall: float


def held_out_frames(scenes: int, frames_per_scene: int, frame_step: int
                    ) -> Iterator[tuple[Truth, npt.NDArray[np.uint8]]]:
    """(truth, BGR frame) pairs of scenes the trainer never saw, every `frame_step`-th frame."""
    for scene_index in range(scenes):
        yield from labelled_frames(HELD_OUT_SEED + scene_index, frames_per_scene, frame_step)


def evaluate_onnx(path: Path, scenes: int = 20, frames_per_scene: int = 20,
                  frame_step: int = 6) -> Evaluation:
    objects = 0

    def counted() -> Iterator[tuple[Truth, npt.NDArray[np.uint8]]]:
        nonlocal objects
        for truth, image in held_out_frames(scenes, frames_per_scene, frame_step):
            objects += int((~truth.difficult).sum())
            yield truth, image

    with OrtRunner.from_path(path) as runner:
        accuracy = accuracy_from_runner(runner, counted())
    return Evaluation(accuracy.images, objects, accuracy.map50 or 0.0, accuracy.map50_95 or 0.0,
                      accuracy.precision or 0.0, accuracy.recall or 0.0)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, default=Path("edge/models/shapes.onnx"))
    parser.add_argument("--scenes", type=int, default=20)
    args = parser.parse_args(argv)
    print(json.dumps(asdict(evaluate_onnx(args.model, args.scenes))))


if __name__ == "__main__":
    main()

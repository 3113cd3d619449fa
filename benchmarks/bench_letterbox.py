"""Letterbox straight into the model's uint8 input buffer vs the common naive path.

    python benchmarks/bench_letterbox.py [--repeats 200] [--json]

Both turn a 1920x1080 BGR frame into a 640x640 model input. The naive path is what most
hand-rolled scripts do on the CPU: resize, pad, BGR->RGB, HWC->CHW, astype(float32), /255,
contiguous copy. Ours resizes into a view of a preallocated buffer; the cast and normalisation
run inside the model graph (on the GPU under TensorRT). Ours is timed with each resampling a
model can ask for (`edge convert --interpolation`): OpenCV's bilinear (the default), area, and
Pillow's bilinear, bicubic and Lanczos filters, and each again making a classifier's 224x224
input from the frame's centre (`--resize crop --crop-fraction 0.875`). Reported: median time
per frame of each, the naive path's time over each of ours, and the most bytes allocated at
once over 20 frames (tracemalloc peak; Pillow's own buffers are not Python allocations and do
not show there).
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
import tracemalloc
from collections.abc import Callable
from functools import partial
from typing import get_args

import cv2
import numpy as np
import numpy.typing as npt

from edge.preprocess import Letterboxer, LetterboxGeometry
from edge.resizing import DEFAULT_INTERPOLATION, Interpolation

SOURCE = (1920, 1080)
TARGET = 640
CLASSIFIER_INPUT, CROP_FRACTION = 224, 0.875


def naive(frame: npt.NDArray[np.uint8]) -> npt.NDArray[np.float32]:
    geometry = LetterboxGeometry.fit(frame.shape[1], frame.shape[0], TARGET, TARGET)
    resized = cv2.resize(frame, (geometry.resized_width, geometry.resized_height))
    bottom = TARGET - geometry.resized_height - geometry.pad_top
    right = TARGET - geometry.resized_width - geometry.pad_left
    padded = cv2.copyMakeBorder(resized, geometry.pad_top, bottom, geometry.pad_left, right,
                                cv2.BORDER_CONSTANT, value=(114, 114, 114))
    chw = padded[:, :, ::-1].transpose(2, 0, 1)
    scaled = chw.astype(np.float32) / 255.0
    return np.ascontiguousarray(scaled[None])


def timed(run: Callable[[], object], repeats: int) -> list[float]:
    for _ in range(10):
        run()
    samples = []
    for _ in range(repeats):
        started = time.perf_counter()
        run()
        samples.append((time.perf_counter() - started) * 1e3)
    return samples


def peak_allocation(run: Callable[[], object], frames: int = 20) -> int:
    """Most bytes held at once above the baseline while running `frames` frames."""
    run()
    tracemalloc.start()
    tracemalloc.reset_peak()
    base, _ = tracemalloc.get_traced_memory()
    for _ in range(frames):
        run()
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return peak - base


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=200)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    cv2.setNumThreads(1)  # one core each, as on a busy device; removes scheduling noise
    rng = np.random.default_rng(0)
    noise = rng.integers(0, 256, (SOURCE[1], SOURCE[0], 3), np.uint8)
    frame = cv2.GaussianBlur(noise, (5, 5), 0).astype(np.uint8, copy=False)
    buffer = np.empty((1, TARGET, TARGET, 3), np.uint8)
    paths: dict[str, Callable[[], object]] = {"naive": lambda: naive(frame)}
    for interpolation in get_args(Interpolation):
        letterbox = Letterboxer(interpolation=interpolation)
        suffix = "" if interpolation == DEFAULT_INTERPOLATION else f"_{interpolation}"
        paths[f"letterbox_into_buffer{suffix}"] = partial(letterbox, frame, buffer, 0)
    result: dict[str, object] = {"source": f"{SOURCE[0]}x{SOURCE[1]}", "target": TARGET,
                                 "repeats": args.repeats}
    medians = {}
    for name, run in paths.items():
        medians[name] = statistics.median(timed(run, args.repeats))
        result[name] = {"median_ms": round(medians[name], 3),
                        "peak_allocated_bytes": peak_allocation(run)}
    ours = [name for name in paths if name != "naive"]
    for name in ours:
        result[f"speedup_{name}"] = round(medians["naive"] / medians[name], 2)
    if not args.json:
        for name in paths:
            print(f"{name:42s} {result[name]}")
        words = {name: name.removeprefix("letterbox_into_buffer_") for name in ours}
        words["letterbox_into_buffer"] = "bilinear, the default"
        print("naive / ours: " + ", ".join(f"{result[f'speedup_{name}']}x ({words[name]})"
                                           for name in ours))
    cropping = classifier_crop_times(frame, args.repeats)
    result["classifier_crop_224_ms"] = cropping
    if not args.json:
        print(f"into a {CLASSIFIER_INPUT}x{CLASSIFIER_INPUT} centre crop ({CROP_FRACTION}), "
              "ms: " + ", ".join(f"{name} {ms}" for name, ms in cropping.items()))
    print(json.dumps(result))


def classifier_crop_times(frame: npt.NDArray[np.uint8], repeats: int) -> dict[str, float]:
    """Median ms of each resampling making a classifier's input from `frame`: torchvision's
    ImageNet evaluation (`Resize(256)`, `CenterCrop(224)`)."""
    buffer = np.empty((1, CLASSIFIER_INPUT, CLASSIFIER_INPUT, 3), np.uint8)
    return {interpolation: round(statistics.median(timed(partial(
        Letterboxer(interpolation=interpolation, resize="crop", crop_fraction=CROP_FRACTION),
        frame, buffer, 0), repeats)), 3) for interpolation in get_args(Interpolation)}


if __name__ == "__main__":
    main()

"""Train the demo detector on the synthetic scene and export the self-describing ONNX.

    python -m converters.demo_detector.train --out edge/models/shapes.onnx

CPU only, fixed seeds, deterministic; about fifteen minutes on two cores. The checkpoint
(`state_dict`) is written next to the ONNX so `edge convert` can start from it too.
"""

from __future__ import annotations

import argparse
import math
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt
import torch
from torch.nn import functional

from converters.convert import ConvertOptions, convert_module
from converters.demo_detector.evaluate import evaluate_onnx
from converters.demo_detector.model import ShapesDetector, anchor_points, decode_levels
from converters.fold import Normalisation
from edge.detections import Detections
from edge.metrics import DetectionScorer
from edge.postprocess import DetectionDecoder
from edge.preprocess import LetterboxGeometry, letterbox
from edge.spec import InputSpec, ModelSpec
from edge.synthetic import SHAPE_LABELS, ShapeScene

INPUT_SIZE = 320
#: Anchors within this many strides of an object's centre (and inside its box) are positives.
CENTRE_RADIUS = 2.5
BOX_LOSS_WEIGHT = 5.0


@dataclass
class Samples:
    """Letterboxed training frames and their labels in input pixels."""

    images: npt.NDArray[np.uint8]  # [N, S, S, 3] BGR
    boxes: list[npt.NDArray[np.float32]]  # per image [K, 4] x1 y1 x2 y2
    class_ids: list[npt.NDArray[np.int64]]
    difficult: list[npt.NDArray[np.bool_]]


def generate_samples(count: int, seed: int, frames_per_scene: int = 10,
                     frame_step: int = 6) -> Samples:
    """`count` frames from scenes seeded seed, seed+1, ...; every `frame_step`-th frame is kept."""
    images = np.empty((count, INPUT_SIZE, INPUT_SIZE, 3), np.uint8)
    boxes, class_ids, difficult = [], [], []
    scene = ShapeScene(seed=seed)
    for i in range(count):
        if i % frames_per_scene == 0:
            scene = ShapeScene(seed=seed + i // frames_per_scene)
        for _ in range(frame_step):
            frame, truth = scene.next()
        images[i], geometry = letterbox(frame, INPUT_SIZE, INPUT_SIZE)
        boxes.append(geometry.boxes_to_input(truth.boxes))
        class_ids.append(truth.class_ids)
        difficult.append(truth.difficult)
    return Samples(images, boxes, class_ids, difficult)


def to_network_input(images: npt.NDArray[np.uint8]) -> torch.Tensor:
    """BGR uint8 NHWC -> RGB float NCHW in 0..1 (what the folded preprocessing reproduces)."""
    return torch.from_numpy(images).permute(0, 3, 1, 2).flip(1).float() / 255.0


def _box_iou_and_giou(pred: torch.Tensor, target: torch.Tensor) -> tuple[torch.Tensor,
                                                                        torch.Tensor]:
    """Element-wise IoU and GIoU of xyxy boxes [P, 4]."""
    top_left = torch.maximum(pred[:, :2], target[:, :2])
    bottom_right = torch.minimum(pred[:, 2:], target[:, 2:])
    inter = (bottom_right - top_left).clamp(min=0).prod(1)
    union = (pred[:, 2:] - pred[:, :2]).prod(1) + (target[:, 2:] - target[:, :2]).prod(1) - inter
    iou = inter / union.clamp(min=1e-6)
    hull = (torch.maximum(pred[:, 2:], target[:, 2:]) - torch.minimum(pred[:, :2], target[:, :2]))
    hull_area = hull.prod(1).clamp(min=1e-6)
    return iou, iou - (hull_area - union) / hull_area


def assign(points: torch.Tensor, strides: torch.Tensor, boxes: torch.Tensor
           ) -> tuple[torch.Tensor, torch.Tensor]:
    """Centre-sampling assignment for one image.

    Returns a positive mask [A] and, per anchor, the index of its object (the smallest one
    when several claim it)."""
    if boxes.shape[0] == 0:
        return torch.zeros(points.shape[0], dtype=torch.bool), torch.zeros(0, dtype=torch.long)
    p = points[None]  # [1, A, 2]
    inside = ((p > boxes[:, None, :2]) & (p < boxes[:, None, 2:])).all(-1)
    centres = (boxes[:, :2] + boxes[:, 2:]) / 2
    near = ((p - centres[:, None]).abs() < CENTRE_RADIUS * strides[None]).all(-1)
    candidate = inside & near  # [G, A]
    areas = (boxes[:, 2:] - boxes[:, :2]).prod(1)
    cost = torch.where(candidate, areas[:, None], torch.full_like(candidate, math.inf,
                                                                  dtype=areas.dtype))
    best_cost, owner = cost.min(0)
    return torch.isfinite(best_cost), owner


def detection_loss(levels: list[torch.Tensor], boxes: list[torch.Tensor],
                   class_ids: list[torch.Tensor]) -> torch.Tensor:
    """BCE on IoU-aware class targets plus GIoU on positive anchors."""
    pred_boxes, logits = decode_levels(levels)
    points, strides = anchor_points(levels)
    half = pred_boxes[:, 2:] / 2
    pred_xyxy = torch.cat([pred_boxes[:, :2] - half, pred_boxes[:, :2] + half], 1)  # [N, 4, A]
    targets = torch.zeros_like(logits)
    box_losses, positives = [], 0
    for i in range(logits.shape[0]):
        mask, owner = assign(points, strides, boxes[i])
        if not mask.any():
            continue
        matched = boxes[i][owner[mask]]
        iou, giou = _box_iou_and_giou(pred_xyxy[i, :, mask].T, matched)
        box_losses.append((1 - giou).sum())
        positives += int(mask.sum())
        targets[i, class_ids[i][owner[mask]], mask.nonzero()[:, 0]] = iou.detach().clamp(min=0.05)
    normaliser = max(positives, 1)
    cls_loss = functional.binary_cross_entropy_with_logits(logits, targets, reduction="sum")
    box_loss = torch.stack(box_losses).sum() if box_losses else logits.sum() * 0
    return (cls_loss + BOX_LOSS_WEIGHT * box_loss) / normaliser


def train(samples: Samples, epochs: int, batch_size: int, seed: int) -> ShapesDetector:
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    model = ShapesDetector(num_classes=len(SHAPE_LABELS))
    steps = epochs * math.ceil(len(samples.images) / batch_size)
    optimiser = torch.optim.AdamW(model.parameters(), lr=3e-3, weight_decay=5e-4)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimiser, max_lr=3e-3, total_steps=steps,
                                                   pct_start=0.1)
    model.train()
    started = time.perf_counter()
    for epoch in range(epochs):
        order = rng.permutation(len(samples.images))
        total = 0.0
        for start in range(0, len(order), batch_size):
            index = order[start:start + batch_size]
            images, boxes = samples.images[index], [samples.boxes[i].copy() for i in index]
            flip = rng.random() < 0.5
            if flip:  # horizontal flip: every shape class is mirror-symmetric in distribution
                images = images[:, :, ::-1]
                for b in boxes:
                    b[:, [0, 2]] = INPUT_SIZE - b[:, [2, 0]]
            loss = detection_loss(model.forward_levels(to_network_input(images.copy())),
                                  [torch.from_numpy(b) for b in boxes],
                                  [torch.from_numpy(samples.class_ids[i]) for i in index])
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
            schedule.step()
            total += float(loss.detach()) * len(index)
        print(f"epoch {epoch + 1}/{epochs}  loss {total / len(order):.4f}  "
              f"{time.perf_counter() - started:.0f}s", flush=True)
    return model.eval()


def evaluate(model: torch.nn.Module, samples: Samples, spec: ModelSpec) -> float:
    """mAP@0.5 of the torch model on letterboxed samples (boxes compared in input pixels)."""
    decoder = DetectionDecoder(spec)
    identity = LetterboxGeometry.fit(INPUT_SIZE, INPUT_SIZE, INPUT_SIZE, INPUT_SIZE)
    scorer = DetectionScorer(spec.num_classes)
    with torch.no_grad():
        for start in range(0, len(samples.images), 64):
            output = model(to_network_input(samples.images[start:start + 64])).numpy()
            for offset, prediction in enumerate(output):
                i = start + offset
                found: Detections = decoder(prediction, identity)
                scorer.add(found, samples.boxes[i], samples.class_ids[i], samples.difficult[i])
    return scorer.mean_average_precision()


#: How the shipped model is converted; `edge convert` with the same options reproduces it from
#: the checkpoint: edge convert shapes.pt --module converters.demo_detector.model:ShapesDetector
#: --input-size 320 --labels circle,square,triangle,star --name shapes-detector
CONVERT_OPTIONS = ConvertOptions(input_size=(INPUT_SIZE, INPUT_SIZE), labels=SHAPE_LABELS,
                                 camera_order="BGR", normalisation=Normalisation("RGB"))


def demo_spec() -> ModelSpec:
    return ModelSpec(
        task="detect", labels=SHAPE_LABELS, head="anchor_free", output="output0",
        input=InputSpec(name="images", width=INPUT_SIZE, height=INPUT_SIZE, colour_order="BGR"),
        name="shapes-detector")


def export(model: ShapesDetector, out: Path) -> None:
    converted = convert_module(model, CONVERT_OPTIONS, name="shapes-detector")
    print(converted.parity.describe() if converted.parity else "parity not checked")
    converted.write(out)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path("edge/models/shapes.onnx"))
    parser.add_argument("--train-frames", type=int, default=5000)
    parser.add_argument("--eval-frames", type=int, default=400)
    parser.add_argument("--epochs", type=int, default=15)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    torch.use_deterministic_algorithms(True)
    started = time.perf_counter()
    train_set = generate_samples(args.train_frames, seed=args.seed * 100_000 + 1)
    held_out = generate_samples(args.eval_frames, seed=args.seed * 100_000 + 90_001)
    print(f"generated {args.train_frames} + {args.eval_frames} frames in "
          f"{time.perf_counter() - started:.0f}s", flush=True)
    model = train(train_set, args.epochs, args.batch_size, args.seed)
    print(f"held-out mAP@0.5 (torch, {args.eval_frames} frames): "
          f"{evaluate(model, held_out, demo_spec()):.4f}")
    torch.save(model.state_dict(), args.out.with_suffix(".pt"))
    export(model, args.out)
    print(f"wrote {args.out} and {args.out.with_suffix('.pt')} "
          f"in {time.perf_counter() - started:.0f}s total")
    print(f"shipped ONNX through the daemon's path: {evaluate_onnx(args.out)}")


if __name__ == "__main__":
    main()

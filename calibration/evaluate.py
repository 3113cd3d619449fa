"""`edge eval`: a model's accuracy on labelled frames, through the daemon's own path.

The one letterbox -> infer loop (`letterboxed_outputs`), shared by `edge eval`, the calibration
report, the demo detector's held-out evaluation, the hardware selftest and the drift reference,
so every figure is measured on the pixels the device feeds the model.

Detection: COCO-style mAP@0.5 and mAP@0.5:0.95 (101-point interpolation, at most 100
detections per image, score floor 0.001) and per-class AP; precision and recall at the model's
own score threshold. Classification: top-1 accuracy.
"""

from __future__ import annotations

import statistics
import time
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from contextlib import ExitStack
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Protocol, TypeVar

import numpy as np
import numpy.typing as npt

from calibration.datasets import Dataset
from calibration.readers import Prefetched, frames_from
from edge.detections import Detections
from edge.errors import EdgeError
from edge.metrics import DetectionScorer
from edge.postprocess import decoder_from_spec
from edge.preprocess import LetterboxGeometry, letterboxer_from_spec
from edge.runners.base import Runner
from edge.runners.onnxruntime import OrtRunner
from edge.spec import ModelSpec, spec_from_onnx_file
from edge.synthetic import labelled_frames
from edge.wording import counted, listed

COCO_IOUS = tuple(round(0.5 + 0.05 * i, 2) for i in range(10))
T = TypeVar("T")
#: Frames read ahead of the models (each a full-size BGR image).
FRAMES_AHEAD = 4
#: A synthetic:// scene is scored on every `SCENE_FRAME_STEP`-th frame (neighbours barely
#: differ), `SCENE_FRAMES` of them unless asked otherwise.
SCENE_FRAME_STEP = 5
SCENE_FRAMES = 100


class Truth(Protocol):
    """What a frame holds: boxes float32 [K, 4] x1 y1 x2 y2 in source pixels, class ids [K],
    `difficult` [K] objects neither required nor penalised. A dataset's truth may also say
    which classes it labels (`LabelledImage.labelled_classes`; absent: every class)."""

    @property
    def boxes(self) -> npt.NDArray[np.float32]: ...

    @property
    def class_ids(self) -> npt.NDArray[np.int64]: ...

    @property
    def difficult(self) -> npt.NDArray[np.bool_]: ...


@dataclass(frozen=True)
class Accuracy:
    task: str
    images: int
    map50: float | None = None
    map50_95: float | None = None
    per_class_ap50: dict[str, float] = field(default_factory=dict)
    per_class_ap50_95: dict[str, float] = field(default_factory=dict)
    precision: float | None = None
    recall: float | None = None
    #: Detection: the ground-truth objects recall counts, and the detections at the score
    #: threshold precision counts.
    objects: int | None = None
    detections: int | None = None
    top1: float | None = None
    #: Classification, per true class present in the data: its images, the share of them
    #: the model got right, and what the others were taken for (label -> images, most first).
    per_class_images: dict[str, int] = field(default_factory=dict)
    per_class_top1: dict[str, float] = field(default_factory=dict)
    per_class_mistaken_for: dict[str, dict[str, int]] = field(default_factory=dict)
    #: Detection: the model's classes without a ground-truth object in the data, left out of
    #: mAP (COCO's rule: their AP is undefined); their detections count as false in precision.
    #: Classification: the labels without an image in the data (an empty class folder).
    unscored_classes: list[str] = field(default_factory=list)
    #: Detection: the model's classes the data does not label at all (a dataset naming only
    #: some): their detections are left out of mAP and precision, which they say nothing of.
    unlabelled_classes: list[str] = field(default_factory=list)
    #: The data's images that could not be decoded, left out of every figure above (paths
    #: relative to the dataset's folder: `270/readme.jpg`).
    unreadable_images: list[str] = field(default_factory=list)
    #: Classification: each image's top-1 class id (-1: none), in the order scored; what two
    #: models' answers are compared on (`top1_agreement`), not a figure of its own.
    answers: tuple[int, ...] = field(default=(), compare=False, repr=False)

    def as_dict(self) -> dict[str, Any]:
        figures = asdict(self)
        del figures["answers"]
        return figures


def top1_agreement(first: Accuracy, second: Accuracy) -> float | None:
    """The share of images on which two classifiers scored on the same images give the same
    top-1 answer; None where either kept no answers. Accuracy alone hides answers that changed
    both ways (a user check: top-1 0.6917 for FP32 and INT8 alike, 97 of 120 answers the
    same)."""
    if not first.answers or len(first.answers) != len(second.answers):
        return None
    same = sum(a == b for a, b in zip(first.answers, second.answers, strict=True))
    return same / len(first.answers)


@dataclass
class StageTimes:
    """Milliseconds per frame spent letterboxing, inferring and decoding + scoring."""

    preprocess: list[float] = field(default_factory=list)
    infer: list[float] = field(default_factory=list)
    postprocess: list[float] = field(default_factory=list)

    def medians(self) -> dict[str, float]:
        return {name: round(statistics.median(values), 3) if values else 0.0
                for name, values in asdict(self).items()}


class _Scorer(Protocol):
    def add(self, output: npt.NDArray[np.float32], geometry: LetterboxGeometry,
            truth: Truth) -> None: ...

    def accuracy(self, images: int) -> Accuracy: ...


class _TopOne:
    """Top-1 over every image and per true class, with what each class was mistaken for."""

    def __init__(self, spec: ModelSpec) -> None:
        self._labels = spec.labels
        self._decode = decoder_from_spec(spec, spec.postprocess.model_copy(
            update={"score_threshold": 1e-9, "max_detections": 1}))
        self._answers: Counter[tuple[int, int]] = Counter()  # (true, predicted or -1): images
        self._predicted: list[int] = []  # each image's, in order

    def add(self, output: npt.NDArray[np.float32], geometry: LetterboxGeometry,
            truth: Truth) -> None:
        found = self._decode(output, geometry)
        predicted = int(found.class_ids[0]) if len(found) else -1
        self._answers[int(truth.class_ids[0]), predicted] += 1
        self._predicted.append(predicted)

    def accuracy(self, images: int) -> Accuracy:
        per_class: Counter[int] = Counter()
        mistaken: dict[int, Counter[str]] = {}
        for (true, predicted), n in self._answers.items():
            per_class[true] += n
            if predicted != true:
                taken_for = self._labels[predicted] if predicted >= 0 else "nothing"
                mistaken.setdefault(true, Counter())[taken_for] += n
        classes = sorted(per_class)
        hits = sum(self._answers[c, c] for c in classes)
        return Accuracy(
            "classify", images, top1=round(hits / max(images, 1), 4),
            per_class_images={self._labels[c]: per_class[c] for c in classes},
            per_class_top1={self._labels[c]: round(self._answers[c, c] / per_class[c], 4)
                            for c in classes},
            per_class_mistaken_for={self._labels[c]: dict(mistaken[c].most_common())
                                    for c in classes if c in mistaken},
            unscored_classes=[label for c, label in enumerate(self._labels)
                              if c not in per_class],
            answers=tuple(self._predicted))


class _DetectionAp:
    def __init__(self, spec: ModelSpec) -> None:
        self._labels = spec.labels
        self._ranking = decoder_from_spec(spec, spec.postprocess.model_copy(
            update={"score_threshold": 0.001, "max_detections": 100}))
        self._operating = decoder_from_spec(spec)
        self._ranked = DetectionScorer(spec.num_classes, COCO_IOUS)
        self._at_threshold = DetectionScorer(spec.num_classes)
        self._labelled: set[frozenset[int]] = set()  # the truths' labelled classes, as given

    def add(self, output: npt.NDArray[np.float32], geometry: LetterboxGeometry,
            truth: Truth) -> None:
        # a dataset that names only some classes says nothing of the others' detections (a
        # user check: a dataset without "star" cut precision from 0.95 to 0.72)
        labelled: frozenset[int] | None = getattr(truth, "labelled_classes", None)
        ranked, operating = self._ranking(output, geometry), self._operating(output, geometry)
        if labelled is not None:
            self._labelled.add(labelled)
            ranked, operating = _of_classes(ranked, labelled), _of_classes(operating, labelled)
        self._ranked.add(ranked, truth.boxes, truth.class_ids, truth.difficult)
        self._at_threshold.add(operating, truth.boxes, truth.class_ids, truth.difficult)

    def accuracy(self, images: int) -> Accuracy:
        ap = self._ranked.average_precision()
        precision, recall = self._at_threshold.precision_recall()
        _, detections, objects = self._at_threshold.counts()
        present = np.flatnonzero(~np.isnan(ap[:, 0]))
        every = set(range(len(self._labels)))
        unlabelled = set().union(*(every - labelled for labelled in self._labelled))
        return Accuracy(
            "detect", images,
            map50=round(float(ap[present, 0].mean()), 4) if present.size else 0.0,
            map50_95=round(float(ap[present].mean()), 4) if present.size else 0.0,
            per_class_ap50={self._labels[c]: round(float(ap[c, 0]), 4) for c in present},
            per_class_ap50_95={self._labels[c]: round(float(ap[c].mean()), 4) for c in present},
            precision=round(precision, 4), recall=round(recall, 4),
            objects=objects, detections=detections,
            unscored_classes=[self._labels[c] for c in np.flatnonzero(np.isnan(ap[:, 0]))
                              if c not in unlabelled],
            unlabelled_classes=[self._labels[c] for c in sorted(unlabelled)])


def _of_classes(found: Detections, classes: frozenset[int]) -> Detections:
    """The detections in `found` of `classes` alone."""
    keep = np.isin(found.class_ids, list(classes))
    return Detections(found.boxes[keep], found.scores[keep], found.class_ids[keep])


class _LetterboxedRun:
    """One frame through one runner: letterboxed into its slot 0, then inferred."""

    def __init__(self, runner: Runner, times: StageTimes | None) -> None:
        self._runner, self._times = runner, times
        self._letterbox = letterboxer_from_spec(runner.spec)

    def __call__(self, image: npt.NDArray[np.uint8]
                 ) -> tuple[npt.NDArray[np.float32], LetterboxGeometry]:
        started = time.perf_counter()
        geometry = self._letterbox(image, self._runner.input_buffer(0))
        letterboxed = time.perf_counter()
        output = self._runner.infer(0)[0]
        if self._times is not None:
            self._times.preprocess.append((letterboxed - started) * 1e3)
            self._times.infer.append((time.perf_counter() - letterboxed) * 1e3)
        return output, geometry


def letterboxed_outputs(runner: Runner, frames: Iterable[tuple[T, npt.NDArray[np.uint8]]],
                        times: StageTimes | None = None
                        ) -> Iterator[tuple[T, npt.NDArray[np.float32], LetterboxGeometry]]:
    """(item, raw output of one frame, letterbox geometry) for each (item, BGR uint8 [h, w, 3]
    frame) pair, through the runner's slot 0; the output is valid until the next frame.
    Preprocess and inference times go to `times` when given."""
    run = _LetterboxedRun(runner, times)
    for item, image in frames:
        yield item, *run(image)


def accuracy_from_runner(runner: Runner, frames: Iterable[tuple[Truth, npt.NDArray[np.uint8]]],
                         times: StageTimes | None = None) -> Accuracy:
    """Score `runner` on (truth, BGR uint8 [h, w, 3] frame) pairs; per-stage times go to
    `times` when given."""
    return accuracies_from_runners([runner], frames, times)[0]


def accuracies_from_runners(runners: Sequence[Runner],
                            frames: Iterable[tuple[Truth, npt.NDArray[np.uint8]]],
                            times: StageTimes | None = None) -> list[Accuracy]:
    """Score every runner on the same (truth, BGR uint8 [h, w, 3] frame) pairs, each frame
    read once and fed to each runner in turn; per-stage times of all go to `times`."""
    runs = [_LetterboxedRun(runner, times) for runner in runners]
    scorers: list[_Scorer] = [_TopOne(r.spec) if r.spec.task == "classify" else _DetectionAp(r.spec)
                              for r in runners]
    images = 0
    for truth, image in frames:
        for run, scorer in zip(runs, scorers, strict=True):
            output, geometry = run(image)
            started = time.perf_counter()
            scorer.add(output, geometry, truth)
            if times is not None:
                times.postprocess.append((time.perf_counter() - started) * 1e3)
        images += 1
    return [scorer.accuracy(images) for scorer in scorers]


def evaluate(model: Path, dataset: Dataset, threads: int = 0) -> Accuracy:
    """Accuracy of the ONNX model at `model` on `dataset` (ONNX Runtime, CPU)."""
    (accuracy,) = evaluate_models([model], dataset.images(), threads)
    return with_unreadable(accuracy, dataset)


def unscored_labels(accuracy: Accuracy, shown: int = 20) -> str:
    """A classifier's labels without an image, in words: `2 labels: 180, 270`."""
    return f"{counted(len(accuracy.unscored_classes), 'label')}: " \
           f"{listed(accuracy.unscored_classes, shown)}"


def unreadable_images(accuracy: Accuracy, shown: int = 20) -> str:
    """The images that could not be decoded, in words: `1 image: 270/readme.jpg`."""
    return f"{counted(len(accuracy.unreadable_images), 'image')}: " \
           f"{listed(accuracy.unreadable_images, shown)}"


def with_unreadable(accuracy: Accuracy, dataset: Dataset) -> Accuracy:
    """`accuracy` naming the images of `dataset` its pass could not decode."""
    return replace(accuracy, unreadable_images=[dataset.shown(p) for p in dataset.unreadable])


def evaluate_models(models: Sequence[Path], frames: Iterable[tuple[Truth, npt.NDArray[np.uint8]]],
                    threads: int = 0) -> list[Accuracy]:
    """Accuracy of each ONNX model in `models` on (truth, BGR uint8 [h, w, 3] frame) pairs
    (ONNX Runtime, CPU), in one pass: each frame is read once, on a worker thread while the
    models run, and fed to every model. A `tensorrt` profile model is scored as TensorRT
    computes it (Q/DQ in float): through ONNX Runtime's int8 kernels it would score what a CPU
    without VNNI makes of it (a classifier: 6.5 dB output SQNR against 11.5 dB on an AVX2
    host)."""
    with ExitStack() as stack:
        runners = [stack.enter_context(OrtRunner.from_path(
            model, threads=threads, slots=1, qdq_in_float=_tensorrt_profile(model)))
            for model in models]
        ahead = stack.enter_context(Prefetched(frames, FRAMES_AHEAD))
        return accuracies_from_runners(runners, ahead)


def scene_frames(uri: str, frames: int = SCENE_FRAMES
                 ) -> Iterator[tuple[Truth, npt.NDArray[np.uint8]]]:
    """(truth, BGR frame) pairs of the scene `uri` names (`synthetic://shapes?seed=N&width=W&
    height=H`): `frames` of them, every `SCENE_FRAME_STEP`-th."""
    scene = frames_from(uri)
    return labelled_frames(scene.synthetic_seed or 0, frames, SCENE_FRAME_STEP,
                           scene.synthetic_config)


def _tensorrt_profile(model: Path) -> bool:
    """Whether `model` is a `tensorrt` profile INT8 model (False for a file that is no model:
    the runner then says what is wrong with it)."""
    try:
        return spec_from_onnx_file(model).quantization == "int8-qdq"
    except EdgeError:
        return False

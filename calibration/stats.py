"""Streaming activation statistics: per-tensor min/max and a histogram of |x|, batch by batch.

ONNX Runtime's own Entropy/Percentile calibration keeps every intermediate tensor of every frame
in memory before it computes anything. Here each batch updates fixed-size statistics and is then
dropped, so peak memory does not depend on how many frames are used.

The |x| histogram has `BINS` bins over [0, range]. The range starts at the first batch's
largest |x| and doubles whenever a later value exceeds it; doubling merges neighbouring bin
pairs, which is exact because the old bin edges are a subset of the new ones. `BINS` is 8x the
2048 bins TensorRT's entropy method works on, so `histogram_to_max` can re-bin exactly [0, max]
into 2048 bins as TensorRT's two-pass collection would, whatever the doublings did.
"""

from __future__ import annotations

import copy
import logging
import math
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt
import onnx
from onnx import AttributeProto, TensorProto, helper

from calibration.observing import ObservingSession
from calibration.tensor_types import tensor_types
from edge.concurrency import in_order
from edge.errors import InputError
from edge.system import available_memory_bytes, usable_cores

log = logging.getLogger(__name__)

BINS = 16384
#: Values per tensor and batch that reach the histogram, at most: a larger tensor contributes
#: an evenly strided sample, at a new offset each batch (min and max still see every value).
#: Measured against full histograms over 48-64 frames of a YOLOv8n: minmax identical, the
#: median tensor's range identical for every method, the largest percentile deviation 1-2.6%;
#: mse and entropy searches with near-equal minima jump further on a few tensors.
HISTOGRAM_SAMPLE = 1 << 16
#: Values per tensor that the histogram takes over a whole calibration set, where that set is
#: larger than 64 frames: the sample a frame shrinks as the frames grow, down to
#: `HISTOGRAM_SAMPLE_MIN`, so the histogram's work (a third of the statistics' CPU time on a
#: YOLOv8n) grows more slowly than at the full 64 k every frame. The accuracy of a range from a
#: sample depends on the sample's total size; the choice of frames moves ranges an order of
#: magnitude more. YOLOv8n (`nudenet-320n`), ranges against full histograms (every value of
#: every frame), 128 camera frames: 32 k a frame (this budget), percentile median 0.01%, 90th
#: percentile 0.64%, largest 2.2%; full histograms over half of them against those over all:
#: 1.1%, 4.7-4.9%, 12%.
#: INT8 models from 32 k samples (three corpus models, every range method, 40 unseen tiles)
#: stayed within 2 dB output SQNR of those from full histograms, one sensitive entropy case 5 dB
#: above, inside the spread of calibrating on either half of the frames (up to 10 dB); the
#: YOLOv8n's detections the same (docs/benchmarks.md, forty-fifth session).
HISTOGRAM_BUDGET = 64 * HISTOGRAM_SAMPLE
#: The smallest sample a frame, reached at 128 frames: at 256 frames, 16 k a frame took the
#: demo detector's chosen INT8 model from 96.6% to 93.9% detection agreement with FP32 on its
#: 16 held-out frames (32 k: 95.7%), and 8 k put 19 of the YOLOv8n's 67 percentile ranges more
#: than 1% off (16 k: 4).
HISTOGRAM_SAMPLE_MIN = 1 << 15


def histogram_sample(frames: int | None) -> int:
    """Values per tensor and batch (of one frame) that reach the histogram when the statistics
    cover `frames` frames (None: not known, `HISTOGRAM_SAMPLE`)."""
    if not frames:
        return HISTOGRAM_SAMPLE
    return max(HISTOGRAM_SAMPLE_MIN, min(HISTOGRAM_SAMPLE, HISTOGRAM_BUDGET // frames))


@dataclass
class TensorStats:
    """Running statistics of one tensor. `histogram[k]` counts |x| in
    [k * width, (k + 1) * width) with width = range / BINS (the last bin is closed), over at
    most `sample_values` values of each update (an evenly strided sample)."""

    name: str
    minimum: float = float("inf")
    maximum: float = float("-inf")
    count: int = 0
    range: float = 0.0
    histogram: npt.NDArray[np.int64] = field(default_factory=lambda: np.zeros(BINS, np.int64))
    sample_values: int | None = None  # None: every value (the collector: `histogram_sample`)

    @property
    def abs_max(self) -> float:
        return max(abs(self.minimum), abs(self.maximum)) if self.count else 0.0

    @property
    def bin_width(self) -> float:
        return self.range / len(self.histogram) if self.range else 0.0

    def update(self, values: npt.NDArray[Any]) -> None:
        """Fold in one batch of this tensor, `values` of any shape."""
        size = int(np.size(values))
        self.add(batch_sample(values, self.sample_values, self.count // size if size else 0))

    def add(self, batch: BatchSample) -> None:
        """Fold in one batch reduced by `batch_sample` (its magnitudes are scaled in place)."""
        if batch.size == 0:
            return
        low, high = batch.minimum, batch.maximum
        if not (math.isfinite(low) and math.isfinite(high)):  # NaN and inf reach min or max
            raise InputError(f"tensor {self.name} holds NaN or infinite values on a calibration "
                             "frame; the model is numerically broken on this input")
        self.minimum, self.maximum = min(self.minimum, low), max(self.maximum, high)
        self.count += batch.size
        largest = max(-low, high)
        if largest <= 0.0:
            self.histogram[0] += batch.magnitudes.size
            return
        if self.range == 0.0:
            self.range = largest
        while largest > self.range:
            self._double_range()
        bins = len(self.histogram)
        scaled = np.multiply(batch.magnitudes, np.float32(bins / self.range),
                             out=batch.magnitudes)
        # uint16 bin indices cast 3x faster than intp; the counts end at the largest index and
        # only that prefix is added (the histograms' memory traffic, not the arithmetic, is what
        # costs): 1 of 12 ms a YOLOv8n frame
        counts = np.bincount(scaled.astype(np.uint16 if bins < 1 << 16 else np.intp))
        if len(counts) > bins:  # |x| == range lands in bin `bins`: the last bin is closed
            counts[bins - 1] += counts[bins:].sum()
            counts = counts[:bins]
        self.histogram[:len(counts)] += counts

    def histogram_to_max(self, bins: int = 2048) -> npt.NDArray[np.float64]:
        """Counts of |x| in `bins` equal bins over exactly [0, max |x|], re-binned from the fine
        histogram (mass spread evenly inside each fine bin)."""
        if self.range == 0 or self.abs_max == 0:
            result = np.zeros(bins)
            result[0] = float(self.histogram.sum())
            return result
        cumulative = np.concatenate([[0.0], np.cumsum(self.histogram, dtype=np.float64)])
        fine_edges = np.linspace(0.0, self.range, len(self.histogram) + 1)
        edges = np.linspace(0.0, self.abs_max, bins + 1)
        counts: npt.NDArray[np.float64] = np.diff(np.interp(edges, fine_edges, cumulative))
        counts[-1] += cumulative[-1] - np.interp(self.abs_max, fine_edges, cumulative)
        return counts

    def _double_range(self) -> None:
        merged = self.histogram.reshape(-1, 2).sum(axis=1)
        self.histogram = np.concatenate([merged, np.zeros_like(merged)])
        self.range *= 2.0


@dataclass(frozen=True)
class BatchSample:
    """One batch of one tensor reduced to what `TensorStats.add` needs: min, max and count of
    every value, and |x| of the values that reach the histogram (an evenly strided sample, an
    array of its own). Small enough to wait to be folded once the activations are gone."""

    minimum: float
    maximum: float
    size: int
    magnitudes: npt.NDArray[np.float32]


def batch_sample(values: npt.NDArray[Any], sample_values: int | None, batch: int
                 ) -> BatchSample:
    """`values` (any shape) as a `BatchSample`; the sample starts at `batch` modulo the
    stride, so successive batches sample every position in turn."""
    flat = np.asarray(values, np.float32).ravel()
    if flat.size == 0:
        return BatchSample(math.inf, -math.inf, 0, flat.copy())
    low, high = float(flat.min()), float(flat.max())
    stride = sample_stride(flat.size, sample_values)
    sample = flat[batch % stride::stride]
    # post-ReLU (no negative values): a copy, without the abs pass
    return BatchSample(low, high, flat.size, np.abs(sample) if low < 0 else sample.copy())


def sample_stride(size: int, sample_values: int | None) -> int:
    """The sample's stride: the smallest odd one that keeps it within `sample_values`. An even
    stride would keep picking the same lanes of ONNX Runtime's blocked layout (`calibration.
    observing`: 8 or 16 channels per pixel innermost), so each frame would be sampled on a
    fixed subset of channels; an odd one steps through every lane (and every column of an
    even-width row) in turn. YOLOv8n, 64 frames, percentile ranges against full histograms:
    6 of 67 tensors more than 1% off (3.6% at most) with even strides, 5 (2.6%) odd."""
    if not sample_values or size <= sample_values:
        return 1
    stride = -(-size // sample_values)
    return stride if stride % 2 else stride + 1


def float_tensors(model: onnx.ModelProto) -> list[str]:
    """Names of every float node output, in graph order."""
    types = tensor_types(model)
    return [name for node in model.graph.node for name in node.output
            if name and types.get(name) == TensorProto.FLOAT]


def model_exposing(model: onnx.ModelProto, tensors: Sequence[str]) -> onnx.ModelProto:
    """A copy of `model` with `tensors` added as graph outputs."""
    exposed = copy.deepcopy(model)
    present = {o.name for o in exposed.graph.output}
    for name in tensors:
        if name not in present:
            exposed.graph.output.append(
                helper.make_tensor_value_info(name, TensorProto.FLOAT, None))
    return exposed


#: Model runs in flight during statistics, each on its own worker thread, while the calling
#: thread folds finished ones in order. YOLOv8n on 2 cores: 2.58-2.76 s for 128 frames vs
#: 2.74-2.82 s with one run at a time (the fold and the decoders then leave a core idle).
RUNS_IN_FLIGHT = 2
#: Finished or queued runs that wait to be folded, at most ...
FOLD_WINDOW = 3
#: ... and fewer where what waits would pass this many bytes (sized on the first batch).
WAITING_BYTES = 256 << 20
#: A run whose observed activations pass this many bytes reduces them to samples
#: (`batch_sample`) on its own worker, so only the samples wait and are folded: every float
#: tensor of an 800x608 PP-PicoDet (`cpu` profile) is 0.9 GB a frame, its samples 150 MB, and
#: with one run at a time (`--threads 1`) the peak fell from 2.5 to 1.5 GB. Smaller runs are
#: reduced on the folding thread, where the numpy calls do not contend with the workers for
#: the GIL (a YOLOv8n's 20 MB: 3.55 s against 3.63 s reduced on the workers, 8 rounds).
REDUCE_ON_WORKER_BYTES = 64 << 20
#: The runs in flight may fill at most this share of the memory available when the statistics
#: start with their activations; past it they run one at a time, as `--threads 1` does (an
#: 800x608 PP-PicoDet under the `cpu` profile: 2.7 GB peak with two, 1.4 GB with one).
IN_FLIGHT_MEMORY_SHARE = 0.5


@dataclass
class _Ran:
    """One run's observed tensors, each reduced to its `BatchSample` already or still as its
    activations, with the batch's number (it sets the samples' offsets) and frame count."""

    batch: int
    frames: int
    tensors: list[BatchSample | npt.NDArray[Any]]
    activation_bytes: int  # of the run's observed activations, before any reduction

    @property
    def nbytes(self) -> int:
        return sum(t.magnitudes.nbytes if isinstance(t, BatchSample) else t.nbytes
                   for t in self.tensors)


def inference_plan(requested: int) -> tuple[int, int]:
    """(runs in flight, ONNX Runtime threads of each) for `requested` inference threads in all
    (0: all cores but two, and at least one per run). The frame decoders and the fold work
    alongside inference, and with every core given to ONNX Runtime they contend: on 2 cores,
    single-thread runs measured 30% faster overall than ONNX Runtime's default of 2 threads."""
    if requested > 0:
        runs = min(RUNS_IN_FLIGHT, requested)
        return runs, requested // runs
    return RUNS_IN_FLIGHT, max(1, (usable_cores() - 2) // RUNS_IN_FLIGHT)


def model_observing(model: onnx.ModelProto, tensors: Sequence[str]) -> onnx.ModelProto:
    """A copy of `model` whose outputs are `tensors` alone, without the nodes none of them
    depends on (a detector's decode tail: 3 ms of a YOLOv8n's 28 ms a frame on one thread).
    A graph with subgraphs (If, Loop), whose outer-scope inputs nodes do not list, keeps every
    node. ONNX Runtime drops the initializers left unused."""
    observing = model_exposing(model, tensors)
    wanted = set(tensors)
    kept = [o for o in observing.graph.output if o.name in wanted]
    del observing.graph.output[:]
    observing.graph.output.extend(kept)
    if any(a.type in (AttributeProto.GRAPH, AttributeProto.GRAPHS)
           for node in observing.graph.node for a in node.attribute):
        return observing
    needed = set(wanted)
    used: list[onnx.NodeProto] = []
    for node in reversed(observing.graph.node):
        if needed.intersection(node.output):
            used.append(node)
            needed.update(node.input)
    del observing.graph.node[:]
    observing.graph.node.extend(reversed(used))
    return observing


class StatsCollector:
    """Runs a model on ONNX Runtime (CPU) with `tensors` exposed and folds every batch into
    per-tensor `TensorStats`; `frames`, where known, is how many frames it will see (it sizes
    the histograms' samples: `histogram_sample`)."""

    def __init__(self, model: onnx.ModelProto, tensors: Sequence[str], threads: int = 0,
                 frames: int | None = None) -> None:
        self._runs, run_threads = inference_plan(threads)
        self.tensors = list(tensors)
        self._session = ObservingSession(model_observing(model, tensors), self.tensors,
                                         run_threads)
        self.sample_values = histogram_sample(frames)
        self.stats = {name: TensorStats(name, sample_values=self.sample_values)
                      for name in self.tensors}
        self.frames = 0
        self._batches = 0  # batches folded so far: the next batch's number

    def update(self, inputs: dict[str, npt.NDArray[Any]]) -> int:
        """Run and fold one batch; returns the bytes such a batch holds while it waits to be
        folded (what `fold_window` is sized on)."""
        ran = self._run((self._batches, inputs))
        self._fold(ran)
        return ran.nbytes

    def _run(self, numbered: tuple[int, dict[str, npt.NDArray[Any]]]) -> _Ran:
        """Run `numbered = (batch number, inputs)`; large activations are reduced to samples
        here, on the worker (`REDUCE_ON_WORKER_BYTES`)."""
        batch, inputs = numbered
        outputs: list[Any] = list(self._session.run(inputs))
        activations = sum(value.nbytes for value in outputs)
        if activations > REDUCE_ON_WORKER_BYTES:
            outputs = [batch_sample(value, self.sample_values, batch) for value in outputs]
        return _Ran(batch, int(next(iter(inputs.values())).shape[0]), outputs, activations)

    def _fold(self, ran: _Ran) -> None:
        for name, tensor in zip(self.tensors, ran.tensors, strict=True):
            self.stats[name].add(tensor if isinstance(tensor, BatchSample)
                                 else batch_sample(tensor, self.sample_values, ran.batch))
        self.frames += ran.frames
        self._batches += 1

    def collect(self, batches: Iterable[dict[str, npt.NDArray[Any]]]) -> dict[str, TensorStats]:
        """Run every batch, `RUNS_IN_FLIGHT` at a time (fewer when fewer threads were asked
        for) on worker threads (ONNX Runtime releases the GIL), and fold them on this thread
        in batch order, so the statistics do not depend on which run finished first. At most
        `fold_window` batches wait, the window sized on the first batch's."""
        batches = iter(batches)
        first = next(batches, None)
        if first is None:
            return self.stats
        ran = self._run((self._batches, first))  # on this thread: the layout check runs first
        self._fold(ran)
        window = fold_window(ran.nbytes)
        available = available_memory_bytes()
        in_flight = runs_within_memory(self._runs, ran.activation_bytes, available)
        if in_flight < self._runs:
            log.info("%d frames in flight would hold %.1f GB of observed activations (%.1f GB "
                     "a frame), more than %d%% of the %.1f GB of memory left after the first "
                     "frame: running %s at a time (slower, as with --threads 1)", self._runs,
                     self._runs * ran.activation_bytes / 1e9, ran.activation_bytes / 1e9,
                     round(100 * IN_FLIGHT_MEMORY_SHARE), (available or 0) / 1e9,
                     "one frame" if in_flight == 1 else f"{in_flight} frames")
        del first, ran
        with ThreadPoolExecutor(in_flight, thread_name_prefix="stats") as runs:
            numbered = enumerate(batches, start=self._batches)
            for ran in in_order(runs, self._run, numbered, window):
                self._fold(ran)
                del ran  # before the generator submits the next run
        return self.stats


def runs_within_memory(runs: int, activation_bytes: int, available: int | None) -> int:
    """How many of `runs` may be in flight when each holds `activation_bytes` and `available`
    bytes of memory are free (None: unknown, all of them): those that fit
    `IN_FLIGHT_MEMORY_SHARE` of it, and at least one."""
    if available is None:
        return runs
    fitting = int(available * IN_FLIGHT_MEMORY_SHARE) // max(1, activation_bytes)
    return max(1, min(runs, fitting))


def fold_window(batch_bytes: int) -> int:
    """How many batches of `batch_bytes` may wait to be folded: `FOLD_WINDOW`, less where they
    would pass `WAITING_BYTES`, and at least one."""
    return max(1, min(FOLD_WINDOW, WAITING_BYTES // max(1, batch_bytes)))

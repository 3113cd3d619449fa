"""Range algorithms: from a tensor's statistics to the symmetric clipping threshold amax.

Each algorithm is a small strategy selected by name (`range_method("entropy")`); all work on
the streaming |x| histogram of `calibration.stats.TensorStats`. Symmetric int8 then uses
scale = amax / 127.
"""

from __future__ import annotations

import functools
import json
import math
from collections.abc import Collection
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt

from calibration.stats import TensorStats
from edge.errors import InputError
from edge.files import write_bytes_atomic
from edge.system import usable_cores
from edge.tensorrt.calibration_cache import SMALLEST_AMAX

INT8_LEVELS = 128  # positive levels of symmetric int8: 0..127
FIRST_CANDIDATE_BIN = 128
TENSORRT_BINS = 2048  # the histogram TensorRT's entropy calibration searches


class RangeMethod(Protocol):
    @property
    def name(self) -> str: ...

    def amax(self, stats: TensorStats) -> float:
        """Clipping threshold (>= 0) for a symmetric range [-amax, amax]."""


@dataclass(frozen=True)
class MinMax:
    name: str = "minmax"

    def amax(self, stats: TensorStats) -> float:
        return stats.abs_max


@dataclass(frozen=True)
class Percentile:
    """The |x| below which `percentile` % of all values lie (upper edge of that bin)."""

    percentile: float = 99.99
    name: str = "percentile"

    def __post_init__(self) -> None:
        if not 0 < self.percentile <= 100:
            raise InputError(f"percentile must be in (0, 100], got {self.percentile}")

    def amax(self, stats: TensorStats) -> float:
        total = int(stats.histogram.sum())
        if total == 0 or stats.range == 0:
            return 0.0
        cumulative = np.cumsum(stats.histogram)
        index = int(np.searchsorted(cumulative, total * self.percentile / 100.0, side="left"))
        return min((index + 1) * stats.bin_width, stats.abs_max)


def _degenerate(stats: TensorStats) -> bool:
    """All values zero (or none): no threshold to search for."""
    return stats.range == 0 or not stats.histogram[1:].any()


def _histogram_over_max(stats: TensorStats) -> tuple[npt.NDArray[np.float64], float]:
    """The 2048-bin |x| histogram over exactly [0, max] that both searches use, and its bin
    width."""
    return stats.histogram_to_max(TENSORRT_BINS), stats.abs_max / TENSORRT_BINS


def kl_divergence_for(histogram: npt.NDArray[Any], kept_bins: int,
                      levels: int = INT8_LEVELS) -> float:
    """TensorRT's entropy criterion for clipping at `kept_bins`: the reference distribution is
    the first `kept_bins` bins with every outlier folded into the last one; the candidate is the
    same bins quantized to `levels` levels and expanded back over their non-empty bins."""
    kept = histogram[:kept_bins].astype(np.float64)
    reference = kept.copy()
    reference[-1] += float(histogram[kept_bins:].sum())
    chunk = (np.arange(kept_bins) * levels) // kept_bins
    nonzero = kept > 0
    sums = np.bincount(chunk, weights=kept, minlength=levels)
    occupied = np.bincount(chunk, weights=nonzero, minlength=levels)
    candidate = np.where(nonzero, sums[chunk] / np.maximum(occupied[chunk], 1), 0.0)
    p_total, q_total = reference.sum(), candidate.sum()
    if p_total == 0 or q_total == 0:
        return math.inf
    p = reference / p_total
    q = candidate / q_total
    mask = p > 0
    if np.any(q[mask] == 0):
        return math.inf
    return float(np.sum(p[mask] * np.log(p[mask] / q[mask])))


def kl_divergences(histogram: npt.NDArray[Any], candidates: npt.NDArray[np.int64],
                   levels: int = INT8_LEVELS) -> npt.NDArray[np.float64]:
    """`kl_divergence_for` for many candidates at once, in O(levels) per candidate.

    Inside a chunk every non-empty bin of the candidate has the same value S/n (chunk sum over
    non-empty bins), so sum(h log(h / q)) over a chunk is sum(h log h) - S log(S / n); prefix
    sums of h, h log h and (h > 0) give every chunk's terms directly. Only the last kept bin,
    which receives the folded outliers, is corrected separately. Candidates index bins of
    `histogram` (at most `len(histogram)`)."""
    h = histogram.astype(np.float64)
    total = h.sum()
    zero = np.zeros(1)
    present = h > 0
    sums = np.concatenate([zero, np.cumsum(h)])
    h_log_h = np.concatenate([zero, np.cumsum(h * np.log(np.where(present, h, 1.0)))])
    nonzero = np.concatenate([zero, np.cumsum(present, dtype=np.float64)])
    bounds = _chunk_bounds(levels, len(h))[candidates]  # [C, levels + 1]
    chunk_sum = np.diff(sums[bounds], axis=1)
    chunk_nonzero = np.diff(nonzero[bounds], axis=1)
    # S log(S / n) per chunk, 0 for an empty chunk (S = 0, so the clamps change nothing else)
    chunk_log = np.maximum(chunk_sum, np.finfo(np.float64).tiny)
    chunk_log /= np.maximum(chunk_nonzero, 1.0, out=chunk_nonzero)
    np.log(chunk_log, out=chunk_log)
    chunk_log *= chunk_sum
    chunk_term = chunk_log.sum(1)
    i = candidates.astype(np.int64)
    kept = sums[i]  # Q: mass inside the candidate range
    outliers = total - kept
    last = h[i - 1]
    last_chunk = bounds[:, -2]
    q_last = np.where(last > 0, (sums[i] - sums[last_chunk]) /
                      np.maximum(nonzero[i] - nonzero[last_chunk], 1), 0.0)
    with np.errstate(divide="ignore", invalid="ignore"):
        full = (h_log_h[i] - chunk_term) / total + kept / total * (np.log(kept) - np.log(total))
        # Replace the last bin's unfolded term by its folded one.
        unfolded = np.where(last > 0, last / total * (np.log(last) - np.log(total) -
                                                      np.log(q_last) + np.log(kept)), 0.0)
        folded_mass = last + outliers
        folded = np.where(folded_mass > 0, folded_mass / total * (
            np.log(folded_mass) - np.log(total) - np.log(q_last) + np.log(kept)), 0.0)
        divergence: npt.NDArray[np.float64] = full - unfolded + folded
    divergence[(last == 0) & (outliers > 0)] = np.inf
    divergence[kept == 0] = np.inf
    return divergence


@functools.cache
def _chunk_bounds(levels: int, bins: int) -> npt.NDArray[np.int64]:
    """[bins + 1, levels + 1]: row i holds the first bin of each of the `levels` chunks that
    the first i bins are quantized into (then i), as TensorRT splits them. Shared by every
    tensor's search (read-only)."""
    kept = np.arange(bins + 1)[:, None]
    bounds: npt.NDArray[np.int64] = (np.arange(levels + 1)[None, :] * kept + levels - 1) // levels
    bounds.flags.writeable = False
    return bounds


@dataclass(frozen=True)
class Entropy:
    """TensorRT's IInt8EntropyCalibrator2 method: the threshold whose 128-level quantization
    loses the least information (KL divergence), searched over every bin from 128 to 2048."""

    name: str = "entropy"

    def amax(self, stats: TensorStats) -> float:
        if _degenerate(stats):
            return stats.abs_max
        histogram, width = _histogram_over_max(stats)
        # The exact zeros a ReLU emits pile up in bin 0; left in, that spike dominates the KL
        # of every candidate wider than 128 bins (it gets averaged with its chunk neighbours)
        # and drags the threshold to the smallest candidate. Like NVIDIA's pytorch-quantization,
        # give bin 0 the height of bin 1 so the search sees the shape of the non-zero values.
        histogram[0] = histogram[1]
        last = int(np.flatnonzero(histogram > 1e-9)[-1]) + 1
        candidates = np.arange(min(FIRST_CANDIDATE_BIN, last), last + 1)
        best = int(candidates[int(np.argmin(kl_divergences(histogram, candidates)))])
        return min(best * width, stats.abs_max)


def quantization_errors(histogram: npt.NDArray[np.float64], width: float,
                        candidates: npt.NDArray[np.int64]) -> npt.NDArray[np.float64]:
    """Expected squared error of symmetric int8 quantization with the threshold at each
    candidate bin edge: rounding inside the range, clipping outside; bin centres stand in for
    their values. Returns [len(candidates)]."""
    errors = _matrix_vector(_error_table(candidates, len(histogram)), histogram)
    return errors * width**2


def _matrix_vector(matrix: npt.NDArray[np.float64],
                   vector: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    """`matrix @ vector` on this thread. Not `@`: numpy hands that to OpenBLAS, whose worker
    threads spin after every call; during calibration they took 0.2-0.3 CPU-seconds from the
    inference and judging threads (YOLOv8n on 2 cores: 0.1 s of wall time)."""
    product: npt.NDArray[np.float64] = np.einsum("ij,j->i", matrix, vector)
    return product


def _error_table(candidates: npt.NDArray[np.int64], bins: int) -> npt.NDArray[np.float64]:
    """[len(candidates), bins]: the squared error, in squared bin widths, of a value at each
    bin's centre when the threshold is at the candidate's bin edge. In bin-width units it does
    not depend on the tensor, so one table serves every histogram of `bins` bins."""
    centres = np.arange(bins) + 0.5
    thresholds = np.asarray(candidates, np.float64)[:, None]
    steps = thresholds / (INT8_LEVELS - 1)
    rounded = np.round(np.minimum(centres[None, :], thresholds) / steps) * steps
    # a clipped value rounds to the threshold itself and errs by centre - threshold
    table: npt.NDArray[np.float64] = (centres[None, :] - rounded) ** 2
    return table


@functools.cache
def _coarse_error_table(first: int, stride: int,
                        bins: int) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.float64]]:
    """Every `stride`-th candidate from `first` to `bins` and their `_error_table` (253 x 2048
    for the mse defaults: 4 MB, made once; each tensor's coarse search is then one
    matrix-vector product)."""
    candidates = np.arange(first, bins + 1, stride)
    table = _error_table(candidates, bins)
    table.flags.writeable = False
    return candidates, table


@dataclass(frozen=True)
class Mse:
    """The threshold minimising the expected squared error of symmetric int8 quantization
    (rounding inside the range plus clipping outside it), estimated from the histogram over
    [0, max] in 2048 bins; every `stride`-th candidate first, then every one near the best."""

    stride: int = 8
    name: str = "mse"

    def amax(self, stats: TensorStats) -> float:
        if _degenerate(stats):
            return stats.abs_max
        histogram, width = _histogram_over_max(stats)
        first = FIRST_CANDIDATE_BIN // 4
        coarse, table = _coarse_error_table(first, self.stride, TENSORRT_BINS)
        best = int(coarse[np.argmin(_matrix_vector(table, histogram))])
        fine = np.arange(max(first, best - self.stride), min(TENSORRT_BINS, best + self.stride) + 1)
        best = int(fine[np.argmin(quantization_errors(histogram, width, fine))])
        return min(best * width, stats.abs_max)


METHODS = ("minmax", "percentile", "entropy", "mse")


def range_method(name: str, percentile: float = 99.99) -> RangeMethod:
    """The range algorithm called `name` (one of METHODS)."""
    if name == "minmax":
        return MinMax()
    if name == "percentile":
        return Percentile(percentile)
    if name == "entropy":
        return Entropy()
    if name == "mse":
        return Mse()
    raise InputError(f"unknown range method {name!r}; choose one of {', '.join(METHODS)}")


@dataclass(frozen=True)
class TensorRange:
    """Observed min/max and the chosen symmetric threshold of one tensor."""

    minimum: float
    maximum: float
    amax: float

    @property
    def scale(self) -> float:
        """Symmetric int8 scale (amax / 127); never zero, so a dead tensor still quantizes."""
        return max(self.amax, SMALLEST_AMAX) / 127.0


@dataclass(frozen=True)
class TensorRanges:
    """Ranges of all calibrated tensors, with how they were made; saved as JSON."""

    method: str
    frames: int
    ranges: dict[str, TensorRange]

    @classmethod
    def from_stats(cls, stats: dict[str, TensorStats], method: RangeMethod,
                   frames: int, full_range: Collection[str] = ()) -> TensorRanges:
        """Ranges of every tensor, those named in `full_range` with their whole observed range
        (minmax) whatever the method; the searches run on all cores (numpy releases the GIL in
        them: 2x faster on 2 cores for the entropy method)."""
        kept = set(full_range)

        def amax(item: tuple[str, TensorStats]) -> float:
            name, tensor = item
            return tensor.abs_max if name in kept else method.amax(tensor)

        with ThreadPoolExecutor(usable_cores()) as pool:
            amaxes = list(pool.map(amax, stats.items()))
        return cls(method.name, frames, {
            name: TensorRange(s.minimum if s.count else 0.0, s.maximum if s.count else 0.0,
                              amax)
            for (name, s), amax in zip(stats.items(), amaxes, strict=True)})

    def with_ranges_of(self, other: TensorRanges, tensors: list[str]) -> TensorRanges:
        """These ranges with `other`'s for `tensors`, named `<this>+<other>@<count>`."""
        mixed = dict(self.ranges)
        mixed.update({name: other.ranges[name] for name in tensors})
        return TensorRanges(f"{self.method}+{other.method}@{len(tensors)}", self.frames, mixed)

    def to_json(self, percentile: float | None = None) -> str:
        """`percentile`: the percentile method's share kept, recorded where the ranges are
        (or mix in) that method's."""
        recorded = {"percentile": percentile} if percentile is not None and \
            "percentile" in self.method else {}
        return json.dumps({"version": 1, "method": self.method, **recorded,
                           "frames": self.frames,
                           "ranges": {n: vars(r) for n, r in self.ranges.items()}}, indent=1)

    def save(self, path: Path, percentile: float | None = None) -> None:
        write_bytes_atomic(path, self.to_json(percentile).encode())

    @staticmethod
    def looks_like_file(path: Path) -> bool:
        """Whether `path` begins as `save` writes (a JSON object naming its method), without
        reading the rest: a model renamed `.json` is not taken for one."""
        try:
            with path.open("rb") as handle:
                head = handle.read(256)
        except OSError:
            return False
        return head.lstrip().startswith(b"{") and b'"method"' in head

    @classmethod
    def load(cls, path: Path) -> TensorRanges:
        try:
            data = json.loads(path.read_text())
            ranges = {n: TensorRange(float(r["minimum"]), float(r["maximum"]), float(r["amax"]))
                      for n, r in data["ranges"].items()}
            return cls(str(data["method"]), int(data["frames"]), ranges)
        except (OSError, json.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
            raise InputError(f"{path} is not a ranges file written by `edge calibrate` "
                             f"({exc})") from exc

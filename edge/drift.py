"""Drift on the device: what a camera sees and what the model says, against the model's reference.

The reference profile holds the same histograms as the device keeps, taken by `edge eval` or
`edge calibrate` over validation or calibration frames, and the sha256 of the model it was made
with: the device refuses a profile from another model, whose scores mean something else.

Histograms have fixed bins, so a window and the reference compare bin by bin with PSI (or KL).
The window slides in `BUCKETS` steps: a shift shows within one window without keeping frames.
A detection histogram with fewer than `MIN_COUNT` entries on either side is not compared (the
per-frame ones always are: a window holds `min_frames` frames): a class seen twice says nothing
about its score distribution, and would raise false alarms. For the same reason every
statistic is reported but by default only the input statistics and all classes' scores
together raise alerts (`drift.alert_on`): one object seen for hundreds of frames is hundreds of
correlated samples, so a class's score histogram, the detections per frame and the box sizes
over a window that holds a few objects swing far more than PSI's rule of thumb (> 0.25:
shifted) assumes for independent samples; measured on the synthetic scene with 60 s windows,
they reached 0.3-0.9 with nothing changed, while brightness, contrast and all classes' scores
stayed below 0.1.
"""

from __future__ import annotations

import json
import logging
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import numpy.typing as npt

from edge.client.models import drift_statistics
from edge.clock import published
from edge.config import DriftConfig
from edge.detections import Detections
from edge.errors import InputError, ModelError
from edge.files import same_file, write_bytes_atomic
from edge.tensorrt.engine_cache import file_sha256
from edge.timing import rfc3339
from edge.wording import listed

log = logging.getLogger(__name__)

PROFILE_VERSION = 1
#: A model's own profile is `<model file name>` + SUFFIX, beside it.
SUFFIX = ".drift.json"
BUCKETS = 6
MIN_COUNT = 50
#: Windows shorter than this are warned about. On the synthetic scene, against a reference of
#: 300 frames over 150 s, 30 s and 60 s windows alerted with nothing changed (all classes'
#: scores PSI 0.29-0.46, contrast up to 1.7); 120 s windows stayed under 0.11.
SHORT_WINDOW_S = 120.0
#: References profiling fewer frames than this are warned about (a 5-frame one was taken
#: silently).
FEW_REFERENCE_FRAMES = 200
#: The input statistics are measured on every PIXEL_STEP-th row and column.
PIXEL_STEP = 8

BRIGHTNESS_BINS = 16  # mean grey level, 0..255
CONTRAST_BINS = 16  # grey-level standard deviation, 0..128 (more is clipped)
#: Mean chroma (the largest of B, G, R less the smallest), 0..SATURATION_RANGE (more is
#: clipped): 0 for a camera in night (IR) mode, which sends grey frames.
SATURATION_BINS = 16
SATURATION_RANGE = 256.0
#: The median pixel's red less blue, over COLOUR_CAST_RANGE around 0 (more is clipped): a
#: white-balance fault, an IR-cut filter stuck open (a pink cast), or red and blue swapped (a
#: pixel-format mix-up). The median is the scene's lasting cast, which objects passing through
#: do not move: on the synthetic scene over 120 s windows the frame mean's PSI reached 0.21-0.27
#: with nothing changed, the median's 0.04. An odd count of bins puts a neutral scene in the
#: middle of one, not on the edge between two.
COLOUR_CAST_BINS = 31
COLOUR_CAST_RANGE = 128.0
#: Share of the luma's gradient that runs vertically (from horizontal edges), 0..1: a scene's
#: horizon, floors and shelves make it; a camera knocked or mounted a quarter-turn round turns
#: them into vertical ones.
EDGE_ORIENTATION_BINS = 16
#: Input statistics, one count a frame each; the last three came after the first profiles,
#: whose files lack them (not judged there: `DriftStats.lacking`).
INPUT_STATISTICS = ("brightness", "contrast", "saturation", "colour_cast", "edge_orientation")
LATER_INPUT_STATISTICS = INPUT_STATISTICS[2:]
COUNT_BINS = 11  # detections per frame, 0..9 and 10+
SIZE_BINS = 10  # sqrt(box area / frame area), 0..1
#: The score histogram of every class together.
ALL_CLASSES = "all_classes"
SCORE_BINS = 10  # score, 0..1


@dataclass
class DriftStats:
    """Fixed-bin histograms of a run of frames (counts, int64)."""

    num_classes: int
    frames: int = 0
    brightness: npt.NDArray[np.int64] = field(init=False)
    contrast: npt.NDArray[np.int64] = field(init=False)
    saturation: npt.NDArray[np.int64] = field(init=False)
    colour_cast: npt.NDArray[np.int64] = field(init=False)
    edge_orientation: npt.NDArray[np.int64] = field(init=False)
    count: npt.NDArray[np.int64] = field(init=False)
    box_size: npt.NDArray[np.int64] = field(init=False)
    scores: npt.NDArray[np.int64] = field(init=False)  # [num_classes, SCORE_BINS]
    #: input statistics a profile's file did not hold (written before they were measured)
    lacking: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        self.brightness = np.zeros(BRIGHTNESS_BINS, np.int64)
        self.contrast = np.zeros(CONTRAST_BINS, np.int64)
        self.saturation = np.zeros(SATURATION_BINS, np.int64)
        self.colour_cast = np.zeros(COLOUR_CAST_BINS, np.int64)
        self.edge_orientation = np.zeros(EDGE_ORIENTATION_BINS, np.int64)
        self.count = np.zeros(COUNT_BINS, np.int64)
        self.box_size = np.zeros(SIZE_BINS, np.int64)
        self.scores = np.zeros((self.num_classes, SCORE_BINS), np.int64)

    def add_image(self, image: npt.NDArray[np.uint8]) -> None:
        """`image`: BGR uint8 [H, W, 3], measured on a nearest-neighbour thumbnail (~35 µs):
        brightness and contrast are the mean and standard deviation of its luma, saturation
        its mean chroma, colour cast its median pixel's red less blue, edge orientation the
        share of its luma's gradient that runs vertically."""
        height, width = image.shape[:2]
        size = (max(1, width // PIXEL_STEP), max(1, height // PIXEL_STEP))
        thumbnail = cv2.resize(image, size, interpolation=cv2.INTER_NEAREST)
        grey = cv2.cvtColor(thumbnail, cv2.COLOR_BGR2GRAY)
        mean, std = cv2.meanStdDev(grey)
        self.brightness[_bin(float(mean[0, 0]) / 256.0, BRIGHTNESS_BINS)] += 1
        self.contrast[_bin(float(std[0, 0]) / 128.0, CONTRAST_BINS)] += 1
        blue, green, red = cv2.split(thumbnail)  # OpenCV's, not NumPy's: 7 µs against 180
        chroma = cv2.subtract(cv2.max(cv2.max(blue, green), red),
                              cv2.min(cv2.min(blue, green), red))
        self.saturation[_bin(cv2.mean(chroma)[0] / SATURATION_RANGE, SATURATION_BINS)] += 1
        cast = float(np.median(cv2.subtract(red, blue, dtype=cv2.CV_16S)))
        self.colour_cast[_bin(cast / COLOUR_CAST_RANGE + 0.5, COLOUR_CAST_BINS)] += 1
        across = cv2.norm(grey[:, 1:], grey[:, :-1], cv2.NORM_L1)  # sum of |d/dx|
        down = cv2.norm(grey[1:], grey[:-1], cv2.NORM_L1)
        share = down / (across + down) if across + down else 0.5
        self.edge_orientation[_bin(share, EDGE_ORIENTATION_BINS)] += 1
        self.frames += 1

    def add_detections(self, detections: Detections, width: int, height: int) -> None:
        """Detections of one frame of `width` x `height` source pixels."""
        self.count[min(len(detections), COUNT_BINS - 1)] += 1
        if not len(detections):
            return
        boxes = detections.boxes.astype(np.float64)
        areas = np.clip(boxes[:, 2] - boxes[:, 0], 0, None) * np.clip(boxes[:, 3] - boxes[:, 1],
                                                                        0, None)
        sizes = np.sqrt(areas / max(width * height, 1))
        self.box_size += np.bincount(np.clip((sizes * SIZE_BINS).astype(np.int64), 0,
                                             SIZE_BINS - 1), minlength=SIZE_BINS)
        classes = detections.class_ids
        known = (classes >= 0) & (classes < self.num_classes)
        bins = np.clip((detections.scores * SCORE_BINS).astype(np.int64), 0, SCORE_BINS - 1)
        cells = classes[known] * SCORE_BINS + bins[known]
        self.scores += np.bincount(cells, minlength=self.scores.size).reshape(self.scores.shape)

    def merge(self, other: DriftStats) -> None:
        self.frames += other.frames
        for name in _HISTOGRAMS:
            getattr(self, name).__iadd__(getattr(other, name))

    def to_dict(self) -> dict[str, Any]:
        return {"num_classes": self.num_classes, "frames": self.frames,
                **{name: getattr(self, name).tolist() for name in _HISTOGRAMS
                   if name not in self.lacking}}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> DriftStats:
        stats = cls(int(data["num_classes"]), int(data["frames"]))
        stats.lacking = tuple(name for name in LATER_INPUT_STATISTICS if name not in data)
        for name in _HISTOGRAMS:
            if name in stats.lacking:
                continue
            values = np.asarray(data[name], np.int64)
            if values.shape != getattr(stats, name).shape:
                raise ValueError(f"{name} has shape {values.shape}, expected "
                                 f"{getattr(stats, name).shape}")
            if (values < 0).any():
                raise ValueError(f"{name} holds negative counts")
            setattr(stats, name, values)
        if stats.frames < 1:
            raise ValueError(f"it profiles {stats.frames} frames")
        for name in INPUT_STATISTICS:  # one count a frame each
            if name not in stats.lacking and int(getattr(stats, name).sum()) != stats.frames:
                raise ValueError(f"{name} counts {int(getattr(stats, name).sum())} frames, "
                                 f"not its {stats.frames}")
        return stats


_HISTOGRAMS = (*INPUT_STATISTICS, "count", "box_size", "scores")


def _bin(fraction: float, bins: int) -> int:
    return min(max(int(fraction * bins), 0), bins - 1)


def psi(reference: npt.NDArray[np.int64], window: npt.NDArray[np.int64]) -> float:
    """Population stability index of two histograms (counts), with half-count smoothing so an
    empty bin does not make it infinite. < 0.1 stable, 0.1-0.25 moderate, > 0.25 shifted."""
    p, q = _smoothed(reference), _smoothed(window)
    return float(((q - p) * np.log(q / p)).sum())


def kl(reference: npt.NDArray[np.int64], window: npt.NDArray[np.int64]) -> float:
    """KL divergence of the window from the reference (nats), with the same smoothing."""
    p, q = _smoothed(reference), _smoothed(window)
    return float((q * np.log(q / p)).sum())


def _smoothed(counts: npt.NDArray[np.int64]) -> npt.NDArray[np.float64]:
    values = counts.astype(np.float64) + 0.5
    result: npt.NDArray[np.float64] = values / values.sum()
    return result


@dataclass(frozen=True)
class DriftReference:
    """A model's reference profile (JSON, `<model>.drift.json` by default)."""

    model_sha256: str
    model_name: str
    labels: tuple[str, ...]
    stats: DriftStats
    source: str = ""

    def save(self, path: Path) -> None:
        data = {"v": PROFILE_VERSION, "model_sha256": self.model_sha256,
                "model_name": self.model_name, "labels": list(self.labels),
                "source": self.source, "stats": self.stats.to_dict()}
        write_bytes_atomic(path, json.dumps(data, indent=1).encode())

    @classmethod
    def load(cls, path: Path, model: Path | None = None) -> DriftReference:
        """The profile at `path`; ModelError saying why it is none, and how to write one (for
        `model` where it is known)."""
        if path.is_dir():
            raise ModelError(f"drift reference {path} is a folder; give the profile's JSON "
                             f"file (`<model>{SUFFIX}` by default)")
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            if not isinstance(data, dict):
                raise ValueError(f"a JSON {type(data).__name__}, not an object")
            if data.get("v") != PROFILE_VERSION:
                raise ValueError(f"version {data.get('v')!r}, this edge reads {PROFILE_VERSION}")
            missing = [key for key in ("model_sha256", "model_name", "labels", "stats")
                       if key not in data]
            if missing:
                raise ValueError(f"no {', '.join(repr(key) for key in missing)}")
            return cls(str(data["model_sha256"]), str(data["model_name"]),
                       tuple(data["labels"]), DriftStats.from_dict(data["stats"]),
                       str(data.get("source", "")))
        except OSError as exc:
            raise ModelError(f"cannot read drift reference {path}: {exc.strerror}") from exc
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            write = (writing_command(model, path) if model is not None else
                     f"`edge eval MODEL --data DATA --drift-reference {path}`")
            raise ModelError(f"{path} is not a drift reference profile ({exc}); write one with "
                             f"{write}") from exc


def default_reference_path(model: Path) -> Path:
    return model.with_name(model.name + SUFFIX)


def writing_command(model: Path, path: Path) -> str:
    """The `edge eval` command that writes `model`'s profile for a daemon that reads `path`:
    to `path` where `refuse_another_models_profile` lets it, else to the model's own profile
    path, which drift.reference must then name (or be left out for). A user check: the fix
    suggested for another model's profile was a command that refuses to replace it."""
    try:
        refuse_another_models_profile(path, model)
    except InputError:
        return (f"`edge eval {model} --data DATA --drift-reference` (it writes "
                f"{default_reference_path(model)}; set drift.reference to that path, or leave "
                "it out)")
    return f"`edge eval {model} --data DATA --drift-reference {path}`"


def refuse_another_models_profile(path: Path, model: Path) -> None:
    """Refuse writing `model`'s profile to `path` where that would lose another file: a model
    (`--drift-reference shapes.onnx` read as "the reference model"), any existing file that
    is no drift profile, or another model file's default profile (`<other>.drift.json`
    beside an existing `<other>`, which the daemon reads for that model). The model's own
    profile path may be written over, damaged or not."""
    if path == default_reference_path(model):
        return
    if path.suffix.lower() in (".onnx", ".engine") or (path.is_file()
                                                       and not _is_a_profile(path)):
        raise InputError(
            f"--drift-reference {path} names a model or a file that is no drift profile; it "
            f"takes the profile to write (JSON): leave PATH out to write "
            f"{default_reference_path(model)}, or name a new .json file")
    if not path.name.endswith(SUFFIX):
        return
    owner = path.with_name(path.name[:-len(SUFFIX)])
    if not owner.is_file() or same_file(owner, model):
        return
    raise InputError(
        f"--drift-reference {path} is {owner}'s own profile path (the daemon reads it for that "
        f"model); writing {model.name}'s profile there would replace it. Leave PATH out to "
        f"write {default_reference_path(model)}, or name another file")


def _is_a_profile(path: Path) -> bool:
    try:
        DriftReference.load(path)
    except ModelError:
        return False
    return True


def reference_for_model(path: Path, model: Path) -> DriftReference:
    """Load `path` and refuse it when it was made with another model (sha256 of the file)."""
    reference = DriftReference.load(path, model)
    digest = file_sha256(model)
    if reference.model_sha256 != digest:
        raise ModelError(
            f"drift reference {path} was made with model sha256 "
            f"{reference.model_sha256[:12]}… ({reference.model_name}), but {model} has sha256 "
            f"{digest[:12]}…; write a new one with {writing_command(model, path)}")
    return reference


def reference_from_config(settings: DriftConfig, model: Path,
                          labels: Sequence[str] | None = None) -> DriftReference | None:
    """The profile drift monitoring compares with; None when monitoring is off (or `auto` and
    the model has no profile). `on` without a profile is an error that says how to make one;
    so is a profile of other classes than `labels` (the model's, where known)."""
    if settings.enabled == "off":
        return None
    path = settings.reference or default_reference_path(model)
    if not path.is_file():
        if settings.enabled == "auto" and settings.reference is None:
            log.info("no drift reference %s; drift monitoring is off", path)
            return None
        raise ModelError(f"drift reference {path} does not exist; write it with "
                         f"{writing_command(model, path)} or set drift.enabled = \"off\"")
    reference = reference_for_model(path, model)
    if labels is not None and tuple(labels) != reference.labels:
        raise ModelError(
            f"drift reference {path} profiles the classes {listed(reference.labels)}, but "
            f"{model.name}'s are {listed(labels)}: its scores would be read as other "
            f"classes'; write a new one with {writing_command(model, path)}")
    if reference.stats.lacking:
        log.warning("drift reference %s was written before edge measured %s: those are not "
                    "judged (a camera turned grey at night, a colour fault or a camera turned "
                    "a quarter round goes unseen); write it again with %s", path,
                    ", ".join(name.replace("_", " ") for name in reference.stats.lacking),
                    writing_command(model, path))
    if reference.stats.frames < FEW_REFERENCE_FRAMES:
        log.warning("drift reference %s profiles %d frames: a profile of so few reads as "
                    "drift with nothing wrong (its own chance); write it from hundreds of "
                    "frames over minutes of the camera's usual scenes", path,
                    reference.stats.frames)
    if settings.window_s < SHORT_WINDOW_S:
        log.warning("drift.window_s = %g s: a window this short holds one stretch of the scene "
                    "(its light, the few objects then in view) and reads as drift against a "
                    "reference taken over minutes with nothing wrong; use %g s or more (the "
                    "default is 300)", settings.window_s, SHORT_WINDOW_S)
    log.info("drift: each camera's last %g s compared with %s (%d frames%s) by %s, alert "
             "above %g", settings.window_s, path, reference.stats.frames,
             f" of {reference.source}" if reference.source else "", settings.metric,
             settings.threshold)
    return reference


def _largest(values: dict[str, float | None]) -> str:
    """`scores.circle 0.08`: the largest of the judged statistics, `none judged` where none
    was."""
    judged = {name: value for name, value in values.items() if value is not None}
    if not judged:
        return "none judged"
    name = max(judged, key=lambda key: judged[key])
    return f"{name} {judged[name]:.3g}"


def compare(reference: DriftStats, window: DriftStats, labels: Sequence[str],
            metric: Callable[[npt.NDArray[np.int64], npt.NDArray[np.int64]], float]
            ) -> tuple[dict[str, float | None], dict[str, float | None]]:
    """(output statistics, input statistics) -> divergence, None where too few counts."""

    def score(ref: npt.NDArray[np.int64], win: npt.NDArray[np.int64],
              minimum: int = MIN_COUNT) -> float | None:
        if ref.sum() < minimum or win.sum() < minimum:
            return None
        return round(metric(ref, win), 4)

    outputs: dict[str, float | None] = {
        label: score(reference.scores[c], window.scores[c]) for c, label in enumerate(labels)}
    outputs[ALL_CLASSES] = score(reference.scores.sum(axis=0), window.scores.sum(axis=0))
    # Per-frame statistics: the window already holds `min_frames` frames.
    outputs["detections_per_frame"] = score(reference.count, window.count, 1)
    outputs["box_size"] = score(reference.box_size, window.box_size)
    inputs = {name: None if name in reference.lacking
              else score(getattr(reference, name), getattr(window, name), 1)
              for name in INPUT_STATISTICS}
    return outputs, inputs


class DriftMonitor:
    """One camera's sliding window, compared with the reference at every bucket boundary.

    `observe_image` runs on the camera loop (while the frame is valid), `observe_detections`
    after decoding; `publish(payload)` receives each evaluation (the daemon retains it on
    `<prefix>/<camera>/drift`). A state change is logged once."""

    def __init__(self, camera: str, settings: DriftConfig, reference: DriftReference,
                 publish: Callable[[dict[str, Any]], None]) -> None:
        self.camera = camera
        self.settings = settings
        self.reference = reference
        self._publish = publish
        self._labels = reference.labels
        self._metric = psi if settings.metric == "psi" else kl
        self._bucket_s = settings.window_s / BUCKETS
        self._buckets: deque[DriftStats] = deque(maxlen=BUCKETS)
        self._current = DriftStats(len(self._labels))
        self._bucket_end: float | None = None
        self._started: float | None = None
        self.state = "warming_up"
        self._said_too_few = False  # a whole window held fewer than min_frames: said once
        self._drifted: list[str] = []  # the statistics the last alert logged
        self.last: dict[str, Any] | None = None

    def observe_image(self, ts: float, image: npt.NDArray[np.uint8]) -> None:
        self._roll(ts)
        self._current.add_image(image)

    def observe_detections(self, ts: float, detections: Detections, width: int,
                           height: int) -> None:
        self._roll(ts)
        self._current.add_detections(detections, width, height)

    def _roll(self, ts: float) -> None:
        if self._bucket_end is None:
            self._bucket_end, self._started = ts + self._bucket_s, ts
            self._publish_state(ts, None)
            return
        if ts < self._bucket_end:
            return
        self._buckets.append(self._current)
        self._current = DriftStats(len(self._labels))
        # A gap longer than a bucket (camera stalled) leaves empty buckets behind.
        skipped = min(int((ts - self._bucket_end) // self._bucket_s), BUCKETS)
        for _ in range(skipped):
            self._buckets.append(DriftStats(len(self._labels)))
        self._bucket_end += (skipped + 1) * self._bucket_s
        self.evaluate(ts)

    def window(self) -> DriftStats:
        total = DriftStats(len(self._labels))
        for bucket in self._buckets:
            total.merge(bucket)
        return total

    def evaluate(self, now: float) -> dict[str, Any]:
        window = self.window()
        whole = len(self._buckets) == BUCKETS
        if whole and window.frames < self.settings.min_frames and not self._said_too_few:
            self._said_too_few = True
            log.warning("camera %s: drift is not judged: a whole %g s window held %d frames "
                        "(%.1f FPS), fewer than drift.min_frames = %d; lower min_frames or "
                        "lengthen window_s", self.camera, self.settings.window_s,
                        window.frames, window.frames / self.settings.window_s,
                        self.settings.min_frames)
        full = whole and window.frames >= self.settings.min_frames
        return self._publish_state(now, window if full else None)

    def _publish_state(self, now: float, window: DriftStats | None) -> dict[str, Any]:
        outputs: dict[str, float | None] = {}
        inputs: dict[str, float | None] = {}
        drifted: list[str] = []
        state = "warming_up"
        if window is not None:
            outputs, inputs = compare(self.reference.stats, window, self._labels, self._metric)
        judged = [f"{side}.{name}" for side, values in (("scores", outputs), ("input", inputs))
                  for name, value in values.items()
                  if value is not None and self._alerts_on(side, name)]
        if window is not None:
            statistics = drift_statistics(outputs, inputs)
            drifted = [name for name in judged
                       if (statistics[name] or 0.0) > self.settings.threshold]
            state = "alert" if drifted else "ok"
        ts = published(now)
        payload = {"v": 1, "camera": self.camera, "state": state,
                   "window_s": self.settings.window_s, "metric": self.settings.metric,
                   "threshold": self.settings.threshold,
                   "frames": window.frames if window is not None else self._frames_so_far(),
                   "scores": outputs, "input": inputs, "judged": judged, "drifted": drifted,
                   "ts": ts, "time": rfc3339(ts)}
        if state != self.state or (state == "alert" and drifted != self._drifted):
            self._log_change(state, drifted, outputs, inputs)
            self.state, self._drifted = state, drifted
        self.last = payload
        self._publish(payload)
        return payload

    def _alerts_on(self, side: str, name: str) -> bool:
        if side == "input":
            group = "input"
        elif name == ALL_CLASSES:
            group = "scores"
        elif name in ("detections_per_frame", "box_size"):
            group = "counts"
        else:
            group = "classes"
        return group in self.settings.alert_on

    def _frames_so_far(self) -> int:
        return self._current.frames + sum(b.frames for b in self._buckets)

    def _log_change(self, state: str, drifted: list[str], outputs: dict[str, float | None],
                    inputs: dict[str, float | None]) -> None:
        values = drift_statistics(outputs, inputs)
        if state == "alert":  # the statistics past the threshold, again when they change
            was = f" (was {', '.join(self._drifted)})" if self.state == "alert" else ""
            log.warning("camera %s: drift alert (%s above %g): %s%s", self.camera,
                        self.settings.metric, self.settings.threshold,
                        ", ".join(f"{name} {values[name]}" for name in drifted), was)
        elif self.state == "alert":
            log.info("camera %s: drift back to %s", self.camera, state)
        elif state == "ok":  # the first whole window judged
            # of the statistics it alerts on (a user check: a per-class score above the
            # threshold, not alerted on by default, read as "ok" beside it)
            watched = {name: value for name, value in values.items()
                       if self._alerts_on(*name.split(".", 1))}
            log.info("camera %s: drift ok over its first %g s window (the largest %s it "
                     "alerts on: %s)", self.camera, self.settings.window_s,
                     self.settings.metric, _largest(watched))


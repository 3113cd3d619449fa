"""Tracking scored against the synthetic scene's identities: MOT metrics and events.

The scene replays from its seed (`ShapeScene.next_truth`), so a subscriber scores what the
device published with nothing but the messages. Objects less than half visible (`difficult`)
are left out, with the tracks matched to them, as MOT benchmarks do with ignore regions: a
tracker is neither asked to follow them nor blamed for following them.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from edge.errors import MissingDependencyError
from edge.install_hint import DEMO_ALONE
from edge.postprocess import iou_matrix
from edge.synthetic.scene import GroundTruth, SceneConfig, ShapeScene

#: IoU below which a track and an object do not correspond (MOT convention: 0.5).
MATCH_IOU = 0.5

#: Frames an object must be visible in the scored frames to count as an appearance that
#: deserves events (a tracker needs two frames to confirm an object; one more for margin).
MIN_APPEARANCE_FRAMES = 3


def _motmetrics() -> Any:
    try:
        import motmetrics  # noqa: PLC0415 - optional, heavy
    except ImportError as exc:
        raise MissingDependencyError("motmetrics", "cpu,demo", "tracking metrics",
                                     DEMO_ALONE["motmetrics"]) from exc
    return motmetrics


@dataclass
class _Appearance:
    class_id: int
    frames: int = 0  # scored frames in which the object was visible


class TrackingScorer:
    """Feed `add(frame_id, boxes, class_ids, track_ids)` in increasing frame order (each array
    per detection; track id 0: untracked); then `summary()` and `check_events(...)`."""

    def __init__(self, seed: int, config: SceneConfig | None = None) -> None:
        self._scene = ShapeScene(seed=seed, config=config or SceneConfig())
        self._accumulator = _motmetrics().MOTAccumulator(auto_id=True)
        self.appearances: dict[int, _Appearance] = {}
        self._pairs: Counter[tuple[int, int]] = Counter()  # (track, object) -> frames matched
        self.frames = 0

    def add(self, frame_id: int, boxes: npt.NDArray[np.float32],
            class_ids: npt.NDArray[np.int64], track_ids: npt.NDArray[np.int64]) -> None:
        if frame_id <= self._scene.frame_index:
            return  # redelivered (at least once) or out of order
        truth = self._scene.next_truth()
        while self._scene.frame_index < frame_id:
            truth = self._scene.next_truth()
        tracked = track_ids > 0
        boxes, class_ids, track_ids = boxes[tracked], class_ids[tracked], track_ids[tracked]
        keep_hyp = ~_matches(boxes, class_ids, truth, truth.difficult)
        visible = ~truth.difficult
        distance = 1.0 - iou_matrix(truth.boxes[visible], boxes[keep_hyp]).astype(np.float64)
        same = truth.class_ids[visible][:, None] == class_ids[keep_hyp][None, :]
        distance[(distance > 1.0 - MATCH_IOU) | ~same] = np.nan
        self._accumulator.update(truth.object_ids[visible].tolist(),
                                 track_ids[keep_hyp].tolist(), distance)
        self._note_appearances(truth, visible, boxes, class_ids, track_ids)
        self.frames += 1

    def _note_appearances(self, truth: GroundTruth, visible: npt.NDArray[np.bool_],
                          boxes: npt.NDArray[np.float32], class_ids: npt.NDArray[np.int64],
                          track_ids: npt.NDArray[np.int64]) -> None:
        ious = iou_matrix(truth.boxes, boxes) if len(boxes) else np.zeros((len(truth), 0))
        for i, object_id in enumerate(truth.object_ids.tolist()):
            item = self.appearances.setdefault(object_id, _Appearance(int(truth.class_ids[i])))
            item.frames += int(visible[i])
            hits = (ious[i] >= MATCH_IOU) & (class_ids == truth.class_ids[i])
            self._pairs.update((int(t), object_id) for t in track_ids[hits])

    def summary(self) -> dict[str, float | int]:
        """{"idf1", "mota", "id_switches"} over every scored frame."""
        mm = _motmetrics()
        metrics = mm.metrics.create().compute(
            self._accumulator, metrics=["idf1", "mota", "num_switches"], name="scene")
        return {"idf1": round(float(metrics["idf1"].iloc[0]), 4),
                "mota": round(float(metrics["mota"].iloc[0]), 4),
                "id_switches": int(metrics["num_switches"].iloc[0])}

    def check_events(self, events: Sequence[dict[str, Any]]) -> dict[str, int]:
        """Compare `new`/`end` events with the scene's object appearances. Each track belongs
        to the object it overlapped on most frames; an appearance seen for
        MIN_APPEARANCE_FRAMES scored frames should own exactly one track with one `new` and
        one `end`. Returns counts: `matched == appearances` with no `unmatched_tracks` (tracks
        with events that follow no object) is a pass."""
        owner: dict[int, int] = {}
        for (track, object_id), _frames in sorted(self._pairs.items(), key=lambda kv: kv[1]):
            owner[track] = object_id  # ascending frames: the most frequent object wins
        news = [int(e["track_id"]) for e in events if e["type"] == "new"]
        ends = [int(e["track_id"]) for e in events if e["type"] == "end"]
        counted = [o for o, a in self.appearances.items() if a.frames >= MIN_APPEARANCE_FRAMES]
        matched = 0
        for object_id in counted:
            tracks = [t for t in set(news) if owner.get(t) == object_id]
            if len(tracks) == 1 and news.count(tracks[0]) == 1 and ends.count(tracks[0]) == 1:
                matched += 1
        return {"appearances": len(counted), "matched": matched, "new": len(news),
                "end": len(ends), "unmatched_tracks": len(set(news) - set(owner))}


def _matches(boxes: npt.NDArray[np.float32], class_ids: npt.NDArray[np.int64],
             truth: GroundTruth, pool: npt.NDArray[np.bool_]) -> npt.NDArray[np.bool_]:
    """Which boxes overlap (IoU >= MATCH_IOU, same class) an object in `pool`."""
    if not len(boxes) or not pool.any():
        return np.zeros(len(boxes), bool)
    ious = iou_matrix(boxes, truth.boxes[pool])
    same = class_ids[:, None] == truth.class_ids[pool][None, :]
    hit: npt.NDArray[np.bool_] = ((ious >= MATCH_IOU) & same).any(axis=1)
    return hit

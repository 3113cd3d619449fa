from __future__ import annotations

import json
import logging

import motmetrics as mm
import numpy as np
import pytest

from edge.config import config_from_dict
from edge.detections import Detections
from edge.errors import ConfigError
from edge.events import EventEngine
from edge.mqtt.topics import RETAINED_SNAPSHOTS, Topics
from edge.objects_config import TrackingConfig, ZoneConfig
from edge.postprocess import iou_matrix
from edge.synthetic import SHAPE_LABELS, ShapeScene
from edge.tracking import ByteTracker, TrackerSettings
from edge.tracking.camera import CameraTracking
from edge.tracking.kalman import KalmanBoxes, xyah_from_xyxy, xyxy_from_xyah
from edge.zones import Zone, zones_from_config


def _detections(boxes, scores, classes) -> Detections:
    return Detections(np.array(boxes, np.float32).reshape(-1, 4),
                      np.array(scores, np.float32), np.array(classes, np.int64))


def test_kalman_learns_a_constant_velocity():
    kalman = KalmanBoxes()
    box = np.array([[100.0, 100.0, 140.0, 160.0]])
    kalman.add(xyah_from_xyxy(box))
    for step in range(1, 20):
        kalman.predict()
        kalman.update(np.array([0]), xyah_from_xyxy(box + np.array([3.0 * step, 0, 3.0 * step, 0])))
    kalman.predict()
    np.testing.assert_allclose(kalman.boxes()[0], box[0] + [60, 0, 60, 0], atol=1.0)
    np.testing.assert_allclose(xyxy_from_xyah(xyah_from_xyxy(box)), box)


def test_two_crossing_objects_keep_their_ids():
    tracker = ByteTracker()
    seen: dict[int, set[int]] = {0: set(), 1: set()}
    for t in range(40):
        a = [10 + 5 * t, 100, 50 + 5 * t, 140]
        b = [210 - 5 * t, 100, 250 - 5 * t, 140]
        ids = tracker.update(_detections([a, b], [0.9, 0.8], [0, 0]))
        if t >= 2:  # confirmed on the third frame (min_hits)
            seen[0].add(int(ids[0]))
            seen[1].add(int(ids[1]))
    assert seen[0] == {1} and seen[1] == {2}


def test_low_score_detections_keep_a_track_alive_but_do_not_start_one():
    tracker = ByteTracker(TrackerSettings(high_score=0.5, low_score=0.1, min_hits=2))
    box = [100, 100, 150, 150]
    assert tracker.update(_detections([box], [0.9], [1])).tolist() == [0]  # tentative
    assert tracker.update(_detections([box], [0.9], [1])).tolist() == [1]
    assert tracker.update(_detections([box], [0.2], [1])).tolist() == [1]  # stage two
    fresh = ByteTracker()
    for _ in range(3):
        assert fresh.update(_detections([box], [0.3], [1])).tolist() == [0]


def test_a_track_ends_after_max_disappeared_frames_and_ids_are_not_reused():
    tracker = ByteTracker(TrackerSettings(max_disappeared=3, min_hits=2))
    box = [100, 100, 150, 150]
    tracker.update(_detections([box], [0.9], [0]))
    tracker.update(_detections([box], [0.9], [0]))
    for _ in range(3):
        tracker.update(Detections.empty())
        assert not tracker.ended and len(tracker.objects) == 1
    tracker.update(Detections.empty())
    assert [o.track_id for o in tracker.ended] == [1] and not tracker.objects
    tracker.update(_detections([box], [0.9], [0]))
    assert tracker.update(_detections([box], [0.9], [0])).tolist() == [2]


def test_a_box_seen_on_fewer_than_min_hits_frames_in_a_row_never_gets_an_id():
    tracker = ByteTracker(TrackerSettings(min_hits=3))
    box = [100, 100, 150, 150]
    for detections in ([box], [box], [], [box], [box], [], [box]):
        ids = tracker.update(_detections(detections, [0.9] * len(detections),
                                         [0] * len(detections)))
        assert ids.tolist() == [0] * len(detections)
    assert tracker.update(_detections([box], [0.9], [0])).tolist() == [0]
    assert tracker.update(_detections([box], [0.9], [0])).tolist() == [1]


def test_a_class_flip_keeps_the_track_and_the_label_follows_the_vote():
    tracker = ByteTracker(TrackerSettings(min_hits=2))
    box = [100, 100, 150, 150]
    for _ in range(3):
        tracker.update(_detections([box], [0.9], [0]))
    assert tracker.update(_detections([box], [0.8], [1])).tolist() == [1]
    assert tracker.objects[0].class_id == 0  # 2.7 for class 0 against 0.8 for class 1
    for _ in range(3):
        tracker.update(_detections([box], [0.9], [1]))
    assert tracker.objects[0].class_id == 1 and tracker.objects[0].track_id == 1


def test_the_same_object_detected_under_two_labels_starts_no_second_track():
    tracker = ByteTracker(TrackerSettings(min_hits=2))
    box, copy = [100, 100, 150, 150], [102, 99, 151, 152]
    for _ in range(4):
        ids = tracker.update(_detections([box, copy], [0.9, 0.8], [0, 1]))
    assert ids.tolist() == [1, 0] and len(tracker.objects) == 1


def test_class_aware_tracks_a_classifier_s_classes_apart():
    """A classifier's boxes are all the frame: a class change is another object, and two
    classes above the threshold on one frame are two (class-agnostic, the second was dropped
    as a duplicate and the first track took every class in turn)."""
    tracker = ByteTracker(TrackerSettings(min_hits=2, max_disappeared=2, class_aware=True))
    frame = [0, 0, 640, 480]
    for _ in range(3):
        ids = tracker.update(_detections([frame, frame], [0.9, 0.7], [0, 2]))
    assert ids.tolist() == [1, 2]
    assert [(o.track_id, o.class_id) for o in tracker.objects] == [(1, 0), (2, 2)]
    ended = []
    for _ in range(4):
        ids = tracker.update(_detections([frame], [0.9], [1]))
        ended += [(o.track_id, o.class_id) for o in tracker.ended]
    assert ids.tolist() == [3] and ended == [(1, 0), (2, 2)]
    assert [(o.track_id, o.class_id) for o in tracker.objects] == [(3, 1)]


def _score_scene(frames: int, miss_rate: float) -> dict[str, float]:
    scene, tracker = ShapeScene(seed=1), ByteTracker()
    accumulator = mm.MOTAccumulator(auto_id=True)
    rng = np.random.default_rng(0)
    for _ in range(frames):
        truth = scene.next_truth()
        keep = rng.random(len(truth)) >= miss_rate
        boxes = truth.boxes[keep] + rng.normal(0, 1.5, (int(keep.sum()), 4))
        detections = _detections(boxes, rng.uniform(0.3, 0.95, int(keep.sum())),
                                 truth.class_ids[keep])
        ids = tracker.update(detections)
        tracked = ids > 0
        distance = 1 - iou_matrix(truth.boxes, detections.boxes[tracked])
        distance[distance > 0.5] = np.nan
        accumulator.update(truth.object_ids.tolist(), ids[tracked].tolist(), distance)
    summary = mm.metrics.create().compute(accumulator, metrics=["idf1", "mota", "num_switches"])
    return {key: float(summary[key].iloc[0]) for key in ("idf1", "mota", "num_switches")}


def test_scene_identities_are_tracked_against_motmetrics():
    """Noisy ground truth with 5 % misses and low/high scores: the tracker alone."""
    scores = _score_scene(300, 0.05)
    assert scores["idf1"] >= 0.9 and scores["mota"] >= 0.85 and scores["num_switches"] <= 2


def test_scene_identities_persist_while_objects_live():
    scene = ShapeScene(seed=4)
    lives: dict[int, list[int]] = {}
    for frame in range(300):
        for object_id in scene.next_truth().object_ids.tolist():
            lives.setdefault(object_id, []).append(frame)
    for frames in lives.values():  # each identity is one unbroken run of frames
        assert frames == list(range(frames[0], frames[-1] + 1))
    assert len(lives) > 3


def test_zone_contains_points_even_odd():
    zone = Zone("door", np.array([[0, 0], [100, 0], [100, 100], [50, 50], [0, 100]], float))
    points = np.array([[10, 10], [50, 80], [90, 90], [150, 10], [50, 40]], float)
    assert zone.contains(points).tolist() == [True, False, True, False, True]


class _Recorder:
    """Records (topic, payload, qos, retain, delivery) as the link would be asked."""

    def __init__(self) -> None:
        self.messages: list[tuple[str, bytes, int, bool, str]] = []

    def publish_event(self, topic, payload, qos, retain):
        self.messages.append((topic, payload, qos, retain, "outbox"))

    def publish_state(self, topic, payload, qos):
        self.messages.append((topic, payload, qos, True, "state"))

    def publish_best_effort(self, topic, payload, qos=0, retain=False, yields=False):
        self.messages.append((topic, payload, qos, retain, "best-effort"))
        return True


def _events(messages):
    return [json.loads(m[1]) for m in messages if m[0].endswith("/events")]


def test_events_counts_and_snapshots_of_one_object_walking_through_a_zone():
    settings = TrackingConfig(max_disappeared=2, update_interval_s=0.5)
    zone = Zone("left", np.array([[0, 0], [100, 0], [100, 200], [0, 200]], float))
    recorder = _Recorder()
    camera = CameraTracking("gate", settings, Topics("edge/d"), SHAPE_LABELS, [zone], [],
                            recorder)
    image = np.zeros((200, 300, 3), np.uint8)
    for t in range(30):
        x = 10 + 8 * t
        camera.hold(t + 1, image, 1000.0 + t * 0.1)
        box = [x, 50, x + 30, 80] if t < 25 else None
        detections = _detections([box], [0.7 + t / 100], [2]) if box else Detections.empty()
        camera.update(t + 1, 1000.0 + t * 0.1, detections, (300, 200))
    events = _events(recorder.messages)
    assert events[0]["type"] == "new" and events[-1]["type"] == "end"
    assert [e["type"] for e in events].count("new") == 1
    assert all(e["type"] == "update" for e in events[1:-1]) and len(events) >= 3
    end = events[-1]
    assert end["label"] == "triangle" and end["entered_zones"] == ["left"] and end["zones"] == []
    assert end["top_score"] == pytest.approx(0.94, abs=1e-3)
    assert end["end"] == pytest.approx(1000.0 + 24 * 0.1, abs=1e-3)
    assert end["snapshot"]["topic"] == f"edge/d/gate/events/{end['id']}/snapshot"
    snapshots = [m for m in recorder.messages if m[0].endswith("/snapshot")]
    assert snapshots and all(m[1][:2] == b"\xff\xd8" and m[3] and m[4] == "best-effort"
                             for m in snapshots)
    # a user check: Home Assistant could show no event snapshot (a topic an event): each one
    # goes to its label's fixed topic too, the same JPEG
    own = [m[1] for m in snapshots if m[0] == end["snapshot"]["topic"]]
    labelled = [m[1] for m in snapshots if m[0] == "edge/d/gate/triangle/snapshot"]
    assert own and labelled == own
    counts = {m[0]: int(m[1]) for m in recorder.messages if m[0].endswith("/count")}
    assert counts["edge/d/gate/triangle/count"] == 0
    assert counts["edge/d/gate/left/triangle/count"] == 0
    left = [int(m[1]) for m in recorder.messages if m[0] == "edge/d/gate/left/triangle/count"]
    assert left == [0, 1, 0]  # published on change only
    assert all(m[2:] == (1, True, "state") for m in recorder.messages if m[0].endswith("count"))
    assert events[0]["start"] == pytest.approx(1000.0)  # first seen, not when reported
    assert events[0]["ts"] == pytest.approx(1000.4)  # reported with its fifth detection


def test_no_update_event_follows_the_last_frame_that_saw_the_object():
    """A user check: 14 of 230 updates came after their object's last sighting, with the box
    and score of then, while the track waited out max_disappeared (its age on `edge monitor
    --events` then went back at the `end`): a change seen inside the rate limit's interval
    was sent once the interval was over, whether or not the object was still there. Here its
    score rises on every frame, and it is lost between two updates."""
    settings = TrackingConfig(max_disappeared=20, update_interval_s=0.5)
    recorder = _Recorder()
    camera = CameraTracking("gate", settings, Topics("edge/d"), SHAPE_LABELS, [], [],
                            recorder)
    image = np.zeros((200, 300, 3), np.uint8)
    last_seen = 0.0
    for t in range(60):
        ts = 1000.0 + t * 0.1
        camera.hold(t + 1, image, ts)
        box = [10 + 4 * t, 50, 40 + 4 * t, 80] if t < 27 else None
        if box:
            last_seen = ts
        detections = _detections([box], [0.8 + t / 200], [2]) if box else Detections.empty()
        camera.update(t + 1, ts, detections, (300, 200))
    events = _events(recorder.messages)
    assert [e["type"] for e in events].count("end") == 1
    updates = [e for e in events if e["type"] == "update"]
    assert len(updates) >= 2 and all(e["ts"] <= last_seen + 1e-6 for e in updates), \
        [e["ts"] for e in updates]
    assert events[-1]["end"] == pytest.approx(last_seen)


def test_a_label_the_votes_change_is_sent_in_an_update_as_the_counts_follow_it():
    """A user check: the counts moved to the object's new label at once, and no event said
    so until its zones or top score changed (per-label counts could not be told from the
    events; a label that changed back before then was in no event at all)."""
    settings = TrackingConfig(update_interval_s=0.5)
    recorder = _Recorder()
    camera = CameraTracking("gate", settings, Topics("edge/d"), SHAPE_LABELS, [], [],
                            recorder)
    image = np.zeros((200, 300, 3), np.uint8)
    for t in range(40):  # one still object, the same score: a triangle, then more a square
        ts = 1000.0 + t * 0.1
        camera.hold(t + 1, image, ts)
        camera.update(t + 1, ts, _detections([[100, 50, 140, 90]], [0.8], [2 if t < 10 else 1]),
                      (300, 200))
    events = _events(recorder.messages)
    assert [(e["type"], e["label"]) for e in events] == [("new", "triangle"),
                                                         ("update", "square")]
    square_count = [m for m in recorder.messages if m[0] == "edge/d/gate/square/count"]
    # the votes turn on the 11th square (8.8 against the triangles' 8.0), at t = 20: the
    # update is sent on that frame, the last event being 1.5 s old
    assert events[1]["ts"] == pytest.approx(1002.0)
    assert [json.loads(m[1]) for m in square_count] == [0, 1]


def test_a_zone_never_reads_more_than_its_camera_in_the_order_counts_are_sent():
    """A user check: when an object inside a zone vanished, the camera's count fell a
    millisecond before the zone's, so for that moment the zone held more than the camera."""
    settings = TrackingConfig(max_disappeared=2)
    zone = Zone("left", np.array([[0, 0], [150, 0], [150, 200], [0, 200]], float))
    recorder = _Recorder()
    camera = CameraTracking("gate", settings, Topics("edge/d"), SHAPE_LABELS, [zone], [],
                            recorder)
    image = np.zeros((200, 300, 3), np.uint8)
    for t in range(20):  # two objects inside the zone; both vanish at frame 10
        camera.hold(t + 1, image, 1000.0 + t * 0.1)
        boxes = [[20, 50, 50, 80], [60, 100, 90, 130]] if t < 10 else []
        detections = (_detections(boxes, [0.8, 0.8], [2, 2]) if boxes
                      else Detections.empty())
        camera.update(t + 1, 1000.0 + t * 0.1, detections, (300, 200))
    seen = {"edge/d/gate/triangle/count": 0, "edge/d/gate/left/triangle/count": 0}
    applied = []
    for topic, payload, *_ in recorder.messages:
        if topic in seen:
            seen[topic] = int(payload)
            applied.append((seen["edge/d/gate/triangle/count"],
                            seen["edge/d/gate/left/triangle/count"]))
    assert (2, 2) in applied and applied[-1] == (0, 0), applied
    assert all(zone_count <= camera_count for camera_count, zone_count in applied), applied


def test_when_the_frames_change_size_objects_end_and_normalised_zones_are_placed_again(
        caplog):
    """A user check: a snapshot camera whose frames went from 640x480 to 320x240 counted 0 in
    its right-half zone (units = "normalised") from then on, the zone placed once on the first
    frame, and its old tracks went on beside the new ones (6 stars for 3)."""
    config = ZoneConfig(name="right", points=[[0.5, 0], [1, 0], [1, 1], [0.5, 1]],
                        units="normalised")
    recorder = _Recorder()
    camera = CameraTracking("gate", TrackingConfig(), Topics("edge/d"), SHAPE_LABELS,
                            zones_from_config("gate", [config], SHAPE_LABELS, None), [config],
                            recorder)
    caplog.set_level(logging.WARNING, logger="edge.tracking.camera")
    star = 3
    for frame in range(20):
        big = frame < 10
        box = [400, 200, 480, 280] if big else [200, 100, 240, 140]  # the same place
        camera.update(frame, 1000.0 + frame * 0.5, _detections([box], [0.9], [star]),
                      (640, 480) if big else (320, 240))
        if frame == 12:  # and once more, back and forth (a folder of photos): said once
            camera.update(100, 1006.1, Detections.empty(), (640, 480))
            camera.update(101, 1006.2, Detections.empty(), (320, 240))
    np.testing.assert_allclose(camera.events.zones[0].polygon[1], [320, 0])
    counts = [(topic, int(payload)) for topic, payload, *_ in recorder.messages
              if topic.endswith("/star/count")]
    final = dict(counts)  # each topic's last count
    assert final == {"edge/d/gate/star/count": 1, "edge/d/gate/right/star/count": 1}, counts
    events = [json.loads(payload) for topic, payload, *_ in recorder.messages
              if topic == "edge/d/gate/events"]
    ended = [e["track_id"] for e in events if e["type"] == "end"]
    started = [e["track_id"] for e in events if e["type"] == "new"]
    # the first ended at the first change; the second, begun at frame 10, was not yet an
    # object at the next (no event), and the third goes on
    assert len(started) == 2 and ended == started[:1], events
    said = [r.getMessage() for r in caplog.records]
    assert said == ["camera gate: its frames changed size, 640x480 to 320x240: the objects "
                    "tracked so far ended, and its zones placed on the new frame"], said


def test_a_pixel_zone_that_does_not_fit_the_new_frame_leaves_the_others_placed(caplog):
    """A user check: a pixel zone outside the new, smaller frame kept a normalised zone of the
    same camera at the old frame's pixels too (it covered the whole new frame), and its error
    came again at every change of a folder of photos of two sizes (31 in 40 s)."""
    left = ZoneConfig(name="left", points=[[0, 0], [0.5, 0], [0.5, 1], [0, 1]],
                      units="normalised")
    right = ZoneConfig(name="right", points=[[320, 0], [639, 0], [639, 479], [320, 479]])
    configs = [left, right]
    camera = CameraTracking("gate", TrackingConfig(), Topics("edge/d"), SHAPE_LABELS,
                            zones_from_config("gate", configs, SHAPE_LABELS, (640, 480)), [],
                            _Recorder(), zone_configs=configs, placed_for=(640, 480))
    caplog.set_level(logging.ERROR, logger="edge.tracking.camera")
    for frame, size in enumerate([(640, 480), (320, 240), (640, 480), (320, 240)]):
        camera.update(frame, 1000.0 + frame, Detections.empty(), size)
    placed = {zone.name: zone.polygon for zone in camera.events.zones}
    np.testing.assert_allclose(placed["left"][1], [160, 0])  # half the new frame
    np.testing.assert_allclose(placed["right"][0], [320, 0])  # as given
    assert [r.getMessage() for r in caplog.records] == [
        "camera 'gate', zone 'right': the polygon reaches outside the 320x240 frame; use pixel "
        "coordinates within it, or units = \"normalised\" with coordinates from 0 to 1; "
        "counting in it as given"]


def test_a_first_frame_of_another_size_than_promised_places_the_zones_on_it(caplog):
    """A V4L2 camera asked for 1280x720 may deliver 640x480: the zones placed for the size
    asked for are placed again on the first frame, said once, with nothing to end."""
    config = ZoneConfig(name="right", points=[[0.5, 0], [1, 0], [1, 1], [0.5, 1]],
                        units="normalised")
    recorder = _Recorder()
    camera = CameraTracking("gate", TrackingConfig(), Topics("edge/d"), SHAPE_LABELS,
                            zones_from_config("gate", [config], SHAPE_LABELS, (1280, 720)), [],
                            recorder, zone_configs=[config], placed_for=(1280, 720))
    with caplog.at_level(logging.WARNING, logger="edge.tracking.camera"):
        for frame in range(3):
            camera.update(frame, 1000.0 + frame, Detections.empty(), (640, 480))
    np.testing.assert_allclose(camera.events.zones[0].polygon[1], [640, 0])
    assert [r.getMessage() for r in caplog.records] == [
        "camera gate: its frames are 640x480, not the 1280x720 its source asked for; its "
        "zones placed on them"]
    assert not any(topic == "edge/d/gate/events" for topic, *_ in recorder.messages)


@pytest.mark.parametrize("first_frame", range(5))
def test_a_new_event_at_25_fps_carries_a_snapshot_whatever_frame_made_it_an_object(first_frame):
    """A user check: most `new` events had `snapshot: null`, since one frame in
    `snapshot_interval_s` (0.2 s, every fifth frame at 25 fps) is held and the fifth detection
    that makes a track an object mostly falls on another one."""
    recorder = _Recorder()
    camera = CameraTracking("gate", TrackingConfig(max_disappeared=5), Topics("edge/d"), ["a"],
                            [], [], recorder)
    image = np.full((200, 300, 3), 90, np.uint8)
    frames = range(first_frame + 40)
    for frame in frames:
        ts = 1000.0 + frame * 0.04  # 25 fps
        camera.hold(frame, image, ts)
        seen = first_frame <= frame < first_frame + 30
        detections = _detections([[40, 40, 90, 120]], [0.8], [0]) if seen else \
            Detections.empty()
        camera.update(frame, ts, detections, (300, 200))
    events = _events(recorder.messages)
    assert [e["type"] for e in events] == ["new", "end"]
    new = events[0]
    assert new["snapshot"] is not None
    assert new["snapshot"]["topic"] == f"edge/d/gate/events/{new['id']}/snapshot"
    fifth_detection = 1000.0 + (first_frame + 4) * 0.04
    assert fifth_detection <= new["ts"] <= fifth_detection + 0.2 + 1e-6
    assert new["start"] == pytest.approx(1000.0 + first_frame * 0.04)
    snapshot = next(m for m in recorder.messages if m[0] == new["snapshot"]["topic"])
    assert snapshot[1][:2] == b"\xff\xd8"
    assert events[1]["snapshot"] == new["snapshot"]  # no better view came
    # the count follows the event: it went out up to 0.4 s before it, naming an object
    # nobody had heard of yet
    order = [m[0].rsplit("/", 1)[1] + ("" if m[0].endswith("events") else f"={int(m[1])}")
             for m in recorder.messages if m[0].endswith(("/events", "/a/count"))]
    assert order == ["count=0", "events", "count=1", "events", "count=0"], order


def test_an_object_gone_before_a_held_frame_still_gets_its_new_and_end_events():
    settings = TrackingConfig(max_disappeared=1, snapshot_interval_s=10)
    recorder = _Recorder()
    camera = CameraTracking("gate", settings, Topics("edge/d"), ["a"], [], [], recorder)
    image = np.zeros((100, 100, 3), np.uint8)
    camera.hold(0, image, 0.0)  # held; the next one is 10 s away
    camera.update(0, 0.0, Detections.empty(), (100, 100))
    for frame in range(1, 12):
        ts = frame * 0.04
        camera.hold(frame, image, ts)
        detections = _detections([[10, 10, 40, 40]], [0.9], [0]) if frame <= 8 else \
            Detections.empty()
        camera.update(frame, ts, detections, (100, 100))
    events = _events(recorder.messages)
    assert [e["type"] for e in events] == ["new", "end"]
    assert events[0]["snapshot"] is None and events[1]["snapshot"] is None
    assert events[1]["end"] == pytest.approx(8 * 0.04)


@pytest.mark.parametrize("lost", [set(), {3, 20, 41}], ids=["all sent", "3 lost"])
def test_old_snapshots_are_cleared_so_the_broker_store_stays_bounded(lost):
    """`RETAINED_SNAPSHOTS` of those the broker got stay: a snapshot lost while the broker was
    away takes no place (a user check: 44 a camera stayed after broker restarts)."""
    engine = EventEngine("c", Topics("p"), ["a"], [], TrackingConfig(max_disappeared=1))
    tracker = ByteTracker(TrackerSettings(max_disappeared=1, min_hits=2))
    image = np.zeros((100, 100, 3), np.uint8)
    messages, retained = [], []
    for n in range(RETAINED_SNAPSHOTS + 5):
        for frame in range(8):
            detections = _detections([[10, 10, 40, 40]], [0.9], [0]) if frame < 6 else \
                Detections.empty()
            tracker.update(detections)
            for message in engine.update(n * 8 + frame, float(n * 8 + frame), tracker.objects,
                                         tracker.ended, image):
                messages.append(message)
                if message.delivery == "best-effort" and n not in lost:  # handed over
                    retained += [message.topic] if "/events/" in message.topic else []
                    messages += engine.retained(message.topic)
    cleared = [m.topic for m in messages if m.topic.endswith("/snapshot") and m.payload == b""]
    assert "p/c/a/snapshot" not in cleared  # the label's stays
    assert len(cleared) == 5 - len(lost) and cleared == retained[:len(cleared)]
    assert len(set(retained) - set(cleared)) == RETAINED_SNAPSHOTS


def test_a_track_whose_median_score_stays_low_is_tracked_but_never_reported():
    settings = TrackingConfig(event_score=0.7)
    recorder = _Recorder()
    camera = CameraTracking("c", settings, Topics("p"), ["a"], [], [], recorder)
    image = np.zeros((100, 100, 3), np.uint8)
    for frame, score in enumerate([0.65, 0.62, 0.66, 0.61, 0.64, 0.75, 0.76]):
        camera.hold(frame, image, float(frame))
        ids = camera.update(frame, float(frame), _detections([[10, 10, 40, 40]], [score], [0]),
                            (100, 100))
    assert ids.tolist() == [1]  # tracked (and in the detections payload) ...
    assert _events(recorder.messages) == []  # ... but not an object worth an event
    counts = [int(m[1]) for m in recorder.messages if m[0] == "p/c/a/count"]
    assert counts == [0]


def test_a_labels_own_event_score_replaces_the_cameras_for_its_tracks_only():
    """Frigate's per-label threshold: circles (label 0) need a median of 0.6, squares the
    camera's 0.7; both tracks score about 0.64."""
    recorder = _Recorder()
    camera = CameraTracking("c", TrackingConfig(event_score=0.7), Topics("p"),
                            ["circle", "square"], [], [], recorder, event_scores={0: 0.6})
    image = np.zeros((100, 100, 3), np.uint8)
    for frame, score in enumerate([0.65, 0.62, 0.66, 0.61, 0.64, 0.75, 0.76]):
        camera.hold(frame, image, float(frame))
        camera.update(frame, float(frame), _detections([[10, 10, 40, 40], [60, 60, 90, 90]],
                                                       [score, score], [0, 1]), (100, 100))
    events = _events(recorder.messages)
    assert [(e["type"], e["label"]) for e in events] == [("new", "circle")]
    counts = {m[0]: int(m[1]) for m in recorder.messages if m[0].endswith("/count")}
    assert counts == {"p/c/circle/count": 1, "p/c/square/count": 0}


@pytest.mark.parametrize("settings, message", [
    ({"low_score": 0.6, "high_score": 0.5}, "low_score must be below high_score"),
    ({"new_track_score": 0.4}, "new_track_score must be at least high_score"),
    ({"max_disappeared": 0}, "max_disappeared: must be at least 1; got 0"),
])
def test_inconsistent_tracking_settings_are_config_errors(settings, message):
    with pytest.raises(ConfigError, match=message):
        config_from_dict({"model": {"path": "m.onnx"}, "tracking": settings,
                          "cameras": [{"name": "c", "source": "synthetic://shapes"}]}, "t")


def _textbook_step(mean, covariance, measurement, std_p=1 / 20, std_v=1 / 160):
    """One predict + update of the full 8x8 filter (Kalman's equations as written), a
    reference for the block-diagonal implementation."""
    motion = np.eye(8)
    motion[:4, 4:] = np.eye(4)
    observe = np.eye(4, 8)
    h = mean[3]
    q = np.diag(np.square([std_p * h, std_p * h, 1e-2, std_p * h,
                           std_v * h, std_v * h, 1e-5, std_v * h]))
    mean, covariance = motion @ mean, motion @ covariance @ motion.T + q
    h = mean[3]
    r = np.diag(np.square([std_p * h, std_p * h, 1e-1, std_p * h]))
    innovation_cov = observe @ covariance @ observe.T + r
    gain = covariance @ observe.T @ np.linalg.inv(innovation_cov)
    mean = mean + gain @ (measurement - observe @ mean)
    return mean, (np.eye(8) - gain @ observe) @ covariance


def test_block_kalman_equals_the_textbook_filter():
    rng = np.random.default_rng(0)
    start = np.array([[200.0, 150.0, 0.8, 60.0]])
    kalman = KalmanBoxes()
    kalman.add(start)
    h = start[0, 3]
    mean = np.concatenate([start[0], np.zeros(4)])
    covariance = np.diag(np.square([h / 10, h / 10, 1e-2, h / 10, h / 16, h / 16, 1e-5, h / 16]))
    for _ in range(30):
        measurement = mean[:4] + rng.normal(0, 2, 4)
        kalman.predict()
        kalman.update(np.array([0]), measurement[None, :])
        mean, covariance = _textbook_step(mean, covariance, measurement)
    np.testing.assert_allclose(kalman.mean[0], mean, rtol=1e-9)
    np.testing.assert_allclose(kalman.var[0], np.diag(covariance)[:4], rtol=1e-9)
    np.testing.assert_allclose(kalman.cov[0], np.diag(covariance[:4, 4:]), rtol=1e-9)


def _event_ids_of_one_object_on_each(cameras: dict[str, CameraTracking],
                                     recorders: dict[str, _Recorder]) -> dict[str, set[str]]:
    """The same object at the same times on each camera; each camera's event ids."""
    image = np.zeros((200, 300, 3), np.uint8)
    for t in range(12):
        detections = _detections([[10 + 4 * t, 50, 40 + 4 * t, 80]], [0.9], [2])
        for camera in cameras.values():
            camera.hold(t + 1, image, 1000.0 + t * 0.1)
            camera.update(t + 1, 1000.0 + t * 0.1, detections, (300, 200))
    for camera in cameras.values():
        camera.close(1001.5)
    return {name: {e["id"] for e in _events(r.messages)} for name, r in recorders.items()}


def test_cameras_sharing_the_devices_track_ids_never_share_an_event_id():
    """A user check: two cameras whose first objects started in the same millisecond both
    published events with the id 1796653982199-1, and a consumer following events by id
    (README: unique per device) merged two objects."""
    from edge.tracking.bytetrack import TrackIds

    def event_ids(track_ids: TrackIds | None) -> dict[str, set[str]]:
        recorders = {"gate": _Recorder(), "yard": _Recorder()}
        cameras = {name: CameraTracking(name, TrackingConfig(), Topics("edge/d"), SHAPE_LABELS,
                                        [], [], recorder, track_ids=track_ids)
                   for name, recorder in recorders.items()}
        return _event_ids_of_one_object_on_each(cameras, recorders)

    apart = event_ids(None)  # each camera numbering its own tracks: the collision
    assert apart["gate"] == apart["yard"]
    together = event_ids(TrackIds())
    assert together["gate"] and together["yard"] and not together["gate"] & together["yard"]


def test_a_daemons_cameras_number_their_tracks_apart(demo_model):
    from edge.config import config_from_dict
    from edge.daemon import Daemon

    daemon = Daemon(config_from_dict({
        "device_id": "dev1", "model": {"path": str(demo_model), "threads": 1},
        "cameras": [{"name": name, "source": "synthetic://shapes?fps=10&seed=3"}
                    for name in ("gate", "yard")],
        "mqtt": {"url": "mqtt://127.0.0.1:1"}}, "test"))
    recorders = {"gate": _Recorder(), "yard": _Recorder()}
    cameras = {}
    for worker in daemon.workers:
        assert worker.tracking is not None
        worker.tracking._publisher = recorders[worker.name]  # what the link would be asked
        cameras[worker.name] = worker.tracking
    ids = _event_ids_of_one_object_on_each(cameras, recorders)
    assert ids["gate"] and ids["yard"] and not ids["gate"] & ids["yard"]

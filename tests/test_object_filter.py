"""Which detections a camera reports: `[objects]` labels and per-label filters, and masks."""

from __future__ import annotations

import logging
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from pydantic import ValidationError

from edge.config import config_from_dict
from edge.detections import Detections
from edge.errors import ConfigError
from edge.homeassistant import discovery_configs
from edge.object_filter import ObjectFilter
from edge.objects_config import LabelFilter, MaskConfig, ObjectsConfig
from tests.mqtt_watch import Watcher
from tests.test_daemon_mqtt import write_config

LABELS = ["circle", "square", "triangle", "star"]
PREFIX = "edge/test-gate"


def _detections(*rows: tuple[float, float, float, float, float, int]) -> Detections:
    """(x1, y1, x2, y2, score, class_id) per detection."""
    data = np.array(rows, np.float64).reshape(-1, 6)
    return Detections(data[:, :4].astype(np.float32), data[:, 4].astype(np.float32),
                      data[:, 5].astype(np.int64))


def _rows(detections: Detections) -> list[tuple[float, ...]]:
    return [(*box.tolist(), round(float(score), 3), int(c)) for box, score, c in
            zip(detections.boxes, detections.scores, detections.class_ids, strict=True)]


FRAME = (640, 480)  # 307200 px


def test_nothing_configured_keeps_every_detection_as_it_is() -> None:
    keep = ObjectFilter("gate", ObjectsConfig(), [], LABELS)
    found = _detections((0, 0, 10, 10, 0.3, 0), (5, 5, 600, 470, 0.9, 3))
    assert keep.keep(found, *FRAME) is found and keep.dropped == 0
    assert all(keep.reports(c) for c in range(4))


def test_labels_scores_and_areas_drop_what_the_camera_does_not_report() -> None:
    objects = ObjectsConfig(labels=["circle", "square"], filters={
        "circle": LabelFilter(min_score=0.6),
        "square": LabelFilter(min_area=0.01, max_area=0.5)})
    keep = ObjectFilter("gate", objects, [], LABELS)
    found = _detections(
        (0, 0, 100, 100, 0.7, 0),    # circle at 0.7: kept
        (0, 0, 100, 100, 0.5, 0),    # circle under its 0.6: dropped
        (0, 0, 100, 100, 0.9, 2),    # a triangle: not a reported label
        (0, 0, 40, 40, 0.9, 1),      # square of 1600 px, 0.5% of the frame: too small
        (0, 0, 200, 200, 0.9, 1),    # 13%: kept
        (0, 0, 600, 400, 0.9, 1))    # 78%: too large
    assert _rows(keep.keep(found, *FRAME)) == [(0, 0, 100, 100, 0.7, 0),
                                              (0, 0, 200, 200, 0.9, 1)]
    assert keep.dropped == 4
    assert [keep.reports(c) for c in range(5)] == [True, True, False, False, False]
    # a class beyond the model's labels is kept unless labels name those reported
    beyond = _detections((0, 0, 100, 100, 0.9, 7))
    assert len(keep.keep(beyond, *FRAME)) == 0
    scored = ObjectFilter("gate", ObjectsConfig(filters={"circle": LabelFilter(min_score=0.95)}),
                          [], LABELS)
    assert _rows(scored.keep(beyond, *FRAME)) == [(0, 0, 100, 100, 0.9, 7)] and \
        scored.reports(7)


def test_box_shapes_outside_a_labels_ratios_are_dropped() -> None:
    """Frigate's min_ratio and max_ratio: a box's width over its height, in pixels."""
    objects = ObjectsConfig(filters={"circle": LabelFilter(min_ratio=0.3, max_ratio=0.8),
                                     "square": LabelFilter(min_ratio=2.0)})
    keep = ObjectFilter("gate", objects, [], LABELS)
    found = _detections(
        (0, 0, 40, 100, 0.9, 0),     # circle 0.4 wide a unit of height: kept
        (0, 0, 20, 100, 0.9, 0),     # 0.2: too narrow
        (0, 0, 100, 100, 0.9, 0),    # 1.0: too wide
        (0, 0, 80, 100, 0.9, 0),     # 0.8 exactly: kept, as Frigate keeps its bounds
        (0, 0, 300, 100, 0.9, 1),    # square 3.0: kept, no upper bound
        (0, 0, 150, 100, 0.9, 1),    # 1.5: under its 2.0
        (0, 50, 300, 50, 0.9, 1),    # no height: as wide as can be, kept without max_ratio
        (0, 50, 300, 50, 0.9, 0),    # ... and dropped by a max_ratio
        (0, 0, 10, 100, 0.9, 2))     # a triangle of 0.1: no filter of its own
    assert _rows(keep.keep(found, *FRAME)) == [(0, 0, 40, 100, 0.9, 0),
                                              (0, 0, 80, 100, 0.9, 0),
                                              (0, 0, 300, 100, 0.9, 1),
                                              (0, 50, 300, 50, 0.9, 1),
                                              (0, 0, 10, 100, 0.9, 2)]
    assert keep.dropped == 4
    # the ratio is the box's, whatever the frame's size
    assert _rows(keep.keep(_detections((0, 0, 40, 100, 0.9, 0)), 1920, 1080)) == [
        (0, 0, 40, 100, 0.9, 0)]


def test_a_labels_event_score_reaches_its_tracks_and_one_that_does_nothing_is_said(
        caplog) -> None:
    config = config_from_dict({"model": {"path": "m.onnx"}, "objects": {"filters": {
        "circle": {"event_score": 0.55}, "square": {"min_score": 0.6, "event_score": 0.5},
        "star": {"event_score": 0.2}}},
        "cameras": [{"name": "gate", "source": "synthetic://shapes"}]}, "edge.toml")
    from edge.object_filter import object_filter_of

    with caplog.at_level(logging.WARNING, logger="edge.object_filter"):
        keep = object_filter_of(config, 0, LABELS, threshold=0.25)
    assert keep.event_scores == {0: 0.55, 1: 0.5, 3: 0.2}
    assert [r.getMessage() for r in caplog.records] == [
        "edge.toml: camera gate: objects.filters.square.event_score 0.5 does nothing: every "
        "square tracked scores at least 0.6 (its min_score), so its median always reaches "
        "it; raise it to make a track worth events later",
        "edge.toml: camera gate: objects.filters.star.event_score 0.2 does nothing: every star "
        "tracked scores at least 0.25 (the model's score threshold), so its median always "
        "reaches it; raise it to make a track worth events later"]


def test_an_event_score_with_tracking_off_is_said_to_do_nothing(caplog) -> None:
    from edge.object_filter import object_filter_of

    config = config_from_dict({"model": {"path": "m.onnx"}, "tracking": {"enabled": False},
                               "objects": {"filters": {"square": {"event_score": 0.9}}},
                               "cameras": [{"name": "gate", "source": "synthetic://shapes"}]},
                              "edge.toml")
    with caplog.at_level(logging.WARNING, logger="edge.object_filter"):
        object_filter_of(config, 0, LABELS, threshold=0.25)
    assert [r.getMessage() for r in caplog.records] == [
        "edge.toml: camera gate: objects.filters' event_score for square does nothing: "
        "tracking is off ([tracking] enabled = false), so no track gets events or counts; turn "
        "it on, or remove it"]


def test_a_mask_drops_detections_standing_in_it_of_its_labels_only() -> None:
    """A normalised mask over the left half, for circles; a pixel mask over the top right
    corner, for every label. A box is in a mask when its bottom centre is, as for zones."""
    masks = [MaskConfig(points=[[0, 0], [0.5, 0], [0.5, 1], [0, 1]], units="normalised",
                        labels=["circle"]),
             MaskConfig(points=[[400, 0], [640, 0], [640, 100], [400, 100]])]
    keep = ObjectFilter("gate", ObjectsConfig(), masks, LABELS)
    found = _detections(
        (10, 10, 100, 200, 0.9, 0),   # circle, bottom centre (55, 200): in the left half
        (10, 10, 100, 200, 0.9, 1),   # a square there: the mask is for circles only
        (250, 10, 400, 200, 0.9, 0),  # circle at (325, 200): right half
        (450, 10, 500, 90, 0.9, 2),   # triangle at (475, 90): in the pixel mask
        (450, 10, 500, 150, 0.9, 2))  # at (475, 150): below it
    assert _rows(keep.keep(found, *FRAME)) == [(10, 10, 100, 200, 0.9, 1),
                                              (250, 10, 400, 200, 0.9, 0),
                                              (450, 10, 500, 150, 0.9, 2)]
    # the normalised mask follows the frame's size
    wide = _detections((600, 10, 700, 200, 0.9, 0))  # (650, 200) of a 1920 wide frame
    assert len(keep.keep(wide, 1920, 1080)) == 0


@pytest.mark.parametrize(("objects", "masks", "message"), [
    (ObjectsConfig(labels=["person"]), [],
     "objects.labels: person is not a label of the model"),
    (ObjectsConfig(filters={"cirlce": LabelFilter(min_score=0.5)}), [],
     "objects.filters: cirlce is not a label of the model (cirlce: did you mean circle?)"),
    (ObjectsConfig(), [MaskConfig(points=[[0, 0], [1, 1], [1, 0], [0, 1]], units="normalised")],
     "masks.0 (camera gate): the polygon crosses itself"),
    (ObjectsConfig(), [MaskConfig(points=[[0, 0], [0.5, 0], [0.5, 0.5]])],
     "masks.0 (camera gate): every point lies between 0 and 1, read as pixels"),
    (ObjectsConfig(), [MaskConfig(points=[[0, 0], [100, 0], [100, 100]], labels=["dog"])],
     "masks.0.labels: dog is not a label of the model"),
])
def test_what_the_model_lacks_and_bad_masks_are_config_errors(
        objects: ObjectsConfig, masks: list[MaskConfig], message: str) -> None:
    with pytest.raises(ConfigError, match="^" + re.escape(message)):
        ObjectFilter("gate", objects, masks, LABELS)


def test_an_area_range_that_keeps_nothing_is_refused() -> None:
    with pytest.raises(ValidationError, match=re.escape("min_area 0.5 must be below max_area "
                                                        "0.2")):
        LabelFilter(min_area=0.5, max_area=0.2)


@pytest.mark.parametrize(("ratios", "message"), [
    ({"min_ratio": 2.0, "max_ratio": 0.5}, "min_ratio 2 must be below max_ratio 0.5"),
    ({"min_ratio": 1.0, "max_ratio": 1.0}, "min_ratio 1 must be below max_ratio 1"),
    ({"min_ratio": -0.5}, "min_ratio\n  Input should be greater than or equal to 0"),
    ({"max_ratio": 0}, "max_ratio\n  Input should be greater than 0"),
])
def test_a_ratio_range_that_keeps_nothing_is_refused(ratios, message) -> None:
    with pytest.raises(ValidationError, match=re.escape(message)):
        LabelFilter(**ratios)


def _config(tmp_path: Path, model: Path, port: int, extra: str) -> Path:
    """The end-to-end tests' config (one synthetic camera) with `extra` in its camera."""
    config = write_config(tmp_path, model, port, seed=4)
    config.write_text(config.read_text().replace("[mqtt]", f"{extra}\n[mqtt]"))
    return config


def test_a_label_the_model_lacks_stops_the_daemon_at_start_with_exit_2(tmp_path, demo_model):
    config = _config(tmp_path, demo_model, 1, '[cameras.objects]\nlabels = ["person"]')
    result = subprocess.run([sys.executable, "-m", "edge", "run", "--config", str(config)],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 2, result.stderr
    assert f"{config}: cameras.0.objects.labels: person is not a label of the model" \
        in result.stderr and "Traceback" not in result.stderr


def test_home_assistant_gets_entities_for_the_labels_a_camera_reports_only() -> None:
    config = config_from_dict({
        "device_id": "gate_01", "model": {"path": "m.onnx"},
        "cameras": [{"name": "gate", "source": "synthetic://shapes",
                     "objects": {"labels": ["star"]}},
                    {"name": "yard", "source": "synthetic://shapes"}],
        "homeassistant": {"enabled": True}}, "test")
    counted = sorted(payload["name"] for payload in discovery_configs(
        config, LABELS, "shapes").values() if payload["name"].endswith(" count"))
    assert counted == ["gate star count"] + [f"yard {label} count" for label in sorted(LABELS)]


@pytest.mark.slow
def test_a_camera_publishes_tracks_and_counts_only_what_it_reports(mosquitto, demo_model,
                                                                   tmp_path) -> None:
    """The synthetic scene's circles alone, and none standing in the left third."""
    from edge.config import load_config
    from edge.daemon import Daemon

    config = load_config(_config(tmp_path, demo_model, mosquitto.port, """
[cameras.objects]
labels = ["circle"]
[[cameras.masks]]
points = [[0, 0], [0.33, 0], [0.33, 1], [0, 1]]
units = "normalised"
"""))
    daemon = Daemon(config)
    with Watcher(mosquitto.port, f"{PREFIX}/#") as watcher:
        daemon.start()
        try:
            watcher.wait_for(lambda: len(watcher.on("/gate/detections")) >= 60, 60,
                             "60 detection messages")
            stats = daemon.stats()
        finally:
            daemon.stop(1.0)
    found = [d for m in watcher.on("/gate/detections") for d in m.json()["detections"]]
    assert found and {d["label"] for d in found} == {"circle"}
    assert all((d["box"][0] + d["box"][2]) / 2 > 0.33 * 640 for d in found)
    events = [m.json() for m in watcher.on("/gate/events")]
    assert events and {e["label"] for e in events} == {"circle"}
    counts = {m.topic for m in watcher.messages if m.topic.endswith("/count")}
    assert counts == {f"{PREFIX}/gate/circle/count"}, counts
    assert stats["cameras"]["gate"]["filtered"] > 0


def test_a_label_whose_event_score_is_never_reached_is_tracked_without_events(
        mosquitto, demo_model, tmp_path) -> None:
    """Circles need a median score of 1.0 (never reached): tracked and in the detections,
    with no event or count; triangles keep tracking.event_score."""
    from edge.config import load_config
    from edge.daemon import Daemon

    config = load_config(_config(tmp_path, demo_model, mosquitto.port, """
[cameras.objects.filters.circle]
event_score = 1.0
"""))
    daemon = Daemon(config)
    with Watcher(mosquitto.port, f"{PREFIX}/#") as watcher:
        daemon.start()
        try:
            watcher.wait_for(lambda: "triangle" in {e.json()["label"]
                                                    for e in watcher.on("/gate/events")},
                             60, "a triangle's event")
            watcher.wait_for(lambda: len(watcher.on("/gate/detections")) >= 40, 60,
                             "40 detection messages")
        finally:
            daemon.stop(1.0)
    circles = [d for m in watcher.on("/gate/detections") for d in m.json()["detections"]
               if d["label"] == "circle"]
    assert circles and any(d.get("track_id") is not None for d in circles)
    assert "circle" not in {e.json()["label"] for e in watcher.on("/gate/events")}
    counts = {m.topic: int(m.payload) for m in watcher.messages if m.topic.endswith("/count")}
    assert counts.get(f"{PREFIX}/gate/circle/count", 0) == 0, counts


@pytest.mark.parametrize(("points", "message"), [
    ("[[0, 0], [100, 100], [100, 0], [0, 100]]", "the polygon crosses itself"),
    # a user check: drawn on another resolution (600-700 px of a 640 wide frame), it was
    # taken without a word and dropped nothing; the same polygon as a zone exits 2
    ("[[600, 0], [700, 0], [700, 100], [600, 100]]",
     "the polygon reaches outside the 640x480 frame; use pixel coordinates within it"),
], ids=["crossing", "outside-the-frame"])
def test_a_mask_that_does_not_fit_fails_the_probe_of_the_config_as_it_fails_the_run(
        tmp_path, demo_model, points: str, message: str) -> None:
    config = _config(tmp_path, demo_model, 1, f"[[cameras.masks]]\npoints = {points}")
    for command in (["probe", "--config", str(config), "--frames", "2"],
                    ["run", "--config", str(config), "--seconds", "1"]):
        result = subprocess.run([sys.executable, "-m", "edge", *command], capture_output=True,
                                text=True, timeout=60)
        assert result.returncode == 2, (command, result.stderr)
        assert f"{config}: cameras.0.masks.0 (camera gate): {message}" in result.stderr, \
            result.stderr


def test_a_mask_over_the_whole_frame_is_warned_of_once_a_size(caplog) -> None:
    """A normalised mask is checked when made, a pixel mask on each frame size it meets; one
    over a region, or over the frame less a strip, is not warned of."""
    whole = [[0, 0], [1, 0], [1, 1], [0, 1]]
    masks = [MaskConfig(points=whole, units="normalised", labels=["circle", "star"]),
             MaskConfig(points=[[0, 0], [1, 0], [1, 0.97], [0, 0.97]], units="normalised"),
             MaskConfig(points=[[0, 0], [640, 0], [640, 480], [0, 480]]),
             MaskConfig(points=[[400, 0], [640, 0], [640, 100], [400, 100]])]
    with caplog.at_level(logging.WARNING, logger="edge.object_filter"):
        keep = ObjectFilter("gate", ObjectsConfig(), masks, LABELS, origin="edge.toml: ")
        made = [r.getMessage() for r in caplog.records]
        caplog.clear()
        for _ in range(2):
            keep.keep(_detections((0, 0, 10, 10, 0.9, 1)), *FRAME)
            keep.keep(_detections((0, 0, 10, 10, 0.9, 1)), 1280, 720)
    assert made == ["edge.toml: masks.0 (camera gate) covers the whole frame: it drops every "
                    "circle, star, so the camera reports no circle or star; draw it over the "
                    "region whose detections are not wanted (pixels, or units = \"normalised\" "
                    "with 0..1)"]
    assert [r.getMessage() for r in caplog.records] == [
        "edge.toml: masks.2 (camera gate) covers the whole 640x480 frame: it drops every "
        "detection, so the camera reports nothing; draw it over the region whose detections "
        "are not wanted (pixels, or units = \"normalised\" with 0..1)"]
    # and it does drop them: a square anywhere in the 640x480 frame
    assert len(keep.keep(_detections((500, 300, 639, 479, 0.9, 1)), *FRAME)) == 0


def test_a_pixel_mask_drawn_to_the_last_pixel_reaches_the_frames_edge(caplog) -> None:
    """A user check: drawn in an image editor to 639, 479 of a 640x480 frame, the mask let a
    box cut off by the bottom edge (anchored at y = 480) through, and covered the frame
    without the warning; zones take 479 as the edge already."""
    corner = [[400, 300], [639, 300], [639, 479], [400, 479]]
    whole = [[0, 0], [639, 0], [639, 479], [0, 479]]
    keep = ObjectFilter("gate", ObjectsConfig(), [MaskConfig(points=corner)], LABELS)
    cut_off = _detections((450, 400, 550, 480, 0.9, 0), (100, 100, 200, 200, 0.9, 1))
    assert _rows(keep.keep(cut_off, *FRAME)) == [(100, 100, 200, 200, 0.9, 1)]
    with caplog.at_level(logging.WARNING, logger="edge.object_filter"):
        covering = ObjectFilter("gate", ObjectsConfig(), [MaskConfig(points=whole)], LABELS)
        assert len(covering.keep(cut_off, *FRAME)) == 0
    assert [r.getMessage() for r in caplog.records] == [
        "masks.0 (camera gate) covers the whole 640x480 frame: it drops every detection, so "
        "the camera reports nothing; draw it over the region whose detections are not wanted "
        "(pixels, or units = \"normalised\" with 0..1)"]


def test_a_streams_mask_outside_its_frames_is_said_once_a_size(caplog) -> None:
    keep = ObjectFilter("gate", ObjectsConfig(), [MaskConfig(
        points=[[600, 0], [700, 0], [700, 100], [600, 100]])], LABELS)
    found = _detections((610, 0, 690, 90, 0.9, 0))
    with caplog.at_level(logging.ERROR, logger="edge.object_filter"):
        for _ in range(3):
            assert len(keep.keep(found, 1280, 720)) == 0  # it fits a 1280x720 stream
            assert len(keep.keep(found, *FRAME)) == 0  # applied as given
    said = [r.getMessage() for r in caplog.records]
    assert said == ["masks.0 (camera gate): the polygon reaches outside the 640x480 frame; "
                    "use "
                    "pixel coordinates within it, or units = \"normalised\" with coordinates "
                    "from 0 to 1 (it is applied as given)"]


def test_the_probe_refuses_labels_the_model_lacks_as_the_run_does(tmp_path, demo_model):
    """A user check: `edge probe --config` passed labels that `edge run` refused; and a
    zone's label error did not name the config's file."""
    for extra, message in [
            ('[cameras.objects]\nlabels = ["person"]', "cameras.0.objects.labels: person"),
            ('[[cameras.zones]]\nname = "door"\npoints = [[0, 0], [100, 0], [100, 100]]\n'
             'labels = ["persn"]', "camera 'gate', zone 'door': labels: persn"),
            # a user check: the probe passed it, the run exited 2 without naming the file
            ('[homeassistant]\nenabled = true\nlabels = ["circel"]',
             "homeassistant.labels: circel")]:
        config = _config(tmp_path, demo_model, 1, extra)
        for command in (["probe", "--config", str(config), "--frames", "2"],
                        ["run", "--config", str(config), "--seconds", "1"]):
            result = subprocess.run([sys.executable, "-m", "edge", *command],
                                    capture_output=True, text=True, timeout=60)
            assert result.returncode == 2, result.stderr
            assert f"{config}: {message} is not a label of the model" in result.stderr, \
                result.stderr


def _probe(config: Path) -> subprocess.CompletedProcess[str]:
    """`edge probe --config CONFIG --frames 2`, its output as text."""
    return subprocess.run([sys.executable, "-m", "edge", "probe", "--config", str(config),
                           "--frames", "2"], capture_output=True, text=True, timeout=60)


HOME_ASSISTANT_STAR = ('[cameras.objects]\nlabels = ["circle"]\n[homeassistant]\n'
                       'enabled = {enabled}\nlabels = ["circle", "star"]')


@pytest.mark.parametrize(("extra", "said"), [
    ("[cameras.objects.filters.circle]\nmin_score = 0.1",
     "camera gate: cameras.0.objects.filters.circle.min_score 0.1 does nothing: detections "
     "under the "
     "model's score threshold 0.25"),
    (HOME_ASSISTANT_STAR.format(enabled="true"),
     "homeassistant.labels: star reported by no camera ([objects] labels), so it gets no "
     "entities"),
    (HOME_ASSISTANT_STAR.format(enabled="false"), None),  # Home Assistant off: not a word
], ids=["min-score", "home-assistant-label", "home-assistant-off"])
def test_the_probe_warns_of_settings_that_do_nothing_as_the_run_does(
        tmp_path, demo_model, extra: str, said: str | None) -> None:
    config = _config(tmp_path, demo_model, 1, extra)
    result = _probe(config)
    assert result.returncode == 0, result.stderr
    if said is None:
        assert "does nothing" not in result.stderr and "homeassistant" not in result.stderr, \
            result.stderr
    else:
        assert f"{config}: {said}" in result.stderr, result.stderr


def test_a_cameras_own_objects_that_drop_the_global_filters_are_warned_of(caplog) -> None:
    """Frigate merges a camera's filters with the global ones; here the camera's table
    replaces the global one whole, and a user check lost a global filter without a word."""
    from edge.object_filter import object_filter_of

    config = config_from_dict({
        "model": {"path": "m.onnx"},
        "objects": {"filters": {"square": {"min_score": 0.9}, "star": {"min_score": 0.9}}},
        "cameras": [{"name": "gate", "source": "synthetic://shapes",
                     "objects": {"labels": ["square"], "filters": {"star": {}}}}]},
        "edge.toml")
    with caplog.at_level(logging.WARNING, logger="edge.object_filter"):
        object_filter_of(config, 0, LABELS)
    assert [r.getMessage() for r in caplog.records if "replaces" in r.getMessage()] == [
        "edge.toml: camera gate: its own [cameras.objects] replaces [objects] whole, so "
        "objects.filters for square is not applied to it (unlike Frigate, which merges "
        "them); repeat them under cameras.0.objects.filters to keep them"]


def test_settings_that_do_nothing_are_warned_of(caplog) -> None:
    """A user check: a filter and a mask's label outside `labels`, and a min_score under the
    model's threshold, were taken without a word and did nothing."""
    objects = ObjectsConfig(labels=["circle"], filters={
        "square": LabelFilter(min_score=0.5), "circle": LabelFilter(min_score=0.05)})
    masks = [MaskConfig(points=[[0, 0], [100, 0], [100, 100]], labels=["star", "circle"])]
    with caplog.at_level(logging.WARNING, logger="edge.object_filter"):
        ObjectFilter("gate", objects, masks, LABELS, "objects", "cameras.0.masks",
                     threshold=0.25, origin="edge.toml: ")
    assert [r.getMessage() for r in caplog.records] == [
        "edge.toml: camera gate: objects.filters.circle.min_score 0.05 does nothing: "
        "detections under the model's score threshold 0.25 are never decoded; lower "
        "model.score_threshold to see them",
        "edge.toml: camera gate: objects.filters.square, cameras.0.masks.0.labels (star) name "
        "labels that objects.labels leaves out, never reported here, so they do nothing; add "
        "them to objects.labels or remove them"]


@pytest.mark.parametrize(("filters", "message"), [
    # a user check: the hint worked out 5000 px whatever was written
    ({"circle": {"min_area": 2000}}, "objects.filters.circle.min_area: 2000 is not a fraction "
     "of the frame's area (0 to 1): areas here are fractions, not pixels as in Frigate; 2000 "
     "px is 0.00651 of a 640x480 frame, 0.00217 of 1280x720, 0.000965 of 1920x1080"),
    ({"circle": {"max_area": 1.5}}, "objects.filters.circle.max_area: 1.5 is not a fraction "
     "of the frame's area (0 to 1); got 1.5"),
    ({"circle": {"max_area": 0.0}}, "objects.filters.circle: max_area 0 keeps no box"),
    ({"circle": {"threshold": 0.7}}, "objects.filters.circle.threshold: unknown key; "
     "Frigate's per-label threshold (the median score that makes a tracked object real) is "
     "event_score here (default: tracking.event_score)"),
    ({"circle": {"event_score": 0}},
     "objects.filters.circle.event_score: must be more than 0; got 0"),
    ({"circle": {"min_ratio": 2, "max_ratio": 0.5}}, "objects.filters.circle: min_ratio 2 "
     "must be below max_ratio 0.5 (both a box's width / height), or no box is kept"),
])
def test_frigates_pixel_areas_and_keys_are_told_what_they_are_here(filters, message) -> None:
    with pytest.raises(ConfigError, match=re.escape(message)):
        config_from_dict({"model": {"path": "m.onnx"}, "objects": {"filters": filters},
                          "cameras": [{"name": "a", "source": "synthetic://shapes"}]}, "t")


def test_zones_and_home_assistant_labels_no_camera_reports_are_warned_of(caplog) -> None:
    from edge.object_filter import object_filter_of

    config = config_from_dict({
        "device_id": "gate_01", "model": {"path": "m.onnx"},
        "objects": {"labels": ["circle"]},
        "cameras": [{"name": "gate", "source": "synthetic://shapes", "zones": [
            {"name": "door", "points": [[0, 0], [100, 0], [100, 100]],
             "labels": ["circle", "triangle"]}]}],
        "homeassistant": {"enabled": True, "labels": ["triangle", "circle"]}}, "edge.toml")
    with caplog.at_level(logging.WARNING):
        object_filter_of(config, 0, LABELS)
        discovery_configs(config, LABELS, "shapes")
    assert [r.getMessage() for r in caplog.records] == [
        "edge.toml: camera gate: zone 'door' counts triangle, which objects.labels leaves "
        "out: never counted there; add it to objects.labels or take it from the zone",
        "edge.toml: homeassistant.labels: triangle reported by no camera ([objects] labels), "
        "so it gets "
        "no entities; add it to [objects] labels or remove it here"]

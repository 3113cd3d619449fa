from __future__ import annotations

import re
import subprocess
import sys

import cv2
import numpy as np
import pytest

from edge.config import config_from_dict
from edge.detections import Detections
from edge.errors import ConfigError
from edge.mqtt.topics import Topics
from edge.objects_config import TrackingConfig, ZoneConfig
from edge.tracking.camera import CameraTracking
from edge.zones import anchor_points, zones_for_frame, zones_from_config

LABELS = ("circle", "square", "triangle", "star")
SQUARE = [[10, 10], [100, 10], [100, 100], [10, 100]]


def _config(zones):
    return config_from_dict({"device_id": "d", "model": {"path": "m.onnx"},
                             "cameras": [{"name": "gate", "source": "synthetic://shapes",
                                          "zones": zones}]}, "test")


@pytest.mark.parametrize("zone, size, message", [
    ({"name": "bow", "points": [[0, 0], [100, 100], [100, 0], [0, 100]]}, (640, 480),
     "camera 'gate', zone 'bow': the polygon crosses itself"),
    ({"name": "far", "points": [[600, 10], [700, 10], [700, 100]]}, (640, 480),
     "zone 'far': the polygon reaches outside the 640x480 frame"),
    ({"name": "neg", "points": [[-1, 10], [70, 10], [70, 100]]}, (640, 480),
     "zone 'neg': the polygon reaches outside"),
    ({"name": "norm2", "points": [[0, 0], [1.2, 0], [1, 1]], "units": "normalised"}, None,
     "zone 'norm2': normalised coordinates must lie between 0 and 1 (1.2 does not); correct "
     "it"),
    ({"name": "line", "points": [[0.1, 0.1], [0.5, 0.5], [0.9, 0.9]], "units": "normalised"},
     (640, 480), "zone 'line': the polygon encloses no area (its points lie on one line)"),
    ({"name": "flat", "points": [[10, 10], [50, 10], [100, 10]]}, None,
     "zone 'flat': the polygon encloses no area"),
    ({"name": "tiny", "points": [[0.1, 0.1], [0.5, 0.1], [0.5, 0.5]]}, (640, 480),
     "zone 'tiny': every point lies between 0 and 1, read as pixels (the default units): a "
     "polygon under one pixel wide; add units = \"normalised\""),
    # a user check: one fraction mistyped (1.4 for 0.4) made a zone of 0.3 square pixels
    ({"name": "typo", "points": [[0.1, 0.5], [1.4, 0.5], [0.4, 1.0]]}, (640, 480),
     "zone 'typo': the polygon encloses 0.33 square pixels (read as pixels, the default "
     "units), too small to hold an object; if its points are fractions of the frame, add "
     "units = \"normalised\" and correct 1.4, above 1"),
    ({"name": "same", "points": [[10, 10]] * 4}, (640, 480), "zone 'same': the polygon "
     "encloses no area"),
    ({"name": "dogs", "points": SQUARE, "labels": ["dog", "circle"]}, (640, 480),
     "zone 'dogs': labels: dog is not a label of the model; its 4 labels: circle, square, "
     "triangle, star"),
])
def test_bad_zones_name_the_zone(zone, size, message):
    config = _config([zone])
    with pytest.raises(ConfigError, match=re.escape(message)):
        zones_from_config("gate", config.cameras[0].zones, LABELS, size)


@pytest.mark.parametrize("zones, message", [
    ([{"name": "a", "points": SQUARE}, {"name": "a", "points": SQUARE}],
     "zone names must be unique per camera; repeated: a"),
    ([{"name": "x", "points": [[0, 0], [1, 1]]}], "cameras.0.zones.0.points"),
    ([{"name": "events", "points": SQUARE}], "is a topic level of its own"),
    ([{"name": "a b", "points": SQUARE}], "cameras.0.zones.0.name"),
    ([{"name": "a", "points": SQUARE, "colour": 1}], "cameras.0.zones.0.colour: unknown key"),
])
def test_zone_config_errors(zones, message):
    with pytest.raises(ConfigError, match=message):
        _config(zones)


def test_normalised_zone_is_scaled_to_the_frame():
    config = ZoneConfig(name="half", points=[[0, 0], [0.5, 0], [0.5, 1], [0, 1]],
                        units="normalised", labels=["star"])
    zones = zones_from_config("gate", [config], LABELS, None)
    scaled = zones_for_frame("gate", [config], zones, (640, 480))[0]
    np.testing.assert_allclose(scaled.polygon[2], [320, 480])
    assert scaled.class_ids == frozenset({3}) and scaled.counts(3) and not scaled.counts(0)


@pytest.mark.parametrize("points", [
    [*SQUARE, SQUARE[0]],  # closed, as drawing tools export it
    [SQUARE[0], SQUARE[1], SQUARE[1], SQUARE[2], SQUARE[3]],  # a repeated corner
])
def test_a_repeated_point_is_no_corner(points):
    config = ZoneConfig(name="door", points=points)
    zone = zones_from_config("gate", [config], LABELS, (640, 480))[0]
    np.testing.assert_array_equal(zone.polygon, np.array(SQUARE, np.float64))


def test_a_box_cut_off_by_the_frame_edge_is_inside_a_zone_drawn_to_that_edge():
    whole = ZoneConfig(name="whole", points=[[0, 0], [1, 0], [1, 1], [0, 1]], units="normalised")
    left = ZoneConfig(name="left", points=[[0, 0], [0.5, 0], [0.5, 1], [0, 1]],
                      units="normalised")
    configs = [whole, left]
    frame, right = zones_for_frame("gate", configs, zones_from_config("gate", configs, LABELS,
                                                                      None), (640, 480))
    # boxes clipped to the frame: bottom edge, bottom-left corner, on the zone's right edge,
    # well inside, and in the right half only
    boxes = np.array([[100, 300, 200, 480], [0, 400, 0, 480], [300, 10, 340, 200],
                      [50, 50, 90, 90], [400, 300, 640, 480]], np.float32)
    anchors = anchor_points(boxes)
    assert frame.contains(anchors).tolist() == [True, True, True, True, True]
    assert right.contains(anchors).tolist() == [True, True, True, True, False]
    assert not frame.contains(np.array([[320.0, 480.01], [-0.01, 100.0]])).any()
    # drawn in pixels to the last row and column, as image editors number them (0..479): a
    # user check found the cut-off box outside it
    band = ZoneConfig(name="band", points=[[0, 400], [639, 400], [639, 479], [0, 479]])
    drawn = zones_from_config("gate", [band], LABELS, (640, 480))[0]
    np.testing.assert_array_equal(drawn.polygon[:, 1], [400, 400, 480, 480])
    assert drawn.contains(anchor_points(boxes[[0, 4]])).tolist() == [True, True]


def _run_with_zone(tmp_path, model, zone: str,
                   source: str = "synthetic://shapes?fps=5&width=320&height=240",
                   tracking: bool = True) -> subprocess.CompletedProcess[str]:
    config = tmp_path / "edge.toml"
    config.write_text(f"""
device_id = "z"
[model]
path = "{model}"
[[cameras]]
name = "gate"
source = "{source}"
[[cameras.zones]]
{zone}
[mqtt]
url = "mqtt://127.0.0.1:9"
[tracking]
enabled = {str(tracking).lower()}
""")
    return subprocess.run([sys.executable, "-m", "edge", "run", "--config", str(config),
                           "--seconds", "1"], capture_output=True, text=True, timeout=60)


@pytest.mark.parametrize("point", [[10, 10, 5], [10]])
def test_a_point_that_is_not_x_and_y_says_what_a_point_is(point):
    """A user check: pydantic's own words ("List should have at most 2 items after
    validation") named no fix."""
    written = "[" + ", ".join(map(str, point)) + "]"
    with pytest.raises(ConfigError, match=re.escape(
            f"cameras.0.zones.0.points.0: {written} is not a point: each point is [x, y], two "
            "numbers (pixels of the frame, or 0..1 of it with units = \"normalised\") (camera "
            "gate, zone z)")):
        _config([{"name": "z", "points": [point, [200, 10], [200, 200]]}])


@pytest.mark.parametrize("zone, message", [
    ('name = "bow"\npoints = [[0, 0], [100, 100], [100, 0], [0, 100]]',
     "camera 'gate', zone 'bow': the polygon crosses itself"),
    ('name = "far"\npoints = [[0, 0], [400, 0], [400, 100]]',
     "camera 'gate', zone 'far': the polygon reaches outside the 320x240 frame"),
    ('name = "dogs"\npoints = [[0, 0], [10, 0], [10, 10]]\nlabels = ["dog"]',
     "zone 'dogs': labels: dog is not a label of the model; its 4 labels: circle, square, "
     "triangle, star"),
])
@pytest.mark.parametrize("tracking", [True, False])
def test_edge_run_with_a_bad_zone_exits_2_naming_it(tmp_path, demo_model, zone, message,
                                                    tracking):
    """With tracking off too: the zones count nothing then, but an operator who turns it on
    later should not meet an error that was in the config all along."""
    result = _run_with_zone(tmp_path, demo_model, zone, tracking=tracking)
    assert result.returncode == 2 and message in result.stderr
    assert "Traceback" not in result.stderr


def test_a_pixel_zone_outside_a_video_file_frame_exits_2_before_the_camera_runs(
        tmp_path, demo_model):
    images = tmp_path / "clip"
    images.mkdir()
    for n in range(3):
        cv2.imwrite(str(images / f"{n:03d}.png"), np.full((240, 320, 3), 40 * n, np.uint8))
    result = _run_with_zone(tmp_path, demo_model,
                            'name = "far"\npoints = [[0, 0], [400, 0], [400, 100]]',
                            f"file://{images}?fps=5")
    assert result.returncode == 2, result.stderr
    assert "camera 'gate', zone 'far': the polygon reaches outside the 320x240 frame" \
        in result.stderr


def _tracking(zones, unplaced):
    class Sink:
        def publish_event(self, *args): ...

        def publish_state(self, *args): ...

        def publish_best_effort(self, *args, **kwargs):
            return True

    return CameraTracking("gate", TrackingConfig(), Topics("p"), LABELS, zones, unplaced, Sink())


@pytest.mark.parametrize("size_known", [True, False])
def test_a_normalised_zone_is_scaled_exactly_once(size_known):
    config = ZoneConfig(name="left", points=[[0, 0], [0.5, 0], [0.5, 1], [0, 1]],
                        units="normalised")
    zones = zones_from_config("gate", [config], LABELS, (640, 480) if size_known else None)
    camera = _tracking(zones, [] if size_known else [config])
    for frame in range(3):
        camera.update(frame, float(frame), Detections.empty(), (640, 480))
    np.testing.assert_allclose(camera.events.zones[0].polygon[2], [320, 480])

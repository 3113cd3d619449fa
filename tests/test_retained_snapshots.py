"""Event snapshots stay bounded on the broker across daemon restarts: a starting daemon sweeps
what earlier runs left retained, keeps the newest per camera and clears the rest."""

from __future__ import annotations

import threading
import time

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from edge.config import config_from_dict
from edge.daemon import Daemon
from edge.events import EventEngine
from edge.mqtt.topics import RETAINED_SNAPSHOTS, Topics
from edge.objects_config import TrackingConfig
from tests.mqtt_watch import Watcher

JPEG = b"\xff\xd8\xff\xe0 an earlier run's snapshot"


def snapshot_topic(camera: str, start_ms: int, track: int) -> str:
    return Topics("edge/dev1").event_snapshot(camera, f"{start_ms}-{track}")


def retain(port: int, topics: list[str]) -> None:
    client = mqtt.Client(CallbackAPIVersion.VERSION2)
    client.connect("127.0.0.1", port)
    client.loop_start()
    infos = [client.publish(topic, JPEG, qos=1, retain=True) for topic in topics]
    for info in infos:
        info.wait_for_publish(5)
    client.disconnect()
    client.loop_stop()


def retained_snapshots(port: int) -> set[str]:
    with Watcher(port, "edge/dev1/+/events/+/snapshot") as watcher:
        time.sleep(1.0)  # retained messages follow the SUBACK at once
        return {m.topic for m in watcher.messages if m.retain and m.payload}


def test_adopted_topics_are_ordered_by_event_start_not_by_text():
    engine = EventEngine("gate", Topics("edge/dev1"), ["a"], [], TrackingConfig())
    # 999 ms sorts after 1000 ms as text; as a time it is the oldest.
    topics = [snapshot_topic("gate", 1000 + n, 1) for n in range(RETAINED_SNAPSHOTS)]
    cleared = engine.adopt_retained([*topics, snapshot_topic("gate", 999, 7)])
    assert [m.topic for m in cleared] == [snapshot_topic("gate", 999, 7)]
    # a clearing waits for a broker that is away, as a retained state does
    assert all(m.payload == b"" and m.retain and (m.qos, m.delivery) == (1, "state")
               for m in cleared)
    assert engine.adopt_retained(topics) == []  # already known: nothing new to clear


def test_a_restarted_daemon_clears_what_earlier_runs_left_beyond_the_limit(mosquitto,
                                                                             demo_model):
    kept_by_earlier_runs = [snapshot_topic("gate", 1_700_000_000_000 + n * 1000, n)
                            for n in range(RETAINED_SNAPSHOTS + 10)]
    removed_camera = [snapshot_topic("porch", 1_700_000_000_000, 1)]
    retain(mosquitto.port, kept_by_earlier_runs + removed_camera)
    assert len(retained_snapshots(mosquitto.port)) == RETAINED_SNAPSHOTS + 11

    settings = config_from_dict({
        "device_id": "dev1", "model": {"path": str(demo_model), "threads": 1},
        "cameras": [{"name": "gate", "source": "synthetic://shapes?fps=15&seed=3"}],
        "mqtt": {"url": mosquitto.url}}, "test")
    daemon = Daemon(settings)
    daemon.start()
    daemon.run(threading.Event(), duration=6.0)

    left = retained_snapshots(mosquitto.port)
    earlier_left = [t for t in kept_by_earlier_runs if t in left]
    new = {t for t in left if t not in kept_by_earlier_runs}
    assert new, "the run published snapshots of its own"
    assert len(left) == RETAINED_SNAPSHOTS
    assert not set(removed_camera) & left  # a camera no longer configured leaves nothing
    # The oldest went first: what is left of the earlier runs is their newest.
    assert earlier_left == kept_by_earlier_runs[len(kept_by_earlier_runs) - len(earlier_left):]


def test_a_snapshot_lost_while_the_broker_is_away_takes_no_place(tmp_path):
    """A user check: after broker restarts 44 snapshots a camera stayed retained, not 50: those
    lost while the broker was away were counted among the 50 (and before that, the clearings
    due then were dropped, and 61 stayed). The oldest goes once a snapshot gets through."""
    import numpy as np

    from edge.config import MqttConfig
    from edge.detections import Detections
    from edge.mqtt.link import MqttLink
    from edge.tracking.camera import CameraTracking
    from tests.conftest import make_mosquitto

    broker = make_mosquitto(tmp_path, persistent=True)
    broker.start()
    port = broker.port
    earlier = [snapshot_topic("gate", 1_700_000_000_000 + n * 1000, n)
               for n in range(RETAINED_SNAPSHOTS)]
    retain(port, earlier)
    link = MqttLink(MqttConfig(url=f"mqtt://127.0.0.1:{port}", reconnect_min_s=0.2,
                               reconnect_max_s=0.5),
                    Topics("edge/dev1"), "edge-test", lambda state: {"state": state})
    camera = CameraTracking("gate", TrackingConfig(max_disappeared=2), Topics("edge/dev1"),
                            ["box"], [], [], link)
    image = np.zeros((200, 300, 3), np.uint8)

    def an_object_passes(first: int, y: float) -> None:
        for frame in range(first, first + 18):  # 15 frames in view, then gone
            ts = 2e9 + frame / 10
            camera.hold(frame, image, ts)
            x = 10.0 + 4 * (frame - first)
            boxes = (np.array([[x, y, x + 30, y + 30]], np.float32) if frame < first + 15
                     else np.zeros((0, 4), np.float32))
            camera.update(frame, ts, Detections(boxes, np.full(len(boxes), 0.9, np.float32),
                                                np.zeros(len(boxes), np.int64)), (300, 200))

    try:
        link.start()
        assert link.wait_connected(10)
        assert camera.events.adopt_retained(earlier) == []  # the limit, not beyond it
        broker.stop()
        an_object_passes(1, 50.0)  # its snapshot is lost: the broker is away
        broker.start()
        deadline = time.monotonic() + 10
        while not link.connected and time.monotonic() < deadline:
            time.sleep(0.05)
        assert link.flush(10)
        assert retained_snapshots(port) == set(earlier)  # nothing cleared for a lost one
        an_object_passes(100, 120.0)  # its snapshot gets through: the oldest goes
        assert link.flush(10), "not sent"
        left = retained_snapshots(port)
        assert len(left) == RETAINED_SNAPSHOTS and earlier[0] not in left
        assert set(earlier[1:]) <= left
    finally:
        link.stop(timeout=0.3)
        broker.stop()

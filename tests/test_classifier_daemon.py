"""A classifier under the daemon, with a real Mosquitto: each class the frames show is an
object of its own, so events and counts follow the classifier's answers (a user check: one
track took the whole run, its `new` said circle and its `end` square, the counts lagged a
class behind and the last class was never counted)."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import onnx
from onnx import TensorProto, helper

from edge.config import config_from_dict
from edge.daemon import Daemon
from edge.spec import SPEC_KEY, InputSpec, ModelSpec
from tests.mqtt_watch import Watcher
from tests.running_daemon import running

LABELS = ("blue", "green", "red")  # the channels of the camera's BGR frames, in order
SIZE = 16
FRAMES_EACH = 12


def dominant_channel_classifier(path: Path) -> Path:
    """uint8 [1, 16, 16, 3] BGR -> the mean of each channel as logits [1, 3]: a frame of one
    colour is its channel's class at a probability of about 1."""
    axes = helper.make_tensor("axes", TensorProto.INT64, [2], [1, 2])
    graph = helper.make_graph(
        [helper.make_node("Cast", ["images"], ["f"], to=TensorProto.FLOAT),
         helper.make_node("ReduceMean", ["f", "axes"], ["logits"], keepdims=0)],
        "dominant_channel",
        [helper.make_tensor_value_info("images", TensorProto.UINT8, [1, SIZE, SIZE, 3])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, [1, 3])],
        initializer=[axes])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    model.ir_version = 8
    spec = ModelSpec(task="classify", labels=LABELS, head="logits", output="logits",
                     input=InputSpec(name="images", width=SIZE, height=SIZE, resize="stretch"))
    entry = model.metadata_props.add()
    entry.key, entry.value = SPEC_KEY, spec.to_json()
    onnx.checker.check_model(model)
    onnx.save(model, path)
    return path


def colour_frames(folder: Path) -> Path:
    """`FRAMES_EACH` blue frames, then green, then red (BGR), named in that order."""
    folder.mkdir()
    for index in range(3 * FRAMES_EACH):
        frame = np.zeros((48, 64, 3), np.uint8)
        frame[:, :, index // FRAMES_EACH] = 200
        cv2.imwrite(str(folder / f"{index:03d}.png"), frame)
    return folder


def test_each_class_a_classifier_sees_is_an_object_with_its_own_events_and_count(
        tmp_path: Path, mosquitto) -> None:
    model = dominant_channel_classifier(tmp_path / "colours.onnx")
    frames = colour_frames(tmp_path / "frames")
    config = config_from_dict(
        {"device_id": "cls", "model": {"path": str(model), "threads": 1},
         "cameras": [{"name": "gate", "source": f"file://{frames}?fps=20"}],
         "tracking": {"max_disappeared": 5},
         "mqtt": {"url": f"mqtt://127.0.0.1:{mosquitto.port}"}, "frames": {"interval_s": 0}},
        "test")
    with Watcher(mosquitto.port, "edge/cls/gate/#") as watcher, running(Daemon(config)):
        watcher.wait_for(lambda: sum(m.json()["type"] == "end"
                                     for m in watcher.on("/events")) == 3, 30,
                         "the end of all three classes")
    answers = [m.json()["detections"] for m in watcher.on("/gate/detections")]
    assert [d[0]["label"] for d in answers] == [c for c in LABELS for _ in range(FRAMES_EACH)]
    events = [m.json() for m in watcher.on("/events")]
    lives: dict[int, list[tuple[str, str]]] = {}
    for event in events:
        lives.setdefault(event["track_id"], []).append((event["type"], event["label"]))
    assert [life[0] for life in lives.values()] == [("new", label) for label in LABELS]
    for life in lives.values():  # one class from its `new` to its `end`
        assert life[-1][0] == "end" and len({label for _, label in life}) == 1, life
    # each class counted while it is shown, and none once the frames have ended
    counts = {label: [int(m.payload) for m in watcher.on(f"/gate/{label}/count")]
              for label in LABELS}
    for label, values in counts.items():
        assert 1 in values and values[-1] == 0, (label, values)

"""Home Assistant discovery checked against its documented MQTT discovery schema.

The tables below transcribe https://www.home-assistant.io/integrations/mqtt/ (discovery topic
format, abbreviations, device block, availability list) and the sensor, binary_sensor and
camera platform pages (required and accepted keys). Templates are rendered with Jinja2, as
Home Assistant does, against payloads our daemon publishes.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
from pathlib import Path

import jinja2
import pytest

from edge.config import config_from_dict
from edge.daemon import warn_what_tracking_off_idles
from edge.errors import ConfigError
from edge.homeassistant import discovery_configs, node_id, stale_topics
from edge.mqtt.subscriber import BrokerSubscription
from tests.mqtt_tls import login_mosquitto

ABBREVIATIONS = {
    "avty": "availability", "dev": "device", "dev_cla": "device_class", "ent_cat":
    "entity_category", "ic": "icon", "name": "name", "obj_id": "object_id", "pl_avail":
    "payload_available", "pl_not_avail": "payload_not_available", "stat_cla": "state_class",
    "stat_t": "state_topic", "t": "topic", "uniq_id": "unique_id", "unit_of_meas":
    "unit_of_measurement", "val_tpl": "value_template",
    "default_entity_id": "default_entity_id",  # has no abbreviation
    "json_attr_t": "json_attributes_topic", "json_attr_tpl": "json_attributes_template",
}
DEVICE_ABBREVIATIONS = {"ids": "identifiers", "name": "name", "mf": "manufacturer",
                        "mdl": "model", "sw": "sw_version"}
COMMON = {"availability", "availability_mode", "device", "enabled_by_default", "entity_category",
          "icon", "json_attributes_template", "json_attributes_topic", "name", "object_id",
          "default_entity_id", "qos", "unique_id", "encoding"}
#: Home Assistant's valid entity id: lower-case letters, digits and single `_` inside each part.
ENTITY_ID = re.compile(r"^(?!.+__)(?!_)[\da-z_]+(?<!_)\.(?!_)[\da-z_]+(?<!_)$")
PLATFORMS = {
    "sensor": ({"state_topic"}, COMMON | {"device_class", "expire_after", "force_update",
                                          "state_class", "unit_of_measurement", "value_template",
                                          "suggested_display_precision", "state_topic"}),
    "binary_sensor": ({"state_topic"}, COMMON | {"device_class", "expire_after", "force_update",
                                                 "off_delay", "payload_on", "payload_off",
                                                 "value_template", "state_topic"}),
    "camera": ({"topic"}, COMMON | {"topic", "image_encoding"}),
}
DEVICE_KEYS = {"identifiers", "connections", "name", "manufacturer", "model", "sw_version",
               "hw_version", "suggested_area", "configuration_url", "via_device"}
DEVICE_CLASSES = {"sensor": {None}, "binary_sensor": {"connectivity", "occupancy", "problem"},
                  "camera": {None}}
TOPIC = re.compile(r"^(?P<prefix>[^/]+)/(?P<component>[a-z_]+)/(?P<node>[A-Za-z0-9_-]+)/"
                   r"(?P<object>[A-Za-z0-9_-]+)/config$")


def _config(**sections):
    data = {"device_id": "gate_01", "model": {"path": "m.onnx"},
            "cameras": [{"name": "gate", "source": "synthetic://shapes", "zones": [
                {"name": "door", "points": [[0, 0], [10, 0], [10, 10]], "labels": ["star"]}]},
                {"name": "yard", "source": "synthetic://shapes"}],
            "homeassistant": {"enabled": True}}
    data.update(sections)
    return config_from_dict(data, "test")


LABELS = ["circle", "square", "triangle", "star"]


def _expand(payload: dict) -> dict:
    expanded = {}
    for key, value in payload.items():
        assert key in ABBREVIATIONS or key in ABBREVIATIONS.values(), f"unknown key {key}"
        full = ABBREVIATIONS.get(key, key)
        expanded[full] = value
        if full == "device":
            expanded[full] = {DEVICE_ABBREVIATIONS.get(k, k): v for k, v in value.items()}
        if full == "availability":
            expanded[full] = [{ABBREVIATIONS.get(k, k): v for k, v in item.items()}
                              for item in value]
    return expanded


def _render(template: str, payload: str) -> str:
    try:
        value_json = json.loads(payload)
    except json.JSONDecodeError:
        value_json = None
    return jinja2.Environment().from_string(template).render(value=payload,
                                                             value_json=value_json)


@pytest.mark.parametrize("drift", [False, True])
def test_every_config_follows_the_documented_discovery_schema(drift):
    configs = discovery_configs(_config(), LABELS, "shapes", drift)
    unique_ids = set()
    for topic, payload in configs.items():
        match = TOPIC.match(topic)
        assert match and match["prefix"] == "homeassistant" and match["node"] == "edge_gate_01"
        component, entity = match["component"], _expand(payload)
        required, accepted = PLATFORMS[component]
        assert required <= set(entity) and set(entity) <= accepted, (topic, set(entity))
        assert entity.get("device_class") in DEVICE_CLASSES[component]
        assert entity["unique_id"] not in unique_ids
        unique_ids.add(entity["unique_id"])
        device = entity["device"]
        assert set(device) <= DEVICE_KEYS and device["identifiers"] == ["edge_gate_01"]
        for item in entity.get("availability", []):
            assert item["topic"] == "edge/gate_01/status"
            assert {"payload_available", "payload_not_available"} <= set(item)
    names = {TOPIC.match(t)["object"] for t in configs}
    assert {"connectivity", "gate_frame", "gate_fps", "gate_star_count", "gate_door_star_count",
            "gate_door_star_occupancy", "yard_circle_occupancy"} <= names
    assert "gate_door_circle_count" not in names  # the zone counts stars only
    # a user check: no event snapshot reached Home Assistant (each event has a topic of its
    # own): a camera entity a label shows the newest on its fixed topic
    snapshot = configs["homeassistant/camera/edge_gate_01/gate_star_snapshot/config"]
    assert snapshot["t"] == "edge/gate_01/gate/star/snapshot"
    assert snapshot["name"] == "gate star snapshot" and snapshot["avty"]
    assert {f"{camera}_{label}_snapshot" for camera in ("gate", "yard")
            for label in LABELS} <= names
    assert {"gate_drift", "yard_drift"} <= names if drift else not any("drift" in n
                                                                       for n in names)


def test_a_drift_entity_is_a_problem_on_an_alert_and_unknown_while_warming_up():
    """A user check: with drift monitoring on, Home Assistant had no entity for it, so an
    alert reached nobody who watched the device there."""
    configs = discovery_configs(_config(), LABELS, "shapes", drift=True)
    drift = configs["homeassistant/binary_sensor/edge_gate_01/gate_drift/config"]
    assert drift["stat_t"] == drift["json_attr_t"] == "edge/gate_01/gate/drift"
    assert drift["dev_cla"] == "problem" and drift["avty"]
    payload = {"v": 1, "camera": "gate", "state": "alert", "window_s": 300.0, "frames": 2990,
               "drifted": ["input.brightness"], "scores": {}, "input": {"brightness": 0.8}}
    states = {state: _render(drift["val_tpl"], json.dumps({**payload, "state": state}))
              for state in ("alert", "ok", "warming_up")}
    assert states == {"alert": "ON", "ok": "OFF", "warming_up": "None"}  # None: unknown
    attributes = json.loads(_render(drift["json_attr_tpl"], json.dumps(payload)))
    assert attributes == {"drift": "alert", "drifted": ["input.brightness"], "window_s": 300.0,
                          "frames": 2990}


def test_unique_ids_are_stable_and_templates_render_like_home_assistant():
    first = discovery_configs(_config(), LABELS, "shapes")
    assert first == discovery_configs(_config(), LABELS, "shapes")
    connectivity = first["homeassistant/binary_sensor/edge_gate_01/connectivity/config"]
    states = {state: _render(connectivity["val_tpl"], json.dumps({"state": state}))
              for state in ("online", "degraded", "offline", "stopped", "failed")}
    assert states == {"online": "ON", "degraded": "ON", "offline": "OFF", "stopped": "OFF",
                      "failed": "OFF"}
    availability = first["homeassistant/sensor/edge_gate_01/gate_fps/config"]["avty"][0]
    assert _render(availability["val_tpl"], '{"state": "degraded"}') == "online"
    assert _render(availability["val_tpl"], '{"state": "offline"}') == "offline"
    assert _render(availability["val_tpl"], '{"state": "failed"}') == "offline"
    occupancy = first["homeassistant/binary_sensor/edge_gate_01/gate_door_star_occupancy/config"]
    assert occupancy["stat_t"] == "edge/gate_01/gate/door/star/count"
    assert [_render(occupancy["val_tpl"], n) for n in ("0", "2")] == ["OFF", "ON"]
    fps = first["homeassistant/sensor/edge_gate_01/gate_fps/config"]
    stats = json.dumps({"cameras": {"gate": {"fps": 14.9}}})
    assert _render(fps["val_tpl"], stats) == "14.9"


def test_entities_of_removed_cameras_and_labels_are_stale():
    before = discovery_configs(_config(), LABELS, "shapes")
    after = discovery_configs(_config(homeassistant={"enabled": True, "labels": ["star"]},
                                      cameras=[{"name": "gate", "source": "synthetic://shapes"}]),
                              LABELS, "shapes")
    stale = stale_topics(after, before)
    assert stale and all("yard" in t or "door" in t or "star" not in t for t in stale)
    assert not set(stale) & set(after)


def test_a_label_the_model_lacks_is_a_config_error_listing_the_labels():
    with pytest.raises(ConfigError, match=re.escape(
            "homeassistant.labels: dog is not a label of the model; its 4 labels: circle, "
            "square, triangle")):
        discovery_configs(_config(homeassistant={"enabled": True, "labels": ["dog"]}), LABELS,
                          "m")



def test_devices_and_entities_whose_names_differ_only_in_separators_stay_apart():
    """A user check: camera `gate` with zone `a` and a camera `gate_a` made one entity id (the
    zone's counts were silently dropped), and devices `gate.01` and `gate_01` one node (with
    discovery off, one removed the other's entities)."""
    assert node_id("gate_01") == "edge_gate_01"
    assert node_id("gate.01").startswith("edge_gate_01_") and node_id("gate.01") != node_id(
        "gate_01") and node_id("gate.01") == node_id("gate.01")
    config = _config(cameras=[
        {"name": "gate", "source": "synthetic://shapes", "zones": [
            {"name": "a", "points": [[0, 0], [10, 0], [10, 10]]}]},
        {"name": "gate_a", "source": "synthetic://shapes"}])
    # Home Assistant lowercases entity ids and reads - as _: those alike there differ here
    labels = ["circle", "traffic light", "traffic_light", "Traffic-light"]
    configs = discovery_configs(config, labels, "m")
    # connectivity; frame, fps and 4 label snapshots a camera; count and occupancy of 3
    # places x 4 labels
    assert len(configs) == 1 + 2 * (2 + 4) + 2 * 3 * 4
    states = [payload.get("stat_t") for payload in configs.values()
              if payload["name"].endswith(" count")]
    assert len(set(states)) == 12 and "edge/gate_01/gate/a/circle/count" in states
    assert len({payload["uniq_id"].lower().replace("-", "_")
                for payload in configs.values()}) == len(configs)
    entity_ids = [payload["default_entity_id"] for payload in configs.values()]
    assert len(set(entity_ids)) == len(configs)
    for topic in configs:
        assert TOPIC.match(topic), topic  # Home Assistant's object id characters only
    assert "homeassistant/sensor/edge_gate_01/gate_fps/config" in configs  # no clash: as before


def test_a_1000_label_model_is_not_listed_whole_and_a_near_label_is_named():
    """A missing label of a 1000-class model was a 6000-character line of every label."""
    labels = ["person", *(f"c{i}" for i in range(999))]
    with pytest.raises(ConfigError) as refused:
        discovery_configs(_config(homeassistant={"enabled": True, "labels": ["persn"]}),
                          labels, "m")
    assert str(refused.value) == (
        "test: homeassistant.labels: persn is not a label of the model (persn: did you mean "
        "person?); its 1000 labels: person, " + ", ".join(f"c{i}" for i in range(19)) + ", ...")
    with pytest.raises(ConfigError, match=re.escape(
            "Dog, Tree are not labels of the model (Dog: did you mean dog?); its 2 labels")):
        discovery_configs(_config(homeassistant={"enabled": True, "labels": ["Dog", "Tree"]}),
                          ["dog", "cat"], "m")


def _retained(port: int, topic_filter: str = "homeassistant/#") -> dict[str, bytes]:
    found: dict[str, bytes] = {}
    reader = BrokerSubscription(f"mqtt://127.0.0.1:{port}", [(topic_filter, 1)],
                                lambda t, p, r: found.__setitem__(t, p))
    reader.start()
    assert reader.subscribed.wait(10)
    time.sleep(0.5)
    reader.stop()
    return found


def test_without_tracking_no_count_entity_is_advertised_and_the_config_says_why(caplog):
    config = _config(tracking={"enabled": False})
    configs = discovery_configs(config, LABELS, "shapes")
    assert sorted(topic.split("/")[3] for topic in configs) == [
        "connectivity", "gate_fps", "gate_frame", "yard_fps", "yard_frame"]
    warn_what_tracking_off_idles(config)
    assert [r.getMessage() for r in caplog.records] == [
        "the zones of camera gate count tracked objects, and tracking.enabled is false: they "
        "count nothing; set it to true (or remove the zones)",
        "Home Assistant gets no count or occupancy entities while tracking.enabled is false "
        "(only connectivity, frame and FPS); set it to true for counts"]
    caplog.clear()
    warn_what_tracking_off_idles(_config())
    assert not caplog.records


def test_a_discovery_prefix_over_the_devices_own_topics_is_warned_about(caplog):
    from edge.homeassistant import DiscoveryPublisher

    DiscoveryPublisher(_config(homeassistant={"enabled": True, "prefix": "edge"}), LABELS, "m",
                       None, None)
    assert ("homeassistant.prefix 'edge' overlaps this device's own topics (edge/gate_01/...): "
            "Home Assistant reads everything under its discovery prefix, frames included, and "
            "the device's topics would share levels with the discovery configs; use its "
            "default, homeassistant") in caplog.text
    caplog.clear()
    DiscoveryPublisher(_config(homeassistant={"enabled": True, "prefix": "edge/gate_01/gate"}),
                       LABELS, "m", None, None)  # inside them: a user check found it unsaid
    assert "homeassistant.prefix 'edge/gate_01/gate' overlaps" in caplog.text
    caplog.clear()
    DiscoveryPublisher(_config(), LABELS, "m", None, None)
    assert not caplog.records


def test_a_prefix_like_home_assistants_own_is_warned_of_as_a_likely_typo(caplog):
    """A user check: `prefix = "homeasistant"` moved every entity where Home Assistant does
    not look, and said so at INFO only."""
    from edge.homeassistant import warn_of_a_misspelt_prefix

    for prefix in ("homeasistant", "home_assistant", "HomeAssistant"):
        caplog.clear()
        warn_of_a_misspelt_prefix(_config(homeassistant={"enabled": True, "prefix": prefix}))
        assert [r.levelname for r in caplog.records] == ["WARNING"]
        assert (f"homeassistant.prefix {prefix!r} is not Home Assistant's default discovery "
                f"prefix 'homeassistant', though much like it: Home Assistant finds these "
                f"entities only if its MQTT integration's discovery prefix is {prefix!r} too; "
                "if that is a typo, write 'homeassistant' (or leave the key out)") in caplog.text
    caplog.clear()
    for settings in ({"enabled": True, "prefix": "my/ha"}, {"enabled": True},
                     {"enabled": False, "prefix": "homeasistant"}):
        warn_of_a_misspelt_prefix(_config(homeassistant=settings))
    assert not caplog.records


@pytest.mark.parametrize("prefix, message", [
    ("/ha/", "a topic prefix needs non-empty levels and no leading or trailing /"),
    ("ha/", "a topic prefix needs non-empty levels"), ("ha//x", "a topic prefix needs"),
    ("ha/#", "use 1 to 64 characters"), ("$SYS", "use 1 to 64 characters"),
    ("a/b/c/d/e", "a discovery prefix of more than 4 levels")])
def test_a_discovery_prefix_with_an_empty_level_or_wildcard_is_refused(prefix, message):
    with pytest.raises(ConfigError, match=re.escape(f"homeassistant.prefix: {message}")):
        _config(homeassistant={"enabled": True, "prefix": prefix})
    assert _config(homeassistant={"enabled": True, "prefix": "my/ha"}).homeassistant.prefix \
        == "my/ha"


def _config_file(tmp_path: Path, model: Path, port: int, zones: str = "", enabled: bool = True,
            prefix: str = "homeassistant", mqtt: str = "") -> Path:
    """A daemon config of one synthetic camera with discovery (`mqtt`: more [mqtt] lines)."""
    config = tmp_path / "edge.toml"
    config.write_text(f"""
device_id = "ha"
[model]
path = "{model}"
threads = 1
[[cameras]]
name = "gate"
source = "synthetic://shapes?fps=5&seed=1"
{zones}
[mqtt]
url = "mqtt://127.0.0.1:{port}"
{mqtt}
[homeassistant]
enabled = {str(enabled).lower()}
prefix = "{prefix}"
labels = ["star"]
""")
    return config


def _daemon(config: Path, seconds: int = 3) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "edge", "run", "--config", str(config),
                           "--seconds", str(seconds)], capture_output=True, text=True,
                          timeout=120)


def _run(tmp_path: Path, model: Path, port: int, zones: str, enabled: bool = True,
         prefix: str = "homeassistant") -> str:
    run = _daemon(_config_file(tmp_path, model, port, zones, enabled, prefix))
    assert run.returncode == 0, run.stderr
    return run.stderr


@pytest.mark.slow
def test_daemon_publishes_discovery_and_removes_what_left_the_config(tmp_path, mosquitto,
                                                                     demo_model):
    zone = '[[cameras.zones]]\nname = "door"\npoints = [[0, 0], [100, 0], [100, 100]]'
    _run(tmp_path, demo_model, mosquitto.port, zone)
    first = _retained(mosquitto.port)
    assert "homeassistant/sensor/edge_ha/gate_door_star_count/config" in first
    assert all(json.loads(p)["dev"]["ids"] == ["edge_ha"] for p in first.values())
    assert not any("drift" in topic for topic in first)  # the model has no drift reference
    # the configs are read back on a connection of their own, named after the daemon's
    # (`edge-ha`): a user check found an id of another scheme that no ACL line foresaw
    assert " as edge-ha-discovery " in mosquitto.log.read_text()
    _run(tmp_path, demo_model, mosquitto.port, "")
    second = _retained(mosquitto.port)
    assert not any("door" in topic for topic in second)  # cleared by empty retained configs
    assert set(second) == {t for t in first if "door" not in t}
    # a new discovery prefix: the entities under the old one are removed, and said to be
    log = _run(tmp_path, demo_model, mosquitto.port, "", prefix="my/ha")
    assert _retained(mosquitto.port) == {}
    assert set(_retained(mosquitto.port, "my/ha/#")) == {
        topic.replace("homeassistant/", "my/ha/", 1) for topic in second}
    assert (f"removed {len(second)} Home Assistant entities that earlier runs published under "
            "homeassistant (the discovery prefix is now my/ha)") in log
    log = _run(tmp_path, demo_model, mosquitto.port, zone, enabled=False)
    left = _retained(mosquitto.port, "#")  # discovery off: every config removed
    assert left and not [topic for topic in left if topic.endswith("/config")]
    assert "(homeassistant.enabled is false)" in log


@pytest.mark.slow
def test_discovery_is_published_again_after_the_broker_forgot_it(tmp_path, mosquitto,
                                                                demo_model):
    config = _config_file(tmp_path, demo_model, mosquitto.port,
                          mqtt="reconnect_min_s = 0.5\nreconnect_max_s = 1")
    daemon = subprocess.Popen([sys.executable, "-m", "edge", "run", "--config", str(config),
                               "--seconds", "12"], stderr=subprocess.PIPE, text=True)
    try:
        time.sleep(4)
        assert "homeassistant/camera/edge_ha/gate_frame/config" in _retained(mosquitto.port)
        mosquitto.stop()  # no persistence: the retained configs are gone
        mosquitto.start()
        time.sleep(4)
        assert "homeassistant/camera/edge_ha/gate_frame/config" in _retained(mosquitto.port)
    finally:
        _, stderr = daemon.communicate(timeout=60)
    assert daemon.returncode == 0, stderr


@pytest.mark.parametrize("labels", [["circle", "person.", "hard--hat", "_x_", "Traffic-light",
                                     "traffic light"]])
def test_every_entity_gets_a_valid_default_entity_id(labels):
    """A user check: Home Assistant deprecated `object_id` in 2025.10 and stopped reading it in
    2026.4; `default_entity_id` ("sensor.<object id>") names the entity now, and one that is
    not a valid entity id (`__`, a leading or trailing `_`) would fail the whole config."""
    config = _config(device_id="Gate-01.b", cameras=[
        {"name": "gate", "source": "synthetic://shapes", "zones": [
            {"name": "a", "points": [[0, 0], [10, 0], [10, 10]]}]},
        {"name": "gate_a", "source": "synthetic://shapes"}])
    configs = discovery_configs(config, labels, "m")
    for topic, payload in configs.items():
        component = TOPIC.match(topic)["component"]
        entity_id = payload["default_entity_id"]
        assert ENTITY_ID.match(entity_id) and entity_id.startswith(f"{component}."), entity_id
        # Home Assistant before 2025.10 makes the entity id of obj_id, by its slugify
        slug = re.sub(r"_+", "_", re.sub(r"[^a-z0-9_]", "_", payload["obj_id"].lower())).strip("_")
        assert entity_id == f"{component}.{slug}", (entity_id, payload["obj_id"])
    assert len({p["default_entity_id"] for p in configs.values()}) == len(configs)
    assert configs["homeassistant/camera/edge_Gate-01_b_b5c4bc/gate_frame/config"][
        "default_entity_id"] == "camera.edge_gate_01_b_b5c4bc_gate_frame"


def test_accented_labels_keep_their_letters_in_entity_ids_and_others_stay_apart():
    """A user check: every non-ASCII letter became `_`, so `café` counted as `caf`; now as
    Home Assistant's own slugs read them. Letters of other scripts have no ASCII form here:
    they stay `_`, and a digest keeps two such labels apart."""
    labels = ["café", "Straße", "Øl", "猫", "犬"]
    configs = discovery_configs(_config(cameras=[{"name": "gate", "source": "synthetic://shapes"}]),
                                labels, "m")
    counts = {payload["name"]: payload["default_entity_id"] for payload in configs.values()
              if payload["name"].endswith(" count")}
    assert counts["gate café count"] == "sensor.edge_gate_01_gate_cafe_count"
    assert counts["gate Straße count"] == "sensor.edge_gate_01_gate_strasse_count"
    assert counts["gate Øl count"] == "sensor.edge_gate_01_gate_ol_count"
    cat, dog = counts["gate 猫 count"], counts["gate 犬 count"]
    assert cat != dog and all(ENTITY_ID.match(i) for i in (cat, dog)), (cat, dog)


def test_devices_alike_in_entity_ids_keep_their_own():
    """A user check: `gate-01`, `gate_01` and `GATE-01` all made
    `sensor.edge_gate_01_gate_circle_count`; Home Assistant would have suffixed `_2`, `_3` in
    the order the devices started."""
    made = {device: discovery_configs(_config(device_id=device), ["circle"], "m")
            for device in ("gate-01", "gate_01", "GATE-01")}
    counts = {device: next(p["default_entity_id"] for p in configs.values()
                           if p["name"] == "gate circle count")
              for device, configs in made.items()}
    assert counts["gate_01"] == "sensor.edge_gate_01_gate_circle_count"  # as it was
    assert len(set(counts.values())) == 3, counts
    assert all(ENTITY_ID.match(entity_id) for entity_id in counts.values())


def test_a_refused_login_is_advised_in_the_config_s_terms(tmp_path, demo_model, monkeypatch):
    """A user check: with discovery on, a broker that refused the daemon's login got advice
    for `edge monitor` ("USER@ before the host in --mqtt") from the discovery's reader, which
    breaks the config if followed (user info in mqtt.url is refused); a later one: the reader
    said the link's refusal a second time."""
    broker = login_mosquitto(tmp_path, "edge", "s3cret")
    broker.start()
    try:
        monkeypatch.setenv("EDGE_MQTT_PASSWORD", "wrong")
        run = _daemon(_config_file(tmp_path, demo_model, broker.port, mqtt='username = "edge"'))
    finally:
        broker.stop()
    assert "Traceback" not in run.stderr
    assert "--mqtt" not in run.stderr and "USER@" not in run.stderr, run.stderr
    # said once, by the link: the discovery's reader waits for the link to connect (it said
    # the same refusal a second time)
    assert run.stderr.count("not authorized:") == 1, run.stderr
    assert "check the user 'edge' and the password ($EDGE_MQTT_PASSWORD)" in run.stderr
    assert "Home Assistant discovery" not in run.stderr

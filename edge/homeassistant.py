"""Home Assistant MQTT discovery: entities for a device, its cameras, labels and zones.

Configs are retained under `<discovery prefix>/<component>/edge_<device>/<object>/config`, with
Home Assistant's documented abbreviations (`stat_t`, `uniq_id`, `dev`, ...). Every entity but the
connectivity sensor follows the device's status topic through `avty`, so a device that goes
offline (its Last Will) shows as unavailable instead of showing stale counts. An entity whose
camera, label or zone left the config is removed by an empty retained config: at start the
daemon reads back the retained configs of its own node and clears the ones it no longer makes
(all of them when discovery is turned off). Count and occupancy entities need tracking: with
`tracking.enabled = false` only the connectivity, frame and FPS entities are made.
"""

from __future__ import annotations

import json
import logging
import re
import threading
from collections.abc import Iterable, Sequence
from typing import Any

from edge import __version__
from edge.config import Config
from edge.errors import ConfigError
from edge.mqtt.subscriber import BrokerSubscription
from edge.mqtt.topics import RETAINED_READ_QOS, Topics
from edge.wording import not_labels_of_the_model

log = logging.getLogger(__name__)

#: Seconds to wait for the broker's retained configs when looking for stale entities.
RETAINED_WAIT_S = 1.0

Configs = dict[str, dict[str, Any]]


def node_id(device_id: str) -> str:
    """Home Assistant's node ids allow letters, digits, _ and - only."""
    return "edge_" + re.sub(r"[^A-Za-z0-9_-]", "_", device_id)


def discovery_configs(config: Config, labels: Sequence[str], model: str) -> Configs:
    """Every entity's config topic -> payload for this daemon config and model's `labels`."""
    settings = config.homeassistant
    node = node_id(config.device_id)
    topics = Topics(config.topic_prefix)
    wanted = list(settings.labels) or list(labels)
    unknown = [label for label in wanted if label not in labels]
    if unknown:
        raise ConfigError(f"homeassistant.labels: {not_labels_of_the_model(unknown, labels)}")
    device = {"ids": [node], "name": f"edge {config.device_id}", "mf": "edge-runtime",
              "mdl": model, "sw": __version__}
    availability = [{"t": topics.status, "pl_avail": "online", "pl_not_avail": "offline",
                     "val_tpl": "{{ 'offline' if value_json.state in "
                                "['offline', 'stopped', 'failed'] else 'online' }}"}]

    def entity(component: str, object_id: str, name: str, **fields: Any) -> None:
        payload = {"name": name, "uniq_id": f"{node}_{object_id}", "obj_id": f"{node}_{object_id}",
                   "dev": device, **fields}
        if component != "binary_sensor" or fields.get("dev_cla") != "connectivity":
            payload["avty"] = availability
        configs[f"{settings.prefix}/{component}/{node}/{object_id}/config"] = payload

    configs: Configs = {}
    entity("binary_sensor", "connectivity", "Connectivity", stat_t=topics.status,
           val_tpl="{{ 'ON' if value_json.state in ['online', 'degraded'] else 'OFF' }}",
           dev_cla="connectivity", ent_cat="diagnostic")
    for camera in config.cameras:
        name = camera.name
        entity("camera", f"{name}_frame", f"{name} frame", t=topics.frame(name))
        entity("sensor", f"{name}_fps", f"{name} FPS", stat_t=topics.stats,
               val_tpl=f"{{{{ value_json.cameras['{name}'].fps }}}}", unit_of_meas="fps",
               stat_cla="measurement", ent_cat="diagnostic")
        if not config.tracking.enabled:
            continue  # counts come from tracked objects: these entities would never get a value
        places: list[tuple[str | None, Iterable[str]]] = [(None, wanted)]
        places += [(z.name, [w for w in wanted if not z.labels or w in z.labels])
                   for z in camera.zones]
        for zone, zone_labels in places:
            for label in zone_labels:
                object_id = "_".join(p for p in (name, zone, label) if p)
                title = " ".join(p for p in (name, zone, label) if p)
                count_topic = topics.count(name, label, zone)
                entity("sensor", f"{object_id}_count", f"{title} count", stat_t=count_topic,
                       unit_of_meas="objects", stat_cla="measurement", ic="mdi:counter")
                entity("binary_sensor", f"{object_id}_occupancy", f"{title} occupancy",
                       stat_t=count_topic, dev_cla="occupancy",
                       val_tpl="{{ 'ON' if value | int > 0 else 'OFF' }}")
    return configs


def config_filter(config: Config) -> str:
    """The topic filter of every discovery config this device's node may have left retained."""
    return f"{config.homeassistant.prefix}/+/{node_id(config.device_id)}/+/config"


def remove_discovery(config: Config, link: Any) -> None:
    """With discovery off, have the link remove the entities earlier runs published once it is
    connected: their configs are retained, and Home Assistant would keep showing them. Quiet
    when the broker holds none or refuses the read (a broker that never served Home
    Assistant may not let this client read its prefix)."""

    def clear(topics: list[str]) -> None:
        for topic in topics:
            link.publish_state(topic, b"", 1)
        if topics:
            log.info("removed %d Home Assistant entities that earlier runs published "
                     "(homeassistant.enabled is false)", len(topics))

    link.sweep_retained(config_filter(config), clear)


def stale_topics(current: Iterable[str], retained: Iterable[str]) -> list[str]:
    """Retained config topics of our node that the current config no longer makes."""
    keep = set(current)
    return sorted(topic for topic in set(retained) if topic not in keep)


class DiscoveryPublisher:
    """Sets the configs as retained states of the daemon's link (QoS 1:
    `MqttLink.publish_state`, which sets them again on every connect, since a broker without
    persistence forgets retained messages when it restarts) and, on a thread of its own,
    clears stale ones of earlier configs once at start."""

    def __init__(self, config: Config, labels: Sequence[str], model: str, link: Any,
                 password: str | None) -> None:
        self.configs = discovery_configs(config, labels, model)
        self._config = config
        self._link = link
        self._password = password
        self.cleared: list[str] = []
        self.done = threading.Event()
        self._thread = threading.Thread(target=self._clean, name="ha-discovery", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def publish(self) -> None:
        """Set every config (once, at start): retained states, which wait beside the outbox
        (a 1000-label model makes 2000 configs)."""
        for topic, payload in self.configs.items():
            self._link.publish_state(topic, json.dumps(payload, separators=(",", ":")).encode(), 1)

    def _clean(self) -> None:
        try:
            self.cleared = stale_topics(self.configs, self._retained())
            for topic in self.cleared:
                self._link.publish_state(topic, b"", 1)
            if self.cleared:
                log.info("removed %d Home Assistant entities no longer in the config",
                         len(self.cleared))
        finally:
            self.done.set()

    def _retained(self) -> list[str]:
        mqtt = self._config.mqtt
        node = node_id(self._config.device_id)
        found: list[str] = []
        lock = threading.Lock()

        def receive(topic: str, payload: bytes, retained: bool) -> None:
            if retained and payload:
                with lock:
                    found.append(topic)

        reader = BrokerSubscription(
            mqtt.url,
            [(config_filter(self._config), RETAINED_READ_QOS)],
            receive,
            client_id=f"{node}-discovery", username=mqtt.username, password=self._password,
            ca_file=str(mqtt.ca_file) if mqtt.ca_file else None)
        reader.start()
        try:
            failure = reader.subscription_failure(30.0)
            if failure is not None:
                log.warning("Home Assistant discovery: could not read the retained configs from "
                            "%s (%s); stale entities are not removed this time", mqtt.url,
                            failure)
                return []
            threading.Event().wait(RETAINED_WAIT_S)
        finally:
            reader.stop()
        with lock:
            return list(found)

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

import difflib
import hashlib
import json
import logging
import re
import threading
import time
import unicodedata
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from edge import __version__
from edge.config import Config
from edge.errors import ConfigError
from edge.mqtt.failures import config_names
from edge.mqtt.subscriber import BrokerSubscription
from edge.mqtt.topics import RETAINED_READ_QOS, Topics
from edge.objects_config import DEFAULT_DISCOVERY_PREFIX, MAX_PREFIX_LEVELS
from edge.wording import listed, not_labels_of_the_model

log = logging.getLogger(__name__)

#: Seconds to wait for the broker's retained configs when looking for stale entities.
RETAINED_WAIT_S = 1.0
#: Seconds the stale-entity check waits, once connected, for this run's configs to be handed
#: to the broker (a counts topic that changes all the time can keep states waiting).
CONFIGS_SENT_WAIT_S = 30.0
#: How alike (difflib's ratio) to Home Assistant's default a prefix must be to be warned of as
#: a likely typo: `homeasistant` 0.96, `home_assistant` 0.96, `ha` 0.27, `hass` 0.47.
MISSPELT_PREFIX_LIKENESS = 0.8

Configs = dict[str, dict[str, Any]]


def node_id(device_id: str) -> str:
    """Home Assistant's node ids allow letters, digits, _ and - only: a device id with other
    characters (a `.`) also gets a digest of itself, so that `gate.01` and `gate_01` stay two
    devices instead of overwriting (and, with discovery off, removing) each other's entities."""
    safe = _safe_level(device_id)
    return f"edge_{safe}" if safe == device_id else f"edge_{safe}_{_digest(device_id)}"


def entity_node(device_id: str) -> str:
    """How this device's entity ids start: Home Assistant's are lower case with `_` only, so a
    device id it would change (`gate-01`, `GATE_01`, `gate.01`) gets a digest of itself, and
    devices that differ only there (`gate-01`, `gate_01`) keep entity ids of their own instead
    of taking `_2` suffixes in the order they start."""
    slug = _as_entity_id(_safe_level(device_id))
    return f"edge_{slug}" if slug == device_id else f"edge_{slug}_{_digest(device_id)}"


#: Latin letters that Unicode does not decompose into a base letter and a mark.
_LATIN_LETTERS = str.maketrans({"ß": "ss", "Æ": "AE", "æ": "ae", "Ø": "O", "ø": "o",
                                "Œ": "OE", "œ": "oe", "Đ": "D", "đ": "d", "Ł": "L", "ł": "l",
                                "Þ": "Th", "þ": "th", "ı": "i"})


def _safe_level(text: str) -> str:
    """`text` in the characters node and object ids allow: accented letters as their base
    letter (`café` -> `cafe`, `Straße` -> `Strasse`, `Øl` -> `Ol`, as Home Assistant's own
    slugs read them), anything else as `_` (`人` -> `_`; `object_ids` then tells such ids
    apart by digest)."""
    decomposed = unicodedata.normalize("NFKD", text.translate(_LATIN_LETTERS))
    letters = "".join(c for c in decomposed if not unicodedata.combining(c))
    return re.sub(r"[^A-Za-z0-9_-]", "_", letters)


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:6]


def object_ids(entities: Sequence[tuple[str, ...]]) -> list[str]:
    """Each entity's object id from the parts that name it (camera, zone, label, kind): the
    parts joined by `_`, in the characters Home Assistant allows. Names may hold `_` and
    labels any character, so two entities can come out alike, here or in Home Assistant's
    entity ids (camera `gate` zone `a` and camera `gate_a`; labels `traffic light`,
    `traffic_light` and `Traffic-light`): those get a digest of their exact parts too, so none
    silently takes another's place."""
    joined = ["_".join(_safe_level(part) for part in parts) for parts in entities]
    seen = Counter(_as_entity_id(base) for base in joined)
    return [base if seen[_as_entity_id(base)] == 1 else
            f"{base}_{_digest(chr(31).join(parts))}"
            for base, parts in zip(joined, entities, strict=True)]


def _as_entity_id(object_id: str) -> str:
    """What Home Assistant makes of an object id in the entity id, as its slugify does: lower
    case, `-` as `_`, no `_` twice running or at either end (`Traffic-light` and
    `traffic_light` come out alike there, as do `a__b` and `a_b`)."""
    return re.sub(r"_+", "_", object_id.lower().replace("-", "_")).strip("_")


#: A drift entity's state: `ON` (a problem) on an alert, `OFF` when judged fine, and unknown
#: (`None`, as Home Assistant reads it) while the first window fills or is too thin to judge.
DRIFT_STATE = ("{{ 'ON' if value_json.state == 'alert' else 'OFF' if value_json.state == 'ok' "
               "else 'None' }}")
#: ... and its attributes: what drifted, over which window and how many frames.
DRIFT_ATTRIBUTES = ("{{ {'drift': value_json.state, 'drifted': value_json.drifted, "
                    "'window_s': value_json.window_s, 'frames': value_json.frames} | tojson }}")


def check_labels(config: Config, labels: Sequence[str]) -> None:
    """Refuse `homeassistant.labels` the model (its `labels`) lacks (ConfigError); warn of
    those no camera reports (`[objects] labels`), which get no entities. `edge run` and
    `edge probe --config` check alike."""
    named = config.homeassistant.labels
    unknown = [label for label in named if label not in labels]
    if unknown:
        raise ConfigError(f"{config.key('homeassistant.labels')}: "
                          f"{not_labels_of_the_model(unknown, labels)}")
    unreported = [label for label in named if all(
        config.objects_of(camera).labels and label not in config.objects_of(camera).labels
        for camera in config.cameras)]
    if unreported:
        one = len(unreported) == 1
        log.warning("%s: %s reported by no camera ([objects] labels), so %s no entities; add "
                    "%s to [objects] labels or remove %s here",
                    config.key("homeassistant.labels"), listed(unreported),
                    "it gets" if one else "they get", "it" if one else "them",
                    "it" if one else "them")


def discovery_configs(config: Config, labels: Sequence[str], model: str,
                      drift: bool = False) -> Configs:
    """Every entity's config topic -> payload for this daemon config and model's `labels`;
    `drift`: drift monitoring runs (the model has a reference), so each camera gets a drift
    entity."""
    settings = config.homeassistant
    node = node_id(config.device_id)
    entities_of = entity_node(config.device_id)
    topics = Topics(config.topic_prefix)
    wanted = list(settings.labels) or list(labels)
    check_labels(config, labels)
    device = {"ids": [node], "name": f"edge {config.device_id}", "mf": "edge-runtime",
              "mdl": model, "sw": __version__}
    availability = [{"t": topics.status, "pl_avail": "online", "pl_not_avail": "offline",
                     "val_tpl": "{{ 'offline' if value_json.state in "
                                "['offline', 'stopped', 'failed'] else 'online' }}"}]

    entities: list[tuple[str, tuple[str, ...], dict[str, Any]]] = []

    def entity(component: str, parts: tuple[str, ...], name: str, **fields: Any) -> None:
        payload = {"name": name, "dev": device, **fields}
        if component != "binary_sensor" or fields.get("dev_cla") != "connectivity":
            payload["avty"] = availability
        entities.append((component, parts, payload))

    entity("binary_sensor", ("connectivity",), "Connectivity", stat_t=topics.status,
           val_tpl="{{ 'ON' if value_json.state in ['online', 'degraded'] else 'OFF' }}",
           dev_cla="connectivity", ent_cat="diagnostic")
    for camera in config.cameras:
        name = camera.name
        entity("camera", (name, "frame"), f"{name} frame", t=topics.frame(name))
        entity("sensor", (name, "fps"), f"{name} FPS", stat_t=topics.stats,
               val_tpl=f"{{{{ value_json.cameras['{name}'].fps }}}}", unit_of_meas="fps",
               stat_cla="measurement", ent_cat="diagnostic")
        if drift:
            entity("binary_sensor", (name, "drift"), f"{name} drift", stat_t=topics.drift(name),
                   dev_cla="problem", val_tpl=DRIFT_STATE, json_attr_t=topics.drift(name),
                   json_attr_tpl=DRIFT_ATTRIBUTES, ent_cat="diagnostic")
        if not config.tracking.enabled:
            continue  # counts come from tracked objects: these entities would never get a value
        reported = config.objects_of(camera).labels  # the others are never counted here
        shown = [w for w in wanted if not reported or w in reported]
        places: list[tuple[str | None, Iterable[str]]] = [(None, shown)]
        places += [(z.name, [w for w in shown if not z.labels or w in z.labels])
                   for z in camera.zones]
        for label in shown:  # the newest event snapshot of each label
            entity("camera", (name, label, "snapshot"), f"{name} {label} snapshot",
                   t=topics.label_snapshot(name, label))
        for zone, zone_labels in places:
            for label in zone_labels:
                where = tuple(p for p in (name, zone, label) if p)
                title = " ".join(where)
                count_topic = topics.count(name, label, zone)
                entity("sensor", (*where, "count"), f"{title} count", stat_t=count_topic,
                       unit_of_meas="objects", stat_cla="measurement", ic="mdi:counter")
                entity("binary_sensor", (*where, "occupancy"), f"{title} occupancy",
                       stat_t=count_topic, dev_cla="occupancy",
                       val_tpl="{{ 'ON' if value | int > 0 else 'OFF' }}")
    configs: Configs = {}
    for (component, _, payload), object_id in zip(
            entities, object_ids([parts for _, parts, _ in entities]), strict=True):
        unique = f"{node}_{object_id}"
        # default_entity_id names the entity in Home Assistant 2025.10 and later (object_id
        # stopped working in 2026.4); obj_id, for the versions before, is dropped by the later
        # ones, which drop the keys they do not know. Both make the same entity id (a user
        # check: obj_id was the unique id, so `gate-01` got another id before 2025.10).
        named = f"{entities_of}_{object_id}"
        configs[f"{settings.prefix}/{component}/{node}/{object_id}/config"] = {
            "name": payload.pop("name"), "uniq_id": unique,
            "default_entity_id": f"{component}.{_as_entity_id(named)}", "obj_id": named,
            **payload}
    return configs


#: The components this module makes entities of.
COMPONENTS = frozenset({"binary_sensor", "camera", "sensor"})


def config_filter(config: Config) -> str:
    """The topic filter of the discovery configs this device's node may have left retained
    under this run's discovery prefix."""
    return f"{config.homeassistant.prefix}/+/{node_id(config.device_id)}/+/config"


def other_prefix_filters(config: Config) -> list[str]:
    """Topic filters for this node's discovery configs under any prefix (an earlier run's
    need not be this one's): one a prefix length, up to `MAX_PREFIX_LEVELS`."""
    node = node_id(config.device_id)
    return ["/".join(["+"] * (levels + 1) + [node, "+", "config"])
            for levels in range(1, MAX_PREFIX_LEVELS + 1)]


def ours(topic: str, node: str) -> bool:
    """Whether `topic` is a discovery config topic of `node` (a wildcard filter may find
    another system's topic that fits it)."""
    levels = topic.split("/")
    return (len(levels) >= 5 and levels[-1] == "config" and levels[-3] == node
            and levels[-4] in COMPONENTS)


def discovery_prefix(topic: str) -> str:
    """`<prefix>/<component>/<node>/<object>/config` -> `<prefix>`."""
    return topic.rsplit("/", 4)[0]


def warn_of_a_misspelt_prefix(config: Config) -> None:
    """A warning where `homeassistant.prefix` is like Home Assistant's default but not it (a
    user check: `homeasistant` moved every entity where Home Assistant does not look, said
    at INFO): Home Assistant reads discovery only under the prefix its MQTT integration is
    set to, which few change."""
    settings = config.homeassistant
    if not settings.enabled or settings.prefix == DEFAULT_DISCOVERY_PREFIX:
        return
    alike = difflib.SequenceMatcher(None, settings.prefix.lower(),
                                    DEFAULT_DISCOVERY_PREFIX).ratio() >= MISSPELT_PREFIX_LIKENESS
    if alike:
        log.warning("homeassistant.prefix %r is not Home Assistant's default discovery prefix "
                    "%r, though much like it: Home Assistant finds these entities only if its "
                    "MQTT integration's discovery prefix is %r too; if that is a typo, write "
                    "%r (or leave the key out)", settings.prefix, DEFAULT_DISCOVERY_PREFIX,
                    settings.prefix, DEFAULT_DISCOVERY_PREFIX)


def remove_elsewhere(config: Config, link: Any) -> None:
    """Have the link remove, once connected, the entities of this node that earlier runs
    published under another discovery prefix than this run's (`homeassistant.prefix`
    changed), or under any prefix when discovery is off: their configs are retained, and Home
    Assistant would keep showing them. Quiet when there are none or the broker refuses the
    read (one that never served Home Assistant may not let this client read there); what
    this run's own prefix holds is `DiscoveryPublisher`'s."""
    node = node_id(config.device_id)
    current = config.homeassistant.prefix if config.homeassistant.enabled else None
    why = ("homeassistant.enabled is false" if current is None
           else f"the discovery prefix is now {current}")

    def clear(found: list[str]) -> None:
        topics = [t for t in found if ours(t, node) and discovery_prefix(t) != current]
        for topic in topics:
            link.publish_state(topic, b"", 1)
        if topics:  # entities Home Assistant showed are gone from it: worth a warning
            log.warning("removed %d Home Assistant entities that earlier runs published under "
                        "%s (%s)", len(topics), ", ".join(sorted({discovery_prefix(t)
                                                                 for t in topics})), why)

    for topic_filter in other_prefix_filters(config):
        link.sweep_retained(topic_filter, clear)


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
                 password: str | None, drift: bool = False) -> None:
        self.configs = discovery_configs(config, labels, model, drift)
        prefix, data = config.homeassistant.prefix, config.topic_prefix
        if data == prefix or data.startswith(f"{prefix}/") or prefix.startswith(f"{data}/"):
            log.warning("homeassistant.prefix %r overlaps this device's own topics (%s/...): "
                        "Home Assistant reads everything under its discovery prefix, frames "
                        "included, and the device's topics would share levels with the "
                        "discovery configs; use its default, homeassistant", prefix, data)
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
            # read once the link is connected (a broker it cannot reach or that refuses it is
            # said by the link: once) and this run's configs are on the broker: then a read
            # that finds none of them is one the broker's ACL keeps from this client
            _wait_for(lambda: self._link.connected, float("inf"), poll_s=0.5)
            handed = _wait_for(lambda: not self._link.states_waiting, CONFIGS_SENT_WAIT_S)
            retained, seen = self._retained()
            # a daemon giving way to another publishing as this device sets none of its own
            if handed and self.configs and not seen & set(self.configs) \
                    and not self._link.giving_way:
                self._say_unreadable()
            self.cleared = stale_topics(self.configs, retained)
            for topic in self.cleared:
                self._link.publish_state(topic, b"", 1)
            if self.cleared:
                log.info("removed %d Home Assistant entities no longer in the config",
                         len(self.cleared))
        finally:
            self.done.set()

    def _say_unreadable(self) -> None:
        user = self._config.mqtt.username
        who = f"the user {user!r}" if user else "this client"
        log.warning("Home Assistant discovery: none of this device's %d configs came back from "
                    "the broker under %s: its ACL does not let %s read there (Mosquitto's "
                    "acl_file keeps such messages without a word), so the entities of earlier "
                    "configs cannot be found and are not removed; allow it to read %s in the "
                    "broker's ACL", len(self.configs), self._config.homeassistant.prefix, who,
                    config_filter(self._config))

    def _retained(self) -> tuple[list[str], set[str]]:
        """The config topics of this node the broker holds retained, and every config topic
        of it read at all (retained, or live as the link sets this run's)."""
        mqtt = self._config.mqtt
        node = node_id(self._config.device_id)
        found: list[str] = []
        seen: set[str] = set()
        lock = threading.Lock()

        def receive(topic: str, payload: bytes, retained: bool) -> None:
            if payload and ours(topic, node):
                with lock:
                    seen.add(topic)
                    if retained:
                        found.append(topic)

        reader = BrokerSubscription(
            mqtt.url,
            [(config_filter(self._config), RETAINED_READ_QOS)],
            receive,
            # the link's client id with a suffix: an ACL or a broker log that goes by client
            # ids meets the pair together
            client_id=f"{mqtt.client_id or f'edge-{self._config.device_id}'}-discovery",
            username=mqtt.username, password=self._password,
            ca_file=str(mqtt.ca_file) if mqtt.ca_file else None,
            certfile=str(mqtt.certfile) if mqtt.certfile else None,
            keyfile=str(mqtt.keyfile) if mqtt.keyfile else None,
            # the daemon's link logs the broker's failures already; this one is said below,
            # in the config's terms (a user check: it advised --mqtt, which edge run has not)
            log_first_failure=False, log_failures=False, names=config_names(mqtt))
        reader.start()
        try:
            failure = reader.subscription_failure(30.0)
            if failure is not None:
                log.warning("Home Assistant discovery: could not read the retained configs from "
                            "%s (%s); stale entities are not removed this time", mqtt.url,
                            failure)
                return [], set(self.configs)  # said: no second line of it
            threading.Event().wait(RETAINED_WAIT_S)
        finally:
            reader.stop()
        with lock:
            return list(found), set(seen)


def _wait_for(condition: Callable[[], bool], timeout: float, poll_s: float = 0.1) -> bool:
    """Poll `condition` until it holds (True) or `timeout` seconds pass (False)."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() >= deadline:
            return False
        time.sleep(poll_s)
    return True

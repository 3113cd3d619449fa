"""The daemon config: TOML, validated once at start, unknown keys rejected with their path."""

from __future__ import annotations

import difflib
import json
import logging
import re
import socket
import stat
import sys
from collections.abc import Mapping
from pathlib import Path, PurePath
from typing import Any, Literal, get_args, get_origin

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from edge.errors import ConfigError
from edge.files import running_user
from edge.mqtt.topics import topic_prefix_problem
from edge.mqtt.url import PASSWORD_ENV, broker_from_url
from edge.objects_config import (
    HomeAssistantConfig,
    MaskConfig,
    ObjectsConfig,
    TrackingConfig,
    ZoneConfig,
    label_names,
    unique_zone_names,
)
from edge.redact import REDACTED, redact_text, redact_uri
from edge.wording import likely_meant

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10 (JetPack 6)
    import tomli as tomllib

log = logging.getLogger(__name__)


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


class ModelConfig(_Section):
    path: Path = Field(description="converted model (.onnx); TensorRT engines are built from it "
                                   "and cached")
    backend: Literal["auto", "onnxruntime", "tensorrt"] = Field(
        default="auto", description="auto: TensorRT when it and a GPU are present, else "
                                    "ONNX Runtime")
    precision: Literal["auto", "int8", "fp16", "fp32"] = Field(
        default="auto", description="TensorRT engine precision, decided from the model's spec; "
                                    "auto: int8 for a QDQ model, else fp16 (fp32 on TensorRT 11, "
                                    "which builds strongly typed networks)")
    calibration_cache: Path | None = Field(
        default=None, description="TensorRT 8.5-10: the calibration cache (`edge calibrate "
                                  "--cache`) an int8 engine of a float model takes its scales "
                                  "from, as `edge build-engine --cache` does (relative paths: "
                                  "to the config's folder)")
    engine_dir: Path | None = Field(default=None, description="engine cache folder; default: "
                                                              "next to the model")
    build_engine: bool = Field(default=True, description="build a missing or stale engine at "
                                                         "start (false: that is an error)")
    workspace_mb: int = Field(default=1024, ge=16, le=65536)
    dla_core: int = Field(default=-1, ge=-1, le=3, description="Jetson DLA core; -1: GPU only")
    gpu_memory: Literal["auto", "cuda-python", "pycuda"] = "auto"
    threads: int = Field(default=0, ge=0, le=256,
                         description="inference threads of the one shared runner; 0: one a "
                                     "physical core this process may run on (ONNX Runtime; "
                                     "not pinned to cores)")
    max_batch: int | None = Field(
        default=None, ge=1, le=64,
        description="frames of different cameras run together, at most this many; default: the "
                    "number of cameras (up to 8) for a dynamic-batch model, else the model's batch")
    batch_timeout_ms: float = Field(
        default=4.0, ge=0, le=1000,
        description="how long a ready frame waits for other cameras' frames to batch with; a "
                    "lone camera never waits")
    score_threshold: float | None = Field(default=None, gt=0, lt=1,
                                          description="overrides the model's default")
    iou_threshold: float | None = Field(default=None, gt=0, le=1,
                                        description="NMS IoU; overrides the model's default")

    @field_validator("calibration_cache")
    @classmethod
    def _cache_is_a_file(cls, path: Path | None) -> Path | None:
        if path is not None and not path.is_file():
            made = "a folder" if path.is_dir() else "not there"
            raise ValueError(f"{path} is {made}: give the calibration cache `edge calibrate "
                             "--cache FILE` wrote, or remove the key")
        return path

    @field_validator("engine_dir")
    @classmethod
    def _engine_dir_is_a_folder(cls, path: Path | None) -> Path | None:
        if path is not None and path.exists() and not path.is_dir():
            raise ValueError(f"{path} is a file: give the folder engines are cached in (made "
                             "when missing)")
        return path


#: A snapshot camera's shortest interval (20 a second): faster, read the camera's stream.
MIN_SNAPSHOT_INTERVAL_S = 0.05


class CameraConfig(_Section):
    name: str = Field(pattern=r"^[A-Za-z0-9_-]{1,64}$",
                      description="used in topics: letters, digits, _ and - only")
    source: str = Field(description="v4l2:///dev/video0, csi://0, rtsp://..., http://..., "
                                    "file://..., synthetic://shapes?fps=15&seed=1")
    stall_s: float = Field(default=10.0, gt=0, le=3600,
                           description="a live source (rtsp, http, v4l2, csi) that delivers no "
                                       "frame for this long is reopened")
    reconnect_max_s: float = Field(default=30.0, gt=0, le=3600,
                                   description="reopening a live source waits 1 s, doubling "
                                               "up to this (with jitter), forever")
    zones: list[ZoneConfig] = Field(default_factory=list,
                                    description="named polygons; objects in each are counted")
    objects: ObjectsConfig | None = Field(
        default=None, description="which detections this camera reports; replaces [objects]")
    masks: list[MaskConfig] = Field(default_factory=list,
                                    description="polygons whose detections are dropped")
    sampling: dict[str, Any] | None = Field(
        default=None, description="overrides of [sampling] keys for this camera")
    snapshot_interval_s: float | None = Field(
        default=None, ge=MIN_SNAPSHOT_INTERVAL_S, le=3600,
        description="fetch the http(s) source as a still image (the camera's snapshot URL) "
                    "every this many seconds: for a camera that serves no stream (at most "
                    "half of stall_s)")


    _unique_zones = field_validator("zones")(unique_zone_names)

    @field_validator("snapshot_interval_s")
    @classmethod
    def _snapshots_within_stall(cls, interval: float | None,
                                info: ValidationInfo) -> float | None:
        stall_s = info.data.get("stall_s")
        if interval is not None and stall_s is not None and 2 * interval > stall_s:
            raise ValueError(f"{interval:g} must be at most half of stall_s {stall_s:g}, or the "
                             "wait for a snapshot that is slow to come reads as a stalled "
                             f"camera; raise stall_s to {2 * interval:g} or more")
        return interval

    @field_validator("name")
    @classmethod
    def _not_the_commands_level(cls, name: str) -> str:
        if name == "cmd":  # <prefix>/cmd/<x> is a command to the device, <x> any name
            raise ValueError("camera name 'cmd' is the commands' topic level (<prefix>/cmd/"
                             "<command>); choose another")
        return name


class MqttConfig(_Section):
    url: str = Field(default="mqtt://127.0.0.1:1883", description="mqtt:// or mqtts:// (TLS); "
                     "no user info: use username and password_file")
    prefix: str | None = Field(default=None, description="topic prefix; default edge/<device_id>")
    client_id: str | None = Field(default=None, description="default edge-<device_id>")
    username: str | None = None
    password: str | None = Field(default=None, repr=False,
                                 description="prefer password_file or $EDGE_MQTT_PASSWORD")
    password_file: Path | None = Field(default=None, description="file holding the "
                                             "password (under systemd root:edge, mode 0640); "
                                             "alternative to password")
    ca_file: Path | None = Field(default=None, description="CA bundle (PEM) for mqtts://; "
                                       "default: the system's CAs")
    certfile: Path | None = Field(default=None, description="client certificate (PEM) "
                                        "for mqtts://")
    keyfile: Path | None = Field(default=None, description="client certificate's private "
                                       "key (PEM); required with certfile")
    tls_insecure: bool = Field(default=False, description="mqtts:// without checking that the "
                               "broker's certificate names its host (testing only)")
    keepalive_s: int = Field(default=30, ge=5, le=3600)
    qos: int = Field(default=1, ge=0, le=1, description="QoS of detection messages")
    outbox: Literal["memory", "disk"] = Field(
        default="memory", description="where detections wait for the broker; disk: they also "
                                      "survive a restart, a crash or a power cut")
    outbox_path: Path = Field(default=Path("/var/lib/edge/outbox.sqlite"),
                                    description="SQLite file of the disk outbox")
    outbox_size: int = Field(default=1000, ge=1, le=10_000_000,
                             description="detection and event messages kept while the broker is "
                                         "away; beyond this the oldest detections are dropped "
                                         "(and counted), events only when no detection is left")
    outbox_max_mb: float = Field(default=64.0, gt=0, le=100_000,
                                 description="payload bytes kept, at most (oldest dropped)")
    outbox_max_age_s: float = Field(default=7 * 86400.0, gt=0,
                                    description="older detections are dropped (and counted); "
                                                "aged by the time since boot, which NTP does "
                                                "not set")
    flush_timeout_s: float = Field(default=5.0, ge=0, le=600,
                                   description="on stop, wait this long for the broker to take "
                                               "the outbox")
    reconnect_min_s: float = Field(default=1.0, gt=0, le=60)
    reconnect_max_s: float = Field(default=30.0, gt=0, le=3600)

    @field_validator("url")
    @classmethod
    def _known_scheme(cls, url: str) -> str:
        broker = broker_from_url(url)  # its ValueError says what is expected
        if broker.username is not None or broker.password is not None:
            raise ValueError("user info (user:password@) is not accepted in the URL, so that "
                             "it is never logged; set mqtt.username and mqtt.password_file (or "
                             f"${PASSWORD_ENV})")
        return url

    @field_validator("prefix")
    @classmethod
    def _valid_prefix(cls, prefix: str | None) -> str | None:
        if prefix is None:
            return None
        problem = topic_prefix_problem(prefix)
        if problem is not None:
            raise ValueError(f"{problem}; e.g. edge/gate-01")
        return prefix

    @field_validator("outbox_path", mode="before")
    @classmethod
    def _named_file(cls, path: object) -> object:
        if isinstance(path, str) and not path.strip():
            raise ValueError("is empty; give the SQLite file to keep the outbox in, e.g. "
                             "/var/lib/edge/outbox.sqlite")
        return path

    @field_validator("ca_file", "certfile", "keyfile", "password_file")
    @classmethod
    def _readable_file(cls, path: Path | None) -> Path | None:
        if path is not None:
            try:
                head = path.read_bytes()[:4096]
            except OSError as exc:
                raise ValueError(f"cannot read {path}: {exc.strerror}; give the path of an "
                                 "existing file the daemon's user can read") from exc
            if not head.strip():
                raise ValueError(f"{path} is empty")
        return path

    @field_validator("ca_file", "certfile", "keyfile")
    @classmethod
    def _pem_file(cls, path: Path | None) -> Path | None:
        if path is not None and b"-----BEGIN " not in path.read_bytes():
            raise ValueError(f"{path} is not a PEM file (no -----BEGIN line); convert it with "
                             "openssl, e.g. `openssl x509 -inform der -in cert.der -out "
                             "cert.pem`")
        return path

    @field_validator("password_file")
    @classmethod
    def _private_file(cls, path: Path | None) -> Path | None:
        """Warned about when every user may read it. Group access is the documented set-up
        (root:edge, mode 0640: the service's user reads a file it cannot change), so it is
        not: `chmod 600` on that root-owned file locked the service out."""
        if path is not None and path.stat().st_mode & stat.S_IRWXO:
            log.warning("mqtt.password_file %s can be read by every user; restrict it with "
                        "`chmod o-rwx %s` (root:edge with mode 0640, or mode 0600 owned by "
                        "the daemon's user)", path, path)
        return path

    @model_validator(mode="after")
    def _consistent(self) -> MqttConfig:
        tls_keys = [key for key in ("ca_file", "certfile", "keyfile") if getattr(self, key)]
        if self.tls_insecure:
            tls_keys.append("tls_insecure")
        if tls_keys and not self.tls:
            raise ValueError(f"{', '.join(tls_keys)} set, but url is mqtt:// (no TLS): the "
                             "password and data would travel in plaintext; use mqtts://")
        if (self.certfile is None) != (self.keyfile is None):
            raise ValueError("certfile and keyfile go together: give both, or neither")
        if self.password is not None and self.password_file is not None:
            raise ValueError("password and password_file are alternatives: keep one")
        if self.password == "":
            raise ValueError("password is empty (the broker refuses it as 'not authorized'): "
                             "set it, or leave it out for password_file or $EDGE_MQTT_PASSWORD")
        if (self.password is not None or self.password_file is not None) and not self.username:
            raise ValueError("a password needs a username: set mqtt.username")
        if "outbox_path" in self.model_fields_set and self.outbox == "memory":
            raise ValueError('outbox_path is set, but outbox = "memory" keeps waiting messages '
                             'in memory (lost at a restart): set outbox = "disk" to keep them '
                             "in outbox_path, or remove outbox_path")
        if self.reconnect_min_s > self.reconnect_max_s:
            raise ValueError(f"reconnect_min_s ({self.reconnect_min_s:g}) is more than "
                             f"reconnect_max_s ({self.reconnect_max_s:g}): the wait starts at "
                             "the first and doubles up to the second")
        return self

    def password_value(self, environ: Mapping[str, str]) -> str | None:
        """The password: inline, from `password_file`, or from $EDGE_MQTT_PASSWORD (in that
        order); None without a username."""
        if not self.username:
            return None
        if self.password is not None:
            return self.password
        if self.password_file is not None:
            try:
                password = self.password_file.read_text(encoding="utf-8").rstrip("\r\n")
            except (OSError, UnicodeDecodeError) as exc:
                raise ConfigError(f"mqtt.password_file {self.password_file}: cannot read it "
                                  f"({exc}); make it a UTF-8 text file the daemon can read") \
                    from exc
            if "\n" in password:  # the whole text would be sent, and refused as "not authorized"
                raise ConfigError(f"mqtt.password_file {self.password_file} holds more than one "
                                  "line; leave only the password in it")
            return password
        return environ.get(PASSWORD_ENV)

    def ignored_password_env(self, environ: Mapping[str, str]) -> str | None:
        """A warning when $EDGE_MQTT_PASSWORD is set but not used: no mqtt.username to send it
        with, or the config's password or password file used instead (an operator who changed
        the password in /etc/edge/edge.env and left an old password_file in place is never
        told otherwise); None else."""
        if not environ.get(PASSWORD_ENV):
            return None
        if not self.username:  # a user check: a login the broker then refused, unexplained
            return (f"${PASSWORD_ENV} is set but mqtt.username is not: the password goes only "
                    "with a user name; set mqtt.username, or unset the variable")
        used = self.password_source({})
        if used is None:
            return None
        return (f"${PASSWORD_ENV} is set but {used} is used: the config's password comes "
                f"first; remove one of them")

    def password_source(self, environ: Mapping[str, str]) -> str | None:
        """Where `password_value` takes the password from, as the config names it; None
        where no password is sent."""
        if not self.username:
            return None
        return ("mqtt.password" if self.password is not None else
                f"mqtt.password_file {self.password_file}" if self.password_file is not None
                else f"${PASSWORD_ENV}" if environ.get(PASSWORD_ENV) else None)

    @property
    def display_url(self) -> str:
        return redact_uri(self.url)

    @property
    def host(self) -> str:
        return broker_from_url(self.url).host

    @property
    def port(self) -> int:
        return broker_from_url(self.url).port

    @property
    def tls(self) -> bool:
        return broker_from_url(self.url).tls


class FramesConfig(_Section):
    interval_s: float = Field(default=10.0, ge=0,
                              description="publish a JPEG every N seconds; 0 disables")
    on_detection: bool = Field(default=False,
                               description="also publish when a frame has detections "
                                           "(still at most one per min_gap_s)")
    min_gap_s: float = Field(default=1.0, ge=0)
    max_height: int = Field(default=480, ge=16, le=4320, description="downscale taller frames")
    quality: int = Field(default=80, ge=1, le=100, description="JPEG quality")
    draw: bool = Field(default=True, description="draw detection boxes on published frames")
    retain: bool = False


class SamplingLimits(_Section):
    """Upper bounds on published samples; unset means unbounded."""

    per_minute: int | None = Field(default=None, gt=0, description="samples per minute")
    per_hour: int | None = Field(default=None, gt=0, description="samples per hour")
    per_day: int | None = Field(default=None, gt=0, description="samples per day")
    bytes_per_hour: int | None = Field(default=None, gt=0,
                                       description="JPEG bytes (drawn and clean) per hour")


class SamplingConfig(_Section):
    """Which frames are worth a human look, beyond `[frames]`' interval and on-detection.

    Each policy that fires adds its reason to the sample's `frame/meta`."""

    uncertain_band: list[float] | None = Field(
        default=None, description="[low, high] score band, e.g. around the threshold: a frame "
                                  "with a detection scored inside it is sampled ('uncertain')")
    rare_labels: list[str] = Field(default=[], description="labels always worth a sample")
    _label_names = field_validator("rare_labels")(label_names)
    rare_below: float | None = Field(
        default=None, gt=0, lt=1, description="also rare: labels making up less than this "
                                              "fraction of this camera's detections so far")
    count_change: bool = Field(default=False, description="sample when the number of objects "
                                                          "changes and stays changed")
    count_steady_frames: int = Field(default=3, ge=1, le=1000,
                                     description="frames a new count must last to count")
    audit_rate: float = Field(default=0.0, ge=0, lt=1,
                              description="unbiased random sample of frames for accuracy "
                                          "estimates (fraction of frames)")
    seed: int | None = Field(default=None, description="audit random seed, for repeatable "
                                                      "draws (each camera its own from it)")
    limits: SamplingLimits = SamplingLimits()

    @field_validator("uncertain_band")
    @classmethod
    def _band_inside_unit(cls, band: list[float] | None) -> list[float] | None:
        if band is not None and (len(band) != 2 or not 0 < band[0] < band[1] < 1):
            raise ValueError("expected [low, high] with 0 < low < high < 1")
        return band


class DriftConfig(_Section):
    """Per-camera drift of inputs and outputs against the model's reference profile."""

    enabled: Literal["auto", "on", "off"] = Field(
        default="auto", description="auto: on when the model has a reference profile")
    reference: Path | None = Field(
        default=None, description="reference profile JSON; default "
                                  "<model>.drift.json")
    window_s: float = Field(default=300.0, ge=1, le=86400,
                            description="statistics window (seconds)")
    min_frames: int = Field(default=100, ge=1, description="frames a window needs")
    threshold: float = Field(default=0.25, gt=0, le=10, description="PSI above which a "
                                                                    "statistic drifts")
    metric: Literal["psi", "kl"] = "psi"
    alert_on: list[Literal["input", "scores", "counts", "classes"]] = Field(
        default=["input", "scores"], min_length=1,
        description="statistics that raise alerts (all are reported): input brightness and "
                    "contrast, scores of all classes together, counts (detections per frame, "
                    "box sizes), classes (each class's scores); counts and classes need "
                    "windows holding many distinct objects")


class StatsConfig(_Section):
    interval_s: float = Field(default=5.0, gt=0, le=3600)


class LogConfig(_Section):
    level: Literal["debug", "info", "warning", "error"] | None = Field(
        default=None, description="log level of `edge run`; default: the --log-level option")
    summary_interval_s: float = Field(default=60.0, ge=0, le=86400,
                                      description="one summary line (cameras, MQTT, outbox) "
                                                  "every N seconds; 0 disables")


class Config(_Section):
    device_id: str = Field(default_factory=socket.gethostname, pattern=r"^[A-Za-z0-9_.-]{1,64}$")
    model: ModelConfig
    cameras: list[CameraConfig] = Field(min_length=1)
    mqtt: MqttConfig = MqttConfig()
    frames: FramesConfig = FramesConfig()
    stats: StatsConfig = StatsConfig()
    tracking: TrackingConfig = TrackingConfig()
    objects: ObjectsConfig = ObjectsConfig()
    homeassistant: HomeAssistantConfig = HomeAssistantConfig()
    log: LogConfig = LogConfig()
    sampling: SamplingConfig = SamplingConfig()
    drift: DriftConfig = DriftConfig()
    #: Where the config came from (its file), as its errors name it; set by `config_from_dict`.
    _origin: str = PrivateAttr(default="")

    def objects_of(self, camera: CameraConfig) -> ObjectsConfig:
        """The detections `camera` reports: its own `objects`, else `[objects]`."""
        return camera.objects if camera.objects is not None else self.objects

    def key(self, name: str) -> str:
        """`edge.toml: cameras.0.source`: config key `name` as an error about its value names
        it, after the config's file, as validation errors do."""
        return f"{self._origin}: {name}" if self._origin else name

    @field_validator("cameras")
    @classmethod
    def _unique_names(cls, cameras: list[CameraConfig]) -> list[CameraConfig]:
        names = [c.name for c in cameras]
        repeated = [
            f"{name!r} at " + " and ".join(f"cameras.{i}" for i, n in enumerate(names) if n == name)
            for name in dict.fromkeys(n for n in names if names.count(n) > 1)]
        if repeated:
            raise ValueError(f"camera names must be unique (each names its topics): "
                             f"{'; '.join(repeated)}; rename all but one")
        return cameras

    @model_validator(mode="after")
    def _camera_sampling_valid(self) -> Config:
        for index, camera in enumerate(self.cameras):
            try:
                self.sampling_for(camera)
            except ValidationError as exc:
                raise ValueError(f"cameras.{index}.sampling:\n"
                                 f"{describe_errors(exc, SamplingConfig)}") from None
        return self

    def sampling_key(self, camera: CameraConfig) -> str:
        """Where `sampling_for(camera)`'s settings are set, for messages about them."""
        return (f"cameras.{self.cameras.index(camera)}.sampling" if camera.sampling
                else "sampling")

    def sampling_for(self, camera: CameraConfig) -> SamplingConfig:
        """[sampling] with the camera's overrides applied (validated as a whole)."""
        if not camera.sampling:
            return self.sampling
        merged = self.sampling.model_dump()
        for key, value in camera.sampling.items():
            if key == "limits" and isinstance(value, dict):
                merged["limits"] = {**merged["limits"], **value}
            else:
                merged[key] = value
        return SamplingConfig.model_validate(merged)

    @property
    def topic_prefix(self) -> str:
        return self.mqtt.prefix or f"edge/{self.device_id}"


def config_from_dict(data: dict[str, Any], origin: str) -> Config:
    """Validate strictly, as JSON: "30" is not 30, true is not 1, nan and inf are no numbers,
    while paths and arrays still come from TOML strings and lists."""
    try:
        text = json.dumps(data, default=_json_value)
    except TypeError as exc:
        raise ConfigError(f"{origin}: invalid config: {exc}") from exc
    try:
        config = Config.model_validate_json(text, strict=True)
    except ValidationError as exc:
        raise ConfigError(f"{origin}: invalid config:\n{describe_errors(exc, Config, data)}"
                          ) from exc
    config._origin = origin
    return config


def _json_value(value: object) -> str:
    if isinstance(value, PurePath):
        return str(value)
    raise TypeError(f"{value!r} ({type(value).__name__}) is not a value this config takes; "
                    "quote dates and times as strings")


#: The config's paths, by section, that a relative value names from the config's own folder
#: (not the working directory: under systemd that is the state directory, and a user check's
#: password_file beside the config was looked for there).
PATHS_BESIDE_THE_CONFIG = {
    "model": ("path", "calibration_cache", "engine_dir"),
    "mqtt": ("outbox_path", "password_file", "ca_file", "certfile", "keyfile"),
    "drift": ("reference",),
}


def load_config(path: Path) -> Config:
    """Read and validate a TOML config; relative paths in it (`PATHS_BESIDE_THE_CONFIG`) are
    resolved against its folder."""
    try:
        text = path.read_text(encoding="utf-8-sig")  # Notepad's UTF-8 starts with a BOM
    except PermissionError as exc:  # a service's user and a config left root's alone
        raise ConfigError(f"config {path} cannot be read by {running_user()}: permission "
                          "denied; give that user read access to it and its folders (as "
                          "systemd/README.md sets it up: chown root:edge, chmod 0640)") from exc
    except IsADirectoryError as exc:
        raise ConfigError(f"config {path} is a folder; pass the TOML file with --config") \
            from exc
    except OSError as exc:
        raise ConfigError(f"cannot read config {path}: {exc.strerror}; pass an existing TOML "
                          "file with --config") from exc
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: not UTF-8 text (byte {exc.start} is "
                          f"0x{exc.object[exc.start]:02x}); TOML files are UTF-8: re-save it "
                          "as UTF-8") from exc
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        hint = ("; a key or table is given twice, or a camera's [[cameras.zones]] or "
                "[cameras.sampling] comes before the [[cameras]] it belongs to"
                if "overwrite" in str(exc) or "declare" in str(exc) else "")
        raise ConfigError(f"{path}: not valid TOML: {exc}{hint}") from exc
    cameras = data.get("cameras")
    if isinstance(cameras, dict):  # `[cameras]`, or `[[cameras.zones]]` before any camera
        tables = ", ".join(f"[cameras.{key}]" for key in cameras if isinstance(cameras[key],
                                                                             (dict, list)))
        raise ConfigError(f"{path}: cameras is a table ({tables or '[cameras]'}), not a list "
                          "of cameras: each camera starts with [[cameras]] (two brackets), and "
                          "its [[cameras.zones]] and [cameras.sampling] follow that line")
    for section, keys in PATHS_BESIDE_THE_CONFIG.items():
        table = data.get(section)
        if not isinstance(table, dict):
            continue
        for key in keys:
            # an empty one is refused as it is, not made the config's folder
            if isinstance(table.get(key), str) and table[key].strip():
                table[key] = str(path.parent / Path(table[key]).expanduser())
    config = config_from_dict(data, str(path))
    if config.mqtt.password is not None:
        _warn_if_readable_by_all(path)
    _warn_of_shared_sources(config)
    return config


def _warn_of_shared_sources(config: Config) -> None:
    """Cameras that read one source are warned about: each opens and decodes it on its own
    (a stream twice over the network, where many cameras allow few clients), and it is most
    often a camera block copied without its source changed."""
    by_source: dict[str, list[str]] = {}
    for camera in config.cameras:
        by_source.setdefault(camera.source.strip(), []).append(camera.name)
    for source, names in by_source.items():
        if len(names) > 1:
            quoted = [f"'{name}'" for name in names]
            log.warning("cameras %s and %s read the same source %s: each opens and decodes it "
                        "on its own; give each camera its own source, unless that is meant",
                        ", ".join(quoted[:-1]), quoted[-1], redact_uri(source))


def _warn_if_readable_by_all(path: Path) -> None:
    """A config holding the broker's password is warned about when every user may read it,
    as a `password_file` is."""
    try:
        readable = bool(path.stat().st_mode & stat.S_IROTH)
    except OSError:  # read a moment ago; a stat that fails now says nothing of its mode
        return
    if readable:
        log.warning("mqtt.password is written in %s, which every user can read; move it to "
                    "mqtt.password_file (root:edge, mode 0640) or $EDGE_MQTT_PASSWORD, or "
                    "restrict the config with `chmod o-rwx %s`", path, path)


#: Frigate's object keys that have no key of that name here, and what does their work.
FRIGATE_KEYS = {
    "threshold": "Frigate's per-label threshold (the median score that makes a tracked "
                 "object real) is event_score here (default: tracking.event_score)",
    "track": "the labels reported are [objects] labels here (or a camera's [cameras.objects])",
    "mask": "masks are [[cameras.masks]] polygons here (points = [[x, y], ...])",
}


def describe_errors(exc: ValidationError, model: type[BaseModel] | None = None,
                    data: Mapping[str, Any] | None = None) -> str:
    """One line per problem: `  cameras.0.source: expected ...; got ...`; with the `model`
    that was validated, an unknown key gets the known one it most likely meant; with the
    `data`, a line on a camera's or zone's key ends naming them (`cameras.0.zones.1.points:
    needs at least 3 items; got 2 (camera front, zone porch)`)."""
    lines = []
    for error in exc.errors():
        where = ".".join(str(part) for part in error["loc"]) or "(top level)"
        if error["type"] == "extra_forbidden":
            meant = _meant_key(model, error["loc"]) if model is not None else None
            elsewhere = FRIGATE_KEYS.get(str(error["loc"][-1]))
            message = (f"unknown key; did you mean {meant}?" if meant else
                       f"unknown key; {elsewhere}" if elsewhere else
                       "unknown key; remove it or check its spelling")
        elif error["type"] == "missing":
            message = "required key is missing"
        else:
            text = _in_words(error)
            if error["type"] == "value_error":  # our validators' own words, without pydantic's
                text = text.removeprefix("Value error, ")
            # a path the message names already (one it could not read) is not repeated
            value = error.get("input")
            shown = "" if isinstance(value, str) and "/" in value and value in text else \
                _shown_input(error["loc"], value)
            message = (f"{text}{shown}"
                       f"{_meant_value(error)}")
        # a check across sections names its own keys (a user check: "(top level):
        # cameras.0.sampling: ...")
        own = not error["loc"] and error["type"] == "value_error"
        lines.append(f"  {message}" if own else
                     f"  {where}: {message}{_names_at(error['loc'], data)}")
    return "\n".join(lines)


def _names_at(loc: tuple[int | str, ...], data: Mapping[str, Any] | None) -> str:
    """` (camera front, zone porch)` for a key inside a camera's (or its zone's) list entry
    whose name the `data` gives, '' elsewhere (a user check: a 2-point zone was named by its
    list indices alone)."""
    if data is None or len(loc) < 3 or loc[0] != "cameras" or not isinstance(loc[1], int) \
            or loc[-1] == "name":  # a name's own problem: the line quotes it already
        return ""
    names = []
    camera = _entry(data.get("cameras"), loc[1])
    if isinstance(camera.get("name"), str):
        names.append(f"camera {camera['name']}")
    if len(loc) >= 5 and loc[2] == "zones" and isinstance(loc[3], int):
        zone = _entry(camera.get("zones"), loc[3])
        if isinstance(zone.get("name"), str):
            names.append(f"zone {zone['name']}")
    return f" ({', '.join(names)})" if names else ""


def _entry(entries: object, index: int) -> Mapping[str, Any]:
    """The `index`th table of a TOML array of tables, {} where there is none."""
    entry = entries[index] if isinstance(entries, list) and 0 <= index < len(entries) else {}
    return entry if isinstance(entry, Mapping) else {}


def _meant_key(model: type[BaseModel], loc: tuple[int | str, ...]) -> str | None:
    """The key of `model` at `loc`'s section that its last part most likely misspells (`stal_s`
    -> `stall_s`, `qso` -> `qos`), if one is alike."""
    section: type[BaseModel] | None = model
    for part in loc[:-1]:
        if isinstance(part, int):
            continue
        field = section.model_fields.get(part) if section is not None else None
        section = _section_type(field.annotation) if field is not None else None
    if section is None:
        return None
    key = str(loc[-1])
    return (likely_meant(key, list(section.model_fields), cutoff=0.7)
            or _KEYS_OF_OTHER_TOOLS.get((section.__name__, key.lower())))


#: (section, key) -> this config's key, for names other camera tools' configs use (Frigate's
#: mqtt host/port/user, a stream's url): unlike any key here, so no spelling hint finds them.
_BROKER_URL = "url (mqtt://HOST:PORT, mqtts:// for TLS)"
_KEYS_OF_OTHER_TOOLS = {
    ("MqttConfig", "host"): _BROKER_URL, ("MqttConfig", "hostname"): _BROKER_URL,
    ("MqttConfig", "broker"): _BROKER_URL, ("MqttConfig", "server"): _BROKER_URL,
    ("MqttConfig", "port"): _BROKER_URL, ("MqttConfig", "tls"): _BROKER_URL,
    ("MqttConfig", "user"): "username", ("MqttConfig", "topic_prefix"): "prefix",
    ("MqttConfig", "tls_ca_certs"): "ca_file", ("MqttConfig", "tls_client_cert"): "certfile",
    ("MqttConfig", "tls_client_key"): "keyfile",
    **{("CameraConfig", key): "source" for key in (
        "url", "uri", "rtsp", "rtsp_url", "stream", "input", "path", "device", "src")},
    ("CameraConfig", "id"): "name",
}


def _section_type(annotation: Any) -> type[BaseModel] | None:
    """The model a field holds: itself, or inside a list or an optional."""
    # `list[X]` is a type on Python 3.10, which pydantic before 2.11 refuses to issubclass()
    if get_origin(annotation) is None and isinstance(annotation, type) and \
            issubclass(annotation, BaseModel):
        return annotation
    for argument in get_args(annotation):
        found = _section_type(argument)
        if found is not None:
            return found
    return None


def _meant_value(error: Any) -> str:
    """`: did you mean 'normalised'?` after a word the key does not take but one it takes is
    like (a user check: `units = "normalized"`), else ''."""
    given = error.get("input")
    if error["type"] != "literal_error" or not isinstance(given, str):
        return ""
    words = re.findall(r"'([^']*)'", str((error.get("ctx") or {}).get("expected", "")))
    meant = difflib.get_close_matches(given.lower(), words, n=1, cutoff=0.7)
    return f": did you mean {meant[0]!r}?" if meant and meant[0] != given else ""


#: The key of a section that a value given as the section itself most likely meant.
_FIRST_KEYS = {"model": "path", "mqtt": "url"}


def _in_words(error: Any) -> str:
    """pydantic's message, or for a name pattern, a number's bounds or a list's length what
    the value must be instead of the rule it broke (`String should match pattern '^[A-Za-z0-9_
    -]{1,64}$'`)."""
    context = error.get("ctx") or {}
    kind = error["type"]
    if kind == "string_pattern_mismatch":
        match = re.fullmatch(r"\^\[([^\]]*)\]\{(\d+),(\d+)\}\$", str(context.get("pattern", "")))
        if match:
            characters, low, high = match.groups()
            extra = " ".join(c for c in "_.-/" if c in characters)
            return (f"use {low} to {high} characters: letters a-z and A-Z (no accented "
                    f"ones), digits and {extra} (no spaces; it is part of MQTT topics)")
    bounds = {"less_than_equal": "at most", "greater_than_equal": "at least",
              "less_than": "less than", "greater_than": "more than"}
    if kind in bounds and len(context) == 1:
        bound = next(iter(context.values()))
        shown = f"{bound:g}" if isinstance(bound, (int, float)) else bound
        return f"must be {bounds[kind]} {shown}"
    if kind == "literal_error" and isinstance(error.get("input"), bool):
        # TOML's true/false where the key takes words: `enabled = true` for "on"
        return (f"takes one of {context.get('expected', 'its words')}, in quotes (a TOML true "
                "or false is none of them)")
    if kind == "model_type" and len(error["loc"]) == 1 and not isinstance(error.get("input"),
                                                                          (dict, list)):
        # a section given as a value (a user check: `model = "/path/model.onnx"`)
        section = error["loc"][0]
        first = _FIRST_KEYS.get(str(section))
        below = f" ({first} = ... for this value)" if first else ""
        return (f"is a section, not a value: write [{section}] on a line of its own and its "
                f"keys below it{below}, as systemd/edge.example.toml does")
    if kind == "too_short" and "min_length" in context:
        least = int(context["min_length"])
        return (f"needs at least {least} {'item' if least == 1 else 'items'}; "
                f"got {context.get('actual_length', 'fewer')}")
    return str(error["msg"])


def _shown_input(loc: tuple[int | str, ...], value: object) -> str:
    """`; got <value>` without secrets: passwords never, URIs redacted, whole sections not at
    all (they may hold a password)."""
    if isinstance(value, (dict, list)):
        return ""
    if "password" in loc:
        return f"; got {REDACTED}"
    if isinstance(value, str):
        return f"; got {redact_text(redact_uri(value) if '://' in value else value)!r}"
    if isinstance(value, bool):  # as the config wrote it
        return f"; got {str(value).lower()}"
    return f"; got {value!r}"

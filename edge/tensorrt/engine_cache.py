"""The engine cache: TensorRT engines keyed by everything that makes them valid.

An engine only runs on the GPU model and TensorRT version it was built with
(`deserialize_cuda_engine` returns None otherwise), and only matches the ONNX, precision and
shapes it was built from. Each engine `<stem>.<precision>.<digest>.engine` has a sidecar
`.json` with the key, the engine's sha256 and the model spec (engines carry no metadata), so
the daemon can tell a usable engine from a stale one and say which key part differs.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path
from typing import Any

from edge.errors import ModelError
from edge.spec import ModelSpec

SIDECAR_VERSION = 1


@dataclass(frozen=True)
class GpuIdentity:
    name: str
    compute_capability: str  # "8.7"
    sm_count: int


@dataclass(frozen=True)
class EngineKey:
    onnx_sha256: str
    precision: str
    shape_profile: str  # "1x320x320x3" or "min 1x.. opt 4x.. max 8x.."
    trt_version: str
    gpu_name: str
    compute_capability: str
    sm_count: int
    dla_core: int = -1
    #: sha256 of the calibration cache an implicit-INT8 engine took its scales from; '' for
    #: none (a QDQ model's scales are in the ONNX, whose hash is `onnx_sha256`). A cache made
    #: again for the same model made the old engine read as usable.
    calibration_sha256: str = ""

    @classmethod
    def for_build(cls, onnx_sha256: str, precision: str, shape_profile: str,
                  trt_version: str, gpu: GpuIdentity, dla_core: int = -1,
                  calibration_sha256: str = "") -> EngineKey:
        return cls(onnx_sha256, precision, shape_profile, trt_version, gpu.name,
                   gpu.compute_capability, gpu.sm_count, dla_core, calibration_sha256)

    @property
    def digest(self) -> str:
        parts = asdict(self)
        if not parts["calibration_sha256"]:  # as keys were before it: their engines' names
            del parts["calibration_sha256"]
        text = json.dumps(parts, sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:16]

    def differences(self, cached: EngineKey) -> list[str]:
        """'part: engine has X, this machine needs Y' for every part where `cached` differs."""
        return [f"{f.name}: engine has {getattr(cached, f.name)!r}, needed "
                f"{getattr(self, f.name)!r}"
                for f in fields(self) if getattr(self, f.name) != getattr(cached, f.name)]


def bytes_sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def shape_profile(batch: int | None, height: int, width: int, max_batch: int = 8) -> str:
    """The key part for input shapes; dynamic batch is built for 1..max_batch."""
    if batch is not None:
        return f"{batch}x{height}x{width}x3"
    return (f"min 1x{height}x{width}x3 opt {max_batch}x{height}x{width}x3 "
            f"max {max_batch}x{height}x{width}x3")


@dataclass(frozen=True)
class Sidecar:
    key: EngineKey
    engine_sha256: str
    spec: ModelSpec
    build_seconds: float = 0.0
    version: int = SIDECAR_VERSION

    def to_json(self) -> str:
        return json.dumps({"version": self.version, "key": asdict(self.key),
                           "engine_sha256": self.engine_sha256,
                           "spec": json.loads(self.spec.to_json()),
                           "build_seconds": round(self.build_seconds, 1)}, indent=1)

    @classmethod
    def read(cls, path: Path) -> Sidecar:
        try:
            data: dict[str, Any] = json.loads(path.read_text())
            if data.get("version") != SIDECAR_VERSION:
                raise ValueError(f"sidecar version {data.get('version')!r}")
            return cls(EngineKey(**data["key"]), str(data["engine_sha256"]),
                       ModelSpec.from_json(json.dumps(data["spec"]), str(path)),
                       float(data.get("build_seconds", 0.0)))
        except (OSError, json.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
            raise ModelError(f"engine sidecar {path} is unreadable ({exc}); delete it and its "
                             "engine to rebuild") from exc


@dataclass(frozen=True)
class CacheEntry:
    engine: Path
    sidecar: Path

    @classmethod
    def for_key(cls, folder: Path, stem: str, key: EngineKey) -> CacheEntry:
        base = f"{stem}.{key.precision}.{key.digest}"
        return cls(folder / f"{base}.engine", folder / f"{base}.json")


@dataclass(frozen=True)
class Verdict:
    """Whether a cached engine can be used; `reason` says why not (logged, or the error)."""

    usable: bool
    reason: str


def check_entry(entry: CacheEntry, wanted: EngineKey) -> Verdict:
    """Usable only if engine and sidecar exist, the sidecar's key is `wanted` and the engine
    file is the one the sidecar describes (not truncated or swapped)."""
    if not entry.engine.is_file():
        return Verdict(False, f"no engine at {entry.engine}")
    if not entry.sidecar.is_file():
        return Verdict(False, f"engine {entry.engine.name} has no sidecar {entry.sidecar.name}")
    try:
        sidecar = Sidecar.read(entry.sidecar)
    except ModelError as exc:
        return Verdict(False, str(exc))
    if sidecar.key != wanted:
        return Verdict(False, "engine key differs: " + "; ".join(wanted.differences(sidecar.key)))
    if file_sha256(entry.engine) != sidecar.engine_sha256:
        return Verdict(False, f"engine {entry.engine.name} does not match its sidecar "
                              "(truncated or replaced)")
    return Verdict(True, "cached engine matches")


def profile_rows(profile: str) -> int | None:
    """The most rows a dynamic-batch `shape_profile` takes; None for a fixed shape."""
    parts = profile.split()
    return int(parts[parts.index("max") + 1].split("x")[0]) if "max" in parts else None


def covering_entry(folder: Path, stem: str, wanted: EngineKey) -> CacheEntry | None:
    """A usable cached engine that differs from `wanted` only in being built for more rows of a
    dynamic batch (`edge build-engine`'s --max-batch 8, where the daemon asks for one row per
    camera): its profile covers the rows. Of several, the one for the fewest rows."""
    rows = profile_rows(wanted.shape_profile)
    if rows is None:
        return None
    _, height, width, _ = wanted.shape_profile.split()[1].split("x")
    found: list[tuple[int, CacheEntry]] = []
    for sidecar_path in sorted(folder.glob(f"{stem}.{wanted.precision}.*.json")):
        try:
            key = Sidecar.read(sidecar_path).key
        except ModelError:
            continue
        held = profile_rows(key.shape_profile)
        if held is None or held <= rows or key != replace(
                wanted, shape_profile=shape_profile(None, int(height), int(width), held)):
            continue
        entry = CacheEntry(sidecar_path.with_suffix(".engine"), sidecar_path)
        if check_entry(entry, key).usable:
            found.append((held, entry))
    return min(found, key=lambda pair: pair[0])[1] if found else None


def find_stale(folder: Path, stem: str, precision: str, wanted: EngineKey) -> list[str]:
    """Key differences of other engines for the same model and precision (to explain a
    rebuild, or a --no-build error)."""
    reasons = []
    for sidecar_path in sorted(folder.glob(f"{stem}.{precision}.*.json")):
        try:
            sidecar = Sidecar.read(sidecar_path)
        except ModelError:
            continue
        if sidecar.key != wanted:
            reasons.append(f"{sidecar_path.stem}: " + "; ".join(wanted.differences(sidecar.key)))
    return reasons

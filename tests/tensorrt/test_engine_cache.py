from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from edge.errors import ModelError
from edge.spec import InputSpec, ModelSpec
from edge.tensorrt.engine_cache import (
    CacheEntry,
    EngineKey,
    GpuIdentity,
    Sidecar,
    check_entry,
    covering_entry,
    file_sha256,
    find_stale,
    shape_profile,
)

SPEC = ModelSpec(task="detect", labels=("a", "b"), head="anchor_free", output="output0",
                 input=InputSpec(name="images", width=320, height=320))
ORIN = GpuIdentity("Orin", "8.7", 16)
KEY = EngineKey.for_build("ab" * 32, "int8", shape_profile(1, 320, 320), "10.3.0", ORIN)


def store(folder: Path, key: EngineKey, data: bytes = b"engine-bytes") -> CacheEntry:
    entry = CacheEntry.for_key(folder, "shapes", key)
    entry.engine.write_bytes(data)
    entry.sidecar.write_text(Sidecar(key, file_sha256(entry.engine), SPEC, 12.5).to_json())
    return entry


def test_key_digest_changes_with_every_part():
    variants = [KEY.__class__(**{**KEY.__dict__, field: value}) for field, value in (
        ("onnx_sha256", "cd" * 32), ("precision", "fp16"), ("shape_profile", "4x320x320x3"),
        ("trt_version", "10.3.1"), ("gpu_name", "Orin Nano"), ("compute_capability", "8.6"),
        ("sm_count", 8), ("dla_core", 0))]
    digests = {KEY.digest, *(v.digest for v in variants)}
    assert len(digests) == len(variants) + 1
    assert KEY.differences(variants[3]) == ["trt_version: engine has '10.3.1', needed '10.3.0'"]


def test_shape_profiles():
    assert shape_profile(1, 320, 320) == "1x320x320x3"
    assert shape_profile(None, 320, 640, 8) == ("min 1x320x640x3 opt 8x320x640x3 "
                                                "max 8x320x640x3")


def test_sidecar_round_trip(tmp_path):
    entry = store(tmp_path, KEY)
    sidecar = Sidecar.read(entry.sidecar)
    assert sidecar.key == KEY and sidecar.spec == SPEC and sidecar.build_seconds == 12.5
    assert check_entry(entry, KEY) .usable


def test_invalidation_reasons(tmp_path):
    entry = CacheEntry.for_key(tmp_path, "shapes", KEY)
    assert "no engine" in check_entry(entry, KEY).reason
    entry = store(tmp_path, KEY)
    other_gpu = EngineKey.for_build(KEY.onnx_sha256, "int8", KEY.shape_profile, "10.3.0",
                                    GpuIdentity("Orin Nano", "8.7", 8))
    # a key that differs lives under another digest: same folder, no usable engine for it
    assert not check_entry(CacheEntry.for_key(tmp_path, "shapes", other_gpu), other_gpu).usable
    stale = find_stale(tmp_path, "shapes", "int8", other_gpu)
    assert stale and "gpu_name: engine has 'Orin', needed 'Orin Nano'" in stale[0]
    assert "sm_count: engine has 16, needed 8" in stale[0]
    entry.engine.write_bytes(b"engine-by")  # truncated
    assert "does not match its sidecar" in check_entry(entry, KEY).reason
    entry.sidecar.write_text("{not json")
    assert "unreadable" in check_entry(entry, KEY).reason
    entry.sidecar.unlink()
    assert "has no sidecar" in check_entry(entry, KEY).reason


def test_sidecar_copied_from_another_engine_is_caught(tmp_path):
    entry = store(tmp_path, KEY)
    newer = EngineKey.for_build(KEY.onnx_sha256, "int8", KEY.shape_profile, "10.3.1", ORIN)
    entry.sidecar.write_text(Sidecar(newer, file_sha256(entry.engine), SPEC).to_json())
    verdict = check_entry(entry, KEY)
    assert not verdict.usable
    assert "trt_version: engine has '10.3.1', needed '10.3.0'" in verdict.reason


def test_unreadable_sidecar_is_a_model_error(tmp_path):
    (tmp_path / "x.json").write_text('{"version": 99}')
    with pytest.raises(ModelError, match="sidecar version 99"):
        Sidecar.read(tmp_path / "x.json")


def test_inspect_reads_an_engine_sidecar(tmp_path):
    import json
    import subprocess
    import sys

    entry = store(tmp_path, KEY)
    result = subprocess.run([sys.executable, "-m", "edge", "inspect", str(entry.engine),
                             "--json"], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report["intact"] and report["key"]["gpu_name"] == "Orin"
    entry.engine.write_bytes(b"engine")
    text = subprocess.run([sys.executable, "-m", "edge", "inspect", str(entry.engine)],
                          capture_output=True, text=True, timeout=60).stdout
    assert "does NOT match its sidecar" in text
    entry.sidecar.unlink()
    missing = subprocess.run([sys.executable, "-m", "edge", "inspect", str(entry.engine)],
                             capture_output=True, text=True, timeout=60)
    assert missing.returncode == 2 and "has no sidecar" in missing.stderr


def test_inspect_says_what_the_engine_computes_in_and_catches_an_edited_sidecar(tmp_path):
    import json
    import subprocess
    import sys

    entry = store(tmp_path, KEY)

    def inspect() -> dict:
        result = subprocess.run([sys.executable, "-m", "edge", "inspect", str(entry.engine),
                                 "--json"], capture_output=True, text=True, timeout=60)
        assert result.returncode == 0, result.stderr
        return json.loads(result.stdout.strip().splitlines()[-1])

    report = inspect()
    assert report["intact"] and report["computes_in"].startswith("int8 where the QDQ model")
    sidecar = json.loads(entry.sidecar.read_text())
    sidecar["key"]["precision"] = "fp16"  # claims a precision the engine was not built with
    entry.sidecar.write_text(json.dumps(sidecar))
    report = inspect()
    assert not report["intact"] and report["key"]["precision"] == "fp16"
    assert not check_entry(entry, KEY).usable


def test_an_engine_built_from_another_calibration_cache_is_stale(tmp_path):
    """An audit: `edge build-engine m.onnx --cache new.cache` after recalibrating reused the
    engine built from old.cache (the key had the ONNX's hash, not the cache's). Keys without a
    cache keep the digest they had, so engines built before are still found by name."""
    assert KEY.digest == "eedca0d5db74b64c"  # as before the calibration part existed
    old, new = (EngineKey.for_build(KEY.onnx_sha256, "int8", KEY.shape_profile, "10.3.0", ORIN,
                                    calibration_sha256=digest) for digest in ("11" * 32, "22" * 32))
    assert len({KEY.digest, old.digest, new.digest}) == 3
    entry = store(tmp_path, old)
    verdict = check_entry(CacheEntry.for_key(tmp_path, "shapes", new), new)
    assert not verdict.usable
    assert check_entry(entry, old).usable
    assert new.differences(old) == [f"calibration_sha256: engine has {'11' * 32!r}, needed "
                                    f"{'22' * 32!r}"]


def test_a_dynamic_batch_engine_built_for_more_rows_covers_fewer(tmp_path):
    """An audit: `edge build-engine` builds a dynamic-batch model for up to 8 rows, the daemon
    asks for one row per camera (2 here), and rebuilt for minutes at start (or, with
    build_engine = false, refused to start). An engine whose profile covers the rows is used;
    of several, the one for the fewest rows."""
    def key(rows: int, size: int = 320) -> EngineKey:
        return EngineKey.for_build(KEY.onnx_sha256, "int8", shape_profile(None, size, size, rows),
                                   "10.3.0", ORIN)

    assert covering_entry(tmp_path, "shapes", key(2)) is None
    store(tmp_path, key(8))
    assert covering_entry(tmp_path, "shapes", key(2)) == CacheEntry.for_key(tmp_path, "shapes",
                                                                            key(8))
    store(tmp_path, key(4))
    assert covering_entry(tmp_path, "shapes", key(2)) == CacheEntry.for_key(tmp_path, "shapes",
                                                                            key(4))
    assert covering_entry(tmp_path, "shapes", key(16)) is None  # more rows than any holds
    assert covering_entry(tmp_path, "shapes", key(2, size=640)) is None  # another input size
    assert covering_entry(tmp_path, "shapes", KEY) is None  # a fixed batch: exact keys only
    other_gpu = replace(key(2), gpu_name="Xavier")
    assert covering_entry(tmp_path, "shapes", other_gpu) is None
    CacheEntry.for_key(tmp_path, "shapes", key(4)).engine.write_bytes(b"torn")
    assert covering_entry(tmp_path, "shapes", key(2)) == CacheEntry.for_key(tmp_path, "shapes",
                                                                            key(8))

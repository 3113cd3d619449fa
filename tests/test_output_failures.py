"""Outputs that cannot be written: refused before the work where the folder cannot be written
into, and an error naming them (exit 2, no traceback) where the write itself fails, with the
files already at those paths as they were."""

from __future__ import annotations

import json
import logging
import os
import resource
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from edge.cli import main
from edge.timing import rfc3339
from tests.converters.exporter_graphs import classifier

FRAMES = "synthetic://shapes?seed=11"


@pytest.fixture
def unwritable(tmp_path: Path) -> Iterator[Path]:
    """A folder this process cannot make files in: mode 555, or immutable for root (whom the
    mode does not stop)."""
    folder = tmp_path / "read-only"
    folder.mkdir()
    if os.geteuid() != 0:
        folder.chmod(0o555)
        yield folder
        folder.chmod(0o755)
        return
    made = subprocess.run(["chattr", "+i", str(folder)], capture_output=True, check=False)
    if made.returncode != 0:
        pytest.skip(f"root, and no immutable folder here: {made.stderr.decode().strip()}")
    try:
        yield folder
    finally:
        subprocess.run(["chattr", "-i", str(folder)], check=True)


@pytest.fixture
def source(tmp_path: Path) -> Path:
    return classifier(tmp_path / "m.onnx", batch=1, opset=13, constants=False, ending="softmax")


def test_convert_into_an_unwritable_folder_is_refused_at_once(source, unwritable, capsys):
    assert main(["convert", str(source), "-o", str(unwritable / "out.onnx"),
                 "--labels", "a,b,c"]) == 2
    error = capsys.readouterr().err
    assert f"output directory {unwritable} (of -o {unwritable / 'out.onnx'}) cannot be " \
           "written into" in error
    assert "choose another output path, or make the folder writable" in error
    assert list(unwritable.iterdir()) == []


@pytest.mark.parametrize("option", ["-o", "--cache", "--ranges", "--report"])
def test_calibrate_refuses_any_unwritable_output_before_the_statistics(
        option, demo_model, tmp_path, unwritable, capsys, caplog):
    written = {"-o": tmp_path / "int8.onnx", option: unwritable / "out"}
    arguments = ["calibrate", str(demo_model), "--images", FRAMES, "--max-images", "16"]
    for name, path in written.items():
        arguments += [name, str(path)]
    with caplog.at_level(logging.INFO):
        assert main(arguments) == 2
    assert f"(of {option} {unwritable / 'out'}) cannot be written into" in capsys.readouterr().err
    assert "calibrating on" not in caplog.text  # refused before the calibration
    assert not (tmp_path / "int8.onnx").exists() and list(unwritable.iterdir()) == []


def _file_size_limit(limit: int) -> None:
    resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))


def _edge_limited(arguments: list[str], limit: int) -> subprocess.CompletedProcess[str]:
    """`edge ARGUMENTS` in a process that may write no file past `limit` bytes (as a full disk
    would stop it: the write fails with EFBIG; Python ignores the SIGXFSZ that comes with
    it)."""
    return subprocess.run([sys.executable, "-m", "edge", *arguments], capture_output=True,
                          text=True, timeout=300, preexec_fn=lambda: _file_size_limit(limit))


def test_convert_whose_write_fails_names_the_output_and_keeps_the_old_file(source, tmp_path):
    output = tmp_path / "out.onnx"
    output.write_bytes(b"the previous model")
    done = _edge_limited(["convert", str(source), "-o", str(output), "--labels", "a,b,c"],
                         limit=1000)
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr
    assert f"edge convert: error: cannot write {output} (File too large)" in done.stderr
    assert "files already at those paths keep their content" in done.stderr
    assert output.read_bytes() == b"the previous model"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.onnx", "out.onnx"]


def test_calibrate_whose_writes_fail_names_every_output_and_writes_none(demo_model, tmp_path):
    """The INT8 demo model is 0.45 MB: past a 100 kB limit its write fails after the whole
    calibration; the cache (small, written first or not) must not appear alone either."""
    output, cache = tmp_path / "int8.onnx", tmp_path / "int8.cache"
    output.write_bytes(b"the previous model")
    done = _edge_limited(["calibrate", str(demo_model), "--images", FRAMES, "--max-images",
                          "16", "--method", "minmax", "-o", str(output), "--cache", str(cache)],
                         limit=100_000)
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr
    assert f"edge calibrate: error: cannot write {output}, {cache} (File too large)" in done.stderr
    assert output.read_bytes() == b"the previous model" and not cache.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["int8.onnx"]


def test_an_engine_cache_that_cannot_be_written_is_said_before_the_build(unwritable, tmp_path):
    """A TensorRT build takes minutes on a Jetson; a model folder the service may not write
    (engines are cached next to the model by default) is said before it, with the setting."""
    from edge.errors import OutputError
    from edge.spec import InputSpec, ModelSpec
    from edge.tensorrt.builder import BuildOptions
    from edge.tensorrt.engine_cache import CacheEntry, EngineKey, GpuIdentity, shape_profile
    from edge.tensorrt.store import build_into

    key = EngineKey.for_build("ab" * 32, "int8", shape_profile(1, 64, 64), "10.3.0",
                              GpuIdentity("Orin", "8.7", 16))
    spec = ModelSpec(task="detect", labels=("a",), head="anchor_free", output="o",
                     input=InputSpec(name="images", width=64, height=64))
    entry = CacheEntry.for_key(unwritable, "model", key)
    with pytest.raises(OutputError, match=r"cannot be written into .*engines are cached next "
                                          r"to the model unless --engine-dir \(engine_dir in "
                                          r"the config\) names another folder"):
        build_into(entry, tmp_path / "model.onnx", BuildOptions(), spec, key, None, "missing")


def test_monitor_frames_into_an_unwritable_folder_is_refused_before_connecting(unwritable,
                                                                                capsys):
    """It once connected and printed one traceback per saved frame, then exited 0."""
    assert main(["monitor", "--mqtt", "mqtt://127.0.0.1:9", "--frames", str(unwritable),
                 "--seconds", "1"]) == 2
    assert (f"output directory {unwritable} (of --frames {unwritable}) cannot be written "
            "into") in capsys.readouterr().err


def _frame_messages(frame_id: int) -> list:
    from edge.client import parse_message

    meta = {"v": 1, "camera": "gate", "frame_id": frame_id, "ts": 1.0 + frame_id,
            "time": rfc3339(1.0 + frame_id), "width": 64, "height": 48, "detections": 0,
            "detections_drawn": False}
    return [parse_message("edge/+", "edge/pi/gate/frame", b"\xff\xd8jpeg\xff\xd9"),
            parse_message("edge/+", "edge/pi/gate/frame/meta", json.dumps(meta).encode())]


def test_monitor_frames_that_cannot_be_written_are_skipped_with_one_warning(tmp_path, caplog):
    """A disk that fills up (here: a file where the device's folder goes) skips frames with
    one warning; saving resumes, and says so, once it can write again."""
    from edge.monitor import FrameSaver

    saver = FrameSaver(tmp_path / "frames")
    (tmp_path / "frames").mkdir()
    (tmp_path / "frames" / "pi").write_text("in the way")
    with caplog.at_level(logging.WARNING):
        for frame_id in (1, 2, 3):
            for message in _frame_messages(frame_id):
                saver(message)
        assert saver.saved == 0 and saver.not_saved == 3
        assert caplog.text.count("--frames: cannot save") == 1
        assert "frames are skipped until it can write there again" in caplog.text
        (tmp_path / "frames" / "pi").unlink()
        for message in _frame_messages(4):
            saver(message)
    assert saver.saved == 1
    assert "saving frames in" in caplog.text and "again (3 not saved meanwhile)" in caplog.text
    saved = sorted(p.name for p in (tmp_path / "frames" / "pi" / "gate").iterdir())
    assert saved == ["4.jpg", "4.json"]

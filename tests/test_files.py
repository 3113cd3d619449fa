"""Outputs written whole or not at all (`edge.files`)."""

from __future__ import annotations

import os
import stat

import pytest

from edge.files import StagedOutputs, write_bytes_atomic


def test_staged_outputs_appear_together_on_publish(tmp_path):
    (tmp_path / "report").mkdir()
    (tmp_path / "report" / "notes.txt").write_text("the user's")
    (tmp_path / "model.onnx").write_bytes(b"old")
    with StagedOutputs() as staged:
        write_bytes_atomic(staged.file(tmp_path / "model.onnx"), b"new")
        folder = staged.folder(tmp_path / "report")
        (folder / "index.md").write_text("report")
        (folder / "plots").mkdir()
        (folder / "plots" / "a.png").write_bytes(b"png")
        assert (tmp_path / "model.onnx").read_bytes() == b"old"
        assert not (tmp_path / "report" / "index.md").exists()
        staged.publish()
    assert (tmp_path / "model.onnx").read_bytes() == b"new"
    assert (tmp_path / "report" / "index.md").read_text() == "report"
    assert (tmp_path / "report" / "plots" / "a.png").read_bytes() == b"png"
    assert (tmp_path / "report" / "notes.txt").read_text() == "the user's"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.onnx", "report"]
    umask = os.umask(0)
    os.umask(umask)
    assert stat.S_IMODE((tmp_path / "model.onnx").stat().st_mode) == 0o666 & ~umask


def test_staged_outputs_leave_everything_as_it_was_when_not_published(tmp_path):
    (tmp_path / "model.onnx").write_bytes(b"old")
    with pytest.raises(KeyboardInterrupt), StagedOutputs() as staged:
        write_bytes_atomic(staged.file(tmp_path / "model.onnx"), b"new")
        (staged.folder(tmp_path / "new" / "report") / "index.md").write_text("report")
        write_bytes_atomic(staged.file(tmp_path / "cache"), b"cache")
        raise KeyboardInterrupt
    assert (tmp_path / "model.onnx").read_bytes() == b"old"
    assert not (tmp_path / "cache").exists() and not (tmp_path / "new").exists()
    assert not [p for p in tmp_path.rglob("*") if p.name.startswith(".")]

"""Outputs written whole or not at all (`edge.files`)."""

from __future__ import annotations

import os
import stat
from pathlib import Path

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


def test_a_rewritten_folder_output_removes_only_its_own_stale_files(tmp_path):
    """A report written again into its folder: plots the earlier run wrote and this one did
    not are removed, so the folder is one run's; the user's own files stay."""
    report = tmp_path / "report"
    report.mkdir()
    for name in ("index.md", "hist_0.png", "hist_1.png", "hist_4.png", "notes.txt"):
        (report / name).write_text("old")
    with StagedOutputs() as staged:
        folder = staged.folder(report, ("index.md", "hist_*.png"))
        for name in ("index.md", "hist_0.png"):
            (folder / name).write_text("new")
        assert (report / "hist_4.png").exists()  # nothing changes before publishing
        staged.publish()
    assert {p.name: p.read_text() for p in report.iterdir()} == {
        "index.md": "new", "hist_0.png": "new", "notes.txt": "old"}


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


def test_a_signal_while_publishing_takes_effect_once_everything_is_in_place(tmp_path,
                                                                           monkeypatch):
    import signal

    moves = []
    real_replace = os.replace

    def replace_then_ctrl_c(source, target):
        if not moves:
            os.kill(os.getpid(), signal.SIGINT)  # Ctrl-C between the first and second move
        moves.append(target)
        real_replace(source, target)

    # as at a terminal: a run started in the background (nohup, some CI) inherits SIGINT
    # ignored, and a held Ctrl-C is then dropped, as it would have been
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        with StagedOutputs() as staged:
            write_bytes_atomic(staged.file(tmp_path / "model.onnx"), b"model")
            write_bytes_atomic(staged.file(tmp_path / "model.cache"), b"cache")
            (staged.folder(tmp_path / "report") / "index.md").write_text("report")
            monkeypatch.setattr(os, "replace", replace_then_ctrl_c)
            with pytest.raises(KeyboardInterrupt):
                staged.publish()
            monkeypatch.undo()
        assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
    finally:
        signal.signal(signal.SIGINT, previous)
    assert len(moves) == 3
    assert (tmp_path / "model.onnx").read_bytes() == b"model"
    assert (tmp_path / "model.cache").read_bytes() == b"cache"
    assert (tmp_path / "report" / "index.md").read_text() == "report"


def test_an_output_that_is_a_device_or_a_pipe_is_refused(tmp_path):
    """A user check: `edge calibrate --cache /dev/null`, run as root, replaced the device with
    a regular file (an atomic write renames over whatever the path holds)."""
    from edge.errors import InputError
    from edge.files import require_output_file

    with pytest.raises(InputError, match=r"^--cache /dev/null is a character device, not a "
                                         r"file: writing it would replace it with one"):
        require_output_file(Path("/dev/null"), "--cache")
    pipe = tmp_path / "pipe"
    os.mkfifo(pipe)
    with pytest.raises(InputError, match="is a named pipe, not a file"):
        write_bytes_atomic(pipe, b"data")
    assert pipe.is_fifo()

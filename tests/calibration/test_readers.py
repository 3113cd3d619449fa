from __future__ import annotations

import logging
from pathlib import Path

import cv2
import numpy as np
import pytest

from calibration.readers import frames_from
from edge.errors import InputError
from edge.spec import InputSpec, ModelSpec

SPEC = ModelSpec(task="detect", labels=("a",), head="anchor_free", output="o",
                 input=InputSpec(name="images", width=64, height=48))


def mixed_folder(folder: Path) -> None:
    rng = np.random.default_rng(0)
    colour = rng.integers(0, 256, (40, 60, 3), np.uint8)
    for suffix in (".jpg", ".png", ".bmp", ".tiff", ".webp"):
        cv2.imwrite(str(folder / f"good{suffix}"), colour)
    cv2.imwrite(str(folder / "grey.png"), colour[..., 0])
    cv2.imwrite(str(folder / "alpha.png"), np.dstack([colour, colour[..., :1]]))
    cv2.imwrite(str(folder / "deep.png"), colour.astype(np.uint16) * 256)  # 16-bit
    (folder / "empty.jpg").write_bytes(b"")
    (folder / "corrupt.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"garbage" * 20)
    data = (folder / "good.jpg").read_bytes()
    (folder / "truncated.jpg").write_bytes(data[: len(data) // 3])
    (folder / "notes.csv").write_text("not,an,image\n")


def test_mixed_folder_skips_and_names_bad_files(tmp_path, caplog):
    mixed_folder(tmp_path)
    with caplog.at_level(logging.WARNING):
        frames = frames_from(tmp_path, min_images=1)
    names = {p.name for p in frames.paths}
    assert names >= {"good.jpg", "good.png", "good.bmp", "good.tiff", "good.webp", "grey.png",
                     "alpha.png"}
    assert not names & {"deep.png", "empty.jpg", "corrupt.png", "notes.csv"}
    assert "deep.png" in caplog.text and "empty.jpg" in caplog.text
    inputs = list(frames.inputs(SPEC))
    assert len(inputs) == len(names)
    assert all(i["images"].shape == (1, 48, 64, 3) and i["images"].dtype == np.uint8
               for i in inputs)


def test_too_few_usable_images_and_empty_folder(tmp_path):
    mixed_folder(tmp_path)
    with pytest.raises(InputError, match=r"usable image.*at least 50"):
        frames_from(tmp_path, min_images=50)
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(InputError, match="0 usable image"):
        frames_from(empty)


def test_subset_is_deterministic(tmp_path):
    for i in range(30):
        cv2.imwrite(str(tmp_path / f"{i:02d}.png"), np.full((8, 8, 3), i, np.uint8))
    first = frames_from(tmp_path, max_images=10, seed=3).paths
    assert first == frames_from(tmp_path, max_images=10, seed=3).paths
    assert first != frames_from(tmp_path, max_images=10, seed=4).paths
    assert len(first) == 10


def test_video_and_synthetic_sources(tmp_path):
    writer = cv2.VideoWriter(str(tmp_path / "clip.avi"), cv2.VideoWriter_fourcc(*"MJPG"), 10,
                             (64, 48))
    for i in range(12):
        writer.write(np.full((48, 64, 3), i * 10, np.uint8))
    writer.release()
    assert frames_from(tmp_path / "clip.avi", max_images=5).count == 5
    synthetic = frames_from("synthetic://shapes?seed=2", max_images=3)
    assert len(list(synthetic.inputs(SPEC))) == 3
    with pytest.raises(InputError, match="does not exist"):
        frames_from(tmp_path / "missing")

"""How a YOLO dataset's class names are read: data.yaml (with PyYAML) or classes.txt."""

from __future__ import annotations

import importlib.util
import logging

import cv2
import numpy as np

from calibration.datasets import dataset_from


def _yolo_folder(root, names_yaml: str):
    (root / "images").mkdir(parents=True)
    (root / "labels").mkdir()
    cv2.imwrite(str(root / "images" / "a.jpg"), np.full((64, 64, 3), 120, np.uint8))
    (root / "labels" / "a.txt").write_text("1 0.5 0.5 0.2 0.2\n")
    (root / "data.yaml").write_text(names_yaml)
    return root


def test_a_data_yaml_left_unread_without_pyyaml_is_said(tmp_path, monkeypatch, caplog):
    """Without PyYAML the names were skipped in silence, and class ids taken unchecked."""
    folder = _yolo_folder(tmp_path / "ds", "names: [b, a]\n")
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "yaml" else real(name, *a))
    with caplog.at_level(logging.WARNING, logger="calibration.datasets"):
        dataset_from(folder, ["a", "b"], "detect", None)
    assert f"{folder / 'data.yaml'} is not read (PyYAML is not installed)" in caplog.text
    assert "`pip install 'pyyaml>=6'` to match them by name" in caplog.text


def test_a_data_yaml_read_with_pyyaml_says_nothing(tmp_path, caplog):
    folder = _yolo_folder(tmp_path / "ds", "names: [a, b]\n")
    with caplog.at_level(logging.WARNING, logger="calibration.datasets"):
        dataset_from(folder, ["a", "b"], "detect", None)
    assert "is not read" not in caplog.text

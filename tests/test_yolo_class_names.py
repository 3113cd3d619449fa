"""How a YOLO dataset's class names are read: data.yaml (with PyYAML) or classes.txt."""

from __future__ import annotations

import importlib.util
import logging
import re

import cv2
import numpy as np
import pytest

from calibration.datasets import dataset_from
from edge.errors import MissingDependencyError


def _yolo_folder(root, names_yaml: str):
    (root / "images").mkdir(parents=True)
    (root / "labels").mkdir()
    cv2.imwrite(str(root / "images" / "a.jpg"), np.full((64, 64, 3), 120, np.uint8))
    (root / "labels" / "a.txt").write_text("1 0.5 0.5 0.2 0.2\n")
    (root / "data.yaml").write_text(names_yaml)
    return root


def test_a_data_yaml_without_pyyaml_is_an_error_naming_the_install(tmp_path, monkeypatch):
    """Without PyYAML the names were skipped in silence, then with a warning, and class ids
    taken unchecked: a user check scored class 0 as another model's label (mAP 0.5 where
    1.0 was right, exit 0), and a Roboflow data.yaml read as naming no val split."""
    folder = _yolo_folder(tmp_path / "ds", "names: [b, a]\n")
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "yaml" else real(name, *a))
    for given in (folder, folder / "data.yaml"):
        with pytest.raises(MissingDependencyError, match=re.escape(
                f"reading {folder / 'data.yaml'} needs the Python module 'yaml', which is not "
                f"installed; for reading {folder / 'data.yaml'} alone, install it with: ")
                + r".* -m pip install 'pyyaml>=6'"):
            dataset_from(given, ["a", "b"], "detect", None)


def test_a_data_yaml_read_with_pyyaml_says_nothing(tmp_path, caplog):
    folder = _yolo_folder(tmp_path / "ds", "names: [a, b]\n")
    with caplog.at_level(logging.WARNING, logger="calibration.datasets"):
        dataset_from(folder, ["a", "b"], "detect", None)
    assert "is not read" not in caplog.text

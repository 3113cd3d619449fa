from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from edge.config import load_config

ROOT = Path(__file__).resolve().parents[1]


def test_example_config_is_valid():
    config = load_config(ROOT / "systemd" / "edge.example.toml")
    assert config.cameras[0].name == "gate"


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze not present")
def test_unit_file_verifies(tmp_path):
    unit = (ROOT / "systemd" / "edge.service").read_text()
    edge = Path(sys.executable).parent / "edge"
    # verify checks that ExecStart exists; point it at this environment's entry point
    (tmp_path / "edge.service").write_text(unit.replace("/opt/edge/venv/bin/edge", str(edge)))
    result = subprocess.run(["systemd-analyze", "verify", str(tmp_path / "edge.service")],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr

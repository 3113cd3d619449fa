"""Our TensorRT code against the real binding wheel of every TensorRT version we support
(trt_checks.py, one subprocess per version: one binding per process)."""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests.contract.conftest import ROOT, TRT_BINDINGS, python_path, tensorrt_bindings

pytestmark = pytest.mark.contract


@pytest.mark.parametrize("version", list(TRT_BINDINGS))
def test_tensorrt_contract(version):
    env = python_path(tensorrt_bindings(version))
    result = subprocess.run(
        [sys.executable, "-m", "pytest", str(ROOT / "tests" / "contract" / "trt_checks.py"),
         "-q", "-p", "no:cacheprovider", "-W", "ignore::DeprecationWarning", "-rs"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-2000:]
    assert "passed" in result.stdout

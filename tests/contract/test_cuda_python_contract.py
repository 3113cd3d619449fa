"""The cuda-python adapter against the oldest and newest cuda-python we support, installed for
real (pip install --target, cached), on this machine without an NVIDIA driver (cuda_checks.py,
one subprocess per version). The CLI checks also import the TensorRT bindings shim."""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests.contract.conftest import CUDA_PYTHON, ROOT, cuda_python, python_path, tensorrt_bindings

pytestmark = pytest.mark.contract

@pytest.mark.parametrize("version", list(CUDA_PYTHON))
def test_cuda_python_contract(version):
    env = python_path(cuda_python(version), tensorrt_bindings("10.3.0"))
    env["EDGE_EXPECT_CUDA_MODULE"] = CUDA_PYTHON[version]
    result = subprocess.run(
        [sys.executable, "-m", "pytest", str(ROOT / "tests" / "contract" / "cuda_checks.py"),
         "-q", "-p", "no:cacheprovider", "-W", "ignore::DeprecationWarning", "-rs"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-2000:]
    assert "skipped" not in result.stdout.splitlines()[-1]

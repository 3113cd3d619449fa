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


def test_bindings_without_libnvinfer_are_exit_2(tmp_path):
    """The real bindings of a broken install (no libnvinfer on the loader path): exit 2."""
    from tests.contract.tiny_models import tiny_model

    bindings = tensorrt_bindings("10.3.0")
    shim = tmp_path / "shim"
    shim.mkdir()
    (shim / "tensorrt.py").write_text("import sys\nimport tensorrt_bindings\n"
                                      "sys.modules[__name__] = tensorrt_bindings\n")
    model = tiny_model(tmp_path / "tiny.onnx", qdq=True)
    env = python_path(shim, bindings)
    result = subprocess.run([sys.executable, "-m", "edge", "build-engine", str(model)],
                            cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "TensorRT cannot be loaded" in result.stderr and "libnvinfer.so.10" in result.stderr

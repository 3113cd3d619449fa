"""The device install is real: a fresh venv with exactly `.[jetson]` (plus the contract tests'
TensorRT binding shim, standing in for JetPack's python3-libnvinfer) runs the device commands up
to the point where a GPU is needed, and decides the precision of a QDQ model from its spec."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.contract.conftest import ROOT, tensorrt_bindings, unavailable
from tests.contract.tiny_models import tiny_model

pytestmark = [pytest.mark.contract, pytest.mark.slow]


@pytest.fixture(scope="module")
def jetson_venv(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("jetson")
    venv, source = folder / "venv", folder / "source"
    # A copy: building the wheel in the checkout would leave build/ behind in it.
    shutil.copytree(ROOT, source, ignore=shutil.ignore_patterns(
        ".git", ".venv", ".ci", "build", "*.egg-info", "__pycache__", ".*_cache", ".corpus",
        "tests", "docs", "benchmarks"))
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    result = subprocess.run([str(venv / "bin" / "pip"), "install", "-q",
                             "--disable-pip-version-check", f"{source}[jetson]"],
                            capture_output=True, text=True, timeout=900)
    if result.returncode != 0 and "Could not find a version" in result.stderr:
        unavailable(f"the package registry is not reachable: {result.stderr[-300:]}")
    assert result.returncode == 0, result.stderr[-3000:]
    purelib = subprocess.run([str(venv / "bin" / "python"), "-c",
                              "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                             capture_output=True, text=True, check=True).stdout.strip()
    (Path(purelib) / "tensorrt_shim.pth").write_text(f"{tensorrt_bindings('10.3.0')}\n")
    return venv


def edge(venv: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(venv / "bin" / "edge"), *args], capture_output=True, text=True,
                          timeout=300, cwd=venv.parent)


def test_the_extra_holds_what_the_device_needs_and_nothing_heavy(jetson_venv):
    code = ("import importlib.util as u, json; print(json.dumps({m: u.find_spec(m) is not None "
            "for m in ('onnx', 'onnxruntime', 'cuda.bindings.runtime', 'tensorrt', 'torch', "
            "'pycuda', 'edge', 'calibration', 'converters')}))")
    found = json.loads(subprocess.run([str(jetson_venv / "bin" / "python"), "-c", code],
                                      capture_output=True, text=True, check=True,
                                      cwd=jetson_venv.parent).stdout)
    assert found == {"onnx": True, "onnxruntime": True, "cuda.bindings.runtime": True,
                     "tensorrt": True, "torch": False, "pycuda": False, "edge": True,
                     "calibration": True, "converters": True}
    assert edge(jetson_venv, "--help").returncode == 0


def test_inspect_and_build_engine_up_to_the_gpu(jetson_venv, tmp_path):
    qdq = tiny_model(tmp_path / "tiny.int8.onnx", qdq=True)
    inspected = edge(jetson_venv, "inspect", str(qdq), "--json")
    assert inspected.returncode == 0, inspected.stderr[-2000:]
    assert json.loads(inspected.stdout.strip().splitlines()[-1])
    built = edge(jetson_venv, "build-engine", str(qdq))
    assert built.returncode == 2, built.stderr[-2000:]
    assert "precision int8 for" in built.stderr  # decided from the spec, before the GPU
    assert "no NVIDIA driver" in built.stderr and "Traceback" not in built.stderr
    refused = edge(jetson_venv, "build-engine", str(qdq), "--precision", "fp16")
    assert refused.returncode == 2 and "builds as int8 only" in refused.stderr
    plain = tiny_model(tmp_path / "tiny.onnx", qdq=False)
    uncalibrated = edge(jetson_venv, "build-engine", str(plain), "--precision", "int8")
    assert uncalibrated.returncode == 2 and "edge calibrate" in uncalibrated.stderr


def test_selftest_up_to_the_gpu(jetson_venv):
    result = edge(jetson_venv, "selftest", "--hardware", "--json")
    assert result.returncode == 2, result.stderr[-2000:]
    assert "no NVIDIA driver" in result.stderr and "Traceback" not in result.stderr

"""GPU memory adapters are detected by the modules they import, not by the `cuda` namespace,
which cuda-pathfinder (installed for real here) also provides."""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests.contract.conftest import pip_target, python_path

pytestmark = pytest.mark.contract

PROBE = """
import importlib.util, json
from edge.errors import EdgeError
from edge.gpu.select import available_adapters, gpu_memory
try:
    gpu_memory("auto")
    error = None
except EdgeError as exc:
    error = f"{type(exc).__name__}: {exc}"
print(json.dumps({"namespace": importlib.util.find_spec("cuda") is not None,
                  "adapters": available_adapters(), "error": error}))
"""


def probe(*folders) -> dict:
    import json

    result = subprocess.run([sys.executable, "-c", PROBE], env=python_path(*folders),
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def pathfinder():
    return pip_target("cuda-pathfinder==1.9.1")


def test_cuda_namespace_alone_is_no_adapter(pathfinder):
    found = probe(pathfinder)
    assert found["namespace"] and found["adapters"] == []
    assert "cuda-python (or pycuda)" in found["error"] and "[jetson]'" in found["error"]


def test_pycuda_is_chosen_beside_the_namespace(pathfinder, tmp_path):
    # pycuda needs CUDA to build; this package stands in for an installed pycuda whose driver
    # library is missing, the import error pycuda gives on a machine without the driver.
    driver = tmp_path / "pycuda" / "driver.py"
    driver.parent.mkdir()
    (driver.parent / "__init__.py").write_text("")
    driver.write_text("raise ImportError('libcuda.so.1: cannot open shared object file', "
                      "name='pycuda._driver')\n")
    found = probe(pathfinder, tmp_path)
    assert found["adapters"] == ["pycuda"]
    assert found["error"].startswith("GpuUnavailableError: pycuda cannot load the NVIDIA driver")

"""Fixtures for the contract tests: the real TensorRT binding wheels and cuda-python from PyPI,
cached under .ci/cache/contract (EDGE_CONTRACT_CACHE to move it), and the stand-in TensorRT
libraries compiled with gcc. Without gcc or the registry the tests skip and say which."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from edge.file_lock import held

ROOT = Path(__file__).resolve().parents[2]
STUB_SOURCE = Path(__file__).with_name("libnvinfer_stub.c")
STUB_LIBRARIES = ("nvinfer", "nvonnxparser", "nvinfer_plugin", "nvparsers")

#: TensorRT version -> the PyPI requirement of its Python bindings (8.5 has no wheel for the
#: Python versions we support; 8.6.1 stands for the 8.x API).
TRT_BINDINGS = {
    "8.6.1": "tensorrt-bindings==8.6.1",
    "10.3.0": "tensorrt-cu12-bindings==10.3.0",
    "10.13.3.9": "tensorrt-cu12-bindings==10.13.3.9",
    "11.0.0.114": "tensorrt-cu12-bindings==11.0.0.114",
    "11.4.0.106": "tensorrt-cu12-bindings==11.4.0.106",
}

#: cuda-python -> the runtime module it has: the oldest we support (`cuda.cudart`, raises
#: RuntimeError without a driver), the first with `cuda.bindings` (12.6.1+), the newest.
CUDA_PYTHON = {"12.4.0": "cuda.cudart", "12.6.2.post1": "cuda.bindings.runtime",
               "13.4.4": "cuda.bindings.runtime"}

SHIM = '''"""`tensorrt` for the contract tests: the real binding wheel over stand-in libraries."""
import ctypes
import os
import sys

_STUBS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "stubs")
for _name in sorted(os.listdir(_STUBS)):
    ctypes.CDLL(os.path.join(_STUBS, _name), mode=ctypes.RTLD_GLOBAL)
import tensorrt_bindings as _bindings  # noqa: E402

sys.modules[__name__] = _bindings
'''


def cache_root() -> Path:
    path = Path(os.environ.get("EDGE_CONTRACT_CACHE", ROOT / ".ci" / "cache" / "contract"))
    path.mkdir(parents=True, exist_ok=True)
    return path


def unavailable(reason: str) -> None:
    """Skip, or fail where CI promises gcc and the registry (EDGE_CONTRACT_REQUIRED=1, set by
    .ci/run): a contract test must never pass there by skipping."""
    if os.environ.get("EDGE_CONTRACT_REQUIRED") == "1":
        pytest.fail(f"contract test cannot run: {reason}")
    pytest.skip(reason)


def _pip(*args: str) -> None:
    result = subprocess.run([sys.executable, "-m", "pip", *args, "--disable-pip-version-check",
                             "-q"], capture_output=True, text=True, timeout=600)
    if result.returncode != 0:
        unavailable(f"the package registry is not reachable (pip {args[0]}): "
                    f"{result.stderr.strip()[-300:]}")


def _stubs(folder: Path, major: int) -> None:
    if shutil.which("gcc") is None:
        unavailable("gcc is not installed: the stand-in TensorRT libraries cannot be built")
    folder.mkdir(parents=True, exist_ok=True)
    for name in STUB_LIBRARIES:
        soname = f"lib{name}.so.{major}"
        if not (folder / soname).is_file():
            subprocess.run(["gcc", "-shared", "-fPIC", "-O0", f"-Wl,-soname,{soname}", "-o",
                            str(folder / f".{soname}.tmp"), str(STUB_SOURCE)], check=True)
            (folder / f".{soname}.tmp").rename(folder / soname)


def tensorrt_bindings(version: str) -> Path:
    """A folder for PYTHONPATH where `import tensorrt` gives the real `version` bindings."""
    with held(cache_root() / ".lock"):  # pytest's workers fill the cache one at a time
        return _tensorrt_bindings(version)


def _tensorrt_bindings(version: str) -> Path:
    folder = cache_root() / f"tensorrt-{version}"
    _stubs(folder / "stubs", int(version.split(".", maxsplit=1)[0]))
    if not (folder / "tensorrt_bindings").is_dir():
        wheels = cache_root() / "wheels"
        _pip("download", "--no-deps", "--only-binary=:all:", "-d", str(wheels),
             TRT_BINDINGS[version])
        name = TRT_BINDINGS[version].split("==")[0].replace("-", "_")
        wheel = next(p for p in wheels.glob(f"{name}-{version}-*.whl"))
        with zipfile.ZipFile(wheel) as archive:
            archive.extractall(folder / ".unpack")
        (folder / ".unpack" / "tensorrt_bindings").rename(folder / "tensorrt_bindings")
        shutil.rmtree(folder / ".unpack")
    (folder / "tensorrt.py").write_text(SHIM)
    return folder


def pip_target(requirement: str) -> Path:
    """A `pip install --target` folder holding `requirement` (and its dependencies)."""
    folder = cache_root() / requirement.replace("==", "-")
    with held(cache_root() / ".lock"):
        if not (folder / ".complete").is_file():
            shutil.rmtree(folder, ignore_errors=True)
            _pip("install", "--target", str(folder), "--only-binary=:all:", "--no-compile",
                 requirement)
            (folder / ".complete").touch()
    return folder


def cuda_python(version: str) -> Path:
    return pip_target(f"cuda-python=={version}")


def python_path(*folders: Path) -> dict[str, str]:
    """The environment for a subprocess that imports edge from this checkout plus `folders`."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([*(str(f) for f in folders), str(ROOT)])
    env.pop("LD_LIBRARY_PATH", None)
    return env

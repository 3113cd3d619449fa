"""What a machine without TensorRT, pycuda or cuda-python sees."""

from __future__ import annotations

import subprocess
import sys

import pytest

from edge.config import ModelConfig
from edge.runners import choose_backend


def edge(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "edge", *args], capture_output=True, text=True,
                          timeout=120)


@pytest.fixture(autouse=True)
def no_tensorrt():
    import importlib.util

    if importlib.util.find_spec("tensorrt") is not None:
        pytest.skip("TensorRT is installed here")


def test_edge_imports_without_gpu_libraries():
    code = ("import sys, edge, edge.cli, edge.daemon, edge.runners, edge.tensorrt.engine_cache;"
            "bad = [m for m in ('tensorrt', 'pycuda', 'cuda', 'torch') if m in sys.modules];"
            "print(bad); sys.exit(1 if bad else 0)")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
    assert edge("--help").returncode == 0


def test_build_engine_exits_2_naming_tensorrt(demo_model):
    """Without a GPU, `pip install tensorrt` was advised, which cannot help there (the
    hardware self-test said so; build-engine and run did not)."""
    from edge.gpu.presence import gpu_present

    result = edge("build-engine", str(demo_model))
    assert result.returncode == 2
    assert "TensorRT is not installed" in result.stderr and "Traceback" not in result.stderr
    if gpu_present():
        assert "JetPack" in result.stderr
    else:
        assert "this machine has no NVIDIA GPU" in result.stderr
        assert "installing it would not help" in result.stderr
        assert "pip install tensorrt" not in result.stderr


@pytest.mark.parametrize("args", [["--hardware"], []])  # the only test, so the default
def test_selftest_exits_2_naming_tensorrt(args):
    from edge.gpu.presence import gpu_present

    result = edge("selftest", *args)
    assert result.returncode == 2 and "TensorRT is not installed" in result.stderr
    if not gpu_present():  # installing TensorRT would not help: says so first
        assert result.stderr.startswith("edge selftest: error: no NVIDIA GPU here")
        assert "pip install tensorrt" not in result.stderr


def test_auto_backend_falls_back_and_says_why(demo_model):
    choice = choose_backend(ModelConfig(path=demo_model))
    assert choice.name == "onnxruntime" and "TensorRT is not installed" in choice.reason


def test_run_with_backend_tensorrt_exits_2(tmp_path, demo_model):
    config = tmp_path / "edge.toml"
    config.write_text(f'[model]\npath = "{demo_model}"\nbackend = "tensorrt"\n'
                      '[[cameras]]\nname = "c"\nsource = "synthetic://shapes"\n')
    result = edge("run", "--config", str(config), "--no-build")
    assert result.returncode == 2
    assert "TensorRT is not installed" in result.stderr or "cuda-python or pycuda" in \
        result.stderr

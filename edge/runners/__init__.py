"""Inference backends behind one `Runner` interface, selected by the config's `backend` field."""

from __future__ import annotations

import importlib.util
import logging
from dataclasses import dataclass

from edge.config import ModelConfig
from edge.errors import InputError
from edge.gpu.presence import gpu_present
from edge.gpu.select import available_adapters
from edge.runners.base import Runner
from edge.tensorrt import INSTALL_HINT, TensorRTUnavailableError, load_tensorrt

log = logging.getLogger(__name__)

@dataclass(frozen=True)
class BackendChoice:
    name: str
    reason: str
    #: the reason is a set-up to fix (a GPU that TensorRT would use, TensorRT not found), not
    #: a machine that has no better backend: logged as a warning
    fixable: bool = False


def choose_backend(model: ModelConfig, requested_in: str = "the config") -> BackendChoice:
    """Which backend runs `model`, and why (reported in status and stats); `requested_in`
    names where a backend other than auto was asked for."""
    if model.backend != "auto":
        return BackendChoice(model.backend, f"requested in {requested_in}")
    if importlib.util.find_spec("tensorrt") is None:
        if gpu_present():  # a Jetson whose venv cannot see JetPack's TensorRT, say
            return BackendChoice("onnxruntime", "auto: this machine has an NVIDIA GPU but "
                                                "TensorRT is not installed for this Python "
                                                f"({INSTALL_HINT}), using ONNX Runtime on the "
                                                "CPU", fixable=True)
        return BackendChoice("onnxruntime", "auto: TensorRT is not installed, using ONNX Runtime "
                                            "on the CPU")
    if not gpu_present():
        return BackendChoice("onnxruntime", "auto: TensorRT is installed but no NVIDIA GPU was "
                                            "found, using ONNX Runtime on the CPU")
    try:  # installed is not loadable: a JetPack missing libnvinfer, an unsupported version
        load_tensorrt()
    except TensorRTUnavailableError as exc:
        return _tensorrt_unusable(exc.state or str(exc))
    except InputError as exc:
        return _tensorrt_unusable(str(exc))
    if not available_adapters():  # the real modules, not the `cuda` namespace
        return BackendChoice("onnxruntime", "auto: TensorRT is installed but neither cuda-python "
                                            "nor pycuda is, using ONNX Runtime on the CPU",
                             fixable=True)
    return BackendChoice("tensorrt", "auto: TensorRT and an NVIDIA GPU are present")


def _tensorrt_unusable(cause: str) -> BackendChoice:
    return BackendChoice("onnxruntime", f"auto: this machine has an NVIDIA GPU but {cause}, "
                                        "using ONNX Runtime on the CPU", fixable=True)


def runner_from_config(model: ModelConfig, choice: BackendChoice, max_batch: int = 1) -> Runner:
    """`max_batch`: rows per slot for a dynamic-batch model (a fixed batch is the model's)."""
    if choice.name == "tensorrt":
        from edge.runners.tensorrt_loader import trt_runner_from_config  # noqa: PLC0415 - the chosen backend only

        return trt_runner_from_config(model, max_batch)
    from edge.runners.onnxruntime import OrtRunner  # noqa: PLC0415 - the chosen backend only

    return OrtRunner.from_path(model.path, threads=model.threads, max_batch=max_batch)


__all__ = ["BackendChoice", "Runner", "choose_backend", "gpu_present", "runner_from_config"]

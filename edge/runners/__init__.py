"""Inference backends behind one `Runner` interface, selected by the config's `backend` field."""

from __future__ import annotations

import importlib.util
import logging
from dataclasses import dataclass
from pathlib import Path

from edge.config import ModelConfig
from edge.gpu.select import available_adapters
from edge.runners.base import Runner

log = logging.getLogger(__name__)

#: Device nodes that exist when an NVIDIA GPU (discrete or Jetson's integrated one) is present.
GPU_DEVICE_NODES = ("/dev/nvidia0", "/dev/nvhost-ctrl", "/dev/nvgpu/igpu0/ctrl")


@dataclass(frozen=True)
class BackendChoice:
    name: str
    reason: str


def gpu_present() -> bool:
    return any(Path(node).exists() for node in GPU_DEVICE_NODES)


def choose_backend(model: ModelConfig) -> BackendChoice:
    """Which backend runs `model`, and why (reported in status and stats)."""
    if model.backend != "auto":
        return BackendChoice(model.backend, "requested in the config")
    if importlib.util.find_spec("tensorrt") is None:
        return BackendChoice("onnxruntime", "auto: TensorRT is not installed, using ONNX Runtime "
                                            "on the CPU")
    if not gpu_present():
        return BackendChoice("onnxruntime", "auto: TensorRT is installed but no NVIDIA GPU was "
                                            "found, using ONNX Runtime on the CPU")
    if not available_adapters():  # the real modules, not the `cuda` namespace
        return BackendChoice("onnxruntime", "auto: TensorRT is installed but neither cuda-python "
                                            "nor pycuda is, using ONNX Runtime on the CPU")
    return BackendChoice("tensorrt", "auto: TensorRT and an NVIDIA GPU are present")


def runner_from_config(model: ModelConfig, choice: BackendChoice, max_batch: int = 1) -> Runner:
    """`max_batch`: rows per slot for a dynamic-batch model (a fixed batch is the model's)."""
    if choice.name == "tensorrt":
        from edge.runners.tensorrt_loader import trt_runner_from_config  # noqa: PLC0415 - the chosen backend only

        return trt_runner_from_config(model, max_batch)
    from edge.runners.onnxruntime import OrtRunner  # noqa: PLC0415 - the chosen backend only

    return OrtRunner.from_path(model.path, threads=model.threads, max_batch=max_batch)


__all__ = ["BackendChoice", "Runner", "choose_backend", "gpu_present", "runner_from_config"]

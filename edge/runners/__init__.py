"""Inference backends behind one `Runner` interface, selected by the config's `backend` field."""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass

from edge.config import ModelConfig
from edge.runners.base import Runner


@dataclass(frozen=True)
class BackendChoice:
    name: str
    reason: str


def choose_backend(model: ModelConfig) -> BackendChoice:
    """Which backend runs `model`, and why (reported in status and stats)."""
    if model.backend == "onnxruntime":
        return BackendChoice("onnxruntime", "requested in the config")
    if importlib.util.find_spec("tensorrt") is None:
        return BackendChoice("onnxruntime", "auto: TensorRT is not installed, using ONNX Runtime "
                                            "on the CPU")
    return BackendChoice("onnxruntime", "auto: this version runs ONNX models on ONNX Runtime; "
                                        "TensorRT engines are not supported yet")


def runner_from_config(model: ModelConfig, choice: BackendChoice) -> Runner:
    from edge.runners.onnxruntime import OrtRunner

    return OrtRunner.from_path(model.path, threads=model.threads)


__all__ = ["BackendChoice", "Runner", "choose_backend", "runner_from_config"]

"""TensorRT support: version handling, the engine cache, buffer planning. Only `load_tensorrt`
imports TensorRT itself, so everything else here runs (and is tested) without it."""

from __future__ import annotations

from typing import Any

from edge.errors import EdgeError
from edge.gpu.presence import GPU_DEVICE_NODES, gpu_present
from edge.tensorrt.versions import TrtVersion

INSTALL_HINT = ("TensorRT comes with JetPack (apt package python3-libnvinfer; in a venv use "
                "--system-site-packages); on an x86 workstation: pip install tensorrt")
NO_GPU_HINT = (f"this machine has no NVIDIA GPU (none of {', '.join(GPU_DEVICE_NODES)}), "
               "which TensorRT needs, so installing it would not help: build and run engines "
               "on the Jetson (an engine is built for the GPU it runs on); here the model runs "
               "on ONNX Runtime (backend \"onnxruntime\" or \"auto\")")


class TensorRTUnavailableError(EdgeError):
    """TensorRT (or a GPU for it) is not available on this machine; `state` says how TensorRT
    itself stands ("TensorRT is not installed"), where that is the reason."""

    def __init__(self, message: str, state: str = "") -> None:
        super().__init__(message)
        self.state = state


def load_tensorrt() -> Any:
    """The `tensorrt` module, or a clear error saying how to get it (or, on a machine without
    an NVIDIA GPU, that installing it would not help)."""
    try:
        import tensorrt  # noqa: PLC0415 - optional: the device's own TensorRT
    except ImportError as exc:
        missing = isinstance(exc, ModuleNotFoundError) and exc.name == "tensorrt"
        state = "TensorRT " + ("is not installed" if missing else f"cannot be loaded ({exc})")
        hint = INSTALL_HINT if gpu_present() else NO_GPU_HINT
        raise TensorRTUnavailableError(f"{state}: {hint}", state) from exc
    TrtVersion.parse(str(getattr(tensorrt, "__version__", "unknown")))  # supported, or exit 2
    return tensorrt

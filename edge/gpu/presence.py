"""Whether this machine has an NVIDIA GPU at all, from its device nodes (no driver call)."""

from __future__ import annotations

from pathlib import Path

#: Device nodes that exist when an NVIDIA GPU (discrete or Jetson's integrated one) is present.
GPU_DEVICE_NODES = ("/dev/nvidia0", "/dev/nvhost-ctrl", "/dev/nvgpu/igpu0/ctrl")


def gpu_present() -> bool:
    return any(Path(node).exists() for node in GPU_DEVICE_NODES)

"""Which GPU memory adapter to use. Detection looks for the module an adapter really imports
(`cuda.bindings.runtime` or `cuda.cudart`, `pycuda.driver`), never the `cuda` namespace, which
`cuda-pathfinder` or `cuda-core` also provide."""

from __future__ import annotations

import importlib.util

from edge.errors import MissingDependencyError
from edge.gpu.memory import AdapterName, GpuMemory

#: The module each adapter imports; any one of them present makes the adapter available.
ADAPTER_MODULES: dict[str, tuple[str, ...]] = {
    "cuda-python": ("cuda.bindings.runtime", "cuda.cudart"),
    "pycuda": ("pycuda.driver",),
}


def module_present(name: str) -> bool:
    """Whether `name` can be found, without importing it (its parent packages are imported)."""
    try:
        return importlib.util.find_spec(name) is not None
    except (ImportError, ValueError):  # a parent package is missing (or not a package)
        return False


def available_adapters() -> list[str]:
    return [adapter for adapter, modules in ADAPTER_MODULES.items()
            if any(module_present(module) for module in modules)]


def gpu_memory(choice: AdapterName = "auto", device: int = 0) -> GpuMemory:
    """The adapter `choice` names (cuda-python first for "auto"), created on this thread."""
    if choice == "auto":
        available = available_adapters()
        if not available:
            raise MissingDependencyError("cuda-python (or pycuda)", "jetson", "GPU memory")
        choice = "cuda-python" if "cuda-python" in available else "pycuda"
    if choice == "cuda-python":
        from edge.gpu.cuda_python import CudaPythonMemory  # noqa: PLC0415 - the chosen adapter only

        return CudaPythonMemory(device)
    from edge.gpu.pycuda import PycudaMemory  # noqa: PLC0415 - the chosen adapter only

    return PycudaMemory(device)

"""Extension modules load with SIGINT and SIGTERM held.

A signal handler's exception raised while an extension module initialises (its C or C++ code
calling back into Python: numpy, OpenCV, ONNX Runtime) can leave the module half-built. ONNX
Runtime then raises "ImportError: initialization failed", and Ctrl-C in the first few tenths of
a second of `edge calibrate` crashed the process (exit 139, twice in about 110 tries). Held, the
signal is delivered as soon as the module has loaded, and its exception unwinds from there like
from anywhere else (an import of numpy, OpenCV, ONNX and ONNX Runtime interrupted at random:
19 of 120 broke or crashed as they were; none of 400 now).

The signals are blocked for the importing thread only (`pthread_sigmask`). The executable
installs this before its first import, when no other thread exists, so no other thread can take
the signal meanwhile; threads started during a module's initialisation (OpenBLAS's) inherit the
mask and never take these signals.
"""

from __future__ import annotations

import contextlib
import importlib.machinery
import signal
import sys
from collections.abc import Iterator
from types import ModuleType

#: The signals `_signals_blocked` blocks.
HELD = frozenset({signal.SIGINT, signal.SIGTERM})


@contextlib.contextmanager
def _signals_blocked() -> Iterator[None]:
    """Inside, SIGINT and SIGTERM wait (blocked for this thread); one that arrived is delivered
    on the way out. Unlike `edge.files`' hold for its renames, which swaps in a recording
    handler because other threads run by then, no Python handler runs here at all: not even
    one that only records would belong inside a module's C initialisation."""
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, HELD)
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)


#: Extension modules whose loading a held signal ended: the import machinery drops a module
#: whose loader raised, and freeing a pybind11 module (ONNX's) that way crashed the process.
#: Kept here, they are never freed; the signal is ending the process anyway.
_INTERRUPTED: list[ModuleType] = []


class _HoldingExtensionLoader(importlib.machinery.ExtensionFileLoader):
    """The standard loader of extension modules, with signals held while it runs their
    initialisation (single-phase modules in `create_module`, multi-phase in `exec_module`)."""

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> ModuleType:
        with _signals_blocked():
            module = super().create_module(spec)
            _keep_if_interrupted(module)
            return module

    def exec_module(self, module: ModuleType) -> None:
        with _signals_blocked():
            super().exec_module(module)
            _keep_if_interrupted(module)


def _keep_if_interrupted(module: ModuleType) -> None:
    """Keep `module` alive when a held signal will raise as the signals are let through."""
    if HELD & signal.sigpending():
        _INTERRUPTED.append(module)


def hold_signals_while_extensions_load() -> None:
    """From now on, extension modules found on `sys.path` load with signals held. Idempotent;
    nothing where threads cannot block signals (Windows)."""
    if not hasattr(signal, "pthread_sigmask") or any(
            getattr(hook, "holds_signals", False) for hook in sys.path_hooks):
        return
    hook = importlib.machinery.FileFinder.path_hook(
        (_HoldingExtensionLoader, importlib.machinery.EXTENSION_SUFFIXES),
        (importlib.machinery.SourceFileLoader, importlib.machinery.SOURCE_SUFFIXES),
        (importlib.machinery.SourcelessFileLoader, importlib.machinery.BYTECODE_SUFFIXES))
    hook.holds_signals = True  # type: ignore[attr-defined]
    sys.path_hooks.insert(0, hook)
    sys.path_importer_cache.clear()  # the finders made so far use the standard loaders

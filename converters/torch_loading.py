"""Load a PyTorch model: a module class plus a state_dict checkpoint, or a TorchScript file."""

from __future__ import annotations

import importlib
import importlib.util
import inspect
import json
import logging
import sys
import zipfile
from pathlib import Path
from typing import Any

import torch
from torch import nn

from converters.errors import ConversionError

log = logging.getLogger(__name__)


def module_class_from_spec(spec: str) -> type[nn.Module]:
    """`package.module:Class` or `path/to/file.py:Class` -> the class."""
    location, _, name = spec.rpartition(":")
    if not location or not name:
        raise ConversionError(f"--module {spec!r} must look like package.module:Class or "
                              "path/to/file.py:Class")
    if location.endswith(".py"):
        path = Path(location)
        if not path.is_file():
            raise ConversionError(f"--module file {path} does not exist")
        module_spec = importlib.util.spec_from_file_location(path.stem, path)
        if module_spec is None or module_spec.loader is None:
            raise ConversionError(f"--module file {path} cannot be imported")
        module = importlib.util.module_from_spec(module_spec)
        sys.modules.setdefault(path.stem, module)
        module_spec.loader.exec_module(module)
    else:
        try:
            module = importlib.import_module(location)
        except ImportError as exc:
            local = Path(location.replace(".", "/") + ".py")
            hint = (f"; for the file {local} here, pass --module {local}:{name}"
                    if local.is_file() else "")
            raise ConversionError(f"--module: cannot import {location} ({exc}){hint}") from exc
    found = getattr(module, name, None)
    if not (inspect.isclass(found) and issubclass(found, nn.Module)):
        raise ConversionError(f"--module: {location} has no torch.nn.Module class {name!r}")
    return found


def module_from_checkpoint(module_class: type[nn.Module], checkpoint: Path,
                           arguments: dict[str, Any] | None = None) -> nn.Module:
    """Build `module_class(**arguments)` and load the checkpoint's state_dict strictly.

    Accepts a bare state_dict or the common wrappers {"state_dict": ...}, {"model": ...}."""
    try:
        network = module_class(**(arguments or {}))
    except TypeError as exc:
        raise ConversionError(f"cannot construct {module_class.__name__}: {exc}; pass its "
                              "arguments with --module-args '{\"name\": value}'") from exc
    expected = network.state_dict()
    state = _without_wrapper_prefix(_state_dict(checkpoint), expected)
    missing = [key for key in expected if key not in state]
    unexpected = [key for key in state if key not in expected]
    if missing or unexpected:
        raise ConversionError(
            f"checkpoint {checkpoint} does not match {module_class.__name__}: "
            f"missing keys {_listing(missing)}; unexpected keys {_listing(unexpected)}. Check "
            "--module and --module-args")
    resized = [f"{key} is {list(state[key].shape)} in the checkpoint, "
               f"{list(value.shape)} in the module" for key, value in expected.items()
               if tuple(state[key].shape) != tuple(value.shape)]
    if resized:
        raise ConversionError(
            f"checkpoint {checkpoint} does not match {module_class.__name__}"
            f"(**{arguments or {}}): {_listing(resized, 3)}. Check --module-args (the class "
            "count, widths) against what the checkpoint was trained with")
    try:
        network.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        first = str(exc).strip().splitlines()
        raise ConversionError(f"checkpoint {checkpoint} does not match "
                              f"{module_class.__name__}: {' '.join(first[1:3]).strip()}") from exc
    return network.eval()


def _listing(keys: list[str], limit: int = 8) -> str:
    if not keys:
        return "none"
    shown = ", ".join(keys[:limit])
    return f"{shown} (+{len(keys) - limit} more)" if len(keys) > limit else shown


#: What DataParallel / DistributedDataParallel (and torch.compile) put before every key of the
#: state_dict they save.
_WRAPPER_PREFIXES = ("module.", "_orig_mod.")


def _without_wrapper_prefix(state: dict[str, torch.Tensor], expected: dict[str, Any]
                            ) -> dict[str, torch.Tensor]:
    """`state` with a training wrapper's key prefix removed where every key has it and the
    module's keys do not."""
    for prefix in _WRAPPER_PREFIXES:
        if state and all(k.startswith(prefix) for k in state) and \
                not any(k.startswith(prefix) for k in expected):
            log.info("the checkpoint's keys start with %r (saved from a DataParallel or "
                     "compiled model); reading them without it", prefix)
            return {k[len(prefix):]: v for k, v in state.items()}
    return state


def _state_dict(checkpoint: Path) -> dict[str, torch.Tensor]:
    try:
        loaded = torch.load(checkpoint, map_location="cpu", weights_only=True)
    except (RuntimeError, OSError, EOFError, ValueError, zipfile.BadZipFile,
            json.JSONDecodeError) as exc:
        raise ConversionError(f"{checkpoint} is not a PyTorch checkpoint ({_first_line(exc)}); "
                              "pass a state_dict saved with torch.save") from exc
    for key in ("state_dict", "model_state_dict", "model"):
        if isinstance(loaded, dict) and isinstance(loaded.get(key), dict):
            loaded = loaded[key]
    if not isinstance(loaded, dict) or not all(isinstance(v, torch.Tensor)
                                               for v in loaded.values()):
        raise ConversionError(f"{checkpoint} holds no state_dict of tensors")
    return loaded


def module_from_torchscript(path: Path) -> nn.Module:
    try:
        loaded: nn.Module = torch.jit.load(str(path), map_location="cpu")  # type: ignore[no-untyped-call]
        return loaded.eval()
    except (RuntimeError, ValueError) as exc:
        raise ConversionError(f"{path} is not a TorchScript file ({_first_line(exc)})") from exc


def is_torchscript(path: Path) -> bool:
    """TorchScript archives are zip files holding a `code/` folder (or `constants.pkl`)."""
    if not zipfile.is_zipfile(path):
        return False
    with zipfile.ZipFile(path) as archive:
        return any("/code/" in n or n.endswith("constants.pkl") for n in archive.namelist())


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__

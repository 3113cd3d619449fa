"""Load a PyTorch model: a module class plus a state_dict checkpoint, or a TorchScript file."""

from __future__ import annotations

import contextlib
import importlib
import importlib.util
import inspect
import logging
import pickle
import shlex
import struct
import sys
import zipfile
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any, TypeGuard

import torch
from torch import nn

from converters.errors import ConversionError, first_line

log = logging.getLogger(__name__)


def module_class_from_spec(spec: str) -> type[nn.Module]:
    """`package.module:Class` or `path/to/file.py:Class` -> the class."""
    location, _, name = spec.rpartition(":")
    if not location or not name:
        raise ConversionError(f"--module {spec!r} must look like package.module:Class or "
                              "path/to/file.py:Class")
    module = _module_from_file(Path(location)) if location.endswith(".py") else \
        _module_from_package(location, name)
    found = getattr(module, name, None)
    if not (inspect.isclass(found) and issubclass(found, nn.Module)):
        defined = sorted(key for key, value in vars(module).items()
                         if inspect.isclass(value) and issubclass(value, nn.Module)
                         and value.__module__ == module.__name__)
        there = (f"; its classes: {_listing(defined)}" if defined
                 else "; it defines none")
        raise ConversionError(f"--module: {location} has no torch.nn.Module class "
                              f"{name!r}{there}")
    return found


def _module_from_file(path: Path) -> ModuleType:
    """The file imported as a module, with its folder first on the import path (so that its
    own `from blocks import Block` finds the file beside it)."""
    if not path.is_file():
        raise ConversionError(f"--module file {path} does not exist")
    package = _package_of(path.resolve())
    if package is not None and not _taken(*package):
        return _module_in_package(path, *package)
    module_spec = importlib.util.spec_from_file_location(path.stem, path)
    if module_spec is None or module_spec.loader is None:
        raise ConversionError(f"--module file {path} cannot be imported")
    module = importlib.util.module_from_spec(module_spec)
    sys.modules.setdefault(path.stem, module)
    folder = str(path.resolve().parent)
    sys.path.insert(0, folder)
    try:
        with _import_failures_named(str(path)):
            module_spec.loader.exec_module(module)
    finally:
        sys.path.remove(folder)
    return module


def _package_of(path: Path) -> tuple[Path, str] | None:
    """For a file inside a package (its folder has an `__init__.py`): the folder above the
    outermost package and the file's dotted name (`mypkg/models/net.py` -> `mypkg.models.net`),
    as `python -m` would import it; None for a plain folder."""
    folder, parts = path.parent, [path.stem]
    while (folder / "__init__.py").is_file():
        parts.insert(0, folder.name)
        folder = folder.parent
    return None if len(parts) == 1 else (folder, ".".join(parts))


def _taken(root: Path, dotted: str) -> bool:
    """Whether the package's name is already imported from elsewhere (a user's `converters/`
    beside edge's own): the file is then imported alone, as a plain file is."""
    loaded = sys.modules.get(dotted.split(".", maxsplit=1)[0])
    where = getattr(loaded, "__path__", None) or []
    return loaded is not None and all(Path(p).resolve().parent != root for p in where)


def _module_in_package(path: Path, root: Path, dotted: str) -> ModuleType:
    """The file imported by its dotted name, with the folder above its package first on the
    import path, so that its relative (`from .blocks import`) and package (`from mypkg.blocks
    import`) imports work, and its folder after it (`from blocks import`, as for a plain
    file)."""
    added = [str(root), str(path.resolve().parent)]
    sys.path[:0] = added
    try:
        with _import_failures_named(dotted):
            return importlib.import_module(dotted)
    finally:
        for folder in added:
            sys.path.remove(folder)


def _module_from_package(location: str, name: str) -> ModuleType:
    try:
        with _import_failures_named(location):
            return importlib.import_module(location)
    except ModuleNotFoundError as exc:  # `location` itself (or a package above it) is missing
        local = Path(location.replace(".", "/") + ".py")
        hint = (f"; for the file {local} here, pass --module {local}:{name}"
                if local.is_file() else "; check the name, and that its folder is on "
                "PYTHONPATH or the package is installed in this environment")
        raise ConversionError(f"--module: cannot import {location} ({exc}){hint}") from exc


@contextlib.contextmanager
def _import_failures_named(location: str) -> Iterator[None]:
    """An error raised by the module's own code while it is imported, as a ConversionError
    naming it: a module it imports that is not installed, a syntax error, anything its top
    level raises. A ModuleNotFoundError for `location` itself passes (the caller says how to
    name it)."""
    try:
        yield
    except ModuleNotFoundError as exc:
        missing = exc.name or ""
        if location == missing or location.startswith(f"{missing}."):
            raise
        beside = _file_beside(location, missing)
        if beside is not None:
            raise ConversionError(
                f"--module: importing {location} failed: it imports {missing!r}, the file "
                f"{beside} beside it, by a name Python looks for on its path, not in the "
                f"package: write `from .{missing} import ...` there, or pass the file: "
                f"--module {_file_of(location)}:Class") from exc
        raise ConversionError(f"--module: importing {location} failed: it imports {missing!r}, "
                              "which is not installed in this environment; install it (pip "
                              "install ...) where you run edge convert") from exc
    except SyntaxError as exc:
        raise ConversionError(f"--module: {location} has a syntax error ({exc.msg}, "
                              f"{exc.filename} line {exc.lineno}); fix it") from exc
    except Exception as exc:  # the module's own top-level code
        raise ConversionError(f"--module: importing {location} failed: {type(exc).__name__}: "
                              f"{first_line(exc)}; fix the module so it imports") from exc


def _file_of(location: str) -> Path | None:
    """The file of module `location` (package.module), without importing it."""
    try:
        found = importlib.util.find_spec(location)
    except (ImportError, ValueError):
        return None
    return Path(found.origin) if found is not None and found.origin else None


def _file_beside(location: str, name: str) -> Path | None:
    """`name`.py (or package `name`) in the folder of module `location`, where there is one."""
    module_file = _file_of(location)
    if module_file is None:
        return None
    for candidate in (module_file.parent / f"{name}.py", module_file.parent / name):
        if candidate.exists():
            return candidate
    return None


def module_from_checkpoint(module_class: type[nn.Module], checkpoint: Path,
                           arguments: dict[str, Any] | None = None,
                           entry: str | None = None) -> nn.Module:
    """Build `module_class(**arguments)` and load the checkpoint's state_dict strictly.

    Accepts a bare state_dict or the common wrappers {"state_dict": ...}, {"model": ...};
    `entry` names the one to read instead (a training run's EMA copy: "state_dict_ema",
    "model_ema")."""
    try:
        network = module_class(**(arguments or {}))
    except TypeError as exc:
        raise ConversionError(f"cannot construct {module_class.__name__}: {exc}; pass its "
                              "arguments with --module-args '{\"name\": value}'") from exc
    except Exception as exc:  # the user's constructor
        cuda = ("; conversion runs on the CPU: build the network there (no .cuda() or "
                ".to('cuda') in __init__)" if "cuda" in str(exc).lower() else "")
        raise ConversionError(f"constructing {_call(module_class.__name__, arguments)} "
                              f"failed: {type(exc).__name__}: {first_line(exc)}{cuda}") from exc
    expected = network.state_dict()
    state = _inside_a_wrapper(_without_wrapper_prefix(_state_dict(checkpoint, entry), expected),
                              expected, module_class.__name__)
    missing = [key for key in expected if key not in state
               and key.rpartition(".")[2] not in FILLED_IN_BUFFERS]
    unexpected = [key for key in state if key not in expected]
    if missing or unexpected:
        raise ConversionError(
            f"checkpoint {checkpoint} does not match {module_class.__name__}: "
            f"missing keys {_listing(missing)}; unexpected keys {_listing(unexpected)}. Check "
            "--module and --module-args")
    resized = [f"{key} is {list(state[key].shape)} in the checkpoint, "
               f"{list(value.shape)} in the module" for key, value in expected.items()
               if key in state and tuple(state[key].shape) != tuple(value.shape)]
    if resized:
        raise ConversionError(
            f"checkpoint {checkpoint} does not match "
            f"{_call(module_class.__name__, arguments)}: {_listing(resized, 3)}. Check "
            "--module-args (the class count, widths) against what the checkpoint was trained "
            "with")
    try:
        network.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        first = str(exc).strip().splitlines()
        raise ConversionError(f"checkpoint {checkpoint} does not match "
                              f"{module_class.__name__}: {' '.join(first[1:3]).strip()}") from exc
    return network.eval()


def _call(name: str, arguments: dict[str, Any] | None) -> str:
    """How the class was called, as Python reads it: `Net()`, `Net(classes=5, width=32)` (a
    user check: `Net(**{})` read as leaked internals)."""
    return f"{name}({', '.join(f'{key}={value!r}' for key, value in (arguments or {}).items())})"


def _listing(keys: list[str], limit: int = 8) -> str:
    if not keys:
        return "none"
    shown = ", ".join(keys[:limit])
    return f"{shown} (+{len(keys) - limit} more)" if len(keys) > limit else shown


#: Buffers a checkpoint may lack that PyTorch's own loading fills in (BatchNorm's step count:
#: checkpoints filtered to parameters and running statistics, or written by other tools; a
#: user check: one was refused as "missing keys" though `load_state_dict` took it).
FILLED_IN_BUFFERS = ("num_batches_tracked",)
#: What DataParallel / DistributedDataParallel (and torch.compile) put before every key of the
#: state_dict they save.
_WRAPPER_PREFIXES = ("module.", "_orig_mod.")


def _without_wrapper_prefix(state: dict[str, torch.Tensor], expected: dict[str, Any]
                            ) -> dict[str, torch.Tensor]:
    """`state` with a training wrapper's key prefix removed where every key has it and the
    module's keys do not: an averaged model's (with its step count), then DataParallel's and
    torch.compile's, one inside the other as they were nested."""
    count = next((key for key in _AVERAGED_COUNTS if key in state and key not in expected),
                 None)
    if count is not None and all(k.startswith("module.") for k in state if k != count) and \
            not any(k.startswith("module.") for k in expected):
        log.info("the checkpoint holds an averaged model's weights (an EMA or SWA copy, "
                 "its step count %r beside them): reading its network's", count)
        state = {k[len("module."):]: v for k, v in state.items() if k != count}
    changed = True
    while changed:
        changed = False
        for prefix in _WRAPPER_PREFIXES:
            if state and all(k.startswith(prefix) for k in state) and \
                    not any(k.startswith(prefix) for k in expected):
                log.info("the checkpoint's keys start with %r (saved from a DataParallel or "
                         "compiled model); reading them without it", prefix)
                state = {k[len(prefix):]: v for k, v in state.items()}
                changed = True
    if set(state) == set(expected):
        return state
    # a training wrapper's attribute (a Lightning module's `self.model`): stripped only where
    # the keys then match the module's exactly
    prefix = _common_prefix(list(state))
    if prefix and not any(k.startswith(prefix) for k in expected):
        stripped = {k[len(prefix):]: v for k, v in state.items()}
        if set(stripped) == set(expected):
            log.info("the checkpoint's keys all start with %r (the attribute a training "
                     "wrapper kept the network in); reading them without it", prefix)
            return stripped
    return state


#: The step count an averaged model keeps beside its network, whose keys it saves under
#: `module.`: `torch.optim.swa_utils.AveragedModel`'s (PyTorch's EMA and SWA), mmengine's
#: `ExponentialMovingAverage`'s.
_AVERAGED_COUNTS = ("n_averaged", "steps")
#: Where training loops put the weights in the dicts they save (else the dict is the weights).
_WEIGHT_KEYS = ("state_dict", "model_state_dict", "model")


def _inside_a_wrapper(state: dict[str, torch.Tensor], expected: dict[str, Any],
                      wrapper: str) -> dict[str, torch.Tensor]:
    """`state` with the prefix every module key has and no checkpoint key has (`net.`) put in
    front, where that makes the keys match: the network's own weights loaded into a module
    that wraps it (to take the camera's frames, say), without saving them again."""
    prefix = _common_prefix(list(expected))
    if not prefix or any(key.startswith(prefix) for key in state):
        return state
    prefixed = {prefix + key: value for key, value in state.items()}
    if set(prefixed) != set(expected):
        return state
    log.info("the checkpoint's weights are those of %s's %s: read into it", wrapper,
             prefix.rstrip("."))
    return prefixed


def _common_prefix(keys: list[str]) -> str:
    """The dotted prefix (`net.`, `model.backbone.`) all `keys` share, or ""."""
    if not keys:
        return ""
    parts = [key.split(".")[:-1] for key in keys]
    common: list[str] = []
    for level in zip(*parts, strict=False):
        if len(set(level)) != 1:
            break
        common.append(level[0])
    return "".join(f"{part}." for part in common)


def _state_dict(checkpoint: Path, entry: str | None = None) -> dict[str, torch.Tensor]:
    """The weights in `checkpoint`: the file itself, its `entry` where one is named, else its
    first of `_WEIGHT_KEYS`."""
    whole = loaded = _loaded_weights(checkpoint)
    if entry is not None:
        loaded = _named_entry(whole, entry, checkpoint)
        log.info("read the weights in the checkpoint's %r entry", entry)
    for key in _WEIGHT_KEYS:
        if isinstance(loaded, dict) and isinstance(loaded.get(key), dict):
            others = [str(k) for k, v in loaded.items() if k != key and isinstance(v, dict)]
            if others:  # which one was read is not obvious: an EMA copy, a second model
                log.info("read the weights in the checkpoint's %r entry (it also holds %s)%s",
                         key, ", ".join(repr(other) for other in others),
                         _ema_pointer(loaded, key, others) if entry is None else "")
            loaded = loaded[key]
    if _is_weights(loaded):
        return loaded
    if entry is not None:
        holders = _weight_holders(whole)
        raise ConversionError(
            f"--weights-entry {entry}: {checkpoint}'s {entry!r} entry holds no weights "
            f"({_what_it_holds(loaded)})"
            + (f"; its entries that hold weights: {', '.join(holders)}" if holders else ""))
    holders = _weight_holders(loaded)
    if holders:
        raise ConversionError(
            f"{checkpoint} holds its weights under {', '.join(repr(k) for k in holders)}, not "
            f"where they are read by default: pass --weights-entry {holders[0]}")
    raise ConversionError(
        f"{checkpoint} holds no state_dict of tensors ({_what_it_holds(loaded)}); the weights "
        f"are read from the file itself or from its {', '.join(repr(k) for k in _WEIGHT_KEYS)} "
        "entry: save them with torch.save(model.state_dict(), PATH)")


def _ema_pointer(loaded: dict[Any, Any], read: str, others: list[str]) -> str:
    """The option that reads the EMA copy beside the weights read, where one is there. Not
    for mmengine, whose EMA hook swaps the two before saving: its `state_dict` is the EMA's,
    its `ema_state_dict` the training weights."""
    if read == "state_dict" and "ema_state_dict" in others and "meta" in loaded:
        return ("; mmengine keeps the EMA weights there, the training ones in "
                "'ema_state_dict'")
    averaged = [other for other in others if "ema" in other.lower()]
    return f"; --weights-entry {averaged[0]} reads its EMA copy instead" if averaged else ""


def _what_it_holds(loaded: object) -> str:
    if isinstance(loaded, dict):
        return f"its keys: {_listing([str(k) for k in loaded])}"
    name = type(loaded).__name__
    return f"it holds {'an' if name[:1] in 'aeiou' else 'a'} {name}"


def _weight_holders(loaded: object) -> list[str]:
    """The entries of `loaded` that hold weights, themselves or under a `_WEIGHT_KEYS` key."""
    if not isinstance(loaded, dict):
        return []
    return [str(k) for k, v in loaded.items() if _is_weights(v) or (
        isinstance(v, dict) and any(_is_weights(v.get(key)) for key in _WEIGHT_KEYS))]


def _is_weights(loaded: object) -> TypeGuard[dict[str, torch.Tensor]]:
    return isinstance(loaded, dict) and bool(loaded) and all(
        isinstance(v, torch.Tensor) for v in loaded.values())


def _named_entry(loaded: object, entry: str, checkpoint: Path) -> object:
    """`loaded[entry]`, or an error that says which entries there are."""
    if isinstance(loaded, dict) and entry in loaded:
        return loaded[entry]
    if _is_weights(loaded):
        held = "it is a bare state_dict, the weights themselves: leave --weights-entry out"
    elif isinstance(loaded, dict):
        held = f"its entries: {_listing([str(k) for k in loaded])}"
    else:
        held = _what_it_holds(loaded)
    raise ConversionError(f"--weights-entry {entry}: {checkpoint} has no such entry ({held})")


class _UnreadableCheckpointError(ConversionError):
    def __init__(self, checkpoint: Path, cause: str) -> None:
        super().__init__(f"{checkpoint} is not a PyTorch checkpoint ({cause}); pass a "
                         "state_dict saved with torch.save")
        self.cause = cause


class _PickledModelError(ConversionError):
    def __init__(self, checkpoint: Path, unpickling: str) -> None:
        """`unpickling`: torch.load's refusal, which names the first class it met."""
        if "ultralytics" in unpickling:
            super().__init__(
                f"{checkpoint} is an Ultralytics checkpoint (a pickled model: edge does not "
                "unpickle models, which runs code from the file); export it to ONNX with "
                f"Ultralytics, `yolo export model={shlex.quote(str(checkpoint))} format=onnx`, "
                "and convert the .onnx it writes: it carries the labels and input size")
            return
        super().__init__(
            f"{checkpoint} holds a whole pickled model (torch.save(model), or a training "
            "checkpoint that keeps the model object under a key, as YOLOv5's {'model': ...}); "
            "edge reads only weights, since unpickling a model runs code from the file: re-save "
            "it as torch.save(model.state_dict(), 'weights.pt') (for a checkpoint, "
            "ckpt['model'].state_dict()) and pass its class with --module, or as TorchScript "
            "with torch.jit.script(model).save('model.torchscript')")


def _loaded_weights(checkpoint: Path) -> Any:
    """What `torch.load` reads without running code from the file (`weights_only`): tensors,
    dicts, lists, numbers. A whole pickled model needs its classes unpickled, which runs
    the file's code, so it is refused with the two ways to re-save it."""
    try:
        return torch.load(checkpoint, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        if "Unsupported global" not in str(exc):
            raise _UnreadableCheckpointError(checkpoint, _unpickling_cause(exc)) from exc
        if _saved_by_torch(checkpoint):
            raise _PickledModelError(checkpoint, str(exc)) from exc
        raise _UnreadableCheckpointError(checkpoint, NO_FORMAT) from exc
    except Exception as exc:  # a file's content: anything torch.load raises
        raise _UnreadableCheckpointError(checkpoint, _load_cause(exc)) from exc


def _saved_by_torch(path: Path) -> bool:
    """Whether `path` starts as torch.save writes: a zip archive (since PyTorch 1.6) or a
    binary pickle (protocol 2 or later, the legacy format). A text file can read as an old
    text pickle (a line starting with `c` is its GLOBAL opcode: "cat\ndog" names a class
    `dog` in a module `at`), which is no model."""
    with path.open("rb") as handle:
        start = handle.read(2)
    return start == b"PK" or start[:1] == b"\x80"


NO_FORMAT = "its content is no format torch.load reads"
#: What the unpickler raises from inside on bytes that only start like a pickle (a text
#: file's "a,b": APPEND on an empty stack, "pop from empty list"): no cause a user can act on.
_UNPICKLER_INTERNALS = (IndexError, KeyError, EOFError, TypeError, AttributeError, struct.error)


def _load_cause(exc: Exception) -> str:
    """torch.load's error in words: on bytes of no format it knows it raises the unpickler's
    own errors (a KeyError whose whole message is the number it read where a magic number
    should be, an IndexError from an empty stack), which say nothing to a user."""
    if isinstance(exc, _UNPICKLER_INTERNALS):
        return NO_FORMAT
    return first_line(exc)


def _unpickling_cause(exc: pickle.UnpicklingError) -> str:
    """The cause in torch's message, without its advice to load with `weights_only=False`
    (which runs the file's code, and fails the same way on a file that is no pickle)."""
    after = str(exc).partition("WeightsUnpickler error:")[2]
    cause = next((line.strip() for line in after.splitlines() if line.strip()), "")
    if not cause or cause.startswith("Check the documentation"):
        return "not a pickle of tensors"
    if cause.startswith("Unsupported operand"):  # bytes that are no pickle at all: the
        return NO_FORMAT  # byte it stopped at says nothing
    return cause


def checkpoint_problem(path: Path, entry: str | None = None) -> str | None:
    """Why `path` (neither ONNX nor TorchScript) cannot be converted, or None when it holds
    weights for `--module` to load, in its `entry` where one is named (a file of optimizer
    state alone is named as one before --module is asked for)."""
    try:
        _state_dict(path, entry)
    except _PickledModelError as exc:
        return str(exc)
    except _UnreadableCheckpointError as exc:
        return (f"{path} is not an ONNX, TorchScript or PyTorch file ({exc.cause}): pass the "
                "model file that your training or export wrote")
    except ConversionError as exc:  # no weights in it
        return str(exc)
    return None


def damaged_archive(path: Path) -> str | None:
    """A zip's header with no readable archive behind it: TorchScript and torch.save files are
    zips, so this is one of them cut short or corrupted."""
    with path.open("rb") as handle:
        starts_as_zip = handle.read(4) == b"PK\x03\x04"
    if not starts_as_zip or zipfile.is_zipfile(path):
        return None
    return (f"{path} is a damaged TorchScript or PyTorch archive (a zip file cut short or "
            "corrupted): copy or export it again in full")


def module_from_torchscript(path: Path) -> nn.Module:
    try:
        loaded: nn.Module = torch.jit.load(str(path), map_location="cpu")  # type: ignore[no-untyped-call]
        return loaded.eval()
    except Exception as exc:  # a file's content: anything torch.jit.load raises
        raise ConversionError(f"{path} is a TorchScript archive that does not load "
                              f"({first_line(exc)}): it may be damaged or from a newer PyTorch; "
                              "export it again with this PyTorch's torch.jit.script") from exc


def is_torchscript(path: Path) -> bool:
    """TorchScript archives are zip files holding a `code/` folder (or `constants.pkl`)."""
    if not zipfile.is_zipfile(path):
        return False
    with zipfile.ZipFile(path) as archive:
        return any("/code/" in n or n.endswith("constants.pkl") for n in archive.namelist())


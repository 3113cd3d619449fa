"""Strict stand-ins for the TensorRT classes that need the real libnvinfer (Builder, config,
network, parser, runtime, engine, context), generated from the real classes of the installed
binding wheel: every method and property is taken from the real class, and every call is
checked against the pybind11 signature in its docstring.

An attribute the real class lacks, a wrong argument count or type, a keyword the signature does
not name, or a write to a read-only property fails exactly as (or more strictly than) the
binding would. What a call returns comes from a small behaviour table (`World`), and the return
value is itself checked against the signature.
"""

from __future__ import annotations

import inspect
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

_PREFIXES = ("tensorrt_bindings.tensorrt.", "tensorrt.tensorrt.", "tensorrt.", "typing.",
             "typing_extensions.", "collections.abc.")


@dataclass(frozen=True)
class Param:
    name: str
    type: str
    has_default: bool


@dataclass(frozen=True)
class Signature:
    params: tuple[Param, ...]  # without self
    returns: str


def _clean(type_text: str) -> str:
    text = type_text.strip()
    for prefix in _PREFIXES:
        text = text.replace(prefix, "")
    return text


def split_top(text: str) -> list[str]:
    """Split on commas outside brackets."""
    parts, depth, current = [], 0, ""
    for char in text:
        depth += char in "[(<"
        depth -= char in "])>"
        if char == "," and depth == 0:
            parts.append(current)
            current = ""
        else:
            current += char
    if current.strip():
        parts.append(current)
    return [p.strip() for p in parts]


def _parse_line(line: str) -> Signature | None:
    start = line.index("(")
    depth, end = 0, -1
    for index in range(start, len(line)):
        depth += line[index] == "("
        depth -= line[index] == ")"
        if depth == 0:
            end = index
            break
    inner, rest = line[start + 1:end], line[end + 1:]
    if "*args" in inner:
        return None
    params = []
    for part in split_top(inner)[1:]:  # the first is self / arg0
        name, _, annotated = part.partition(":")
        type_text, equals, _default = annotated.partition(" = ")
        params.append(Param(name.strip(), _clean(type_text), bool(equals)))
    returns = _clean(rest.split("->", 1)[1]) if "->" in rest else "None"
    return Signature(tuple(params), returns)


def signatures(doc: str | None, name: str) -> list[Signature]:
    """Every overload pybind11 documents for `name` ("" for a property's accessor)."""
    found = []
    for raw in (doc or "").splitlines():
        line = re.sub(r"^\d+\.\s+", "", raw.strip())
        if line.startswith(f"{name}(") and (name or line.startswith("(")):
            parsed = _parse_line(line)
            if parsed is not None:
                found.append(parsed)
    return found


class StandIn:
    """Base of the generated classes; `_trt_class` names the real class it stands in for."""

    _trt_class = ""
    _world: World

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        state: dict[str, Any] = {}
        object.__setattr__(self, "_state", state)
        bound = self._world.check_call(self._trt_class, "__init__", args, kwargs)
        self._world.construct(self, bound)

    def __getattr__(self, name: str) -> Any:
        raise AttributeError(f"TensorRT {self._world.version}: '{self._trt_class}' has no "
                             f"attribute '{name}'")

    def __setattr__(self, name: str, value: Any) -> None:
        descriptor = getattr(type(self), name, None)
        if isinstance(descriptor, property):
            descriptor.__set__(self, value)
            return
        raise AttributeError(f"TensorRT {self._world.version}: '{self._trt_class}' has no "
                             f"writable attribute '{name}'")

    def __repr__(self) -> str:
        return f"<stand-in {self._trt_class}>"


class World:
    """The fake TensorRT: checks calls against the real signatures and plays the behaviour."""

    def __init__(self, trt: Any) -> None:
        self.trt = trt
        self.version = str(trt.__version__)
        self.classes: dict[str, type[StandIn]] = {}
        self.behaviour: dict[tuple[str, str], Callable[..., Any]] = {}
        self.calls: list[tuple[str, str, dict[str, Any]]] = []

    # -- generation -------------------------------------------------------------------------
    def standin(self, name: str) -> type[StandIn]:
        if name in self.classes:
            return self.classes[name]
        real = getattr(self.trt, name)
        namespace: dict[str, Any] = {"_trt_class": name, "_world": self}
        for attr in dir(real):
            if attr.startswith("_"):
                continue
            raw = inspect.getattr_static(real, attr)
            if isinstance(raw, property):
                namespace[attr] = self._property(name, attr, raw)
            elif callable(raw):
                namespace[attr] = self._method(name, attr)
        cls = type(f"StandIn{name}", (StandIn,), namespace)
        self.classes[name] = cls
        return cls

    def _method(self, cls: str, name: str) -> Callable[..., Any]:
        def method(this: StandIn, *args: Any, **kwargs: Any) -> Any:
            bound = self.check_call(cls, name, args, kwargs)
            return self.play(this, cls, name, bound)
        method.__name__ = name
        return method

    def _property(self, cls: str, name: str, raw: property) -> property:
        getter_sig = signatures(raw.fget.__doc__ if raw.fget else "", "")
        setter_sig = signatures(raw.fset.__doc__, "") if raw.fset is not None else []

        def get(this: StandIn) -> Any:
            state = object.__getattribute__(this, "_state")
            if name in state:
                return state[name]
            value = self.play(this, cls, f"get {name}", {})
            if getter_sig:
                self.check_value(getter_sig[0].returns, value, f"{cls}.{name}")
            return value

        def set_(this: StandIn, value: Any) -> None:
            if raw.fset is None:
                raise AttributeError(f"TensorRT {self.version}: {cls}.{name} is read-only")
            if setter_sig and not self.accepts(setter_sig[0].params[0].type, value):
                raise TypeError(f"TensorRT {self.version}: {cls}.{name} takes "
                                f"{setter_sig[0].params[0].type}, not {type(value).__name__}")
            object.__getattribute__(this, "_state")[name] = value
            self.calls.append((cls, f"set {name}", {"value": value}))

        return property(get, set_)

    # -- checking ---------------------------------------------------------------------------
    def check_call(self, cls: str, name: str, args: tuple[Any, ...],
                   kwargs: dict[str, Any]) -> dict[str, Any]:
        """Bind the call to one of the real overloads, or raise TypeError like pybind11."""
        real = getattr(self.trt, cls)
        doc = getattr(real, name).__doc__
        overloads = signatures(doc, name)
        if not overloads:
            raise AssertionError(f"no pybind11 signature found for {cls}.{name}")
        problems = []
        for signature in overloads:
            bound, problem = self._bind(signature, args, kwargs)
            if problem is None:
                self.calls.append((cls, name, bound))
                return bound
            problems.append(problem)
        raise TypeError(f"TensorRT {self.version}: {cls}.{name}(): incompatible arguments "
                        f"({'; '.join(problems)})")

    def _bind(self, signature: Signature, args: tuple[Any, ...],
              kwargs: dict[str, Any]) -> tuple[dict[str, Any], str | None]:
        params = signature.params
        if len(args) > len(params):
            return {}, f"{len(args)} positional arguments for {len(params)} parameters"
        bound = {p.name: a for p, a in zip(params, args, strict=False)}
        for key, value in kwargs.items():
            if key not in {p.name for p in params} or key in bound:
                return {}, f"unexpected keyword {key!r}"
            bound[key] = value
        for param in params:
            if param.name not in bound:
                if not param.has_default:
                    return {}, f"missing {param.name}"
                continue
            if not self.accepts(param.type, bound[param.name]):
                return {}, (f"{param.name} must be {param.type}, got "
                            f"{type(bound[param.name]).__name__}")
        return bound, None

    def accepts(self, type_text: str, value: Any) -> bool:
        text = type_text.strip()
        optional = re.fullmatch(r"Optional\[(.*)\]", text)
        if optional:
            return value is None or self.accepts(optional.group(1), value)
        if text.endswith("| None"):
            return value is None or self.accepts(text[:-6], value)
        sequence = re.fullmatch(r"(?:List|list|Sequence)\[(.*)\]", text)
        if sequence:
            return isinstance(value, (list, tuple)) and all(
                self.accepts(sequence.group(1), item) for item in value)
        if text in ("int", "SupportsInt", "SupportsIndex"):
            return isinstance(value, (int, np.integer)) or (
                hasattr(value, "__index__") and not isinstance(value, (float, str)))
        if text in ("float", "SupportsFloat"):
            return isinstance(value, (int, float, np.integer, np.floating))
        if text == "bool":
            return isinstance(value, (bool, np.bool_))
        if text == "str":
            return isinstance(value, str)
        if text in ("buffer", "Buffer", "bytes"):
            return isinstance(value, (bytes, bytearray, memoryview, np.ndarray))
        real = getattr(self.trt, text, None)
        if isinstance(real, type):
            return self._accepts_class(text, real, value)
        return True  # capsule, object, numpy arrays, callables: not our contract here

    def _accepts_class(self, name: str, real: type, value: Any) -> bool:
        if isinstance(value, real):
            return True
        if isinstance(value, StandIn):
            return issubclass(getattr(self.trt, value._trt_class), real)
        if name.startswith("Dims"):  # pybind converts a sequence of ints to Dims
            return isinstance(value, (list, tuple)) and all(
                isinstance(v, (int, np.integer)) for v in value)
        return False

    def check_value(self, type_text: str, value: Any, where: str) -> None:
        if type_text == "None":
            if value is not None:
                raise AssertionError(f"stand-in {where} returned {value!r} for None")
            return
        if value is not None and not self.accepts(type_text, value):
            raise AssertionError(f"stand-in {where} returned {type(value).__name__}, the real "
                                 f"signature says {type_text}")

    # -- behaviour --------------------------------------------------------------------------
    def construct(self, this: StandIn, bound: dict[str, Any]) -> None:
        init = self.behaviour.get((this._trt_class, "__init__"))
        if init is not None:
            init(this, **bound)

    def play(self, this: StandIn, cls: str, name: str, bound: dict[str, Any]) -> Any:
        behaviour = self.behaviour.get((cls, name))
        if behaviour is None:
            raise NotImplementedError(f"the contract world has no behaviour for {cls}.{name}; "
                                      "add one (the call itself matched the real signature)")
        value = behaviour(this, **bound)
        if not name.startswith("get "):
            overloads = signatures(getattr(getattr(self.trt, cls), name).__doc__, name)
            self.check_value(overloads[0].returns, value, f"{cls}.{name}")
        return value

    def new(self, cls: str, **state: Any) -> StandIn:
        """A stand-in made by TensorRT itself (no constructor call)."""
        instance = object.__new__(self.standin(cls))
        object.__setattr__(instance, "_state", dict(state))
        return instance


def state(this: StandIn) -> dict[str, Any]:
    """The stand-in's private state (what the fake TensorRT remembers about it)."""
    value: dict[str, Any] = object.__getattribute__(this, "_state")
    return value

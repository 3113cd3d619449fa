"""A `tensorrt` module for the contract checks: the real binding module of one TensorRT version
(enums, Dims, Logger, nptype, IProgressMonitor, IInt8EntropyCalibrator2 are the real ones),
with the classes that need the real libnvinfer replaced by strict stand-ins (`standins`).

The behaviour is the least TensorRT does that our code relies on, plus TensorRT's own rules
that our code must respect: no precision flags on a strongly typed network, the callbacks
(progress monitor, INT8 calibrator) called from C++ through the real pybind11 trampolines
during a build, and `deserialize_cuda_engine` returning None for a foreign engine.
"""

from __future__ import annotations

import ctypes
import itertools
import json
import types
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from tests.contract.standins import StandIn, World, state

MAGIC = b"EDGE-FAKE-ENGINE\n"
PRECISION_FLAGS = ("FP16", "INT8", "BF16", "FP8", "INT4", "FP4")


@dataclass
class Io:
    name: str
    is_input: bool
    shape: tuple[int, ...]
    dtype: str  # DataType member name: UINT8, FLOAT, HALF


@dataclass
class Recorder:
    """What the fake saw, for the assertions."""

    builds: list[dict[str, Any]] = field(default_factory=list)
    executions: int = 0
    trampoline_errors: list[str] = field(default_factory=list)
    #: the runtime's DLA core (-1: never set) at each deserialization
    deserialized_on_dla: list[int] = field(default_factory=list)


def _trampoline(base: Any, method: str, target: Any, *args: Any) -> Any:
    """Call `method` of the real pybind base class on `target`: C++ virtual dispatch, which
    reaches a Python override only through the real trampoline (by its exact name)."""
    return getattr(base, method)(target, *args)


def overridden(calibrator: Any, base: type) -> set[str]:
    """The public methods `calibrator`'s class defines itself (its Python overrides)."""
    return {name for cls in type(calibrator).__mro__ if not issubclass(base, cls)
            for name in vars(cls) if not name.startswith("_") and callable(vars(cls)[name])}


def _call_calibrator(trt: Any, calibrator: Any, recorder: Recorder) -> None:
    """The binding dispatches only get_batch_size (and get_algorithm) from C++ to Python; the
    names of the other overrides are checked against the real base class instead."""
    base = trt.IInt8EntropyCalibrator2
    if int(_trampoline(base, "get_batch_size", calibrator)) < 1:
        recorder.trampoline_errors.append("get_batch_size did not reach the Python override")
    expected = {n for n in dir(base) if not n.startswith("_")} - {"get_algorithm"}
    if overridden(calibrator, base) != expected:
        recorder.trampoline_errors.append(
            f"overrides {sorted(overridden(calibrator, base))}, the base has {sorted(expected)}")


def _call_monitor(trt: Any, monitor: Any) -> None:
    base = trt.IProgressMonitor
    _trampoline(base, "phase_start", monitor, "Building engine", None, 2)
    _trampoline(base, "phase_start", monitor, "Tactic selection", "Building engine", 2)
    for step in range(2):
        if not _trampoline(base, "step_complete", monitor, "Tactic selection", step):
            raise AssertionError("the progress monitor cancelled the build")
    _trampoline(base, "phase_finish", monitor, "Tactic selection")
    _trampoline(base, "phase_finish", monitor, "Building engine")


def fake_tensorrt(real: Any, tensors: list[Io], recorder: Recorder) -> types.ModuleType:
    """A module like `real` whose Builder, Runtime and OnnxParser are strict stand-ins."""
    world = World(real)
    module = types.ModuleType("tensorrt")
    module.__dict__.update({k: v for k, v in vars(real).items() if not k.startswith("__")})
    module.__version__ = real.__version__
    module.world = world  # type: ignore[attr-defined]
    _builder(world, next(t for t in tensors if t.is_input), recorder)
    _runtime(world, tensors, recorder)
    module.Builder = world.standin("Builder")  # type: ignore[attr-defined]
    module.OnnxParser = world.standin("OnnxParser")  # type: ignore[attr-defined]
    module.Runtime = world.standin("Runtime")  # type: ignore[attr-defined]
    host = world.standin("IHostMemory")
    host.__bytes__ = lambda this: state(this)["data"]  # type: ignore[attr-defined]
    return module


def _host_memory(world: World, data: bytes) -> StandIn:
    return world.new("IHostMemory", data=data)


def _builder(world: World, image: Io, recorder: Recorder) -> None:
    """Builder, network, parser, config, profile, timing cache."""
    real, behaviour = world.trt, world.behaviour
    behaviour["Builder", "__init__"] = lambda this, logger: None
    behaviour["Builder", "create_network"] = lambda this, flags=0: world.new(
        "INetworkDefinition", flags=int(flags), num_inputs=1)
    behaviour["Builder", "create_builder_config"] = lambda this: world.new(
        "IBuilderConfig", flags=set(), profiles=[])
    behaviour["Builder", "create_optimization_profile"] = lambda this: world.new(
        "IOptimizationProfile", shapes={})
    behaviour["INetworkDefinition", "get_input"] = lambda this, index: world.new(
        "ITensor", name=image.name, shape=real.Dims(list(image.shape)))
    behaviour["OnnxParser", "__init__"] = lambda this, network, logger: None
    behaviour["OnnxParser", "parse"] = lambda this, model, path=None: bytes(model[:4]) != b""
    behaviour["OnnxParser", "get num_errors"] = lambda this: 0
    behaviour["IBuilderConfig", "set_memory_pool_limit"] = lambda this, pool, pool_size: None
    behaviour["IBuilderConfig", "set_flag"] = lambda this, flag: state(this)["flags"].add(
        flag.name)
    behaviour["IBuilderConfig", "create_timing_cache"] = lambda this, serialized_timing_cache: \
        world.new("ITimingCache", data=bytes(serialized_timing_cache))
    behaviour["IBuilderConfig", "set_timing_cache"] = lambda this, cache, ignore_mismatch: True
    behaviour["IBuilderConfig", "get_timing_cache"] = lambda this: world.new(
        "ITimingCache", data=b"timing")
    behaviour["ITimingCache", "serialize"] = lambda this: _host_memory(world,
                                                                       state(this)["data"])
    behaviour["IBuilderConfig", "add_optimization_profile"] = lambda this, profile: (
        state(this)["profiles"].append(state(profile)["shapes"]) or
        len(state(this)["profiles"]) - 1)

    def set_shape(this: StandIn, input: str, min: Any, opt: Any, max: Any) -> None:
        shapes = [tuple(s) for s in (min, opt, max)]
        if not all(a <= b for lo, hi in itertools.pairwise(shapes)
                   for a, b in zip(lo, hi, strict=True)):
            raise AssertionError(f"profile for {input}: min <= opt <= max violated: {shapes}")
        state(this)["shapes"][input] = shapes

    behaviour["IOptimizationProfile", "set_shape"] = set_shape
    behaviour["Builder", "build_serialized_network"] = lambda this, network, config: _build(
        world, image, recorder, network, config)


def _build(world: World, image: Io, recorder: Recorder, network: StandIn,
           config: StandIn) -> StandIn | None:
    """TensorRT's rules our builds must respect; the callbacks through the trampolines."""
    real, settings = world.trt, state(config)
    typed_flag = getattr(real.NetworkDefinitionCreationFlag, "STRONGLY_TYPED", None)
    strongly_typed = typed_flag is not None and bool(
        state(network)["flags"] & (1 << int(typed_flag)))
    flags = sorted(settings["flags"])
    if strongly_typed and set(flags) & set(PRECISION_FLAGS):
        return None  # TensorRT: precision flags are not allowed on a strongly typed network
    if image.shape[0] == -1 and not settings["profiles"]:
        return None  # TensorRT: a dynamic input needs an optimization profile
    if settings.get("progress_monitor") is not None:
        _call_monitor(real, settings["progress_monitor"])
    if settings.get("int8_calibrator") is not None:
        _call_calibrator(real, settings["int8_calibrator"], recorder)
    recorder.builds.append({
        "flags": flags, "strongly_typed": strongly_typed, "profiles": settings["profiles"],
        "calibrator": settings.get("int8_calibrator") is not None,
        "monitor": settings.get("progress_monitor") is not None,
        "dla_core": settings.get("DLA_core", -1), "device_type": settings.get(
            "default_device_type")})
    return _host_memory(world, MAGIC + json.dumps({"flags": flags}).encode())


def _runtime(world: World, tensors: list[Io], recorder: Recorder) -> None:
    """Runtime, engine, execution context."""
    real, behaviour = world.trt, world.behaviour
    by_name = {t.name: t for t in tensors}
    behaviour["Runtime", "__init__"] = lambda this, logger: None
    def deserialize(this: Any, serialized_engine: Any) -> Any:
        recorder.deserialized_on_dla.append(state(this).get("DLA_core", -1))
        return (world.new("ICudaEngine", num_io_tensors=len(tensors))
                if bytes(serialized_engine).startswith(MAGIC) else None)  # None: foreign

    behaviour["Runtime", "deserialize_cuda_engine"] = deserialize
    behaviour["ICudaEngine", "get_tensor_name"] = lambda this, index: tensors[index].name
    behaviour["ICudaEngine", "get_tensor_mode"] = lambda this, name: (
        real.TensorIOMode.INPUT if by_name[name].is_input else real.TensorIOMode.OUTPUT)
    behaviour["ICudaEngine", "get_tensor_shape"] = lambda this, name: real.Dims(
        list(by_name[name].shape))
    behaviour["ICudaEngine", "get_tensor_dtype"] = lambda this, name: getattr(
        real.DataType, by_name[name].dtype)
    behaviour["ICudaEngine", "create_execution_context"] = lambda this: world.new(
        "IExecutionContext", addresses={}, shapes={})

    def set_input_shape(this: StandIn, name: str, shape: Any) -> bool:
        state(this)["shapes"][name] = tuple(shape)
        return name in by_name and by_name[name].is_input

    def set_address(this: StandIn, name: str, memory: int) -> bool:
        state(this)["addresses"][name] = int(memory)
        return name in by_name

    behaviour["IExecutionContext", "set_input_shape"] = set_input_shape
    behaviour["IExecutionContext", "set_tensor_address"] = set_address
    behaviour["IExecutionContext", "execute_async_v3"] = lambda this, stream_handle: _execute(
        this, tensors, recorder)
    behaviour["IExecutionContext", "execute_async_v2"] = lambda this, bindings, stream_handle, \
        input_consumed=None: _execute(this, tensors, recorder)


def _execute(context: StandIn, tensors: list[Io], recorder: Recorder) -> bool:
    """Writes 0.5 into every output element, at the addresses our runner set."""
    addresses, shapes = state(context)["addresses"], state(context)["shapes"]
    if set(addresses) != {t.name for t in tensors}:
        return False  # TensorRT: every I/O tensor needs an address
    image = next(t for t in tensors if t.is_input)
    rows = shapes.get(image.name, image.shape)[0]
    if rows < 0:
        return False  # TensorRT: the input shape of a dynamic engine was never set
    for tensor in tensors:
        if not tensor.is_input:
            dtype = np.float16 if tensor.dtype == "HALF" else np.float32
            shape = (rows if tensor.shape[0] == -1 else tensor.shape[0], *tensor.shape[1:])
            values = np.full(shape, 0.5, dtype)
            ctypes.memmove(addresses[tensor.name], values.ctypes.data, values.nbytes)
    recorder.executions += 1
    return True

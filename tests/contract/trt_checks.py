"""Contract checks of our TensorRT code against ONE real TensorRT binding wheel (run by
test_tensorrt_contract.py in a subprocess per version, with the stand-in libnvinfer loaded).

Every check runs our real modules; the `broken` checks run deliberately broken copies of them
(their source with one edit) and must fail on the versions where that edit is wrong.
"""

from __future__ import annotations

import ctypes
import gc
import importlib.util
import sys
import threading
import types
import weakref
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import tensorrt as real_trt  # the shim: real bindings over the stand-in libraries

from edge.errors import InputError, ModelError
from edge.gpu.memory import DeviceInfo, GpuMemory, HostBuffer
from edge.tensorrt.engine_cache import GpuIdentity
from edge.tensorrt.versions import TrtVersion
from tests.contract.fake_tensorrt import MAGIC, Io, Recorder, fake_tensorrt
from tests.contract.tiny_models import SIZE, tiny_model, tiny_spec

VERSION = TrtVersion.parse(real_trt.__version__)
pytestmark = pytest.mark.contract
DETECTOR = [Io("images", True, (1, SIZE, SIZE, 3), "UINT8"),
            Io("output0", False, (1, 6, SIZE * SIZE), "FLOAT")]
DYNAMIC = [Io("images", True, (-1, SIZE, SIZE, 3), "UINT8"),
           Io("output0", False, (-1, 6, SIZE * SIZE), "HALF")]


class HostMemory(GpuMemory):
    """GpuMemory on plain host memory: device pointers are host addresses, copies memmove."""

    name = "host"

    def __init__(self, integrated: bool) -> None:
        self.owner = threading.get_ident()
        self.integrated = integrated
        self._keep: list[Any] = []

    def device(self) -> DeviceInfo:
        return DeviceInfo(GpuIdentity("Contract GPU", "8.7", 16), self.integrated, 8 << 30)

    def free_bytes(self) -> int:
        return 4 << 30

    def host_buffer(self, shape: tuple[int, ...], dtype: str, mapped: bool) -> HostBuffer:
        array = np.zeros(shape, dtype)
        self._keep.append(array)
        return HostBuffer(array, array.ctypes.data if mapped else 0, array)

    def device_buffer(self, nbytes: int) -> int:
        block = np.zeros(nbytes, np.uint8)
        self._keep.append(block)
        return int(block.ctypes.data)

    def stream(self) -> int:
        return len(self._keep) + 1

    def copy_to_device(self, destination: int, source: Any, stream: int) -> None:
        ctypes.memmove(destination, source.ctypes.data, source.nbytes)

    def copy_to_host(self, destination: Any, source: int, stream: int) -> None:
        ctypes.memmove(destination.ctypes.data, source, destination.nbytes)

    def event(self) -> Any:
        return object()

    def record(self, event: Any, stream: int) -> None:
        self.check_thread()

    def wait(self, event: Any) -> None:
        self.check_thread()

    def close(self) -> None:
        self._keep.clear()


def fake(monkeypatch: pytest.MonkeyPatch, tensors: list[Io] = DETECTOR
         ) -> tuple[Any, Recorder]:
    recorder = Recorder()
    module = fake_tensorrt(real_trt, tensors, recorder)
    monkeypatch.setitem(sys.modules, "tensorrt", module)
    return module, recorder


def broken(module_name: str, old: str, new: str, **replace: Any) -> types.ModuleType:
    """A copy of our module with `old` replaced by `new` in its source (must occur)."""
    spec = importlib.util.find_spec(module_name)
    assert spec is not None and spec.origin is not None
    source = Path(spec.origin).read_text()
    assert old in source, f"{old!r} not in {module_name}: the broken copy would be no copy"
    copy = types.ModuleType(f"{module_name}_broken")
    copy.__file__ = spec.origin
    sys.modules[copy.__name__] = copy  # dataclasses look their module up
    exec(compile(source.replace(old, new), f"{spec.origin} (broken)", "exec"), copy.__dict__)
    copy.__dict__.update(replace)
    return copy


# -- the real binding: names our code uses ------------------------------------------------------

def test_real_enums_and_types_we_use():
    from edge.tensorrt.versions import build_plan

    trt = real_trt
    assert trt.Logger(trt.Logger.WARNING) is not None
    assert tuple(trt.Dims([1, SIZE, SIZE, 3])) == (1, SIZE, SIZE, 3)
    for name, dtype in (("UINT8", np.uint8), ("FLOAT", np.float32), ("HALF", np.float16)):
        assert trt.nptype(getattr(trt.DataType, name)) is dtype
    assert trt.TensorIOMode.INPUT != trt.TensorIOMode.OUTPUT
    assert trt.MemoryPoolType.WORKSPACE is not None and trt.DeviceType.DLA is not None
    flag = "STRONGLY_TYPED" if VERSION.major >= 10 else "EXPLICIT_BATCH"
    assert hasattr(trt.NetworkDefinitionCreationFlag, flag)
    plans = [build_plan(VERSION, "int8", "qdq"), build_plan(VERSION, "int8", "qdq", dla=True)]
    if not VERSION.strongly_typed_only:
        plans += [build_plan(VERSION, "fp16", "none"),
                  build_plan(VERSION, "int8", "calibration-cache")]
    for plan in plans:
        for flag_name in plan.flags:
            assert hasattr(trt.BuilderFlag, flag_name), flag_name
    assert hasattr(trt, "IInt8EntropyCalibrator2") == VERSION.supports_calibrators
    assert hasattr(trt, "IProgressMonitor") == (VERSION.major >= 10)


def test_standins_are_strict(monkeypatch):
    """The harness itself: what the real binding refuses, the stand-ins refuse."""
    module, _ = fake(monkeypatch)
    world = module.world
    engine = world.new("ICudaEngine", num_io_tensors=2)
    with pytest.raises(AttributeError, match="read-only"):
        engine.num_io_tensors = 3
    with pytest.raises(AttributeError, match="no attribute 'get_binding_name_typo'"):
        engine.get_binding_name_typo(0)
    with pytest.raises(AttributeError, match="no writable attribute"):
        engine.anything = 1
    with pytest.raises(TypeError, match="incompatible arguments"):
        engine.get_tensor_name("images")  # index: int
    with pytest.raises(TypeError, match="incompatible arguments"):
        engine.get_tensor_shape()  # missing name
    with pytest.raises(TypeError, match="unexpected keyword"):
        engine.get_tensor_name(index=0, extra=1)
    with pytest.raises(TypeError, match="incompatible arguments"):
        module.Builder("not a logger")
    world.behaviour["ICudaEngine", "get_tensor_name"] = lambda this, index: 42
    with pytest.raises(AssertionError, match="the real signature says str"):
        engine.get_tensor_name(0)


# -- builder --------------------------------------------------------------------------------

@pytest.mark.parametrize("qdq", [True, False])
def test_build_through_standins(monkeypatch, tmp_path, qdq, capfd):
    from edge.tensorrt.builder import BuildOptions, engine_from_onnx

    _, recorder = fake(monkeypatch)
    model = tiny_model(tmp_path / "tiny.onnx", qdq=qdq)
    precision = "int8" if qdq else ("fp32" if VERSION.strongly_typed_only else "fp16")
    built = engine_from_onnx(model, BuildOptions(precision=precision, timing_cache=tmp_path / "t"),
                             tiny_spec("int8-qdq" if qdq else "float"))
    assert built.data.startswith(MAGIC) and (tmp_path / "t").read_bytes() == b"timing"
    (build,) = recorder.builds
    expected = {"int8": ["FP16", "INT8"], "fp16": ["FP16"], "fp32": []}[precision]
    assert build["flags"] == ([] if VERSION.strongly_typed_only else expected)
    assert build["strongly_typed"] == (VERSION.major >= 11)
    assert build["monitor"] == (VERSION.major >= 10) and not build["calibrator"]
    assert "Exception caught" not in capfd.readouterr().err


def test_dynamic_batch_gets_a_profile(monkeypatch, tmp_path):
    from edge.tensorrt.builder import BuildOptions, engine_from_onnx

    _, recorder = fake(monkeypatch, DYNAMIC)
    model = tiny_model(tmp_path / "tiny.onnx", qdq=True, batch=None)
    engine_from_onnx(model, BuildOptions(precision="int8", max_batch=4),
                     tiny_spec("int8-qdq", batch=None))
    (build,) = recorder.builds
    assert build["profiles"] == [{"images": [(1, SIZE, SIZE, 3), (4, SIZE, SIZE, 3),
                                             (4, SIZE, SIZE, 3)]}]


def test_the_daemon_runs_an_engine_built_for_more_rows(monkeypatch, tmp_path):
    """An audit: `edge build-engine` (--max-batch 8 by default) then the daemon with two
    cameras (two rows) rebuilt the engine: the one built for 8 rows now serves 2."""
    from edge.config import ModelConfig
    from edge.runners import tensorrt_loader
    from edge.tensorrt.builder import BuildOptions
    from edge.tensorrt.store import resolve_engine

    _, recorder = fake(monkeypatch, DYNAMIC)
    model = tiny_model(tmp_path / "tiny.onnx", qdq=True, batch=None)
    gpu = GpuIdentity("Contract GPU", "8.7", 16)
    assert resolve_engine(model, BuildOptions(precision="int8", max_batch=8), gpu).built
    monkeypatch.setattr(tensorrt_loader, "gpu_memory", lambda *a, **k: HostMemory(False))
    with tensorrt_loader.trt_runner_from_config(ModelConfig(path=model, build_engine=False),
                                                max_batch=2) as runner:
        runner.submit(0, 2)
        assert np.all(runner.wait(0) == 0.5) and runner.max_batch == 2
    assert len(recorder.builds) == 1


def test_dla_build_sets_the_real_properties(monkeypatch, tmp_path):
    from edge.tensorrt.builder import BuildOptions, engine_from_onnx

    _, recorder = fake(monkeypatch)
    model = tiny_model(tmp_path / "tiny.onnx", qdq=True)
    engine_from_onnx(model, BuildOptions(precision="int8", dla_core=1), tiny_spec("int8-qdq"))
    (build,) = recorder.builds
    assert "GPU_FALLBACK" in build["flags"]
    assert build["dla_core"] == 1 and build["device_type"] == real_trt.DeviceType.DLA


def test_a_dla_engine_is_deserialized_on_its_dla_core(monkeypatch, tmp_path):
    """An audit: the builder set the DLA core, the runtime never did (its default -1), so an
    engine built for `dla_core = 1` was not deserialized for that core."""
    from edge.config import ModelConfig
    from edge.runners import tensorrt_loader

    _, recorder = fake(monkeypatch)
    model = tiny_model(tmp_path / "tiny.onnx", qdq=True)
    monkeypatch.setattr(tensorrt_loader, "gpu_memory", lambda *a, **k: HostMemory(True))
    for core in (1, -1):
        with tensorrt_loader.trt_runner_from_config(ModelConfig(path=model, dla_core=core)):
            pass
    assert recorder.deserialized_on_dla == [1, -1]
    assert [build["dla_core"] for build in recorder.builds] == [1, -1]


def test_precision_is_honest(monkeypatch, tmp_path):
    from edge.tensorrt.builder import BuildOptions, engine_from_onnx
    from edge.tensorrt.precision import engine_precision

    fake(monkeypatch)
    qdq = tiny_model(tmp_path / "q.onnx", qdq=True)
    plain = tiny_model(tmp_path / "f.onnx", qdq=False)
    assert engine_precision(qdq, "auto", VERSION) == "int8"
    with pytest.raises(InputError, match="builds as int8 only"):
        engine_precision(qdq, "fp16", VERSION)
    with pytest.raises(InputError, match="edge calibrate"):
        engine_from_onnx(plain, BuildOptions(precision="int8"), tiny_spec("float"))
    if VERSION.strongly_typed_only:
        assert engine_precision(plain, "auto", VERSION) == "fp32"
        with pytest.raises(InputError, match="strongly typed"):
            engine_precision(plain, "fp16", VERSION)
    else:
        assert engine_precision(plain, "auto", VERSION) == "fp16"


@pytest.mark.skipif(not VERSION.supports_calibrators, reason="no calibrators after 10.x")
def test_build_from_a_calibration_cache(monkeypatch, tmp_path, capfd):
    from edge.tensorrt.builder import BuildOptions, engine_from_onnx
    from edge.tensorrt.calibration_cache import CalibrationCache

    _, recorder = fake(monkeypatch)
    cache = tmp_path / "tiny.cache"
    CalibrationCache.from_scales({"nchw": 0.5}, str(VERSION), ("images", 1.0)).write(cache)
    model = tiny_model(tmp_path / "tiny.onnx", qdq=False)
    engine_from_onnx(model, BuildOptions(precision="int8", calibration_cache=cache),
                     tiny_spec("float"))
    (build,) = recorder.builds
    assert build["calibrator"] and build["flags"] == ["FP16", "INT8"]
    assert recorder.trampoline_errors == []
    assert "Exception caught" not in capfd.readouterr().err


@pytest.mark.skipif(not VERSION.supports_calibrators, reason="no calibrators on TensorRT 11")
def test_the_daemon_runs_the_engine_build_engine_made_from_a_cache(monkeypatch, tmp_path):
    """An audit: the README's `edge build-engine MODEL --cache FILE` for a float model gave an
    engine the daemon could not ask for (`precision = "int8"` was exit 2, `auto` an fp16
    key): `model.calibration_cache` names the cache, and the engine built with it is run."""
    from edge.config import ModelConfig
    from edge.runners import tensorrt_loader
    from edge.tensorrt.builder import BuildOptions
    from edge.tensorrt.calibration_cache import CalibrationCache
    from edge.tensorrt.store import resolve_engine

    _, recorder = fake(monkeypatch)
    cache = tmp_path / "tiny.cache"
    CalibrationCache.from_scales({"nchw": 0.5}, str(VERSION), ("images", 1.0)).write(cache)
    model = tiny_model(tmp_path / "tiny.onnx", qdq=False, recorded="float")
    gpu = GpuIdentity("Contract GPU", "8.7", 16)
    built = resolve_engine(model, BuildOptions(precision="int8", calibration_cache=cache), gpu)
    assert built.built and built.sidecar.key.precision == "int8"
    monkeypatch.setattr(tensorrt_loader, "gpu_memory", lambda *a, **k: HostMemory(True))
    for precision in ("auto", "int8"):
        config = ModelConfig(path=model, precision=precision, calibration_cache=cache,
                             build_engine=False)
        with tensorrt_loader.trt_runner_from_config(config) as runner:
            assert np.all(runner.infer(0) == 0.5)
            assert runner.precision == "int8"  # what the device status says ran
    assert len(recorder.builds) == 1
    with pytest.raises(InputError, match=r"a float model: an INT8 engine needs .* for the daemon, "
                                         r"model\.calibration_cache = FILE"):
        tensorrt_loader.trt_runner_from_config(ModelConfig(path=model, precision="int8"))


@pytest.mark.skipif(not VERSION.supports_calibrators, reason="no calibrators on TensorRT 11")
def test_a_calibration_cache_of_another_model_is_refused(monkeypatch, tmp_path):
    """An audit: a cache whose tensors the network does not have built every layer without
    INT8 scales (FP16, a "Missing scale" warning each), and the engine still read as INT8."""
    from edge.tensorrt.builder import BuildOptions, engine_from_onnx
    from edge.tensorrt.calibration_cache import CalibrationCache

    _, recorder = fake(monkeypatch)
    cache = tmp_path / "other.cache"
    CalibrationCache.from_scales({"/model.0/conv/Conv_output_0": 0.5, "/model.1/act": 0.2},
                                 str(VERSION), ("input", 1.0)).write(cache)
    model = tiny_model(tmp_path / "tiny.onnx", qdq=False)
    # "input" is found in the model's bytes (its spec's JSON): a lenient look-up, 2 of 3 left
    with pytest.raises(InputError, match=r"other\.cache scales 3 tensors, 2 of them not in "
                                         r".*tiny\.onnx \(e\.g\. /model\.0/conv/"
                                         r"Conv_output_0, /model\.1/act\): it was made for "
                                         r"another model"):
        engine_from_onnx(model, BuildOptions(precision="int8", calibration_cache=cache),
                         tiny_spec("float"))
    assert recorder.builds == []


@pytest.mark.skipif(not VERSION.supports_calibrators, reason="no calibrators on TensorRT 11")
def test_an_engine_is_rebuilt_for_a_new_calibration_cache(monkeypatch, tmp_path):
    """An audit: recalibrating and building again with the new cache reused the engine built
    from the old one ("reused"), its scales the old ones."""
    from edge.tensorrt.builder import BuildOptions
    from edge.tensorrt.calibration_cache import CalibrationCache
    from edge.tensorrt.store import resolve_engine

    _, recorder = fake(monkeypatch)
    cache = tmp_path / "tiny.cache"
    CalibrationCache.from_scales({"nchw": 0.5}, str(VERSION), ("images", 1.0)).write(cache)
    model = tiny_model(tmp_path / "tiny.onnx", qdq=False)
    gpu = GpuIdentity("Contract GPU", "8.7", 16)
    options = BuildOptions(precision="int8", calibration_cache=cache)
    assert resolve_engine(model, options, gpu).built
    assert not resolve_engine(model, options, gpu).built
    CalibrationCache.from_scales({"nchw": 0.25}, str(VERSION), ("images", 1.0)).write(cache)
    again = resolve_engine(model, options, gpu)
    assert again.built and "calibration_sha256" in again.reason
    assert len(recorder.builds) == 2


@pytest.mark.skipif(VERSION.supports_calibrators, reason="TensorRT 8.5-10 have calibrators")
def test_calibration_cache_refused_on_11(monkeypatch, tmp_path):
    from edge.tensorrt.builder import BuildOptions, engine_from_onnx

    fake(monkeypatch)
    model = tiny_model(tmp_path / "tiny.onnx", qdq=False)
    with pytest.raises(InputError, match="no implicit INT8 calibration"):
        engine_from_onnx(model, BuildOptions(precision="int8", calibration_cache=tmp_path / "c"),
                         tiny_spec("float"))


# -- engine cache ---------------------------------------------------------------------------

def test_engine_cache_rebuilds_what_it_must(monkeypatch, tmp_path):
    import json

    from edge.tensorrt.builder import BuildOptions
    from edge.tensorrt.store import resolve_engine

    _, recorder = fake(monkeypatch)
    model = tiny_model(tmp_path / "tiny.onnx", qdq=True)
    gpu = GpuIdentity("Contract GPU", "8.7", 16)
    options = BuildOptions(precision="int8")
    first = resolve_engine(model, options, gpu)
    assert first.built and first.sidecar.key.precision == "int8"
    assert first.sidecar.key.trt_version == real_trt.__version__
    assert not resolve_engine(model, options, gpu).built
    first.entry.engine.write_bytes(b"corrupt")
    rebuilt = resolve_engine(model, options, gpu)
    assert rebuilt.built and "does not match its sidecar" in rebuilt.reason
    sidecar = json.loads(first.entry.sidecar.read_text())
    sidecar["key"]["precision"] = "fp16"  # claims a precision the engine was not built with
    first.entry.sidecar.write_text(json.dumps(sidecar))
    claimed = resolve_engine(model, options, gpu)
    assert claimed.built and "precision: engine has 'fp16', needed 'int8'" in claimed.reason
    assert len(recorder.builds) == 3


# -- runner ---------------------------------------------------------------------------------

@pytest.mark.parametrize("integrated", [True, False])
def test_runner_through_standins(monkeypatch, integrated):
    from edge.runners.tensorrt import TrtRunner

    _, recorder = fake(monkeypatch)
    with TrtRunner(MAGIC, tiny_spec("int8-qdq"), HostMemory(integrated)) as runner:
        assert runner.input_buffer(0).shape == (1, SIZE, SIZE, 3)
        output = runner.infer(0)
        assert output.shape == (1, 6, SIZE * SIZE) and np.all(output == 0.5)
        runner.submit(1)
        assert np.all(runner.wait(1) == 0.5)
    assert recorder.executions == 2


def test_runner_dynamic_batch_half_output(monkeypatch):
    from edge.runners.tensorrt import TrtRunner

    fake(monkeypatch, DYNAMIC)
    with TrtRunner(MAGIC, tiny_spec("int8-qdq", batch=None), HostMemory(False)) as runner:
        output = runner.infer(0)
        assert output.dtype == np.float32 and np.all(output == 0.5)


def test_rows_outside_the_profile_are_a_model_error(monkeypatch):
    """An audit: set_input_shape's False was ignored, so rows outside the engine's profile
    surfaced as "execute_async_v3 failed"."""
    from edge.runners.tensorrt import TrtRunner

    module, _ = fake(monkeypatch, DYNAMIC)
    within = module.world.behaviour["IExecutionContext", "set_input_shape"]
    module.world.behaviour["IExecutionContext", "set_input_shape"] = (
        lambda this, name, shape: within(this, name, shape) and next(iter(shape)) <= 2)
    with pytest.raises(ModelError, match=r"the engine takes no \[4, 32, 32, 3\] images \("
                                         r"outside its optimization profile"):
        TrtRunner(MAGIC, tiny_spec("int8-qdq", batch=None), HostMemory(False), max_batch=4)


def test_foreign_engine_is_a_model_error(monkeypatch):
    from edge.runners.tensorrt import TrtRunner

    fake(monkeypatch)
    with pytest.raises(ModelError, match="rebuild it"):
        TrtRunner(b"built elsewhere", tiny_spec("int8-qdq"), HostMemory(True))


class ClosingMemory(HostMemory):
    """HostMemory that records, when closed, which of the TensorRT objects `watched` (weak
    references) were still alive: with pycuda, `close` pops and detaches the CUDA context, and
    an engine freed after that frees its device memory with no context current."""

    def __init__(self, integrated: bool) -> None:
        super().__init__(integrated)
        self.watched: list[weakref.ref[Any]] = []
        self.alive_at_close: list[bool] | None = None

    def close(self) -> None:
        gc.collect()
        self.alive_at_close = [ref() is not None for ref in self.watched]
        super().close()


def test_the_runner_releases_tensorrt_before_the_cuda_context(monkeypatch):
    """A user-side audit: close() dropped the execution contexts but left the engine and the
    runtime to the garbage collector, after pycuda's context was gone (TensorRT's
    "deallocate ... Cuda Runtime (invalid argument)", a crash at exit)."""
    from edge.runners.tensorrt import TrtRunner

    fake(monkeypatch)
    memory = ClosingMemory(True)
    runner = TrtRunner(MAGIC, tiny_spec("int8-qdq"), memory)
    runner.infer(0)
    memory.watched = [weakref.ref(runner._engine), weakref.ref(runner._runtime),
                      *(weakref.ref(slot.context) for slot in runner._slots)]
    runner.close()  # the runner object itself stays referenced here, as the service keeps it
    assert memory.alive_at_close == [False] * len(memory.watched)


def test_a_runner_that_fails_to_start_closes_its_cuda_context(monkeypatch, tmp_path):
    """A failed start (here no cached engine with build_engine = false) left pycuda's context
    pushed on the inference thread, whose end then aborts the process ("context stack was not
    empty") instead of the exit 2 that names the setting."""
    from edge.config import ModelConfig
    from edge.runners import tensorrt_loader

    fake(monkeypatch)
    made: list[ClosingMemory] = []

    def memory(*args: Any, **kwargs: Any) -> ClosingMemory:
        made.append(ClosingMemory(True))
        return made[-1]

    monkeypatch.setattr(tensorrt_loader, "gpu_memory", memory)
    model = tiny_model(tmp_path / "tiny.onnx", qdq=True)
    with pytest.raises(ModelError, match="no usable TensorRT engine"):
        tensorrt_loader.trt_runner_from_config(ModelConfig(path=model, build_engine=False))
    assert len(made) == 1 and made[0].alive_at_close == []  # closed


# -- callbacks from C++ through the real trampolines ----------------------------------------

@pytest.mark.skipif(VERSION.major < 10, reason="IProgressMonitor arrived in TensorRT 10")
def test_progress_monitor_overrides_reach_python(capfd):
    from edge.tensorrt.builder import _monitor

    monitor = _monitor(real_trt)
    base = real_trt.IProgressMonitor
    base.phase_start(monitor, "Building engine", None, 3)
    assert base.step_complete(monitor, "Building engine", 0) is True
    base.phase_finish(monitor, "Building engine")
    assert "Exception caught" not in capfd.readouterr().err


@pytest.mark.skipif(not VERSION.supports_calibrators, reason="no calibrators after 10.x")
def test_calibrator_overrides_reach_python(tmp_path, capfd):
    from edge.tensorrt.calibration_cache import CalibrationCache
    from edge.tensorrt.calibrator import calibrator_from_cache
    from tests.contract.fake_tensorrt import overridden

    cache = tmp_path / "c.cache"
    CalibrationCache.from_scales({"x": 0.5}, str(VERSION), None).write(cache)
    calibrator = calibrator_from_cache(real_trt, cache, str(VERSION))
    base = real_trt.IInt8EntropyCalibrator2
    assert isinstance(calibrator, real_trt.IInt8Calibrator)
    assert base.get_batch_size(calibrator) == 1  # C++ -> trampoline -> our override
    assert base.get_algorithm(calibrator) == real_trt.CalibrationAlgoType.ENTROPY_CALIBRATION_2
    assert overridden(calibrator, base) == {
        "get_batch_size", "get_batch", "read_calibration_cache", "write_calibration_cache"}
    assert "Exception caught" not in capfd.readouterr().err


@pytest.mark.skipif(VERSION.supports_calibrators, reason="TensorRT 8.5-10 have calibrators")
def test_calibrator_refused_on_11(tmp_path):
    from edge.tensorrt.calibrator import calibrator_from_cache

    with pytest.raises(InputError, match="no INT8 calibrators"):
        calibrator_from_cache(real_trt, tmp_path / "c.cache", str(VERSION))


# -- deliberately broken copies: each must fail where its edit is wrong --------------------

def test_broken_removed_execute_async_v2(monkeypatch):
    runner_module = broken("edge.runners.tensorrt", "context.execute_async_v3(state.stream)",
                           "context.execute_async_v2([], state.stream)")
    fake(monkeypatch)
    runner = runner_module.TrtRunner(MAGIC, tiny_spec("int8-qdq"), HostMemory(True))
    if VERSION.major >= 10:
        with pytest.raises(AttributeError, match="execute_async_v2"):
            runner.infer(0)
    else:
        runner.infer(0)  # still there in 8.6


def test_broken_int8_flags_on_strongly_typed(monkeypatch, tmp_path):
    from edge.tensorrt import builder

    versions = broken("edge.tensorrt.versions", "if version.strongly_typed_only:", "if False:")
    copy = broken("edge.tensorrt.builder", "plan = build_plan(", "plan = build_plan_(",
                  build_plan_=versions.build_plan)
    _, recorder = fake(monkeypatch)
    model = tiny_model(tmp_path / "tiny.onnx", qdq=True)
    if VERSION.major >= 11:
        with pytest.raises(AttributeError, match="INT8"):
            copy.engine_from_onnx(model, builder.BuildOptions(precision="int8"),
                                  tiny_spec("int8-qdq"))
    else:
        copy.engine_from_onnx(model, builder.BuildOptions(precision="int8"),
                              tiny_spec("int8-qdq"))
        assert recorder.builds[0]["flags"] == ["FP16", "INT8"]


def test_broken_int8_calibrator_on_11(monkeypatch, tmp_path):
    from edge.tensorrt import builder

    copy = broken("edge.tensorrt.builder", "    monitor = _monitor(trt)\n",
                  "    config.int8_calibrator = None\n    monitor = _monitor(trt)\n")
    fake(monkeypatch)
    model = tiny_model(tmp_path / "tiny.onnx", qdq=True)
    if VERSION.major >= 11:
        with pytest.raises(AttributeError, match="int8_calibrator"):
            copy.engine_from_onnx(model, builder.BuildOptions(precision="int8"),
                                  tiny_spec("int8-qdq"))


@pytest.mark.parametrize(("module", "old", "new"), [
    ("edge.runners.tensorrt", "context.set_tensor_address(buffer.name, address)",
     "context.set_tensor_address(address, buffer.name)"),
    ("edge.tensorrt.builder", "config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, "
     "options.workspace_mb << 20)", "config.set_memory_pool_limit(options.workspace_mb << 20, "
     "trt.MemoryPoolType.WORKSPACE)"),
    ("edge.tensorrt.builder", "profile.set_shape(image.name, ", "profile.set_shape("),
])
def test_broken_swapped_arguments(monkeypatch, tmp_path, module, old, new):
    from edge.tensorrt.builder import BuildOptions

    copy = broken(module, old, new)
    fake(monkeypatch, DYNAMIC)
    with pytest.raises(TypeError, match="incompatible arguments"):
        if module == "edge.runners.tensorrt":
            copy.TrtRunner(MAGIC, tiny_spec("int8-qdq", batch=None), HostMemory(True))
        else:
            copy.engine_from_onnx(tiny_model(tmp_path / "t.onnx", qdq=True, batch=None),
                                  BuildOptions(precision="int8"),
                                  tiny_spec("int8-qdq", batch=None))


@pytest.mark.skipif(VERSION.major < 10, reason="IProgressMonitor arrived in TensorRT 10")
def test_broken_misspelled_monitor_override(capfd):
    copy = broken("edge.tensorrt.builder", '"phase_finish": lambda', '"phase_finsh": lambda')
    monitor = copy._monitor(real_trt)
    real_trt.IProgressMonitor.phase_finish(monitor, "Building engine")
    assert 'pure virtual function "IProgressMonitor::phase_finish"' in capfd.readouterr().err


@pytest.mark.skipif(not VERSION.supports_calibrators, reason="no calibrators after 10.x")
@pytest.mark.parametrize("name", ["get_batch_size", "read_calibration_cache"])
def test_broken_misspelled_calibrator_override(monkeypatch, tmp_path, capfd, name):
    from edge.tensorrt.builder import BuildOptions

    calibrator = broken("edge.tensorrt.calibrator", f'"{name}",', f'"{name[:-1]}",')
    setattr(calibrator.CacheServer, name[:-1], getattr(calibrator.CacheServer, name))
    copy = broken("edge.tensorrt.builder", "calibrator_from_cache(trt,",
                  "calibrator_from_cache_(trt,",
                  calibrator_from_cache_=calibrator.calibrator_from_cache)
    _, recorder = fake(monkeypatch)
    cache = tmp_path / "tiny.cache"
    from edge.tensorrt.calibration_cache import CalibrationCache

    CalibrationCache.from_scales({"nchw": 0.5}, str(VERSION), ("images", 1.0)).write(cache)
    copy.engine_from_onnx(tiny_model(tmp_path / "tiny.onnx", qdq=False),
                          BuildOptions(precision="int8", calibration_cache=cache),
                          tiny_spec("float"))
    assert recorder.trampoline_errors, "the misspelled override went unnoticed"
    if name == "get_batch_size":
        assert "pure virtual" in capfd.readouterr().err


# -- the real classes without a usable libnvinfer / CUDA: clear errors -----------------------

def test_real_builder_and_runtime_without_cuda_are_clear_errors(monkeypatch, tmp_path):
    from edge.runners.tensorrt import TrtRunner
    from edge.tensorrt import TensorRTUnavailableError
    from edge.tensorrt.builder import BuildOptions, engine_from_onnx

    monkeypatch.setitem(sys.modules, "tensorrt", real_trt)  # the stand-in libnvinfer answers NULL
    model = tiny_model(tmp_path / "tiny.onnx", qdq=True)
    with pytest.raises(TensorRTUnavailableError, match="could not create its Builder"):
        engine_from_onnx(model, BuildOptions(precision="int8"), tiny_spec("int8-qdq"))
    with pytest.raises(TensorRTUnavailableError, match="could not create its Runtime"):
        TrtRunner(MAGIC, tiny_spec("int8-qdq"), HostMemory(True))


# -- the thread model: the inference service makes every backend call on its own thread ------

@pytest.mark.parametrize("integrated", [True, False])
def test_inference_service_owns_the_runner_and_its_memory(monkeypatch, integrated):
    from edge.runners.tensorrt import TrtRunner
    from edge.service import InferenceService

    _, recorder = fake(monkeypatch, DYNAMIC)
    made_on: list[int] = []

    def runner() -> TrtRunner:  # the memory adapter belongs to the thread that makes it
        made_on.append(threading.get_ident())
        return TrtRunner(MAGIC, tiny_spec("int8-qdq", batch=None), HostMemory(integrated),
                         max_batch=2)

    service = InferenceService(runner)
    try:
        cameras = [service.register(name) for name in ("a", "b")]
        for _ in range(3):
            tickets = [service.claim(camera) for camera in cameras]
            for ticket in tickets:
                ticket.rows[ticket.row].fill(7)
                service.commit(ticket)
            for ticket in tickets:
                assert np.all(service.wait(ticket, timeout=10) == 0.5)
    finally:
        service.close()
    assert made_on[0] != threading.get_ident() and service.error is None
    assert recorder.executions >= 3


def test_a_runner_made_on_another_thread_is_refused(monkeypatch):
    from edge.runners.tensorrt import TrtRunner
    from edge.service import InferenceError, InferenceService

    fake(monkeypatch, DYNAMIC)
    made_here = TrtRunner(MAGIC, tiny_spec("int8-qdq", batch=None), HostMemory(True))
    service = InferenceService(lambda: made_here)  # broken: its CUDA state is this thread's
    try:
        camera = service.register("a")
        ticket = service.claim(camera)
        service.commit(ticket)
        with pytest.raises(InferenceError, match="inference thread"):
            service.wait(ticket, timeout=10)
    finally:
        service.close()


# -- the hardware selftest's orchestration, end to end on the stand-ins ----------------------

@pytest.mark.skipif(str(VERSION) not in ("10.3.0", "11.4.0"), reason="one 10.x and one 11.x")
def test_selftest_runs_end_to_end_on_the_standins(monkeypatch, tmp_path):
    """Everything but the GPU: calibration, the engine builds (and the torn-engine rebuild, and
    the cache build on 10.x), the daemon on backend tensorrt with two cameras, the one JSON
    line. The stand-in engine outputs constant scores, so the accuracy checks must fail."""
    import json

    from edge import selftest
    from edge.gpu import select
    from edge.runners import tensorrt_loader

    _, recorder = fake(monkeypatch, [Io("images", True, (1, 320, 320, 3), "UINT8"),
                                     Io("output0", False, (1, 8, 2100), "FLOAT")])
    monkeypatch.setattr(select, "gpu_memory", lambda *args, **kwargs: HostMemory(True))
    monkeypatch.setattr(tensorrt_loader, "gpu_memory", lambda *args, **kwargs: HostMemory(True))
    result = selftest.hardware_selftest(frames=12, workdir=tmp_path, daemon_seconds=2.0)
    assert json.loads(json.dumps(result)) == result
    assert result["engine_precision"] == "int8" and result["corrupted_engine_rebuilt"]
    daemon = result["daemon_tensorrt"]
    assert daemon["backend"] == "tensorrt" and daemon["failure"] is None
    assert all(daemon["messages"].values()) and result["checks"]["daemon_ran_on_tensorrt"]
    assert not result["checks"]["daemon_recall_close_to_fp32"]  # constant scores find nothing
    assert result["daemon_onnxruntime_fp32"]["backend"] == "onnxruntime"
    assert ("cache_engine_close_to_fp32" in result["checks"]) == VERSION.supports_calibrators
    assert len(recorder.builds) == (3 if VERSION.supports_calibrators else 2)
    assert not result["checks"]["int8_map_close_to_fp32"] and not result["passed"]

"""What a machine without TensorRT, pycuda or cuda-python sees."""

from __future__ import annotations

import subprocess
import sys

import pytest

from edge.config import ModelConfig
from edge.runners import choose_backend


def edge(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "edge", *args], capture_output=True, text=True,
                          timeout=120)


@pytest.fixture(autouse=True)
def no_tensorrt():
    import importlib.util

    if importlib.util.find_spec("tensorrt") is not None:
        pytest.skip("TensorRT is installed here")


def test_edge_imports_without_gpu_libraries():
    code = ("import sys, edge, edge.cli, edge.daemon, edge.runners, edge.tensorrt.engine_cache;"
            "bad = [m for m in ('tensorrt', 'pycuda', 'cuda', 'torch') if m in sys.modules];"
            "print(bad); sys.exit(1 if bad else 0)")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
    assert edge("--help").returncode == 0


def test_build_engine_exits_2_naming_tensorrt(demo_model):
    """Without a GPU, `pip install tensorrt` was advised, which cannot help there (the
    hardware self-test said so; build-engine and run did not)."""
    from edge.gpu.presence import gpu_present

    result = edge("build-engine", str(demo_model))
    assert result.returncode == 2
    assert "TensorRT is not installed" in result.stderr and "Traceback" not in result.stderr
    if gpu_present():
        assert "JetPack" in result.stderr
    else:
        assert "this machine has no NVIDIA GPU" in result.stderr
        assert "installing it would not help" in result.stderr
        assert "pip install tensorrt" not in result.stderr


def test_the_models_own_problem_comes_before_tensorrts(tmp_path, demo_model):
    """A user check: a missing model, one without a spec, and an INT8 model asked for fp16
    all read "TensorRT is not installed", so the typo came up only once TensorRT was in."""
    unconverted = tmp_path / "raw.onnx"
    unconverted.write_bytes(b"not a model")
    for args, message in [
        ([str(tmp_path / "nope.onnx")], f"model {tmp_path / 'nope.onnx'} does not exist"),
        ([str(unconverted)], f"{unconverted} is a text file (it begins 'not a model'), not a "
                             "model"),
        ([str(demo_model), "--precision", "int8"], "is a float model: an INT8 engine needs"),
        ([str(demo_model), "--cache", str(tmp_path / "none.cache")],
         f"calibration cache {tmp_path / 'none.cache'} is not a file"),
    ]:
        result = edge("build-engine", *args)
        assert result.returncode == 2 and message in result.stderr, result.stderr
        assert "TensorRT is not installed" not in result.stderr
    config = tmp_path / "edge.toml"
    config.write_text(f'[model]\npath = "{tmp_path / "nope.onnx"}"\nbackend = "tensorrt"\n'
                      '[[cameras]]\nname = "c"\nsource = "synthetic://shapes"\n')
    result = edge("run", "--config", str(config), "--no-build")
    assert result.returncode == 2 and "does not exist" in result.stderr, result.stderr


@pytest.mark.parametrize("args", [["--hardware"], []])  # the only test, so the default
def test_selftest_exits_2_naming_tensorrt(args):
    from edge.gpu.presence import gpu_present

    result = edge("selftest", *args)
    assert result.returncode == 2 and "TensorRT is not installed" in result.stderr
    assert result.stdout == ""
    if not gpu_present():  # installing TensorRT would not help: says so first
        assert result.stderr.startswith("edge selftest: error: no NVIDIA GPU here")
        assert "pip install tensorrt" not in result.stderr


def test_auto_backend_falls_back_and_says_why(demo_model):
    choice = choose_backend(ModelConfig(path=demo_model))
    assert choice.name == "onnxruntime" and "TensorRT is not installed" in choice.reason


def test_run_with_backend_tensorrt_exits_2(tmp_path, demo_model):
    config = tmp_path / "edge.toml"
    config.write_text(f'[model]\npath = "{demo_model}"\nbackend = "tensorrt"\n'
                      '[[cameras]]\nname = "c"\nsource = "synthetic://shapes"\n')
    result = edge("run", "--config", str(config), "--no-build")
    assert result.returncode == 2
    assert "TensorRT is not installed" in result.stderr or "cuda-python or pycuda" in \
        result.stderr
    if "TensorRT is not installed" in result.stderr:  # the key to change named, as a config
        # error's is (a user check)
        assert f"{config}: model.backend = 'tensorrt': TensorRT is not installed" in \
            result.stderr
    # a model file that does not load names its key too
    (tmp_path / "model.txt").write_bytes(bytes(range(1, 256)))
    config.write_text(f'[model]\npath = "{tmp_path / "model.txt"}"\n'
                      '[[cameras]]\nname = "c"\nsource = "synthetic://shapes"\n')
    result = edge("run", "--config", str(config))
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert (f"{config}: model.path: {tmp_path / 'model.txt'} is not an ONNX model ONNX Runtime "
            "can load") in result.stderr


def test_auto_on_a_gpu_machine_without_tensorrt_says_how_to_get_it(demo_model, monkeypatch):
    """A Jetson whose venv cannot see JetPack's TensorRT ran on the CPU with an INFO line and
    no fix (an operator's reading of the code)."""
    from edge import runners

    monkeypatch.setattr(runners, "gpu_present", lambda: True)
    choice = choose_backend(ModelConfig(path=demo_model))
    assert choice.name == "onnxruntime" and choice.fixable
    assert "has an NVIDIA GPU but TensorRT is not installed for this Python" in choice.reason
    assert "python3-libnvinfer" in choice.reason and "--system-site-packages" in choice.reason
    monkeypatch.setattr(runners, "gpu_present", lambda: False)
    assert not choose_backend(ModelConfig(path=demo_model)).fixable  # nothing better here


def test_auto_falls_back_where_tensorrt_is_installed_but_cannot_load(demo_model, monkeypatch,
                                                                     tmp_path):
    """A user check: a Jetson whose TensorRT package is there without libnvinfer exited 2 on
    `auto` (which systemd does not restart), though ONNX Runtime could run the model."""
    from edge import runners

    package = tmp_path / "tensorrt"
    package.mkdir()
    (package / "__init__.py").write_text(
        'raise ImportError("libnvinfer.so.10: cannot open shared object file")\n')
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "tensorrt", raising=False)
    monkeypatch.setattr(runners, "gpu_present", lambda: True)
    monkeypatch.setattr("edge.tensorrt.gpu_present", lambda: True)
    choice = choose_backend(ModelConfig(path=demo_model))
    assert choice.name == "onnxruntime" and choice.fixable
    assert choice.reason == ("auto: this machine has an NVIDIA GPU but TensorRT cannot be loaded "
                             "(libnvinfer.so.10: cannot open shared object file), using ONNX "
                             "Runtime on the CPU")


def test_a_tensorrt_precision_on_onnxruntime_is_said_to_be_ignored(demo_model, mosquitto,
                                                                   caplog):
    """`precision = "fp16"` on a Q/DQ model is refused on TensorRT; on a CPU box it ran
    without a word, so a config tried there failed on the device."""
    import logging

    from edge.config import config_from_dict
    from edge.daemon import Daemon
    from tests.running_daemon import running

    config = config_from_dict({
        "device_id": "d", "model": {"path": str(demo_model), "precision": "fp16"},
        "cameras": [{"name": "c", "source": "synthetic://shapes?fps=30&seed=1"}],
        "mqtt": {"url": mosquitto.url}}, "test")
    with caplog.at_level(logging.WARNING, logger="edge.daemon"), running(Daemon(config)):
        pass
    assert ("model.precision 'fp16' is a TensorRT setting: ONNX Runtime runs shapes-detector "
            "as it was converted (float), so this run does not show what a TensorRT device "
            "would make of that precision (check it there with `edge build-engine MODEL "
            "--precision fp16`)") in caplog.text


def test_tensorrt_settings_on_onnxruntime_say_what_the_device_would_do(demo_model):
    """A user check: an INT8 QDQ model with `precision = "fp16"` was told to check a build
    that cannot pass, and `dla_core` or `gpu_memory` went by without a word."""
    from edge.daemon import unused_tensorrt_settings
    from edge.spec import spec_from_onnx_file

    spec = spec_from_onnx_file(demo_model)
    qdq = spec.model_copy(update={"quantization": "int8-qdq"})
    config = ModelConfig(path=demo_model, precision="fp16", dla_core=0, gpu_memory="pycuda")
    ignored, refused = unused_tensorrt_settings(config, qdq)
    assert ignored == ("model.dla_core = 0, model.gpu_memory = 'pycuda': TensorRT settings, "
                       "which ONNX Runtime does not use; this run ignores them")
    assert refused.startswith(
        "model.precision 'fp16': a TensorRT device refuses this model with it (")
    assert "is an INT8 QDQ model and builds as int8 only; use model.precision int8" in refused
    assert unused_tensorrt_settings(ModelConfig(path=demo_model, dla_core=1), spec) == [
        "model.dla_core = 1: a TensorRT setting, which ONNX Runtime does not use; this run "
        "ignores it"]
    cpu = spec.model_copy(update={"quantization": "int8-qdq-cpu"})
    assert "was calibrated with --profile cpu" in unused_tensorrt_settings(
        ModelConfig(path=demo_model, precision="int8"), cpu)[0]
    assert unused_tensorrt_settings(ModelConfig(path=demo_model), spec) == []


def test_a_calibration_cache_on_onnxruntime_is_checked_and_its_int8_said_not_to_run(
        demo_model, tmp_path):
    """User checks: a calibration cache named for a run on ONNX Runtime went by without a
    word; then `precision = "int8"` with a cache said nothing of the run being float, and a
    text file or another model's cache as the cache passed that dry run."""
    from edge.daemon import unused_tensorrt_settings
    from edge.spec import spec_from_onnx_file
    from edge.tensorrt.calibration_cache import CalibrationCache

    spec = spec_from_onnx_file(demo_model)
    cache = tmp_path / "shapes.cache"
    made = edge("calibrate", str(demo_model), "--images", "synthetic://shapes?seed=3",
                "--max-images", "8", "--method", "minmax", "-o", str(tmp_path / "int8.onnx"),
                "--cache", str(cache))
    assert made.returncode == 0, made.stderr
    with_cache = ModelConfig(path=demo_model, precision="int8", calibration_cache=cache)
    assert unused_tensorrt_settings(with_cache, spec) == [
        f"model.calibration_cache = '{cache}': a TensorRT setting, which ONNX Runtime does not "
        "use; this run ignores it",
        "model.precision 'int8' with model.calibration_cache is a TensorRT setting: ONNX "
        "Runtime runs shapes-detector as it was converted (float), so this run does not show "
        "what a TensorRT device would make of that precision (check it there with `edge "
        "build-engine MODEL --precision int8 --cache FILE`)"]
    text = tmp_path / "notes.cache"
    text.write_text("not a cache\n")
    other = tmp_path / "other.cache"
    CalibrationCache.from_scales({"backbone.layer9.conv": 1.0, "neck.fpn.out3": 1.0},
                                 "10.3.0").write(other)
    # another model's cache names the same input and preprocessing tensors (a user check:
    # 5 of 9 were in the demo model, and it passed): the network's tensors decide
    shared = tmp_path / "shared.cache"
    CalibrationCache.from_scales(
        {"images__pre_float": 2.0, "images__pre_nchw": 2.0, "images__pre_swapped": 2.0,
         "images__normalised": 0.01, "backbone.layer9.conv": 1.0, "neck.fpn.out3": 1.0,
         "head.cls": 1.0}, "10.3.0", ("images", 1.0)).write(shared)
    # a user check: a QDQ model given a cache was taken without a word (TensorRT reads the
    # model's own scales)
    quantized = edge("build-engine", str(tmp_path / "int8.onnx"), "--cache", str(cache))
    assert quantized.returncode == 2 and ("int8.onnx is quantized already (int8-qdq): TensorRT "
                                          "takes its scales from its Q/DQ nodes, not from a "
                                          "calibration cache") in quantized.stderr, \
        quantized.stderr
    # a user check: a cache cut to 7 of its 49 lines was taken
    cut = tmp_path / "cut.cache"
    cut.write_text("".join(cache.read_text().splitlines(keepends=True)[:8]))
    for bad, said in ((text, f"{text}"), (other, "it was made for another model"),
                      (shared, "scales 8 tensors, 3 of the 3 besides the input and its "
                               "preprocessing not in"),
                      (cut, "has no scale for the inputs of 16 of the 18 weighted layers")):
        warned = unused_tensorrt_settings(ModelConfig(path=demo_model, calibration_cache=bad),
                                          spec)
        assert warned[1].startswith("model.calibration_cache: ") and said in warned[1], warned
        assert warned[1].endswith("(a TensorRT device refuses it)")
        refused = edge("build-engine", str(demo_model), "--cache", str(bad))
        assert refused.returncode == 2 and said in refused.stderr, refused.stderr
        assert "TensorRT is not installed" not in refused.stderr


def test_any_json_command_that_fails_ends_with_a_json_line(tmp_path, demo_model):
    """A user check: `build-engine --json` and `run --json` printed nothing on stdout when
    they failed, so a script reading the last line found none."""
    import json

    config = tmp_path / "edge.toml"
    config.write_text('[model]\npath = "nope.onnx"\n[[cameras]]\nname = "c"\n'
                      'source = "synthetic://shapes"\n')
    for args in (["build-engine", str(demo_model), "--json"],
                 ["run", "--config", str(config), "--json"]):
        result = edge(*args)
        assert result.returncode == 2, result.stderr
        last = json.loads(result.stdout.strip().splitlines()[-1])
        assert last["exit_code"] == 2 and last["error"] in result.stderr


def test_selftest_json_refused_still_ends_with_a_json_line():
    """The README's `edge selftest --hardware --json | tail -n 1 > selftest.json` left an
    empty file to attach to an issue."""
    import json

    result = edge("selftest", "--hardware", "--json")
    assert result.returncode == 2
    line = json.loads(result.stdout.strip().splitlines()[-1])
    assert line["passed"] is False and "TensorRT is not installed" in line["error"]
    assert line["error"] in result.stderr  # said on stderr as every refusal is
    # a refused command line too (a user check: `--frames 0` gave a line without `passed`)
    refused = edge("selftest", "--hardware", "--json", "--frames", "0")
    assert refused.returncode == 2
    line = json.loads(refused.stdout.strip().splitlines()[-1])
    assert line["passed"] is False and line["exit_code"] == 2 and "--frames" in line["error"]

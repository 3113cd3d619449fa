"""PyTorch sources as users save them: whole pickled models, checkpoints without weights,
networks that return dicts or need other input, modules that fail to import or to build.
Each converts, or is refused with exit 2 and a message that names the problem and the fix
(never a traceback, never advice that leads to one)."""

from __future__ import annotations

import json
import subprocess
import sys
import types
import zlib
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
import torch
from torch import nn

from converters.demo_detector.model import ShapesDetector
from tests.converters.cli_results import Result, assert_refused

NETS = '''
import torch
from torch import nn


class Net(nn.Module):
    def __init__(self, classes=3):
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, padding=1)
        self.fc = nn.Linear(8, classes)
        self.boxes = nn.Linear(8, 4)

    def features(self, x):
        return torch.relu(self.conv(x)).mean((2, 3))

    def forward(self, x):
        return self.fc(self.features(x))


class DictNet(Net):
    def forward(self, x):
        y = self.features(x)
        return {"scores": self.fc(y), "boxes": self.boxes(y)}


class TupleNet(Net):
    def forward(self, x):
        y = self.features(x)
        return self.fc(y), self.boxes(y)


class GreyNet(Net):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(1, 8, 3, padding=1)


class TwoChannelNet(Net):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(2, 8, 3, padding=1)


class GreyWrap(nn.Module):
    """What the refusal of a network that takes other input says to write."""

    def __init__(self):
        super().__init__()
        self.net = GreyNet()

    def forward(self, x):
        return self.net(x[:, 0:1] * 0.299 + x[:, 1:2] * 0.587 + x[:, 2:3] * 0.114)


class FeatureFirst(Net):
    def forward(self, x):
        y = self.features(x)
        return {"feat": y.mean(1, keepdim=True), "logits": self.fc(y)}


class ChannelsLast(Net):
    def forward(self, x):
        return super().forward(x.permute(0, 3, 1, 2))


class TwoInputNet(Net):
    def forward(self, x, y):
        return self.fc(self.features(x) + self.features(y))


class CudaNet(Net):
    def __init__(self):
        super().__init__()
        self.to(torch.device("cuda"))


class CudaInForward(Net):
    def forward(self, x):
        return super().forward(x.cuda())


class ValueBranch(Net):
    def forward(self, x):
        y = self.features(x)
        if x.mean() > 0.01:  # not on the all-zero example the trace runs, on camera frames
            y = y * 2
        return self.fc(y)


class BrightBranch(Net):
    def forward(self, x):
        y = self.features(x)
        if x.mean() > 0.6:  # neither on the trace's blank input nor on ordinary scenes
            y = -y * 3
        return self.fc(y)


class Detector(nn.Module):
    """[N, 4+nc, A] on a stride-8 grid: cx cy w h in input pixels, class probabilities."""

    def __init__(self, classes=3):
        super().__init__()
        self.conv = nn.Conv2d(3, 4 + classes, 8, stride=8)

    def boxes(self, y):
        return y[:, :4].sigmoid() * 32

    def scores(self, y):
        return y[:, 4:].sigmoid()

    def forward(self, x):
        y = self.conv(x).flatten(2)
        return torch.cat([self.boxes(y), self.scores(y)], 1)


class DetectorLogits(Detector):
    def scores(self, y):
        return y[:, 4:]


class DetectorFractions(Detector):
    def boxes(self, y):
        return y[:, :4].sigmoid()


class NumpyRoundTrip(Net):
    def forward(self, x):
        y = torch.from_numpy(self.features(x).numpy().copy())
        return self.fc(y)


class HistogramNet(Net):
    def forward(self, x):
        y = torch.relu(self.conv(x))
        return self.fc(y.mean((2, 3))) + torch.histc(y, bins=3)


class ShapeLoop(Net):
    def forward(self, x):
        y = self.conv(x)
        for _ in range(int(y.shape[2] // 16)):
            y = y + 0.01
        return self.fc(torch.relu(y).mean((2, 3)))
'''


@pytest.fixture
def nets(tmp_path: Path) -> Path:
    """A module file of the user's, and the folder it is in."""
    (tmp_path / "nets.py").write_text(NETS)
    return tmp_path / "nets.py"


def _weights(path: Path, network: nn.Module) -> Path:
    torch.manual_seed(0)
    for parameter in network.parameters():
        nn.init.normal_(parameter, std=0.2)
    torch.save(network.state_dict(), path)
    return path


def _module(nets: Path, name: str) -> nn.Module:
    namespace: dict[str, object] = {}
    exec(compile(nets.read_text(), str(nets), "exec"), namespace)
    network = namespace[name]()
    assert isinstance(network, nn.Module)
    return network


def test_a_whole_pickled_model_is_refused_with_both_ways_to_resave_it(tmp_path, edge):
    """torch.save(model) pickles the class: loading it would run the file's code. Told to pass
    --module, the user met an UnpicklingError traceback."""
    torch.save(ShapesDetector(), tmp_path / "whole.pt")
    for extra in ([], ["--module", "converters.demo_detector.model:ShapesDetector"]):
        result = edge("convert", tmp_path / "whole.pt", "--input-size", "320", "--labels",
                      "a,b,c,d", "-o", tmp_path / "out.onnx", *extra)
        assert_refused(result, "holds a whole pickled model (torch.save(model)",
                       "torch.save(model.state_dict(), 'weights.pt') (for a checkpoint, "
                       "ckpt['model'].state_dict()) and pass its class with --module",
                       "torch.jit.script(model).save('model.torchscript')")
    assert not (tmp_path / "out.onnx").exists()
    # YOLOv5's checkpoints keep the model object under 'model' (a user check was told to save
    # model.state_dict(), of an object it did not have)
    torch.save({"model": ShapesDetector(), "epoch": 3}, tmp_path / "yolov5-style.pt")
    result = edge("convert", tmp_path / "yolov5-style.pt", "--input-size", "320", "--labels",
                  "a,b,c,d", "-o", tmp_path / "out.onnx")
    assert_refused(result, "a training checkpoint that keeps the model object under a key",
                   "ckpt['model'].state_dict()")


def test_an_ultralytics_checkpoint_is_told_to_export_to_onnx(tmp_path, edge, monkeypatch):
    """A YOLO `best.pt` pickles Ultralytics' model classes: the way on is Ultralytics' own
    ONNX export, not a state_dict with a --module only Ultralytics has. (The pickle is made
    here with a stand-in class under Ultralytics' module name; nothing is unpickled.)"""
    tasks = types.ModuleType("ultralytics.nn.tasks")

    class DetectionModel(nn.Module):
        pass

    DetectionModel.__module__, DetectionModel.__qualname__ = tasks.__name__, "DetectionModel"
    tasks.DetectionModel = DetectionModel  # type: ignore[attr-defined]
    names = ("ultralytics", "ultralytics.nn", tasks.__name__)
    for name in names[:-1]:
        monkeypatch.setitem(sys.modules, name, types.ModuleType(name))
    monkeypatch.setitem(sys.modules, tasks.__name__, tasks)
    torch.save({"model": DetectionModel(), "epoch": -1}, tmp_path / "best.pt")
    for name in names:
        monkeypatch.delitem(sys.modules, name)
    result = edge("convert", tmp_path / "best.pt", "-o", tmp_path / "out.onnx")
    assert_refused(result, f"{tmp_path / 'best.pt'} is an Ultralytics checkpoint (a pickled "
                   "model: edge does not unpickle models, which runs code from the file); "
                   f"export it to ONNX with Ultralytics, `yolo export model={tmp_path}/best.pt "
                   "format=onnx`, and convert the .onnx it writes")
    assert "--module" not in result.stderr and not (tmp_path / "out.onnx").exists()


def test_files_that_are_not_models_say_what_they_are(tmp_path, edge):
    (tmp_path / "notes.pt").write_text("not a checkpoint")
    result = edge("convert", tmp_path / "notes.pt", "--module",
                  "converters.demo_detector.model:ShapesDetector", "--input-size", "320",
                  "-o", tmp_path / "out.onnx")
    assert_refused(result, "notes.pt is not a PyTorch checkpoint (")
    assert "weights_only" not in result.stderr  # torch's advice would run the file's code
    traced = torch.jit.trace(ShapesDetector().eval(), torch.zeros(1, 3, 64, 64))
    traced.save(str(tmp_path / "model.torchscript"))
    data = (tmp_path / "model.torchscript").read_bytes()
    (tmp_path / "cut.torchscript").write_bytes(data[:len(data) // 2])
    for extra in ([], ["--module", "converters.demo_detector.model:ShapesDetector"]):
        result = edge("convert", tmp_path / "cut.torchscript", "--input-size", "320",
                      "-o", tmp_path / "out.onnx", *extra)
        assert_refused(result, "cut.torchscript is a damaged TorchScript or PyTorch archive "
                       "(a zip file cut short or corrupted): copy or export it again in full")


@pytest.mark.parametrize("module", [["--module", "converters.demo_detector.model:ShapesDetector"],
                                    []])
def test_a_checkpoint_without_weights_lists_what_it_holds(tmp_path, edge, module):
    """Without --module it was first told to give one, and only then that no weights are
    there."""
    torch.save({"epoch": 3, "lr": 0.01, "optimizer": {"step": 4}}, tmp_path / "ckpt.pt")
    result = edge("convert", tmp_path / "ckpt.pt", *module, "--input-size", "320",
                  "-o", tmp_path / "out.onnx")
    assert_refused(result, "holds no state_dict of tensors (its keys: epoch, lr, optimizer); "
                   "the weights are read from the file itself or from its 'state_dict', "
                   "'model_state_dict', 'model' entry")
    assert "--module" not in result.stderr


def test_a_network_that_returns_a_dict_converts_with_its_keys_as_output_names(
        nets, tmp_path, edge):
    weights = _weights(tmp_path / "dict.pt", _module(nets, "DictNet"))
    result = edge("convert", weights, "--module", f"{nets}:DictNet", "--input-size", "32",
                  "--labels", "a,b,c", "-o", tmp_path / "out.onnx")
    assert result.returncode == 0, result.stderr
    assert "took output scores (3 a frame) as the classify head (logits, 3 classes); left " \
           "out of the converted model: boxes (4 a frame)" in result.stdout
    # values: the converted model on a uint8 frame against the module on the same pixels
    frame = np.random.default_rng(0).integers(0, 256, (1, 32, 32, 3), np.uint8)
    session = ort.InferenceSession(str(tmp_path / "out.onnx"))
    scores = session.run(["scores"], {session.get_inputs()[0].name: frame})[0]
    network = _module(nets, "DictNet")
    network.load_state_dict(torch.load(weights))
    rgb = torch.from_numpy(frame[..., ::-1].copy()).permute(0, 3, 1, 2).float() / 255
    with torch.no_grad():
        expected = network.eval()(rgb)["scores"].numpy()
    np.testing.assert_allclose(scores, expected, rtol=1e-4, atol=1e-5)


def test_a_tuples_outputs_are_named_in_order(nets, tmp_path, edge):
    weights = _weights(tmp_path / "tuple.pt", _module(nets, "TupleNet"))
    result = edge("convert", weights, "--module", f"{nets}:TupleNet", "--input-size", "32",
                  "--labels", "a,b,c", "-o", tmp_path / "out.onnx")
    assert result.returncode == 0, result.stderr
    assert "took output output0 (3 a frame)" in result.stdout
    assert "left out of the converted model: output1 (4 a frame)" in result.stdout


def test_a_channels_last_network_converts_and_is_fed_height_by_width_by_colour(
        nets, tmp_path, edge):
    """A network that permutes its [N, H, W, 3] input itself fails on [N, 3, H, W]: it is
    exported on channels-last input (not told to check --input-size), and sees the frame's
    pixels where they are (a 32x48 frame, so a swapped height and width would not run)."""
    weights = _weights(tmp_path / "nhwc.pt", _module(nets, "ChannelsLast"))
    out = tmp_path / "out.onnx"
    result = edge("convert", weights, "--module", f"{nets}:ChannelsLast", "--input-size",
                  "32x48", "--labels", "a,b,c", "-o", out)
    assert result.returncode == 0, result.stderr
    assert ("the network runs on channels-last input [N, 32, 48, 3] (not on [N, 3, H, W]): "
            "exported and fed that way") in result.stdout
    frame = np.random.default_rng(2).integers(0, 256, (1, 32, 48, 3), np.uint8)
    session = ort.InferenceSession(str(out))
    converted = session.run(None, {session.get_inputs()[0].name: frame})[0]
    network = _module(nets, "ChannelsLast")
    network.load_state_dict(torch.load(weights))
    rgb = torch.from_numpy(frame[..., ::-1].copy()).float() / 255
    with torch.no_grad():
        np.testing.assert_allclose(converted, network.eval()(rgb).numpy(), rtol=1e-4, atol=1e-5)


def test_a_scripted_network_that_returns_a_dict_is_told_to_return_a_tuple(nets, tmp_path):
    """A process: the exporter logged its IR graph to file descriptor 1 from C++, ahead of the
    JSON line `--json` readers take from stdout."""
    torch.jit.script(_module(nets, "DictNet").eval()).save(str(tmp_path / "d.torchscript"))
    done = subprocess.run([sys.executable, "-m", "edge", "convert", str(tmp_path / "d.torchscript"),
                           "--input-size", "32", "--labels", "a,b,c", "-o",
                           str(tmp_path / "out.onnx"), "--json"],
                          capture_output=True, text=True, timeout=300)
    assert_refused(Result(done.returncode, done.stdout, done.stderr),
                   "a TorchScript module that returns a dict cannot be exported: return a "
                   "tuple, or convert the Python class with --module")
    lines = done.stdout.splitlines()  # the error's JSON line alone, no IR graph ahead of it
    assert len(lines) == 1 and json.loads(lines[0])["exit_code"] == 2


def test_an_operator_onnx_lacks_is_named_with_what_to_do(nets, tmp_path, edge):
    weights = _weights(tmp_path / "h.pt", _module(nets, "HistogramNet"))
    convert = ["convert", str(weights), "--module", f"{nets}:HistogramNet", "--input-size",
               "32", "--labels", "a,b,c", "-o", str(tmp_path / "out.onnx")]
    advice = ("is not supported; write that step of forward with operations ONNX has, or move "
              "it after the network (into code that reads the model's outputs), then convert "
              "again")
    assert_refused(edge(*convert), f"Exporting the operator 'aten::histc' to ONNX opset "
                   f"version 17 {advice}; a later --opset (up to 20) helps only where a newer "
                   "ONNX added aten::histc")
    # at the exporter's last opset there is no later one to try (a user check)
    last = edge(*convert, "--opset", "20")
    assert_refused(last, f"opset version 20 {advice}")
    assert "--opset" not in last.stderr


@pytest.mark.parametrize("options", [["--module", "nets.py:Net"],
                                     ["--module", "nets.py:Net", "--module-args", "{}"]])
def test_module_options_a_scripted_file_does_not_use_are_said_to_be_unused(
        nets, tmp_path, edge, options):
    """A TorchScript file holds its network: the class named is not what got converted."""
    network = _module(nets, "Net").eval()
    torch.jit.script(network).save(str(tmp_path / "n.torchscript"))
    result = edge("convert", str(tmp_path / "n.torchscript"), *options, "--input-size", "32",
                  "--labels", "a,b,c", "-o", str(tmp_path / "out.onnx"), "--json")
    assert result.returncode == 0, result.stderr
    given = " and ".join(option for option in options if option.startswith("--"))
    assert (f"{given} not used: a TorchScript file holds its own network (--module names the "
            "class of a state_dict checkpoint's network)") in json.loads(result.stdout)["notes"]


def test_a_single_value_output_is_not_taken_for_the_classifier(nets, tmp_path, edge):
    weights = _weights(tmp_path / "f.pt", _module(nets, "FeatureFirst"))
    result = edge("convert", weights, "--module", f"{nets}:FeatureFirst", "--input-size", "32",
                  "-o", tmp_path / "out.onnx")
    assert_refused(result, "with its 3 class names for output logits (logits), the one taken; "
                   "or, for another output, as many as it has classes: 1 for feat (logits)")


def test_following_the_grey_advice_converts_with_the_same_checkpoint(nets, tmp_path, edge):
    """The wrapper holds the network as `net`: the checkpoint's keys lack the `net.` prefix
    and are read into it, so the advice works without saving the weights again."""
    weights = _weights(tmp_path / "grey.pt", _module(nets, "GreyNet"))
    result = edge("convert", weights, "--module", f"{nets}:GreyWrap", "--input-size", "32",
                  "--labels", "a,b,c", "--network-order", "RGB", "-o", tmp_path / "out.onnx")
    assert result.returncode == 0, result.stderr
    frame = np.random.default_rng(1).integers(0, 256, (1, 32, 32, 3), np.uint8)
    session = ort.InferenceSession(str(tmp_path / "out.onnx"))
    converted = session.run(None, {session.get_inputs()[0].name: frame})[0]
    wrapper = _module(nets, "GreyWrap")
    wrapper.net.load_state_dict(torch.load(weights))
    rgb = torch.from_numpy(frame[..., ::-1].copy()).permute(0, 3, 1, 2).float() / 255
    with torch.no_grad():
        np.testing.assert_allclose(converted, wrapper.eval()(rgb).numpy(), rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize(("saved", "module", "fragments"), [
    # a 2-channel network: told how to make its input from the camera's colour frames
    ("TwoChannelNet", "TwoChannelNet", ("the network fails on a [1, 3, 32, 32] input",
                                        "the network takes 2-channel input, and edge feeds it "
                                        "the camera's 3 colour channels (or grey from them, "
                                        "for a 1-channel network): wrap it in a module")),
    # a network of two inputs: told to wrap it, not to check --input-size
    ("Net", "TwoInputNet", ("the network's forward takes 2 inputs (x, y); a converted model "
                            "has exactly one image input: wrap the network in a module",)),
    # a network that builds on CUDA: told to build on the CPU
    ("Net", "CudaNet", ("constructing CudaNet() failed: ",
                        "conversion runs on the CPU: build the network there")),
    # ... or that moves its input there: told to take the call out, not to check --input-size
    ("Net", "CudaInForward", ("the network fails on a [1, 3, 32, 32] input: ",
                              "edge convert runs the network on the CPU: take the "
                              "device-specific calls out of its code (.cuda(), device='cuda'")),
    # a branch on a tensor's value: tracing kept one side, told to script it, not to raise
    # --tolerance (which would write a model wrong on other frames)
    ("Net", "ValueBranch", ("the converted model does not match the source model: ",
                            "tracing followed one path through the network's Python code "
                            "(PyTorch warned: Converting a tensor to a Python boolean might "
                            "cause the trace to be incorrect (nets.py:",
                            "script the network (torch.jit.script(model)")),
    # a branch only a bright scene takes: the check frames include one (a user check: four
    # ordinary frames agreed, and the model was wrong on bright ones)
    ("Net", "BrightBranch", ("the converted model does not match the source model: ",
                             "Converting a tensor to a Python boolean might cause the trace "
                             "to be incorrect (nets.py:", "script the network")),
    # a numpy round trip: the graph lost its input; told why, not to export an image input
    ("Net", "NumpyRoundTrip", ("tracing the network on a [1, 3, 32, 32] input made a graph "
                               "that does not read its input (PyTorch warned: Converting a "
                               "tensor to a NumPy array",
                               "keep forward in torch operations, or script it")),
])
def test_a_network_that_fails_to_build_or_run_is_told_why(saved, module, fragments, nets,
                                                            tmp_path, edge):
    weights = _weights(tmp_path / "w.pt", _module(nets, saved))
    result = edge("convert", weights, "--module", f"{nets}:{module}", "--input-size", "32",
                  "--labels", "a,b,c", "-o", tmp_path / "out.onnx")
    assert_refused(result, *fragments)
    assert "--tolerance" not in result.stderr and "image-like input" not in result.stderr


def test_a_detector_returning_probabilities_and_pixel_boxes_converts(nets, tmp_path, edge):
    weights = _weights(tmp_path / "w.pt", _module(nets, "Detector"))
    out = tmp_path / "out.onnx"
    result = edge("convert", weights, "--module", f"{nets}:Detector", "--input-size", "32",
                  "--labels", "a,b,c", "-o", out)
    assert result.returncode == 0, result.stderr
    assert "detect (anchor_free), 3 labels" in result.stdout


@pytest.mark.parametrize(("module", "fragments"), [
    # a user check: both converted with exit 0, then published scores of 7.2, or every box
    # under a pixel in the top-left corner
    ("DetectorLogits", ("output output0's class scores run from -", "on a test frame, but "
                        "edge reads a detector's scores as probabilities (0..1)",
                        "needs a sigmoid on its class scores in its forward")),
    ("DetectorFractions", ("output output0's boxes all lie within 0..0.", "so they are "
                           "fractions of the input, but edge reads a detector's boxes in "
                           "input pixels (cx cy w h, 0..32 across): multiply them by the input "
                           "size (32 for x and w, 32 for y and h) in the network's forward")),
])
def test_a_detectors_scores_and_boxes_must_be_what_the_device_decodes(module, fragments, nets,
                                                                       tmp_path, edge):
    weights = _weights(tmp_path / "w.pt", _module(nets, module))
    out = tmp_path / "out.onnx"
    assert_refused(edge("convert", weights, "--module", f"{nets}:{module}", "--input-size",
                        "32", "--labels", "a,b,c", "-o", out), *fragments)
    assert not out.exists()


def test_a_shape_computed_in_python_converts_with_a_note(nets, tmp_path, edge):
    """Tracer warnings on shapes are harmless at a fixed input size: said once, as a note."""
    weights = _weights(tmp_path / "w.pt", _module(nets, "ShapeLoop"))
    result = edge("convert", weights, "--module", f"{nets}:ShapeLoop", "--input-size", "32",
                  "--labels", "a,b,c", "-o", tmp_path / "out.onnx")
    assert result.returncode == 0, result.stderr
    assert ("note: tracing warned: Converting a tensor to a Python integer might cause the "
            "trace to be incorrect (nets.py:") in result.stdout
    assert "TracerWarning" not in result.stderr  # PyTorch's own, raw, not printed as well


def test_a_scripted_network_of_two_inputs_is_told_to_wrap_it(nets, tmp_path, edge):
    scripted = torch.jit.script(_module(nets, "TwoInputNet").eval())
    scripted.save(str(tmp_path / "two.torchscript"))
    result = edge("convert", tmp_path / "two.torchscript", "--input-size", "32",
                  "--labels", "a,b,c", "-o", tmp_path / "out.onnx")
    assert_refused(result, "the network's forward takes 2 inputs (x, y); a converted model "
                           "has exactly one image input: wrap the network in a module")
    assert "--input-size" not in result.stderr


def test_a_missing_class_lists_those_the_module_defines(nets, tmp_path, edge):
    weights = _weights(tmp_path / "w.pt", _module(nets, "Net"))
    result = edge("convert", weights, "--module", f"{nets}:Nett", "--input-size", "32",
                  "-o", tmp_path / "out.onnx")
    assert_refused(result, f"--module: {nets} has no torch.nn.Module class 'Nett'; its "
                           "classes: BrightBranch, ChannelsLast, CudaInForward, CudaNet, Detector, "
                           "DetectorFractions, DetectorLogits, DictNet (+11 more)")


@pytest.mark.parametrize(("source", "expected"), [
    ("import torch\nclass Net(torch.nn.Module)\n    pass\n", "has a syntax error ("),
    ("import torch\n1 / 0\n", "failed: ZeroDivisionError: division by zero; fix the module"),
    ("import not_installed_xyz\n", "it imports 'not_installed_xyz', which is not installed "
                                   "in this environment"),
])
def test_a_module_that_fails_to_import_is_named(source, expected, tmp_path, edge, monkeypatch):
    name = f"userpkg{zlib.crc32(source.encode())}"  # a package of its own: imports are cached
    package = tmp_path / name
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "broken.py").write_text(source)
    monkeypatch.syspath_prepend(str(tmp_path))
    weights = tmp_path / "w.pt"
    torch.save({}, weights)
    for module in (f"{name}.broken:Net", f"{package / 'broken.py'}:Net"):
        result = edge("convert", weights, "--module", module, "--input-size", "32",
                      "-o", tmp_path / "out.onnx")
        assert_refused(result, expected)
        assert "pass --module" not in result.stderr  # no advice that leads to another failure


def test_a_package_module_importing_a_file_beside_it_by_plain_name_is_told_the_fix(
        tmp_path, edge, monkeypatch):
    """`from blocks import stem` inside a package finds blocks.py only by the package's
    relative import; "pip install blocks" would fetch a stranger's package."""
    package = tmp_path / "sibpkg"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "blocks.py").write_text("")
    (package / "model.py").write_text("from blocks import stem\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    torch.save({}, tmp_path / "w.pt")
    result = edge("convert", tmp_path / "w.pt", "--module", "sibpkg.model:Net",
                  "--input-size", "32", "-o", tmp_path / "out.onnx")
    assert_refused(result, f"it imports 'blocks', the file {package / 'blocks.py'} beside it",
                   "write `from .blocks import ...` there, or pass the file: --module "
                   f"{package / 'model.py'}:Class")
    assert "pip install" not in result.stderr


_BLOCKS = """
from torch import nn

def stem():
    return nn.Conv2d(3, 4, 3, padding=1)
"""

_NET = """
import torch
from torch import nn
{imports}

class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.stem = stem()
        self.fc = nn.Linear(4, 2)

    def forward(self, x):
        return self.fc(torch.relu(self.stem(x)).mean((2, 3)))
"""


def _converts_with_its_blocks(folder: Path, imports: str, edge) -> None:
    """`folder`/net.py, whose Net takes its stem from `folder`/blocks.py by `imports`,
    converts from a state_dict with `--module folder/net.py:Net`."""
    (folder / "blocks.py").write_text(_BLOCKS)
    (folder / "net.py").write_text(_NET.format(imports=imports))
    network = nn.Module()
    network.stem = nn.Conv2d(3, 4, 3, padding=1)
    network.fc = nn.Linear(4, 2)
    weights = folder.parent / f"{folder.name}.pt"
    torch.save(network.state_dict(), weights)
    result = edge("convert", weights, "--module", f"{folder / 'net.py'}:Net", "--input-size",
                  "32", "--labels", "cat,dog", "-o", folder.parent / f"{folder.name}.onnx")
    assert result.returncode == 0, result.stderr


def test_a_module_file_imports_the_files_beside_it(tmp_path, edge):
    project = tmp_path / "project"
    project.mkdir()
    _converts_with_its_blocks(project, "from blocks import stem", edge)


@pytest.mark.parametrize(("name", "imports"), [
    ("relpkg", "from .blocks import stem"), ("abspkg", "from abspkg.blocks import stem")])
def test_a_module_file_inside_a_package_imports_as_the_package_does(tmp_path, edge, name,
                                                                    imports):
    """A user check: `--module mypkg/net.py:Net` whose file imports from its own package was
    told its package "is not installed" (or "attempted relative import with no known parent
    package"); it is imported as `python -m` would, by its dotted name."""
    package = tmp_path / name
    package.mkdir()
    (package / "__init__.py").write_text("")
    _converts_with_its_blocks(package, imports, edge)


@pytest.mark.parametrize("content", [bytes(range(7, 250)) * 40, b"a,b\n",
                                     b"cat\ndog\n"])  # "c": a text pickle's GLOBAL opcode
def test_bytes_of_no_known_format_are_not_named_by_a_number(tmp_path, edge, content):
    """torch.load's message for them is its advice on weights_only, the cause lines below it
    (or, on other bytes, a KeyError whose message is the number read as a magic number, or
    for a text file's "a,b" the unpickler's "pop from empty list": a user check)."""
    junk = tmp_path / "model.torchscript"
    junk.write_bytes(content)
    result = edge("convert", junk, "-o", tmp_path / "out.onnx", "--input-size", "32")
    assert_refused(result, f"{junk} is not an ONNX, TorchScript or PyTorch file (its content is "
                           "no format torch.load reads")
    assert "()" not in result.stderr and "pop from" not in result.stderr

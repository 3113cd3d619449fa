"""Grey (1-channel) networks convert to take the camera's colour frames, computing BT.601 luma
(folded into the first convolution where it is all that reads the input), and their converted
outputs are those of the original network on the luma of the frame, computed here by hand."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import numpy.typing as npt
import onnx
import onnxruntime as ort
import pytest
import torch
from onnx import TensorProto, helper, numpy_helper
from torch import nn

from converters.errors import ParityError
from converters.pixel_stem import PAIRED_SUFFIX
from converters.verify import check_parity
from tests.converters.cli_results import assert_refused
from tests.converters.tiny_models import TinyClassifier, export_onnx, grey_classifier

SIZE = 32


def _luma(frames_bgr: npt.NDArray[np.uint8]) -> npt.NDArray[np.float64]:
    """[N, H, W] grey in 0..255, as OpenCV's BGR2GRAY computes it, in float."""
    b, g, r = (frames_bgr[..., i].astype(np.float64) for i in range(3))
    return 0.299 * r + 0.587 * g + 0.114 * b


def _frames(count: int = 4) -> npt.NDArray[np.uint8]:
    return np.random.default_rng(3).integers(0, 256, (count, SIZE, SIZE, 3), np.uint8)


def _run(path: Path, feed: npt.NDArray) -> npt.NDArray[np.float32]:
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return np.asarray(session.run(None, {session.get_inputs()[0].name: feed})[0])


@pytest.mark.parametrize(("nhwc", "normalise_inside", "luma_layer"), [
    (False, False, None),  # the grey input feeds a conv: luma folded into its weights
    (False, True, "Conv"),  # the input is normalised in the graph first: a 1x1 luma conv
    (True, False, "MatMul"),  # a channels-last (Keras-style) input: a luma MatMul
])
def test_a_grey_onnx_network_takes_colour_frames_and_sees_their_luma(
        nhwc, normalise_inside, luma_layer, tmp_path, edge):
    source = grey_classifier(tmp_path / "grey.onnx", nhwc=nhwc,
                              normalise_inside=normalise_inside)
    out = tmp_path / "converted.onnx"
    result = edge("convert", source, "-o", out, "--labels", "a,b,c", "--mean", "0.4",
                  "--std", "0.2")
    assert result.returncode == 0, result.stderr
    assert ("the network takes grey (1-channel) input: it now takes the camera's 3 channels "
            "and computes grey as 0.299 R + 0.587 G + 0.114 B") in result.stdout
    frames = _frames()
    grey = (_luma(frames) / 255 - 0.4) / 0.2
    grey = grey[..., None] if nhwc else grey[:, None]
    expected = np.concatenate([_run(source, g[None].astype(np.float32)) for g in grey])
    converted = np.concatenate([_run(out, f[None]) for f in frames])
    np.testing.assert_allclose(converted, expected, rtol=1e-4, atol=1e-5)

    graph = onnx.load(str(out)).graph
    luma_nodes = [n for n in graph.node if n.name.endswith("__luma")]
    assert [n.op_type for n in luma_nodes] == ([luma_layer] if luma_layer else [])
    if luma_layer is None:
        initializers = {i.name: numpy_helper.to_array(i) for i in graph.initializer}
        first = next(n for n in graph.node if n.op_type == "Conv")
        assert initializers[first.input[1]].shape == (8, 3, 3, 3)
        assert "w1" not in initializers  # the grey weights went with the folding


def test_a_grey_pytorch_network_converts_without_a_wrapper(tmp_path, edge):
    """A state_dict of a grey network (the first conv asks for 1 channel) is exported on a
    1-channel input, then takes colour; the camera gives BGR, the network sees luma."""
    (tmp_path / "greynet.py").write_text(
        "import torch\nfrom torch import nn\n\n\n"
        "class GreyNet(nn.Module):\n"
        "    def __init__(self):\n"
        "        super().__init__()\n"
        "        self.conv = nn.Conv2d(1, 8, 3, padding=1)\n"
        "        self.fc = nn.Linear(8, 3)\n\n"
        "    def forward(self, x):\n"
        "        return self.fc(torch.relu(self.conv(x)).mean((2, 3)))\n")
    namespace: dict[str, object] = {}
    exec(compile((tmp_path / "greynet.py").read_text(), "greynet.py", "exec"), namespace)
    network = namespace["GreyNet"]()
    assert isinstance(network, nn.Module)
    torch.manual_seed(0)
    for parameter in network.parameters():
        nn.init.normal_(parameter, std=0.3)
    torch.save(network.state_dict(), tmp_path / "grey.pt")
    out = tmp_path / "converted.onnx"
    result = edge("convert", tmp_path / "grey.pt", "--module",
                  f"{tmp_path / 'greynet.py'}:GreyNet", "--input-size", str(SIZE),
                  "--labels", "a,b,c", "--mean", "0.5", "--std", "0.5", "-o", out)
    assert result.returncode == 0, result.stderr
    assert "grey (1-channel) input" in result.stdout
    assert "RGB channel order" not in result.stdout  # a grey network has no channel order
    frames = _frames()
    grey = torch.from_numpy((_luma(frames) / 255 - 0.5) / 0.5).float()[:, None]
    with torch.no_grad():
        expected = network.eval()(grey).numpy()
    converted = np.concatenate([_run(out, f[None]) for f in frames])
    np.testing.assert_allclose(converted, expected, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("profile", ["cpu", "tensorrt"])
def test_a_converted_grey_network_calibrates_and_agrees_with_fp32(profile, tmp_path, edge):
    fp32 = tmp_path / "fp32.onnx"
    assert edge("convert", grey_classifier(tmp_path / "grey.onnx"), "-o", fp32,
                "--labels", "a,b,c").returncode == 0
    int8 = tmp_path / "int8.onnx"
    result = edge("calibrate", fp32, "--images", "synthetic://shapes?seed=1", "-o", int8,
                  "--profile", profile, "--max-images", "16", "--method", "minmax")
    assert result.returncode == 0, result.stderr
    if profile == "cpu":  # the luma-folded stem reads the uint8 pixels in int8 (pixel_stem)
        graph = onnx.load(str(int8)).graph
        assert any(o.endswith(PAIRED_SUFFIX) for n in graph.node for o in n.output)
    frames = _frames(8)
    reference = np.concatenate([_run(fp32, f[None]) for f in frames])
    quantized = np.concatenate([_run(int8, f[None]) for f in frames])
    noise = np.sum((quantized - reference) ** 2)
    assert 10 * np.log10(np.sum(reference ** 2) / noise) > 20  # dB


def test_a_grey_network_with_per_channel_mean_or_std_is_refused(tmp_path, edge):
    source = grey_classifier(tmp_path / "grey.onnx")
    result = edge("convert", source, "-o", tmp_path / "out.onnx", "--labels", "a,b,c",
                  "--mean", "0.485,0.456,0.406", "--std", "0.229,0.224,0.225")
    assert_refused(result, "the network takes 1-channel (grey) input, so it has one mean and "
                           "one std, but --mean 0.485,0.456,0.406 --std 0.229,0.224,0.225 "
                           "differ by channel: pass one value each")
    assert not (tmp_path / "out.onnx").exists()


def test_one_mean_and_std_apply_to_every_channel_of_a_colour_network(tmp_path, edge):
    source = export_onnx(TinyClassifier(), tmp_path / "colour.onnx", SIZE, SIZE)
    one, three = tmp_path / "one.onnx", tmp_path / "three.onnx"
    assert edge("convert", source, "-o", one, "--labels", "a,b,c", "--mean", "0.5",
                "--std", "0.25").returncode == 0
    assert edge("convert", source, "-o", three, "--labels", "a,b,c", "--mean", "0.5,0.5,0.5",
                "--std", "0.25,0.25,0.25").returncode == 0
    frame = _frames(1)
    np.testing.assert_array_equal(_run(one, frame), _run(three, frame))


def test_a_grey_network_has_no_channel_swap_in_front(tmp_path, edge):
    """Its luma weights are written in the camera's order (BGR), whatever --network-order."""
    out = tmp_path / "converted.onnx"
    assert edge("convert", grey_classifier(tmp_path / "grey.onnx"), "-o", out, "--labels",
                "a,b,c", "--network-order", "RGB").returncode == 0
    graph = onnx.load(str(out)).graph
    assert "Gather" not in {n.op_type for n in graph.node}
    initializers = {i.name: numpy_helper.to_array(i) for i in graph.initializer}
    first = next(n for n in graph.node if n.op_type == "Conv")
    original = numpy_helper.to_array(next(
        i for i in onnx.load(str(tmp_path / "grey.onnx")).graph.initializer if i.name == "w1"))
    np.testing.assert_allclose(initializers[first.input[1]][:, :, 1, 1],  # the /255 folded too
                               original[:, :, 1, 1] * [[0.114, 0.587, 0.299]] / 255, rtol=1e-5)


class BatchNormFirst(nn.Module):
    """A grey network whose first layer is not a convolution (its error on 3 channels names
    BatchNorm's statistics, not channels)."""

    def __init__(self) -> None:
        super().__init__()
        self.norm = nn.BatchNorm2d(1)
        self.conv = nn.Conv2d(1, 4, 3, padding=1)
        self.fc = nn.Linear(4, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.relu(self.conv(self.norm(x))).mean((2, 3)))


class GreyMLP(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(SIZE * SIZE, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(x.flatten(1))


@pytest.mark.parametrize("network", [BatchNormFirst, GreyMLP])
def test_a_grey_torchscript_network_without_a_conv_first_converts(network, tmp_path, edge):
    torch.manual_seed(0)
    scripted = torch.jit.script(network().eval())
    scripted.save(str(tmp_path / "grey.torchscript"))
    out = tmp_path / "converted.onnx"
    result = edge("convert", tmp_path / "grey.torchscript", "--input-size", str(SIZE),
                  "--labels", "a,b,c", "-o", out)
    assert result.returncode == 0, result.stderr
    frames = _frames()
    grey = torch.from_numpy(_luma(frames) / 255).float()[:, None]
    with torch.no_grad():
        expected = scripted(grey).numpy()
    converted = np.concatenate([_run(out, f[None]) for f in frames])
    np.testing.assert_allclose(converted, expected, rtol=1e-4, atol=1e-5)


def test_a_grey_network_at_the_wrong_size_is_told_to_check_it(tmp_path, edge):
    torch.jit.script(GreyMLP().eval()).save(str(tmp_path / "grey.torchscript"))
    result = edge("convert", tmp_path / "grey.torchscript", "--input-size", "64",
                  "--labels", "a,b,c", "-o", tmp_path / "out.onnx")
    assert_refused(result, "the network fails on a [1, 3, 64, 64] input: mat1 and mat2 shapes "
                           "cannot be multiplied", "check --input-size")


def test_a_torchscript_failure_is_named_by_its_cause(tmp_path, edge):
    """Not by the interpreter's "The following operation failed" first line."""
    two = nn.Sequential(nn.BatchNorm2d(2), nn.Conv2d(2, 4, 3), nn.Flatten(), nn.LazyLinear(3))
    two(torch.zeros(1, 2, SIZE, SIZE))
    torch.jit.script(two.eval()).save(str(tmp_path / "two.torchscript"))
    result = edge("convert", tmp_path / "two.torchscript", "--input-size", str(SIZE),
                  "--labels", "a,b,c", "-o", tmp_path / "out.onnx")
    assert_refused(result, "the network fails on a [1, 3, 32, 32] input: running_mean should "
                           "contain 3 elements not 2")
    assert "The following operation failed" not in result.stderr


@pytest.mark.parametrize(("mean", "std", "expected"), [
    ("nan", "0.5", "--mean nan is not a finite number; pass the network's own, in 0..1 units"),
    ("0.5,nan,0.5", "0.5", "--mean 0.5,nan,0.5 is not a finite number"),
    ("0.5", "inf", "--std inf is not a finite number"),
    ("1e400", "0.5", "--mean inf is not a finite number"),
    ("127.5", "127.5", "--mean 127.5 --std 127.5: these are in 0..1 units"),
    ("0", "58", "--mean 0 --std 58: these are in 0..1 units"),
    ("0.5", "2.5", "--mean 0.5 --std 2.5: these are in 0..1 units (a pixel mean of 0..1; "
                   "0..255 values divided by 255: --mean 127.5 is 0.5), so a mean lies in 0..1 "
                   "and a std is at most 2"),
    ("0.5", "0", "--std must be positive, got 0"),
    ("0", "1e-30", "--std 1e-30 is below 0.0001, less than any network of 8-bit pixels is "
                   "trained with"),
])
def test_a_mean_or_std_that_is_no_pixel_statistic_is_refused(mean, std, expected, tmp_path,
                                                              edge):
    for source in (grey_classifier(tmp_path / "grey.onnx"),
                   export_onnx(TinyClassifier(), tmp_path / "colour.onnx", SIZE, SIZE)):
        result = edge("convert", source, "-o", tmp_path / "out.onnx", "--labels", "a,b,c",
                      "--mean", mean, "--std", std)
        assert_refused(result, expected)
        assert not (tmp_path / "out.onnx").exists()


def test_a_network_fed_pixels_over_256_converts_exactly(tmp_path, edge):
    """dlib's convention, (pixel - mean) / 256, is a std just above 1 in 0..1 units; typed with
    more digits than six, it is folded and quoted as typed."""
    source = grey_classifier(tmp_path / "grey.onnx")
    out = tmp_path / "converted.onnx"
    result = edge("convert", source, "-o", out, "--labels", "a,b,c", "--mean", "0.481498",
                  "--std", "1.00390625")
    assert result.returncode == 0, result.stderr
    frames = _frames()
    grey = (_luma(frames) - 0.481498 * 255) / 256
    expected = np.concatenate([_run(source, g[None, None].astype(np.float32)) for g in grey])
    np.testing.assert_allclose(np.concatenate([_run(out, f[None]) for f in frames]), expected,
                               rtol=1e-4, atol=1e-4)
    refused = edge("convert", source, "-o", out, "--labels", "a,b,c", "--mean", "0.481498",
                   "--std", "1.00390625,1.00390625,1.003922")
    assert_refused(refused, "--mean 0.481498 --std 1.00390625,1.00390625,1.003922")


def _nan_model() -> onnx.ModelProto:
    """uint8 frames -> sqrt(-pixel - 1): NaN everywhere."""
    graph = helper.make_graph(
        [helper.make_node("Cast", ["image"], ["x"], to=TensorProto.FLOAT),
         helper.make_node("Add", ["x", "one"], ["y"]),
         helper.make_node("Neg", ["y"], ["z"]),
         helper.make_node("Sqrt", ["z"], ["output0"])],
        "nan", [helper.make_tensor_value_info("image", TensorProto.UINT8, [1, SIZE, SIZE, 3])],
        [helper.make_tensor_value_info("output0", TensorProto.FLOAT, [1, SIZE, SIZE, 3])],
        [numpy_helper.from_array(np.array(1, np.float32), "one")])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


@pytest.mark.parametrize(("source_value", "whose"), [
    (0.0, "the converted model's output output0 holds NaN or infinite values"),
    (np.nan, "the source model's output output0 holds NaN or infinite values"),
])
def test_outputs_that_are_not_numbers_fail_the_parity_check(source_value, whose):
    """NaN differs from nothing by NaN, which no tolerance comparison catches."""
    frames = _frames(2)
    with pytest.raises(ParityError, match=whose):
        check_parity(_nan_model(), "output0", lambda x: np.full((1, SIZE, SIZE, 3), source_value),
                     frames, np.zeros((2, 3, SIZE, SIZE)))


def _pooling_model(path: Path, elem_type: int, channels: int) -> Path:
    """image [1, C, 32, 32] -> GlobalAveragePool -> Flatten: C scores, in `elem_type`."""
    graph = helper.make_graph(
        [helper.make_node("GlobalAveragePool", ["image"], ["pooled"]),
         helper.make_node("Flatten", ["pooled"], ["scores"])],
        "pool", [helper.make_tensor_value_info("image", elem_type, [1, channels, SIZE, SIZE])],
        [helper.make_tensor_value_info("scores", elem_type, [1, channels])])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))
    return path


@pytest.mark.parametrize(("elem_type", "kind"), [(TensorProto.FLOAT16, "float16"),
                                                 (TensorProto.DOUBLE, "double")])
def test_a_half_or_double_precision_model_is_told_to_export_in_float32(elem_type, kind,
                                                                        tmp_path, edge):
    source = _pooling_model(tmp_path / "half.onnx", elem_type, 3)
    result = edge("convert", source, "-o", tmp_path / "out.onnx", "--labels", "a,b,c")
    assert_refused(result, f"the model's input image is {kind}: edge converts float32 models",
                   "export it in float32 (Ultralytics: without half=True")
    assert "check --input-size" not in result.stderr


@pytest.mark.parametrize("channels", [2, 4])
def test_a_network_taking_other_channels_is_told_what_to_export(channels, tmp_path, edge):
    source = _pooling_model(tmp_path / "other.onnx", TensorProto.FLOAT, channels)
    result = edge("convert", source, "-o", tmp_path / "out.onnx", "--labels", "a,b,c")
    assert_refused(result, f"inputs: image [1, {channels}, 32, 32]): export the network with "
                           "an image input of 3 colour or 1 grey channel")

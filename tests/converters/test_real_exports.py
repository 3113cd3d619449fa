"""What real exporters write, and the failures issue 12 found on a third-party classifier:
each is now a working conversion or a clear, exit-2 message (no traceback, no circular
advice). The graphs are tiny stand-ins built in tests/converters/exporter_graphs.py; the real
models run in tests/corpus."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import onnx
import onnxruntime as ort
import pytest

from converters.convert import ConvertOptions, convert
from converters.errors import ConversionError
from converters.onnx_source import opset_of
from edge.resizing import Interpolation, Resize
from edge.synthetic import ShapeScene
from tests.converters.cli_results import Result, assert_refused
from tests.converters.exporter_graphs import (
    SIZE,
    caffe2_classifier,
    classifier,
    shared_parameters_classifier,
)

LABELS = ("a", "b", "c")


def edge_without(module: str, *args: str | Path) -> Result:
    """`edge ARGS` in a fresh interpreter in which `module` cannot be imported."""
    code = (f"import sys; sys.modules[{module!r}] = None\nfrom edge.cli import main\n"
            "sys.exit(main(sys.argv[1:]))")
    done = subprocess.run([sys.executable, "-c", code, *map(str, args)], capture_output=True,
                          text=True, timeout=300)
    return Result(done.returncode, done.stdout, done.stderr)


def converted_classifier(tmp_path: Path) -> Path:
    """The stand-in classifier converted with its labels: `tmp_path/fp32.onnx`."""
    fp32 = tmp_path / "fp32.onnx"
    convert(classifier(tmp_path / "m.onnx"), ConvertOptions(labels=LABELS)).write(fp32)
    return fp32


# -- batch as exporters write it, and --batch honoured --------------------------------------

BATCH_CASES = [
    # source batch, requested ("source" = no --batch), expected spec batch or error fragment
    (-1, "source", None), (0, "source", None), ("N", "source", None), (1, "source", 1),
    (-1, 1, 1), (0, 4, 4), ("N", None, None), (1, 1, 1),
    (1, None, "batch is fixed at 1 by its exporter, so a dynamic batch cannot be made"),
    (1, 4, "batch is fixed at 1 by its exporter, so batch 4 cannot be made"),
]


@pytest.mark.parametrize(("source_batch", "requested", "expected"), BATCH_CASES)
def test_batch_as_exported_and_as_requested(tmp_path, source_batch, requested, expected):
    source = classifier(tmp_path / "m.onnx", batch=source_batch)
    options = ConvertOptions(labels=LABELS, batch=requested)
    if isinstance(expected, str):
        with pytest.raises(ConversionError, match=r"export it again") as error:
            convert(source, options)
        assert expected in str(error.value)
        assert "dynamic_axes={'x': {0: 'batch'}}" in str(error.value)  # the input's own name
        return
    converted = convert(source, options)
    assert converted.spec.input.batch == expected
    dims = converted.model.graph.input[0].type.tensor_type.shape.dim
    assert (dims[0].dim_value if dims[0].HasField("dim_value") else None) == expected
    run_batch = expected or 3
    session = ort.InferenceSession(converted.model.SerializeToString(),
                                   providers=["CPUExecutionProvider"])
    frames = np.random.default_rng(0).integers(0, 256, (run_batch, SIZE, SIZE, 3), np.uint8)
    assert session.run(None, {"x": frames})[0].shape == (run_batch, 3)
    if source_batch in (-1, 0):
        assert f"x[0]={source_batch} (the batch axis then takes what --batch says" in \
            " ".join(converted.notes)


def test_batch_flags_on_the_command_line(tmp_path, edge):
    source = classifier(tmp_path / "m.onnx", batch=-1)
    for flag, expected in ((["--batch", "1"], 1), (["--batch", "dynamic"], None), ([], None)):
        out = tmp_path / f"out{expected}.onnx"
        result = edge("convert", source, "-o", out, "--labels", "a,b,c", *flag, "--json")
        assert result.returncode == 0, result.stderr
        assert json.loads(result.stdout.splitlines()[-1])["input"][0] == expected
    # a user check: the summary showed a Python list's text, ['batch', 32, 32, 3]
    printed = edge("convert", source, "-o", tmp_path / "printed.onnx", "--labels", "a,b,c")
    assert f"input uint8 [batch, {SIZE}, {SIZE}, 3] BGR" in printed.stdout, printed.stdout


# -- opset < 13 and Constant weights: upgraded, moved, and both INT8 profiles work ----------

@pytest.mark.parametrize("opset", [9, 12])
def test_old_opsets_are_upgraded_with_a_note(tmp_path, opset):
    converted = convert(classifier(tmp_path / "m.onnx", opset=opset), ConvertOptions(labels=LABELS))
    assert opset_of(converted.model) >= 13
    assert f"upgraded the model from opset {opset} to 13" in " ".join(converted.notes)


def test_an_output_declared_as_a_scalar_takes_the_shape_the_graph_computes(tmp_path):
    """paddle2onnx (PP-OCRv5's text-line classifier) declares its Softmax output with rank 0;
    ONNX's strict shape inference refused the converted graph."""
    source = classifier(tmp_path / "m.onnx", ending="softmax", opset=14)
    model = onnx.load(str(source))
    del model.graph.output[0].type.tensor_type.shape.dim[:]  # rank 0, the shape field kept
    onnx.save(model, str(source))
    converted = convert(source, ConvertOptions(labels=LABELS, resize="stretch"))
    assert ("replaced the output shape the exporter declared, which the graph contradicts: "
            "scores [] where the graph computes [N, 3]") in converted.notes
    frame = np.random.default_rng(5).integers(0, 256, (1, SIZE, SIZE, 3), np.uint8)
    ours = ort.InferenceSession(converted.model.SerializeToString(),
                                providers=["CPUExecutionProvider"])
    theirs = ort.InferenceSession(str(source), providers=["CPUExecutionProvider"])
    pixels = frame[..., ::-1].transpose(0, 3, 1, 2).astype(np.float32) / 255  # RGB, /255
    np.testing.assert_allclose(ours.run(None, {ours.get_inputs()[0].name: frame})[0],
                               theirs.run(None, {"x": pixels})[0], rtol=1e-5, atol=1e-6)


def test_assumed_preprocessing_is_said_for_sources_that_do_not_record_it(tmp_path):
    """Only Ultralytics exports say their preprocessing; for the others /255 RGB is a guess,
    and a wrong one costs accuracy with no error."""
    from converters.fold import Normalisation

    source = classifier(tmp_path / "m.onnx")

    def note(normalisation: Normalisation, resize: Resize | None = "letterbox",
             interpolation: Interpolation | None = "bilinear") -> str:
        notes = convert(source, ConvertOptions(labels=LABELS, normalisation=normalisation,
                                               resize=resize, interpolation=interpolation)).notes
        return next((n for n in notes if n.startswith("assumed the network takes")), "")

    imagenet = ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))
    assert note(Normalisation()).startswith(
        "assumed the network takes RGB channel order (--network-order) and pixels / 255 with "
        "no mean or std (--mean, --std); if it was trained otherwise")
    assert note(Normalisation("BGR")).startswith(
        "assumed the network takes pixels / 255 with no mean or std (--mean, --std);")
    assert note(Normalisation("RGB", *imagenet)).startswith(
        "assumed the network takes RGB channel order (--network-order);")
    assert note(Normalisation("BGR", *imagenet)) == ""
    # one of mean and std given (YOLOX's raw pixels): the other is named, with how to state it
    assert note(Normalisation("BGR", (0.0,) * 3, (1 / 255,) * 3)) == (
        "assumed the network takes no mean (--mean); if it was trained otherwise, pass that "
        "(give --mean too, 0 if it has none), or its accuracy drops with no error")
    assert note(Normalisation("BGR", *imagenet), resize=None).startswith(
        "assumed the network takes whole frames letterboxed, centred (--resize); if it was "
        "trained otherwise, pass that (trained on images resized to the input, as Keras and "
        "torchvision's Resize((h, w)) do: --resize stretch)")
    assert note(Normalisation(), resize=None).startswith(
        "assumed the network takes RGB channel order (--network-order), pixels / 255 with no "
        "mean or std (--mean, --std) and whole frames letterboxed, centred (--resize);")
    # a classifier's resampling: PIL-trained ones see antialiased images
    assert note(Normalisation("BGR", *imagenet), interpolation=None) == (
        "assumed the network takes frames resampled bilinear without antialiasing "
        "(--interpolation); if it was trained otherwise, pass that (trained on PIL images, as "
        "torchvision and timm load them: --interpolation pil-bilinear, or pil-bicubic for "
        "timm's defaults), or its accuracy drops with no error")


def test_defaults_given_on_the_command_line_are_not_called_assumed(tmp_path, edge):
    """`--network-order RGB --mean 0 --std 1` are the defaults, passed on purpose: the note
    names only what was left out (a user check found all three listed as assumed)."""
    source = classifier(tmp_path / "m.onnx")
    stated = edge("convert", source, "-o", tmp_path / "stated.onnx", "--labels", "a,b,c",
                  "--network-order", "RGB", "--mean", "0", "--std", "1", "--resize", "letterbox",
                  "--interpolation", "bilinear")
    assert stated.returncode == 0, stated.stderr
    assert "assumed the network takes" not in stated.stdout
    order_only = edge("convert", source, "-o", tmp_path / "order.onnx", "--labels", "a,b,c",
                      "--mean", "0", "--std", "1", "--resize", "letterbox", "--interpolation",
                      "bilinear")
    assert order_only.returncode == 0, order_only.stderr
    assert "note: assumed the network takes RGB channel order (--network-order); if it was " \
           "trained otherwise" in order_only.stdout
    mean_only = edge("convert", source, "-o", tmp_path / "mean.onnx", "--labels", "a,b,c",
                     "--network-order", "RGB", "--mean", "0.485,0.456,0.406", "--resize",
                     "letterbox", "--interpolation", "bilinear")
    assert "note: assumed the network takes a std of 1 (--std); if it was trained otherwise" \
        in mean_only.stdout


def test_opset_11_with_constant_weights_calibrates_with_both_profiles(tmp_path, edge):
    """The issue's classifier: batch -1, opset 11, weights in Constant nodes, Softmax."""
    source = classifier(tmp_path / "m.onnx", batch=-1, opset=11, constants=True,
                        ending="softmax")
    fp32 = tmp_path / "fp32.onnx"
    result = edge("convert", source, "-o", fp32, "--labels", "a,b,c")
    assert result.returncode == 0, result.stderr
    assert "note: upgraded the model from opset 11 to 13" in result.stdout
    assert "note: moved 5 Constant node(s) to initializers" in result.stdout
    assert "classify (probabilities)" in result.stdout
    converted = onnx.load(str(fp32))
    assert not [n for n in converted.graph.node if n.op_type == "Constant"]
    for profile, ops in (("tensorrt", {"Conv", "MatMul"}), ("cpu", {"MatMul"})):
        out = tmp_path / f"{profile}.onnx"
        result = edge("calibrate", fp32, "--images", "synthetic://shapes?seed=1", "-o", out,
                      "--profile", profile, "--max-images", "8", "--method", "minmax")
        assert result.returncode == 0, result.stderr
        graph = onnx.load(str(out)).graph
        producers = {o: n.op_type for n in graph.node for o in n.output}
        for node in graph.node:  # the cpu profile keeps a 3-channel stem conv float
            if node.op_type in ops:
                assert producers.get(node.input[1]) == "DequantizeLinear", (profile, node.name)


@pytest.mark.parametrize("profile", ["tensorrt", "cpu"])
def test_convs_that_share_a_bias_and_a_weight_calibrate_with_both_profiles(tmp_path, edge,
                                                                           profile):
    """A user check: a model whose convs read one bias failed `--profile cpu` with a KeyError
    traceback (each conv's bias is quantized at its own input's scale times its weight's)."""
    fp32 = tmp_path / "fp32.onnx"
    result = edge("convert", shared_parameters_classifier(tmp_path / "m.onnx"), "-o", fp32,
                  "--labels", "a,b,c")
    assert result.returncode == 0, result.stderr
    out = tmp_path / f"{profile}.onnx"
    result = edge("calibrate", fp32, "--images", "synthetic://shapes?seed=2", "-o", out,
                  "--profile", profile, "--max-images", "24", "--method", "minmax")
    assert result.returncode == 0, result.stderr
    graph = onnx.load(str(out)).graph
    convs = [n for n in graph.node if n.op_type in ("Conv", "QLinearConv", "ConvInteger")]
    assert len(convs) == 3
    if profile == "cpu":  # each conv's bias in int32 at its own scale, so each its own
        biases = [n.input[8] if n.op_type == "QLinearConv" else n.input[2] for n in convs]
        assert len(set(biases)) == 3, biases
    scene = ShapeScene(seed=5)  # frames like the calibration set's, not seen in it
    frames = np.stack([cv2.resize(scene.next()[0], (SIZE, SIZE), interpolation=cv2.INTER_AREA)
                       for _ in range(8)])
    name = onnx.load(str(fp32)).graph.input[0].name
    expected = ort.InferenceSession(str(fp32)).run(None, {name: frames})[0]
    got = ort.InferenceSession(str(out)).run(None, {name: frames})[0]
    sqnr = 10 * np.log10(np.sum(expected ** 2) / np.sum((expected - got) ** 2))
    assert sqnr > 20, sqnr


# -- IR version 3 (onnx-caffe2, the ONNX model zoo's oldest files) ------------------------

def test_an_ir3_model_with_its_weights_among_the_inputs_and_pooled_scores_converts(tmp_path):
    """A user check: the model zoo's SqueezeNet and ResNet-50 as onnx-caffe2 wrote them were
    refused with the name of a tensor edge adds itself ("..._pre_swap_index in initializer but
    not in graph input"), then, with --no-simplify as advised, again; and scores on a 1x1 map,
    [N, nc, 1, 1], were called a segmentation map."""
    source = caffe2_classifier(tmp_path / "squeezenet.onnx")
    converted = convert(source, ConvertOptions(labels=LABELS, resize="stretch"))
    notes = " ".join(converted.notes)
    assert ("took the 3 weights the exporter also listed as graph inputs out of the inputs (as "
            "ONNX's IR version 3 required)") in notes
    assert "flattened softmaxout_1 (3 x 1 x 1 a frame: scores on a 1x1 map" in notes
    assert converted.spec.head == "probabilities" and converted.spec.output == "softmaxout_1"
    assert [i.name for i in converted.model.graph.input] == [converted.spec.input.name]
    frame = np.random.default_rng(6).integers(0, 256, (1, SIZE, SIZE, 3), np.uint8)
    ours = ort.InferenceSession(converted.model.SerializeToString(),
                                providers=["CPUExecutionProvider"])
    theirs = ort.InferenceSession(str(source), providers=["CPUExecutionProvider"])
    pixels = frame[..., ::-1].transpose(0, 3, 1, 2).astype(np.float32) / 255  # RGB, /255
    scores = ours.run(None, {ours.get_inputs()[0].name: frame})[0]
    assert scores.shape == (1, 3)
    np.testing.assert_allclose(scores, theirs.run(None, {"data_0": pixels})[0].reshape(1, 3),
                               rtol=1e-5, atol=1e-6)


def test_flattening_pooled_scores_keeps_what_else_reads_them():
    """Another node reading the 4-D scores reads them under their new name; the output
    becomes [N, C] with the same values."""
    from onnx import TensorProto, helper

    from converters.pooled_head import flattened_output

    nodes = [helper.make_node("GlobalAveragePool", ["x"], ["scores"]),
             helper.make_node("Neg", ["scores"], ["negated"])]
    graph = helper.make_graph(
        nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 5, 4, 4])],
        [helper.make_tensor_value_info("scores", TensorProto.FLOAT, [2, 5, 1, 1]),
         helper.make_tensor_value_info("negated", TensorProto.FLOAT, [2, 5, 1, 1])],
        value_info=[helper.make_tensor_value_info("scores", TensorProto.FLOAT, [2, 5, 1, 1])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    flat = flattened_output(model, "scores")
    onnx.shape_inference.infer_shapes(flat, strict_mode=True)  # no shape contradicts another
    x = np.random.default_rng(1).normal(size=(2, 5, 4, 4)).astype(np.float32)
    scores, negated = ort.InferenceSession(flat.SerializeToString(),
                                           providers=["CPUExecutionProvider"]).run(None, {"x": x})
    np.testing.assert_allclose(scores, x.mean(axis=(2, 3)), rtol=1e-6)
    np.testing.assert_allclose(negated, -x.mean(axis=(2, 3), keepdims=True), rtol=1e-6)


MODEL_ZOO_LIGHT = Path(onnx.__file__).parent / "backend" / "test" / "data" / "light"


@pytest.mark.parametrize("name", ["light_densenet121", "light_inception_v1", "light_inception_v2",
                                  "light_resnet50", "light_shufflenet", "light_squeezenet"])
def test_the_model_zoos_caffe2_exports_that_onnx_ships_convert(tmp_path, name):
    """Model-zoo architectures the onnx wheel ships as onnx-caffe2 wrote them (IR 3, opset 9;
    constant weights, so only the conversion is checked: parity with the source). Its AlexNet,
    VGG-19 and ZFNet-512 convert too, in 5-18 s each for their dense layers' 0.2-0.5 GB."""
    source = MODEL_ZOO_LIGHT / f"{name}.onnx"
    if not source.is_file():
        pytest.skip(f"this onnx wheel has no {source}")
    labels = tuple(f"class{i}" for i in range(1000))
    converted = convert(source, ConvertOptions(labels=labels))
    assert converted.spec.task == "classify" and converted.spec.num_classes == 1000
    assert converted.parity is not None and converted.parity.ok


# -- Softmax / Sigmoid endings ------------------------------------------------------------

@pytest.mark.parametrize(("ending", "head"), [("none", "logits"), ("softmax", "probabilities"),
                                              ("sigmoid", "probabilities")])
def test_scores_behind_an_identity_are_recognised(tmp_path, ending, head):
    source = classifier(tmp_path / "m.onnx", ending=ending)
    assert convert(source, ConvertOptions(labels=LABELS)).spec.head == head


# -- several outputs: the one whose class count matches the labels ---------------------------

def test_the_output_matching_the_labels_is_chosen(tmp_path):
    source = classifier(tmp_path / "m.onnx", extra_output=True, ending="softmax")
    converted = convert(source, ConvertOptions(labels=LABELS))
    assert converted.spec.output == "scores" and converted.spec.head == "probabilities"
    assert ("took output scores (3 a frame) as the classify head (probabilities, 3 classes); "
            "left out of the converted model: boxes (4 a frame)") in " ".join(converted.notes)
    # the device reads the scores alone: the box regression's nodes and weights are gone
    assert [o.name for o in converted.model.graph.output] == ["scores"]
    produced = {name for node in converted.model.graph.node for name in node.output}
    assert "boxes" not in produced


def test_without_labels_the_probabilities_are_the_head_and_every_candidate_is_named(
        tmp_path, edge):
    """MTCNN's R-Net puts its box regression [N, 4] before its face probabilities [N, 2]: the
    output ending in Softmax is the classifier's head, and the error asking for labels names
    the other output's count too (it once asked for 4, the box output's)."""
    source = classifier(tmp_path / "m.onnx", extra_output=True, ending="softmax")
    result = edge("convert", source, "-o", tmp_path / "out.onnx")
    assert_refused(result, "the model's labels are unknown; pass --labels (a file or a "
                   "comma list) with its 3 class names for output scores (probabilities), the "
                   "one taken; or, for another output, as many as it has classes: 4 for boxes "
                   "(logits)")
    plain = classifier(tmp_path / "plain.onnx", extra_output=True, ending="none")
    result = edge("convert", plain, "-o", tmp_path / "out.onnx")
    assert_refused(result, "with its 4 class names for output boxes (logits), "
                   "the one taken; or, for another output, as many as it has classes: 3 for "
                   "scores (logits)")


def test_labels_matching_no_output_name_every_output(tmp_path, edge):
    source = classifier(tmp_path / "m.onnx", extra_output=True, ending="softmax")
    result = edge("convert", source, "-o", tmp_path / "out.onnx", "--labels", "a,b")
    assert_refused(result, "2 labels were given but no output of the model has 2 classes",
                   "boxes (4 a frame, 4 classes)", "scores (3 a frame, 3 classes)")


# -- refusals -------------------------------------------------------------------------------

def test_an_already_converted_model_is_refused(tmp_path, edge):
    fp32 = converted_classifier(tmp_path)
    result = edge("convert", fp32, "-o", tmp_path / "again.onnx", "--labels", "a,b,c")
    assert_refused(result, "was converted by `edge convert` already",
                   "use it as it is (`edge calibrate`, `edge run`)")
    assert not (tmp_path / "again.onnx").exists()
    from calibration.readers import frames_from
    from converters.quantize import CalibrateOptions, calibrate, load_float_model

    model, spec = load_float_model(fp32)
    for profile, use in (("tensorrt", "(`edge run`, `edge build-engine`; it is INT8 already)"),
                         ("cpu", "(`edge run` on ONNX Runtime; it is INT8 for the CPU already)")):
        int8 = calibrate(model, spec, frames_from("synthetic://shapes?seed=1", max_images=8),
                         CalibrateOptions(profile=profile, method="minmax", progress=False))
        onnx.save(int8.model, tmp_path / "int8.onnx")
        result = edge("convert", tmp_path / "int8.onnx", "-o", tmp_path / "again.onnx",
                      "--labels", "a,b,c")
        assert_refused(result, use)
        assert "edge calibrate" not in result.stderr  # it refuses quantized models


class _Frames:
    """ONNX Runtime's calibration reader: a few random frames of the test classifier."""

    def __init__(self) -> None:
        rng = np.random.default_rng(0)
        self._frames = iter([{"x": rng.random((1, 3, SIZE, SIZE), np.float32)}
                             for _ in range(4)])

    def get_next(self) -> dict[str, np.ndarray] | None:
        return next(self._frames, None)


@pytest.mark.parametrize("how", ["static-qdq", "static-qoperator", "dynamic"])
def test_a_model_quantized_elsewhere_is_refused_by_convert(tmp_path, edge, how):
    from onnxruntime.quantization import QuantFormat, QuantType, quantize_dynamic, quantize_static

    source = classifier(tmp_path / "m.onnx", batch=1)
    quantized = tmp_path / "q.onnx"
    if how == "dynamic":
        quantize_dynamic(str(source), str(quantized))
    else:
        quantize_static(str(source), str(quantized), _Frames(),
                        quant_format=QuantFormat.QDQ if how == "static-qdq"
                        else QuantFormat.QOperator, activation_type=QuantType.QUInt8)
    result = edge("convert", quantized, "-o", tmp_path / "out.onnx", "--labels", "a,b,c")
    what = "is dynamically quantized" if how == "dynamic" else "is quantized already"
    assert_refused(result, what, "takes the float (FP32) export",
                   "convert the model it was quantized from")
    assert not (tmp_path / "out.onnx").exists()
    shown = edge("inspect", quantized)
    assert shown.returncode == 0, shown.stderr
    line = next(line for line in shown.stdout.splitlines() if line.startswith("quantization"))
    # the conv's and the classifier's weights (QDQ: also the Add's constant bias vector)
    expected = {"static-qdq": "qdq, activations uint8, 3 quantized weights",
                "static-qoperator": "qoperator, activations uint8, 2 quantized weights",
                "dynamic": "qoperator, activations uint8 (quantized at run time: dynamic "
                           "quantization), 2 quantized weights"}
    assert expected[how] in line, line
    if how == "static-qoperator":
        assert "1 int32 biases" in line, line  # the conv's (QLinearConv)


def _unsorted(source: Path, path: Path) -> Path:
    """`source` with its last node moved to the front, as paddle2onnx left two nodes of a
    PaddleDetection model ahead of the nodes that make their inputs."""
    model = onnx.load(str(source))
    nodes = list(model.graph.node)
    del model.graph.node[:]
    model.graph.node.extend([nodes[-1], *nodes[:-1]])
    onnx.save(model, str(path))
    return path


def test_a_graph_out_of_topological_order_is_sorted_with_a_note(tmp_path, edge):
    """ONNX's checker refuses it and ONNX Runtime runs it (it sorts for itself): it was called
    damaged, and its user told to copy it again."""
    source = classifier(tmp_path / "m.onnx", ending="softmax")
    unsorted = _unsorted(source, tmp_path / "unsorted.onnx")
    with pytest.raises(onnx.checker.ValidationError, match="topologically sorted"):
        onnx.checker.check_model(onnx.load(str(unsorted)))
    result = edge("convert", unsorted, "-o", tmp_path / "out.onnx", "--labels", "a,b,c")
    assert result.returncode == 0, result.stderr
    assert ("note: put the graph's nodes in topological order, as ONNX requires (1 came before "
            "the nodes that make their inputs; ONNX Runtime sorts them for itself)"
            in result.stdout)
    frame = np.random.default_rng(3).integers(0, 256, (1, SIZE, SIZE, 3), np.uint8)
    outputs = []
    for model in (source, unsorted):
        converted = convert(model, ConvertOptions(labels=LABELS, resize="letterbox",
                                                  interpolation="bilinear")).model
        session = ort.InferenceSession(converted.SerializeToString(),
                                       providers=["CPUExecutionProvider"])
        outputs.append(session.run(None, {session.get_inputs()[0].name: frame})[0])
    np.testing.assert_array_equal(outputs[0], outputs[1])


def test_an_input_nothing_makes_is_named_not_called_unsorted(tmp_path, edge):
    """The checker's "must be topologically sorted" was cut at its first line, which dropped the
    node and read as the sorting `edge convert` now does itself (a user re-check)."""
    model = onnx.load(str(classifier(tmp_path / "m.onnx")))
    relu = next(n for n in model.graph.node if n.op_type == "Relu")
    relu.input[0] = "nowhere"
    onnx.save(model, str(tmp_path / "broken.onnx"))
    result = edge("convert", tmp_path / "broken.onnx", "-o", tmp_path / "out.onnx", "--labels",
                  "a,b,c")
    assert_refused(result, "is not a valid ONNX model: node relu (Relu) reads nowhere, which "
                           "no node, input or initializer makes (or only a cycle of nodes "
                           "does); the graph is broken: export it again")
    assert not (tmp_path / "out.onnx").exists()


def test_an_unsorted_dynamically_quantized_model_is_refused_as_quantized(tmp_path, edge):
    from onnxruntime.quantization import quantize_dynamic

    quantized = tmp_path / "q.onnx"
    quantize_dynamic(str(classifier(tmp_path / "m.onnx", batch=1)), str(quantized))
    result = edge("convert", _unsorted(quantized, tmp_path / "unsorted.onnx"), "-o",
                  tmp_path / "out.onnx", "--labels", "a,b,c")
    assert_refused(result, "is dynamically quantized", "takes the float (FP32) export")


def test_a_subgraph_reading_an_outer_name_comes_after_its_maker():
    from onnx import TensorProto, helper

    from converters.graph_order import sort_nodes

    out = helper.make_tensor_value_info("out", TensorProto.FLOAT, None)
    branch = helper.make_graph([helper.make_node("Identity", ["made"], ["out"], name="inner")],
                               "branch", [], [out])
    graph = helper.make_graph(
        [helper.make_node("If", ["cond"], ["chosen"], name="if", then_branch=branch,
                          else_branch=branch),
         helper.make_node("Relu", ["x"], ["made"], name="maker")], "outer", [], [])
    assert sort_nodes(graph) == 1
    assert [n.name for n in graph.node] == ["maker", "if"]


def test_a_cycle_is_left_for_the_checker_to_name():
    from onnx import helper

    from converters.graph_order import sort_nodes

    graph = helper.make_graph(
        [helper.make_node("Relu", ["b"], ["a"], name="first"),
         helper.make_node("Relu", ["a"], ["b"], name="second")], "cycle", [], [])
    assert sort_nodes(graph) == 0
    assert [n.name for n in graph.node] == ["first", "second"]


def test_a_converted_model_without_its_spec_is_refused(tmp_path, edge):
    converted = convert(classifier(tmp_path / "m.onnx"), ConvertOptions(labels=LABELS)).model
    del converted.metadata_props[:]
    onnx.save(converted, str(tmp_path / "stripped.onnx"))
    result = edge("convert", tmp_path / "stripped.onnx", "-o", tmp_path / "again.onnx",
                  "--labels", "a,b,c")
    assert_refused(result, "takes uint8 frames already (input x)")


def test_a_second_input_is_refused(tmp_path, edge):
    source = classifier(tmp_path / "m.onnx", extra_input=True)
    result = edge("convert", source, "-o", tmp_path / "out.onnx", "--labels", "a,b,c")
    assert_refused(result, "besides the image the model has other inputs",
                   "threshold [1]", "only single-input models can be converted",
                   "export the network with the image as its only input")


def _corrupt(tmp_path: Path, kind: str) -> Path:
    good = classifier(tmp_path / "good.onnx").read_bytes()
    path = tmp_path / f"{kind}.onnx"
    data = {"truncated": good[: len(good) // 2], "empty": b"",
            "random": np.random.default_rng(0).bytes(4096),
            "zeroed": good[:200] + bytes(len(good) - 200)}[kind]
    path.write_bytes(data)
    return path


@pytest.mark.parametrize("kind", ["truncated", "empty", "random", "zeroed"])
@pytest.mark.parametrize("command", ["convert", "calibrate", "inspect"])
def test_corrupt_model_files(tmp_path, edge, kind, command):
    path = _corrupt(tmp_path, kind)
    args = {"convert": ["--labels", "a,b,c", "-o", tmp_path / "out.onnx"],
            "calibrate": ["--images", "synthetic://shapes", "-o", tmp_path / "out.onnx"],
            "inspect": []}[command]
    result = edge(command, path, *args)
    assert_refused(result, path.name, *(["is empty (0 bytes)"] if kind == "empty" else []))
    assert not (tmp_path / "out.onnx").exists()


@pytest.mark.parametrize("command", ["convert", "calibrate"])
def test_without_the_convert_extra_the_install_command_is_shown(tmp_path, command):
    source = classifier(tmp_path / "m.onnx")
    args = {"convert": ["--labels", "a,b,c"], "calibrate": ["--images", "synthetic://shapes"]}
    result = edge_without("onnx", command, source, "-o", tmp_path / "out.onnx", *args[command])
    assert_refused(result, f"edge {command} needs the Python module 'onnx'",
                   f"pip install -e '{Path(__file__).resolve().parents[2]}[convert]'")
    # a user check: a device's calibrate (or inspect, eval) was sent to torch's gigabytes
    alone = "pip install 'onnx>=1.16' 'ml_dtypes<0.7' 'pyyaml>=6'; for every command of the "
    assert (alone in result.stderr) == (command == "calibrate")


# -- calibration inputs -----------------------------------------------------------------------

def test_a_profile_that_cannot_quantize_a_node_names_it_and_suggests_exclude(tmp_path, edge):
    fp32 = tmp_path / "fp32.onnx"
    convert(classifier(tmp_path / "m.onnx", batch=1, dynamic_weight=True),
            ConvertOptions(labels=LABELS)).write(fp32)
    base = ["calibrate", fp32, "--images", "synthetic://shapes", "--max-images", "8",
            "--method", "minmax", "-o", tmp_path / "int8.onnx"]
    result = edge(*base)
    assert_refused(result, "take weights computed in the graph: dynamic_conv",
                   "--exclude dynamic_conv")
    assert "edge calibrate --profile tensorrt" not in result.stderr
    result = edge(*base, "--exclude", "dynamic_conv")
    assert result.returncode == 0, result.stderr


def test_a_fixed_batch_above_one_is_refused_by_calibrate(tmp_path, edge):
    fp32 = tmp_path / "fp32.onnx"
    convert(classifier(tmp_path / "m.onnx"), ConvertOptions(labels=LABELS, batch=4)).write(fp32)
    result = edge("calibrate", fp32, "--images", "synthetic://shapes", "-o", tmp_path / "q.onnx")
    assert_refused(result, "has a fixed batch of 4", "--batch dynamic")


def test_images_a_stretch_enlarges_along_one_side_are_kept_and_said(tmp_path, edge, caplog):
    """A user check: 640x480 photos into a 608x800 stretch model (1.67x in height) calibrated
    without a word, while images smaller in both sides are refused."""
    fp32 = tmp_path / "fp32.onnx"
    convert(classifier(tmp_path / "m.onnx"),
            ConvertOptions(labels=LABELS, resize="stretch")).write(fp32)
    wide = tmp_path / "wide"
    wide.mkdir()
    rng = np.random.default_rng(0)
    for index in range(10):  # 40x16: 0.8x in width, 2x in height
        cv2.imwrite(str(wide / f"{index}.png"), rng.integers(0, 256, (16, 40, 3), np.uint8))
    args = ("calibrate", fp32, "--images", wide, "-o", tmp_path / "int8.onnx",
            "--method", "minmax", "--json")
    result = edge(*args)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout.strip().splitlines()[-1])["skipped"] == 0
    assert (f"10 images in {wide} are enlarged more than 1.5x along one side (up to 2.0x) by "
            f"the stretch into the model input {SIZE}x{SIZE} (width x height)") in caplog.text
    caplog.clear()
    for index in range(10):  # 40x30: enlarged 1.07x in height, under the bar
        cv2.imwrite(str(wide / f"{index}.png"), rng.integers(0, 256, (30, 40, 3), np.uint8))
    assert edge(*args).returncode == 0
    assert "along one side" not in caplog.text


def test_the_synthetic_scene_calibrating_another_model_is_warned_about(tmp_path, edge,
                                                                      demo_model):
    """A user check: a corpus classifier calibrated on the demo's scene of shapes in silence
    (`warning: null`), while `--eval-data` refuses that scene for it."""
    fp32 = converted_classifier(tmp_path)
    result = edge("calibrate", fp32, "--images", "synthetic://shapes?seed=3", "-o",
                  tmp_path / "int8.onnx", "--max-images", "16", "--method", "minmax", "--json")
    assert result.returncode == 0, result.stderr
    warning = json.loads(result.stdout.strip().splitlines()[-1])["warning"]
    assert warning.startswith(
        "--images synthetic://shapes?seed=3: the synthetic scene (shapes: circle, square, "
        f"triangle, star, on a plain background) is the demo detector's; {fp32} (classify: a, "
        "b, c) calibrated on it gets ranges of those shapes, not of its own frames: calibrate "
        "on frames like those it will see"), warning
    # the demo detector itself is calibrated on its scene without a word
    result = edge("calibrate", demo_model, "--images", "synthetic://shapes?seed=3", "-o",
                  tmp_path / "demo.onnx", "--max-images", "16", "--method", "minmax", "--json")
    assert result.returncode == 0, result.stderr
    assert "synthetic scene" not in (json.loads(result.stdout.strip().splitlines()[-1])
                                     ["warning"] or "")


def test_a_sample_s_skipped_images_are_replaced_by_others_of_the_folder(tmp_path, edge,
                                                                      caplog):
    """A user check: `--max-images 10 --min-images 10` on a folder of 35 usable photos drew two
    thumbnails, calibrated on 8 or, with --min-images, was told to "add more"."""
    fp32, folder = converted_classifier(tmp_path), tmp_path / "photos"
    sizes = {**{f"photo{i:02d}.png": (64, 48) for i in range(12)},  # camera frames, and
             **{f"thumb{i}.png": (8, 8) for i in range(4)}}  # thumbnails among them
    folder.mkdir()
    rng = np.random.default_rng(4)
    for name, (height, width) in sizes.items():
        cv2.imwrite(str(folder / name), rng.integers(0, 256, (height, width, 3), np.uint8))
    for index in range(2):
        (folder / f"damaged{index}.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"cut" * 9)
    for seed in range(4):
        caplog.clear()
        result = edge("calibrate", fp32, "--images", folder, "-o", tmp_path / "int8.onnx",
                      "--max-images", "8", "--min-images", "8", "--seed", str(seed),
                      "--method", "minmax", "--json")
        assert result.returncode == 0, result.stderr
        summary = json.loads(result.stdout.strip().splitlines()[-1])
        assert summary["frames"] + summary["held_out"] == 8, (seed, summary)
        assert summary["sampled_from"] == 18
        # those drawn and left out are named, each once
        named = re.findall(r"(thumb\d|damaged\d)\.png", caplog.text)
        assert len(named) == len(set(named)) == summary["skipped"], (seed, caplog.text)
    (tmp_path / "int8.onnx").unlink()
    # a folder that has too few usable images all the same is told so
    result = edge("calibrate", fp32, "--images", folder, "-o", tmp_path / "int8.onnx",
                  "--max-images", "14", "--min-images", "14")
    assert_refused(result, "has 12 usable image(s) (6 file(s) skipped); at least 14 are needed")


def test_calibration_images_all_smaller_than_the_input_are_refused(tmp_path, edge, caplog):
    fp32 = converted_classifier(tmp_path)
    small = tmp_path / "small"
    small.mkdir()
    rng = np.random.default_rng(0)
    for index in range(10):
        cv2.imwrite(str(small / f"{index}.png"),
                    rng.integers(0, 256, (SIZE - 16, SIZE - 16 + index % 3, 3), np.uint8))
    result = edge("calibrate", fp32, "--images", small, "-o", tmp_path / "int8.onnx")
    assert_refused(result, "all 10 images", "are smaller than the model input 32x32",
                   "largest 18x16", "pass --allow-upscale")
    # a user check: a package that enlarges its document scans into a 1280 input had no way
    # to calibrate on those scans
    caplog.clear()
    allowed = edge("calibrate", fp32, "--images", small, "-o", tmp_path / "int8.onnx",
                   "--allow-upscale", "--json")
    assert allowed.returncode == 0, allowed.stderr
    assert json.loads(allowed.stdout.strip().splitlines()[-1])["skipped"] == 0
    assert ("10 of the 10 images in " in caplog.text and "so they are upscaled "
            "(--allow-upscale)" in caplog.text)
    (tmp_path / "int8.onnx").unlink()
    # fewer than --min-images: the sizes are still what to fix first
    result = edge("calibrate", fp32, "--images", small, "-o", tmp_path / "int8.onnx",
                  "--min-images", "20")
    assert_refused(result, "all 10 images", "are smaller than the model input 32x32")

    def calibrated() -> dict:
        result = edge("calibrate", fp32, "--images", small, "-o", tmp_path / "int8.onnx",
                      "--method", "minmax", "--json")
        assert result.returncode == 0, result.stderr
        return json.loads(result.stdout.strip().splitlines()[-1])

    # mixed with camera-sized ones, the small ones are left out, with a warning naming them
    for index in range(11):
        cv2.imwrite(str(small / f"big{index}.png"),
                    rng.integers(0, 256, (64, 40 + index, 3), np.uint8))
    summary = calibrated()
    assert "skipped 10 images" in caplog.text and ": 0.png, 1.png" in caplog.text
    assert "upscaled more than 1.5x" in caplog.text
    assert summary["skipped"] == 10 and summary["frames"] == 10  # 11 images, 1 held out
    kept = edge("calibrate", fp32, "--images", small, "-o", tmp_path / "all.onnx",
                "--method", "minmax", "--allow-upscale", "--json")
    assert json.loads(kept.stdout.strip().splitlines()[-1])["skipped"] == 0, kept.stderr
    # slightly smaller ones among them (crops of varying size, upscaled < 1.5x) are kept
    caplog.clear()
    for index in range(3):
        cv2.imwrite(str(small / f"crop{index}.png"),
                    rng.integers(0, 256, (SIZE - 4, SIZE - 2, 3), np.uint8))
    summary = calibrated()
    assert "skipped 10 images" in caplog.text and "crop" not in caplog.text
    assert summary["skipped"] == 10 and summary["frames"] == 13
    for index in range(3):
        (small / f"crop{index}.png").unlink()
    # most of them small (a model input larger than the usual frame): all are kept
    caplog.clear()
    for index in range(10):
        (small / f"big{index}.png").unlink()
    summary = calibrated()
    assert "10 of the 11 images" in caplog.text and "are upscaled" in caplog.text
    assert summary["skipped"] == 0 and summary["frames"] == 10  # 11 images, 1 held out
    # a --max-images sample of only small ones, from a folder with one that is not: judged as
    # the folder is (most small, all kept)
    caplog.clear()
    result = edge("calibrate", fp32, "--images", small, "-o", tmp_path / "int8.onnx",
                  "--max-images", "3", "--min-images", "2", "--method", "minmax")
    assert result.returncode == 0, result.stderr
    assert (f"3 of the 3 images picked from {small} (a --max-images sample of its 11) are "
            "smaller") in caplog.text
    # from a folder of only small ones: refused, said to be a sample
    (small / "big10.png").unlink()
    result = edge("calibrate", fp32, "--images", small, "-o", tmp_path / "int8.onnx",
                  "--max-images", "3", "--min-images", "2")
    assert_refused(result, f"all 3 images picked from {small} (a --max-images sample of its "
                   "10) are smaller", "if the source model takes other input sizes")


def _graph(nodes, initializers=()) -> onnx.ModelProto:
    from onnx import TensorProto, helper

    graph = helper.make_graph(
        nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 8, 8])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)], list(initializers))
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17),
                                                   helper.make_opsetid("com.microsoft", 1)])


def test_tensorrt_profile_names_ops_outside_the_onnx_domain():
    from onnx import helper

    from calibration.ranges import TensorRanges
    from converters.qdq_tensorrt import qdq_for_tensorrt

    model = _graph([helper.make_node("Gelu", ["x"], ["y"], name="fused_gelu",
                                     domain="com.microsoft")])
    with pytest.raises(ConversionError, match=r"fused_gelu \(com\.microsoft\.Gelu\)") as error:
        qdq_for_tensorrt(model, TensorRanges("minmax", 1, {}))
    assert "--profile cpu" in str(error.value)


def test_the_tensorrt_rule_check_on_our_own_output_does_not_send_the_user_back():
    from onnx import helper, numpy_helper

    from converters.qdq_rules import OUR_OUTPUT, check_tensorrt_qdq

    scale = numpy_helper.from_array(np.array(0.1, np.float32), "s")
    zero = numpy_helper.from_array(np.array(3, np.int8), "z")  # asymmetric: breaks a rule
    model = _graph([helper.make_node("QuantizeLinear", ["x", "s", "z"], ["q"], name="q"),
                    helper.make_node("DequantizeLinear", ["q", "s", "z"], ["y"], name="dq")],
                   [scale, zero])
    with pytest.raises(ConversionError) as ours:
        check_tensorrt_qdq(model, OUR_OUTPUT)
    assert "zero point must be int8 0" in str(ours.value)
    assert "--exclude" in str(ours.value) and "--profile tensorrt" not in str(ours.value)
    with pytest.raises(ConversionError, match="edge calibrate --profile tensorrt"):
        check_tensorrt_qdq(model, "model.onnx")


def test_convs_without_kernel_shape_get_the_cpu_profiles_int8_stem(tmp_path, edge):
    """`kernel_shape` is optional in ONNX; the stem rewrite reads it, so it is written from
    the weights (without it the stem stayed float: "not a plain convolution")."""
    from tests.converters.tiny_models import grey_classifier

    fp32 = tmp_path / "fp32.onnx"
    source = grey_classifier(tmp_path / "m.onnx", kernel_shape=False)
    assert edge("convert", source, "-o", fp32, "--labels", "a,b,c").returncode == 0
    result = edge("calibrate", fp32, "--images", "synthetic://shapes", "-o", tmp_path / "q.onnx",
                  "--profile", "cpu", "--max-images", "8", "--method", "minmax")
    assert result.returncode == 0, result.stderr
    graph = onnx.load(str(tmp_path / "q.onnx")).graph
    assert any(o.endswith("_pairs") for n in graph.node for o in n.output)
    assert "and the stem conv" not in result.stdout


def test_the_depthwise_convs_the_cpu_profile_keeps_float_are_counted_in_the_summary(
        tmp_path, edge):
    """A user check: a PicoDet's `cpu` model said "kept float: none, and the stem conv ..."
    while 37 depthwise convs stayed float by the profile's rule, said nowhere but in the docs."""
    from tests.converters.tiny_models import grey_classifier

    fp32 = tmp_path / "fp32.onnx"
    source = grey_classifier(tmp_path / "m.onnx", depthwise=True)
    assert edge("convert", source, "-o", fp32, "--labels", "a,b,c").returncode == 0
    depthwise = [n.name for n in onnx.load(str(fp32)).graph.node
                 if n.op_type == "Conv" and any(a.name == "group" and a.i == 8
                                                for a in n.attribute)]
    assert len(depthwise) == 1
    args = ["calibrate", fp32, "--images", "synthetic://shapes", "-o", tmp_path / "q.onnx",
            "--max-images", "8", "--method", "minmax"]
    cpu = edge(*args, "--profile", "cpu")
    assert cpu.returncode == 0, cpu.stderr
    assert ("1 depthwise or narrow conv (ONNX Runtime's int8 kernels are no faster for them)"
            in cpu.stdout)
    # a user check: "kept float: none, and the stem conv ..., and 13 depthwise ..." read as
    # a contradiction: the profile's own are said as such
    assert "kept float by the cpu profile's rules, " in cpu.stdout
    assert "kept float: none" not in cpu.stdout
    summary = json.loads(edge(*args, "--profile", "cpu", "--json").stdout.strip()
                         .splitlines()[-1])
    # the 1-channel stem is narrow too, but is the stem, named on its own where it stays float
    assert summary["kept_float_narrow_convs"] == depthwise and summary["kept_float"] == []
    quantized = onnx.load(str(tmp_path / "q.onnx")).graph
    weights = {i.name: i.data_type for i in quantized.initializer}
    stem = [summary["kept_float_stem"]] if summary["kept_float_stem"] else []
    assert [n.name for n in quantized.node if n.op_type == "Conv"
            and weights.get(n.input[1]) == onnx.TensorProto.FLOAT] == stem + depthwise
    tensorrt = json.loads(edge(*args, "--json").stdout.strip().splitlines()[-1])
    assert tensorrt["kept_float_narrow_convs"] == []  # TensorRT's int8 takes them


def test_a_float_stem_is_named_in_the_summary(tmp_path, edge):
    """A mean of 0.5 (127.5 pixel levels) has no int8 stem form: the log said the stem stays
    float while the summary said "kept float: none"."""
    from tests.converters.tiny_models import grey_classifier

    fp32 = tmp_path / "fp32.onnx"
    source = grey_classifier(tmp_path / "m.onnx")
    assert edge("convert", source, "-o", fp32, "--labels", "a,b,c", "--mean", "0.5",
                "--std", "0.5").returncode == 0
    args = ("calibrate", fp32, "--images", "synthetic://shapes", "-o", tmp_path / "q.onnx",
            "--profile", "cpu", "--max-images", "8", "--method", "minmax")
    text = edge(*args)
    assert text.returncode == 0, text.stderr
    stem = next(n.name for n in onnx.load(str(fp32)).graph.node if n.op_type == "Conv")
    assert (f"kept float by the cpu profile's rules, the stem conv {stem} (its int8 form did "
            "not apply: logged why)") in text.stdout
    summary = json.loads(edge(*args, "--json").stdout.strip().splitlines()[-1])
    assert summary["kept_float_stem"] == stem and summary["kept_float"] == []
    # a user check: the report listed the float stem among "the INT8 layers" (at 357 dB)
    for number, label in enumerate("abc"):
        (tmp_path / "val" / label).mkdir(parents=True)
        cv2.imwrite(str(tmp_path / "val" / label / "1.png"),
                    np.full((40, 40, 3), 80 * number, np.uint8))
    reported = edge(*args, "--report", tmp_path / "report", "--eval-data", tmp_path / "val")
    assert reported.returncode == 0, reported.stderr
    index = (tmp_path / "report" / "index.md").read_text()
    listed = index.split("INT8 layers with the lowest SQNR")[1].split("\n\n")[1].splitlines()
    assert listed and not any(f"`{stem}`" in line for line in listed), listed
    assert f"Kept in float: `{stem}`" in index


def test_a_comma_list_longer_than_a_file_name_is_read_as_labels():
    """COCO's 80 names on the command line: looking them up as a file raised ENAMETOOLONG."""
    from converters.labels import labels_from_option

    names = [f"class_number_{index}" for index in range(80)]
    assert labels_from_option(",".join(names)) == tuple(names)


# -- a BatchNorm behind the activation (Keras' Dense -> ReLU -> BN, as tf2onnx writes it) ---

def test_a_batchnorm_behind_a_relu_stays_float_in_the_cpu_profile(tmp_path, monkeypatch):
    """Quantizing the tensors before the BN, whose channels it then scales by 0.1 to 30, left
    the cpu profile's output far from FP32 whatever the ranges (a tf2onnx VGG16: 75% top-1):
    the BN, the ReLU and bias before it stay float and read the MatMul's output as computed."""
    import converters.qdq_cpu
    from calibration.fidelity import output_sqnr
    from calibration.readers import frames_from
    from converters.quantize import CalibrateOptions, calibrate, load_float_model

    fp32 = tmp_path / "fp32.onnx"
    convert(classifier(tmp_path / "m.onnx", batchnorm_after_relu=True, ending="softmax"),
            ConvertOptions(labels=LABELS)).write(fp32)
    model, spec = load_float_model(fp32)
    kept = converters.qdq_cpu.unfolded_batchnorms(model)
    assert kept == {"dense/BiasAdd", "dense/Relu", "batchnorm/mul_1", "batchnorm/add_1"}
    assert not kept & converters.qdq_cpu.cpu_quantized_nodes(model)
    frames = frames_from("synthetic://shapes?seed=1", max_images=32)
    scored = list(frames_from("synthetic://shapes?seed=2", max_images=16).inputs(spec))

    def int8_sqnr() -> float:
        result = calibrate(model, spec, frames, CalibrateOptions(
            profile="cpu", method="minmax", compare=False, progress=False))
        assert result.float_batchnorms == (sorted(kept) if kept_now else [])  # said in the summary
        int8 = result.model
        graph = int8.graph
        quantized = {n.input[0] for n in graph.node if n.op_type == "QuantizeLinear"}
        assert "bn" in quantized  # after the BN, where the last layer reads it
        assert not {"dense_biased", "dense_relu", "bn_scaled"} & quantized or not kept_now
        return output_sqnr(model, int8, scored)["scores"]

    kept_now = True
    with_batchnorm_float = int8_sqnr()
    kept_now = False
    import converters.quantize
    for module in (converters.qdq_cpu, converters.quantize):
        monkeypatch.setattr(module, "unfolded_batchnorms", lambda model: set())
    quantized_before_it = int8_sqnr()
    assert with_batchnorm_float > 45.0
    assert with_batchnorm_float > quantized_before_it + 10.0


def test_initializers_named_like_the_quantizers_own_do_not_clash(tmp_path):
    """A model's own `bn_scale` beside a tensor `bn`: ONNX Runtime's quantizer names the
    scale it adds for `bn` the same, and the INT8 model failed to run (a traceback)."""
    from calibration.fidelity import output_sqnr
    from calibration.readers import frames_from
    from converters.quantize import CalibrateOptions, calibrate, load_float_model

    source = onnx.load(str(classifier(tmp_path / "m.onnx", batchnorm_after_relu=True)))
    for initializer in source.graph.initializer:
        if initializer.name == "bn_gamma":
            initializer.name = "bn_scale"
    for node in source.graph.node:
        node.input[:] = ["bn_scale" if name == "bn_gamma" else name for name in node.input]
    onnx.save(source, tmp_path / "clash.onnx")
    fp32 = tmp_path / "fp32.onnx"
    convert(tmp_path / "clash.onnx", ConvertOptions(labels=LABELS)).write(fp32)
    model, spec = load_float_model(fp32)
    assert "bn_scale" in {i.name for i in model.graph.initializer}
    int8 = calibrate(model, spec, frames_from("synthetic://shapes?seed=1", max_images=16),
                     CalibrateOptions(profile="cpu", method="minmax", progress=False)).model
    scored = list(frames_from("synthetic://shapes?seed=2", max_images=8).inputs(spec))
    assert output_sqnr(model, int8, scored)["scores"] > 30.0


def test_too_few_held_out_frames_under_a_max_images_cap_say_to_raise_it(tmp_path, edge):
    """A folder of 70 images calibrated with --max-images 16 holds 2 frames back: the way to
    more is the cap, not more images."""
    fp32 = tmp_path / "fp32.onnx"
    assert edge("convert", classifier(tmp_path / "m.onnx"), "-o", fp32, "--labels",
                ",".join(LABELS), "--resize", "stretch").returncode == 0
    folder = tmp_path / "photos"
    folder.mkdir()
    rng = np.random.default_rng(8)
    for index in range(70):
        cv2.imwrite(str(folder / f"{index}.png"), rng.integers(0, 256, (SIZE, SIZE, 3), np.uint8))
    result = edge("calibrate", fp32, "--images", folder, "-o", tmp_path / "q.onnx",
                  "--max-images", "16", "--json")
    assert result.returncode == 0, result.stderr
    warning = json.loads(result.stdout.strip().splitlines()[-1])["warning"]
    assert "2 held-out frames are too few to measure top-1 agreement" in warning
    assert "raise --max-images to 64 or more (the folder has 70 images)" in warning

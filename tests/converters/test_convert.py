"""Conversions from each source kind; each result runs in the daemon's runner and agrees with
the source model on the same frames."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

from converters.convert import ConvertOptions, convert
from converters.demo_detector.model import ShapesDetector
from converters.fold import Normalisation
from converters.verify import parity_frames, preprocess_by_hand
from edge.postprocess import decoder_from_spec
from edge.preprocess import LetterboxGeometry
from edge.runners.onnxruntime import OrtRunner
from edge.synthetic import SHAPE_LABELS
from tests.converters.tiny_models import TinyClassifier, TinyDetector, export_onnx, seeded

DEMO_MODULE = "converters.demo_detector.model:ShapesDetector"


def agree_with_source(out: Path, source_output, normalisation=None) -> None:
    """Run the converted model in OrtRunner on camera frames and compare decoded results with
    the source model's output on the same frames preprocessed by hand."""
    normalisation = normalisation or Normalisation()
    with OrtRunner.from_path(out) as runner:
        spec = runner.spec
        frames = parity_frames(spec.input.height, spec.input.width)
        by_hand = preprocess_by_hand(frames, "BGR", normalisation, "NCHW")
        decode = decoder_from_spec(spec, spec.postprocess.model_copy(
            update={"score_threshold": 0.05}))
        geometry = LetterboxGeometry.fit(spec.input.width, spec.input.height,
                                         spec.input.width, spec.input.height)
        for frame, reference_input in zip(frames, by_hand, strict=True):
            runner.input_buffer(0)[0] = frame
            ours = decode(runner.infer(0)[0], geometry)
            theirs = decode(np.asarray(source_output(reference_input[None]), np.float32)[0],
                            geometry)
            # Detections whose scores tie within float error may come out in either order:
            # pair each with the nearest box of the other side, then compare values.
            assert len(ours.scores) == len(theirs.scores)
            if not len(ours.scores):  # the night scene: nothing to see, on either side
                continue
            distance = np.abs(ours.boxes[:, None, :] - theirs.boxes[None, :, :]).max(axis=2)
            pairs = distance.argmin(axis=1)
            assert sorted(pairs.tolist()) == list(range(len(pairs)))
            np.testing.assert_array_equal(ours.class_ids, theirs.class_ids[pairs])
            np.testing.assert_allclose(ours.boxes, theirs.boxes[pairs], atol=0.05)
            np.testing.assert_allclose(ours.scores, theirs.scores[pairs], atol=1e-4)


def torch_runner(network):
    def run(x):
        with torch.no_grad():
            return network.double()(torch.from_numpy(x)).numpy()
    return run


def test_demo_detector_from_its_checkpoint(tmp_path):
    checkpoint = Path("edge/models/shapes.pt")
    options = ConvertOptions(input_size=(320, 320), labels=SHAPE_LABELS, module=DEMO_MODULE)
    converted = convert(checkpoint, options)
    converted.write(tmp_path / "shapes.onnx")
    assert converted.spec.head == "anchor_free" and converted.spec.labels == SHAPE_LABELS
    assert converted.parity is not None and converted.parity.max_rel_error < 1e-5
    network = ShapesDetector()
    network.load_state_dict(torch.load(checkpoint, weights_only=True))
    agree_with_source(tmp_path / "shapes.onnx", torch_runner(network.eval()))


@pytest.mark.parametrize("softmax", [False, True], ids=["logits", "probabilities"])
def test_classifier_from_a_module_file_and_checkpoint(tmp_path, softmax):
    module_file = tmp_path / "netdef.py"
    module_file.write_text(
        "from tests.converters.tiny_models import TinyClassifier as Net\n")
    network = seeded(TinyClassifier(3, softmax=softmax))
    torch.save(network.state_dict(), tmp_path / "classifier.pt")
    options = ConvertOptions(input_size=(64, 64), labels=("cat", "dog", "bird"),
                             module=f"{module_file}:Net",
                             module_args={"num_classes": 3, "softmax": softmax},
                             normalisation=Normalisation("RGB", (0.485, 0.456, 0.406),
                                                         (0.229, 0.224, 0.225)))
    converted = convert(tmp_path / "classifier.pt", options)
    assert converted.spec.task == "classify" and converted.spec.name == "classifier"
    assert converted.spec.head == ("probabilities" if softmax else "logits")
    converted.write(tmp_path / "classifier.onnx")
    agree_with_source(tmp_path / "classifier.onnx", torch_runner(network),
                      options.normalisation)
    # timm writes `.pth.tar`: the name is the file's without both (a user check read `net.pth`)
    torch.save({"state_dict": network.state_dict()}, tmp_path / "net.pth.tar")
    assert convert(tmp_path / "net.pth.tar", options).spec.name == "net"


@pytest.mark.parametrize("layout", ["anchor_free", "anchor_free_transposed", "yolov5"])
def test_onnx_detectors_of_each_layout(tmp_path, layout):
    network = seeded(TinyDetector(2, layout))
    source = export_onnx(network, tmp_path / "det.onnx", 64, 96)
    converted = convert(source, ConvertOptions(labels=("person", "car"), stride=4))
    assert converted.spec.head == layout
    assert (converted.spec.input.height, converted.spec.input.width) == (64, 96)
    converted.write(tmp_path / "out.onnx")
    agree_with_source(tmp_path / "out.onnx", torch_runner(network))


def test_ultralytics_export_needs_no_labels_or_size(tmp_path):
    network = seeded(TinyDetector(3))
    source = export_onnx(network, tmp_path / "yolo.onnx", 64, 64, metadata={
        "names": "{0: 'person', 1: 'bicycle', 2: 'car'}", "imgsz": "[64, 64]", "stride": "4",
        "task": "detect", "author": "Ultralytics"})
    converted = convert(source, ConvertOptions())
    assert converted.source_kind == "ultralytics-onnx"
    assert converted.spec.labels == ("person", "bicycle", "car")
    assert converted.spec.input.colour_order == "BGR"
    assert not any("assumed the network takes" in note for note in converted.notes)  # known


def test_torchscript_source(tmp_path):
    network = seeded(TinyDetector(2))
    scripted = torch.jit.trace(network, torch.zeros(1, 3, 32, 32))
    scripted.save(str(tmp_path / "det.torchscript"))
    with warnings.catch_warnings(record=True) as shown:
        warnings.simplefilter("always")
        converted = convert(tmp_path / "det.torchscript",
                            ConvertOptions(input_size=(32, 32), labels=("a", "b"), stride=4))
    assert converted.source_kind == "torchscript" and converted.spec.head == "anchor_free"
    # PyTorch's two warnings on every TorchScript source (no signature, .grad) are muted
    assert not [w for w in shown if issubclass(w.category, UserWarning)
                and ("ScriptMethod" in str(w.message) or ".grad" in str(w.message))]


def test_dynamic_batch_and_uint8_input_feeding_a_cast(tmp_path):
    network = seeded(TinyDetector(2))
    torch.save(network.state_dict(), tmp_path / "det.pt")
    converted = convert(tmp_path / "det.pt", ConvertOptions(
        input_size=(32, 32), labels=("a", "b"), stride=4, batch=None,
        module="tests.converters.tiny_models:TinyDetector"))
    graph = converted.model.graph
    image = graph.input[0]
    assert image.type.tensor_type.elem_type == 2  # uint8
    assert not image.type.tensor_type.shape.dim[0].HasField("dim_value")  # dynamic batch
    consumers = [n for n in graph.node if image.name in n.input]
    assert [n.op_type for n in consumers] == ["Cast"]
    assert converted.spec.input.batch is None


def test_parity_failure_is_reported_with_the_numbers(tmp_path):
    from converters.errors import ParityError
    from converters.verify import check_parity

    network = seeded(TinyDetector(2))
    converted = convert(export_onnx(network, tmp_path / "d.onnx", 32, 32),
                        ConvertOptions(labels=("a", "b"), stride=4, verify=False))
    frames = parity_frames(32, 32)
    by_hand = preprocess_by_hand(frames, "BGR", Normalisation(), "NCHW")
    source = torch_runner(network)
    check_parity(converted.model, "output0", source, frames, by_hand)  # the real source agrees
    wrong = preprocess_by_hand(frames, "RGB", Normalisation(), "NCHW")  # swapped channels
    with pytest.raises(ParityError, match=r"max abs error .* max relative error"):
        check_parity(converted.model, "output0", source, frames, wrong)

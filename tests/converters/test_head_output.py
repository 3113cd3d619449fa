"""`edge convert --head-output NAME`: which output is the head when several could be (a
captcha net with one 10-class classifier per character, as vietcombank-captcha's)."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from converters.convert import ConvertOptions, convert
from converters.errors import ConversionError
from tests.converters.cli_results import assert_refused

DIGITS = tuple("0123456789")


def per_character_classifier(path, characters: int = 5):
    """x [N, 3, 16, 48] -> GlobalAveragePool -> Flatten -> one Gemm -> Softmax per character:
    digit_0 ... digit_{characters-1}, each [N, 10]; and a map [N, 1, 16, 48] last."""
    rng = np.random.default_rng(0)
    nodes = [helper.make_node("GlobalAveragePool", ["x"], ["pooled"]),
             helper.make_node("Flatten", ["pooled"], ["flat"]),
             helper.make_node("Sigmoid", ["x"], ["map_full"]),
             helper.make_node("ReduceMean", ["map_full"], ["map"], axes=[1], keepdims=1)]
    weights = []
    outputs = []
    for index in range(characters):
        name = f"digit_{index}"
        weights += [numpy_helper.from_array(rng.normal(0, 1, (3, 10)).astype(np.float32),
                                            f"w{index}"),
                    numpy_helper.from_array(rng.normal(0, 1, 10).astype(np.float32), f"b{index}")]
        nodes += [helper.make_node("Gemm", ["flat", f"w{index}", f"b{index}"], [f"l{index}"]),
                  helper.make_node("Softmax", [f"l{index}"], [name], axis=1)]
        outputs.append(helper.make_tensor_value_info(name, TensorProto.FLOAT, ["N", 10]))
    outputs.append(helper.make_tensor_value_info("map", TensorProto.FLOAT, ["N", 1, 16, 48]))
    graph = helper.make_graph(nodes, "captcha", [helper.make_tensor_value_info(
        "x", TensorProto.FLOAT, ["N", 3, 16, 48])], outputs, weights)
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)]), str(path))
    return path


def test_outputs_that_fit_the_head_alike_are_refused_without_a_choice(tmp_path):
    with pytest.raises(ConversionError) as refused:
        convert(per_character_classifier(tmp_path / "c.onnx"), ConvertOptions(labels=DIGITS))
    assert str(refused.value).startswith(
        "outputs digit_0, digit_1, digit_2, digit_3, digit_4 each fit the head alike (classify, "
        "probabilities, 10 classes), and edge reads one head a model; pass --head-output NAME "
        "to choose it")


def test_the_head_output_given_is_read_and_the_others_named(tmp_path):
    source = per_character_classifier(tmp_path / "c.onnx")
    converted = convert(source, ConvertOptions(labels=DIGITS, head_output="digit_2"))
    assert (converted.spec.output, converted.spec.head) == ("digit_2", "probabilities")
    note = next(n for n in converted.notes if n.startswith("took output digit_2"))
    assert ("left out of the converted model: digit_0 (10 a frame), digit_1 (10 a frame), "
            "digit_3") in note
    assert note.endswith("pass --head-output NAME (and as many --labels as it has classes)")
    # the other characters' heads do not run on the device: one Gemm is left
    assert [o.name for o in converted.model.graph.output] == ["digit_2"]
    assert [n.op_type for n in converted.model.graph.node].count("Gemm") == 1
    # the converted model's digit_2 is the source's, frame for frame
    frame = np.random.default_rng(1).integers(0, 256, (1, 16, 48, 3), np.uint8)
    import onnxruntime as ort

    ours = ort.InferenceSession(converted.model.SerializeToString(),
                                providers=["CPUExecutionProvider"])
    theirs = ort.InferenceSession(str(source), providers=["CPUExecutionProvider"])
    x = frame[..., ::-1].transpose(0, 3, 1, 2).astype(np.float32) / 255  # BGR frame, RGB net
    np.testing.assert_allclose(
        ours.run(["digit_2"], {converted.spec.input.name: frame})[0],
        theirs.run(["digit_2"], {"x": x})[0], atol=1e-5)


@pytest.mark.parametrize(("name", "message"), [
    ("digit_9", "--head-output digit_9: the model has no output of that name; its outputs: "
                "digit_0 (10 a frame), digit_1 (10 a frame)"),
    ("map", "the output [1, 1, 16, 48] is a map ([N, C, H, W]: segmentation"),
])
def test_a_head_output_that_is_missing_or_no_head_is_refused(tmp_path, edge, name, message):
    out = tmp_path / "x.onnx"
    result = edge("convert", per_character_classifier(tmp_path / "c.onnx"), "-o", out,
                  "--labels", ",".join(DIGITS), "--input-size", "16x48", "--head-output", name)
    assert_refused(result, message)
    assert not out.exists()

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from converters.model_report import format_report, inspect_model, quantization_summary
from tests.converters.tiny_models import TinyClassifier, export_onnx, grey_classifier


def qdq_model(zero_point_dtype: type, per_channel: bool) -> onnx.ModelProto:
    weight = numpy_helper.from_array(np.ones((4, 3, 1, 1), np.int8), "w_q")
    scales = np.full(4 if per_channel else 1, 0.1, np.float32).reshape(-1 if per_channel else ())
    inits = [
        weight,
        numpy_helper.from_array(scales, "w_scale"),
        numpy_helper.from_array(np.zeros_like(scales, np.int8), "w_zero"),
        numpy_helper.from_array(np.array(0.02, np.float32), "x_scale"),
        numpy_helper.from_array(np.array(0, zero_point_dtype), "x_zero"),
    ]
    nodes = [
        helper.make_node("QuantizeLinear", ["x", "x_scale", "x_zero"], ["xq"]),
        helper.make_node("DequantizeLinear", ["xq", "x_scale", "x_zero"], ["xd"]),
        helper.make_node("DequantizeLinear", ["w_q", "w_scale", "w_zero"], ["wd"], axis=0),
        helper.make_node("Conv", ["xd", "wd"], ["y"]),
    ]
    graph = helper.make_graph(
        nodes, "qdq", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 8, 8])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4, 8, 8])], initializer=inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def test_quantization_is_recognised():
    trt_style = quantization_summary(qdq_model(np.int8, per_channel=True))
    assert trt_style["quantized"] and trt_style["format"] == "qdq"
    assert trt_style["activation_types"] == ["int8"] and trt_style["symmetric"]
    assert trt_style["per_channel_weights"] == 1
    cpu_style = quantization_summary(qdq_model(np.uint8, per_channel=False))
    assert cpu_style["activation_types"] == ["uint8"] and cpu_style["per_channel_weights"] == 0


def test_inspect_names_the_layers_left_float(tmp_path):
    """An INT8 model's report names the weighted layers that still read float weights (the
    text report the first few), not only how many weights are quantized."""
    model = qdq_model(np.int8, per_channel=True)
    assert quantization_summary(model)["float_layers"] == []
    model.graph.initializer.append(numpy_helper.from_array(np.ones((2, 4, 1, 1), np.float32),
                                                           "head_w"))
    model.graph.node.append(helper.make_node("Conv", ["y", "head_w"], ["z"], name="head"))
    model.graph.output[0].CopyFrom(helper.make_tensor_value_info("z", TensorProto.FLOAT, None))
    onnx.save(model, tmp_path / "mixed.onnx")
    report = inspect_model(tmp_path / "mixed.onnx")
    assert report["quantization"]["float_layers"] == ["head"]
    assert report["quantization"]["quantized_weights"] == 1
    assert "\nfloat layers (1): head" in format_report(report)
    onnx.save(qdq_model(np.int8, per_channel=True), tmp_path / "all.onnx")
    assert "float layers: none" in format_report(inspect_model(tmp_path / "all.onnx"))


def test_inspect_the_bundled_model(demo_model):
    report = inspect_model(demo_model)
    assert report["spec"]["labels"] == ["circle", "square", "triangle", "star"]
    assert report["inputs"] == [{"name": "images", "dtype": "uint8", "shape": [1, 320, 320, 3]}]
    assert report["outputs"][0]["shape"] == [1, 8, 2100]
    assert report["ops"]["Conv"] > 10 and report["quantization"] == {"quantized": False,
                                                                     "format": "none"}


def test_inspect_counts_the_layers_inside_if_branches(tmp_path):
    """silero-vad's export holds its layers in If branches: 1 parameter and 5 ops, it read."""

    def branch(name: str, channels: int) -> onnx.GraphProto:
        weight = numpy_helper.from_array(np.ones((channels, 3, 3, 3), np.float32), f"{name}_w")
        nested = helper.make_graph(
            [helper.make_node("Relu", ["x"], [f"{name}_inner"])], f"{name}_nested", [],
            [helper.make_tensor_value_info(f"{name}_inner", TensorProto.FLOAT, None)])
        nodes = [helper.make_node("Conv", ["x", f"{name}_w"], [f"{name}_c"]),
                 helper.make_node("Constant", [], [f"{name}_k"], value=numpy_helper.from_array(
                     np.ones(5, np.float32))),
                 helper.make_node("If", ["flag"], [f"{name}_y"], then_branch=nested,
                                  else_branch=nested)]
        return helper.make_graph(nodes, name, [], [helper.make_tensor_value_info(
            f"{name}_c", TensorProto.FLOAT, None)], initializer=[weight])

    graph = helper.make_graph(
        [helper.make_node("If", ["flag"], ["y"], then_branch=branch("a", 4),
                          else_branch=branch("b", 2))], "vad",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 8, 8]),
         helper.make_tensor_value_info("flag", TensorProto.BOOL, [])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
        initializer=[numpy_helper.from_array(np.ones(1, np.float32), "one")])
    path = tmp_path / "vad.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), path)
    report = inspect_model(path)
    assert report["parameters"] == 1 + 4 * 27 + 5 + 2 * 27 + 5
    assert report["ops"] == {"If": 3, "Relu": 4, "Conv": 2, "Constant": 2}
    assert report["subgraphs"] == 6
    assert "ops (with the nodes of 6 subgraphs): Relu 4, If 3, Conv 2, Constant 2" in \
        format_report(report)


def test_inspect_cli_json_and_errors(demo_model, tmp_path):
    ok = subprocess.run([sys.executable, "-m", "edge", "inspect", str(demo_model), "--json"],
                        capture_output=True, text=True, timeout=60)
    assert ok.returncode == 0
    assert json.loads(ok.stdout.strip().splitlines()[-1])["spec"]["task"] == "detect"
    text = subprocess.run([sys.executable, "-m", "edge", "inspect", str(demo_model)],
                          capture_output=True, text=True, timeout=60)
    assert "; opsets ai.onnx 17; made by pytorch " in text.stdout  # not a Python dict
    assert ("postprocess: score >= 0.25, NMS IoU 0.45, at most 100 detections a frame\n"
            in text.stdout)
    (tmp_path / "junk.onnx").write_text("junk")
    bad = subprocess.run([sys.executable, "-m", "edge", "inspect", str(tmp_path / "junk.onnx")],
                         capture_output=True, text=True, timeout=60)
    assert bad.returncode == 2 and "is a text file (it begins 'junk'), not a model" in bad.stderr


def test_the_text_report_shortens_exporters_shape_formulas(tmp_path):
    """A YOLOv8 exported with dynamic sizes names its anchor count with a 400-character
    formula: the text shows `?`, --json the formula."""
    from converters.model_report import format_report

    formula = "(floor(floor(height/2 - 1/2)/2) + 1)*(floor(floor(width/2 - 1/2)/2) + 1)"
    graph = helper.make_graph(
        [helper.make_node("Identity", ["x"], ["y"])], "dims",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 3, "height", "width"])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 22, formula])])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]),
              tmp_path / "m.onnx")
    report = inspect_model(tmp_path / "m.onnx")
    assert report["outputs"][0]["shape"] == ["batch", 22, formula]
    text = format_report(report)
    assert "output y: float32 ['batch', 22, '?']" in text
    assert "input  x: float32 ['batch', 3, 'height', 'width']" in text


def test_inspect_shows_the_preprocessing_convert_folded_in(tmp_path, edge):
    """What mean, std and channel order the network was given, read back from the model,
    through calibration too; a grey network's luma."""
    colour = export_onnx(TinyClassifier(), tmp_path / "colour.onnx", 32, 32)
    assert edge("convert", colour, "-o", tmp_path / "c.onnx", "--labels", "a,b,c", "--mean",
                "0.485,0.456,0.406", "--std", "0.229,0.224,0.225").returncode == 0
    result = edge("inspect", tmp_path / "c.onnx")
    assert ("preprocessing folded in: (pixel / 255 - mean) / std, mean 0.485, 0.456, 0.406, "
            "std 0.229, 0.224, 0.225, network order RGB (the camera's BGR swapped)\n"
            in result.stdout)
    assert edge("convert", colour, "-o", tmp_path / "b.onnx", "--labels", "a,b,c",
                "--network-order", "BGR").returncode == 0
    assert "preprocessing folded in: pixel / 255, network order BGR\n" in edge(
        "inspect", tmp_path / "b.onnx").stdout

    assert edge("convert", grey_classifier(tmp_path / "grey.onnx"), "-o", tmp_path / "g.onnx",
                "--labels", "a,b,c", "--mean", "0.5", "--std", "0.25").returncode == 0
    assert edge("calibrate", tmp_path / "g.onnx", "--images", "synthetic://shapes", "-o",
                tmp_path / "g8.onnx", "--max-images", "8", "--method", "minmax").returncode == 0
    result = edge("inspect", tmp_path / "g8.onnx", "--json")
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report["preprocessing"] == {"network_order": None, "grey": True, "mean": [0.5],
                                       "std": [0.25]}
    assert "edge.preprocessing" not in report["other_metadata"]
    assert ("preprocessing folded in: grey network: pixel = 0.299 R + 0.587 G + 0.114 B "
            "(BT.601 luma of the camera's colour), then (pixel / 255 - mean) / std, mean 0.5, "
            "std 0.25\n" in edge("inspect", tmp_path / "g8.onnx").stdout)


def test_inspect_names_an_ultralytics_export_that_convert_reads_as_it_is(tmp_path):
    """A raw export said only "spec: none"; its metadata already holds what convert needs."""
    from converters.model_report import format_report

    metadata = {"author": "Ultralytics", "version": "8.4.8", "task": "detect",
                "names": "{0: 'text', 1: 'title', 10: 'table', 2: 'list'}", "imgsz": "[32, 32]"}
    export = export_onnx(TinyClassifier(), tmp_path / "yolo.onnx", 32, 32, metadata)
    report = inspect_model(export)
    assert report["ultralytics"] == {"version": "8.4.8", "task": "detect",
                                     "image_size": [32, 32], "labels": 4, "end_to_end": False}
    assert ("source: an Ultralytics 8.4.8 detect export (input 32x32, 4 class names): "
            "`edge convert` reads its metadata, no options needed") in format_report(report)
    broken = export_onnx(TinyClassifier(), tmp_path / "broken.onnx", 32, 32,
                         {**metadata, "names": "{0: 'text'"})
    assert ("source: an Ultralytics 8.4.8 export whose metadata is unreadable (Ultralytics "
            "metadata 'names' is unreadable") in format_report(inspect_model(broken))
    plain = export_onnx(TinyClassifier(), tmp_path / "plain.onnx", 32, 32)
    assert inspect_model(plain)["ultralytics"] is None
    assert "source:" not in format_report(inspect_model(plain))


def test_parameters_count_weights_held_in_constant_nodes(tmp_path):
    """paddle2onnx keeps every weight in a Constant node: `parameters: 0` before."""
    from tests.converters.exporter_graphs import classifier

    in_nodes = inspect_model(classifier(tmp_path / "constants.onnx", constants=True))
    as_initializers = inspect_model(classifier(tmp_path / "plain.onnx"))
    assert in_nodes["parameters"] == as_initializers["parameters"] > 0


def test_inspect_outlines_what_convert_needs_for_a_plain_model(tmp_path, edge):
    """A user check: `edge inspect` on PaddleOCR's text-direction classifier said only
    "spec: none" beside its raw shapes, though `edge convert` would need --input-size (its
    height and width dynamic) and two labels."""
    plain = export_onnx(TinyClassifier(3), tmp_path / "plain.onnx", 32, 48)
    report = inspect_model(plain)
    assert report["to_convert"] == ("NCHW input, its size 32x48 (HxW) fixed; the output [1, 3] "
                                    "reads as a classifier of 3 classes: pass --labels with 3 "
                                    "names")
    model = onnx.load(str(plain))
    for axis, name in ((0, "batch"), (2, "height"), (3, "width")):
        model.graph.input[0].type.tensor_type.shape.dim[axis].dim_param = name
    model.graph.output[0].type.tensor_type.shape.dim[0].dim_param = "batch"
    onnx.save(model, tmp_path / "dynamic.onnx")
    text = edge("inspect", tmp_path / "dynamic.onnx").stdout
    assert ("to convert: NCHW input, its height and width dynamic: pass --input-size HxW, the "
            "size the model's own code feeds it; the output ['?', 3] reads as a classifier of 3 "
            "classes: pass --labels with 3 names") in text
    model.graph.output.append(helper.make_tensor_value_info("extra", TensorProto.FLOAT, [1, 3]))
    model.graph.node.append(helper.make_node("Identity", [model.graph.output[0].name],
                                             ["extra"]))
    assert inspect_model_of(model, tmp_path)["to_convert"].endswith(
        "2 outputs: `edge convert` runs the model once to tell which is its head")
    # PaddlePaddle's exports name their classes in metadata, which convert reads (a user
    # check: inspect asked for --labels that convert did not need)
    paddle = onnx.load(str(plain))
    paddle.metadata_props.add(key="character", value="0\n90\n180")
    assert inspect_model_of(paddle, tmp_path)["to_convert"].endswith(
        "reads as a classifier of 3 classes: its metadata names them (0, 90, 180), as convert "
        "reads them")
    converted = tmp_path / "converted.onnx"
    assert edge("convert", plain, "-o", converted, "--labels", "a,b,c").returncode == 0
    assert inspect_model(converted)["to_convert"] is None
    assert "to convert:" not in edge("inspect", converted).stdout


def inspect_model_of(model: onnx.ModelProto, folder) -> dict:
    onnx.save(model, folder / "model.onnx")
    return inspect_model(folder / "model.onnx")

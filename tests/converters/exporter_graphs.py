"""Tiny ONNX graphs written the way real third-party exporters write them: batch as -1, 0 or a
name; weights in Constant nodes (paddle2onnx); opset 9-12 (tf2onnx, keras2onnx); a Softmax or
Sigmoid behind an Identity; several outputs (MTCNN); a second input; IR version 3 with every
weight among the graph inputs and scores on a 1x1 map (onnx-caffe2); one bias or weight read
by several convs."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

SIZE = 32


def _weights(seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {"conv_w": rng.normal(0, 0.5, (8, 3, 3, 3)).astype(np.float32),
            "conv_b": rng.normal(0, 0.1, (8,)).astype(np.float32),
            "fc_w": rng.normal(0, 0.5, (8, 3)).astype(np.float32),
            "fc_b": rng.normal(0, 0.1, (3,)).astype(np.float32),
            "box_w": rng.normal(0, 0.5, (8, 4)).astype(np.float32)}


def _dense_batchnorm(features: str, nodes: list, weights: dict[str, np.ndarray]) -> str:
    """Keras' Dense(16) -> ReLU -> BatchNormalization, as tf2onnx writes it (MatMul, Add, Relu,
    then a Mul and an Add by per-channel constants), reading `features` [N, 8]. The BN scales
    span 0.1 to 30 (as a tf2onnx VGG16's do), the Dense's channels the inverse (as training
    makes them: the BN normalises them), so the ReLU's output holds channels of very different
    scales."""
    rng = np.random.default_rng(3)
    scale = (10.0 ** np.linspace(-1, 1.5, 16)).astype(np.float32)
    rng.shuffle(scale)
    weights["dense_w"] = (rng.normal(0, 0.5, (8, 16)) / scale).astype(np.float32)
    weights["dense_b"] = (rng.normal(0, 0.05, (16,)) / scale).astype(np.float32)
    weights["bn_gamma"] = scale
    weights["bn_beta"] = rng.normal(0, 1.0, (16,)).astype(np.float32)
    weights["fc_w"] = rng.normal(0, 0.5, (16, 3)).astype(np.float32)
    nodes += [
        helper.make_node("MatMul", [features, "dense_w"], ["dense"], name="dense/MatMul"),
        helper.make_node("Add", ["dense", "dense_b"], ["dense_biased"], name="dense/BiasAdd"),
        helper.make_node("Relu", ["dense_biased"], ["dense_relu"], name="dense/Relu"),
        helper.make_node("Mul", ["dense_relu", "bn_gamma"], ["bn_scaled"],
                         name="batchnorm/mul_1"),
        helper.make_node("Add", ["bn_scaled", "bn_beta"], ["bn"], name="batchnorm/add_1")]
    return "bn"


def classifier(path: Path, *, batch: int | str = "N", opset: int = 17, constants: bool = False,
               ending: str = "none", extra_output: bool = False, extra_input: bool = False,
               dynamic_weight: bool = False, batchnorm_after_relu: bool = False) -> Path:
    """x [batch, 3, 32, 32] -> Conv -> Relu -> GlobalAveragePool -> Flatten -> MatMul/Add ->
    `ending` ("none", "softmax", "sigmoid") -> Identity -> scores [batch, 3]; `extra_output` adds
    a box output [batch, 4] first (as MTCNN's R-Net has); `dynamic_weight` makes a second conv
    take its weight from the activations; `batchnorm_after_relu` puts Keras' Dense -> ReLU ->
    BatchNorm before the last MatMul (`_dense_batchnorm`)."""
    weights = _weights()
    bn_nodes: list = []
    features_for_fc = (_dense_batchnorm("flat", bn_nodes, weights) if batchnorm_after_relu
                       else "flat")
    nodes, initializers = [], []
    for name, value in weights.items():
        if constants:
            nodes.append(helper.make_node("Constant", [], [name], name=f"const_{name}",
                                          value=numpy_helper.from_array(value, name)))
        else:
            initializers.append(numpy_helper.from_array(value, name))
    nodes += [
        helper.make_node("Conv", ["x", "conv_w", "conv_b"], ["conv"], name="conv", pads=[1] * 4),
        helper.make_node("Relu", ["conv"], ["relu"], name="relu")]
    features = "relu"
    if dynamic_weight:
        initializers.append(numpy_helper.from_array(np.array([8, 8, 1, 1], np.int64), "shape"))
        nodes += [
            helper.make_node("GlobalAveragePool", ["relu"], ["squeezed"], name="squeeze_pool"),
            helper.make_node("Tile", ["squeezed", "tiles"], ["tiled"], name="tile"),
            helper.make_node("Reshape", ["tiled", "shape"], ["dyn_w"], name="to_weight"),
            helper.make_node("Conv", ["relu", "dyn_w"], ["dyn"], name="dynamic_conv")]
        initializers.append(numpy_helper.from_array(np.array([1, 8, 1, 1], np.int64), "tiles"))
        features = "dyn"
    nodes += [
        helper.make_node("GlobalAveragePool", [features], ["pooled"], name="pool"),
        helper.make_node("Flatten", ["pooled"], ["flat"], name="flatten"),
        *bn_nodes,
        helper.make_node("MatMul", [features_for_fc, "fc_w"], ["fc"], name="fc"),
        helper.make_node("Add", ["fc", "fc_b"], ["logits"], name="fc_bias")]
    last = "logits"
    if ending != "none":
        op = {"softmax": "Softmax", "sigmoid": "Sigmoid"}[ending]
        nodes.append(helper.make_node(op, [last], ["scored"], name=ending,
                                      **({"axis": 1} if op == "Softmax" else {})))
        last = "scored"
    nodes.append(helper.make_node("Identity", [last], ["scores"], name="identity"))
    outputs = [helper.make_tensor_value_info("scores", TensorProto.FLOAT, [batch, 3])]
    if extra_output:
        nodes.append(helper.make_node("MatMul", ["flat", "box_w"], ["boxes"], name="box_fc"))
        outputs.insert(0, helper.make_tensor_value_info("boxes", TensorProto.FLOAT, [batch, 4]))
    inputs = [helper.make_tensor_value_info("x", TensorProto.FLOAT, [batch, 3, SIZE, SIZE])]
    if extra_input:
        inputs.append(helper.make_tensor_value_info("threshold", TensorProto.FLOAT, [1]))
        nodes.append(helper.make_node("Mul", ["scores", "threshold"], ["gated"], name="gate"))
        outputs.append(helper.make_tensor_value_info("gated", TensorProto.FLOAT, [batch, 3]))
    graph = helper.make_graph(nodes, "exported", inputs, outputs, initializers)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)],
                              producer_name="exporter-stand-in")
    model.ir_version = 7 if opset < 15 else 8
    onnx.save(model, str(path))
    return path


def shared_parameters_classifier(path: Path) -> Path:
    """x [N, 3, 32, 32] -> three Conv -> Relu (the first with stride 2) -> GlobalAveragePool ->
    Flatten -> MatMul -> Add -> scores [N, 3], the three convs reading one bias and the last
    two one weight, as an exporter that writes equal constants once leaves them."""
    rng = np.random.default_rng(11)
    weights = {"conv_w": rng.normal(0, 0.5, (8, 3, 3, 3)), "shared_b": rng.normal(0, 0.1, (8,)),
               "shared_w": rng.normal(0, 0.2, (8, 8, 3, 3)), "fc_w": rng.normal(0, 0.5, (8, 3)),
               "fc_b": rng.normal(0, 0.1, (3,))}
    nodes = [helper.make_node("Conv", ["x", "conv_w", "shared_b"], ["conv1"], name="conv1",
                              pads=[1] * 4, strides=[2, 2]),
             helper.make_node("Relu", ["conv1"], ["relu1"], name="relu1")]
    for index in (2, 3):
        nodes += [helper.make_node("Conv", [f"relu{index - 1}", "shared_w", "shared_b"],
                                   [f"conv{index}"], name=f"conv{index}", pads=[1] * 4),
                  helper.make_node("Relu", [f"conv{index}"], [f"relu{index}"],
                                   name=f"relu{index}")]
    nodes += [helper.make_node("GlobalAveragePool", ["relu3"], ["pooled"], name="pool"),
              helper.make_node("Flatten", ["pooled"], ["flat"], name="flatten"),
              helper.make_node("MatMul", ["flat", "fc_w"], ["fc"], name="fc"),
              helper.make_node("Add", ["fc", "fc_b"], ["scores"], name="fc_bias")]
    graph = helper.make_graph(
        nodes, "exported",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3, SIZE, SIZE])],
        [helper.make_tensor_value_info("scores", TensorProto.FLOAT, ["N", 3])],
        [numpy_helper.from_array(value.astype(np.float32), name)
         for name, value in weights.items()])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)],
                              producer_name="exporter-stand-in")
    model.ir_version = 8
    onnx.save(model, str(path))
    return path


def caffe2_classifier(path: Path) -> Path:
    """x [1, 3, 32, 32] -> Conv -> Relu -> 1x1 Conv to 3 channels -> GlobalAveragePool ->
    Softmax -> scores [1, 3, 1, 1], as onnx-caffe2 wrote the model zoo's SqueezeNet: IR
    version 3, opset 9, every weight listed among the graph inputs too, no Flatten."""
    rng = np.random.default_rng(5)
    weights = {"conv_w": rng.normal(0, 0.5, (8, 3, 3, 3)).astype(np.float32),
               "conv_b": rng.normal(0, 0.1, (8,)).astype(np.float32),
               "score_w": rng.normal(0, 0.5, (3, 8, 1, 1)).astype(np.float32)}
    nodes = [
        helper.make_node("Conv", ["data_0", "conv_w", "conv_b"], ["conv"], name="conv1",
                         pads=[1] * 4),
        helper.make_node("Relu", ["conv"], ["relu"], name="relu1"),
        helper.make_node("Conv", ["relu", "score_w"], ["scores_map"], name="conv10"),
        helper.make_node("GlobalAveragePool", ["scores_map"], ["pooled"], name="pool10"),
        helper.make_node("Softmax", ["pooled"], ["softmaxout_1"], name="softmax", axis=1)]
    inputs = [helper.make_tensor_value_info("data_0", TensorProto.FLOAT, [1, 3, SIZE, SIZE]),
              *(helper.make_tensor_value_info(name, TensorProto.FLOAT, list(value.shape))
                for name, value in weights.items())]
    outputs = [helper.make_tensor_value_info("softmaxout_1", TensorProto.FLOAT, [1, 3, 1, 1])]
    graph = helper.make_graph(nodes, "squeezenet", inputs, outputs,
                              [numpy_helper.from_array(v, n) for n, v in weights.items()])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 9)],
                              producer_name="onnx-caffe2")
    model.ir_version = 3
    onnx.save(model, str(path))
    return path

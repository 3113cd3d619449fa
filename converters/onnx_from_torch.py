"""Export a PyTorch module (eager or TorchScript) to a plain ONNX graph.

The exported graph takes the network's own float NCHW input; `converters.fold` then puts the
camera preprocessing in front of it, the same way for every source format.
"""

from __future__ import annotations

import contextlib
import tempfile
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import onnx

from converters.errors import ConversionError

if TYPE_CHECKING:
    from torch import nn

#: Opset 17 is the newest that TensorRT 8.5 (JetPack 5) parses; TensorRT 10 reads it too.
DEFAULT_OPSET = 17
INPUT_NAME = "images"
OUTPUT_NAME = "output0"
#: What PyTorch warns about on every TorchScript source, which says nothing about the model:
#: a ScriptMethod has no Python signature for the exporter to read, and `Module._apply` (the
#: parity check's float64 copy) reads `.grad` of every parameter.
_TORCHSCRIPT_NOISE = (r"no signature found for <torch\.ScriptMethod",
                      r"The \.grad attribute of a Tensor that is not a leaf Tensor")


@contextlib.contextmanager
def torchscript_noise_muted() -> Iterator[None]:
    """PyTorch's warnings that every TorchScript source gives muted; all others shown."""
    with warnings.catch_warnings():
        for noise in _TORCHSCRIPT_NOISE:
            warnings.filterwarnings("ignore", message=noise, category=UserWarning)
        yield


def onnx_from_torch(network: nn.Module, height: int, width: int, *, batch: int | None = 1,
                    opset: int = DEFAULT_OPSET) -> onnx.ModelProto:
    """Trace `network` on a float [batch, 3, height, width] input; `batch` None: dynamic.

    The TorchScript-based exporter is used: for CNNs it gives a flat graph of plain ONNX ops,
    which TensorRT's parser and ONNX Runtime's fusions handle best."""
    import torch  # noqa: PLC0415 - only PyTorch sources need it: `edge convert model.onnx` runs without torch

    network = network.eval()
    example = torch.zeros((batch or 1, 3, height, width), dtype=torch.float32)
    dynamic_axes = None if batch else {INPUT_NAME: {0: "batch"}, OUTPUT_NAME: {0: "batch"}}
    with tempfile.TemporaryDirectory() as scratch, torch.no_grad(), torchscript_noise_muted():
        path = Path(scratch) / "model.onnx"
        try:
            torch.onnx.export(network, (example,), str(path), dynamo=False, opset_version=opset,
                              input_names=[INPUT_NAME], output_names=[OUTPUT_NAME],
                              dynamic_axes=dynamic_axes, do_constant_folding=True)
        except (RuntimeError, TypeError, ValueError) as exc:
            message = str(exc).strip().splitlines()[0] if str(exc).strip() else repr(exc)
            raise ConversionError(
                f"torch.onnx.export failed for a [{batch or 1}, 3, {height}, {width}] input: "
                f"{message}; check --input-size and that the model runs on such an input") from exc
        return onnx.load(str(path))

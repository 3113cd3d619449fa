"""Export a PyTorch module to ONNX with the camera preprocessing folded in front of it.

The exported graph takes the raw camera frame, uint8 [N, H, W, 3] in the camera's colour order,
and runs Cast -> Transpose -> (channel swap) -> Sub/Mul -> network. The Cast is the first consumer
of the uint8 input, which TensorRT (>= 8.5) requires for a uint8 network input.
"""

from __future__ import annotations

import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import onnx
import torch
from torch import nn

#: Opset 17 is the newest that TensorRT 8.5 (JetPack 5) parses; TensorRT 10 reads it too.
DEFAULT_OPSET = 17


@dataclass(frozen=True)
class Normalisation:
    """What the network was trained on: `(pixel / 255 - mean) / std`, channels in `colour_order`."""

    colour_order: str = "RGB"
    mean: Sequence[float] = (0.0, 0.0, 0.0)
    std: Sequence[float] = (1.0, 1.0, 1.0)


class FoldedPreprocess(nn.Module):
    """uint8 NHWC frames in `camera_order` -> the normalised float NCHW tensor `network` expects."""

    offset: torch.Tensor
    scale: torch.Tensor

    def __init__(self, network: nn.Module, camera_order: str, normalisation: Normalisation) -> None:
        super().__init__()
        self.network = network
        self.swap = camera_order != normalisation.colour_order
        scale = torch.tensor([1.0 / (255.0 * s) for s in normalisation.std]).view(1, 3, 1, 1)
        offset = torch.tensor([m * 255.0 for m in normalisation.mean]).view(1, 3, 1, 1)
        self.register_buffer("offset", offset)
        self.register_buffer("scale", scale)

    def forward(self, frames: torch.Tensor) -> torch.Tensor:
        x = frames.to(torch.float32).permute(0, 3, 1, 2)
        if self.swap:
            x = x.flip(1)
        result: torch.Tensor = self.network((x - self.offset) * self.scale)
        return result


def onnx_from_torch(network: nn.Module, input_width: int, input_height: int, *,
                    camera_order: str = "BGR", normalisation: Normalisation = Normalisation(),
                    batch: int | None = 1, input_name: str = "images",
                    output_name: str = "output0", opset: int = DEFAULT_OPSET) -> onnx.ModelProto:
    """Trace `network` behind the folded preprocessing and return the ONNX model (not yet
    carrying a spec; see `converters.metadata.onnx_with_spec`)."""
    wrapped = FoldedPreprocess(network, camera_order, normalisation).eval()
    example = torch.zeros((batch or 1, input_height, input_width, 3), dtype=torch.uint8)
    dynamic_axes = None if batch else {input_name: {0: "batch"}, output_name: {0: "batch"}}
    with tempfile.TemporaryDirectory() as scratch, torch.no_grad():
        path = Path(scratch) / "model.onnx"
        torch.onnx.export(wrapped, (example,), str(path), dynamo=False, opset_version=opset,
                          input_names=[input_name], output_names=[output_name],
                          dynamic_axes=dynamic_axes, do_constant_folding=True)
        model = onnx.load(str(path))
    onnx.checker.check_model(model, full_check=True)
    return model

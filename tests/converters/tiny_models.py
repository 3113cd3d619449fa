"""Small torch networks with the head layouts users bring, and helpers to export them."""

from __future__ import annotations

from pathlib import Path

import onnx
import torch
from torch import nn


def _body(out_channels: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(3, 8, 3, 2, 1), nn.ReLU(), nn.Conv2d(8, 16, 3, 2, 1),
                         nn.ReLU(), nn.Conv2d(16, out_channels, 1))


class TinyDetector(nn.Module):
    """Stride-4 grid of anchors; layouts: anchor_free [N, 4+nc, A], anchor_free_transposed
    [N, A, 4+nc], yolov5 [N, A, 5+nc]. Boxes are cx cy w h in input pixels."""

    def __init__(self, num_classes: int = 2, layout: str = "anchor_free") -> None:
        super().__init__()
        self.layout = layout
        self.extra = 1 if layout == "yolov5" else 0
        self.body = _body(4 + self.extra + num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.body(x).flatten(2)  # [N, C, A]
        boxes = y[:, :4].sigmoid() * torch.tensor([64.0, 64.0, 40.0, 40.0]).view(1, 4, 1)
        out = torch.cat([boxes, y[:, 4:].sigmoid()], 1)
        return out if self.layout == "anchor_free" else out.transpose(1, 2)


class TinyClassifier(nn.Module):
    def __init__(self, num_classes: int = 3, softmax: bool = False) -> None:
        super().__init__()
        self.features = _body(16)
        self.head = nn.Linear(16, num_classes)
        self.softmax = softmax

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        logits = self.head(self.features(x).mean((2, 3)))
        return logits.softmax(1) if self.softmax else logits


def export_onnx(network: nn.Module, path: Path, height: int, width: int,
                metadata: dict[str, str] | None = None, input_name: str = "images") -> Path:
    """Plain float NCHW ONNX, as a user's own export (or Ultralytics') would look."""
    torch.manual_seed(0)
    torch.onnx.export(network.eval(), (torch.zeros(1, 3, height, width),), str(path),
                      dynamo=False, opset_version=17, input_names=[input_name],
                      output_names=["output0"])
    model = onnx.load(str(path))
    for key, value in (metadata or {}).items():
        entry = model.metadata_props.add()
        entry.key, entry.value = key, value
    onnx.save(model, str(path))
    return path


def seeded(network: nn.Module, seed: int = 0) -> nn.Module:
    """Deterministic, non-trivial weights."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for parameter in network.parameters():
            parameter.copy_(torch.randn(parameter.shape, generator=generator) * 0.5)
    return network.eval()

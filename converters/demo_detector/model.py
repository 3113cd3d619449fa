"""A small anchor-free CNN detector with an Ultralytics-style output.

`forward` takes a float NCHW image (RGB, 0..1) and returns [N, 4 + nc, A]: rows 0-3 are
cx, cy, w, h in input pixels, the rest are per-class sigmoid scores; A is the number of anchor
points over the stride 8/16/32 grids. That is the layout YOLOv8/v11 ONNX exports have, so the
demo model exercises the same decode path as a user's Ultralytics model.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional

STRIDES: tuple[int, ...] = (8, 16, 32)


Activation = type[nn.ReLU] | type[nn.SiLU]


def _conv(c_in: int, c_out: int, kernel: int = 3, stride: int = 1,
          activation: Activation = nn.ReLU) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(c_in, c_out, kernel, stride, kernel // 2, bias=False),
        nn.BatchNorm2d(c_out),
        activation(inplace=True),
    )


class _Residual(nn.Module):
    def __init__(self, channels: int, activation: Activation) -> None:
        super().__init__()
        self.body = nn.Sequential(_conv(channels, channels, activation=activation),
                                  _conv(channels, channels, activation=activation))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        residual: torch.Tensor = self.body(x)
        return x + residual


class ShapesDetector(nn.Module):
    """About 0.3 M parameters; input sides must be multiples of 32."""

    def __init__(self, num_classes: int = 4, neck_channels: int = 48,
                 activation: Activation = nn.ReLU) -> None:
        """`activation`: ReLU as shipped; SiLU (Ultralytics') for benchmarks of that case."""
        super().__init__()
        self.num_classes = num_classes

        def conv(c_in: int, c_out: int, kernel: int = 3, stride: int = 1) -> nn.Sequential:
            return _conv(c_in, c_out, kernel, stride, activation)

        self.stem = nn.Sequential(conv(3, 16, stride=2), conv(16, 24, stride=2))
        self.stage3 = nn.Sequential(conv(24, 32, stride=2), _Residual(32, activation))  # s8
        self.stage4 = nn.Sequential(conv(32, 64, stride=2), _Residual(64, activation))  # s16
        self.stage5 = nn.Sequential(conv(64, 96, stride=2), _Residual(96, activation))  # s32
        self.lateral = nn.ModuleList(
            [conv(c, neck_channels, kernel=1) for c in (32, 64, 96)])
        self.smooth = nn.ModuleList([conv(neck_channels, neck_channels) for _ in STRIDES])
        self.heads = nn.ModuleList(
            [nn.Conv2d(neck_channels, 4 + num_classes, 1) for _ in STRIDES])
        self._init_score_bias()

    def _init_score_bias(self) -> None:
        # Start every class score near 0.01 so the many background anchors do not swamp the loss.
        for head in self.heads:
            assert isinstance(head, nn.Conv2d) and head.bias is not None
            nn.init.constant_(head.bias[4:], -4.6)

    def forward_levels(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Raw head maps per stride: [N, 4 + nc, H/s, W/s]; box rows are ltrb logits."""
        c3 = self.stage3(self.stem(x))
        c4 = self.stage4(c3)
        c5 = self.stage5(c4)
        p5 = self.lateral[2](c5)
        p4 = self.lateral[1](c4) + functional.interpolate(p5, scale_factor=2.0, mode="nearest")
        p3 = self.lateral[0](c3) + functional.interpolate(p4, scale_factor=2.0, mode="nearest")
        return [head(smooth(p)) for p, smooth, head in
                zip((p3, p4, p5), self.smooth, self.heads, strict=True)]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        boxes, scores = decode_levels(self.forward_levels(x))
        return torch.cat([boxes, scores.sigmoid()], dim=1)


def anchor_points(levels: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """Anchor centres [A, 2] (x, y in input pixels) and their strides [A, 1] for the given maps."""
    points, strides = [], []
    for level, stride in zip(levels, STRIDES, strict=True):
        h, w = level.shape[-2:]
        ys, xs = torch.meshgrid(torch.arange(h, dtype=level.dtype),
                                torch.arange(w, dtype=level.dtype), indexing="ij")
        points.append((torch.stack([xs, ys], dim=-1).reshape(-1, 2) + 0.5) * stride)
        strides.append(torch.full((h * w, 1), float(stride), dtype=level.dtype))
    return torch.cat(points), torch.cat(strides)


def decode_levels(levels: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """Raw maps -> boxes [N, 4, A] (cx, cy, w, h in input pixels) and score logits [N, nc, A]."""
    flat = torch.cat([level.flatten(2) for level in levels], dim=2)
    points, strides = anchor_points(levels)
    ltrb = functional.softplus(flat[:, :4]) * strides.T
    top_left = points.T - ltrb[:, :2]
    bottom_right = points.T + ltrb[:, 2:]
    boxes = torch.cat([(top_left + bottom_right) / 2, bottom_right - top_left], dim=1)
    return boxes, flat[:, 4:]

"""Small torch networks with the head layouts users bring, and helpers to export them."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import torch
from onnx import TensorProto, helper, numpy_helper
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
                metadata: dict[str, str] | None = None, input_name: str = "images",
                outputs: int = 1) -> Path:
    """Plain float NCHW ONNX, as a user's own export (or Ultralytics') would look; outputs
    named output0, output1... as Ultralytics names them."""
    torch.manual_seed(0)
    torch.onnx.export(network.eval(), (torch.zeros(1, 3, height, width),), str(path),
                      dynamo=False, opset_version=17, input_names=[input_name],
                      output_names=[f"output{i}" for i in range(outputs)])
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


def grey_classifier(path: Path, *, nhwc: bool = False, normalise_inside: bool = False,
                    size: int = 32, kernel_shape: bool = True, depthwise: bool = False
                    ) -> Path:
    """input -> [Transpose] -> [Sub, Mul] -> Conv(1->8, stride 2) -> Relu -> [depthwise
    Conv(8->8, 8 groups) -> Relu] -> Conv(8->8, stride 2) -> Relu -> GlobalAveragePool ->
    Flatten -> Gemm -> logits [N, 3]."""
    rng = np.random.default_rng(0)
    weights = {
        "w1": rng.normal(0, 0.5, (8, 1, 3, 3)), "b1": rng.normal(0, 0.1, 8),
        "w2": rng.normal(0, 0.3, (8, 8, 3, 3)), "b2": rng.normal(0, 0.1, 8),
        "fc": rng.normal(0, 0.5, (3, 8)), "fc_b": rng.normal(0, 0.1, 3),
        "half": np.array(0.5), "two": np.array(2.0),
        "wd": rng.normal(0, 0.5, (8, 1, 3, 3)), "bd": rng.normal(0, 0.1, 8),
    }
    kernel = {"kernel_shape": [3, 3]} if kernel_shape else {}  # optional in ONNX
    nodes, current = [], "image"
    if nhwc:
        nodes.append(helper.make_node("Transpose", [current], ["nchw"], perm=[0, 3, 1, 2]))
        current = "nchw"
    if normalise_inside:
        nodes += [helper.make_node("Sub", [current, "half"], ["centred"]),
                  helper.make_node("Mul", ["centred", "two"], ["scaled"])]
        current = "scaled"
    nodes += [
        helper.make_node("Conv", [current, "w1", "b1"], ["c1"], pads=[1, 1, 1, 1],
                         strides=[2, 2], **kernel),
        helper.make_node("Relu", ["c1"], ["r1"]),
        *([helper.make_node("Conv", ["r1", "wd", "bd"], ["cd"], pads=[1, 1, 1, 1], group=8,
                            **kernel),
           helper.make_node("Relu", ["cd"], ["rd"])] if depthwise else []),
        helper.make_node("Conv", ["rd" if depthwise else "r1", "w2", "b2"], ["c2"],
                         pads=[1, 1, 1, 1], strides=[2, 2], **kernel),
        helper.make_node("Relu", ["c2"], ["r2"]),
        helper.make_node("GlobalAveragePool", ["r2"], ["pooled"]),
        helper.make_node("Flatten", ["pooled"], ["flat"]),
        helper.make_node("Gemm", ["flat", "fc", "fc_b"], ["logits"], transB=1),
    ]
    shape = [1, size, size, 1] if nhwc else [1, 1, size, size]
    graph = helper.make_graph(
        nodes, "grey", [helper.make_tensor_value_info("image", TensorProto.FLOAT, shape)],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, [1, 3])],
        [numpy_helper.from_array(v.astype(np.float32), k) for k, v in weights.items()
         if depthwise or k not in ("wd", "bd")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    onnx.save(model, str(path))
    return path


class TinyEndToEnd(nn.Module):
    """A TinyDetector whose output is its final detections, [N, K, 6]: x1 y1 x2 y2 score class,
    chosen as the one-to-one heads of Ultralytics YOLO26 and YOLOv10 do (the K anchors with the
    best class score, then the K best (anchor, class) pairs among them, by score)."""

    def __init__(self, num_classes: int = 3, detections: int = 20) -> None:
        super().__init__()
        self.detector = TinyDetector(num_classes, "anchor_free_transposed")
        self.num_classes, self.detections = num_classes, detections

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.detector(x)  # [N, A, 4+nc]: cx cy w h in pixels, class scores
        boxes = torch.cat([out[..., :2] - out[..., 2:4] / 2, out[..., :2] + out[..., 2:4] / 2], -1)
        scores = out[..., 4:]
        _, anchors = scores.amax(-1).topk(self.detections, dim=1)
        boxes = boxes.gather(1, anchors[..., None].expand(-1, -1, 4))
        scores = scores.gather(1, anchors[..., None].expand(-1, -1, self.num_classes))
        best, pairs = scores.flatten(1).topk(self.detections, dim=1)
        boxes = boxes.gather(1, (pairs // self.num_classes)[..., None].expand(-1, -1, 4))
        classes = (pairs % self.num_classes).float()
        return torch.cat([boxes, best[..., None], classes[..., None]], -1)


class TinySegment(nn.Module):
    """Ultralytics' segmentation head in small: the detector's rows then `extra` rows per
    anchor ([N, 4+nc+extra, A]: 32 mask coefficients; a pose head's keypoints likewise), and
    with `prototypes` a second output of mask prototypes [N, 32, H/4, W/4]. `end_to_end`: the
    final detections with the extra columns after them ([N, K, 6+extra]). `sliced`: the first
    output is not the Concat itself (a Slice must cut it)."""

    def __init__(self, num_classes: int = 3, extra: int = 32, prototypes: bool = True,
                 end_to_end: bool = False, sliced: bool = False) -> None:
        super().__init__()
        self.detector: nn.Module = (TinyEndToEnd(num_classes) if end_to_end
                                    else TinyDetector(num_classes, "anchor_free"))
        self.coefficients = nn.Conv2d(3, extra, 4, 4)
        self.prototypes = nn.Conv2d(3, 32, 4, 4) if prototypes else None
        self.end_to_end, self.sliced = end_to_end, sliced

    def forward(self, x: torch.Tensor) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        rows = self.detector(x)
        extra = self.coefficients(x).flatten(2)  # [N, extra, A]
        if self.end_to_end:
            extra = extra.transpose(1, 2)[:, :rows.shape[1]]  # [N, K, extra]
        out = torch.cat([rows, extra], 2 if self.end_to_end else 1)
        if self.sliced:
            out = out * 1.0 + 0.0
        return out if self.prototypes is None else (out, self.prototypes(x))


class TinyYolox(nn.Module):
    """YOLOX's head as its own ONNX export writes it (without --decode_in_inference): one anchor
    per cell of the stride 8, 16 and 32 grids, [N, A, 5+nc] of x y offsets and log w h in
    cells, then sigmoid objectness and class scores; `decoded`: boxes in input pixels instead
    (what the export writes with --decode_in_inference)."""

    def __init__(self, num_classes: int = 3, decoded: bool = False) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 8, 3, 2, 1), nn.ReLU(), nn.Conv2d(8, 8, 3, 2, 1),
                                  nn.ReLU(), nn.Conv2d(8, 8, 3, 2, 1), nn.ReLU())
        self.down = nn.ModuleList([nn.Conv2d(8, 8, 3, 2, 1), nn.Conv2d(8, 8, 3, 2, 1)])
        self.heads = nn.ModuleList([nn.Conv2d(8, 5 + num_classes, 1) for _ in range(3)])
        self.decoded = decoded

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        features = [self.stem(x)]
        for down in self.down:
            features.append(torch.relu(down(features[-1])))
        levels = []
        for stride, head, feature in zip((8, 16, 32), self.heads, features, strict=True):
            y = head(feature)  # [N, 5+nc, h, w]
            y = torch.cat([y[:, :4], y[:, 4:].sigmoid()], 1)
            if self.decoded:
                rows, columns = y.shape[2:]
                gy, gx = torch.meshgrid(torch.arange(rows), torch.arange(columns), indexing="ij")
                cells = torch.stack([gx, gy]).float()[None]
                y = torch.cat([(y[:, :2] + cells) * stride, y[:, 2:4].exp() * stride, y[:, 4:]],
                              1)
            levels.append(y.flatten(2))
        return torch.cat(levels, 2).transpose(1, 2)

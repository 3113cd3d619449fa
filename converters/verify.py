"""Parity check: the converted model on raw uint8 frames vs the source model on the same frames
preprocessed by hand in float64."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
import onnx

from converters.errors import ParityError
from converters.fold import ColourOrder, Normalisation
from edge.postprocess import paired_rows
from edge.preprocess import letterbox
from edge.synthetic import ShapeScene

#: Default tolerance on the worst difference, relative to the reference output's range.
DEFAULT_TOLERANCE = 1e-3

Reference = Callable[[npt.NDArray[np.float64]], npt.NDArray[np.float64]]
#: Runs a source model on normalised float64 input; its outputs by name.
SourceRunner = Callable[[npt.NDArray[np.float64]], dict[str, npt.NDArray[Any]]]


@dataclass(frozen=True)
class Parity:
    frames: int
    max_abs_error: float
    max_rel_error: float  # worst |difference| / (largest |reference value|)
    tolerance: float

    @property
    def ok(self) -> bool:
        return self.max_rel_error <= self.tolerance

    def describe(self) -> str:
        return (f"parity over {self.frames} frames: max abs error {self.max_abs_error:.3g}, "
                f"max relative error {self.max_rel_error:.3g} (relative tolerance "
                f"{self.tolerance:g})")


def parity_frames(height: int, width: int, count: int = 6, seed: int = 0
                  ) -> npt.NDArray[np.uint8]:
    """Camera-like uint8 frames [count, H, W, 3] (BGR, `count` >= 4): letterboxed synthetic
    scenes, one darkened and one brightened to a quarter of their range (a traced branch on
    the input's brightness, `if x.mean() > t:`, takes its other way on one of them), and
    noise."""
    scene = ShapeScene(seed=seed)
    frames = np.empty((count, height, width, 3), np.uint8)
    for i in range(count - 1):
        for _ in range(7):
            image, _ = scene.next()
        frames[i] = letterbox(image, width, height)[0]
    frames[-3] //= 4  # 0..63: a night scene
    frames[-2] = 255 - (255 - frames[-2]) // 4  # 192..255: a scene against the light
    frames[-1] = np.random.default_rng(seed).integers(0, 256, (height, width, 3), np.uint8)
    return frames


def preprocess_by_hand(frames: npt.NDArray[np.uint8], camera_order: ColourOrder,
                       normalisation: Normalisation, layout: str) -> npt.NDArray[np.float64]:
    """What a training script does, in float64: channel order, /255, mean/std, layout."""
    x = frames.astype(np.float64)
    if camera_order != normalisation.colour_order:
        x = x[..., ::-1]
    x = (x / 255.0 - np.array(normalisation.mean)) / np.array(normalisation.std)
    return np.ascontiguousarray(x.transpose(0, 3, 1, 2) if layout == "NCHW" else x)


def _check_finite(output_name: str, ours: npt.NDArray[np.float64],
                  theirs: npt.NDArray[np.float64]) -> None:
    """NaN compares as no error at all: outputs that are not numbers fail the check."""
    if np.isfinite(ours).all() and np.isfinite(theirs).all():
        return
    whose = "the source model's" if not np.isfinite(theirs).all() else "the converted model's"
    raise ParityError(f"{whose} output {output_name} holds NaN or infinite values on a test "
                      "frame; check --mean and --std, and that the source model runs in float32")


def _same_detections(output_name: str, ours: npt.NDArray[np.float64],
                     theirs: npt.NDArray[np.float64]
                     ) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]:
    """The two end-to-end outputs' rows paired as detections (both ways: none may be missing
    from either side), to be compared value by value."""
    ref, out, missing = paired_rows(theirs[0], ours[0])
    extra = paired_rows(ours[0], theirs[0])[2]
    if missing or extra:
        raise ParityError(f"the converted model's final detections in {output_name} differ "
                          f"from the source model's: {missing} of the source's have no "
                          f"counterpart of their class, and {extra} of the converted model's; "
                          "check --colour-order, --mean and --std")
    return out.astype(np.float64), ref.astype(np.float64)


def check_parity(converted: onnx.ModelProto, output_name: str, reference: Reference,
                 frames: npt.NDArray[np.uint8], reference_inputs: npt.NDArray[np.float64],
                 tolerance: float = DEFAULT_TOLERANCE, head: str | None = None,
                 advice: str | None = None) -> Parity:
    """Run both, frame by frame (a model with a fixed batch B > 1 gets B copies of the frame);
    raise ParityError beyond `tolerance`, with `advice` where the cause is known (else which
    options to check). An end-to-end `head`'s rows are compared as the detections they are
    (`paired_rows`): their order among near-equal scores is rounding's."""
    import onnxruntime as ort  # noqa: PLC0415 - heavy; only the parity check needs it

    session = ort.InferenceSession(converted.SerializeToString(),
                                   providers=["CPUExecutionProvider"])
    image = session.get_inputs()[0]
    batch = image.shape[0] if isinstance(image.shape[0], int) and image.shape[0] > 1 else 1
    worst_abs, scale = 0.0, 0.0
    for i in range(len(frames)):
        feed = np.repeat(frames[i:i + 1], batch, axis=0)  # a fixed batch > 1 gets copies
        ours = session.run([output_name], {image.name: feed})[0][:1].astype(np.float64)
        theirs = np.asarray(reference(reference_inputs[i:i + 1]), np.float64)
        if ours.shape != theirs.shape:
            raise ParityError(f"converted output {output_name} has shape {list(ours.shape)} but "
                              f"the source model gives {list(theirs.shape)}")
        _check_finite(output_name, ours, theirs)
        if head == "end_to_end":
            ours, theirs = _same_detections(output_name, ours, theirs)
        worst_abs = max(worst_abs, float(np.abs(ours - theirs).max(initial=0.0)))
        scale = max(scale, float(np.abs(theirs).max(initial=0.0)))
    parity = Parity(len(frames), worst_abs, worst_abs / max(scale, 1e-12), tolerance)
    if not parity.ok:
        raise ParityError(f"the converted model does not match the source model: "
                          f"{parity.describe()}; " + (advice or "check --colour-order, --mean "
                          "and --std, or raise --tolerance if the difference is expected"))
    return parity

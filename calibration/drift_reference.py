"""The drift reference profile of a model: what the device should see and say when nothing has
drifted, measured on validation or calibration frames through the device's own path
(letterbox -> infer -> decode at the operating thresholds)."""

from __future__ import annotations

import logging
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import numpy.typing as npt

from calibration.evaluate import letterboxed_outputs
from edge.drift import FEW_REFERENCE_FRAMES, DriftReference, DriftStats
from edge.errors import InputError
from edge.postprocess import decoder_from_spec
from edge.runners.onnxruntime import OrtRunner
from edge.tensorrt.engine_cache import file_sha256

log = logging.getLogger(__name__)


def drift_reference_from_images(model: Path, images: Iterable[npt.NDArray[np.uint8]],
                                source: str, threads: int = 0,
                                published: Path | None = None) -> DriftReference:
    """`images`: BGR uint8 [H, W, 3] frames as the camera would deliver them. `published`:
    where the model file will be read from, when `model` is its copy under another name (a
    staged output); it names the model where its spec does not."""
    with OrtRunner.from_path(model, threads=threads, slots=1) as runner:
        spec = runner.spec
        decode = decoder_from_spec(spec)
        stats = DriftStats(spec.num_classes)
        pairs = ((image, image) for image in images)
        for image, output, geometry in letterboxed_outputs(runner, pairs):
            detections = decode(output, geometry)
            stats.add_image(image)
            stats.add_detections(detections, image.shape[1], image.shape[0])
    if stats.frames == 0:
        raise InputError(f"no frames in {source} to build a drift reference from")
    if stats.frames < FEW_REFERENCE_FRAMES:
        log.warning("the drift reference comes from %d frames of %s; with fewer than %d frames "
                    "covering the camera's usual scenes (minutes of them, such as the "
                    "calibration set), normal frames can read as drift: give it more (a "
                    "larger folder or video, or a higher --max-images where that capped them; "
                    "synthetic://shapes makes as many frames as --max-images asks: 100 by "
                    "default for edge eval)",
                    stats.frames, source, FEW_REFERENCE_FRAMES)
    return DriftReference(file_sha256(model), spec.name or (published or model).stem,
                          tuple(spec.labels), stats, source)

"""Single-frame latency of several ONNX models on ONNX Runtime, measured fairly side by side."""

from __future__ import annotations

from typing import Any

import numpy as np

from calibration.latency import interleaved_medians_ms


def interleaved_latencies_ms(models: dict[str, str | bytes], rounds: int = 6,
                             repeats: int = 100,
                             frame_shape: tuple[int, ...] = (1, 320, 320, 3)) -> dict[str, float]:
    """Median latency (ms) of each model (a path, or serialized bytes) on one thread. The models
    take turns in blocks of `repeats` runs, so drift in the machine's speed reaches them all
    equally; the first round warms up and is not counted."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.log_severity_level = 3
    frame = np.random.default_rng(0).integers(0, 256, frame_shape, np.uint8)

    def runner(model: str | bytes) -> Any:
        session = ort.InferenceSession(model, options, providers=["CPUExecutionProvider"])
        feed = {session.get_inputs()[0].name: frame}
        return lambda: session.run(None, feed)

    return interleaved_medians_ms({key: runner(model) for key, model in models.items()},
                                  rounds, repeats)

"""Single-frame latency of several ONNX models on ONNX Runtime, measured fairly side by side."""

from __future__ import annotations

import statistics
import time

import numpy as np


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
    sessions = {key: ort.InferenceSession(model, options, providers=["CPUExecutionProvider"])
                for key, model in models.items()}
    frame = np.random.default_rng(0).integers(0, 256, frame_shape, np.uint8)
    samples: dict[str, list[float]] = {key: [] for key in models}
    for round_index in range(rounds + 1):
        for key, session in sessions.items():
            feed = {session.get_inputs()[0].name: frame}
            for _ in range(repeats):
                started = time.perf_counter()
                session.run(None, feed)
                if round_index:
                    samples[key].append((time.perf_counter() - started) * 1e3)
    return {key: statistics.median(values) for key, values in samples.items()}

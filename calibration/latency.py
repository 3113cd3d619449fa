"""Whether a `cpu` profile INT8 model is faster than its FP32 model on this machine's CPU.

The `cpu` profile exists to be faster on ONNX Runtime's CPU provider, and it is not always:
its int8 kernels pay for quantizing and requantizing every activation, which a small model's
few multiply-adds do not earn back (in the latest corpus run the 24x24 and 48x48 MTCNN nets
ran 1.2-1.6x slower in INT8, a 48x192 text-direction classifier 1.15x; a YOLOv8n 0.44x). Both models
run one frame at a time on one thread, taking turns in blocks, so a change in the machine's
speed reaches both alike; the first block of each warms up and is not counted.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import onnx
import onnxruntime as ort

from calibration.fidelity import quantized_session
from calibration.observing import Feed

#: Wall time the comparison may take, warm-up included (a YOLOv8n: 15 timed runs of each).
LATENCY_BUDGET_S = 0.6
#: Blocks of runs each model gets after its warm-up block: this many where the budget allows,
#: fewer for a model whose single runs fill it (an 800x608 PP-PicoDet: 0.3 s a pair), never
#: fewer than `MIN_ROUNDS`.
ROUNDS = 5
MIN_ROUNDS = 2

Run = Callable[[], Any]


@dataclass(frozen=True)
class LatencyComparison:
    """Median single-frame latency of FP32 and INT8 on this CPU (ONNX Runtime, one thread)."""

    fp32_ms: float
    int8_ms: float
    runs: int  # timed runs of each model

    @property
    def ratio(self) -> float:
        """INT8's latency over FP32's: below 1 the INT8 model is faster."""
        return self.int8_ms / self.fp32_ms

    def as_dict(self) -> dict[str, Any]:
        return {"fp32_ms": round(self.fp32_ms, 3), "int8_ms": round(self.int8_ms, 3),
                "ratio": round(self.ratio, 3), "runs": self.runs,
                "warning": self.slower_warning()}

    def slower_warning(self) -> str | None:
        """What to do when the INT8 model is no faster than FP32 here, else None."""
        if self.ratio < 1.0:
            return None
        return (f"the INT8 model is not faster than FP32 on this CPU: {self.int8_ms:.2f} ms "
                f"against {self.fp32_ms:.2f} ms a frame ({self.ratio:.2f}x; ONNX Runtime, one "
                "thread); its int8 kernels do not pay off for this model here. On CPUs like "
                "this one deploy the FP32 model; on the device, edge bench each of the two to "
                "compare them there")


def compare_cpu_latency(reference: onnx.ModelProto, quantized: onnx.ModelProto, feed: Feed,
                        budget_s: float = LATENCY_BUDGET_S) -> LatencyComparison:
    """FP32 `reference` against `quantized` (through ONNX Runtime's int8 kernels, as the
    `cpu` profile deploys it) on one frame, `feed`, within about `budget_s` of runs."""
    sessions = {"fp32": quantized_session(reference, 1),
                "int8": quantized_session(quantized, 1, int8_kernels=True)}
    runs: dict[str, Run] = {name: _runner(session, feed) for name, session in sessions.items()}
    probe_ms = sum(_timed_ms(run) for run in runs.values())  # first runs: allocations too
    blocks = budget_s * 1e3 / max(probe_ms, 1e-3)  # blocks of one run each that fit
    rounds = max(MIN_ROUNDS, min(ROUNDS, int(blocks) - 1))
    repeats = max(1, int(blocks / (rounds + 1)))
    medians = interleaved_medians_ms(runs, rounds, repeats)
    return LatencyComparison(medians["fp32"], medians["int8"], rounds * repeats)


def interleaved_latencies_ms(models: Mapping[str, str | bytes], rounds: int = 6,
                             repeats: int = 100, frame_shape: tuple[int, ...] = (1, 320, 320, 3)
                             ) -> dict[str, float]:
    """Median single-frame latency (ms) of each model (a path, or serialized bytes) taking a
    uint8 frame of `frame_shape`, on ONNX Runtime's CPU provider with one thread, measured as
    `interleaved_medians_ms` does (the benchmarks' side-by-side figures)."""
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.log_severity_level = 3
    frame = np.random.default_rng(0).integers(0, 256, frame_shape, np.uint8)

    def runner(model: str | bytes) -> Run:
        session = ort.InferenceSession(model, options, providers=["CPUExecutionProvider"])
        return _runner(session, {session.get_inputs()[0].name: frame})

    return interleaved_medians_ms({key: runner(model) for key, model in models.items()},
                                  rounds, repeats)


def interleaved_medians_ms(runs: Mapping[str, Run], rounds: int, repeats: int
                           ) -> dict[str, float]:
    """Median milliseconds of each of `runs`: they take turns in blocks of `repeats` runs,
    `rounds` blocks each after a first block that warms up and is not counted."""
    samples: dict[str, list[float]] = {name: [] for name in runs}
    for round_index in range(rounds + 1):
        for name, run in runs.items():
            block = [_timed_ms(run) for _ in range(repeats)]
            if round_index:
                samples[name] += block
    return {name: statistics.median(values) for name, values in samples.items()}


def _runner(session: Any, feed: Feed) -> Run:
    return lambda: session.run(None, feed)


def _timed_ms(run: Run) -> float:
    started = time.perf_counter()
    run()
    return (time.perf_counter() - started) * 1e3

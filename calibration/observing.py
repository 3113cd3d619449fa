"""The statistics pass's ONNX Runtime session, reading observed activations where ONNX Runtime
keeps them.

With full optimisation ONNX Runtime's CPU provider runs convolutions in a blocked channel
layout (NCHWc: channels in groups of 8 or 16, innermost) and converts an activation back to
NCHW (a `ReorderOutput` node) only where something outside that layout reads it. Exposing an
observed activation as a graph output adds one such conversion: 42 of a YOLOv8n's 68 observed
tensors, 2.6 ms of its 22 ms a frame on one thread. Min, max and a histogram do not depend on
the order of the values, so where the blocked tensor holds exactly the activation's values
(its channel count a multiple of 16, so no block has padding lanes) it is read as it is.

The rewired graph is ONNX Runtime's own optimised model, saved by the first session and
reloaded without further optimisation. It is checked on the first batch against that first
session, tensor by tensor (shape, min, max, sum); on any difference the first session is used
throughout, as it is where nothing can be rewired.
"""

from __future__ import annotations

import logging
import tempfile
import threading
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper

from edge.ort_session import intra_op_threads

log = logging.getLogger(__name__)

NCHWC_DOMAIN = "com.microsoft.nchwc"
#: A channel count that fills every NCHWc block whole: MLAS blocks are 8 (AVX2) or 16
#: (AVX-512) channels wide.
WHOLE_BLOCKS = 16

#: Model inputs by name, as `InferenceSession.run` takes them.
Feed = dict[str, npt.NDArray[Any]]


class ObservingSession:
    """`run(inputs)`: the values of `tensors` (graph outputs of `model`) for a batch, in that
    order, each as an array whose values (not necessarily their order) are the tensor's.
    Safe to call from several threads at once."""

    def __init__(self, model: onnx.ModelProto, tensors: Sequence[str], threads: int) -> None:
        self.tensors = list(tensors)
        self._serialized, self._threads = model.SerializeToString(), threads
        with tempfile.TemporaryDirectory(prefix="edge-observing-") as folder:
            optimized = Path(folder) / "optimized.onnx"
            self._plain: Any = _plain_session(self._serialized, threads, optimized)
            self._fetched, self._blocked = _blocked_session(optimized, self.tensors, threads)
        self._checked = self._blocked is None
        self._lock = threading.Lock()

    @property
    def rewired(self) -> int:
        """How many observed tensors are read in the blocked layout (0 once the check failed)."""
        if self._blocked is None:
            return 0
        return sum(a != b for a, b in zip(self.tensors, self._fetched, strict=True))

    def run(self, inputs: Feed) -> list[npt.NDArray[Any]]:
        if not self._checked:
            with self._lock:
                if not self._checked:
                    return self._first_run(inputs)
        if self._blocked is None:
            return list(self._plain.run(self.tensors, inputs))
        return list(self._blocked.run(self._fetched, inputs))

    def _first_run(self, inputs: Feed) -> list[npt.NDArray[Any]]:
        """The blocked session's outputs, kept only if they hold the plain session's values;
        else the plain session's, made again and used from then on. The plain session goes
        once its outputs are summarised, before the blocked one runs, so one session's
        activations are alive at a time (every float tensor of an 800x608 PP-PicoDet: 0.9 GB,
        which ONNX Runtime's arena keeps until its session goes)."""
        expected = [_ValueSummary.of(value) for value in self._plain.run(self.tensors, inputs)]
        self._plain = None
        assert self._blocked is not None
        blocked = list(self._blocked.run(self._fetched, inputs))
        differing = [name for name, summary, value in zip(self.tensors, expected, blocked,
                                                          strict=True)
                     if not summary.matches(value)]
        self._checked = True
        if not differing:
            return blocked
        log.debug("blocked-layout outputs differ from the plain ones (%s); reading every "
                  "tensor through the plain session", ", ".join(differing[:3]))
        self._blocked = None
        del blocked
        self._plain = ort.InferenceSession(self._serialized, _options(self._threads, True),
                                           providers=["CPUExecutionProvider"])
        return list(self._plain.run(self.tensors, inputs))


def _options(threads: int, optimize: bool, saved_at: Path | None = None) -> ort.SessionOptions:
    """Session options: full optimisation (its optimised graph saved at `saved_at`, if given),
    or none, for a graph that is ONNX Runtime's optimised one already."""
    options = ort.SessionOptions()
    options.intra_op_num_threads = intra_op_threads(threads)
    options.log_severity_level = 3
    options.graph_optimization_level = (ort.GraphOptimizationLevel.ORT_ENABLE_ALL if optimize
                                        else ort.GraphOptimizationLevel.ORT_DISABLE_ALL)
    if saved_at is not None:
        options.optimized_model_filepath = str(saved_at)
    return options


def _plain_session(serialized: bytes, threads: int, optimized: Path) -> Any:
    """The session on `serialized` as it is, its optimised graph saved at `optimized` if ONNX
    Runtime can (a failed save would otherwise fail the session)."""
    try:
        return ort.InferenceSession(serialized, _options(threads, True, optimized),
                                    providers=["CPUExecutionProvider"])
    except Exception:  # noqa: BLE001 - retried without the save, which raises what matters
        optimized.unlink(missing_ok=True)
        return ort.InferenceSession(serialized, _options(threads, True),
                                    providers=["CPUExecutionProvider"])


def _blocked_session(optimized: Path, tensors: list[str], threads: int
                     ) -> tuple[list[str], Any | None]:
    """(the names to fetch for `tensors`, a session on the rewired optimised graph), or
    (`tensors`, None) where nothing can be rewired."""
    if not optimized.is_file():
        return tensors, None
    try:
        graph_model = onnx.load(str(optimized), load_external_data=True)
    except Exception as exc:  # noqa: BLE001 - an unreadable save leaves the plain session
        log.debug("ONNX Runtime's optimised model could not be read (%s); outputs as they are",
                  exc)
        return tensors, None
    blocked = blocked_sources(graph_model, tensors)
    if not blocked:
        return tensors, None
    graph = graph_model.graph
    kept = [node for node in graph.node if not (node.output and node.output[0] in blocked)]
    del graph.node[:]
    graph.node.extend(kept)
    outputs = [helper.make_tensor_value_info(blocked[o.name], TensorProto.FLOAT, None)
               if o.name in blocked else o for o in graph.output]
    del graph.output[:]
    graph.output.extend(outputs)
    try:
        session = ort.InferenceSession(graph_model.SerializeToString(),
                                       _options(threads, False),
                                       providers=["CPUExecutionProvider"])
    except Exception as exc:  # noqa: BLE001 - any refusal leaves the plain session in charge
        log.debug("the rewired graph did not load (%s); outputs as they are", exc)
        return tensors, None
    return [blocked.get(name, name) for name in tensors], session


def blocked_sources(optimized: onnx.ModelProto, tensors: Sequence[str]) -> dict[str, str]:
    """Observed tensor -> the blocked tensor it is converted from, for the graph outputs of
    ONNX Runtime's optimised model that only a `ReorderOutput` of whole blocks produces for
    the output alone (nothing else reads the NCHW copy)."""
    wanted = set(tensors)
    readers = Counter(name for node in optimized.graph.node for name in node.input)
    sources = {}
    for node in optimized.graph.node:
        if (node.domain != NCHWC_DOMAIN or node.op_type != "ReorderOutput"
                or len(node.output) != 1 or node.output[0] not in wanted
                or readers[node.output[0]]):
            continue
        channels = next((a.i for a in node.attribute if a.name == "channels"), 0)
        if channels > 0 and channels % WHOLE_BLOCKS == 0:
            sources[node.output[0]] = node.input[0]
    return sources


@dataclass(frozen=True)
class _ValueSummary:
    """What `matches` compares of a tensor whose values may come back in another order:
    shape, min, max and (up to summation order) sum."""

    shape: tuple[int, ...]
    minimum: float
    maximum: float
    total: float
    magnitude: float  # largest |x|: the sum's tolerance scales with it

    @classmethod
    def of(cls, value: npt.NDArray[Any]) -> _ValueSummary:
        if value.size == 0:
            return cls(value.shape, 0.0, 0.0, 0.0, 0.0)
        low, high = float(value.min()), float(value.max())
        return cls(value.shape, low, high, float(value.sum(dtype=np.float64)),
                   max(abs(low), abs(high)))

    def matches(self, value: npt.NDArray[Any]) -> bool:
        """Whether `value` plausibly holds the summarised values in another order."""
        other = _ValueSummary.of(value)
        if other.shape != self.shape or value.size == 0:
            return other.shape == self.shape
        if (other.minimum, other.maximum) != (self.minimum, self.maximum):
            return False
        return bool(np.isclose(other.total, self.total, rtol=1e-6,
                               atol=1e-6 * self.magnitude))

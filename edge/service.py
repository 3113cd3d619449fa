"""One inference service per model, shared by every camera.

Why one thread owns the runner: CUDA state is per thread. pycuda's context is current only on the
thread that created (pushed) it, and cuda-python's `cudaSetDevice` binds only the calling thread,
so a runner built on one thread and driven from each camera's thread makes CUDA calls with no
context current. Here a dedicated thread creates the runner through a factory and makes every
backend call (submit, wait, close) itself; cameras never touch the runner.

Why cameras write into the runner's own buffers: each runner slot holds a batch input
[max_batch, H, W, 3]. One slot is *filling* while the other runs; a camera claims a row of the
filling slot, letterboxes its frame straight into it (on Jetson that is mapped pinned memory the
GPU reads, so still no copy) and commits it. Preparing frame n+1 therefore overlaps inference of
frame n, per camera, exactly as the single-camera double buffer did.

When a filling batch runs: once no claimed row is still being written and either every active
camera has a row in it, it is full, or its first row has waited `batch_timeout_ms`. A lone camera
never waits for company. Rows are handed out first come, first served, one per camera per
batch, so a fast camera cannot take the rows a slow one is waiting for.

One batch runs at a time. ONNX Runtime's CPU provider computes on the calling thread (that is
the point of owning it), and a TensorRT engine on a Jetson reads mapped memory, so a second
batch in flight would overlap nothing but a few microseconds of launch; the other slot is what
keeps cameras busy meanwhile.

Each camera's results are copied (a few kilobytes per frame, into buffers allocated once) out
of the runner's output, so the slot can refill at once, whatever the cameras are doing.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

from edge.errors import ConfigError, EdgeError
from edge.runners.base import Runner
from edge.spec import ModelSpec

log = logging.getLogger(__name__)

RunnerFactory = Callable[[], Runner]


class InferenceError(RuntimeError):
    """The backend raised inside the inference service; every camera gets this."""


class ServiceClosedError(RuntimeError):
    """The service stopped while a camera was waiting on it."""


@dataclass
class Ticket:
    """One camera frame's row in a batch: write the letterboxed frame into `rows[row]`, then
    `commit`; after `wait`, `output` holds this frame's model output (batch dimension removed)."""

    camera: int
    slot: int
    row: int
    rows: npt.NDArray[np.uint8]  # the slot's whole input [max_batch, H, W, 3]
    output: npt.NDArray[np.float32]  # per-camera result buffer, valid until its reuse
    committed: bool = False
    done: bool = False
    batch_size: int = 0
    committed_at: float = 0.0  # perf_counter seconds
    started_at: float = 0.0
    finished_at: float = 0.0


@dataclass
class _Batch:
    slot: int
    tickets: list[Ticket] = field(default_factory=list)
    first_commit: float | None = None

    def cameras(self) -> set[int]:
        return {t.camera for t in self.tickets}

    def writing(self) -> int:
        return sum(1 for t in self.tickets if not t.committed)


@dataclass
class _Camera:
    name: str
    results: list[npt.NDArray[np.float32]]
    next_result: int = 0
    active: bool = True


class InferenceService:
    """Owns one runner on one thread; cameras `register` and then `claim` / `commit` / `wait`.

    Construction starts the thread and blocks until the runner exists: a model that cannot be
    loaded raises here, on the caller's thread, with the runner's own error.
    """

    def __init__(self, factory: RunnerFactory,
                 capacity: Callable[[ModelSpec], int] | None = None,
                 batch_timeout_ms: float = 4.0, name: str = "inference") -> None:
        """`capacity`: rows per batch for the loaded model (e.g. `batch_capacity`), checked on
        the inference thread right after the runner exists; default: the runner's rows."""
        self._factory = factory
        self._capacity = capacity
        self._max_batch = 1
        self._timeout_s = batch_timeout_ms / 1e3
        self._cond = threading.Condition()
        self._cameras: list[_Camera] = []
        self._waiting: deque[int] = deque()  # cameras blocked in claim(), in arrival order
        self._batches: list[_Batch] = []
        self._filling: _Batch | None = None
        self._free: list[int] = []
        self._stopping = False
        self._abandoned = False  # close() gave up on a runner that never returned
        self._error: BaseException | None = None
        self._startup_error: BaseException | None = None
        self._ready = threading.Event()
        self.batch_sizes: Counter[int] = Counter()
        self.batches = 0
        self.busy_s = 0.0
        self._runner: Runner | None = None
        self._inputs: list[npt.NDArray[np.uint8]] = []  # each slot's input, fetched on the thread
        self._output_shape: tuple[int, ...] = ()
        self.thread = threading.Thread(target=self._serve, name=name, daemon=True)
        self.thread.start()
        self._ready.wait()
        if self._startup_error is not None:
            self.thread.join()
            raise self._startup_error

    # -- facts about the model, read-only for every thread ---------------------------------

    @property
    def spec(self) -> ModelSpec:
        return self._runner_facts().spec

    @property
    def backend(self) -> str:
        return self._runner_facts().backend

    @property
    def precision(self) -> str:
        return self._runner_facts().precision

    @property
    def max_batch(self) -> int:
        """Rows per batch the service fills (<= the runner's rows per slot)."""
        return self._max_batch

    @property
    def output_row_shape(self) -> tuple[int, ...]:
        return self._output_shape[1:]

    @property
    def error(self) -> BaseException | None:
        return self._error

    def alive(self) -> bool:
        return self.thread.is_alive() and self._error is None

    def _runner_facts(self) -> Runner:
        if self._runner is None:
            raise ServiceClosedError("the inference service has no runner")
        return self._runner

    # -- camera side -----------------------------------------------------------------------

    def register(self, name: str) -> int:
        """A camera joins; returns its id. Its two result buffers are allocated here."""
        shape = self.output_row_shape
        with self._cond:
            self._cameras.append(_Camera(name, [np.zeros(shape, np.float32) for _ in range(2)]))
            return len(self._cameras) - 1

    def leave(self, camera: int) -> None:
        """The camera will claim nothing more (its source ended); batches stop waiting for it."""
        with self._cond:
            self._cameras[camera].active = False
            self._cond.notify_all()

    def claim(self, camera: int) -> Ticket:
        """A row of the filling batch for `camera`; blocks while none is free for it."""
        with self._cond:
            self._waiting.append(camera)
            try:
                self._cond.wait_for(lambda: self._claimable(camera))
                self._raise_if_stopped()
                assert self._filling is not None
                batch = self._filling
                state = self._cameras[camera]
                output = state.results[state.next_result]
                state.next_result = 1 - state.next_result
                ticket = Ticket(camera, batch.slot, len(batch.tickets),
                                self._inputs[batch.slot], output)
                batch.tickets.append(ticket)
                return ticket
            finally:
                self._waiting.remove(camera)
                self._cond.notify_all()

    def commit(self, ticket: Ticket) -> None:
        """The row holds its frame; it may run from now on."""
        with self._cond:
            ticket.committed = True
            ticket.committed_at = time.perf_counter()
            batch = self._batches[ticket.slot]
            if batch.first_commit is None:
                batch.first_commit = ticket.committed_at
            self._cond.notify_all()

    def wait(self, ticket: Ticket, timeout: float | None = None) -> npt.NDArray[np.float32]:
        """Block until `ticket` has run; its output row. Raises InferenceError if the backend
        failed, ServiceClosedError if the service stopped first."""
        with self._cond:
            self._cond.wait_for(lambda: ticket.done or self._error is not None
                                or (self._stopping and not self.thread.is_alive())
                                or self._abandoned, timeout)
            if ticket.done:
                return ticket.output
            self._raise_if_stopped()
            raise TimeoutError(f"inference did not finish within {timeout} s")

    def _claimable(self, camera: int) -> bool:
        if self._stopping or self._error is not None:
            return True
        batch = self._filling
        if batch is None or len(batch.tickets) >= self.max_batch:
            return False
        taken = batch.cameras()
        for waiting in self._waiting:  # first come, first served among those who may join
            if waiting not in taken:
                return waiting == camera
        return False

    def _raise_if_stopped(self) -> None:
        if self._error is not None:
            raise InferenceError(f"inference failed: {self._error}") from self._error
        if self._stopping:
            raise ServiceClosedError("the inference service has stopped")

    # -- the inference thread --------------------------------------------------------------

    def _serve(self) -> None:
        runner: Runner | None = None
        try:
            runner = self._factory()
            wanted = self._capacity(runner.spec) if self._capacity else runner.max_batch
            self._max_batch = max(1, min(wanted, runner.max_batch))
        except BaseException as exc:  # noqa: BLE001 - re-raised on the constructing thread
            if runner is not None:
                runner.close()
            self._startup_error = exc
            self._ready.set()
            return
        self._runner = runner
        self._inputs = [runner.input_buffer(slot) for slot in range(runner.slots)]
        self._output_shape = runner.output_shape
        with self._cond:
            self._batches = [_Batch(slot) for slot in range(runner.slots)]
            self._free = list(range(1, runner.slots))
            self._filling = self._batches[0]
        self._ready.set()
        try:
            while (batch := self._next_batch()) is not None:
                self._run(runner, batch)
        except Exception as exc:  # thread boundary: every camera is told, the daemon exits 1
            log.error("inference failed on %s (%s: %s); stopping every camera", runner.backend,
                      type(exc).__name__, exc, exc_info=not isinstance(exc, EdgeError))
            with self._cond:
                self._error = exc
                self._cond.notify_all()
        finally:
            with self._cond:  # the slots' pinned inputs go with their CUDA context, below
                self._inputs = []
            runner.close()

    def _next_batch(self) -> _Batch | None:
        """Block until the filling batch should run; hand it over and open the next slot."""
        with self._cond:
            while True:
                if self._stopping:
                    return None
                batch = self._filling
                if batch is not None:
                    delay = self._run_in(batch)
                    if delay == 0.0:
                        self._filling = self._batches[self._free.pop(0)] if self._free else None
                        self._cond.notify_all()
                        return batch
                else:
                    delay = None
                self._cond.wait(delay)

    def _run_in(self, batch: _Batch) -> float | None:
        """Seconds until `batch` should run (0: now), or None to wait for a change."""
        if batch.first_commit is None or batch.writing():
            return None
        if len(batch.tickets) >= self.max_batch:
            return 0.0
        active = {i for i, camera in enumerate(self._cameras) if camera.active}
        if active <= batch.cameras():
            return 0.0
        return max(0.0, batch.first_commit + self._timeout_s - time.perf_counter())

    def _run(self, runner: Runner, batch: _Batch) -> None:
        size = len(batch.tickets)
        started = time.perf_counter()
        runner.submit(batch.slot, size)
        output = runner.wait(batch.slot)
        finished = time.perf_counter()
        for ticket in batch.tickets:
            np.copyto(ticket.output, output[ticket.row])
        with self._cond:
            for ticket in batch.tickets:
                ticket.started_at, ticket.finished_at = started, finished
                ticket.batch_size = size
                ticket.done = True
            self.batch_sizes[size] += 1
            self.batches += 1
            self.busy_s += finished - started
            batch.tickets = []
            batch.first_commit = None
            if self._filling is None:
                self._filling = batch
            else:
                self._free.append(batch.slot)
            self._cond.notify_all()

    # -- lifecycle -------------------------------------------------------------------------

    def stats(self) -> dict[str, Any]:
        with self._cond:
            sizes = dict(sorted(self.batch_sizes.items()))
            batches = self.batches
        frames = sum(size * count for size, count in sizes.items())
        return {"backend": self.backend, "runners": 1, "max_batch": self.max_batch,
                "batches": batches, "batch_sizes": {str(k): v for k, v in sizes.items()},
                "mean_batch": round(frames / batches, 2) if batches else 0.0,
                "state": "failed" if self._error is not None else
                         "running" if self.thread.is_alive() else "stopped"}

    def close(self, timeout: float = 10.0) -> None:
        """Finish the running batch, close the runner on its own thread, wake every camera.
        A runner that has not returned within `timeout` seconds is left behind (its thread is
        a daemon) and the cameras waiting on it get ServiceClosedError, so stopping stays
        bounded however many cameras wait."""
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
        self.thread.join(timeout)
        with self._cond:
            self._abandoned = self.thread.is_alive()
            self._cond.notify_all()
        if self._abandoned:
            log.warning("the inference thread did not stop within %.0f s; left behind", timeout)


def runner_rows(configured: int | None, cameras: int) -> int:
    """Rows per batch slot to allocate for a dynamic-batch model: `model.max_batch`, else one
    per camera, up to 8 (a fixed-batch model allocates its own batch whatever this says)."""
    return configured if configured is not None else max(1, min(cameras, 8))


def batch_capacity(model_batch: int | None, configured: int | None, cameras: int,
                   warn: bool = True) -> int:
    """How many frames one batch may hold.

    `model_batch`: the model's fixed batch, None when dynamic. `configured`: `model.max_batch`,
    None for the default (one row per camera, up to 8, on a dynamic model; the model's batch on
    a fixed one). Raises ConfigError for more rows than a fixed batch has; warns (unless `warn`
    is False: a caller that loads the same model again later) when a fixed batch of 1 ignores
    `configured`.
    """
    if model_batch is None:
        return runner_rows(configured, cameras)
    if configured is None:
        return model_batch
    if model_batch == 1 and configured > 1:
        if warn:
            log.warning("model.max_batch = %d, but the model has a fixed batch of 1: running "
                        "one frame at a time (to batch cameras together, convert the original "
                        "export again with `edge convert SOURCE --batch dynamic`)", configured)
        return 1
    if configured > model_batch:
        raise ConfigError(f"model.max_batch = {configured} is more than the model's fixed batch "
                          f"of {model_batch}; set model.max_batch <= {model_batch}, or convert the "
                          "original export again with `edge convert SOURCE --batch dynamic`")
    return configured

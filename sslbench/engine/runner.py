"""The runner: executes cells (see :mod:`sslbench.engine.cells`) against the results store, each
trained (or reused), embedded, evaluated and stored, and decides from the store what a cell needs
(:func:`cell_state`, the run-reuse rule).

A cell's work has three phases (:mod:`sslbench.engine.jobs`): the driver prepares it
(:func:`~sslbench.engine.jobs.prepare_cell`: reuse decision, run claim), a worker does it
(:func:`work_job`: train, save the weights, evaluate; it never touches the store) and the driver
commits it (:func:`~sslbench.engine.jobs.commit_job`), so the driver is the only writer of the
store. :func:`execute_cell` is the three in this process; :class:`InProcessExecutor` runs cells so,
one after the other. :func:`run_grid` submits a grid and applies the per-data-set error policy: a
data set that cannot be loaded skips its own cells, the other data sets go on. An executor with a
``run_all`` method (the local process pool of :mod:`sslbench.engine.executors`, Ray in
:mod:`sslbench.engine.ray_executor`) gets the whole grid and runs cells side by side, with the same
policy.
"""

from __future__ import annotations

import os
import socket
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Protocol as TypingProtocol, Sequence

import torch

from sslbench.sdk.api import DataError
from sslbench.sdk.protocol import Protocol
from sslbench.engine.cells import Cell, GridError, Outcome, build_grid, split_params
from sslbench.engine.plugins import Registry
from sslbench.engine.effort import Budget, count_step_flops, effort_figures, resolve_steps, step_shape, views_per_image
from sslbench.engine.evaluate import evaluate_cell, plugin_label, run_evaluators
from sslbench.engine.reuse import CELL_STATES, CellState, cell_state
from sslbench.engine.checkpoint import STATE_NAME, CheckpointPolicy, Checkpointer, load_state
from sslbench.engine.jobs import (
    CheckpointError, DataCache, Job, JobResult, build_method, commit_job, environment, load_checkpoint, prepare_cell, save_checkpoint,
)
from sslbench.engine.store import CHECKPOINT_NAME, Store
from sslbench.engine.train import DeviceAssert, Diverged, Reporter, pick_device, train

#: how often (seconds) a training process notes in the store that it is alive
HEARTBEAT_EVERY_S = 30.0


def _beating(store: Store, run_id: str, report: Reporter | None) -> Callable[..., None]:
    """``report`` wrapped so that the store hears from this process at least every
    :data:`HEARTBEAT_EVERY_S` while it trains (see :func:`sslbench.engine.store.owner_alive`)."""
    last = [time.monotonic()]

    def call(*args: Any, **kwargs: Any) -> None:
        if report is not None:
            report(*args, **kwargs)
        now = time.monotonic()
        if now - last[0] >= HEARTBEAT_EVERY_S:
            last[0] = now
            store.heartbeat(run_id)

    return call


def work_job(job: Job, registry: Registry, data_cache: DataCache | None = None, report: Reporter | None = None, device: torch.device | None = None) -> JobResult:
    """Worker side: do ``job`` (see :class:`~sslbench.engine.jobs.Job`) on ``device`` (default the
    cell's) without touching the store. Never raises for a run that diverges or crashes, a
    checkpoint that cannot be loaded or an evaluator that fails: the result says so. Ctrl-C ends it
    with status ``interrupted`` (the training checkpoint written at the stop lets the run resume)."""
    result = JobResult()
    try:
        _work(job, result, registry, data_cache or DataCache(), report, device)
    except KeyboardInterrupt as exc:
        result.status, result.message = "interrupted", str(exc) or "interrupted (Ctrl-C)"
    return result


def _work(job: Job, result: JobResult, registry: Registry, data_cache: DataCache, report: Reporter | None, device: torch.device | None) -> None:
    """:func:`work_job`, filling ``result`` as it goes (so that what was done before a Ctrl-C is kept)."""
    cell = job.cell
    device = device or pick_device(cell.device)
    result.where = f"{socket.gethostname()}:{os.getpid()} {device}"
    run_dir = Path(job.folder)
    run_dir.mkdir(parents=True, exist_ok=True)
    ckpt = run_dir / CHECKPOINT_NAME
    if job.kind == "train":
        try:
            data = data_cache.get(registry, cell, device)
            result.environment = environment(device)
            if data.note:  # what the data really are (e.g. "a lossy JPEG copy, not CIFAR-10") travels with the run
                result.environment["data_note"] = data.note
            checkpointer = Checkpointer(run_dir / STATE_NAME, CheckpointPolicy.parse(cell.checkpoint_every), job.meta)
            resume = load_state(run_dir / STATE_NAME, job.meta, device)  # left by an interrupted or killed attempt
            if resume is not None:
                where = f"epoch {resume['epoch'] + 1}" + (f" (batch {resume['batch'] + 1})" if resume["batch"] else "")
                result.message = f"resumed run {cell.run_id} from {where}, step {resume['step']}"
            method = build_method(registry, cell, data, device)
            protocol = Protocol.from_dict(cell.protocol)
            images, views = step_shape(method, data, protocol)[0], views_per_image(method, data)
            flops = count_step_flops(method, data, protocol) if method.trainable else 0.0
            budget = Budget.from_dict(cell.budget) if cell.budget else None
            steps = resolve_steps(budget, images, views, flops) if budget is not None else None
            trained = train(method, data, protocol, cell.epochs, cell.seed, cell.precision, report, checkpointer=checkpointer,
                            resume=resume, compile=cell.compile, deterministic=cell.deterministic, steps=steps)
            save_checkpoint(method, ckpt)
        except DeviceAssert as exc:  # the device is unusable for this process: store it, then stop the grid
            result.status, result.error, result.message = "error", str(exc), str(exc)
            raise
        except Diverged as exc:
            result.status, result.message, result.error, result.failed_step = "failed", str(exc), str(exc), exc.step
            return
        except Exception as exc:  # noqa: BLE001 - one broken run must not stop the grid
            result.status, result.error = "error", f"{type(exc).__name__}: {exc}\n{traceback.format_exc(limit=8)}"
            result.message = f"{plugin_label(registry, 'methods', cell.method)}: {type(exc).__name__}: {exc}"
            return
        result.trained, result.steps, result.history = True, trained.steps, trained.history
        result.figures = {"train_seconds": trained.seconds, "images_per_s": trained.images_per_s,
                          "augment_share": trained.augment_share, "peak_memory_mb": trained.peak_memory_mb}
        result.effort = {"steps": trained.steps, "images_seen": trained.images, "checkpoints": trained.checkpoints,
                         "checkpoint_seconds": round(trained.checkpoint_seconds, 4),
                         "resumed_from": list(trained.resumed_from) if trained.resumed_from else None,
                         "segments": trained.segments, "optimizer": trained.optimizer,
                         "compile_seconds": round(trained.compile_seconds, 3), "channels_last": trained.channels_last,
                         **effort_figures(trained.steps, trained.images, views, flops, budget, cell.epochs)}
        result.environment["numerics"] = trained.numerics
    try:  # evaluate the model as stored: load the checkpoint back with weights_only=True
        data = data_cache.get(registry, cell, device)
        method = load_checkpoint(registry, cell, data, device, ckpt)
    except Exception as exc:  # noqa: BLE001 - checkpoint (or the method's constructor) at fault
        what = str(exc) if isinstance(exc, CheckpointError) else f"{plugin_label(registry, 'methods', cell.method)}: {type(exc).__name__}: {exc}"
        result.status = "error"
        result.load_error = f"run {cell.run_id} ({cell.method}, seed {cell.seed}): {what}; the next run retrains it"
        return
    _, result.eval_errors = run_evaluators(cell, method, data, job.todo, registry, run_dir, device, into=result.evaluations)


def execute_cell(cell: Cell, store: Store, registry: Registry, data_cache: DataCache | None = None, report: Reporter | None = None) -> Outcome:
    """Train (or reuse, as :func:`cell_state` decides), checkpoint, embed, evaluate and store one
    cell in this process. Never raises for a run that diverges or crashes, nor for a checkpoint
    that cannot be loaded or an evaluator that fails: the outcome says so (naming the run, the
    plugin and the file) and the store records it. Raises :class:`DataError` when the cell's data
    set cannot be loaded, and lets KeyboardInterrupt through after recording the run as interrupted."""
    device = pick_device(cell.device)
    data_cache = data_cache or DataCache()
    job = prepare_cell(cell, store, registry, data_cache, device)
    if isinstance(job, Outcome):
        return job
    result = JobResult()
    try:
        _work(job, result, registry, data_cache, _beating(store, cell.run_id, report), device)
    except KeyboardInterrupt as exc:
        result.status, result.message = "interrupted", str(exc) or "interrupted (Ctrl-C)"
        commit_job(store, job, result)
        raise
    except DeviceAssert:
        commit_job(store, job, result)  # stored as this run's error; the grid stops (run_grid lets it through)
        raise
    return commit_job(store, job, result)


class Executor(TypingProtocol):
    """What :func:`run_grid` needs of an executor: run one cell (received as JSON) to its outcome."""

    def submit(self, cell: Cell, report: Reporter | None = None) -> Outcome: ...


class InProcessExecutor:
    """Runs cells one after another in this process, sharing loaded data between them."""

    def __init__(self, store: Store, registry: Registry) -> None:
        self.store = store
        self.registry = registry
        self.data_cache = DataCache()

    def submit(self, cell: Cell, report: Reporter | None = None) -> Outcome:
        # the cell crosses the executor boundary as JSON, as it would to a remote worker
        return execute_cell(Cell.from_json(cell.to_json()), self.store, self.registry, self.data_cache, report)


@dataclass
class GridRun:
    """What :func:`run_grid` did: one outcome per executed cell, in order; per data set that could not
    be loaded its :class:`DataError`; and the cells skipped because of it."""

    outcomes: list[Outcome] = field(default_factory=list)
    data_errors: dict[str, DataError] = field(default_factory=dict)
    skipped: list[Cell] = field(default_factory=list)


#: called when a data set cannot be loaded: (data set, the error, its cells that are skipped)
DataErrorHandler = Callable[[str, DataError, list[Cell]], None]


@dataclass
class GridCallbacks:
    """What :func:`run_grid` tells its caller (each optional): a cell starts (returns the reporter
    its training calls), a cell is done, a data set cannot be loaded, a cell waits for another
    process, and (concurrent executors) where a started cell runs."""

    on_start: Callable[[Cell], Reporter | None] | None = None
    on_done: Callable[[Outcome], None] | None = None
    on_data_error: DataErrorHandler | None = None
    on_wait: Callable[[Cell, Outcome, bool], None] | None = None
    on_where: Callable[[Cell, str], None] | None = None


#: how often (seconds) a grid looks again at runs another process is training
BUSY_POLL_S = 2.0


def run_grid(
    cells: Sequence[Cell], executor: Any, on_start: Callable[[Cell], Reporter | None] | None = None,
    on_done: Callable[[Outcome], None] | None = None, on_data_error: DataErrorHandler | None = None,
    on_wait: Callable[[Cell, Outcome, bool], None] | None = None, poll_s: float = BUSY_POLL_S,
    on_where: Callable[[Cell, str], None] | None = None,
) -> GridRun:
    """Submit every cell in order. A :class:`DataError` (the data set's files are missing or
    corrupt) skips the failing cell and every later cell of the same data set, since they need the
    same data; the cells of the other data sets go on. Each such data set is reported once to
    ``on_data_error`` and in :attr:`GridRun.data_errors`.

    A cell that another live process is training (outcome ``busy``) is set aside and the grid goes
    on; at the end the set-aside cells are submitted again every ``poll_s`` seconds until each is
    stored by its owner (then it is reused and evaluated here) or its owner died (then it is taken
    over, resuming from the owner's training checkpoint). ``on_wait(cell, outcome, first)`` hears
    of each wait. Several processes on one store thus split a grid between them.

    An executor with ``run_all(cells, callbacks, poll_s)`` (a concurrent one) gets the whole grid
    and applies the same rules; outcomes are in grid order either way."""
    callbacks = GridCallbacks(on_start, on_done, on_data_error, on_wait, on_where)
    run_all = getattr(executor, "run_all", None)
    if run_all is not None:
        result: GridRun = run_all(list(cells), callbacks, poll_s)
        order = [c.run_id for c in cells]
        result.outcomes.sort(key=lambda o: order.index(o.run_id))
        return result
    result = GridRun()
    waiting: list[Cell] = []

    def submit(cell: Cell, i: int) -> Outcome | None:
        report = on_start(cell) if on_start else None
        try:
            return executor.submit(cell, report)
        except DataError as exc:
            skip_data_set(result, cells, i, cell, exc, callbacks)
            return None

    def finish(cell: Cell, outcome: Outcome | None, first: bool) -> None:
        if outcome is None:
            return
        if outcome.status == "busy":
            waiting.append(cell)
            if on_wait:
                on_wait(cell, outcome, first)
            return
        result.outcomes.append(outcome)
        if on_done:
            on_done(outcome)

    for i, cell in enumerate(cells):
        if cell.dataset not in result.data_errors:
            finish(cell, submit(cell, i), True)
    while waiting:
        time.sleep(poll_s)
        again, waiting[:] = list(waiting), []
        for cell in again:
            if cell.dataset not in result.data_errors:
                finish(cell, submit(cell, cells.index(cell)), False)
    result.outcomes.sort(key=lambda o: [c.run_id for c in cells].index(o.run_id))
    return result


def skip_data_set(result: GridRun, cells: Sequence[Cell], i: int, cell: Cell, exc: DataError, callbacks: GridCallbacks) -> list[Cell]:
    """The per-data-set error policy: ``cells[i]`` (and every later cell of its data set) is
    skipped, the data set's error is noted once and reported."""
    skipped = [c for c in cells[i:] if c.dataset == cell.dataset]
    result.data_errors[cell.dataset] = exc
    result.skipped.extend(skipped)
    if callbacks.on_data_error:
        callbacks.on_data_error(cell.dataset, exc, skipped)
    return skipped


__all__ = [
    "CELL_STATES", "Cell", "CellState", "DataCache", "DataError", "Executor", "GridCallbacks", "GridError", "GridRun",
    "InProcessExecutor", "Outcome", "build_grid", "cell_state", "environment", "evaluate_cell", "execute_cell", "run_grid",
    "skip_data_set", "split_params", "work_job",
]

"""The runner: executes cells (see :mod:`sslbench.engine.cells`) against the results store, each
trained (or reused), embedded, evaluated and stored, and decides from the store what a cell needs
(:func:`cell_state`, the run-reuse rule).

The runner hands cells to an executor; :class:`InProcessExecutor` runs them here, one after the
other. A distributed executor only has to accept the same JSON and call :func:`execute_cell` against
the same store. :func:`run_grid` submits a grid and applies the per-data-set error policy: a data
set that cannot be loaded skips its own cells, the other data sets go on.
"""

from __future__ import annotations

import json
import os
import platform
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Protocol as TypingProtocol, Sequence

import torch

from sslbench import __version__
from sslbench.sdk.api import BuildContext, DataError, ImageData, Method
from sslbench.sdk.files import atomic_path
from sslbench.sdk.protocol import Protocol
from sslbench.engine.cells import Cell, GridError, Outcome, build_grid, digest, split_params
from sslbench.engine.plugins import Registry
from sslbench.engine.evaluate import evaluate_cell, plugin_label
from sslbench.engine.reuse import CELL_STATES, CellState, assess_cell, cell_provenance, cell_state, data_fingerprint
from sslbench.engine.limits import check_batch
from sslbench.engine.runlog import write_run_logs
from sslbench.engine.checkpoint import STATE_NAME, CheckpointPolicy, Checkpointer, load_state
from sslbench.engine.store import CHECKPOINT_NAME, RunClaimed, Store
from sslbench.engine.train import Diverged, Reporter, pick_device, train

def environment(device: torch.device) -> dict[str, Any]:
    """The software and machine a run trains on, stored with the run."""
    import sklearn
    import torchvision

    env = {
        "sslbench": __version__,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "torchvision": torchvision.__version__,
        "scikit-learn": sklearn.__version__,
        "device": str(device),
        "threads": torch.get_num_threads(),
        "machine": platform.machine(),
    }
    if device.type == "cuda":
        env["gpu"] = torch.cuda.get_device_name(device)
    try:
        env["load_average"] = list(os.getloadavg())
    except OSError:
        pass
    return env


class DataCache:
    """Data sets loaded once per process, moved to the device once, with the fingerprint of what was
    loaded (see :func:`sslbench.sdk.data.data_fingerprint`)."""

    def __init__(self) -> None:
        self._cache: dict[str, tuple[ImageData, str]] = {}

    def get(self, registry: Registry, cell: Cell, device: torch.device) -> ImageData:
        return self.get_with_fingerprint(registry, cell, device)[0]

    def get_with_fingerprint(self, registry: Registry, cell: Cell, device: torch.device) -> tuple[ImageData, str]:
        """The cell's data on ``device`` and their fingerprint. A loader that fails in any way other
        than a :class:`DataError` (a plugin bug) is turned into one that names the plugin."""
        key = digest([cell.dataset, cell.dataset_params, cell.data_dir, str(device)])
        if key not in self._cache:
            plugin = registry.lookup("datasets", cell.dataset)()
            try:
                data = plugin.load(cell.data_dir, **cell.dataset_params)
            except DataError:
                raise
            except Exception as exc:  # noqa: BLE001 - a broken loader is that data set's failure, named
                origin = registry.origin.get(("datasets", cell.dataset), "?")
                raise DataError(f"data set {cell.dataset!r} (plugin {origin!r}) failed to load: {type(exc).__name__}: {exc}") from exc
            if not isinstance(data, ImageData):
                raise DataError(f"data set {cell.dataset!r}: load() returned {type(data).__name__}, not ImageData")
            self._cache[key] = (data.to(device), data_fingerprint(data))
        return self._cache[key]


def _build_method(registry: Registry, cell: Cell, data: ImageData, device: torch.device) -> Method:
    protocol = Protocol.from_dict(cell.protocol)
    ctx = BuildContext(
        protocol=protocol, image_shape=data.image_shape, num_train=data.train_x.shape[0],
        num_classes=data.num_classes, device=device, architectures=registry.architectures,
    )
    torch.manual_seed(cell.seed)
    cls = registry.lookup("methods", cell.method)
    return cls(ctx, **cell.method_params).to(device)


def _save_checkpoint(method: Method, path: Path) -> None:
    with atomic_path(path) as tmp:
        torch.save(method.state_dict(), tmp)


def _load_checkpoint(registry: Registry, cell: Cell, data: ImageData, device: torch.device, path: Path) -> Method:
    """The cell's method with the weights stored at ``path`` (``weights_only=True``). Raises
    :class:`CheckpointError` naming the file when it is missing, truncated or does not fit."""
    method = _build_method(registry, cell, data, device)
    try:
        state = torch.load(path, map_location=device, weights_only=True)
        method.load_state_dict(state)
    except Exception as exc:  # noqa: BLE001 - truncated, rejected by weights_only, or the wrong shapes
        raise CheckpointError(f"checkpoint {path} cannot be loaded ({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''})") from exc
    return method


class CheckpointError(RuntimeError):
    """A stored checkpoint cannot be loaded; the message names the file."""


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


def execute_cell(cell: Cell, store: Store, registry: Registry, data_cache: DataCache | None = None, report: Reporter | None = None) -> Outcome:
    """Train (or reuse, as :func:`cell_state` decides), checkpoint, embed, evaluate and store one
    cell. Never raises for a run that diverges or crashes, nor for a checkpoint that cannot be
    loaded or an evaluator that fails: the outcome says so (naming the run, the plugin and the
    file) and the store records it. Raises :class:`DataError` when the cell's data set cannot be
    loaded, and lets KeyboardInterrupt through after recording the run as interrupted."""
    device = pick_device(cell.device)
    data_cache = data_cache or DataCache()
    run_id = cell.run_id
    outcome = Outcome(run_id, cell.method, cell.dataset, cell.seed, status="done")
    data, data_fp = data_cache.get_with_fingerprint(registry, cell, device)
    # a --batch-size the data cannot fill is that data set's error (BatchSizeError is a DataError)
    check_batch(Protocol.from_dict(cell.protocol), data.train_x.shape[0], cell.dataset, registry.lookup("datasets", cell.dataset).protocol)
    state, reasons = assess_cell(store, cell, registry, data_fp)
    protocol = Protocol.from_dict(cell.protocol)
    if cell.suite:
        store.set_suite(run_id, cell.suite)
    if state == "failed":
        record = store.get_run(run_id)
        assert record is not None
        outcome.reused = True
        outcome.status, outcome.message = "failed", record.error or ""
        return outcome
    if state == "complete":
        outcome.reused = True  # nothing to evaluate: the checkpoint is not even loaded
        return outcome
    if state == "evaluate":
        outcome.reused = True
        try:
            method = _load_checkpoint(registry, cell, data, device, store.checkpoint_path(run_id))
        except Exception as exc:  # noqa: BLE001 - checkpoint (or the method's constructor) at fault
            return _run_error(store, outcome, registry, cell, exc, mark=True)
        outcome.evaluated, outcome.errors = evaluate_cell(cell, method, data, store, registry, store.run_dir(run_id), device)
        return outcome
    if state == "stale":
        outcome.stale = reasons
    env = environment(device)
    if data.note:  # what the data really are (e.g. "a lossy JPEG copy, not CIFAR-10") travels with the run
        env["data_note"] = data.note
    provenance = cell_provenance(registry, cell, data_fp)
    meta = {"run_id": run_id, "provenance": provenance}
    folder, resume = _resumable(store, cell, meta, device)
    try:
        folder = store.start_run(run_id, json.loads(cell.to_json()), cell.protocol, protocol.hash(), env, cell.suite, provenance, folder)
    except RunClaimed as exc:
        outcome.status, outcome.message = "busy", f"being trained by {exc.owner}"
        return outcome
    run_dir = store.home / "runs" / folder
    run_dir.mkdir(parents=True, exist_ok=True)
    ckpt = run_dir / CHECKPOINT_NAME
    checkpointer = Checkpointer(run_dir / STATE_NAME, CheckpointPolicy.parse(cell.checkpoint_every), meta)
    if resume is not None:
        where = f"epoch {resume['epoch'] + 1}" + (f" (batch {resume['batch'] + 1})" if resume["batch"] else "")
        outcome.message = f"resumed run {run_id} from {where}, step {resume['step']}"
    try:
        method = _build_method(registry, cell, data, device)
        result = train(method, data, protocol, cell.epochs, cell.seed, cell.precision, _beating(store, run_id, report),
                       checkpointer=checkpointer, resume=resume)
        _save_checkpoint(method, ckpt)
    except Diverged as exc:
        store.finish_run(run_id, status="failed", error=str(exc), failed_step=exc.step)
        outcome.status, outcome.message = "failed", str(exc)
        return outcome
    except KeyboardInterrupt as exc:
        store.finish_run(run_id, status="interrupted", error=f"{exc or 'interrupted (Ctrl-C)'}; the same command resumes it")
        raise
    except Exception as exc:  # noqa: BLE001 - one broken run must not stop the grid
        store.finish_run(run_id, status="error", error=f"{type(exc).__name__}: {exc}\n{traceback.format_exc(limit=8)}")
        outcome.status, outcome.message = "error", f"{plugin_label(registry, 'methods', cell.method)}: {type(exc).__name__}: {exc}"
        return outcome
    effort = {"steps": result.steps, "images_seen": result.images, "checkpoints": result.checkpoints,
              "checkpoint_seconds": round(result.checkpoint_seconds, 4),
              "resumed_from": list(result.resumed_from) if result.resumed_from else None,
              "segments": result.segments}
    store.finish_run(
        run_id, status="done", train_seconds=result.seconds, images_per_s=result.images_per_s,
        augment_share=result.augment_share, peak_memory_mb=result.peak_memory_mb, history=result.history, effort=effort,
    )
    try:
        write_run_logs(run_dir, result.history, f"{cell.method} on {cell.dataset}, seed {cell.seed}", result.steps)
    except Exception as exc:  # noqa: BLE001 - the run is stored; its curve files are a convenience
        outcome.errors.append(f"run {run_id}: could not write its loss logs into {run_dir}: {type(exc).__name__}: {exc}")
    checkpointer.clear()  # the run is stored: its training state was only for resuming
    try:  # evaluate the model as stored: load the checkpoint back with weights_only=True
        method = _load_checkpoint(registry, cell, data, device, ckpt)
    except Exception as exc:  # noqa: BLE001
        return _run_error(store, outcome, registry, cell, exc, mark=True)
    outcome.evaluated, outcome.errors = evaluate_cell(cell, method, data, store, registry, run_dir, device)
    return outcome


def _resumable(store: Store, cell: Cell, meta: dict[str, Any], device: torch.device) -> tuple[str | None, dict[str, Any] | None]:
    """Where an interrupted training of the cell's run left its training state, and that state
    when it belongs to this run and this code and data (else the run starts again): the folder of
    an interrupted record, or of an interrupted retrain of a stored result. ``--force`` never
    resumes."""
    if cell.force:
        return None, None
    record = store.get_run(cell.run_id)
    folder = None
    if record is not None and record.status == "interrupted":
        folder = record.folder_name
    elif record is not None:
        folder = store.attempt_folder(cell.run_id)
    if folder is None:
        return None, None
    state = load_state(store.home / "runs" / folder / STATE_NAME, meta, device)
    return folder, state


def _run_error(store: Store, outcome: Outcome, registry: Registry, cell: Cell, exc: Exception, mark: bool) -> Outcome:
    """End a cell whose stored run cannot be used (its checkpoint is unreadable): the run is marked
    ``error`` (its metrics stay; the next run retrains it and keeps this one as superseded)."""
    what = str(exc) if isinstance(exc, CheckpointError) else f"{plugin_label(registry, 'methods', cell.method)}: {type(exc).__name__}: {exc}"
    message = f"run {cell.run_id} ({cell.method}, seed {cell.seed}): {what}; the next run retrains it"
    if mark:
        store.mark_error(cell.run_id, message)
    outcome.status, outcome.message = "error", message
    return outcome


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


#: how often (seconds) a grid looks again at runs another process is training
BUSY_POLL_S = 2.0


def run_grid(
    cells: Sequence[Cell], executor: Executor, on_start: Callable[[Cell], Reporter | None] | None = None,
    on_done: Callable[[Outcome], None] | None = None, on_data_error: DataErrorHandler | None = None,
    on_wait: Callable[[Cell, Outcome, bool], None] | None = None, poll_s: float = BUSY_POLL_S,
) -> GridRun:
    """Submit every cell in order. A :class:`DataError` (the data set's files are missing or
    corrupt) skips the failing cell and every later cell of the same data set, since they need the
    same data; the cells of the other data sets go on. Each such data set is reported once to
    ``on_data_error`` and in :attr:`GridRun.data_errors`.

    A cell that another live process is training (outcome ``busy``) is set aside and the grid goes
    on; at the end the set-aside cells are submitted again every ``poll_s`` seconds until each is
    stored by its owner (then it is reused and evaluated here) or its owner died (then it is taken
    over, resuming from the owner's training checkpoint). ``on_wait(cell, outcome, first)`` hears
    of each wait. Several processes on one store thus split a grid between them."""
    result = GridRun()
    waiting: list[Cell] = []

    def submit(cell: Cell, i: int) -> Outcome | None:
        report = on_start(cell) if on_start else None
        try:
            return executor.submit(cell, report)
        except DataError as exc:
            skipped = [c for c in cells[i:] if c.dataset == cell.dataset]
            result.data_errors[cell.dataset] = exc
            result.skipped.extend(skipped)
            if on_data_error:
                on_data_error(cell.dataset, exc, skipped)
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


__all__ = [
    "CELL_STATES", "Cell", "CellState", "DataCache", "DataError", "Executor", "GridError", "GridRun", "InProcessExecutor",
    "Outcome", "build_grid", "cell_state", "environment", "evaluate_cell", "execute_cell", "run_grid", "split_params",
]

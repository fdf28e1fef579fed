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
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Literal, Protocol as TypingProtocol, Sequence

import torch

from sslbench import __version__
from sslbench.sdk.api import BuildContext, DataError, EvalInputs, ImageData, Method
from sslbench.sdk.data import validation_index
from sslbench.sdk.files import atomic_path
from sslbench.sdk.protocol import Protocol
from sslbench.engine.cells import Cell, GridError, Outcome, build_grid, digest, split_params
from sslbench.engine.decoding import train_frozen_decoder
from sslbench.engine.plugins import Registry
from sslbench.engine.store import Store
from sslbench.engine.train import Diverged, Reporter, embed_all, pick_device, train

#: what executing a cell would do, given what the store holds (see :func:`cell_state`)
CellState = Literal["complete", "evaluate", "train", "retrain", "failed"]
CELL_STATES: tuple[CellState, ...] = ("complete", "evaluate", "train", "retrain", "failed")


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
    """Data sets loaded once per process, moved to the device once."""

    def __init__(self) -> None:
        self._cache: dict[str, ImageData] = {}

    def get(self, registry: Registry, cell: Cell, device: torch.device) -> ImageData:
        key = digest([cell.dataset, cell.dataset_params, cell.data_dir, str(device)])
        if key not in self._cache:
            plugin = registry.lookup("datasets", cell.dataset)()
            data = plugin.load(cell.data_dir, **cell.dataset_params)
            self._cache[key] = data.to(device)
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


def cell_state(store: Store | None, cell: Cell) -> CellState:
    """The run-reuse rule, the one place it is decided. ``train``: nothing is stored for the run id;
    ``failed``: a stored divergence, kept and not retried; ``complete``: finished, its checkpoint is
    present and every evaluator of the cell (for its options and selection rule) is stored;
    ``evaluate``: the same but some evaluator is missing, so only evaluation runs; ``retrain``: a
    record that cannot be reused (still ``running`` after an interruption, crashed, or its
    checkpoint is gone) or ``cell.force``. ``store`` None (no store created yet) stores nothing."""
    record = store.get_run(cell.run_id) if store is not None else None
    if record is None:
        return "train"
    if cell.force:
        return "retrain"
    if record.status == "failed":
        return "failed"
    if record.status == "done" and store.checkpoint_path(cell.run_id).is_file():
        stored = all(store.has_metrics(cell.run_id, name, options, cell.selection) for name, options in cell.evaluators)
        return "complete" if stored else "evaluate"
    return "retrain"


def execute_cell(cell: Cell, store: Store, registry: Registry, data_cache: DataCache | None = None, report: Reporter | None = None) -> Outcome:
    """Train (or reuse, as :func:`cell_state` decides), checkpoint, embed, evaluate and store one
    cell. Never raises for a run that diverges or crashes: the outcome says so and the store records
    it. Raises :class:`DataError` when the cell's data set cannot be loaded."""
    device = pick_device(cell.device)
    data_cache = data_cache or DataCache()
    run_id = cell.run_id
    outcome = Outcome(run_id, cell.method, cell.dataset, cell.seed, status="done")
    data = data_cache.get(registry, cell, device)
    state = cell_state(store, cell)
    run_dir = store.run_dir(run_id)
    ckpt = store.checkpoint_path(run_id)
    protocol = Protocol.from_dict(cell.protocol)
    if state == "failed":
        record = store.get_run(run_id)
        assert record is not None
        outcome.reused = True
        outcome.status, outcome.message = "failed", record.error or ""
        if cell.suite:
            store.set_suite(run_id, cell.suite)
        return outcome
    if state in ("complete", "evaluate"):
        outcome.reused = True
        method = _build_method(registry, cell, data, device)
        method.load_state_dict(torch.load(ckpt, map_location=device, weights_only=True))
    else:
        env = environment(device)
        if data.note:  # what the data really are (e.g. "a lossy JPEG copy, not CIFAR-10") travels with the run
            env["data_note"] = data.note
        store.start_run(run_id, json.loads(cell.to_json()), cell.protocol, protocol.hash(), env, cell.suite)
        method = _build_method(registry, cell, data, device)
        try:
            result = train(method, data, protocol, cell.epochs, cell.seed, cell.precision, report)
        except Diverged as exc:
            store.finish_run(run_id, status="failed", error=str(exc), failed_step=exc.step)
            outcome.status, outcome.message = "failed", str(exc)
            return outcome
        except Exception as exc:  # noqa: BLE001 - one broken run must not stop the grid
            store.finish_run(run_id, status="error", error=f"{type(exc).__name__}: {exc}\n{traceback.format_exc(limit=8)}")
            outcome.status, outcome.message = "error", f"{type(exc).__name__}: {exc}"
            return outcome
        _save_checkpoint(method, ckpt)
        # evaluate the model as stored: load the checkpoint back with weights_only=True
        method = _build_method(registry, cell, data, device)
        method.load_state_dict(torch.load(ckpt, map_location=device, weights_only=True))
        store.finish_run(
            run_id, status="done", train_seconds=result.seconds, images_per_s=result.images_per_s,
            augment_share=result.augment_share, peak_memory_mb=result.peak_memory_mb, history=result.history,
        )
    outcome.evaluated = evaluate_cell(cell, method, data, store, registry, run_dir, device)
    return outcome


def evaluate_cell(cell: Cell, method: Method, data: ImageData, store: Store, registry: Registry, run_dir: Path, device: torch.device) -> list[str]:
    """Run each evaluator whose metrics (for these options and this selection rule) are not stored
    yet. An evaluator that does not apply, or crashes, is stored as a note; the others go on."""
    todo = [(n, o) for n, o in cell.evaluators if cell.force or not store.has_metrics(cell.run_id, n, o, cell.selection)]
    if not todo:
        return []
    train_z = embed_all(method, data.train_x)
    test_z = embed_all(method, data.test_x)
    inputs = EvalInputs(
        train_z=train_z, test_z=test_z, data=data, method=method, device=device, seed=cell.seed,
        selection=cell.selection, val_index=validation_index(data.train_y).to(device), run_dir=str(run_dir),
        decoder_factory=train_frozen_decoder,
    )
    done = []
    for name, options in todo:
        evaluator = registry.lookup("evaluators", name)()
        reason = evaluator.applies(inputs)
        if reason is None and not torch.isfinite(train_z).all():
            reason = "the representation contains NaN/inf"
        if reason is not None:
            store.put_metrics(cell.run_id, name, options, cell.selection, {}, note=f"skipped: {reason}")
            continue
        torch.manual_seed(cell.seed)
        try:
            values = evaluator.evaluate(inputs, **options)
        except Exception as exc:  # noqa: BLE001 - report, keep the other evaluators
            store.put_metrics(cell.run_id, name, options, cell.selection, {}, note=f"error: {type(exc).__name__}: {exc}")
            continue
        store.put_metrics(cell.run_id, name, options, cell.selection, values)
        done.append(name)
    return done


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


def run_grid(
    cells: Sequence[Cell], executor: Executor, on_start: Callable[[Cell], Reporter | None] | None = None,
    on_done: Callable[[Outcome], None] | None = None, on_data_error: DataErrorHandler | None = None,
) -> GridRun:
    """Submit every cell in order. A :class:`DataError` (the data set's files are missing or
    corrupt) skips the failing cell and every later cell of the same data set, since they need the
    same data; the cells of the other data sets go on. Each such data set is reported once to
    ``on_data_error`` and in :attr:`GridRun.data_errors`."""
    result = GridRun()
    for i, cell in enumerate(cells):
        if cell.dataset in result.data_errors:
            continue
        report = on_start(cell) if on_start else None
        try:
            outcome = executor.submit(cell, report)
        except DataError as exc:
            skipped = [c for c in cells[i:] if c.dataset == cell.dataset]
            result.data_errors[cell.dataset] = exc
            result.skipped.extend(skipped)
            if on_data_error:
                on_data_error(cell.dataset, exc, skipped)
            continue
        result.outcomes.append(outcome)
        if on_done:
            on_done(outcome)
    return result


__all__ = [
    "CELL_STATES", "Cell", "CellState", "DataCache", "DataError", "Executor", "GridError", "GridRun", "InProcessExecutor",
    "Outcome", "build_grid", "cell_state", "environment", "evaluate_cell", "execute_cell", "run_grid", "split_params",
]

"""A cell's work split at the process boundary, so that the driver stays the only writer of the store.

:func:`prepare_cell` (driver) decides from the store what a cell needs, claims its run and returns a
:class:`Job`, or the cell's :class:`Outcome` when nothing is to be trained or evaluated; a worker
(:func:`sslbench.engine.runner.work_job`, in this process, a pool process or a Ray task) does the
job without touching the store and returns a :class:`JobResult`; :func:`commit_job` (driver) stores
it. Jobs and results are plain, picklable data: the cell as JSON, the run folder as a path the
worker can reach (this machine, or a cluster's shared results folder), numbers, text.

Also here, as both sides need them: :class:`DataCache` (data loaded once per process),
:func:`environment`, and building a cell's method and saving / loading its weights.
"""

from __future__ import annotations

import json
import os
import platform
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from sslbench import __version__
from sslbench.sdk.api import BuildContext, DataError, ImageData, Method
from sslbench.sdk.files import atomic_path
from sslbench.sdk.protocol import Protocol
from sslbench.engine.cells import Cell, Outcome, digest
from sslbench.engine.checkpoint import STATE_NAME
from sslbench.engine.evaluate import EvalRecord, missing_evaluators, store_evaluations
from sslbench.engine.limits import check_batch
from sslbench.engine.plugins import Registry
from sslbench.engine.reuse import assess_cell, cell_provenance, data_fingerprint
from sslbench.engine.runlog import write_run_logs
from sslbench.engine.store import CHECKPOINT_NAME, RESULT_STATUSES, RunClaimed, Store
from sslbench.engine.train import pick_device


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


def build_method(registry: Registry, cell: Cell, data: ImageData, device: torch.device) -> Method:
    """The cell's method, initialised under ``torch.manual_seed(cell.seed)``, on ``device``."""
    protocol = Protocol.from_dict(cell.protocol)
    ctx = BuildContext(
        protocol=protocol, image_shape=data.image_shape, num_train=data.train_x.shape[0],
        num_classes=data.num_classes, device=device, architectures=registry.architectures,
    )
    torch.manual_seed(cell.seed)
    cls = registry.lookup("methods", cell.method)
    return cls(ctx, **cell.method_params).to(device)


def save_checkpoint(method: Method, path: Path) -> None:
    with atomic_path(path) as tmp:
        torch.save(method.state_dict(), tmp)


class CheckpointError(RuntimeError):
    """A stored checkpoint cannot be loaded; the message names the file."""


def load_checkpoint(registry: Registry, cell: Cell, data: ImageData, device: torch.device, path: Path) -> Method:
    """The cell's method with the weights stored at ``path`` (``weights_only=True``). Raises
    :class:`CheckpointError` naming the file when it is missing, truncated or does not fit."""
    method = build_method(registry, cell, data, device)
    try:
        state = torch.load(path, map_location=device, weights_only=True)
        method.load_state_dict(state)
    except Exception as exc:  # noqa: BLE001 - truncated, rejected by weights_only, or the wrong shapes
        raise CheckpointError(f"checkpoint {path} cannot be loaded ({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''})") from exc
    return method


@dataclass
class Job:
    """What a worker needs to do for one cell: ``kind`` train (train, save the weights, evaluate) or
    evaluate (load the stored weights, evaluate); ``folder`` is the run's folder (absolute), where
    the worker writes ``model.pt`` and its training checkpoints; ``todo`` the evaluators to run,
    each ``(name, options, provenance)``; ``meta`` identifies the run in its training checkpoints."""

    cell_json: str
    kind: str
    folder: str
    todo: list[tuple[str, dict[str, Any], dict[str, Any] | None]] = field(default_factory=list)
    meta: dict[str, Any] = field(default_factory=dict)
    stale: list[str] = field(default_factory=list)

    @property
    def cell(self) -> Cell:
        return Cell.from_json(self.cell_json)

    @property
    def run_id(self) -> str:
        return self.cell.run_id


@dataclass
class JobResult:
    """What a worker did. ``status``: done, failed (diverged: ``failed_step``), error (the method
    crashed: ``error`` for the store, ``message`` for the user), interrupted (Ctrl-C: training may
    resume from its checkpoint); ``trained`` when training finished (its figures follow);
    ``load_error`` when the weights could not be loaded back; ``evaluations`` per evaluator run."""

    status: str = "done"
    message: str = ""
    error: str | None = None
    failed_step: int | None = None
    trained: bool = False
    figures: dict[str, Any] = field(default_factory=dict)
    history: dict[str, list[float]] = field(default_factory=dict)
    effort: dict[str, Any] = field(default_factory=dict)
    steps: int = 0
    environment: dict[str, Any] = field(default_factory=dict)
    load_error: str | None = None
    evaluations: list[EvalRecord] = field(default_factory=list)
    eval_errors: list[str] = field(default_factory=list)
    #: where the job ran (host:pid and device), for the display
    where: str = ""


def prepare_cell(cell: Cell, store: Store, registry: Registry, data_cache: DataCache | None = None, device: torch.device | None = None) -> Job | Outcome:
    """Driver side: load the cell's data (for their fingerprint and the batch-size check), decide
    from the store what the cell needs, and either end it here (stored failure, complete, another
    live process trains it: ``busy``) or claim its run and return the :class:`Job`. Raises
    :class:`DataError` when the data cannot be loaded."""
    device = device or pick_device(cell.device)
    data_cache = data_cache or DataCache()
    run_id = cell.run_id
    outcome = Outcome(run_id, cell.method, cell.dataset, cell.seed, status="done")
    data, data_fp = data_cache.get_with_fingerprint(registry, cell, device)
    # a --batch-size the data cannot fill is that data set's error (BatchSizeError is a DataError)
    check_batch(Protocol.from_dict(cell.protocol), data.train_x.shape[0], cell.dataset, registry.lookup("datasets", cell.dataset).protocol)
    before = store.get_run(run_id)  # what this process decides on: a result it would replace, or none
    state, reasons = assess_cell(store, cell, registry, data_fp)
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
        return Job(cell.to_json(), "evaluate", str(store.run_folder(run_id).resolve()), missing_evaluators(cell, store, registry))
    provenance = cell_provenance(registry, cell, data_fp)
    meta = {"run_id": run_id, "provenance": provenance}
    env = environment(device)
    if data.note:  # what the data really are (e.g. "a lossy JPEG copy, not CIFAR-10") travels with the run
        env["data_note"] = data.note
    try:
        folder = store.start_run(run_id, json.loads(cell.to_json()), cell.protocol, Protocol.from_dict(cell.protocol).hash(), env,
                                 cell.suite, provenance, resumable_folder(store, cell),
                                 replaces=before is not None and before.status in RESULT_STATUSES)
    except RunClaimed as exc:
        outcome.status, outcome.message = "busy", f"being trained by {exc.owner}"
        return outcome
    run_dir = store.home / "runs" / folder
    run_dir.mkdir(parents=True, exist_ok=True)
    todo = missing_evaluators(cell, None, registry)  # a stored training has no metrics under its id yet
    return Job(cell.to_json(), "train", str(run_dir.resolve()), todo, meta, reasons if state == "stale" else [])


def resumable_folder(store: Store, cell: Cell) -> str | None:
    """The folder where an interrupted training of the cell's run left its training state (the
    worker resumes from it when the state belongs to this run and this code and data): the folder
    of an interrupted record, or of an interrupted retrain of a stored result. ``--force`` never
    resumes."""
    if cell.force:
        return None
    record = store.get_run(cell.run_id)
    if record is not None and record.status == "interrupted":
        return record.folder_name
    if record is not None:
        return store.attempt_folder(cell.run_id)
    return None


def commit_job(store: Store, job: Job, result: JobResult) -> Outcome:
    """Driver side: store what a worker did for ``job`` (the run's end, its loss logs, its metrics)
    and return the cell's outcome. The training checkpoint is removed once the run is stored."""
    cell = job.cell
    run_id = cell.run_id
    outcome = Outcome(run_id, cell.method, cell.dataset, cell.seed, status="done", reused=job.kind == "evaluate",
                      message=result.message, stale=list(job.stale))
    run_dir = Path(job.folder)
    if job.kind == "train" and not result.trained:
        if result.status == "interrupted":
            store.finish_run(run_id, status="interrupted", error=f"{result.message or 'interrupted (Ctrl-C)'}; the same command resumes it")
            outcome.status = "interrupted"
            return outcome
        store.finish_run(run_id, status=result.status, error=result.error, failed_step=result.failed_step, environment=result.environment or None)
        outcome.status = result.status
        return outcome
    if job.kind == "train":
        store.finish_run(run_id, status="done", history=result.history, effort=result.effort, environment=result.environment or None, **result.figures)
        try:
            write_run_logs(run_dir, result.history, f"{cell.method} on {cell.dataset}, seed {cell.seed}", result.steps)
        except Exception as exc:  # noqa: BLE001 - the run is stored; its curve files are a convenience
            outcome.errors.append(f"run {run_id}: could not write its loss logs into {run_dir}: {type(exc).__name__}: {exc}")
        (run_dir / STATE_NAME).unlink(missing_ok=True)  # the run is stored: its training state was only for resuming
    if result.load_error is not None:
        store.mark_error(run_id, result.load_error)
        outcome.status, outcome.message = "error", result.load_error
        return outcome
    outcome.evaluated, errors = store_evaluations(store, cell, result.evaluations)
    # the worker's own list, unless a Ctrl-C cut it short (then what the stored notes say)
    outcome.errors.extend(result.eval_errors if result.status != "interrupted" else list(dict.fromkeys(errors)))
    if result.status == "interrupted":
        outcome.status = "interrupted"
    return outcome


__all__ = [
    "CHECKPOINT_NAME", "CheckpointError", "DataCache", "Job", "JobResult", "build_method", "commit_job", "environment",
    "load_checkpoint", "prepare_cell", "resumable_folder", "save_checkpoint",
]

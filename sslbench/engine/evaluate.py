"""Evaluation of a trained run: embed train and test with the frozen encoder once, run each
evaluator whose metrics are not stored yet, check every value against the evaluator's declarations
and store it. A fault is that evaluator's (or, for ``embed``, that run's) alone: stored as an error
note naming the run and the plugin, retried on the next run, and the other evaluators go on.

Three steps, so that a worker process that cannot write the store can evaluate:
:func:`missing_evaluators` (what the store lacks, read by the driver), :func:`run_evaluators` (the
work, no store) and :func:`store_evaluations` (the driver writes); :func:`evaluate_cell` is the three
in one process."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from sslbench.sdk.api import EvalInputs, ImageData, Method
from sslbench.sdk.data import validation_index
from sslbench.sdk.metrics import check_values
from sslbench.engine.cells import Cell
from sslbench.engine.decoding import train_frozen_decoder
from sslbench.engine.plugins import Registry
from sslbench.engine.reuse import eval_provenance
from sslbench.engine.store import ERROR_NOTE, Store
from sslbench.engine.train import embed_all

#: an evaluator to run: (name, options, the provenance its metrics are stored with)
EvalTodo = tuple[str, dict[str, Any], "dict[str, Any] | None"]


@dataclass
class EvalRecord:
    """One evaluator's result, as it is to be stored: its ``values`` (a result), or a ``note``
    (skipped: why; failed: ``error:`` and the message); ``stored`` whether it counts as evaluated."""

    name: str
    options: dict[str, Any]
    values: dict[str, float] = field(default_factory=dict)
    note: str | None = None
    provenance: dict[str, Any] | None = None
    stored: bool = False


def plugin_label(registry: Registry, kind: str, name: str) -> str:
    return f"{kind[:-1]} {name!r} (plugin {registry.origin.get((kind, name), '?')!r})"


def missing_evaluators(cell: Cell, store: Store | None, registry: Registry) -> list[EvalTodo]:
    """The cell's evaluators whose metrics (for these options and this selection rule, by the
    current evaluator code) ``store`` does not hold (all of them without a store, or with --force)."""
    return [(n, o, eval_provenance(registry, n, cell)) for n, o in cell.evaluators
            if store is None or cell.force or not store.has_metrics(cell.run_id, n, o, cell.selection, eval_provenance(registry, n, cell))]


def run_evaluators(cell: Cell, method: Method, data: ImageData, todo: list[EvalTodo], registry: Registry, run_dir: Path, device: torch.device, into: list[EvalRecord] | None = None) -> tuple[list[EvalRecord], list[str]]:
    """Run each evaluator of ``todo`` on the frozen representations; touches no store. Returns the
    records to store, in order (appended to ``into`` as they are made, when given) and the error
    messages. An evaluator that does not apply gives a note; one that crashes or returns something
    that is not a finite number per declared metric gives an error note; the others go on. An
    encoder whose ``embed`` fails fails every evaluator of the run, named."""
    records: list[EvalRecord] = [] if into is None else into
    if not todo:
        return records, []
    errors: list[str] = []
    where = f"run {cell.run_id} ({cell.method}, seed {cell.seed})"
    try:
        train_z = embed_all(method, data.train_x)
        test_z = embed_all(method, data.test_x)
    except Exception as exc:  # noqa: BLE001 - the method's embed() is at fault; no evaluator can run
        message = f"{where}: {plugin_label(registry, 'methods', cell.method)} embed() raised {type(exc).__name__}: {exc}"
        records.extend(EvalRecord(name, options, note=f"{ERROR_NOTE} {message}") for name, options, _ in todo)
        return records, [message]
    inputs = EvalInputs(
        train_z=train_z, test_z=test_z, data=data, method=method, device=device, seed=cell.seed,
        selection=cell.selection, val_index=validation_index(data.train_y).to(device), run_dir=str(run_dir),
        decoder_factory=train_frozen_decoder,
    )
    for name, options, provenance in todo:
        try:
            cls = registry.lookup("evaluators", name)
            evaluator = cls()
            reason = evaluator.applies(inputs)
            if reason is None and not torch.isfinite(train_z).all():
                reason = "the representation contains NaN/inf"
            if reason is not None:
                records.append(EvalRecord(name, options, note=f"skipped: {reason}", provenance=provenance))
                continue
            torch.manual_seed(cell.seed)
            values = check_values(cls.metrics, evaluator.evaluate(inputs, **options))
        except Exception as exc:  # noqa: BLE001 - report, keep the other evaluators
            message = f"{where}: {plugin_label(registry, 'evaluators', name)}: {type(exc).__name__}: {exc}"
            records.append(EvalRecord(name, options, note=f"{ERROR_NOTE} {message}", provenance=provenance))
            errors.append(message)
            continue
        records.append(EvalRecord(name, options, values={k: float(v) for k, v in values.items()}, provenance=provenance, stored=True))
    return records, errors


def store_evaluations(store: Store, cell: Cell, records: list[EvalRecord]) -> tuple[list[str], list[str]]:
    """Store each record under the cell's run; returns (evaluators that stored metrics, the
    messages of the error notes)."""
    done, errors = [], []
    for r in records:
        store.put_metrics(cell.run_id, r.name, r.options, cell.selection, r.values, note=r.note, provenance=r.provenance)
        if r.stored:
            done.append(r.name)
        elif r.note and r.note.startswith(ERROR_NOTE):
            errors.append(r.note[len(ERROR_NOTE):].strip())
    return done, errors


def evaluate_cell(cell: Cell, method: Method, data: ImageData, store: Store, registry: Registry, run_dir: Path, device: torch.device) -> tuple[list[str], list[str]]:
    """Run each evaluator whose metrics are not stored yet and store what it gives; returns
    (evaluators that stored metrics, error messages). See :func:`run_evaluators`."""
    todo = missing_evaluators(cell, store, registry)
    if not todo:
        return [], []
    records, errors = run_evaluators(cell, method, data, todo, registry, run_dir, device)
    done, _ = store_evaluations(store, cell, records)
    return done, errors


__all__ = ["EvalRecord", "EvalTodo", "evaluate_cell", "missing_evaluators", "plugin_label", "run_evaluators", "store_evaluations"]

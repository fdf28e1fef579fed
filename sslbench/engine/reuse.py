"""The run-reuse rule: what executing a cell would do given what the store holds
(:func:`cell_state`), and whether a stored result is stale because the code or the data that made it
have changed since (see :mod:`sslbench.engine.provenance`)."""

from __future__ import annotations

import json
from typing import Any, Literal, Sequence

from sslbench.sdk.data import data_fingerprint as data_fingerprint  # re-exported: the data part of a provenance
from sslbench.engine.cells import Cell
from sslbench.engine.plugins import Registry
from sslbench.engine.provenance import code_provenance, device_part, evaluator_provenance, stale_reasons
from sslbench.engine.store import RunRecord, Store

#: what executing a cell would do, given what the store holds (see :func:`cell_state`)
CellState = Literal["complete", "evaluate", "train", "stale", "retrain", "failed"]
CELL_STATES: tuple[CellState, ...] = ("complete", "evaluate", "train", "stale", "retrain", "failed")


def cell_provenance(registry: Registry | None, cell: Cell, data_fp: str | None = None) -> dict[str, Any] | None:
    """The provenance the cell's run would have if trained now (the code part; the data part only
    when ``data_fp`` is known). None without a registry or when a plugin is no longer installed."""
    if registry is None:
        return None
    try:
        prov = code_provenance(registry, cell.method, cell.dataset, cell.protocol,
                               device_part(cell.device, cell.precision, cell.compile, cell.deterministic))
    except LookupError:
        return None
    if data_fp is not None:
        prov["data"] = data_fp
    return prov


def assess_cell(store: Store | None, cell: Cell, registry: Registry | None = None, data_fp: str | None = None) -> tuple[CellState, list[str]]:
    """:func:`cell_state` and, for ``stale``, why (see :func:`sslbench.engine.provenance.stale_reasons`)."""
    record = store.get_run(cell.run_id) if store is not None else None
    if record is None:
        return "train", []
    if cell.force:
        return "retrain", []
    if record.status in ("done", "failed") and not cell.reuse_stale:
        current = cell_provenance(registry, cell, data_fp)
        reasons = stale_reasons(record.provenance, current) if current is not None else []
        if reasons:
            return "stale", reasons
    if record.status == "failed":
        return "failed", []
    if record.status == "done" and store.checkpoint_path(cell.run_id).is_file():
        stored = all(store.has_metrics(cell.run_id, name, options, cell.selection, eval_provenance(registry, name, cell)) for name, options in cell.evaluators)
        return ("complete" if stored else "evaluate"), []
    return "retrain", []


def eval_provenance(registry: Registry | None, name: str, cell: Cell) -> dict[str, Any] | None:
    if registry is None or cell.reuse_stale:
        return None
    try:
        return evaluator_provenance(registry, name)
    except LookupError:
        return None


def cell_state(store: Store | None, cell: Cell, registry: Registry | None = None, data_fp: str | None = None) -> CellState:
    """The run-reuse rule, the one place it is decided. ``train``: nothing is stored for the run id;
    ``failed``: a stored divergence, kept and not retried; ``complete``: finished, its checkpoint is
    present and every evaluator of the cell (for its options and selection rule, made by the
    current evaluator code, not an error) is stored; ``evaluate``: the same but some evaluator is
    missing, so only evaluation runs; ``stale``: a stored result the current code (with
    ``registry``) or data (with ``data_fp``) would not make, retrained unless ``cell.reuse_stale``;
    ``retrain``: a record that cannot be reused (interrupted, crashed, or its checkpoint is gone)
    or ``cell.force``. A retrain keeps the earlier result until its replacement is stored.
    ``store`` None (no store created yet) stores nothing."""
    return assess_cell(store, cell, registry, data_fp)[0]



def stale_runs(records: Sequence[RunRecord], registry: Registry) -> dict[str, list[str]]:
    """For stored results (done or diverged), why the current code would not make them: run id ->
    reasons, only for stale runs. The data part is not checked here (it needs the data loaded; a
    run checks it before reusing a result)."""
    out = {}
    for record in records:
        if record.status not in ("done", "failed"):
            continue
        try:
            cell = Cell.from_json(json.dumps(record.config))
        except (TypeError, ValueError):
            continue
        current = cell_provenance(registry, cell)
        if current is None:
            out[record.id] = [f"method {record.method!r} or data set {record.dataset!r} is not installed"]
            continue
        reasons = stale_reasons(record.provenance, current)
        if reasons:
            out[record.id] = reasons
    return out


__all__ = ["CELL_STATES", "CellState", "assess_cell", "cell_provenance", "cell_state", "data_fingerprint", "eval_provenance", "stale_runs"]

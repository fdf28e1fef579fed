"""Evaluation of a trained run: embed train and test with the frozen encoder once, run each
evaluator whose metrics are not stored yet, check every value against the evaluator's declarations
and store it. A fault is that evaluator's (or, for ``embed``, that run's) alone: stored as an error
note naming the run and the plugin, retried on the next run, and the other evaluators go on."""

from __future__ import annotations

from pathlib import Path

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


def plugin_label(registry: Registry, kind: str, name: str) -> str:
    return f"{kind[:-1]} {name!r} (plugin {registry.origin.get((kind, name), '?')!r})"


def evaluate_cell(cell: Cell, method: Method, data: ImageData, store: Store, registry: Registry, run_dir: Path, device: torch.device) -> tuple[list[str], list[str]]:
    """Run each evaluator whose metrics (for these options and this selection rule, by the current
    evaluator code) are not stored yet; returns (evaluators that stored metrics, error messages).
    An evaluator that does not apply is stored as a note; one that crashes or returns something that
    is not a finite number per declared metric is stored as an error (retried on the next run); the
    others go on. An encoder whose ``embed`` fails fails every evaluator of the run, named."""
    todo = [(n, o) for n, o in cell.evaluators if cell.force or not store.has_metrics(cell.run_id, n, o, cell.selection, eval_provenance(registry, n, cell))]
    if not todo:
        return [], []
    errors: list[str] = []
    where = f"run {cell.run_id} ({cell.method}, seed {cell.seed})"
    try:
        train_z = embed_all(method, data.train_x)
        test_z = embed_all(method, data.test_x)
    except Exception as exc:  # noqa: BLE001 - the method's embed() is at fault; no evaluator can run
        message = f"{where}: {plugin_label(registry, 'methods', cell.method)} embed() raised {type(exc).__name__}: {exc}"
        for name, options in todo:
            store.put_metrics(cell.run_id, name, options, cell.selection, {}, note=f"{ERROR_NOTE} {message}")
        return [], [message]
    inputs = EvalInputs(
        train_z=train_z, test_z=test_z, data=data, method=method, device=device, seed=cell.seed,
        selection=cell.selection, val_index=validation_index(data.train_y).to(device), run_dir=str(run_dir),
        decoder_factory=train_frozen_decoder,
    )
    done = []
    for name, options in todo:
        provenance = eval_provenance(registry, name, cell)
        try:
            cls = registry.lookup("evaluators", name)
            evaluator = cls()
            reason = evaluator.applies(inputs)
            if reason is None and not torch.isfinite(train_z).all():
                reason = "the representation contains NaN/inf"
            if reason is not None:
                store.put_metrics(cell.run_id, name, options, cell.selection, {}, note=f"skipped: {reason}", provenance=provenance)
                continue
            torch.manual_seed(cell.seed)
            values = check_values(cls.metrics, evaluator.evaluate(inputs, **options))
        except Exception as exc:  # noqa: BLE001 - report, keep the other evaluators
            message = f"{where}: {plugin_label(registry, 'evaluators', name)}: {type(exc).__name__}: {exc}"
            store.put_metrics(cell.run_id, name, options, cell.selection, {}, note=f"{ERROR_NOTE} {message}", provenance=provenance)
            errors.append(message)
            continue
        store.put_metrics(cell.run_id, name, options, cell.selection, values, provenance=provenance)
        done.append(name)
    return done, errors



__all__ = ["evaluate_cell", "plugin_label"]

"""Stored runs one per line (``sslbench results --runs``): the records the JSON output prints and the
table shows."""

from __future__ import annotations

from typing import Any, Sequence

from sslbench.engine.store import RunRecord, Store

#: the columns of the runs table, in order
RUN_COLUMNS = ("id", "method", "dataset", "seed", "epochs", "status", "protocol", "img/s", "aug %", "peak MB", "metrics")


def run_rows(store: Store, records: Sequence[RunRecord]) -> list[dict[str, Any]]:
    """One record per run: identity, status (and the step a divergence happened at), speed, memory
    and every stored metric value by name."""
    return [
        {"id": r.id, "method": r.method, "dataset": r.dataset, "seed": r.seed, "epochs": r.epochs, "status": r.status,
         "failed_step": r.failed_step, "protocol": r.protocol_hash, "img/s": round(r.images_per_s or 0),
         "aug %": round(100 * (r.augment_share or 0), 1), "peak MB": round(r.peak_memory_mb or 0),
         "metrics": {m["name"]: m["value"] for m in store.metrics(r.id) if m["value"] is not None}}
        for r in records
    ]


def run_cells(row: dict[str, Any]) -> list[str]:
    """A :func:`run_rows` record as the table's text cells (:data:`RUN_COLUMNS`)."""
    status = row["status"] + (f" at step {row['failed_step']}" if row["failed_step"] else "")
    metrics = ", ".join(f"{k}={v:.4g}" for k, v in row["metrics"].items())
    return [row["id"], row["method"], row["dataset"], str(row["seed"]), str(row["epochs"]), status, row["protocol"],
            str(row["img/s"]), str(row["aug %"]), str(row["peak MB"]), metrics]


__all__ = ["RUN_COLUMNS", "run_cells", "run_rows"]

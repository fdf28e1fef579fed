"""Stored runs one per line (``sslbench results --runs``): the records the JSON output prints and the
table shows, and the same runs as Markdown, LaTeX or CSV (one line per run and metric, numbers as
numbers) for other tools."""

from __future__ import annotations

import json
from typing import Any, Sequence

from sslbench.engine.plugins import Registry
from sslbench.engine.reuse import stale_runs
from sslbench.engine.store import RunRecord, Store
from sslbench.bench.tables import Catalog, csv_text, latex_text


def stored_runs(store: Store, registry: Registry, method: str | None = None, dataset: str | None = None, status: str | None = None) -> tuple[list[RunRecord], dict[str, list[str]]]:
    """The stored runs ``results`` shows (``status`` ``stale``: only those) and, for each stale one,
    why the current code would not make it (:func:`~sslbench.engine.reuse.stale_runs`)."""
    records = store.runs(method=method, dataset=dataset, status=None if status == "stale" else status)
    stale = stale_runs(records, registry)
    if status == "stale":
        records = [r for r in records if r.id in stale]
    return records, stale


def stale_lines(stale: dict[str, list[str]], limit: int = 5) -> list[str]:
    """What ``results`` prints under its table about stale runs (at most ``limit`` named)."""
    if not stale:
        return []
    lines = [f"{len(stale)} stored run(s) are stale: the code that made them has changed since, so `run` and "
             "`bench` retrain them (or keep them with --reuse-stale):"]
    for run_id, reasons in list(stale.items())[:limit]:
        lines.append(f"  {run_id}: {'; '.join(reasons)}")
    if len(stale) > limit:
        lines.append(f"  ... and {len(stale) - limit} more (`sslbench results --runs --status stale`)")
    return lines

#: the columns of the runs table, in order
RUN_COLUMNS = ("id", "method", "dataset", "seed", "epochs", "status", "protocol", "img/s", "aug %", "peak MB", "metrics")


def run_rows(store: Store, records: Sequence[RunRecord], stale: dict[str, list[str]] | None = None) -> list[dict[str, Any]]:
    """One record per run: identity, status (and the step a divergence happened at; ``stale`` and
    why, for results the current code would not make), speed, memory and every stored metric value by name."""
    stale = stale or {}
    return [
        {"id": r.id, "method": r.method, "dataset": r.dataset, "seed": r.seed, "epochs": r.epochs,
         "status": "stale" if r.id in stale else r.status, "stale": stale.get(r.id, []),
         "note": (r.error or "").splitlines()[0] if r.error and r.status in ("interrupted", "error") else "",
         "failed_step": r.failed_step, "protocol": r.protocol_hash, "img/s": round(r.images_per_s or 0),
         "aug %": round(100 * (r.augment_share or 0), 1), "peak MB": round(r.peak_memory_mb or 0),
         "metrics": {m["name"]: m["value"] for m in store.metrics(r.id) if m["value"] is not None}}
        for r in records
    ]


def run_cells(row: dict[str, Any]) -> list[str]:
    """A :func:`run_rows` record as the table's text cells (:data:`RUN_COLUMNS`)."""
    status = row["status"] + (f" at step {row['failed_step']}" if row["failed_step"] else "")
    note = row.get("note") or ""
    if row["status"] == "interrupted" and "at epoch" in note:  # "interrupted at epoch 11.5, step 5400"
        status = "interrupted " + note[note.index("at epoch"):].split(" (")[0].split(";")[0]
    metrics = ", ".join(f"{k}={v:.4g}" for k, v in row["metrics"].items())
    return [row["id"], row["method"], row["dataset"], str(row["seed"]), str(row["epochs"]), status, row["protocol"],
            str(row["img/s"]), str(row["aug %"]), str(row["peak MB"]), metrics]


#: the columns of ``results --runs -f csv``: one line per run and stored metric value (a run with no
#: value is one line with empty metric fields); numbers in stored units
RUN_CSV_COLUMNS = (
    "id", "method", "dataset", "seed", "epochs", "status", "failed_step", "protocol_hash", "images_per_s",
    "augment_share", "peak_memory_mb", "metric", "evaluator", "selection", "options", "unit", "value",
)


def run_csv_records(store: Store, records: Sequence[RunRecord], stale: dict[str, list[str]] | None = None) -> list[dict[str, Any]]:
    """The runs as tidy records (:data:`RUN_CSV_COLUMNS`), each metric with its evaluator, selection
    rule, options (JSON) and unit (from the evaluator's declaration)."""
    stale, catalog, out = stale or {}, Catalog(), []
    for r in records:
        base = {"id": r.id, "method": r.method, "dataset": r.dataset, "seed": r.seed, "epochs": r.epochs,
                "status": "stale" if r.id in stale else r.status, "failed_step": r.failed_step, "protocol_hash": r.protocol_hash,
                "images_per_s": r.images_per_s, "augment_share": r.augment_share, "peak_memory_mb": r.peak_memory_mb}
        values = [m for m in store.metrics(r.id) if m["value"] is not None]
        out += [{**base, "metric": m["name"], "evaluator": m["evaluator"], "selection": m["selection"],
                 "options": json.dumps(json.loads(m["options"] or "{}"), sort_keys=True),
                 "unit": catalog.metric(m["name"], m["evaluator"]).unit, "value": m["value"]} for m in values]
        if not values:
            out.append(base)
    return out


def runs_text(store: Store, records: Sequence[RunRecord], fmt: str, stale: dict[str, list[str]] | None = None) -> str:
    """``results --runs -f FMT`` for ``json`` (:func:`run_rows`), ``csv`` (:func:`run_csv_records`),
    ``md`` or ``latex`` (the terminal table's cells, :data:`RUN_COLUMNS`)."""
    if fmt == "json":
        return json.dumps(run_rows(store, records, stale), indent=2)
    if fmt == "csv":
        return csv_text(run_csv_records(store, records, stale), RUN_CSV_COLUMNS)
    from tabulate import tabulate

    cells = [run_cells(row) for row in run_rows(store, records, stale)]
    if fmt == "md":
        return tabulate(cells, RUN_COLUMNS, tablefmt="github", disable_numparse=True)
    if fmt == "latex":
        return tabulate([[latex_text(c) for c in row] for row in cells], [latex_text(h) for h in RUN_COLUMNS],
                        tablefmt="latex_raw", disable_numparse=True)
    raise ValueError(f"unknown format {fmt!r} for the runs: choose table, md, latex, csv or json")


__all__ = ["RUN_COLUMNS", "RUN_CSV_COLUMNS", "run_cells", "run_csv_records", "run_rows", "runs_text", "stale_lines", "stored_runs"]

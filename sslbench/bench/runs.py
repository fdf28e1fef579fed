"""Stored runs one per line (``sslbench results --runs``): the records the JSON output prints and the
table shows, and the same runs as Markdown, LaTeX or CSV (one line per run and metric, numbers as
numbers) for other tools.

Every run shows its training effort (steps, views seen, training FLOPs; :mod:`sslbench.bench.effort`),
its budget and its protocol preset; a figure a run stored before the engine counted it is unknown
(``-``, null in JSON, empty in CSV), never 0. On a narrow terminal :class:`RunsTable` leaves out the
columns of least use first (:data:`RUN_PRIORITY`) and names them under the table."""

from __future__ import annotations

import json
from typing import Any, Callable, Sequence

from rich import box
from rich.console import Console, ConsoleOptions, RenderResult
from rich.markup import escape
from rich.measure import Measurement
from rich.table import Table
from rich.text import Text

from sslbench.engine.plugins import Registry
from sslbench.engine.reuse import stale_runs
from sslbench.engine.store import RunRecord, Store
from sslbench.bench.effort import budget_text, count_text, flops_text, preset_of, run_effort
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
RUN_COLUMNS = ("id", "method", "dataset", "seed", "budget", "preset", "status", "steps", "views", "train FLOPs",
               "protocol", "img/s", "aug %", "peak MB", "metrics")
#: the columns a narrow terminal keeps, most wanted first (the last ones are left out first)
RUN_PRIORITY = ("id", "method", "status", "steps", "views", "train FLOPs", "preset", "seed", "dataset", "metrics",
                "budget", "img/s", "protocol", "peak MB", "aug %")
#: shorter headers of the compact table
RUN_SHORT = {"train FLOPs": "FLOPs"}
#: the effort figures ``results --runs`` gives every run (None when the run did not store it)
RUN_EFFORT_KEYS = ("steps", "images_seen", "views_seen", "train_flops", "flops_per_step")


def run_rows(store: Store, records: Sequence[RunRecord], stale: dict[str, list[str]] | None = None) -> list[dict[str, Any]]:
    """One record per run: identity, status (and the step a divergence happened at; ``stale`` and
    why, for results the current code would not make), speed, memory, training effort (:data:`RUN_EFFORT_KEYS`,
    None when not stored), ``budget`` (as stored, or None), ``protocol_preset`` and every stored metric value by name."""
    stale = stale or {}
    return [
        {"id": r.id, "method": r.method, "dataset": r.dataset, "seed": r.seed, "epochs": r.epochs,
         **{k: v for k, v in run_effort(r.effort).items() if k in RUN_EFFORT_KEYS}, "budget": run_effort(r.effort)["budget"],
         "protocol_preset": preset_of(r.protocol),
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
    budget = budget_text(row.get("budget"), row["epochs"], steps=False)
    return [row["id"], row["method"], row["dataset"], str(row["seed"]), budget, row.get("protocol_preset", "uniform"), status,
            count_text(row.get("steps")), count_text(row.get("views_seen")), flops_text(row.get("train_flops")), row["protocol"],
            str(row["img/s"]), str(row["aug %"]), str(row["peak MB"]), metrics]


class RunsTable:
    """``results --runs`` for the terminal: the full table when it fits, else a compact one (no
    vertical lines) without the columns of least use (:data:`RUN_PRIORITY`, the last left out first)
    until it fits, every value whole (only the metrics wrap), and a line naming what was left out."""

    #: the columns that wrap in the compact table, and how narrow they are squeezed before another column is left out
    WRAPS = {"metrics": 24, "status": 11}

    def __init__(self, rows: Sequence[dict[str, Any]], title: str | None = None) -> None:
        self.title = title
        self.cells = [run_cells(r) for r in rows]
        self.rows = rows

    def table(self, columns: Sequence[str] = RUN_COLUMNS, compact: bool = False, squeeze: bool = False) -> Table:
        """The table of ``columns``; ``compact`` without vertical lines, the metrics (alone) wrapping;
        ``squeeze`` with the metrics at most :attr:`METRICS_WIDTH` wide (to measure what fits)."""
        table = Table(title=self.title, box=box.SIMPLE_HEAD if compact else box.HEAVY_HEAD, pad_edge=not compact)
        for name in columns:
            wraps = compact and name in self.WRAPS
            table.add_column(escape(RUN_SHORT.get(name, name) if compact else name), no_wrap=not wraps, overflow="fold",
                             justify="right" if name in ("seed", "steps", "views", "train FLOPs", "img/s", "aug %", "peak MB") else "left",
                             max_width=self.WRAPS[name] if wraps and squeeze else None)
        index = [RUN_COLUMNS.index(c) for c in columns]
        for row, cells in zip(self.rows, self.cells):
            table.add_row(*[escape(cells[i]) for i in index], style="red" if row["status"] in ("failed", "error") else None)
        return table

    def columns(self, width: int, measure: Callable[[Table], int]) -> list[str]:
        """The columns of :data:`RUN_COLUMNS` (in their order) that fit ``width``, leaving out by :data:`RUN_PRIORITY`."""
        keep = list(RUN_PRIORITY)
        while len(keep) > 2 and measure(self.table([c for c in RUN_COLUMNS if c in keep], compact=True, squeeze=True)) > width:
            keep.pop()
        return [c for c in RUN_COLUMNS if c in keep]

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        wide = options.update_width(10**4)
        full = self.table()
        if Measurement.get(console, wide, full).maximum <= options.max_width:
            yield full
            return
        shown = self.columns(options.max_width, lambda t: Measurement.get(console, wide, t).maximum)
        yield self.table(shown, compact=True)
        left_out = [c for c in RUN_COLUMNS if c not in shown]
        legend = [f"{RUN_SHORT[c]} = {c}" for c in shown if c in RUN_SHORT]
        if left_out:
            legend.append(f"not shown at {options.max_width} columns: {', '.join(left_out)} (a wider terminal, "
                          "--format md or --format json shows every column)")
        if legend:
            yield Text("; ".join(legend), style="dim")


#: the columns of ``results --runs -f csv``: one line per run and stored metric value (a run with no
#: value is one line with empty metric fields); numbers in stored units
RUN_CSV_COLUMNS = (
    "id", "method", "dataset", "seed", "epochs", "status", "failed_step", "protocol_hash", "protocol_preset", "images_per_s",
    "augment_share", "peak_memory_mb", "steps", "images_seen", "views_seen", "train_flops", "flops_per_step",
    "budget_unit", "budget_value", "budget_steps", "metric", "evaluator", "selection", "options", "unit", "value",
)


def run_csv_records(store: Store, records: Sequence[RunRecord], stale: dict[str, list[str]] | None = None) -> list[dict[str, Any]]:
    """The runs as tidy records (:data:`RUN_CSV_COLUMNS`), each metric with its evaluator, selection
    rule, options (JSON) and unit (from the evaluator's declaration)."""
    stale, catalog, out = stale or {}, Catalog(), []
    for r in records:
        base = {"id": r.id, "method": r.method, "dataset": r.dataset, "seed": r.seed, "epochs": r.epochs,
                "status": "stale" if r.id in stale else r.status, "failed_step": r.failed_step, "protocol_hash": r.protocol_hash,
                "images_per_s": r.images_per_s, "augment_share": r.augment_share, "peak_memory_mb": r.peak_memory_mb,
                "protocol_preset": preset_of(r.protocol)}
        effort = run_effort(r.effort)
        base.update({k: effort[k] for k in RUN_EFFORT_KEYS})
        base.update({f"budget_{k}": (effort["budget"] or {}).get(k) for k in ("unit", "value", "steps")})
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


__all__ = ["RUN_COLUMNS", "RUN_CSV_COLUMNS", "RUN_EFFORT_KEYS", "RUN_PRIORITY", "RunsTable", "run_cells", "run_csv_records", "run_rows", "runs_text", "stale_lines", "stored_runs"]

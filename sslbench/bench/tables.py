"""Summaries of stored runs: mean +- std over seeds, as rich tables or Markdown/LaTeX/CSV/JSON."""

from __future__ import annotations

import csv
import io
import json
import math
import statistics
from dataclasses import dataclass, field
from typing import Any, Sequence

from sslbench.engine.store import RunRecord, Store

#: metrics shown as percentages
PERCENT_SUFFIXES = ("_acc", "_top5")
#: bookkeeping metrics (the chosen k or epoch): kept in exports, left out of the comparison table
DETAIL_SUFFIXES = ("_k", "_epoch", "_frozen_decoder")


@dataclass
class Row:
    """One (dataset, method) group of runs."""

    dataset: str
    method: str
    protocol_hash: str
    epochs: int
    seeds: list[int] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)
    #: runs stored as "running": under way in another process, or interrupted (rerun to resume)
    unfinished: list[int] = field(default_factory=list)
    metrics: dict[str, list[float]] = field(default_factory=dict)
    notes: dict[str, str] = field(default_factory=dict)
    selection: set[str] = field(default_factory=set)
    images_per_s: list[float] = field(default_factory=list)
    augment_share: list[float] = field(default_factory=list)
    #: each loss term's value at the end of training (last point of its curve), one per seed
    final_terms: dict[str, list[float]] = field(default_factory=dict)


def mean_std(values: Sequence[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (0 for a single value)."""
    m = statistics.fmean(values)
    s = statistics.stdev(values) if len(values) > 1 else 0.0
    return m, s


def _dataset_labels(runs: Sequence[RunRecord]) -> dict[tuple[str, str], str]:
    """A label per (data set, data-set parameters): the bare name, plus the parameters whose values
    differ between runs of the same data set (e.g. ``moving-balls [size=64]``)."""
    variants: dict[str, list[dict[str, Any]]] = {}
    for run in runs:
        params = run.config.get("dataset_params", {})
        if params not in variants.setdefault(run.dataset, []):
            variants[run.dataset].append(params)
    labels = {}
    for dataset, all_params in variants.items():
        varying = sorted({k for p in all_params for k in p if len({json.dumps(q.get(k)) for q in all_params}) > 1})
        for params in all_params:
            shown = ", ".join(f"{k}={params.get(k)}" for k in varying)
            labels[(dataset, json.dumps(params, sort_keys=True))] = f"{dataset} [{shown}]" if shown else dataset
    return labels


def summarise(store: Store, runs: Sequence[RunRecord]) -> list[Row]:
    """Group runs by data set (and its parameters), method (and its parameters), protocol and budget;
    collect metrics per seed."""
    rows: dict[tuple[str, str, str, int, str, str], Row] = {}
    labels = _dataset_labels(runs)
    for run in runs:
        params = json.dumps(run.config.get("method_params", {}), sort_keys=True)
        data_params = json.dumps(run.config.get("dataset_params", {}), sort_keys=True)
        key = (run.dataset, data_params, run.method, run.protocol_hash, run.epochs, params)
        row = rows.setdefault(key, Row(labels[(run.dataset, data_params)], run.method, run.protocol_hash, run.epochs))
        if run.status == "running":
            row.unfinished.append(run.seed)
            continue
        if run.status != "done":
            where = f" at step {run.failed_step}" if run.failed_step else ""
            row.failed.append(f"seed {run.seed}: {run.status}{where}")
            continue
        row.seeds.append(run.seed)
        if run.images_per_s:
            row.images_per_s.append(run.images_per_s)
        if run.augment_share is not None and run.images_per_s:
            row.augment_share.append(run.augment_share)
        for term, curve in run.history.items():
            if curve and not term.startswith("_"):  # "_epoch" is the curve's x axis
                row.final_terms.setdefault(term, []).append(curve[-1])
        for m in store.metrics(run.id):
            row.selection.add(m["selection"])
            if m["value"] is None:
                row.notes[m["evaluator"]] = m["note"] or ""
            elif math.isfinite(m["value"]):
                row.metrics.setdefault(m["name"], []).append(m["value"])
    return list(rows.values())


def metric_columns(rows: Sequence[Row], details: bool = False) -> list[str]:
    names: list[str] = []
    for row in rows:
        for name in row.metrics:
            if name not in names and (details or not name.endswith(DETAIL_SUFFIXES)):
                names.append(name)
    return names


def format_value(name: str, values: Sequence[float]) -> str:
    if not values:
        return "-"
    m, s = mean_std(values)
    if name.endswith(PERCENT_SUFFIXES):
        m, s = 100 * m, 100 * s
        return f"{m:.1f} ± {s:.1f}" if len(values) > 1 else f"{m:.1f}"
    spec = ".4g" if abs(m) < 10 else ".1f"
    return f"{m:{spec}} ± {s:.2g}" if len(values) > 1 else f"{m:{spec}}"


def table_rows(rows: Sequence[Row], details: bool = False, losses: bool = False) -> tuple[list[str], list[list[str]]]:
    """Header and string cells of the comparison table; ``losses`` adds each loss term's value at the
    end of training (e.g. the InfoNCE that separates SSVAE's couplings)."""
    cols = metric_columns(rows, details)
    terms: list[str] = []
    if losses:
        for row in rows:
            terms += [t for t in row.final_terms if t not in terms]
    header = ["dataset", "method", "epochs", "seeds", *cols, *[f"final {t}" for t in terms], "img/s", "aug %"]
    body = []
    for row in rows:
        n = f"{len(row.seeds)}" + (f" (+{len(row.failed)} failed)" if row.failed else "")
        n += f" (+{len(row.unfinished)} unfinished)" if row.unfinished else ""
        cells = [row.dataset, row.method, str(row.epochs), n]
        cells += [format_value(c, row.metrics.get(c, [])) for c in cols]
        cells += [format_value(t, row.final_terms.get(t, [])) for t in terms]
        cells.append(f"{statistics.fmean(row.images_per_s):,.0f}" if row.images_per_s else "-")
        cells.append(f"{100 * statistics.fmean(row.augment_share):.0f}" if row.augment_share else "-")
        body.append(cells)
    return header, body


def rows_as_records(rows: Sequence[Row]) -> list[dict[str, Any]]:
    """Machine-readable summary: per group, each metric's mean, std, n and the raw per-seed values."""
    out = []
    for row in rows:
        out.append({
            "dataset": row.dataset,
            "method": row.method,
            "epochs": row.epochs,
            "protocol_hash": row.protocol_hash,
            "seeds": row.seeds,
            "failed": row.failed,
            "unfinished_seeds": row.unfinished,
            "selection": sorted(row.selection),
            "metrics": {
                name: {"mean": mean_std(v)[0], "std": mean_std(v)[1], "n": len(v), "values": v}
                for name, v in row.metrics.items()
            },
            "notes": row.notes,
            "final_loss_terms": {t: {"mean": mean_std(v)[0], "std": mean_std(v)[1], "n": len(v)} for t, v in row.final_terms.items()},
            "images_per_s": statistics.fmean(row.images_per_s) if row.images_per_s else None,
            "augment_share": statistics.fmean(row.augment_share) if row.augment_share else None,
        })
    return out


LATEX_ESCAPES = {
    "\\": "\\textbackslash{}", "&": "\\&", "%": "\\%", "$": "\\$", "#": "\\#", "_": "\\_", "{": "\\{", "}": "\\}",
    "~": "\\textasciitilde{}", "^": "\\textasciicircum{}", "±": "$\\pm$", ">": "$>$", "<": "$<$",
}


def latex_text(text: str) -> str:
    """Plain text made safe inside a LaTeX table cell."""
    return "".join(LATEX_ESCAPES.get(c, c) for c in text.replace("**", ""))


def export(rows: Sequence[Row], fmt: str, losses: bool = False) -> str:
    """The comparison as Markdown (``md``), LaTeX (``latex``), CSV (``csv``) or JSON (``json``)."""
    if fmt == "json":
        return json.dumps(rows_as_records(rows), indent=2)
    header, body = table_rows(rows, details=fmt == "csv", losses=losses)
    if fmt == "csv":
        buf = io.StringIO()
        writer = csv.writer(buf)
        writer.writerow(header)
        writer.writerows(body)
        return buf.getvalue()
    from tabulate import tabulate

    if fmt == "md":
        return tabulate(body, header, tablefmt="github")
    if fmt == "latex":
        return tabulate([[latex_text(c) for c in r] for r in body], [latex_text(h) for h in header], tablefmt="latex_raw")
    raise ValueError(f"unknown format {fmt!r}: choose table, md, latex, csv or json")


def rich_table(rows: Sequence[Row], title: str | None = None, losses: bool = False):  # type: ignore[no-untyped-def]
    from rich.markup import escape
    from rich.table import Table

    header, body = table_rows(rows, losses=losses)
    table = Table(title=title, show_lines=False)
    for i, h in enumerate(header):
        table.add_column(h, justify="left" if i < 2 else "right", no_wrap=i < 2)
    for row, cells in zip(rows, body):
        style = "red" if row.failed and not row.seeds else None
        table.add_row(*[escape(c) for c in cells], style=style)  # "[size=64]" is text, not markup
    return table

"""Rich renderings for the terminal: the tables and blocks the CLI prints (plugin listings, stored
runs, suites, a dry run, a suite's summary after ``bench``, a run's results, a comparison). Each
function takes the console to print on, or returns a :class:`rich.table.Table`; none decides
anything: the numbers come from :mod:`sslbench.bench.tables`, :mod:`~sslbench.bench.plan` and the
engine.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

from rich.console import Console
from rich.table import Table

from sslbench.sdk.protocol import Protocol
from sslbench.engine.cells import Cell, Outcome
from sslbench.engine.store import Store
from sslbench.bench.compare import Comparison
from sslbench.bench.plan import GroupRow, SuiteEntry
from sslbench.bench.runs import RUN_COLUMNS, run_cells
from sslbench.bench.suites import Suite, SuiteFile

#: per kind of plugin class, the columns of its listing between name and plugin
LISTING_COLUMNS = {"methods": ["family"], "datasets": ["protocol", "files"], "evaluators": [], "architectures": []}


def _cell(rec: dict[str, Any], column: str) -> str:
    if column == "files":
        return "reads files" if rec["needs_files"] else "no files"
    return rec[column]


def listing_table(kind: str, records: Sequence[dict[str, Any]]) -> Table:
    """``list-methods`` / ``list-datasets`` / ``list-evaluators``: one row per record of
    :func:`sslbench.engine.plugins.describe`."""
    table = Table(title=f"installed {kind}")
    extra = LISTING_COLUMNS[kind]
    for col in ["name", *extra, "plugin", "params", "description"]:
        table.add_column(col, overflow="fold")
    for rec in records:
        params = ", ".join(f"{k}={v}" for k, v in rec["params"].items())
        table.add_row(rec["name"], *[_cell(rec, c) for c in extra], rec["plugin"], params, rec["description"])
    return table


def plugins_table(records: Sequence[dict[str, Any]]) -> Table:
    """``sslbench plugins``: one row per record of :func:`sslbench.engine.plugins.plugin_records`."""
    table = Table(title="sslbench plugins")
    for col in ("plugin", "package", "version", "hooks", "registered"):
        table.add_column(col, overflow="fold")
    for r in records:
        registered = "; ".join(f"{k}: {', '.join(v)}" for k, v in r["registered"].items())
        if r["error"]:
            registered = f"[red]skipped: {r['error']}[/]"
        table.add_row(r["name"], r["distribution"] or "-", r["version"] or "-", ", ".join(r["hooks"]), registered)
    return table


def runs_table(rows: Sequence[dict[str, Any]], store_path: Path) -> Table:
    """``results --runs``: one row per record of :func:`sslbench.bench.runs.run_rows`."""
    table = Table(title=f"stored runs ({store_path})")
    for col in RUN_COLUMNS:
        table.add_column(col, overflow="fold")
    for r in rows:
        table.add_row(*run_cells(r))
    return table


def suites_table(sf: SuiteFile, entries: Sequence[SuiteEntry]) -> Table:
    """``bench --list``: each suite of the file with its budgets and their run counts."""
    table = Table(title=f"suites in {sf.path}")
    for col in ("suite", "data sets", "methods", "evaluators", "budgets (runs)", "description"):
        table.add_column(col, overflow="fold", no_wrap=col == "suite")
    for e in entries:
        budgets = f"[red]invalid: {e.invalid}[/]" if e.invalid else ", ".join(f"{b} ({n})" for b, n in e.budgets.items())
        s = e.suite
        table.add_row(s.name, ", ".join(s.datasets), str(len(s.methods)), ", ".join(s.evaluators), budgets, s.description)
    return table


def dry_run_table(suite: Suite, budget: str, cells: Sequence[Cell], rows: Sequence[GroupRow]) -> Table:
    """``bench --dry-run``: the grid by (data set, method) and how much of it is stored."""
    table = Table(title=f"suite {suite.name}, budget {budget}: {len(cells)} runs")
    for col in ("data set", "method", "epochs", "seeds", "data dir", "stored"):
        table.add_column(col, overflow="fold")
    for r in rows:
        table.add_row(r.dataset, r.method, str(r.epochs), ", ".join(str(s) for s in r.seeds), r.data_dir or "-", f"{r.complete}/{len(r.seeds)}")
    return table


def print_suite_summary(console: Console, store: Store, suite: Suite, budget: str, cells: Sequence[Cell]) -> None:
    """After ``bench``: the result table of each data set, the suite's claims, where the store is."""
    from sslbench.bench.claims import SPREAD_RULE, evaluate_claims
    from sslbench.bench.reports import collect
    from sslbench.bench.tables import rich_table

    results = collect(store, suite, budget, cells)
    for dataset in suite.datasets:
        rows = results.dataset_rows(dataset)
        if any(r.seeds for r in rows):
            console.print(rich_table(rows, title=f"{suite.name} ({budget}) on {dataset}"))
    claims = evaluate_claims(suite.claims, results.values, budget)
    if claims:
        table = Table(title=f"claims of {suite.name} ({budget}); beyond seed spread: {SPREAD_RULE}")
        for col in ("claim", "result", "figures", "beyond seed spread"):
            table.add_column(col, overflow="fold")
        colour = {"held": "green", "not held": "red", "not run": "yellow"}
        for r in claims:
            table.add_row(r.claim.text, f"[{colour[r.status]}]{r.status}[/]", r.figures, r.beyond_spread)
        console.print(table)
    console.print(f"[dim]results stored in {store.path}; `sslbench report {suite.name} --budget {budget}` writes the report[/]")


def print_run_results(
    console: Console, err: Console, store: Store, cells: Sequence[Cell], outcomes: Sequence[Outcome],
    fmt: str, losses: bool = False, save_images: bool = False,
) -> None:
    """After ``run``: why an evaluator was skipped (on ``err``, once per run), then the comparison
    table (with the data notes, the picture folders and the store) or its export in ``fmt``."""
    from sslbench.bench.tables import export, rich_table, summarise

    stored = store.runs(ids=[c.run_id for c in cells])
    rows = summarise(store, stored, cells[0].evaluators, cells[0].selection)  # what this run asked for
    for record in stored:  # evaluators that were skipped or crashed say why, once per run
        for m in store.metrics(record.id):
            if m["value"] is None and m["note"]:
                err.print(f"[yellow]{m['evaluator']}[/] on {record.method} seed {record.seed}: {m['note']}", highlight=False, markup=True)
    if fmt != "table":
        console.print(export(rows, fmt, losses=losses), markup=False, highlight=False, soft_wrap=True)
        return
    protocol = cells[0].protocol
    title = f"{cells[0].dataset}: protocol {protocol['name']} ({Protocol.from_dict(protocol).hash()}), selection {cells[0].selection}"
    console.print(rich_table(rows, title=title, losses=losses))
    for note in sorted({r.environment.get("data_note", "") for r in stored} - {""}):
        console.print(f"[bold]data:[/] {note}", highlight=False)
    if save_images:
        for o in outcomes:
            folder = store.run_folder(o.run_id)
            if sorted(folder.glob("*.png")):
                console.print(f"images for {o.method} seed {o.seed}: {folder}")
    console.print(f"[dim]results stored in {store.path}[/]")


def print_rows(console: Console, rows: Sequence[Any], fmt: str, title: str, losses: bool = False) -> None:
    """Summary rows (:func:`sslbench.bench.tables.summarise`) as a rich table titled ``title``, or
    exported as md, latex, csv or json."""
    from sslbench.bench.tables import export, rich_table

    if fmt == "table":
        console.print(rich_table(rows, title=title, losses=losses))
    else:
        console.print(export(rows, fmt, losses=losses), markup=False, highlight=False, soft_wrap=True)


def print_comparison(console: Console, result: Comparison) -> None:
    """``compare`` as a table: metric columns right-aligned, then the notes."""
    table = Table(title=result.title)
    for i, col in enumerate(result.header):
        table.add_column(col, justify="left" if i < 3 else "right", overflow="fold")
    for row in result.rows:
        table.add_row(*row)
    console.print(table)
    for note in result.notes:
        console.print(f"[dim]- {note}[/]", highlight=False)


__all__ = [
    "LISTING_COLUMNS", "dry_run_table", "listing_table", "plugins_table", "print_comparison", "print_run_results",
    "print_rows", "print_suite_summary", "runs_table", "suites_table",
]

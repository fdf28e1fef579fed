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
from rich.markup import escape
from rich.table import Table

from sslbench.sdk.protocol import Protocol
from sslbench.engine.cells import Cell, Outcome
from sslbench.engine.plugins import number_text
from sslbench.engine.store import Store
from sslbench.bench.compare import Comparison
from sslbench.bench.plan import GroupRow, SuiteEntry
from sslbench.bench.suites import Suite, SuiteFile

#: per kind of plugin class, the columns of its listing between name and plugin
LISTING_COLUMNS = {"methods": ["family"], "datasets": ["protocol", "files"], "evaluators": [], "architectures": []}


def _cell(rec: dict[str, Any], column: str) -> str:
    if column == "files":
        return "reads files" if rec["needs_files"] else "no files"
    return rec[column]


def param_line(param: dict[str, Any]) -> str:
    """One parameter of a :func:`sslbench.engine.plugins.describe` record: ``name: type = default``."""
    return f"{param['name']}: {param['type']} = {param['default_text']}"


def param_notes(param: dict[str, Any]) -> str:
    """A parameter's help, then its choices or bounds."""
    notes = [param["help"]] if param["help"] else []
    if param.get("protocol_default_by_dataset"):
        notes.append("other protocols: " + ", ".join(f"{d} {number_text(v)}" for d, v in param["protocol_default_by_dataset"].items()))
    if "choices" in param:
        notes.append("one of " + ", ".join(str(c) for c in param["choices"]))
    bounds = [f"{op} {number_text(param[key])}" for key, op in (("minimum", ">="), ("maximum", "<=")) if key in param]
    if bounds:
        notes.append(" and ".join(bounds))
    return "; ".join(notes)


def listing_table(kind: str, records: Sequence[dict[str, Any]]) -> Table:
    """``list-methods`` / ``list-datasets`` / ``list-evaluators``: one row per record of
    :func:`sslbench.engine.plugins.describe`, each parameter on its line as ``name: type = default``."""
    table = Table(title=f"installed {kind}", caption=f"each parameter's help: sslbench list-{kind} -v, or list-{kind} NAME", caption_justify="left")
    extra = LISTING_COLUMNS[kind]
    for col in ["name", *extra, "plugin", "params", "description"]:
        table.add_column(col, overflow="fold")
    for rec in records:
        params = "\n".join(param_line(p) for p in rec["parameters"]) or "-"
        table.add_row(escape(rec["name"]), *[_cell(rec, c) for c in extra], escape(rec["plugin"]), escape(params), escape(rec["description"]))
    return table


def parameter_tables(kind: str, records: Sequence[dict[str, Any]]) -> list[Table]:
    """``list-methods -v``: per record, a table of its parameters with type, default and help."""
    tables = []
    for rec in records:
        about = ", ".join(str(rec[c]) for c in LISTING_COLUMNS[kind] if c in rec and c != "files")
        table = Table(title=escape(f"{rec['name']} ({about + ', ' if about else ''}plugin {rec['plugin']}): {rec['description']}"), title_justify="left")
        for col in ("parameter", "type", "default", "help"):
            table.add_column(col, overflow="fold", no_wrap=col == "parameter")
        for p in rec["parameters"]:
            table.add_row(escape(p["name"]), p["type"], escape(p["default_text"]), escape(param_notes(p)))
        if not rec["parameters"]:
            table.add_row("-", "", "", "no parameters")
        tables.append(table)
    return tables


def plugins_table(records: Sequence[dict[str, Any]]) -> Table:
    """``sslbench plugins``: one row per record of :func:`sslbench.engine.plugins.plugin_records` --
    every plugin and every entry point that did not load, with why; names another distribution also
    registers are shown in the ``DIST:NAME`` form they are reachable as."""
    table = Table(title="sslbench plugins")
    for col in ("plugin", "package", "version", "state", "hooks", "registered"):
        table.add_column(col, overflow="fold")
    for r in records:
        registered = escape("; ".join(f"{k}: {', '.join(v)}" for k, v in r["registered"].items()))
        state = r.get("state", "failed" if r["error"] else "loaded")
        if r["error"]:
            registered = f"[red]skipped: {escape(r['error'])}[/]"
        elif state == "not selected":
            registered = "[dim]not loaded: SSLBENCH_LOAD_PLUGINS does not name it[/]"
        elif r.get("qualified_only"):
            contested = ", ".join(n for names in r["qualified_only"].values() for n in names)
            registered += f" [yellow](contested, reachable only as {escape(contested)})[/]"
        table.add_row(escape(r["name"]), escape(r["distribution"] or "-"), escape(r["version"] or "-"), state, ", ".join(r["hooks"]), registered)
    return table


def runs_table(rows: Sequence[dict[str, Any]], store_path: Path) -> Table:
    """``results --runs``: one row per record of :func:`sslbench.bench.runs.run_rows` (columns
    dropped by priority, and named, when the terminal is narrow)."""
    from sslbench.bench.runs import RunsTable

    return RunsTable(rows, title=f"stored runs ({store_path})")  # type: ignore[return-value]


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
    table = Table(title=f"suite {suite.name}, budget {budget} (protocol {suite.budget(budget).protocol}): {len(cells)} runs")
    for col in ("data set", "method", "budget" if any(isinstance(r.epochs, str) for r in rows) else "epochs", "seeds", "data dir", "stored"):
        table.add_column(col, overflow="fold")
    for r in rows:
        table.add_row(r.dataset, r.method, str(r.epochs), ", ".join(str(s) for s in r.seeds), r.data_dir or "-", f"{r.complete}/{len(r.seeds)}")
    return table


def print_suite_summary(console: Console, store: Store, suite: Suite, budget: str, cells: Sequence[Cell]) -> None:
    """After ``bench``: the result table of each data set, the suite's claims, where the store is."""
    from sslbench.bench.claims import SPREAD_RULE
    from sslbench.bench.reports import suite_claims
    from sslbench.bench.reports import collect
    from sslbench.bench.tables import rich_table

    results = collect(store, suite, budget, cells)
    for dataset in suite.datasets:
        rows = results.dataset_rows(dataset)
        if any(r.seeds for r in rows):
            console.print(rich_table(rows, title=f"{suite.name} ({budget}) on {dataset}"))
    claims = suite_claims(results)
    if claims:
        table = Table(title=f"claims of {suite.name} ({budget}); beyond seed spread: {SPREAD_RULE}")
        for col in ("claim", "result", "figures", "beyond seed spread"):
            table.add_column(col, overflow="fold")
        colour = {"held": "green", "not held": "red", "not at equal effort": "yellow", "not run": "yellow"}
        for r in claims:
            table.add_row(r.claim.text, f"[{colour[r.status]}]{escape(r.verdict)}[/]", r.figures, r.beyond_spread)
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
    title = (f"{cells[0].dataset}: protocol {protocol.get('preset', 'uniform')}, {protocol['name']} ({Protocol.from_dict(protocol).hash()}), "
             f"selection {cells[0].selection}")
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


def _bytes(n: int | None) -> str:
    if n is None:
        return ""
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024  # type: ignore[assignment]
    return ""  # pragma: no cover


def data_table(statuses: Sequence[Any], config_file: Path) -> Table:
    """``sslbench data``: one row per :class:`~sslbench.engine.dataroot.DataStatus` -- found or
    missing, where (or where it looked), size, digest check, and how to get it when missing."""
    caption = escape(f"config file: {config_file} ([data] root = \"DIR\", or DATASET = \"DIR\"); data root: $SSLBENCH_DATA, else [data] root")
    table = Table(title="data sets", caption=caption, caption_justify="left")
    for col in ("name", "state", "where", "size", "digest"):
        table.add_column(col, overflow="fold")
    colour = {"found": "green", "missing": "red", "embedded": "dim"}
    for s in statuses:
        state = f"[{colour.get(s.state, 'white')}]{s.state}[/]"
        if s.state == "found":
            where = f"{escape(s.path or '')}\n[dim]({escape(s.source)})[/]"
        elif s.state == "missing":
            looked = "\n".join(escape(p) for p in s.looked) or "nowhere: set $SSLBENCH_DATA or pass --data-dir"
            where = f"[dim]looked in:[/]\n{looked}\n[dim]get it:[/] {escape(s.how_to_get)}"
        else:
            where = "[dim]no files needed[/]"
        digest = s.digest + (f": {escape(', '.join(s.mismatched))}" if s.mismatched else "")
        if s.digest == "differs":
            digest = f"[yellow]{digest}[/]"
        table.add_row(s.name, state, where, _bytes(s.size), digest)
    return table


def print_missing_data(console: Console, statuses: Sequence[Any]) -> None:
    """The lines under a dry run (or before ``bench`` trains) naming each data set whose files were not
    found, where it was looked for and how to get it."""
    for s in statuses:
        looked = ", ".join(s.looked) or "nowhere (no --data-dir, no $SSLBENCH_DATA, no [data] config)"
        console.print(
            f"[yellow]missing data:[/] {s.name}: not found (looked in {escape(looked)}); its loader will try to download it. "
            f"Get it: {escape(s.how_to_get)}; then set SSLBENCH_DATA to that root or pass --data-dir.",
            highlight=False,
        )


__all__ = [
    "LISTING_COLUMNS", "data_table", "dry_run_table", "print_missing_data", "listing_table", "param_line", "param_notes", "parameter_tables", "plugins_table", "print_comparison", "print_run_results",
    "print_rows", "print_suite_summary", "runs_table", "suites_table",
]

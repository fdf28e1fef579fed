"""The command line (Typer). Thin: parse, call the runner, render."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any, List, Optional

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.table import Table

from sslbench import __version__
from sslbench.sdk.api import DataError
from sslbench.engine.plugins import UnknownNameError, get_registry

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    help="Benchmark self-supervised representation learning methods under one declared protocol.",
    pretty_exceptions_enable=False,
)
# wide tables when output goes to a file or pipe (rich would otherwise assume 80 columns)
console = Console(width=None if sys.stdout.isatty() else 200)
err = Console(stderr=True, soft_wrap=True)

HomeOption = typer.Option(None, "--home", help="Results folder (database + run files); default $SSLBENCH_HOME or ~/.local/share/sslbench.")


def _fail(message: str, code: int = 2) -> None:
    err.print(f"[bold red]error:[/] {message}", highlight=False)
    raise typer.Exit(code)


def _print_outcome(outcome) -> None:  # type: ignore[no-untyped-def]
    """One line per finished cell: done / failed (with the step) / error, and whether it was reused."""
    tag = {"done": "[green]done[/]", "failed": "[red]failed[/]", "error": "[red]error[/]"}[outcome.status]
    reuse = " (stored run reused)" if outcome.reused else ""
    msg = f": {outcome.message}" if outcome.message else ""
    err.print(f"{tag} {outcome.method} on {outcome.dataset}, seed {outcome.seed}{reuse}{msg}  [dim]run {outcome.run_id}[/]", highlight=False)


def _registry():  # type: ignore[no-untyped-def]
    registry = get_registry()
    for warning in registry.warnings:
        err.print(f"[yellow]warning:[/] {warning}", highlight=False)
    return registry


def _configure_threads() -> None:
    threads = os.environ.get("SSLBENCH_THREADS")
    if threads:
        import torch

        torch.set_num_threads(int(threads))


@app.callback()
def _main(version: bool = typer.Option(False, "--version", help="Print the version and exit.")) -> None:
    if version:
        console.print(f"sslbench {__version__}")
        raise typer.Exit()


@app.command()
def run(
    methods: List[str] = typer.Argument(..., help="Methods to compare (see list-methods)."),
    dataset: str = typer.Option("digits", "--dataset", "-d", help="Data set (see list-datasets)."),
    epochs: int = typer.Option(10, "--epochs", "-n", min=0, help="Training epochs per run."),
    seeds: int = typer.Option(1, "--seeds", "-s", min=1, help="Seeds per method (0 .. K-1)."),
    evaluator: Optional[List[str]] = typer.Option(None, "--evaluator", "-e", help="Evaluators (repeat); default knn and linear."),
    param: Optional[List[str]] = typer.Option(None, "--param", "-p", help="OWNER.NAME=VALUE for a method, dataset or evaluator, e.g. -p simclr.temperature=0.5."),
    data_dir: Optional[str] = typer.Option(None, "--data-dir", help="Folder with the data set's files (no download)."),
    device: Optional[str] = typer.Option(None, "--device", help="cpu, cuda or cuda:N; default CUDA when present, else CPU."),
    batch_size: Optional[int] = typer.Option(None, "--batch-size", min=2, help="Override the protocol's batch size (stored with the protocol)."),
    precision: str = typer.Option("fp32", "--precision", help="fp32 or bf16 (autocast)."),
    select: str = typer.Option("val", "--select", help="Model selection for k / probe epoch: val (split from train) or test (as the SimVAE paper)."),
    save_images: bool = typer.Option(False, "--save-images", help="Also write PNG grids (reconstructions, samples) into each run's folder."),
    force: bool = typer.Option(False, "--force", help="Retrain and re-evaluate even when a finished run is stored."),
    fmt: str = typer.Option("table", "--format", "-f", help="table, md, latex, csv or json."),
    losses: bool = typer.Option(False, "--losses", help="Add each loss term's last-epoch value to the table."),
    home: Optional[Path] = HomeOption,
) -> None:
    """Train each METHOD under the data set's protocol, evaluate frozen representations, print the comparison."""
    from sslbench.bench.tables import export, rich_table, summarise
    from sslbench.engine.runner import GridError, InProcessExecutor, build_grid, run_grid, split_params
    from sslbench.engine.store import Store

    _configure_threads()
    registry = _registry()
    evaluators = list(evaluator or ["knn", "linear"])
    if save_images:
        pictures = sorted(name for name, cls in registry.evaluators.items() if cls.on_save_images)
        if not pictures:
            _fail("--save-images needs an evaluator that writes pictures (such as 'samples'); no installed plugin registers one")
        evaluators += [name for name in pictures if name not in evaluators]
    if fmt not in ("table", "md", "latex", "csv", "json"):
        _fail(f"--format {fmt!r}: choose table, md, latex, csv or json")
    try:
        cells = build_grid(
            registry, methods, dataset, range(seeds), epochs, evaluators, split_params(param or []),
            batch_size=batch_size, precision=precision, selection=select, data_dir=data_dir, device=device, force=force,
        )
    except (UnknownNameError, GridError) as exc:
        _fail(str(exc))
    store = Store(home)
    executor = InProcessExecutor(store, registry)
    outcomes = []
    progress = Progress(
        TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(), TimeRemainingColumn(),
        TextColumn("{task.fields[terms]}"), console=err, transient=True,
    )

    def on_start(cell):  # type: ignore[no-untyped-def]
        task = progress.add_task(f"{cell.method} seed {cell.seed}", total=None, terms="")

        def report(step: int, total: int, terms: dict[str, float]) -> None:
            shown = "  ".join(f"{k} {v:.4g}" for k, v in terms.items())
            progress.update(task, completed=step, total=total, terms=shown)

        return report

    def on_done(outcome) -> None:  # type: ignore[no-untyped-def]
        for task in list(progress.task_ids):
            progress.remove_task(task)
        _print_outcome(outcome)
        outcomes.append(outcome)

    try:
        with progress:
            run_grid(cells, executor, on_start, on_done)
    except DataError as exc:
        _fail(f"{exc}")
    except KeyboardInterrupt:
        err.print("[yellow]interrupted[/]: finished runs are stored; run the same command again to resume.")
        raise typer.Exit(130)
    stored = store.runs(ids=[c.run_id for c in cells])
    rows = summarise(store, stored)
    for record in stored:  # evaluators that were skipped or crashed say why, once per run
        for m in store.metrics(record.id):
            if m["value"] is None and m["note"]:
                err.print(f"[yellow]{m['evaluator']}[/] on {record.method} seed {record.seed}: {m['note']}", highlight=False, markup=True)
    if fmt == "table":
        protocol = cells[0].protocol
        title = f"{dataset}: protocol {protocol['name']} ({cells[0].run_id and ''}{_protocol_hash(protocol)}), selection {select}"
        console.print(rich_table(rows, title=title, losses=losses))
        for note in sorted({r.environment.get("data_note", "") for r in stored} - {""}):
            console.print(f"[bold]data:[/] {note}", highlight=False)
        if save_images:
            for o in outcomes:
                folder = store.run_folder(o.run_id)
                pngs = sorted(folder.glob("*.png"))
                if pngs:
                    console.print(f"images for {o.method} seed {o.seed}: {folder}")
        console.print(f"[dim]results stored in {store.path}[/]")
    else:
        console.print(export(rows, fmt, losses=losses), markup=False, highlight=False, soft_wrap=True)
    if any(o.status == "error" for o in outcomes):
        raise typer.Exit(1)


def _protocol_hash(protocol: dict[str, Any]) -> str:
    from sslbench.sdk.protocol import Protocol

    return Protocol.from_dict(protocol).hash()


def _listing(kind: str, as_json: bool) -> None:
    registry = _registry()
    table_data = getattr(registry, kind)
    records = []
    for name, cls in sorted(table_data.items()):
        rec: dict[str, Any] = {"name": name, "plugin": registry.origin[(kind, name)], "description": getattr(cls, "description", "")}
        if kind == "methods":
            rec["family"] = cls.family
            rec["capabilities"] = sorted(cls.capabilities())
        if kind == "datasets":
            rec["protocol"] = cls.protocol.name
            rec["protocol_hash"] = cls.protocol.hash()
        if kind == "evaluators" and cls.requires:
            rec["requires"] = sorted(cls.requires)
        declared = cls.declared_params() if hasattr(cls, "declared_params") else {}
        rec["params"] = {p: repr(v.default) for p, v in declared.items()}
        records.append(rec)
    if as_json:
        print(json.dumps(records, indent=2))
        return
    table = Table(title=f"installed {kind}")
    extra = {"methods": ["family"], "datasets": ["protocol"], "evaluators": [], "architectures": []}[kind]
    for col in ["name", *extra, "plugin", "params", "description"]:
        table.add_column(col, overflow="fold")
    for rec in records:
        params = ", ".join(f"{k}={v}" for k, v in rec["params"].items())
        table.add_row(rec["name"], *[rec[c] for c in extra], rec["plugin"], params, rec["description"])
    console.print(table)


@app.command("list-methods")
def list_methods(as_json: bool = typer.Option(False, "--json", help="Machine-readable output.")) -> None:
    """The installed methods, their family, parameters and plugin."""
    _listing("methods", as_json)


@app.command("list-datasets")
def list_datasets(as_json: bool = typer.Option(False, "--json", help="Machine-readable output.")) -> None:
    """The installed data sets and the protocol each trains under."""
    _listing("datasets", as_json)


@app.command("list-evaluators")
def list_evaluators(as_json: bool = typer.Option(False, "--json", help="Machine-readable output.")) -> None:
    """The installed evaluators and their options."""
    _listing("evaluators", as_json)


@app.command("plugins")
def plugins(as_json: bool = typer.Option(False, "--json", help="Machine-readable output.")) -> None:
    """Every loaded plugin: its package, version, hooks, what it registered, or why it was skipped."""
    registry = _registry()
    records = [
        {"name": p.name, "distribution": p.distribution, "version": p.version, "hooks": p.hooks, "registered": p.registered, "error": p.error}
        for p in registry.plugins.values()
    ]
    if as_json:
        print(json.dumps(records, indent=2))
        return
    table = Table(title="sslbench plugins")
    for col in ("plugin", "package", "version", "hooks", "registered"):
        table.add_column(col, overflow="fold")
    for r in records:
        registered = "; ".join(f"{k}: {', '.join(v)}" for k, v in r["registered"].items())
        if r["error"]:
            registered = f"[red]skipped: {r['error']}[/]"
        table.add_row(r["name"], r["distribution"] or "-", r["version"] or "-", ", ".join(r["hooks"]), registered)
    console.print(table)


@app.command()
def results(
    method: Optional[str] = typer.Option(None, "--method", "-m", help="Only this method."),
    dataset: Optional[str] = typer.Option(None, "--dataset", "-d", help="Only this data set."),
    status: Optional[str] = typer.Option(None, "--status", help="done, failed, error or running."),
    runs: bool = typer.Option(False, "--runs", help="List individual runs instead of the mean ± std summary."),
    losses: bool = typer.Option(False, "--losses", help="Add each loss term's last-epoch value to the summary."),
    fmt: str = typer.Option("table", "--format", "-f", help="table, md, latex, csv or json."),
    home: Optional[Path] = HomeOption,
) -> None:
    """List and filter stored runs (summary over seeds, or one line per run with --runs)."""
    from sslbench.bench.tables import export, rich_table, summarise
    from sslbench.engine.store import Store

    store = Store(home)
    records = store.runs(method=method, dataset=dataset, status=status)
    if not records:
        err.print(f"no stored runs match in {store.path}")
        raise typer.Exit(0)
    if runs:
        rows = [
            {"id": r.id, "method": r.method, "dataset": r.dataset, "seed": r.seed, "epochs": r.epochs, "status": r.status,
             "failed_step": r.failed_step, "protocol": r.protocol_hash, "img/s": round(r.images_per_s or 0),
             "aug %": round(100 * (r.augment_share or 0), 1), "peak MB": round(r.peak_memory_mb or 0),
             "metrics": {m["name"]: m["value"] for m in store.metrics(r.id) if m["value"] is not None}}
            for r in records
        ]
        if fmt == "json":
            print(json.dumps(rows, indent=2))
            return
        table = Table(title=f"stored runs ({store.path})")
        for col in ("id", "method", "dataset", "seed", "epochs", "status", "protocol", "img/s", "aug %", "peak MB", "metrics"):
            table.add_column(col, overflow="fold")
        for r in rows:
            status_text = r["status"] + (f" at step {r['failed_step']}" if r["failed_step"] else "")
            metrics = ", ".join(f"{k}={v:.4g}" for k, v in r["metrics"].items())
            table.add_row(r["id"], r["method"], r["dataset"], str(r["seed"]), str(r["epochs"]), status_text, r["protocol"],
                          str(r["img/s"]), str(r["aug %"]), str(r["peak MB"]), metrics)
        console.print(table)
        return
    summary = summarise(store, records)
    if fmt == "table":
        console.print(rich_table(summary, title=f"stored results ({store.path})", losses=losses))
    else:
        console.print(export(summary, fmt, losses=losses), markup=False, highlight=False, soft_wrap=True)


# ------------------------------------------------------------------------------------------------
# suites: bench, report, compare


SuiteFileOption = typer.Option(None, "--file", help="Suite file; default ./benchmarks.toml, else the one beside the sslbench package.")


def _suite_file(file: Optional[Path]):  # type: ignore[no-untyped-def]
    from sslbench.bench.suites import SuiteError, default_suite_file, load_suites

    try:
        return load_suites(file or default_suite_file())
    except SuiteError as exc:
        _fail(str(exc))


def _data_dirs(values: Optional[List[str]], datasets: List[str]) -> dict:  # type: ignore[type-arg]
    """``--data-dir DIR`` (every data set of the suite) or ``--data-dir DATASET=DIR``."""
    dirs: dict[str, str] = {}
    for value in values or []:
        name, sep, folder = value.partition("=")
        if sep and name in datasets:
            dirs[name] = folder
        elif sep and not Path(value).exists():
            _fail(f"--data-dir {value!r}: {name!r} is not a data set of this suite ({', '.join(datasets)}); write --data-dir DIR or --data-dir DATASET=DIR")
        else:
            dirs.update({d: value for d in datasets})
    return dirs


def _suite_cells(file: Optional[Path], name: str, budget: str, registry, data_dir: Optional[List[str]] = None, device: Optional[str] = None):  # type: ignore[no-untyped-def]
    from sslbench.bench.suites import SuiteError

    sf = _suite_file(file)
    try:
        suite = sf.get(name)
        suite.budget(budget)
        suite.check(registry)
        return suite, suite.cells(registry, budget, _data_dirs(data_dir, suite.datasets), device)
    except SuiteError as exc:
        _fail(str(exc))


def _cell_state(store, cell) -> str:  # type: ignore[no-untyped-def]
    """What bench would do with a cell: complete, evaluate, train, retrain (interrupted) or failed."""
    record = store.get_run(cell.run_id) if store else None
    if record is None:
        return "train"
    if record.status == "failed":
        return "failed"
    if record.status == "done" and store.checkpoint_path(cell.run_id).is_file():
        missing = [n for n, o in cell.evaluators if not store.has_metrics(cell.run_id, n, o, cell.selection)]
        return "evaluate" if missing else "complete"
    return "retrain"


def _list_suites(file: Optional[Path], registry) -> None:  # type: ignore[no-untyped-def]
    from sslbench.bench.suites import SuiteError

    sf = _suite_file(file)
    table = Table(title=f"suites in {sf.path}")
    for col in ("suite", "data sets", "methods", "evaluators", "budgets (runs)", "description"):
        table.add_column(col, overflow="fold", no_wrap=col == "suite")
    for suite in sf.suites.values():
        try:
            suite.check(registry)
            budgets = ", ".join(f"{b} ({len(suite.cells(registry, b))})" for b in suite.budgets)
        except SuiteError as exc:
            budgets = f"[red]invalid: {exc}[/]"
        table.add_row(suite.name, ", ".join(suite.datasets), str(len(suite.methods)), ", ".join(suite.evaluators), budgets, suite.description)
    console.print(table)


@app.command()
def bench(
    suite_name: Optional[str] = typer.Argument(None, metavar="SUITE", help="Suite name in the suite file (see --list)."),
    budget: str = typer.Option("cpu", "--budget", "-b", help="Budget of the suite: cpu (2 CPU cores, under an hour) or paper (the published protocol)."),
    dry_run: bool = typer.Option(False, "--dry-run", help="Print the grid, its size and how much of it is stored; run nothing."),
    list_suites: bool = typer.Option(False, "--list", help="List the suites of the file with their budgets and grid sizes."),
    file: Optional[Path] = SuiteFileOption,
    data_dir: Optional[List[str]] = typer.Option(None, "--data-dir", help="DIR for every data set of the suite, or DATASET=DIR (repeat); overrides the suite's data_dir."),
    device: Optional[str] = typer.Option(None, "--device", help="cpu, cuda or cuda:N; default CUDA when present, else CPU."),
    home: Optional[Path] = HomeOption,
) -> None:
    """Run a named suite through the results store. Interrupted (Ctrl-C, kill -9), the same command
    resumes it: finished runs are reused, unfinished ones retrained."""
    from sslbench.engine.runner import InProcessExecutor, run_grid
    from sslbench.engine.store import Store, default_home

    _configure_threads()
    registry = _registry()
    if list_suites or suite_name is None:
        _list_suites(file, registry)
        return
    suite, cells = _suite_cells(file, suite_name, budget, registry, data_dir, device)
    if dry_run:
        folder = Path(home).expanduser() if home else default_home()
        store = Store(folder) if (folder / "results.sqlite").is_file() else None
        states = [_cell_state(store, c) for c in cells]
        table = Table(title=f"suite {suite.name}, budget {budget}: {len(cells)} runs")
        for col in ("data set", "method", "epochs", "seeds", "data dir", "stored"):
            table.add_column(col, overflow="fold")
        groups: dict = {}
        for cell, state in zip(cells, states):
            groups.setdefault((cell.dataset, cell.method), []).append((cell, state))
        for (dataset, method), items in groups.items():
            complete = sum(s == "complete" for _, s in items)
            table.add_row(dataset, method, str(items[0][0].epochs), ", ".join(str(c.seed) for c, _ in items),
                          items[0][0].data_dir or "-", f"{complete}/{len(items)}")
        console.print(table)
        count = {s: states.count(s) for s in ("complete", "evaluate", "train", "retrain", "failed")}
        console.print(
            f"{len(cells)} runs: {count['complete']} complete, {count['evaluate']} trained and waiting for evaluators, "
            f"{count['failed']} failed (kept), {count['retrain']} interrupted (will retrain), {count['train']} to train. "
            f"Evaluators: {', '.join(suite.evaluators)}.",
            highlight=False,
        )
        return
    store = Store(home)
    states = [_cell_state(store, c) for c in cells]
    err.print(
        f"suite {suite.name}, budget {budget}: {len(cells)} runs, {states.count('complete')} already complete, "
        f"{states.count('evaluate')} to evaluate, {states.count('train') + states.count('retrain')} to train "
        f"({states.count('retrain')} interrupted earlier); store {store.path}",
        highlight=False,
    )
    executor = InProcessExecutor(store, registry)
    outcomes = []
    progress = Progress(
        TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(), TimeRemainingColumn(),
        TextColumn("{task.fields[terms]}"), console=err, transient=True,
    )
    overall = progress.add_task(f"suite {suite.name} ({budget})", total=len(cells), terms="")

    def on_start(cell):  # type: ignore[no-untyped-def]
        task = progress.add_task(f"{cell.dataset} {cell.method} seed {cell.seed}", total=None, terms="")

        def report(step: int, total: int, terms: dict[str, float]) -> None:
            progress.update(task, completed=step, total=total, terms="  ".join(f"{k} {v:.4g}" for k, v in terms.items()))

        return report

    def on_done(outcome) -> None:  # type: ignore[no-untyped-def]
        for task in list(progress.task_ids):
            if task != overall:
                progress.remove_task(task)
        progress.advance(overall)
        _print_outcome(outcome)
        outcomes.append(outcome)

    data_errors = []
    try:
        with progress:
            for dataset in suite.datasets:
                group = [c for c in cells if c.dataset == dataset]
                try:
                    run_grid(group, executor, on_start, on_done)
                except DataError as exc:
                    progress.advance(overall, len(group) - sum(1 for o in outcomes if o.dataset == dataset))
                    data_errors.append(f"{dataset}: {exc}")
                    err.print(f"[bold red]error:[/] {dataset}: {exc} (its {len(group)} runs were skipped; the other data sets go on)", highlight=False)
    except KeyboardInterrupt:
        again = " ".join(["sslbench bench", suite.name, "--budget", budget, *(["--file", str(file)] if file else []), *(["--home", str(home)] if home else [])])
        err.print(f"[yellow]interrupted[/]: finished runs are stored; `{again}` resumes.", highlight=False)
        raise typer.Exit(130)
    _print_suite_summary(store, suite, budget, cells)
    if data_errors:
        raise typer.Exit(2)
    if any(o.status == "error" for o in outcomes):
        raise typer.Exit(1)


def _print_suite_summary(store, suite, budget: str, cells) -> None:  # type: ignore[no-untyped-def]
    from sslbench.bench.tables import rich_table
    from sslbench.bench.reports import collect
    from sslbench.bench.claims import SPREAD_RULE, evaluate_claims

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


@app.command()
def report(
    suite_name: str = typer.Argument(..., metavar="SUITE", help="Suite name in the suite file."),
    budget: str = typer.Option("cpu", "--budget", "-b", help="Which budget's runs to report."),
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="Report folder; default HOME/reports/SUITE-BUDGET."),
    fmt: str = typer.Option("md", "--format", "-f", help="md (report.md only), or also the tables as latex, csv or json."),
    file: Optional[Path] = SuiteFileOption,
    home: Optional[Path] = HomeOption,
) -> None:
    """Write a suite's report: Markdown with result tables, claims (held / not held / not run), PNG
    plots and the pictures its runs wrote; optionally the same tables as LaTeX, CSV or JSON."""
    from sslbench.bench.reports import collect, write_report
    from sslbench.engine.store import Store

    if fmt not in ("md", "latex", "csv", "json"):
        _fail(f"--format {fmt!r}: choose md, latex, csv or json")
    registry = _registry()
    suite, cells = _suite_cells(file, suite_name, budget, registry)
    store = Store(home)
    results = collect(store, suite, budget, cells)
    folder = out or store.home / "reports" / f"{suite.name}-{budget}"
    written = write_report(store, results, Path(folder), fmt)
    counts = results.counts()
    console.print(f"{counts['done']} of {len(cells)} runs finished; report written:", highlight=False)
    for path in written:
        console.print(f"  {path}", highlight=False)


@app.command()
def compare(
    a: str = typer.Argument(..., help="A run id (or a unique prefix of one), or a suite name, optionally SUITE@BUDGET."),
    b: str = typer.Argument(..., help="The same kind as A."),
    budget: str = typer.Option("cpu", "--budget", "-b", help="Budget for suites named without @BUDGET."),
    fmt: str = typer.Option("table", "--format", "-f", help="table, md or json."),
    file: Optional[Path] = SuiteFileOption,
    home: Optional[Path] = HomeOption,
) -> None:
    """Two stored runs or two suites side by side: each metric, the difference B - A and whether it
    exceeds the seed-to-seed spread (the rule is printed with the result)."""
    from sslbench.bench.compare import compare_runs, compare_suites, comparison_text
    from sslbench.bench.reports import collect
    from sslbench.engine.store import Store

    if fmt not in ("table", "md", "json"):
        _fail(f"--format {fmt!r}: choose table, md or json")
    store = Store(home)

    def as_run(ref: str):  # type: ignore[no-untyped-def]
        found = [r for r in store.runs() if r.id.startswith(ref)] if len(ref) >= 4 else []
        if len(found) > 1:
            _fail(f"{ref!r} matches {len(found)} runs ({', '.join(r.id for r in found[:5])}); give more of the run id")
        return found[0] if found else None

    def as_suite(ref: str):  # type: ignore[no-untyped-def]
        from sslbench.bench.suites import default_suite_file

        name, _, at = ref.partition("@")
        path = file or default_suite_file()
        if not path.is_file():
            return None
        sf = _suite_file(file)
        if name not in sf.suites:
            return None
        return name, at or budget

    run_a, run_b = as_run(a), as_run(b)
    if run_a and run_b:
        result = compare_runs(store, run_a, run_b)
    else:
        suite_a, suite_b = as_suite(a), as_suite(b)
        if not (suite_a and suite_b):
            unknown = [ref for ref, r, s in ((a, run_a, suite_a), (b, run_b, suite_b)) if not (r or s)]
            if unknown:
                _fail(f"{', '.join(repr(u) for u in unknown)}: neither a stored run id (in {store.path}) nor a suite; "
                      "see `sslbench results --runs` for run ids and `sslbench bench --list` for suites")
            _fail("compare two runs or two suites, not one of each")
        registry = _registry()
        sides = []
        for name, b_name in (suite_a, suite_b):
            suite, cells = _suite_cells(file, name, b_name, registry)
            sides.append(collect(store, suite, b_name, cells))
        result = compare_suites(sides[0], sides[1])
    if fmt != "table":
        console.print(comparison_text(result, fmt), markup=False, highlight=False, soft_wrap=True)
        return
    table = Table(title=result.title)
    for i, col in enumerate(result.header):
        table.add_column(col, justify="left" if i < 3 else "right", overflow="fold")
    for row in result.rows:
        table.add_row(*row)
    console.print(table)
    for note in result.notes:
        console.print(f"[dim]- {note}[/]", highlight=False)


def main() -> None:
    try:
        app()
    except DataError as exc:  # pragma: no cover - safety net; commands handle their own
        err.print(f"[bold red]error:[/] {exc}")
        sys.exit(2)


if __name__ == "__main__":  # pragma: no cover
    main()

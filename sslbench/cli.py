"""The command line (Typer). Thin: each command parses its options, calls one function of the engine
or of bench, and renders what it returns (tables in :mod:`sslbench.bench.console`, the live display in
:mod:`sslbench.bench.live`)."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any, Callable, List, NoReturn, Optional, TypeVar

import typer
from rich.console import Console

from sslbench import __version__
from sslbench.sdk.api import DataError
from sslbench.bench.toml_lines import SuiteError
from sslbench.engine.cells import GridError, build_grid, split_params, with_picture_evaluators
from sslbench.engine.plugins import UnknownNameError, describe, get_registry, plugin_records
from sslbench.engine.train import configure_threads

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="Benchmark self-supervised representation learning methods under one declared protocol.")
# wide tables when output goes to a file or pipe (rich would otherwise assume 80 columns)
console = Console(width=None if sys.stdout.isatty() else 200)
err = Console(stderr=True, soft_wrap=True)

HomeOption = typer.Option(None, "--home", help="Results folder (database + run files); default $SSLBENCH_HOME or ~/.local/share/sslbench.")
SuiteFileOption = typer.Option(None, "--file", help="Suite file; default ./benchmarks.toml, else the one beside the sslbench package.")
T = TypeVar("T")


def _fail(message: str, code: int = 2) -> NoReturn:
    err.print(f"[bold red]error:[/] {message}", highlight=False)
    raise typer.Exit(code)


def _checked(call: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """``call(*args, **kwargs)``; a suite, grid or name error is printed as ``error: ...`` (exit 2)."""
    try:
        return call(*args, **kwargs)
    except (SuiteError, GridError, UnknownNameError) as exc:
        _fail(str(exc))


def _registry():  # type: ignore[no-untyped-def]
    registry = get_registry()
    for warning in registry.warnings:
        err.print(f"[yellow]warning:[/] {warning}", highlight=False)
    return registry


def _show(records: list[dict[str, Any]], as_json: bool, table: Callable[[list[dict[str, Any]]], Any]) -> None:
    """``records`` as JSON on stdout, or rendered by ``table``."""
    if as_json:
        print(json.dumps(records, indent=2))
    else:
        console.print(table(records))


def _check_format(fmt: str, allowed: tuple[str, ...]) -> None:
    if fmt not in allowed:
        _fail(f"--format {fmt!r}: choose {', '.join(allowed[:-1])} or {allowed[-1]}")


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
    from sslbench.bench.console import print_run_results
    from sslbench.bench.live import LiveProgress
    from sslbench.engine.runner import InProcessExecutor, run_grid
    from sslbench.engine.store import Store

    configure_threads()
    registry = _registry()
    evaluators = list(evaluator or ["knn", "linear"])
    evaluators = _checked(with_picture_evaluators, registry, evaluators) if save_images else evaluators
    _check_format(fmt, ("table", "md", "latex", "csv", "json"))
    cells = _checked(
        lambda: build_grid(registry, methods, dataset, range(seeds), epochs, evaluators, split_params(param or []), batch_size=batch_size,
                           precision=precision, selection=select, data_dir=data_dir, device=device, force=force)
    )
    store = Store(home)
    try:
        with LiveProgress(err) as live:
            grid = run_grid(cells, InProcessExecutor(store, registry), live.on_start, live.on_done, live.on_data_error)
    except KeyboardInterrupt:
        err.print("[yellow]interrupted[/]: finished runs are stored; run the same command again to resume.")
        raise typer.Exit(130)
    for exc in grid.data_errors.values():
        _fail(f"{exc}")
    print_run_results(console, err, store, cells, grid.outcomes, fmt, losses=losses, save_images=save_images)
    if any(o.status == "error" for o in grid.outcomes):
        raise typer.Exit(1)


def _listing(kind: str, as_json: bool) -> None:
    from sslbench.bench.console import listing_table

    _show(describe(_registry(), kind), as_json, lambda records: listing_table(kind, records))


@app.command("list-methods")
def list_methods(as_json: bool = typer.Option(False, "--json", help="Machine-readable output.")) -> None:
    """The installed methods, their family, parameters and plugin."""
    _listing("methods", as_json)


@app.command("list-datasets")
def list_datasets(as_json: bool = typer.Option(False, "--json", help="Machine-readable output.")) -> None:
    """The installed data sets, the protocol each trains under, and whether it reads files."""
    _listing("datasets", as_json)


@app.command("list-evaluators")
def list_evaluators(as_json: bool = typer.Option(False, "--json", help="Machine-readable output.")) -> None:
    """The installed evaluators and their options."""
    _listing("evaluators", as_json)


@app.command("plugins")
def plugins(as_json: bool = typer.Option(False, "--json", help="Machine-readable output.")) -> None:
    """Every loaded plugin: its package, version, hooks, what it registered, or why it was skipped."""
    from sslbench.bench.console import plugins_table

    _show(plugin_records(_registry()), as_json, plugins_table)


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
    from sslbench.bench.console import print_rows, runs_table
    from sslbench.bench.runs import run_rows
    from sslbench.bench.tables import summarise
    from sslbench.engine.store import Store

    store = Store(home)
    records = store.runs(method=method, dataset=dataset, status=status)
    if not records:
        err.print(f"no stored runs match in {store.path}")
        raise typer.Exit(0)
    if runs:
        _show(run_rows(store, records), fmt == "json", lambda rows: runs_table(rows, store.path))
        return
    print_rows(console, summarise(store, records), fmt, f"stored results ({store.path})", losses)


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
    from sslbench.bench import plan
    from sslbench.bench.console import dry_run_table, print_suite_summary, suites_table
    from sslbench.bench.live import LiveProgress
    from sslbench.engine.runner import InProcessExecutor, run_grid
    from sslbench.engine.store import Store

    configure_threads()
    registry = _registry()
    if list_suites or suite_name is None:
        console.print(suites_table(*_checked(plan.list_suites, file, registry)))
        return
    suite, cells = _checked(plan.suite_cells, file, suite_name, budget, registry, data_dir, device)
    if dry_run:
        states = plan.states(plan.existing_store(home), cells)
        console.print(dry_run_table(suite, budget, cells, plan.dry_run_rows(cells, states)))
        console.print(plan.dry_run_summary(suite, cells, states), highlight=False)
        return
    store = Store(home)
    err.print(plan.start_summary(store, suite, budget, cells), highlight=False)
    try:
        with LiveProgress(err, overall=f"suite {suite.name} ({budget})", total=len(cells)) as live:
            grid = run_grid(cells, InProcessExecutor(store, registry), live.on_start, live.on_done, live.on_data_error)
    except KeyboardInterrupt:
        err.print(f"[yellow]interrupted[/]: finished runs are stored; `{plan.resume_command(suite, budget, file, home)}` resumes.", highlight=False)
        raise typer.Exit(130)
    print_suite_summary(console, store, suite, budget, cells)
    if grid.data_errors:
        raise typer.Exit(2)
    if any(o.status == "error" for o in grid.outcomes):
        raise typer.Exit(1)


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
    from sslbench.bench.plan import suite_cells
    from sslbench.bench.reports import collect, write_report
    from sslbench.engine.store import Store

    _check_format(fmt, ("md", "latex", "csv", "json"))
    suite, cells = _checked(suite_cells, file, suite_name, budget, _registry())
    store = Store(home)
    results = collect(store, suite, budget, cells)
    written = write_report(store, results, Path(out or store.home / "reports" / f"{suite.name}-{budget}"), fmt)
    console.print(f"{results.counts()['done']} of {len(cells)} runs finished; report written:", highlight=False)
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
    from sslbench.bench.compare import compare_runs, compare_suites, comparison_text, resolve_references
    from sslbench.bench.console import print_comparison
    from sslbench.bench.plan import suite_results
    from sslbench.engine.store import RunRecord, Store

    _check_format(fmt, ("table", "md", "json"))
    store = Store(home)
    try:
        side_a, side_b = resolve_references(store, a, b, budget, file)
    except ValueError as exc:  # an ambiguous or unknown reference, or a suite file that does not parse
        _fail(str(exc))
    if isinstance(side_a, RunRecord) and isinstance(side_b, RunRecord):
        result = compare_runs(store, side_a, side_b)
    else:
        registry = _registry()
        result = compare_suites(*(_checked(suite_results, store, file, name, at, registry) for name, at in (side_a, side_b)))
    if fmt == "table":
        print_comparison(console, result)
    else:
        console.print(comparison_text(result, fmt), markup=False, highlight=False, soft_wrap=True)


def main() -> None:
    try:
        app()
    except DataError as exc:  # pragma: no cover - safety net; commands handle their own
        err.print(f"[bold red]error:[/] {exc}")
        sys.exit(2)


if __name__ == "__main__":  # pragma: no cover
    main()

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
from rich.markup import escape

from sslbench import __version__
from sslbench.sdk.api import DataError
from sslbench.sdk.files import UnsafePathError
from sslbench.bench.toml_lines import SuiteError
from sslbench.bench.validate import OptionError, check_format, check_results_options, ignored_data_dir
from sslbench.engine.cells import GridError, build_grid, split_params, with_numerics, with_picture_evaluators
from sslbench.engine.effort import BudgetError, pick_budget
from sslbench.engine.plugins import UnknownNameError, describe, get_registry, plugin_records
from sslbench.engine.store import RUN_STATUSES, StoreError
from sslbench.engine.train import DeviceAssert, SetupError, configure_threads

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="Benchmark self-supervised representation learning methods under one declared protocol.")
# wide tables when output goes to a file or pipe (rich would otherwise assume 80 columns)
console = Console(width=None if sys.stdout.isatty() else 200)
err = Console(stderr=True, soft_wrap=True)

HomeOption = typer.Option(None, "--home", help="Results folder (database + run files); default $SSLBENCH_HOME or ~/.local/share/sslbench.")
SuiteFileOption = typer.Option(None, "--file", help="Your own suite file; default the suites shipped with sslbench (see bench --list).")
CheckpointOption = typer.Option("auto", "--checkpoint-every", help="Training checkpoints for resuming: a time (30s, 10m), epochs (1e), steps (500steps), auto (every 10 min and at epoch ends, under 1% of training time) or off.")
ReuseStaleOption = typer.Option(False, "--reuse-stale", help="Reuse stored results even when the code or data that made them changed (see `sslbench results`).")
CompileOption = typer.Option(False, "--compile", help="torch.compile each method's forward and loss (compile time reported apart; part of the run's provenance).")
DeterministicOption = typer.Option(False, "--deterministic", help="Deterministic algorithms, cuDNN and cuBLAS (repeatable conv training on CUDA; slower).")
ExecutorOption = typer.Option(None, "--executor", help="in-process (default), local (--jobs N processes of this machine) or ray (a local Ray instance, or --ray-address).")
JobsOption = typer.Option(None, "--jobs", "-j", min=1, help="Worker processes of --executor local (CPU threads divided between them, GPUs shared); default one per CPU, at most 8.")
RayAddressOption = typer.Option(None, "--ray-address", help="--executor ray: join this Ray cluster (default $RAY_ADDRESS, else a local instance).")
CpusOption = typer.Option(None, "--cpus-per-run", min=0.01, help="--executor ray: CPUs each run declares, its torch threads (default 1).")
GpusOption = typer.Option(None, "--gpus-per-run", min=0.0, help="--executor ray: GPUs each run declares, fractional (0.125: 8 runs per GPU); default 1 with CUDA, else 0.")
T = TypeVar("T")


def _fail(message: str, code: int = 2) -> NoReturn:
    err.print(f"[bold red]error:[/] {escape(message)}", highlight=False)
    raise typer.Exit(code)


def _checked(call: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """``call(*args, **kwargs)``; a bad option, suite, grid, name, device or store: ``error: ...``, exit 2."""
    try:
        return call(*args, **kwargs)
    except (OptionError, SuiteError, GridError, UnknownNameError, SetupError, StoreError, UnsafePathError, BudgetError) as exc:
        _fail(str(exc))


def _registry():  # type: ignore[no-untyped-def]
    registry = get_registry()
    for warning in registry.warnings:
        err.print(f"[yellow]warning:[/] {escape(warning)}", highlight=False)  # a plugin's text is not markup
    return registry


def _show(records: list[dict[str, Any]], as_json: bool, table: Callable[[list[dict[str, Any]]], Any]) -> None:
    """``records`` as JSON on stdout, or rendered by ``table``."""
    if as_json:
        print(json.dumps(records, indent=2))
    else:
        console.print(table(records))


def _print_version(value: bool) -> None:
    if value:
        print(f"sslbench {__version__}")
        raise typer.Exit()


@app.callback()
def _main(version: bool = typer.Option(False, "--version", is_eager=True, expose_value=False, callback=_print_version,
                                       help="Print the version and exit.")) -> None:
    """Benchmark self-supervised representation learning methods under one declared protocol."""


@app.command()
def run(
    methods: List[str] = typer.Argument(..., help="Methods to compare (see list-methods)."),
    dataset: str = typer.Option("digits", "--dataset", "-d", help="Data set (see list-datasets)."),
    epochs: Optional[int] = typer.Option(None, "--epochs", "-n", min=0, help="Training epochs per run (default 10 when no other budget is given)."),
    steps: Optional[int] = typer.Option(None, "--steps", min=1, help="Budget in optimiser steps instead of epochs (stored with the run)."),
    views: Optional[float] = typer.Option(None, "--views", min=1, help="Budget in views seen (images x views per image), converted to steps."),
    flops: Optional[float] = typer.Option(None, "--flops", min=1, help="Budget in training FLOPs (one step counted, times the steps), converted to steps."),
    protocol: str = typer.Option("uniform", "--protocol", help="Named protocol: uniform (sslbench's equal images per step) or paper (each method as its paper and code trained it); docs/protocols.md."),
    seeds: int = typer.Option(1, "--seeds", "-s", min=1, help="Seeds per method (0 .. K-1)."),
    evaluator: Optional[List[str]] = typer.Option(None, "--evaluator", "-e", help="Evaluators (repeat); default knn and linear."),
    param: Optional[List[str]] = typer.Option(None, "--param", "-p", help="OWNER.NAME=VALUE for a method, dataset or evaluator, e.g. -p simclr.temperature=0.5."),
    data_dir: Optional[str] = typer.Option(None, "--data-dir", help="Folder with the data set's files (no download)."),
    device: Optional[str] = typer.Option(None, "--device", help="cpu, cuda or cuda:N; default CUDA when present, else CPU."),
    batch_size: Optional[int] = typer.Option(None, "--batch-size", min=2, help="Override the protocol's batch size (stored with the protocol)."),
    precision: str = typer.Option("fp32", "--precision", help="fp32 (full IEEE), tf32 (TF32 matmul/conv on CUDA) or bf16 (autocast)."),
    compile: bool = CompileOption,
    deterministic: bool = DeterministicOption,
    select: str = typer.Option("val", "--select", help="Model selection for k / probe epoch: val (split from train) or test (as the SimVAE paper)."),
    save_images: bool = typer.Option(False, "--save-images", help="Also write PNG grids (reconstructions, samples) into each run's folder."),
    force: bool = typer.Option(False, "--force", help="Retrain and re-evaluate even when a finished run is stored."),
    reuse_stale: bool = ReuseStaleOption,
    checkpoint_every: str = CheckpointOption,
    fmt: str = typer.Option("table", "--format", "-f", help="table, md, latex, csv or json."),
    losses: bool = typer.Option(False, "--losses", help="Add each loss term's last-epoch value to the table."),
    executor: Optional[str] = ExecutorOption, jobs: Optional[int] = JobsOption, ray_address: Optional[str] = RayAddressOption,
    cpus_per_run: Optional[float] = CpusOption, gpus_per_run: Optional[float] = GpusOption,
    home: Optional[Path] = HomeOption,
) -> None:
    """Train each METHOD under the data set's protocol, evaluate frozen representations, print the comparison."""
    from sslbench.bench.console import print_run_results
    from sslbench.bench.live import LiveProgress
    from sslbench.engine.executors import make_executor
    from sslbench.engine.runner import run_grid
    from sslbench.engine.store import Store

    _checked(configure_threads)
    registry = _registry()
    evaluators = list(evaluator or ["knn", "linear"])
    evaluators = _checked(with_picture_evaluators, registry, evaluators) if save_images else evaluators
    _checked(check_format, "run", fmt)
    budget = _checked(pick_budget, epochs, steps, views, flops)
    cells = _checked(
        lambda: build_grid(registry, methods, dataset, range(seeds), 10 if epochs is None else epochs, evaluators, split_params(param or []), batch_size=batch_size,
                           precision=precision, selection=select, data_dir=data_dir, device=device, force=force, reuse_stale=reuse_stale, checkpoint_every=checkpoint_every,
                           compile=compile, deterministic=deterministic, protocol=protocol, budget=budget)
    )
    if warning := ignored_data_dir(registry, dataset, data_dir):
        err.print(f"[yellow]warning:[/] {escape(warning)}", highlight=False)
    store = _checked(Store, home)
    ex = _checked(make_executor, executor, store, registry, jobs, ray_address, cpus_per_run, gpus_per_run)
    try:
        with LiveProgress(err, total=len(cells), concurrent=hasattr(ex, "run_all")) as live:
            grid = run_grid(cells, ex, live.on_start, live.on_done, live.on_data_error, live.on_wait, on_where=live.on_where)
    except KeyboardInterrupt:
        err.print("[yellow]interrupted[/]: finished runs are stored; run the same command again to resume.")
        raise typer.Exit(130)
    except DeviceAssert as exc:
        _fail(f"{exc}; finished runs are stored, the grid stopped", 1)
    for exc in grid.data_errors.values():
        _fail(f"{exc}")
    print_run_results(console, err, store, cells, grid.outcomes, fmt, losses=losses, save_images=save_images)
    if any(o.failed for o in grid.outcomes):
        raise typer.Exit(1)


def _listing(kind: str, as_json: bool, names: Optional[List[str]] = None, verbose: bool = False) -> None:
    from rich.console import Group

    from sslbench.bench.console import listing_table, parameter_tables

    registry = _registry()
    wanted = {_checked(registry.lookup, kind, n) for n in names or []}
    records = [r for r in describe(registry, kind) if not wanted or getattr(registry, kind)[r["name"]] in wanted]
    _show(records, as_json, lambda recs: Group(*parameter_tables(kind, recs)) if verbose or names else listing_table(kind, recs))


NamesArgument = typer.Argument(None, help="Only these (shows their parameters, as -v does).")
VerboseOption = typer.Option(False, "--verbose", "-v", help="Each parameter with its type, default and help.")
JsonOption = typer.Option(False, "--json", help="Machine-readable output (typed values).")


@app.command("list-methods")
def list_methods(names: Optional[List[str]] = NamesArgument, verbose: bool = VerboseOption, as_json: bool = JsonOption) -> None:
    """The installed methods, their family, parameters and plugin."""
    _listing("methods", as_json, names, verbose)


@app.command("list-datasets")
def list_datasets(names: Optional[List[str]] = NamesArgument, verbose: bool = VerboseOption, as_json: bool = JsonOption) -> None:
    """The installed data sets, the protocol each trains under, and whether it reads files."""
    _listing("datasets", as_json, names, verbose)


@app.command("list-evaluators")
def list_evaluators(names: Optional[List[str]] = NamesArgument, verbose: bool = VerboseOption, as_json: bool = JsonOption) -> None:
    """The installed evaluators and their options."""
    _listing("evaluators", as_json, names, verbose)


@app.command("plugins")
def plugins(as_json: bool = typer.Option(False, "--json", help="Machine-readable output.")) -> None:
    """Every plugin and installed entry point: its package, version, state, hooks, what it registered
    (contested names in their DIST:NAME form), or why it was skipped or not loaded."""
    from sslbench.bench.console import plugins_table

    _show(plugin_records(_registry()), as_json, plugins_table)


@app.command()
def results(
    method: Optional[str] = typer.Option(None, "--method", "-m", help="Only this method."),
    dataset: Optional[str] = typer.Option(None, "--dataset", "-d", help="Only this data set."),
    status: Optional[str] = typer.Option(None, "--status", help=f"Only runs in this status: {', '.join(RUN_STATUSES)}."),
    runs: bool = typer.Option(False, "--runs", help="List individual runs instead of the mean ± std summary."),
    losses: bool = typer.Option(False, "--losses", help="Add each loss term's last-epoch value to the summary."),
    fmt: str = typer.Option("table", "--format", "-f", help="table, md, latex, csv or json."),
    home: Optional[Path] = HomeOption,
) -> None:
    """List and filter stored runs (summary over seeds, or one line per run with --runs)."""
    from sslbench.bench.console import print_rows, runs_table
    from sslbench.bench.runs import run_rows, runs_text, stale_lines, stored_runs
    from sslbench.bench.tables import summarise
    from sslbench.engine.store import Store

    _checked(check_results_options, fmt, runs, status)
    store = _checked(Store, home, readonly=True)
    records, stale = stored_runs(store, _registry(), method, dataset, status)
    if not records:
        err.print(f"no stored runs match in {store.path}")
        raise typer.Exit(0)
    if runs:
        if fmt == "table":
            console.print(runs_table(run_rows(store, records, stale), store.path))
        else:
            print(runs_text(store, records, fmt, stale))
    else:
        print_rows(console, summarise(store, records), fmt, f"stored results ({store.path})", losses)
    for line in stale_lines(stale):
        err.print(line, highlight=False)


@app.command()
def bench(
    suite_name: Optional[str] = typer.Argument(None, metavar="SUITE", help="Suite name in the suite file (see --list)."),
    budget: str = typer.Option("cpu", "--budget", "-b", help="Budget of the suite: cpu (2 CPU cores, under an hour) or paper (the published protocol)."),
    dry_run: bool = typer.Option(False, "--dry-run", help="Print the grid, its size and how much of it is stored; run nothing."),
    list_suites: bool = typer.Option(False, "--list", help="List the suites of the file with their budgets and grid sizes."),
    file: Optional[Path] = SuiteFileOption,
    data_dir: Optional[List[str]] = typer.Option(None, "--data-dir", help="DIR for every data set of the suite, or DATASET=DIR (repeat); overrides the suite's data_dir."),
    device: Optional[str] = typer.Option(None, "--device", help="cpu, cuda or cuda:N; default CUDA when present, else CPU."),
    reuse_stale: bool = ReuseStaleOption,
    checkpoint_every: str = CheckpointOption,
    compile: bool = CompileOption,
    deterministic: bool = DeterministicOption,
    executor: Optional[str] = ExecutorOption, jobs: Optional[int] = JobsOption, ray_address: Optional[str] = RayAddressOption,
    cpus_per_run: Optional[float] = CpusOption, gpus_per_run: Optional[float] = GpusOption,
    home: Optional[Path] = HomeOption,
) -> None:
    """Run a named suite through the results store. Interrupted (Ctrl-C, kill -9), the same command
    resumes it: finished runs are reused, unfinished ones retrained."""
    from sslbench.bench import plan
    from sslbench.bench.console import dry_run_table, print_missing_data, print_suite_summary, suites_table
    from sslbench.bench.live import LiveProgress
    from sslbench.engine.executors import make_executor
    from sslbench.engine.runner import run_grid
    from sslbench.engine.store import Store

    _checked(configure_threads)
    registry = _registry()
    if list_suites or suite_name is None:
        console.print(suites_table(*_checked(plan.list_suites, file, registry)))
        return
    suite, cells = _checked(plan.suite_cells, file, suite_name, budget, registry, data_dir, device, reuse_stale, checkpoint_every)
    cells = with_numerics(cells, compile, deterministic)
    if dry_run:
        states = plan.states(_checked(plan.existing_store, home), cells, registry)
        console.print(dry_run_table(suite, budget, cells, plan.dry_run_rows(cells, states)))
        console.print(plan.dry_run_summary(suite, cells, states), highlight=False)
        print_missing_data(console, plan.missing_data(plan.data_needed(registry, cells)))
        return
    store = _checked(Store, home)
    err.print(plan.start_summary(store, suite, budget, cells, registry), highlight=False)
    print_missing_data(err, plan.missing_data(plan.data_needed(registry, cells)))
    ex = _checked(make_executor, executor or suite.executor, store, registry, jobs, ray_address, cpus_per_run, gpus_per_run)
    try:
        with LiveProgress(err, overall=f"suite {suite.name} ({budget})", total=len(cells), concurrent=hasattr(ex, "run_all")) as live:
            grid = run_grid(cells, ex, live.on_start, live.on_done, live.on_data_error, live.on_wait, on_where=live.on_where)
    except KeyboardInterrupt:
        err.print(f"[yellow]interrupted[/]: finished runs are stored; `{plan.resume_command(suite, budget, file, home)}` resumes.", highlight=False)
        raise typer.Exit(130)
    except DeviceAssert as exc:
        _fail(f"{exc}; finished runs are stored, the grid stopped", 1)
    print_suite_summary(console, store, suite, budget, cells)
    if grid.data_errors:
        raise typer.Exit(2)
    if any(o.failed for o in grid.outcomes):
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

    _checked(check_format, "report", fmt)
    suite, cells = _checked(suite_cells, file, suite_name, budget, _registry())
    store = _checked(Store, home, readonly=True)
    results = collect(store, suite, budget, cells)
    written = _checked(write_report, store, results, Path(out or store.home / "reports" / f"{suite.name}-{budget}"), fmt)
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

    _checked(check_format, "compare", fmt)
    store = _checked(Store, home, readonly=True)
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


@app.command()
def data(
    as_json: bool = typer.Option(False, "--json", help="Machine-readable output."),
    no_verify: bool = typer.Option(False, "--no-verify", help="Skip the digest check (it reads every file with a published digest)."),
) -> None:
    """Every installed data set: found or missing, where it was looked for (--data-dir aside: the
    [data] config, then the data root $SSLBENCH_DATA, then the download cache), its size, whether
    its files match the official release's published digests, and how to get it."""
    from sslbench.bench.console import data_table
    from sslbench.engine.dataroot import config_file, data_statuses

    statuses = data_statuses(_registry().datasets, verify=not no_verify)
    if as_json:
        print(json.dumps([s.to_dict() for s in statuses], indent=2))
    else:
        console.print(data_table(statuses, config_file()))


@app.command()
def show(
    run_id: str = typer.Argument(..., metavar="RUN", help="A run id, or a unique prefix of one (4 characters or more; see results --runs)."),
    as_json: bool = typer.Option(False, "--json", help="The whole record as JSON, with typed values and the full training curves."),
    home: Optional[Path] = HomeOption,
) -> None:
    """One stored run's whole record: status and error, protocol, parameters, environment and code,
    checkpoint and run folder, training history and every metric."""
    from sslbench.bench.show import RunLookupError, find_run, record_tables, run_record
    from sslbench.engine.store import Store

    store = _checked(Store, home, readonly=True)
    try:
        record = run_record(store, find_run(store, run_id))
    except RunLookupError as exc:
        _fail(str(exc))
    if as_json:
        print(json.dumps(record, indent=2))
    else:
        for table in record_tables(record):
            console.print(table)


def main() -> None:
    try:
        app()
    except (DataError, StoreError) as exc:  # pragma: no cover - safety net; commands handle their own
        err.print(f"[bold red]error:[/] {exc}")
        sys.exit(2)


if __name__ == "__main__":  # pragma: no cover
    main()

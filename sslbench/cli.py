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
from sslbench.api import DataError
from sslbench.plugins import KINDS, UnknownNameError, get_registry

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    help="Benchmark self-supervised representation learning methods under one declared protocol.",
    pretty_exceptions_enable=False,
)
console = Console()
err = Console(stderr=True, soft_wrap=True)

HomeOption = typer.Option(None, "--home", help="Results folder (database + run files); default $SSLBENCH_HOME or ~/.local/share/sslbench.")


def _fail(message: str, code: int = 2) -> None:
    err.print(f"[bold red]error:[/] {message}", highlight=False)
    raise typer.Exit(code)


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
    home: Optional[Path] = HomeOption,
) -> None:
    """Train each METHOD under the data set's protocol, evaluate frozen representations, print the comparison."""
    from sslbench.report import export, rich_table, summarise
    from sslbench.runner import GridError, InProcessExecutor, build_grid, run_grid, split_params
    from sslbench.store import Store

    _configure_threads()
    registry = _registry()
    evaluators = list(evaluator or ["knn", "linear"])
    if save_images and "samples" not in evaluators:
        if "samples" not in registry.evaluators:
            _fail("--save-images needs the 'samples' evaluator, which no installed plugin registers")
        evaluators.append("samples")
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
        tag = {"done": "[green]done[/]", "failed": "[red]failed[/]", "error": "[red]error[/]"}[outcome.status]
        reuse = " (stored run reused)" if outcome.reused else ""
        msg = f": {outcome.message}" if outcome.message else ""
        err.print(f"{tag} {outcome.method} on {outcome.dataset}, seed {outcome.seed}{reuse}{msg}  [dim]run {outcome.run_id}[/]", highlight=False)
        outcomes.append(outcome)

    try:
        with progress:
            run_grid(cells, executor, on_start, on_done)
    except DataError as exc:
        _fail(f"{exc}")
    except KeyboardInterrupt:
        err.print("[yellow]interrupted[/]: finished runs are stored; run the same command again to resume.")
        raise typer.Exit(130)
    rows = summarise(store, store.runs(ids=[c.run_id for c in cells]))
    if fmt == "table":
        protocol = cells[0].protocol
        title = f"{dataset}: protocol {protocol['name']} ({cells[0].run_id and ''}{_protocol_hash(protocol)}), selection {select}"
        console.print(rich_table(rows, title=title))
        if save_images:
            for o in outcomes:
                folder = store.home / "runs" / o.run_id
                pngs = sorted(folder.glob("*.png"))
                if pngs:
                    console.print(f"images for {o.method} seed {o.seed}: {folder}")
        console.print(f"[dim]results stored in {store.path}[/]")
    else:
        console.print(export(rows, fmt), markup=False, highlight=False, soft_wrap=True)
    if any(o.status == "error" for o in outcomes):
        raise typer.Exit(1)


def _protocol_hash(protocol: dict[str, Any]) -> str:
    from sslbench.protocol import Protocol

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
        rec["params"] = {p: repr(v.default) for p, v in getattr(cls, "params", {}).items()}
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
    fmt: str = typer.Option("table", "--format", "-f", help="table, md, latex, csv or json."),
    home: Optional[Path] = HomeOption,
) -> None:
    """List and filter stored runs (summary over seeds, or one line per run with --runs)."""
    from sslbench.report import export, rich_table, summarise
    from sslbench.store import Store

    store = Store(home)
    records = store.runs(method=method, dataset=dataset, status=status)
    if not records:
        err.print(f"no stored runs match in {store.path}")
        raise typer.Exit(0)
    if runs:
        rows = [
            {"id": r.id, "method": r.method, "dataset": r.dataset, "seed": r.seed, "epochs": r.epochs, "status": r.status,
             "failed_step": r.failed_step, "protocol": r.protocol_hash, "img/s": round(r.images_per_s or 0),
             "metrics": {m["name"]: m["value"] for m in store.metrics(r.id) if m["value"] is not None}}
            for r in records
        ]
        if fmt == "json":
            print(json.dumps(rows, indent=2))
            return
        table = Table(title=f"stored runs ({store.path})")
        for col in ("id", "method", "dataset", "seed", "epochs", "status", "protocol", "img/s", "metrics"):
            table.add_column(col, overflow="fold")
        for r in rows:
            status_text = r["status"] + (f" at step {r['failed_step']}" if r["failed_step"] else "")
            metrics = ", ".join(f"{k}={v:.4g}" for k, v in r["metrics"].items())
            table.add_row(r["id"], r["method"], r["dataset"], str(r["seed"]), str(r["epochs"]), status_text, r["protocol"], str(r["img/s"]), metrics)
        console.print(table)
        return
    summary = summarise(store, records)
    if fmt == "table":
        console.print(rich_table(summary, title=f"stored results ({store.path})"))
    else:
        console.print(export(summary, fmt), markup=False, highlight=False, soft_wrap=True)


def main() -> None:
    try:
        app()
    except DataError as exc:  # pragma: no cover - safety net; commands handle their own
        err.print(f"[bold red]error:[/] {exc}")
        sys.exit(2)


if __name__ == "__main__":  # pragma: no cover
    main()

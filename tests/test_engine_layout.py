"""The engine's run-reuse rule (cell_state), its per-data-set error policy (run_grid), the one live
progress display, the plugin listings, and a thin cli.py."""

from __future__ import annotations

import io
import textwrap
import types
from pathlib import Path

import pytest
import torch
from rich.console import Console
from typer.testing import CliRunner

from sslbench import hookimpl
from sslbench.sdk.api import DataError, DatasetPlugin
from sslbench.engine import plugins as plugin_module
from sslbench.engine.cells import Cell, Outcome, build_grid
from sslbench.engine.plugins import build_registry, describe
from sslbench.engine.reuse import cell_provenance, data_fingerprint
from sslbench.engine.runner import DataCache, InProcessExecutor, cell_state, execute_cell, run_grid
from sslbench.engine.store import Store
from sslbench.bench.console import listing_table
from sslbench.bench.live import LiveProgress, outcome_line

REPO = Path(__file__).resolve().parent.parent
MISSING = "broken: its files are missing; put them into DIR and pass --data-dir DIR"


@pytest.fixture(scope="module")
def reg():  # type: ignore[no-untyped-def]
    """The installed plugins plus a data set ``broken`` whose load() always raises DataError."""
    digits_protocol = build_registry().datasets["digits"].protocol

    class Broken(DatasetPlugin):
        name = "broken"
        description = "a data set whose files are always missing"
        protocol = digits_protocol
        needs_files = True

        def load(self, data_dir, **params):  # type: ignore[no-untyped-def]
            raise DataError(MISSING)

    def register_datasets(register):  # type: ignore[no-untyped-def]
        register(Broken)

    plugin = types.SimpleNamespace(register_datasets=hookimpl(register_datasets))
    return build_registry(extra_plugins=[("test-broken", plugin)])


def random_cell(reg, evaluators=("knn",), dataset="digits", seed=0, **kw) -> Cell:  # type: ignore[no-untyped-def]
    (cell,) = build_grid(reg, ["random"], dataset, [seed], 0, list(evaluators), **kw)
    return cell


# -- cell_state: the run-reuse rule ----------------------------------------------------------------


def test_cell_state_train_complete_evaluate(reg, tmp_path) -> None:  # type: ignore[no-untyped-def]
    store = Store(tmp_path)
    cell = random_cell(reg)
    assert cell_state(None, cell) == "train"  # no store yet (a dry run creates none)
    assert cell_state(store, cell) == "train"
    first = execute_cell(cell, store, reg)
    assert first.status == "done" and not first.reused
    assert cell_state(store, cell) == "complete"
    wider = random_cell(reg, evaluators=("knn", "linear"))
    assert wider.run_id == cell.run_id  # evaluators do not change the run
    assert cell_state(store, wider) == "evaluate"
    again = execute_cell(wider, store, reg)
    assert again.reused and again.evaluated == ["linear"]  # only the missing evaluator ran
    assert cell_state(store, wider) == "complete"
    other_options = random_cell(reg, params={"knn": {"k_max": 7}})
    assert cell_state(store, other_options) == "evaluate"  # the store keys metrics by their options
    assert cell_state(store, random_cell(reg, selection="test")) == "evaluate"


def test_cell_state_retrain_for_running_record_or_missing_checkpoint(reg, tmp_path) -> None:  # type: ignore[no-untyped-def]
    store = Store(tmp_path)
    cell = random_cell(reg)
    execute_cell(cell, store, reg)
    store.checkpoint_path(cell.run_id).unlink()
    assert cell_state(store, cell) == "retrain"
    outcome = execute_cell(cell, store, reg)
    assert not outcome.reused and store.checkpoint_path(cell.run_id).is_file()
    assert cell_state(store, cell) == "complete"

    interrupted = random_cell(reg, seed=1)
    store.start_run(interrupted.run_id, {"method": "random", "dataset": "digits", "seed": 1, "epochs": 0}, interrupted.protocol, "x", {}, None)
    assert store.get_run(interrupted.run_id).status == "running"
    assert cell_state(store, interrupted) == "retrain"
    assert not execute_cell(interrupted, store, reg).reused
    assert cell_state(store, interrupted) == "complete"

    forced = random_cell(reg, force=True)
    assert cell_state(store, forced) == "retrain"


def test_cell_state_failed_is_kept_and_reported(reg, tmp_path) -> None:  # type: ignore[no-untyped-def]
    store = Store(tmp_path)
    cell = random_cell(reg)
    # recorded with the provenance the current code and data would give (else it is stale)
    digits = DataCache().get(reg, cell, torch.device("cpu"))
    provenance = cell_provenance(reg, cell, data_fingerprint(digits))
    store.start_run(cell.run_id, {"method": "random", "dataset": "digits", "seed": 0, "epochs": 0}, cell.protocol, "x", {}, None, provenance)
    store.finish_run(cell.run_id, status="failed", error="loss is NaN at step 3", failed_step=3)
    assert cell_state(store, cell) == "failed"
    outcome = execute_cell(cell, store, reg)
    assert (outcome.status, outcome.reused, outcome.message) == ("failed", True, "loss is NaN at step 3")
    assert store.metrics(cell.run_id) == []  # nothing was retrained or evaluated


# -- run_grid: a data set that cannot be loaded skips only its own cells ---------------------------


def test_run_grid_data_error_skips_that_data_set_and_runs_the_others(reg, tmp_path) -> None:  # type: ignore[no-untyped-def]
    store = Store(tmp_path)
    cells = [random_cell(reg, dataset="broken"), random_cell(reg), random_cell(reg, dataset="broken", seed=1), random_cell(reg, seed=1)]
    started, done, errors = [], [], []

    def on_start(cell):  # type: ignore[no-untyped-def]
        started.append((cell.dataset, cell.seed))

    grid = run_grid(cells, InProcessExecutor(store, reg), on_start, done.append, lambda d, e, s: errors.append((d, str(e), s)))
    assert [(o.dataset, o.seed, o.status) for o in grid.outcomes] == [("digits", 0, "done"), ("digits", 1, "done")]
    assert done == grid.outcomes
    assert started == [("broken", 0), ("digits", 0), ("digits", 1)]  # the second broken cell is not started
    assert list(grid.data_errors) == ["broken"] and str(grid.data_errors["broken"]) == MISSING
    assert grid.skipped == [cells[0], cells[2]]
    assert errors == [("broken", MISSING, [cells[0], cells[2]])]
    assert {r.dataset for r in store.runs()} == {"digits"}


def test_run_grid_without_errors_returns_every_outcome(reg, tmp_path) -> None:  # type: ignore[no-untyped-def]
    class Recorder:
        def submit(self, cell, report=None):  # type: ignore[no-untyped-def]
            return Outcome(cell.run_id, cell.method, cell.dataset, cell.seed, status="done")

    cells = [random_cell(reg, seed=s) for s in range(3)]
    grid = run_grid(cells, Recorder())
    assert [o.seed for o in grid.outcomes] == [0, 1, 2] and not grid.data_errors and not grid.skipped


# -- the CLI keeps its policies on top of run_grid --------------------------------------------------


@pytest.fixture
def cli_registry(reg, monkeypatch):  # type: ignore[no-untyped-def]
    monkeypatch.setattr(plugin_module, "_REGISTRY", reg)
    return reg


def test_bench_skips_a_broken_data_set_goes_on_and_exits_2(cli_registry, tmp_path) -> None:  # type: ignore[no-untyped-def]
    from sslbench.cli import app

    suites = tmp_path / "suites.toml"
    suites.write_text(textwrap.dedent("""\
        [suites.two]
        methods = ["random"]
        datasets = ["broken", "digits"]
        evaluators = ["knn"]
        seeds = 2
        [suites.two.budgets.cpu]
        epochs = 1
    """))
    home = tmp_path / "home"
    result = CliRunner().invoke(app, ["bench", "two", "--file", str(suites), "--home", str(home)])
    assert result.exit_code == 2, result.output
    assert f"error: broken: {MISSING} (its 2 runs were skipped; the other data sets go on)" in result.output
    assert "done random on digits, seed 0" in result.output and "done random on digits, seed 1" in result.output
    assert "two (cpu) on digits" in result.output  # the summary of the data set that ran
    assert sorted(r.seed for r in Store(home).runs(dataset="digits")) == [0, 1]


def test_run_on_a_broken_data_set_prints_the_error_and_exits_2(cli_registry, tmp_path) -> None:  # type: ignore[no-untyped-def]
    from sslbench.cli import app

    result = CliRunner().invoke(app, ["run", "random", "-d", "broken", "-e", "knn", "--home", str(tmp_path)])
    assert result.exit_code == 2
    assert f"error: {MISSING}" in result.output
    assert "protocol" not in result.output  # no result table


# -- the live display -------------------------------------------------------------------------------


def _cell(dataset: str = "digits", seed: int = 0) -> Cell:
    return Cell(method="random", dataset=dataset, seed=seed, epochs=0, protocol={"name": "p"})


def test_progress_display_renders_bars_terms_and_outcome_lines() -> None:
    buf = io.StringIO()
    console = Console(file=buf, width=80, force_terminal=True, color_system=None)
    with LiveProgress(console, overall="suite s (cpu)", total=3) as live:
        report = live.on_start(_cell())
        report(3, 10, {"loss": 1.23456, "kl": 0.5})
        task = next(t for t in live.progress.tasks if t.id != live.overall)
        assert (task.description, task.completed, task.total) == ("cell 1/3 digits random seed 0", 3, 10)
        assert task.fields["terms"] == "loss 1.235  kl 0.5"
        live.progress.refresh()
        shown = buf.getvalue()
        assert "suite s (cpu)" in shown and "cell 1/3 digits random seed 0" in shown and "loss 1.235" in shown and "ETA" in shown
        live.on_done(Outcome("abcd1234", "random", "digits", 0, status="done", reused=True))
        assert [t.id for t in live.progress.tasks] == [live.overall]
        assert live.progress.tasks[0].completed == 1
        live.on_start(_cell("broken"))
        live.on_data_error("broken", DataError("gone"), [_cell("broken"), _cell("broken", 1)])
        assert live.progress.tasks[0].completed == 3 and len(live.progress.tasks) == 1
    out = buf.getvalue()
    assert "done random on digits, seed 0 (stored run reused)  run abcd1234" in out
    assert "error: broken: gone (its 2 runs were skipped; the other data sets go on)" in out
    assert [o.run_id for o in live.outcomes] == ["abcd1234"]


def test_progress_display_for_a_single_run_has_no_overall_bar() -> None:
    buf = io.StringIO()
    console = Console(file=buf, width=80)
    with LiveProgress(console) as live:
        live.on_start(_cell(seed=2))
        assert [t.description for t in live.progress.tasks] == ["cell 1 random seed 2"]
        live.on_done(Outcome("ff00", "random", "digits", 2, status="failed", message="loss is NaN at step 3"))
        live.on_data_error("digits", DataError("gone"), [])
    assert [line for line in buf.getvalue().splitlines() if line.strip()] == ["failed random on digits, seed 2: loss is NaN at step 3  run ff00"]
    assert outcome_line(Outcome("e1", "vae", "mnist", 1, status="error", message="boom")).startswith("[red]error[/] vae on mnist, seed 1: boom")


# -- listings and the CLI's size --------------------------------------------------------------------


def test_list_datasets_says_whether_a_data_set_reads_files(reg) -> None:
    records = {r["name"]: r for r in describe(reg, "datasets")}
    assert records["broken"]["needs_files"] and records["mnist"]["needs_files"] and not records["shapes"]["needs_files"]
    buf = io.StringIO()
    Console(file=buf, width=200).print(listing_table("datasets", list(records.values())))
    table = buf.getvalue()
    assert "files" in table.splitlines()[2]
    row = {line.split("│")[1].strip(): line for line in table.splitlines() if line.startswith("│")}
    assert "reads files" in row["mnist"] and "no files" in row["shapes"]


def test_cli_is_thin() -> None:
    lines = (REPO / "sslbench" / "cli.py").read_text().count("\n")
    assert lines < 400, f"sslbench/cli.py has {lines} lines; move logic into the engine or bench"
    for module in ("engine/cells.py", "engine/runner.py", "bench/live.py", "bench/console.py", "bench/plan.py"):
        assert (REPO / "sslbench" / module).read_text().count("\n") <= 400, module

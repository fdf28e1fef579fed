"""A suite at a budget, ready to run or report: the suite file found (``--file`` or the default),
``--data-dir`` values given to data sets (a suite names data sets, never paths: without ``--data-dir``
each is found through the data root, :mod:`sslbench.engine.dataroot`), which data are missing, the
suite's cells built and checked, and what the store already holds of them (``bench --dry-run``, the
line ``bench`` starts with, ``bench --list``).

Every function raises :class:`~sslbench.bench.toml_lines.SuiteError` with a message that says what
is wrong and what to do; the CLI prints it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from sslbench.engine.cells import Cell
from sslbench.engine.checkpoint import CheckpointPolicy, PolicyError
from sslbench.engine.dataroot import DataStatus, data_status
from sslbench.engine.plugins import Registry
from sslbench.engine.runner import CELL_STATES, CellState, cell_state
from sslbench.engine.store import Store, default_home
from sslbench.bench.reports import SuiteResults, collect
from sslbench.bench.suites import Suite, SuiteFile, default_suite_file, load_suites
from sslbench.bench.toml_lines import SuiteError


def suite_file(file: Path | None) -> SuiteFile:
    """The suite file ``file``, else the suites shipped inside the package, parsed."""
    return load_suites(file or default_suite_file())


def data_dirs(values: Sequence[str] | None, datasets: Sequence[str]) -> dict[str, str]:
    """``--data-dir DIR`` (every data set of the suite) or ``--data-dir DATASET=DIR``, as data set -> folder."""
    dirs: dict[str, str] = {}
    for value in values or []:
        name, sep, folder = value.partition("=")
        if sep and name in datasets:
            dirs[name] = folder
        elif sep and not Path(value).exists():
            raise SuiteError(
                f"--data-dir {value!r}: {name!r} is not a data set of this suite ({', '.join(datasets)}); "
                "write --data-dir DIR or --data-dir DATASET=DIR"
            )
        else:
            dirs.update({d: value for d in datasets})
    return dirs


def suite_cells(
    file: Path | None, name: str, budget: str, registry: Registry,
    data_dir: Sequence[str] | None = None, device: str | None = None, reuse_stale: bool = False,
    checkpoint_every: str = "auto",
) -> tuple[Suite, list[Cell]]:
    """The suite ``name`` of the suite file, checked against the installed plugins, and its cells at
    ``budget`` (``reuse_stale``: reuse results whose code or data changed, ``--reuse-stale``)."""
    sf = suite_file(file)
    suite = sf.get(name)
    suite.budget(budget)
    suite.check(registry)
    cells = suite.cells(registry, budget, data_dirs(data_dir, suite.datasets), device)
    try:
        CheckpointPolicy.parse(checkpoint_every)
    except PolicyError as exc:
        raise SuiteError(str(exc)) from None
    for cell in cells:
        cell.reuse_stale, cell.checkpoint_every = reuse_stale, checkpoint_every
    return suite, cells


def suite_results(store: Store, file: Path | None, name: str, budget: str, registry: Registry) -> SuiteResults:
    """The stored results of suite ``name`` at ``budget`` (for ``report`` and ``compare``)."""
    suite, cells = suite_cells(file, name, budget, registry)
    return collect(store, suite, budget, cells)


@dataclass
class SuiteEntry:
    """One suite of a file as ``bench --list`` shows it: its budgets with their run counts, or why it is invalid."""

    suite: Suite
    budgets: dict[str, int]
    invalid: str | None = None


def list_suites(file: Path | None, registry: Registry) -> tuple[SuiteFile, list[SuiteEntry]]:
    """Every suite of the suite file, checked, with the grid size of each budget."""
    sf = suite_file(file)
    entries = []
    for suite in sf.suites.values():
        try:
            suite.check(registry)
            entries.append(SuiteEntry(suite, {b: len(suite.cells(registry, b)) for b in suite.budgets}))
        except SuiteError as exc:
            entries.append(SuiteEntry(suite, {}, str(exc)))
    return sf, entries


# ------------------------------------------------------------------------------------------------
# what the store holds of a grid


def existing_store(home: Path | None) -> Store | None:
    """The store at ``home`` (or the default home) if it exists; None otherwise, so a dry run creates none."""
    folder = Path(home).expanduser() if home else default_home()
    return Store(folder, readonly=True) if (folder / "results.sqlite").is_file() else None


def states(store: Store | None, cells: Sequence[Cell], registry: Registry | None = None) -> list[CellState]:
    """What running each cell would do (:func:`~sslbench.engine.reuse.cell_state`; with
    ``registry``, results the current code would not make are ``stale``; the data are not loaded
    here, so a data change is found only when the cell runs)."""
    return [cell_state(store, c, registry) for c in cells]


def state_counts(cell_states: Sequence[CellState]) -> dict[str, int]:
    """How many cells are in each state, every state present."""
    return {s: list(cell_states).count(s) for s in CELL_STATES}


@dataclass
class GroupRow:
    """One (data set, method) of a dry run: its epochs, seeds, data folder and how many seeds are complete."""

    dataset: str
    method: str
    #: the budget: epochs, or the steps / views / FLOPs a budget gives ("800 steps")
    epochs: int | str
    seeds: list[int]
    data_dir: str | None
    complete: int


def dry_run_rows(cells: Sequence[Cell], cell_states: Sequence[CellState]) -> list[GroupRow]:
    """The grid grouped by (data set, method), in grid order."""
    groups: dict[tuple[str, str], list[tuple[Cell, CellState]]] = {}
    for cell, state in zip(cells, cell_states):
        groups.setdefault((cell.dataset, cell.method), []).append((cell, state))
    return [
        GroupRow(dataset, method, items[0][0].budget_label if items[0][0].budget else items[0][0].epochs, [c.seed for c, _ in items], items[0][0].data_dir,
                 sum(s == "complete" for _, s in items))
        for (dataset, method), items in groups.items()
    ]


def dry_run_summary(suite: Suite, cells: Sequence[Cell], cell_states: Sequence[CellState]) -> str:
    """The sentence under the dry-run table: how many runs are in which state."""
    count = state_counts(cell_states)
    return (
        f"{len(cells)} runs: {count['complete']} complete, {count['evaluate']} trained and waiting for evaluators, "
        f"{count['failed']} failed (kept), {count['stale']} stale (code changed: will retrain), "
        f"{count['retrain']} interrupted (will retrain), {count['train']} to train. "
        f"Evaluators: {', '.join(suite.evaluators)}."
    )


def start_summary(store: Store, suite: Suite, budget: str, cells: Sequence[Cell], registry: Registry | None = None) -> str:
    """The line ``bench`` starts with: the grid size, what is stored, what will train, and the store."""
    count = state_counts(states(store, cells, registry))
    return (
        f"suite {suite.name}, budget {budget}: {len(cells)} runs, {count['complete']} already complete, "
        f"{count['evaluate']} to evaluate, {count['train'] + count['retrain'] + count['stale']} to train "
        f"({count['retrain']} interrupted earlier, {count['stale']} stale); store {store.path}"
    )


def data_needed(registry: Registry, cells: Sequence[Cell]) -> list[DataStatus]:
    """Each data set of the grid (with the folder its cells were resolved to: ``--data-dir``, the
    ``[data]`` config or the data root) and whether its files are there, for ``bench --dry-run`` and
    before ``bench`` trains; digests are not checked here (``sslbench data`` does)."""
    seen: dict[tuple[str, str | None], DataStatus] = {}
    for cell in cells:
        if (cell.dataset, cell.data_dir) not in seen:
            cls = registry.lookup("datasets", cell.dataset)
            seen[(cell.dataset, cell.data_dir)] = data_status(cls, cell.data_dir, verify=False)
    return list(seen.values())


def missing_data(statuses: Sequence[DataStatus]) -> list[DataStatus]:
    """The data sets among ``statuses`` whose files were not found (their loader will try to download them)."""
    return [s for s in statuses if s.state == "missing"]


def resume_command(suite: Suite, budget: str, file: Path | None, home: Path | None) -> str:
    """The command that resumes an interrupted ``bench``."""
    return " ".join(["sslbench bench", suite.name, "--budget", budget, *(["--file", str(file)] if file else []), *(["--home", str(home)] if home else [])])


__all__ = [
    "GroupRow", "SuiteEntry", "data_dirs", "data_needed", "missing_data", "dry_run_rows", "dry_run_summary", "existing_store", "list_suites",
    "resume_command", "start_summary", "state_counts", "states", "suite_cells", "suite_file", "suite_results",
]

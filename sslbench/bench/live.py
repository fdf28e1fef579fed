"""The live display of a grid run (``sslbench run`` and ``sslbench bench``): a progress bar per running
cell with its step count and loss terms, for a suite an overall bar, and one line per finished cell.

:class:`LiveProgress` provides the three callbacks of :func:`sslbench.engine.runner.run_grid`
(``on_start``, ``on_done``, ``on_data_error``); the bars are transient, the lines stay.
"""

from __future__ import annotations

from types import TracebackType

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TaskID, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from sslbench.sdk.api import DataError
from sslbench.engine.cells import Cell, Outcome
from sslbench.engine.train import Reporter

_TAGS = {"done": "[green]done[/]", "failed": "[red]failed[/]", "error": "[red]error[/]"}


def outcome_line(outcome: Outcome) -> str:
    """One line (rich markup) for a finished cell: done / failed (with the step) / error, and whether
    the stored run was reused."""
    reuse = " (stored run reused)" if outcome.reused else ""
    msg = f": {outcome.message}" if outcome.message else ""
    return f"{_TAGS[outcome.status]} {outcome.method} on {outcome.dataset}, seed {outcome.seed}{reuse}{msg}  [dim]run {outcome.run_id}[/]"


def print_outcome(console: Console, outcome: Outcome) -> None:
    """Print :func:`outcome_line` on ``console``."""
    console.print(outcome_line(outcome), highlight=False)


def terms_text(terms: dict[str, float]) -> str:
    """The loss terms of the last step, as shown beside a cell's bar."""
    return "  ".join(f"{k} {v:.4g}" for k, v in terms.items())


class LiveProgress:
    """Progress bars and outcome lines on ``console`` while a grid runs. With ``overall`` (a suite's
    label) an overall bar counts the ``total`` cells, and each cell's bar names its data set; a data
    set that cannot be loaded is announced with the number of its runs that were skipped. Use as a
    context manager around :func:`~sslbench.engine.runner.run_grid`."""

    def __init__(self, console: Console, overall: str | None = None, total: int = 0) -> None:
        self.console = console
        self.progress = Progress(
            TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(), TimeRemainingColumn(),
            TextColumn("{task.fields[terms]}"), console=console, transient=True,
        )
        self.overall: TaskID | None = self.progress.add_task(overall, total=total, terms="") if overall else None
        self.outcomes: list[Outcome] = []

    def __enter__(self) -> "LiveProgress":
        self.progress.start()
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.progress.stop()

    def _clear_cells(self) -> None:
        for task in list(self.progress.task_ids):
            if task != self.overall:
                self.progress.remove_task(task)

    def on_start(self, cell: Cell) -> Reporter:
        """A bar for the cell; returns the reporter the training loop calls after each step."""
        label = f"{cell.dataset} {cell.method} seed {cell.seed}" if self.overall is not None else f"{cell.method} seed {cell.seed}"
        task = self.progress.add_task(label, total=None, terms="")

        def report(step: int, total: int, terms: dict[str, float]) -> None:
            self.progress.update(task, completed=step, total=total, terms=terms_text(terms))

        return report

    def on_done(self, outcome: Outcome) -> None:
        """The cell finished: drop its bar, count it, print its line."""
        self._clear_cells()
        if self.overall is not None:
            self.progress.advance(self.overall)
        print_outcome(self.console, outcome)
        self.outcomes.append(outcome)

    def on_data_error(self, dataset: str, error: DataError, skipped: list[Cell]) -> None:
        """A data set could not be loaded: drop its bar, count its skipped cells and, for a suite,
        say so (the other data sets go on)."""
        self._clear_cells()
        if self.overall is None:
            return
        self.progress.advance(self.overall, len(skipped))
        runs = len(skipped) + sum(1 for o in self.outcomes if o.dataset == dataset)
        self.console.print(f"[bold red]error:[/] {dataset}: {error} (its {runs} runs were skipped; the other data sets go on)", highlight=False)


__all__ = ["LiveProgress", "outcome_line", "print_outcome", "terms_text"]

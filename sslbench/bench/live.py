"""The live display of a grid run (``sslbench run`` and ``sslbench bench``): one progress line per
running cell, for a suite an overall bar, and one line per finished cell.

A cell's line is ``cell 3/8 vicreg seed 1 ep 2/10 ━━━━━━━━ ETA 0:01:23 loss 12.3 inv 0.51``: its
position in the grid, method (and data set in a suite), seed, epoch, a bar, the estimated time left,
the main loss, and the other loss terms only while they fit the console's width, so that the bar and
the ETA stay on screen at 80 columns however many terms a method has (:func:`fit_terms`).

:class:`LiveProgress` provides the three callbacks of :func:`sslbench.engine.runner.run_grid`
(``on_start``, ``on_done``, ``on_data_error``); the bars are transient, the lines stay.
"""

from __future__ import annotations

import math
from types import TracebackType

from rich.cells import cell_len
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, Progress, ProgressColumn, Task, TaskID, TextColumn
from rich.table import Column
from rich.text import Text

from sslbench.sdk.api import DataError
from sslbench.engine.cells import Cell, Outcome
from sslbench.engine.train import Reporter

_TAGS = {"done": "[green]done[/]", "failed": "[red]failed[/]", "error": "[red]error[/]", "busy": "[yellow]busy[/]",
         "interrupted": "[yellow]interrupted[/]"}
#: the width the ETA column takes ("ETA 0:01:23", one more digit past ten hours)
ETA_WIDTH = 12
#: the main loss term, always shown; the others follow while they fit
MAIN_TERM = "loss"


def outcome_line(outcome: Outcome) -> str:
    """One line (rich markup) for a finished cell: done / failed (with the step) / error, and whether
    the stored run was reused."""
    reuse = " (stored run reused)" if outcome.reused and outcome.status != "error" else ""
    stale = f" (stale result retrained: {'; '.join(outcome.stale)})" if outcome.stale else ""
    msg = f": {outcome.message}" if outcome.message else ""
    line = f"{_TAGS[outcome.status]} {outcome.method} on {outcome.dataset}, seed {outcome.seed}{reuse}{stale}{msg}  [dim]run {outcome.run_id}[/]"
    return "\n".join([line, *(f"  [red]error[/] {escape(e)}" for e in outcome.errors)])


def print_outcome(console: Console, outcome: Outcome) -> None:
    """Print :func:`outcome_line` on ``console``."""
    console.print(outcome_line(outcome), highlight=False)


def _term(name: str, value: float) -> str:
    return f"{name} {value:.4g}"


def terms_text(terms: dict[str, float]) -> str:
    """Every loss term of the last report, main loss first (what the line shows with room enough)."""
    return fit_terms(terms, 10**6)


def fit_terms(terms: dict[str, float], room: int) -> str:
    """The main loss, then each other term while the text stays within ``room`` characters (the
    main loss is shown even when it alone does not fit)."""
    ordered = sorted(terms.items(), key=lambda kv: kv[0] != MAIN_TERM)
    text = ""
    for name, value in ordered:
        part = _term(name, value)
        candidate = f"{text}  {part}" if text else part
        if text and len(candidate) > room:
            break
        text = candidate
    return text


def bar_width(width: int) -> int:
    """How wide a bar is on a console ``width`` columns wide (13 at 80 columns)."""
    return max(6, min(40, width // 6))


def epoch_of(step: int, total: int, epochs: int) -> int:
    """The (1-based) epoch that training step ``step`` of ``total`` falls in, over ``epochs``."""
    if total <= 0 or epochs <= 0:
        return 0
    return min(epochs, max(1, math.ceil(step * epochs / total)))


def cell_label(cell: Cell, position: int, total: int, epoch: int | None, with_dataset: bool, width: int) -> str:
    """The start of a cell's line: grid position, (data set,) method, seed and epoch, in the longest
    of a few forms that fits ``width`` characters (names are cut with an ellipsis as a last resort)."""
    where = f"{position}/{total}" if total else f"{position}"
    names = f"{cell.dataset} {cell.method}" if with_dataset else cell.method
    ep = f" {epoch}/{cell.epochs}" if epoch else ""
    forms = [f"cell {where} {names} seed {cell.seed}" + (f" epoch{ep}" if ep else ""),
             f"cell {where} {names} seed {cell.seed}" + (f" ep{ep}" if ep else "")]
    short_tail = f" s{cell.seed}" + (f" ep{ep}" if ep else "")
    forms.append(f"{where} {names}{short_tail}")
    if with_dataset:
        forms.append(f"{where} {cell.method}{short_tail}")
    for form in forms:
        if cell_len(form) <= width:
            return form
    keep = max(1, width - len(where) - 1 - len(short_tail) - 1)
    return f"{where} {cell.method[:keep]}…{short_tail}"


class EtaColumn(ProgressColumn):
    """``ETA h:mm:ss``, the time left at the task's recent speed (``ETA -:--:--`` before there is one)."""

    def __init__(self) -> None:
        super().__init__(table_column=Column(no_wrap=True, min_width=ETA_WIDTH - 1))

    def render(self, task: Task) -> Text:
        left = task.time_remaining
        if left is None or task.total is None:
            return Text("ETA -:--:--", style="progress.remaining")
        minutes, seconds = divmod(int(left), 60)
        hours, minutes = divmod(minutes, 60)
        return Text(f"ETA {hours}:{minutes:02d}:{seconds:02d}", style="progress.remaining")


class LiveProgress:
    """Progress lines and outcome lines on ``console`` while a grid of ``total`` cells runs. With
    ``overall`` (a suite's label) an overall bar counts the cells, and each cell's line names its
    data set; a data set that cannot be loaded is announced with the number of its runs that were
    skipped. Use as a context manager around :func:`~sslbench.engine.runner.run_grid`.

    ``concurrent`` (a local pool or Ray runs cells side by side): a grid line counts the cells
    queued, running, done and failed, and each running cell's line says where it runs
    (``host:pid device``, from ``on_where``) and which epoch it is in."""

    def __init__(self, console: Console, overall: str | None = None, total: int = 0, concurrent: bool = False) -> None:
        self.console = console
        self.total = total
        self.bar = BarColumn(bar_width=bar_width(console.width))
        self.progress = Progress(
            TextColumn("{task.description}", table_column=Column(no_wrap=True)), self.bar, EtaColumn(),
            TextColumn("{task.fields[terms]}", table_column=Column(no_wrap=True, overflow="ellipsis")),
            console=console, transient=True, expand=False,
        )
        self.overall: TaskID | None = self.progress.add_task(overall, total=total, terms="") if overall else None
        self.concurrent = concurrent
        self.suite = overall is not None
        #: concurrent: the line of each running cell (by run id) and where it runs
        self.lines: dict[str, TaskID] = {}
        self.where: dict[str, str] = {}
        if concurrent and self.overall is None:
            self.overall = self.progress.add_task("grid", total=total, terms="")
        self.outcomes: list[Outcome] = []
        #: cells accounted for so far (finished, or skipped with their data set)
        self.position = 0
        self.skipped = 0
        self._count()

    def __enter__(self) -> "LiveProgress":
        self.progress.start()
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.progress.stop()

    def _clear_cells(self) -> None:
        for task in list(self.progress.task_ids):
            if task != self.overall:
                self.progress.remove_task(task)

    def _room(self) -> int:
        """Characters left for the loss terms once label, bar and ETA are placed."""
        label = max((cell_len(t.description) for t in self.progress.tasks), default=0)
        return self.console.width - label - (self.bar.bar_width or 0) - ETA_WIDTH - 3

    def _label_width(self) -> int:
        """The widest a cell's label may be: what leaves room for the bar, the ETA and the main loss."""
        return max(16, self.console.width - (self.bar.bar_width or 0) - ETA_WIDTH - 3 - len(_term(MAIN_TERM, -1.2345e-4)))

    def counts(self) -> dict[str, int]:
        """Cells queued, running, done and failed (skipped cells count as failed)."""
        failed = sum(1 for o in self.outcomes if o.failed or o.status == "failed") + self.skipped
        done = len(self.outcomes) + self.skipped - failed
        running = len(self.lines)
        return {"queued": max(0, self.total - running - done - failed), "running": running, "done": done, "failed": failed}

    def _count(self) -> None:
        if self.concurrent and self.overall is not None:
            text = " · ".join(f"{n} {name}" for name, n in self.counts().items())
            self.progress.update(self.overall, terms=text)

    def on_start(self, cell: Cell) -> Reporter:
        """A line for the cell; returns the reporter the training loop calls every few steps."""
        position, suite = (len(self.outcomes) + self.skipped + len(self.lines) + 1 if self.concurrent else self.position + 1), self.suite
        self.bar.bar_width = bar_width(self.console.width)
        task = self.progress.add_task(cell_label(cell, position, self.total, None, suite, self._label_width()), total=None, terms="")
        if self.concurrent:
            self.lines[cell.run_id] = task
            self._count()

        def report(step: int, total: int, terms: dict[str, float]) -> None:
            label = cell_label(cell, position, self.total, epoch_of(step, total, cell.epochs), suite, self._label_width())
            where = self.where.get(cell.run_id, "")
            self.progress.update(task, description=label, completed=step, total=total)
            text = fit_terms(terms, self._room() - len(where) - 2)
            self.progress.update(task, terms=f"{where}  {text}" if where else text)

        return report

    def on_where(self, cell: Cell, where: str) -> None:
        """Where a started cell runs (``host:pid device``), shown on its line."""
        self.where[cell.run_id] = where
        task = self.lines.get(cell.run_id)
        if task is not None:
            self.progress.update(task, terms=where)

    def _drop(self, run_id: str) -> None:
        task = self.lines.pop(run_id, None)
        if task is not None:
            self.progress.remove_task(task)

    def on_done(self, outcome: Outcome) -> None:
        """The cell finished: drop its line, count it, print its outcome."""
        if self.concurrent:
            self._drop(outcome.run_id)
        else:
            self._clear_cells()
        self.position += 1
        if self.overall is not None:
            self.progress.advance(self.overall)
        print_outcome(self.console, outcome)
        self.outcomes.append(outcome)
        self._count()

    def on_wait(self, cell: Cell, outcome: Outcome, first: bool) -> None:
        """Another process is training the cell's run: drop its line; the first time, say so (the
        grid comes back to it once the others are done)."""
        if not self.concurrent:
            self._clear_cells()
        if first:
            self.console.print(
                f"[yellow]waiting[/] {cell.method} on {cell.dataset}, seed {cell.seed}: {escape(outcome.message)}; "
                f"coming back to it at the end  [dim]run {outcome.run_id}[/]", highlight=False)

    def on_data_error(self, dataset: str, error: DataError, skipped: list[Cell]) -> None:
        """A data set could not be loaded: drop its line, count its skipped cells and, for a suite,
        say so (the other data sets go on)."""
        if not self.concurrent:
            self._clear_cells()
        self.position += len(skipped)
        self.skipped += len(skipped)
        self._count()
        if self.overall is not None:
            self.progress.advance(self.overall, len(skipped))
        if not self.suite:
            return
        runs = len(skipped) + sum(1 for o in self.outcomes if o.dataset == dataset)
        self.console.print(f"[bold red]error:[/] {dataset}: {error} (its {runs} runs were skipped; the other data sets go on)", highlight=False)


__all__ = ["EtaColumn", "LiveProgress", "bar_width", "cell_label", "epoch_of", "fit_terms", "outcome_line", "print_outcome", "terms_text"]

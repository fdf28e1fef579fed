"""Comparison tables that fit the console (``sslbench run``, ``results``, ``bench`` at 80 columns).

With room enough, a :class:`SummaryTable` is the full table of :func:`sslbench.bench.tables.table_rows`.
Otherwise its metric headers are shortened to names that stay distinct (``linear_acc`` and
``linear_top5`` never both become ``linea…``), the table drops its vertical lines and splits into as
many tables as needed, each repeating the data set, method, epochs and seeds columns, so that no value
is cut or wrapped; a legend under the last names each shortened metric in full.
"""

from __future__ import annotations

import re
from typing import Callable, Sequence

from rich import box
from rich.console import Console, ConsoleOptions, RenderResult
from rich.markup import escape
from rich.measure import Measurement
from rich.table import Table
from rich.text import Text

from sslbench.bench.tables import Catalog, Row, table_rows


def short_headers(names: Sequence[str], limit: int = 10) -> dict[str, str]:
    """A header of at most ``limit`` characters per name (longer ones where needed to stay distinct):
    names that fit stay; otherwise every word but the last is cut to a prefix (``linear_top5`` ->
    ``lin_top5``), longer prefixes where two names would meet, the full name as a last resort.
    Variants of one metric (``knn_acc [k_max=5]``, ``knn_acc [k_max=15]``) get ``#1``, ``#2``."""
    bases = {n: n.partition(" [")[0] for n in names}

    def cut(base: str, keep: int) -> str:
        words = re.split(r"([_ ])", base)
        if len(base) <= limit:
            return base
        if len(words) == 1:
            return base[: max(limit, keep)]
        head = "".join(w if w in "_ " else w[:keep] for w in words[:-1])
        last = words[-1]  # the last word (acc, top5, r2) tells metrics apart: kept whole unless far too long
        return head + (last if len(head) + len(last) <= limit + 4 else last[: max(limit - len(head), keep)])

    short = dict(bases)
    for keep in range(3, 1 + max((len(b) for b in bases.values()), default=0)):
        trial = {n: cut(b, keep) for n, b in bases.items()}
        meets: dict[str, set[str]] = {}
        for n, s in trial.items():
            meets.setdefault(s, set()).add(bases[n])
        if all(len(found) == 1 for found in meets.values()):
            short = trial
            break
    counts: dict[str, int] = {}
    for n in names:  # variants of one metric
        if n != bases[n]:
            counts[bases[n]] = counts.get(bases[n], 0) + 1
            short[n] = f"{short[n]}#{counts[bases[n]]}"
    return short


class SummaryTable:
    """A comparison table that fits the console. With room enough, the full table; otherwise short
    distinct headers (:func:`short_headers`) on a compact table without vertical lines, split into
    as many tables as needed (each repeating data set, method, epochs and seeds) so that no value is
    cut or wrapped, and a legend under the last naming each shortened metric in full."""

    #: the first columns (data set, method, epochs, seeds) begin every part of a split table
    KEYS = 4

    def __init__(self, rows: Sequence[Row], title: str | None = None, losses: bool = False, catalog: Catalog | None = None) -> None:
        self.rows = rows
        self.title = title
        self.header, self.body = table_rows(rows, losses=losses, catalog=catalog)

    def short(self) -> tuple[list[str], list[str]]:
        """The compact headers, and the legend lines (``lin_top5 = linear_top5``)."""
        metrics = self.header[self.KEYS : -2]
        short = short_headers(metrics)
        header = [*self.header[:2], "ep", *self.header[3 : self.KEYS], *[short[m] for m in metrics], *self.header[-2:]]
        return header, [f"{short[m]} = {m}" for m in metrics if short[m] != m]

    def table(self, compact: bool = False, columns: Sequence[int] | None = None, title: str | None = None) -> Table:
        """The rich table of ``columns`` (indexes into the header; default all); ``compact`` with the
        short headers, no vertical lines and nothing wrapped."""
        header = self.short()[0] if compact else self.header
        columns = list(range(len(header))) if columns is None else list(columns)
        table = Table(title=title, show_lines=False, box=box.SIMPLE_HEAD if compact else box.HEAVY_HEAD, pad_edge=not compact)
        for i in columns:
            table.add_column(escape(header[i]), justify="left" if i < 2 else "right", no_wrap=compact or i < 2)
        for row, cells in zip(self.rows, self.body):
            style = "red" if row.failed and not row.seeds else None
            table.add_row(*[escape(cells[i]) for i in columns], style=style)  # "[size=64]" is text, not markup
        return table

    def parts(self, width: int, measure: Callable[[Table], int]) -> list[list[int]]:
        """The columns of each compact table, packed greedily so that each is at most ``width`` wide
        by ``measure`` (a part with a single column that is still too wide stays as it is)."""
        keys, parts, current = list(range(self.KEYS)), [], []
        for i in range(self.KEYS, len(self.header)):
            if current and measure(self.table(True, keys + current + [i])) > width:
                parts.append(keys + current)
                current = []
            current.append(i)
        return parts + [keys + current]

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        wide = options.update_width(10**4)

        def measure(table: Table) -> int:
            return Measurement.get(console, wide, table).maximum

        full = self.table(title=self.title)
        if measure(full) <= options.max_width:
            yield full
            return
        parts = self.parts(options.max_width, measure)
        legend = self.short()[1]
        for n, columns in enumerate(parts):
            yield self.table(True, columns, title=self.title if n == 0 else None)
        if legend:
            yield Text("; ".join(legend), style="dim")


__all__ = ["SummaryTable", "short_headers"]

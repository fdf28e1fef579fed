"""Training effort as the bench shows it: a run's steps, images, views and training FLOPs, its budget
and protocol preset, in human units; and what two runs or methods differ in, so that a reader sees
when a "win" bought more training.

The figures come from each stored run's ``effort`` (written by the engine,
:mod:`sslbench.engine.effort`): ``steps``, ``images_seen``, ``views_seen``, ``train_flops``,
``flops_per_step`` and ``budget`` (``{"unit", "value", "steps"}``). Runs stored before a figure was
recorded lack it: it is unknown (None, shown ``-``), never 0. A protocol without ``preset`` is the
``uniform`` one. Two efforts differ when the larger exceeds the smaller by more than
:data:`~sslbench.engine.effort.EFFORT_TOLERANCE` (10%) of the smaller, compared on seed means
(:func:`~sslbench.engine.effort.differs`, the one rule).
"""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass, field
from typing import Any, Iterable, Mapping, Sequence

from sslbench.engine.effort import EFFORT_TOLERANCE, differs

#: the numeric effort figures of a run, as stored (None when a run lacks one)
EFFORT_FIELDS = ("steps", "images_seen", "views_seen", "train_flops", "flops_per_step")
#: the units two runs or methods are compared in: unit -> (stored figure, what it counts, verb)
UNITS: dict[str, tuple[str, str, str]] = {
    "steps": ("steps", "steps", "trained"),
    "views": ("views_seen", "views", "saw"),
    "flops": ("train_flops", "training FLOPs", "used"),
}
#: how a unit is written in "at equal ..." (claims) and verdicts
UNIT_LABELS = {"steps": "steps", "views": "views", "flops": "FLOPs"}
#: the protocol preset of a run whose protocol names none
DEFAULT_PRESET = "uniform"
UNKNOWN = "-"


def _number(value: Any) -> float | int | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        return None
    return value


def run_effort(effort: Mapping[str, Any] | None) -> dict[str, Any]:
    """A run's stored ``effort`` as :data:`EFFORT_FIELDS` (None where not stored) and ``budget``
    (the stored dict, or None)."""
    effort = effort or {}
    out: dict[str, Any] = {k: _number(effort.get(k)) for k in EFFORT_FIELDS}
    budget = effort.get("budget")
    out["budget"] = dict(budget) if isinstance(budget, Mapping) else None
    return out


def preset_of(protocol: Mapping[str, Any] | None) -> str:
    """The protocol preset a stored protocol dict names (``uniform`` when it names none)."""
    return str((protocol or {}).get("preset") or DEFAULT_PRESET)


def presets_text(presets: Iterable[str]) -> str:
    """``uniform``, or ``paper and uniform`` when runs of several presets are together."""
    found = sorted(set(presets))
    return " and ".join(found) if found else DEFAULT_PRESET


def _scaled(value: float, units: Sequence[str]) -> tuple[float, str]:
    for i in range(len(units) - 1, -1, -1):
        if abs(value) >= 1000.0**i:
            return value / 1000.0**i, units[i]
    return value, units[0]


def flops_text(value: float | None) -> str:
    """FLOPs in human units: ``3.1 TFLOP``, ``290 GFLOP``; ``-`` when unknown."""
    if value is None:
        return UNKNOWN
    scaled, prefix = _scaled(float(value), ("", "k", "M", "G", "T", "P", "E", "Z", "Y"))
    return f"{scaled:.3g} {prefix}FLOP"


def count_text(value: float | None) -> str:
    """A count (steps, images, views): whole below 10,000 (``4690``), else ``38.4k``, ``3.84M``; ``-`` when unknown."""
    if value is None:
        return UNKNOWN
    if abs(value) < 10_000:
        return f"{value:.0f}" if float(value).is_integer() else f"{value:.1f}"
    scaled, prefix = _scaled(float(value), ("", "k", "M", "G", "T", "P"))
    return f"{scaled:.3g}{prefix}"


def unit_text(unit: str, value: float | None) -> str:
    """A figure of ``unit`` (a key of :data:`UNITS`) in human units."""
    return flops_text(value) if unit == "flops" else count_text(value)


def budget_text(budget: Mapping[str, Any] | None, epochs: int | None = None, steps: bool = True) -> str:
    """The budget as given and (``steps``) the steps it became: ``2 epochs (300 steps)``, ``1e+12 FLOPs
    (97 steps)``; without a stored budget, ``N epochs`` (the epochs were the budget), else ``-``."""
    if not budget:
        return f"{epochs} epochs" if epochs is not None else UNKNOWN
    unit, value = str(budget.get("unit", "")), budget.get("value")
    shown = f"{value:g}" if isinstance(value, float) else str(value)
    became = budget.get("steps") if steps and unit != "steps" else None
    return f"{shown} {UNIT_LABELS.get(unit, unit)}" + (f" ({count_text(became)} steps)" if _number(became) is not None else "")


def ratio_text(ratio: float) -> str:
    """``10.7x``; ``1,234x`` beyond a thousand."""
    return f"{ratio:,.0f}x" if ratio >= 1000 else f"{ratio:.3g}x"


@dataclass
class Effort:
    """The training effort of a group of runs (one method's seeds): each figure's known per-seed
    values, the budgets and the protocol presets."""

    values: dict[str, list[float]] = field(default_factory=dict)
    runs: int = 0
    budgets: list[str] = field(default_factory=list)
    presets: set[str] = field(default_factory=set)

    def add(self, effort: Mapping[str, Any] | None, protocol: Mapping[str, Any] | None = None, epochs: int | None = None) -> "Effort":
        """Count one run: its stored ``effort``, ``protocol`` (for the preset) and epochs."""
        figures = run_effort(effort)
        self.runs += 1
        for key in EFFORT_FIELDS:
            if figures[key] is not None:
                self.values.setdefault(key, []).append(float(figures[key]))
        label = budget_text(figures["budget"], epochs)
        if label not in self.budgets:
            self.budgets.append(label)
        self.presets.add(preset_of(protocol))
        return self

    @classmethod
    def of(cls, records: Iterable[Any]) -> "Effort":
        """The effort of stored runs (:class:`~sslbench.engine.records.RunRecord`)."""
        out = cls()
        for r in records:
            out.add(r.effort, r.protocol, r.epochs)
        return out

    def mean(self, key: str) -> float | None:
        """The seed mean of a figure (a key of :data:`EFFORT_FIELDS`, or a unit of :data:`UNITS`)
        over the runs that stored it; None when none did."""
        values = self.values.get(UNITS[key][0] if key in UNITS else key)
        return statistics.fmean(values) if values else None

    def as_dict(self) -> dict[str, Any]:
        """Seed means (None when unknown), runs, budgets and presets, as JSON values."""
        return {**{k: self.mean(k) for k in EFFORT_FIELDS}, "runs": self.runs, "known": {k: len(v) for k, v in self.values.items()},
                "budgets": list(self.budgets), "presets": sorted(self.presets)}


@dataclass(frozen=True)
class Gap:
    """Two efforts of one unit that differ by more than :data:`EFFORT_TOLERANCE`: ``more`` spent
    ``ratio`` times what ``less`` did."""

    unit: str
    more: str
    less: str
    ratio: float
    #: the larger seed mean (shown when the smaller is 0: no ratio then)
    value: float = 0.0

    @property
    def text(self) -> str:
        """``simvae trained 10.7x the steps of vae``; against nothing, ``random trained no steps (vae 28)``."""
        _, noun, verb = UNITS[self.unit]
        if math.isinf(self.ratio):
            return f"{self.less} {verb} no {noun} ({self.more} {unit_text(self.unit, self.value)})"
        return f"{self.more} {verb} {ratio_text(self.ratio)} the {noun} of {self.less}"


def _ratio(a: float, b: float) -> float:
    lo, hi = sorted((a, b))
    return hi / lo if lo > 0 else (1.0 if hi == 0 else math.inf)


def gaps(name_a: str, a: Effort | None, name_b: str, b: Effort | None, units: Iterable[str] = UNITS) -> list[Gap]:
    """The units in which ``a`` and ``b`` differ by more than :data:`EFFORT_TOLERANCE` (seed means;
    a unit unknown on either side is not judged)."""
    out = []
    for unit in units:
        x, y = (e.mean(unit) if e is not None else None for e in (a, b))
        if x is not None and y is not None and differs(x, y):
            out.append(Gap(unit, name_a if x > y else name_b, name_b if x > y else name_a, _ratio(x, y), max(x, y)))
    return out


def gaps_text(found: Sequence[Gap]) -> str:
    """The gaps as one sentence; empty when there are none."""
    return "; ".join(g.text for g in found)


def equal_effort(unit: str, name_a: str, a: Effort | None, name_b: str, b: Effort | None) -> tuple[bool, str]:
    """Whether ``a`` and ``b`` are at equal effort in ``unit`` (within :data:`EFFORT_TOLERANCE`), and
    the figures that say so: ``at equal FLOPs: simvae 3.1 TFLOP, vae 3 TFLOP (within 10%)`` or
    ``not at equal FLOPs: simvae 3.1 TFLOP, vae 290 GFLOP (10.7x; more than 10% apart)``. An effort
    unknown on either side is not equal (it could not be checked)."""
    label, (x, y) = UNIT_LABELS[unit], (e.mean(unit) if e is not None else None for e in (a, b))
    figures = f"{name_a} {unit_text(unit, x)}, {name_b} {unit_text(unit, y)}"
    limit = f"{100 * EFFORT_TOLERANCE:g}%"
    if x is None or y is None:
        return False, f"not at equal {label}: {figures} ({UNITS[unit][1]} unknown: stored before the engine counted them)"
    if differs(x, y):
        ratio = _ratio(x, y)
        return False, f"not at equal {label}: {figures} ({'one side none' if math.isinf(ratio) else ratio_text(ratio)}; more than {limit} apart)"
    return True, f"at equal {label}: {figures} (within {limit})"


EFFORT_HEADER = ["method", "budget", "runs", "steps", "images", "views", "train FLOPs", "FLOPs/step"]


def effort_cells(name: str, effort: Effort) -> list[str]:
    """One row of an effort table (:data:`EFFORT_HEADER`): seed means in human units, ``-`` unknown."""
    return [name, "; ".join(effort.budgets) or UNKNOWN, str(effort.runs), count_text(effort.mean("steps")),
            count_text(effort.mean("images_seen")), count_text(effort.mean("views_seen")),
            flops_text(effort.mean("train_flops")), flops_text(effort.mean("flops_per_step"))]


def effort_markdown(entries: Sequence[tuple[str, Effort]]) -> str:
    """A Markdown table of (method, :class:`Effort`) rows (:data:`EFFORT_HEADER`)."""
    from tabulate import tabulate

    return tabulate([effort_cells(name, e) for name, e in entries], EFFORT_HEADER, tablefmt="github", disable_numparse=True)


#: the effort figures in tidy exports: stored figure -> (metric name, unit)
EXPORTED = {"steps": ("steps", "steps"), "images_seen": ("images_seen", "images"), "views_seen": ("views_seen", "views"),
            "train_flops": ("train_flops", "FLOPs"), "flops_per_step": ("flops_per_step", "FLOPs")}


def effort_records(base: Mapping[str, Any], effort: Effort) -> list[dict[str, Any]]:
    """Tidy records (the columns of :data:`sslbench.bench.tables.CSV_COLUMNS`) of the known effort
    figures: ``base`` plus metric, unit, mean, sample std and n (the runs that stored the figure)."""
    out = []
    for key, (name, unit) in EXPORTED.items():
        values = effort.values.get(key)
        if values:
            std = statistics.stdev(values) if len(values) > 1 else 0.0
            out.append({**base, "metric": name, "evaluator": "", "unit": unit, "mean": statistics.fmean(values), "std": std, "n": len(values)})
    return out


def summary_csv(rows: Sequence[Any], efforts: Mapping[tuple[str, str], Effort], catalog: Any = None) -> str:
    """A summary's CSV (:func:`sslbench.bench.tables.csv_records`, one line per group and metric),
    then each group's effort figures as lines of their own (``steps``, ``views_seen``, ``train_flops``...)."""
    from sslbench.bench.tables import CSV_COLUMNS, csv_records, csv_text

    records = csv_records(rows, catalog=catalog)
    for row in rows:
        effort = efforts.get((row.dataset, row.method))
        if effort is not None:
            base = {"dataset": row.dataset, "method": row.method, "epochs": row.epochs, "protocol_hash": row.protocol_hash,
                    "failed": len(row.failed), "unfinished": len(row.unfinished)}
            records += effort_records(base, effort)
    return csv_text(records, CSV_COLUMNS)


__all__ = [
    "DEFAULT_PRESET", "EFFORT_FIELDS", "EFFORT_HEADER", "EFFORT_TOLERANCE", "Effort", "Gap", "UNITS", "UNIT_LABELS",
    "budget_text", "count_text", "effort_cells", "effort_markdown", "effort_records", "equal_effort", "flops_text", "gaps", "gaps_text", "preset_of",
    "presets_text", "ratio_text", "run_effort", "summary_csv", "unit_text",
]

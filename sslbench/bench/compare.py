"""Comparisons: two stored runs, or two suites (or budgets of one), metric by metric, with the
difference B - A and whether it exceeds the seed-to-seed spread.

Values and differences are shown as their evaluators declare them (a ``"fraction"`` in % and
percentage points, see :class:`~sslbench.bench.tables.Catalog`); a suite comparison leaves out the
metrics declared ``role="detail"``, a run comparison shows every stored metric.

Both say how much training each side had (steps, views seen, training FLOPs, :mod:`sslbench.bench.effort`)
and, in the table and the notes, where it differs by more than
:data:`~sslbench.engine.effort.EFFORT_TOLERANCE` of the smaller: a gap bought by more training is
then in plain sight.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sslbench.bench.claims import SPREAD_RULE, welch
from sslbench.bench.effort import (
    EFFORT_TOLERANCE, UNITS, Effort, budget_text, gaps, gaps_text, preset_of, presets_text, run_effort, unit_text,
)
from sslbench.bench.reports import SuiteResults
from sslbench.bench.tables import Catalog, format_value, mean_std
from sslbench.engine.store import RunRecord, Store
from sslbench.sdk.metrics import Metric


@dataclass
class Comparison:
    """Two sides (runs or suites) metric by metric."""

    title: str
    header: list[str]
    rows: list[list[str]]
    records: list[dict[str, Any]]
    notes: list[str] = field(default_factory=list)
    #: each side's training effort and the gaps beyond :data:`EFFORT_TOLERANCE` (JSON values)
    effort: dict[str, Any] = field(default_factory=dict)


#: what the effort notes add to a difference bought by more training
BOUGHT = "a difference in the metrics may have been bought by more training"


def _effort_line(effort: Effort) -> str:
    """``28 steps, 3584 images, 384k views, 3.1 TFLOP``; unknown figures as ``-``."""
    figures = f"{unit_text('steps', effort.mean('steps'))} steps, {unit_text('views', effort.mean('images_seen'))} images, "
    return figures + f"{unit_text('views', effort.mean('views'))} views, {unit_text('flops', effort.mean('flops'))}"


def _ratio_cell(x: float | None, y: float | None) -> str:
    """B / A of an effort figure: ``10.7x``; ``-`` when either is unknown; ``A none`` when A is 0."""
    if x is None or y is None:
        return "-"
    return f"{y / x:.3g}x" if x else ("equal" if y == x else "A none")


def _fmt(metric: str | Metric, v: float, catalog: Catalog | None = None) -> str:
    """A signed difference: percentage points for a declared fraction, else the plain number."""
    declared = metric if isinstance(metric, Metric) else (catalog or Catalog()).metric(metric)
    return f"{100 * v:+.2f}" if declared.percent else f"{v:+.4g}"


def _direction(declared: Metric, diff: float | None) -> dict[str, Any]:
    """What the declaration says about a difference B - A: its unit, whether higher is better, and
    which side is better (None where the metric has no direction or a side is missing)."""
    better = None
    if diff is not None and declared.higher_is_better is not None:
        better = "equal" if diff == 0 else ("B" if (diff > 0) == declared.higher_is_better else "A")
    return {"unit": declared.unit, "higher_is_better": declared.higher_is_better, "better": better}


def compare_runs(store: Store, a: RunRecord, b: RunRecord, catalog: Catalog | None = None) -> Comparison:
    """Two single runs: each metric (same evaluator and selection rule) and B - A. One run per side
    has no seed spread, so no verdict on it."""
    catalog = catalog or Catalog()

    def metrics(run: RunRecord) -> dict[tuple[str, str, str], float]:
        return {(m["evaluator"], m["selection"], m["name"]): m["value"] for m in store.metrics(run.id) if m["value"] is not None}

    ma, mb = metrics(a), metrics(b)
    keys = list(dict.fromkeys([*ma, *mb]))
    rows, records = [], []
    for evaluator, selection, name in keys:
        va, vb = ma.get((evaluator, selection, name)), mb.get((evaluator, selection, name))
        diff = vb - va if va is not None and vb is not None else None
        declared = catalog.metric(name, evaluator)
        rows.append([f"{name} ({evaluator}, {selection})", format_value(name, [va], catalog, evaluator) if va is not None else "-",
                     format_value(name, [vb], catalog, evaluator) if vb is not None else "-", _fmt(declared, diff) if diff is not None else "-"])
        records.append({"metric": name, "evaluator": evaluator, "selection": selection, "a": va, "b": vb, "difference": diff, **_direction(declared, diff)})
    ea, eb = Effort().add(a.effort, a.protocol, a.epochs), Effort().add(b.effort, b.protocol, b.epochs)
    for unit, (_, noun, _) in UNITS.items():
        x, y = ea.mean(unit), eb.mean(unit)
        rows.append([f"{noun} (training effort)", unit_text(unit, x), unit_text(unit, y), _ratio_cell(x, y)])
    apart = gaps("B", eb, "A", ea)
    differs = [k for k in ("method", "dataset", "seed", "epochs", "protocol_hash") if getattr(a, k) != getattr(b, k)]
    pa, pb = a.config.get("method_params", {}), b.config.get("method_params", {})
    if pa != pb:
        differs.append("method_params")
    if budget_text(run_effort(a.effort)["budget"], a.epochs, steps=False) != budget_text(run_effort(b.effort)["budget"], b.epochs, steps=False):
        differs.append("budget")
    if apart:
        differs.append(f"training effort ({', '.join(UNITS[g.unit][1] for g in apart)})")
    limit = f"{100 * EFFORT_TOLERANCE:g}%"
    notes = [
        *(f"{side} = run {r.id}: {r.method} on {r.dataset}, seed {r.seed}, {budget_text(run_effort(r.effort)['budget'], r.epochs)}, "
          f"protocol {r.protocol_hash} (preset {preset_of(r.protocol)}), {r.status}" for side, r in (("A", a), ("B", b))),
        f"training effort: A {_effort_line(ea)}; B {_effort_line(eb)} (the effort rows' last column is B / A)",
        f"EFFORT DIFFERS by more than {limit}: {gaps_text(apart)}; {BOUGHT}" if apart
        else f"training effort within {limit} in every figure both runs stored (steps, views, training FLOPs; `-`: not stored)",
        f"the runs differ in: {', '.join(differs) or 'nothing that changes training'}",
        "one run per side: no seed-to-seed spread to judge the difference against; compare two suites "
        "(several seeds) for that",
    ]
    effort = {"a": run_effort(a.effort), "b": run_effort(b.effort), "presets": {"a": preset_of(a.protocol), "b": preset_of(b.protocol)},
              "tolerance": EFFORT_TOLERANCE, "differs": [g.text for g in apart]}
    return Comparison(f"run {a.id} vs run {b.id}", ["metric", "A", "B", "B - A"], rows, records, notes, effort)


def compare_suites(a: SuiteResults, b: SuiteResults) -> Comparison:
    """Two suites (or budgets): every (dataset, method, metric) present in both, mean ± std over
    seeds, the difference and whether it exceeds the seed-to-seed spread (:data:`SPREAD_RULE`)."""
    rows, records = [], []
    catalog = Catalog(a.catalog.evaluators, {**b.catalog.sources, **a.catalog.sources})
    keys = [k for k in a.values if k in b.values]
    efforts, limit = [], f"{100 * EFFORT_TOLERANCE:g}%"
    for dataset, method in keys:
        va, vb = a.values[(dataset, method)], b.values[(dataset, method)]
        ea, eb = a.efforts.get((dataset, method)), b.efforts.get((dataset, method))
        apart = gaps_text(gaps("B", eb, "A", ea))
        known = ea is not None and eb is not None
        gap = apart or (f"within {limit}" if known else "-")
        efforts.append({"dataset": dataset, "method": method, "a": ea.as_dict() if ea else None, "b": eb.as_dict() if eb else None, "differs": apart})
        for metric in [m for m in va if m in vb and catalog.metric(m).role != "detail"]:
            xa, xb = va[metric], vb[metric]
            diff = mean_std(xb)[0] - mean_std(xa)[0]
            p = welch(xa, xb)
            verdict = "n/a (1 seed)" if p is None else ("yes" if p < 0.05 else "no")
            rows.append([dataset, method, metric, f"{format_value(metric, xa, catalog)} (n={len(xa)})",
                         f"{format_value(metric, xb, catalog)} (n={len(xb)})", _fmt(metric, diff, catalog), "-" if p is None else f"{p:.3g}", verdict, gap])
            records.append({"dataset": dataset, "method": method, "metric": metric, "a": xa, "b": xb, "difference": diff, "p_value": p,
                            "beyond_seed_spread": verdict, "effort_differs": apart, **_direction(catalog.metric(metric), diff)})
    name_a, name_b = f"{a.suite.name}@{a.budget}", f"{b.suite.name}@{b.budget}"
    presets = [presets_text(p for e in s.efforts.values() for p in e.presets) if s.efforts else "-" for s in (a, b)]
    notes = [f"A = {name_a} (preset {presets[0]}), B = {name_b} (preset {presets[1]}); differences are B - A (accuracies in percentage points)",
             f"beyond seed spread: {SPREAD_RULE}",
             f"training effort (steps, views, training FLOPs; seed means): a gap beyond {limit} of the smaller is named per method; `-`: not stored"]
    notes += [f"EFFORT DIFFERS for {e['method']} on {e['dataset']}: {e['differs']}; {BOUGHT}" for e in efforts if e["differs"]]
    if not rows:
        notes.append("no (data set, method, metric) has finished runs on both sides")
    header = ["dataset", "method", "metric", "A", "B", "B - A", "Welch p", "beyond seed spread", "training effort"]
    return Comparison(f"{name_a} vs {name_b}", header, rows, records, notes, {"tolerance": EFFORT_TOLERANCE, "methods": efforts})


def comparison_text(c: Comparison, fmt: str) -> str:
    if fmt == "json":
        return json.dumps({"title": c.title, "rows": c.records, "notes": c.notes, "effort": c.effort}, indent=2)
    from tabulate import tabulate

    table = tabulate(c.rows, c.header, tablefmt="github", disable_numparse=True)
    return "\n".join([f"## {c.title}", "", table, "", *[f"- {n}" for n in c.notes]])



def resolve_references(store: Store, a: str, b: str, budget: str, suite_path: Path | None = None) -> tuple[RunRecord, RunRecord] | tuple[tuple[str, str], tuple[str, str]]:
    """What ``sslbench compare A B`` compares: two stored runs (each a unique prefix, 4 characters or
    more, of a run id) or two suites of the suite file as (name, budget), written SUITE or
    SUITE@BUDGET (``budget`` when no @). Raises ValueError (a prefix matching several runs, a name
    that is neither, one run and one suite) and SuiteError (a suite file that does not parse)."""
    from sslbench.bench.suites import default_suite_file, load_suites

    def as_run(ref: str) -> RunRecord | None:
        found = [r for r in store.runs() if r.id.startswith(ref)] if len(ref) >= 4 else []
        if len(found) > 1:
            raise ValueError(f"{ref!r} matches {len(found)} runs ({', '.join(r.id for r in found[:5])}); give more of the run id")
        return found[0] if found else None

    def as_suite(ref: str) -> tuple[str, str] | None:
        name, _, at = ref.partition("@")
        path = Path(suite_path) if suite_path else default_suite_file()
        if not path.is_file() or name not in load_suites(path).suites:
            return None
        return name, at or budget

    run_a, run_b = as_run(a), as_run(b)
    if run_a and run_b:
        return run_a, run_b
    suite_a, suite_b = as_suite(a), as_suite(b)
    if suite_a and suite_b:
        return suite_a, suite_b
    unknown = [ref for ref, r, s in ((a, run_a, suite_a), (b, run_b, suite_b)) if not (r or s)]
    if unknown:
        raise ValueError(f"{', '.join(repr(u) for u in unknown)}: neither a stored run id (in {store.path}) nor a suite; "
                         "see `sslbench results --runs` for run ids and `sslbench bench --list` for suites")
    raise ValueError("compare two runs or two suites, not one of each")


__all__ = ["Comparison", "compare_runs", "compare_suites", "comparison_text", "resolve_references"]

"""Summaries of stored runs: mean +- std over seeds, as rich tables or Markdown/LaTeX/CSV/JSON.

How a metric is shown comes from its evaluator's declaration (:class:`sslbench.sdk.metrics.Metric`),
never from its name: a ``"fraction"`` is shown as a percentage, a ``"detail"`` (the chosen k or epoch,
a flag) is left out of the comparison table but kept in CSV/JSON exports, anything else is shown as
the number it is. A :class:`Catalog` finds the declaration: through the evaluator that stored the
metric (each stored metric row names it) among the installed evaluators; a metric whose evaluator is
not installed, or that its evaluator does not declare, is :func:`~sslbench.sdk.metrics.undeclared`
(a plain number, no direction, section "other").
"""

from __future__ import annotations

import csv
import io
import json
import math
import statistics
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Iterable, Mapping, Sequence

from sslbench.engine.effort import Budget
from sslbench.engine.store import RunRecord, Store
from sslbench.sdk.metrics import Metric, Picture, find_metric, undeclared

if TYPE_CHECKING:
    from sslbench.bench.fitted import SummaryTable
    from sslbench.engine.plugins import Registry
    from sslbench.sdk.api import Evaluator


class Catalog:
    """The metric and picture declarations of a set of evaluators (by default the installed ones,
    loaded on first use), and which evaluator stored each metric name.

    ``metric(name, evaluator)`` is the declaration of ``name`` by ``evaluator``; without an
    evaluator, the one recorded for ``name`` by :meth:`learn` (from stored metric rows), else the
    first installed evaluator declaring it (exact names before ``*`` patterns). Anything not found is
    :func:`~sslbench.sdk.metrics.undeclared`.
    """

    def __init__(self, evaluators: Mapping[str, type["Evaluator"]] | None = None, sources: Mapping[str, str] | None = None) -> None:
        self._evaluators = evaluators
        #: metric name (or column label) -> the evaluator that stored it
        self.sources: dict[str, str] = dict(sources or {})
        #: column label -> the metric name it shows (``NAME [OPTION=VALUE, ...]`` -> ``NAME``)
        self.names: dict[str, str] = {}

    @classmethod
    def of(cls, registry: "Registry | None" = None, rows: Iterable["Row"] = ()) -> "Catalog":
        """The declarations of ``registry``'s evaluators (None: the installed ones), knowing which
        evaluator stored each metric of ``rows``."""
        catalog = cls(registry.evaluators if registry is not None else None)
        for row in rows:
            for name, evaluator in row.sources.items():
                catalog.learn(evaluator, name, row.names.get(name))
        return catalog

    @property
    def evaluators(self) -> Mapping[str, type["Evaluator"]]:
        if self._evaluators is None:
            from sslbench.engine.plugins import get_registry

            self._evaluators = get_registry().evaluators
        return self._evaluators

    def learn(self, evaluator: str, label: str, name: str | None = None) -> None:
        """Record that ``evaluator`` stored the column ``label`` (the first one recorded is kept),
        which shows metric ``name`` (the label itself unless options tell variants apart)."""
        self.sources.setdefault(label, evaluator)
        if name is not None and name != label:
            self.names.setdefault(label, name)

    def metric(self, name: str, evaluator: str | None = None) -> Metric:
        evaluator = evaluator or self.sources.get(name)
        name = self.names.get(name, name)
        if evaluator is not None:
            cls = self.evaluators.get(evaluator)
            return (cls.metric(name) if cls is not None else None) or undeclared(name)
        for exact in (True, False):
            for cls in self.evaluators.values():
                found = find_metric(cls.metrics, name)
                if found is not None and (found.name == name) == exact:
                    return found
        return undeclared(name)

    def pictures(self) -> list[Picture]:
        """Every picture the evaluators declare, in registry order."""
        return [p for cls in self.evaluators.values() for p in cls.pictures]

    def picture(self, file: str) -> Picture | None:
        """The declaration of a run-folder file, or None when no evaluator declares it."""
        return next((p for p in self.pictures() if p.file == file), None)


@dataclass
class Row:
    """One (dataset, method) group of runs."""

    dataset: str
    method: str
    protocol_hash: str
    #: epochs, or a steps / views / FLOPs budget as given ("800 steps")
    epochs: int | str
    seeds: list[int] = field(default_factory=list)
    #: the numerics the runs trained under; a row holds one precision only
    precision: str = "fp32"
    failed: list[str] = field(default_factory=list)
    #: runs stored as "running": under way in another process, or interrupted (rerun to resume)
    unfinished: list[int] = field(default_factory=list)
    metrics: dict[str, list[float]] = field(default_factory=dict)
    notes: dict[str, str] = field(default_factory=dict)
    selection: set[str] = field(default_factory=set)
    images_per_s: list[float] = field(default_factory=list)
    augment_share: list[float] = field(default_factory=list)
    #: each loss term's value at the end of training (last point of its curve), one per seed
    final_terms: dict[str, list[float]] = field(default_factory=dict)
    #: metric name (column label) -> the evaluator that stored it (where its declaration is looked up)
    sources: dict[str, str] = field(default_factory=dict)
    #: column label -> metric name, for the columns that name evaluator options (see :func:`summarise`)
    names: dict[str, str] = field(default_factory=dict)


def mean_std(values: Sequence[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (0 for a single value)."""
    m = statistics.fmean(values)
    s = statistics.stdev(values) if len(values) > 1 else 0.0
    return m, s


def _dataset_labels(runs: Sequence[RunRecord]) -> dict[tuple[str, str], str]:
    """A label per (data set, data-set parameters): the bare name, plus the parameters whose values
    differ between runs of the same data set (e.g. ``moving-balls [size=64]``)."""
    variants: dict[str, list[dict[str, Any]]] = {}
    for run in runs:
        params = run.config.get("dataset_params", {})
        if params not in variants.setdefault(run.dataset, []):
            variants[run.dataset].append(params)
    labels = {}
    for dataset, all_params in variants.items():
        varying = sorted({k for p in all_params for k in p if len({json.dumps(q.get(k)) for q in all_params}) > 1})
        for params in all_params:
            shown = ", ".join(f"{k}={params.get(k)}" for k in varying)
            labels[(dataset, json.dumps(params, sort_keys=True))] = f"{dataset} [{shown}]" if shown else dataset
    return labels


def _metric_labels(metrics: Mapping[str, list[dict[str, Any]]]) -> dict[tuple[str, str, str, str], str]:
    """A column label per (evaluator, metric, options hash, selection): the metric's name, plus the
    evaluator options and selection rule that differ where the same metric was stored more than one
    way (``knn_acc [k_max=5]``, ``linear_acc [select=test]``), so that numbers computed differently
    are never averaged as if they were seeds."""
    variants: dict[tuple[str, str], dict[tuple[str, str], dict[str, Any]]] = {}
    for rows in metrics.values():
        for m in rows:
            if m["value"] is not None:
                options = {**json.loads(m["options"] or "{}"), "select": m["selection"]}
                variants.setdefault((m["evaluator"], m["name"]), {})[(m["options_hash"], m["selection"])] = options
    labels = {}
    for (evaluator, name), found in variants.items():
        varying = sorted({k for o in found.values() for k in o if len({json.dumps(p.get(k)) for p in found.values()}) > 1})
        for (options_hash, selection), options in found.items():
            shown = ", ".join(f"{k}={options.get(k)}" for k in varying)
            labels[(evaluator, name, options_hash, selection)] = f"{name} [{shown}]" if shown else name
    return labels


def summarise(
    store: Store, runs: Sequence[RunRecord], evaluators: Sequence[tuple[str, dict[str, Any]]] | None = None,
    selection: str | None = None,
) -> list[Row]:
    """Group runs by data set (and its parameters), method (and its parameters), protocol and budget;
    collect metrics per seed. With ``evaluators`` (name, options) and ``selection``, only those
    metrics count (what ``sslbench run`` asked for); otherwise every stored metric does, and a
    metric stored with different options or selection rules becomes one column per variant."""
    rows: dict[tuple[str, str, str, int, str, str], Row] = {}
    labels = _dataset_labels(runs)
    stored = {
        run.id: (store.metrics_for(run.id, list(evaluators), selection) if evaluators is not None and selection else store.metrics(run.id))
        for run in runs if run.status == "done"
    }
    columns = _metric_labels(stored)
    for run in runs:
        params = json.dumps(run.config.get("method_params", {}), sort_keys=True)
        data_params = json.dumps(run.config.get("dataset_params", {}), sort_keys=True)
        budget = run.config.get("budget")  # steps / views / FLOPs budgets: shown as given ("800 steps")
        epochs = Budget.from_dict(budget).label if budget else run.epochs
        precision = run.config.get("precision", "fp32")  # part of the run id: bf16 seeds never average with fp32 ones
        key = (run.dataset, data_params, run.method, run.protocol_hash, epochs, params, precision)
        row = rows.setdefault(key, Row(labels[(run.dataset, data_params)], run.method, run.protocol_hash, epochs, precision=precision))
        if run.status in ("running", "interrupted"):
            row.unfinished.append(run.seed)
            continue
        if run.status != "done":
            where = f" at step {run.failed_step}" if run.failed_step else ""
            row.failed.append(f"seed {run.seed}: {run.status}{where}")
            continue
        row.seeds.append(run.seed)
        if run.images_per_s:
            row.images_per_s.append(run.images_per_s)
        if run.augment_share is not None and run.images_per_s:
            row.augment_share.append(run.augment_share)
        for term, curve in run.history.items():
            if curve and not term.startswith("_"):  # "_epoch" is the curve's x axis
                row.final_terms.setdefault(term, []).append(curve[-1])
        for m in stored[run.id]:
            row.selection.add(m["selection"])
            if m["value"] is None:
                row.notes[m["evaluator"]] = m["note"] or ""
            elif math.isfinite(m["value"]):
                label = columns[(m["evaluator"], m["name"], m["options_hash"], m["selection"])]
                row.metrics.setdefault(label, []).append(m["value"])
                row.sources.setdefault(label, m["evaluator"])
                if label != m["name"]:
                    row.names[label] = m["name"]
    return list(rows.values())


def metric_columns(rows: Sequence[Row], details: bool = False, catalog: Catalog | None = None) -> list[str]:
    """The metric names of ``rows`` in first-seen order; ``details`` keeps the metrics declared
    ``role="detail"`` (exports), otherwise they are left out (comparison tables)."""
    catalog = catalog or Catalog.of(rows=rows)
    names: list[str] = []
    for row in rows:
        for name in row.metrics:
            if name not in names and (details or catalog.metric(name, row.sources.get(name)).role != "detail"):
                names.append(name)
    return names


def format_number(values: Sequence[float], percent: bool = False) -> str:
    """Mean ± sample std of ``values`` ("-" for none); ``percent`` shows fractions times 100."""
    if not values:
        return "-"
    m, s = mean_std(values)
    if percent:
        m, s = 100 * m, 100 * s
        return f"{m:.1f} ± {s:.1f}" if len(values) > 1 else f"{m:.1f}"
    spec = ".4g" if abs(m) < 10 else ".1f"
    return f"{m:{spec}} ± {s:.2g}" if len(values) > 1 else f"{m:{spec}}"


def format_value(name: str, values: Sequence[float], catalog: Catalog | None = None, evaluator: str | None = None) -> str:
    """Mean ± std of metric ``name`` in its display units (see :meth:`Catalog.metric`)."""
    return format_number(values, (catalog or Catalog()).metric(name, evaluator).percent)


def table_rows(rows: Sequence[Row], details: bool = False, losses: bool = False, catalog: Catalog | None = None) -> tuple[list[str], list[list[str]]]:
    """Header and string cells of the comparison table; ``losses`` adds each loss term's value at the
    end of training (e.g. the InfoNCE that separates SSVAE's couplings)."""
    catalog = catalog or Catalog.of(rows=rows)
    cols = metric_columns(rows, details, catalog)
    terms: list[str] = []
    if losses:
        for row in rows:
            terms += [t for t in row.final_terms if t not in terms]
    header = ["dataset", "method", "budget" if any(isinstance(r.epochs, str) for r in rows) else "epochs", "seeds", *cols, *[f"final {t}" for t in terms], "img/s", "aug %"]
    body = []
    for row in rows:
        n = f"{len(row.seeds)}" + (f" (+{len(row.failed)} failed)" if row.failed else "")
        n += f" (+{len(row.unfinished)} unfinished)" if row.unfinished else ""
        cells = [row.dataset, row.method if row.precision == "fp32" else f"{row.method} ({row.precision})", str(row.epochs), n]
        cells += [format_value(c, row.metrics.get(c, []), catalog, row.sources.get(c)) for c in cols]
        cells += [format_number(row.final_terms.get(t, [])) for t in terms]
        cells.append(f"{statistics.fmean(row.images_per_s):,.0f}" if row.images_per_s else "-")
        cells.append(f"{100 * statistics.fmean(row.augment_share):.0f}" if row.augment_share else "-")
        body.append(cells)
    return header, body


#: the columns of the CSV export of a summary (:func:`csv_records`): one line per group and metric,
#: numbers as numbers (stored units: a fraction is in [0, 1], never a percentage or "80.9 ± 0.6")
CSV_COLUMNS = ("dataset", "method", "epochs", "protocol_hash", "metric", "evaluator", "unit", "mean", "std", "n", "failed", "unfinished")


def csv_records(rows: Sequence[Row], losses: bool = False, catalog: Catalog | None = None) -> list[dict[str, Any]]:
    """The summary as tidy records (:data:`CSV_COLUMNS`): per group, one record for each metric
    (details included), each final loss term with ``losses``, and the throughput (``images_per_s``)
    and augmentation share; ``std`` is the sample standard deviation over the ``n`` seeds (0 for one).
    A group with no value at all (every seed failed) is one record with empty metric fields."""
    catalog = catalog or Catalog.of(rows=rows)
    out: list[dict[str, Any]] = []
    for row in rows:
        base = {"dataset": row.dataset, "method": row.method, "epochs": row.epochs, "protocol_hash": row.protocol_hash,
                "failed": len(row.failed), "unfinished": len(row.unfinished)}
        values = [(name, row.sources.get(name, ""), catalog.metric(name, row.sources.get(name)).unit, v) for name, v in row.metrics.items()]
        if losses:
            values += [(f"final {term}", "", "loss", v) for term, v in row.final_terms.items()]
        values += [("images_per_s", "", "images/s", row.images_per_s), ("augment_share", "", "fraction", row.augment_share)]
        found = [(name, evaluator, unit, v) for name, evaluator, unit, v in values if v]
        for name, evaluator, unit, v in found:
            m, s = mean_std(v)
            out.append({**base, "metric": name, "evaluator": evaluator, "unit": unit, "mean": m, "std": s, "n": len(v)})
        if not found:
            out.append({**base, "metric": "", "evaluator": "", "unit": "", "mean": None, "std": None, "n": 0})
    return out


def rows_as_records(rows: Sequence[Row], catalog: Catalog | None = None) -> list[dict[str, Any]]:
    """Machine-readable summary: per group, each metric's mean, std, n, unit, evaluator, direction
    and the raw per-seed values (numbers in stored units)."""
    catalog = catalog or Catalog.of(rows=rows)
    out = []
    for row in rows:
        out.append({
            "dataset": row.dataset,
            "method": row.method,
            "epochs": row.epochs,
            "protocol_hash": row.protocol_hash,
            "precision": row.precision,
            "seeds": row.seeds,
            "failed": row.failed,
            "unfinished_seeds": row.unfinished,
            "selection": sorted(row.selection),
            "metrics": {name: _metric_record(name, v, catalog.metric(name, row.sources.get(name)), row.sources.get(name))
                        for name, v in row.metrics.items()},
            "notes": row.notes,
            "final_loss_terms": {t: {"mean": mean_std(v)[0], "std": mean_std(v)[1], "n": len(v), "unit": "loss"} for t, v in row.final_terms.items()},
            "images_per_s": statistics.fmean(row.images_per_s) if row.images_per_s else None,
            "augment_share": statistics.fmean(row.augment_share) if row.augment_share else None,
        })
    return out


def _metric_record(name: str, values: list[float], metric: Metric, evaluator: str | None) -> dict[str, Any]:
    m, s = mean_std(values)
    return {"mean": m, "std": s, "n": len(values), "unit": metric.unit, "higher_is_better": metric.higher_is_better,
            "evaluator": evaluator, "values": values}


LATEX_ESCAPES = {
    "\\": "\\textbackslash{}", "&": "\\&", "%": "\\%", "$": "\\$", "#": "\\#", "_": "\\_", "{": "\\{", "}": "\\}",
    "~": "\\textasciitilde{}", "^": "\\textasciicircum{}", "±": "$\\pm$", ">": "$>$", "<": "$<$",
}


def latex_text(text: str) -> str:
    """Plain text made safe inside a LaTeX table cell."""
    return "".join(LATEX_ESCAPES.get(c, c) for c in text.replace("**", ""))


def export(rows: Sequence[Row], fmt: str, losses: bool = False, catalog: Catalog | None = None) -> str:
    """The comparison as Markdown (``md``) or LaTeX (``latex``), shown as the terminal table shows it;
    or for other tools, with numbers as numbers: CSV (``csv``, :func:`csv_records`, details included)
    or JSON (``json``, :func:`rows_as_records`, every metric with its raw per-seed values)."""
    if fmt == "json":
        return json.dumps(rows_as_records(rows, catalog), indent=2)
    if fmt == "csv":
        return csv_text(csv_records(rows, losses, catalog), CSV_COLUMNS)
    header, body = table_rows(rows, losses=losses, catalog=catalog)
    from tabulate import tabulate

    if fmt == "md":
        return tabulate(body, header, tablefmt="github")
    if fmt == "latex":
        return tabulate([[latex_text(c) for c in r] for r in body], [latex_text(h) for h in header], tablefmt="latex_raw")
    raise ValueError(f"unknown format {fmt!r}: choose table, md, latex, csv or json")


def csv_text(records: Sequence[Mapping[str, Any]], columns: Sequence[str]) -> str:
    """``records`` as CSV with a header line of ``columns``; None is an empty field, floats are written
    in full (``repr``), so ``pandas.read_csv`` or ``float()`` reads back the stored number."""
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(columns), extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    writer.writerows(records)
    return buf.getvalue()


def rich_table(rows: Sequence[Row], title: str | None = None, losses: bool = False, catalog: Catalog | None = None) -> "SummaryTable":
    """The comparison table for the terminal: a :class:`sslbench.bench.fitted.SummaryTable`, which
    shortens its headers (with a legend) and splits itself when the full table would not fit."""
    from sslbench.bench.fitted import SummaryTable

    return SummaryTable(rows, title, losses, catalog)

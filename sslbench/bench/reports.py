"""Suite reports: a suite's stored runs as tables, claims, plots and a Markdown report (with the
same tables as LaTeX, CSV or JSON).

Only the metrics a suite asked for count: for each cell, the evaluators of the suite with the
suite's options and selection rule (a run shared with another suite may carry other metrics too).

Where a number goes is read from its evaluator's declaration (:class:`sslbench.sdk.metrics.Metric`,
found through a :class:`~sslbench.bench.tables.Catalog`): metrics of a section in
:data:`OWN_TABLE_SECTIONS` (``"style"``) get a table of their own under the main one; the plots take
the ``"headline"`` metrics only (fractions as accuracy bars, the rest as panels, the style section
against the first accuracy). Pictures a run wrote into its folder are shown under the section their
evaluator's :class:`~sslbench.sdk.metrics.Picture` names; a PNG no evaluator declares goes under
"Other pictures".

Each results table is followed by the runs' training effort (steps, images, views, training FLOPs:
:mod:`sslbench.bench.effort`); the report names the protocol preset, and each claim the preset of its
runs and any effort gap beyond the tolerance between the methods it compares.
"""

from __future__ import annotations

import csv
import io
import json
import shutil
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable, Sequence

from sslbench.sdk.files import inside
from sslbench.sdk.metrics import Metric
from sslbench.sdk.protocol import Protocol
from sslbench.bench.tables import Catalog, Row, export, latex_text, rows_as_records
from sslbench.engine.runner import Cell
from sslbench.engine.store import RunRecord, Store
from sslbench.bench.claims import SPREAD_RULE, ClaimResult, evaluate_claims
from sslbench.bench.effort import EFFORT_TOLERANCE, Effort, count_text, effort_markdown, flops_text, preset_of, presets_text, summary_csv
from sslbench.bench.suites import Suite

#: metric sections shown in a table of their own (with the declared help as its caption), after the main table
OWN_TABLE_SECTIONS = ("style",)
#: the report section of a run-folder PNG that no evaluator declares
OTHER_PICTURES = "Other pictures"
STATUS_ORDER = ("done", "not evaluated", "failed", "error", "running", "interrupted", "not run")


@dataclass
class SuiteResults:
    """A suite's grid at one budget against the store."""

    suite: Suite
    budget: str
    cells: list[Cell]
    records: dict[str, RunRecord]
    rows: list[Row]
    #: (dataset, method) -> metric -> per-seed values
    values: dict[tuple[str, str], dict[str, list[float]]]
    #: run id -> "done", "not evaluated" (trained, metrics missing), "failed", "error", "running", "interrupted" or "not run"
    status: dict[str, str]
    #: (dataset, method) -> seed -> per-epoch loss terms
    histories: dict[tuple[str, str], dict[int, dict[str, list[float]]]] = field(default_factory=dict)
    #: the metric and picture declarations, knowing which evaluator stored each metric
    catalog: Catalog = field(default_factory=Catalog)
    #: (dataset, method) -> the training effort of the runs behind ``values``
    efforts: dict[tuple[str, str], Effort] = field(default_factory=dict)

    def presets(self) -> list[str]:
        """The protocol presets of the grid's cells (``uniform`` where a protocol names none)."""
        return sorted({preset_of(c.protocol) for c in self.cells})

    def counts(self) -> dict[str, int]:
        out = {s: 0 for s in STATUS_ORDER}
        for s in self.status.values():
            out[s] += 1
        return out

    def dataset_rows(self, dataset: str) -> list[Row]:
        return [r for r in self.rows if r.dataset == dataset]

    def dataset_values(self, dataset: str) -> dict[str, dict[str, list[float]]]:
        return {m: self.values.get((dataset, m), {}) for m in self.suite.methods}


def collect(store: Store, suite: Suite, budget: str, cells: Sequence[Cell], catalog: Catalog | None = None) -> SuiteResults:
    """Gather the stored runs of ``cells`` and the metrics the suite asked for. ``catalog`` holds the
    declarations (default: the installed evaluators')."""
    catalog = catalog or Catalog()
    records = {r.id: r for r in store.runs(ids=[c.run_id for c in cells])}
    rows: dict[tuple[str, str], Row] = {}
    values: dict[tuple[str, str], dict[str, list[float]]] = {}
    status: dict[str, str] = {}
    histories: dict[tuple[str, str], dict[int, dict[str, list[float]]]] = {}
    efforts: dict[tuple[str, str], Effort] = {}
    for cell in cells:
        key = (cell.dataset, cell.method)
        row = rows.setdefault(key, Row(cell.dataset, cell.method, Protocol.from_dict(cell.protocol).hash(), cell.budget_label if cell.budget else cell.epochs))
        record = records.get(cell.run_id)
        status[cell.run_id] = record.status if record else "not run"
        if record is None or record.status != "done":
            if record is not None and record.status in ("failed", "error"):
                where = f" at step {record.failed_step}" if record.failed_step else ""
                row.failed.append(f"seed {cell.seed}: {record.status}{where}")
            continue
        metrics = store.metrics_for(cell.run_id, cell.evaluators, cell.selection)
        if not metrics and cell.evaluators:
            status[cell.run_id] = "not evaluated"  # trained; the next bench evaluates it
            continue
        row.seeds.append(cell.seed)
        if record.images_per_s:
            row.images_per_s.append(record.images_per_s)
            if record.augment_share is not None:
                row.augment_share.append(record.augment_share)
        for m in metrics:
            row.selection.add(m["selection"])
            if m["value"] is None:
                row.notes[m["evaluator"]] = m["note"] or ""
            else:
                row.metrics.setdefault(m["name"], []).append(float(m["value"]))
                row.sources.setdefault(m["name"], m["evaluator"])
                catalog.learn(m["evaluator"], m["name"])
                values.setdefault(key, {}).setdefault(m["name"], []).append(float(m["value"]))
        if record.history:
            histories.setdefault(key, {})[cell.seed] = record.history
        efforts.setdefault(key, Effort()).add(record.effort, record.protocol, record.epochs)
    return SuiteResults(suite, budget, list(cells), records, list(rows.values()), values, status, histories, catalog, efforts)


def suite_claims(results: SuiteResults) -> list[ClaimResult]:
    """The suite's claims judged against ``results``, with the runs' training effort and preset."""
    return evaluate_claims(results.suite.claims, results.values, results.budget, results.catalog, results.efforts)


# ------------------------------------------------------------------------------------------------
# claims and tables as text


def claim_records(results: Sequence[ClaimResult]) -> list[dict[str, Any]]:
    return [
        {
            "claim": r.claim.text, "dataset": r.claim.dataset, "metric": r.claim.metric, "status": r.status,
            "figures": r.figures, "detail": r.detail, "beyond_seed_spread": r.beyond_spread,
            "budget": r.claim.budget, "source": r.claim.source, "preset": r.preset, "verdict": r.verdict,
            "effort_gap": r.effort, "effort_check": r.effort_check, "equal": r.claim.equal or None, **r.numbers,
        }
        for r in results
    ]


def claims_table(results: Sequence[ClaimResult], fmt: str = "md") -> str:
    from tabulate import tabulate

    header = ["claim", "result", "figures (mean ± std over seeds, n)", "detail", "beyond seed spread"]
    body = []
    for r in results:
        marks = {"held": "held", "not held": "**not held**", "not at equal effort": "*not at equal effort*", "not run": "not run"}
        mark = marks[r.status] if fmt == "md" else r.status
        source = f" ({r.claim.source})" if r.claim.source else ""
        under = f" under {r.preset}" if r.preset and not r.claim.protocol else ""  # a claim stating its protocol says it already
        body.append([r.claim.text + source + under, mark, r.figures, r.detail, r.beyond_spread])
    if fmt == "latex":
        return tabulate([[latex_text(c) for c in row] for row in body], header, tablefmt="latex_raw", disable_numparse=True)
    return tabulate(body, header, tablefmt="github", disable_numparse=True)


def _metric_order(rows: Sequence[Row]) -> list[str]:
    names: list[str] = []
    for row in rows:
        for name in row.metrics:
            if name not in names:
                names.append(name)
    return names


def _headline(names: Sequence[str], catalog: Catalog) -> list[tuple[str, Metric]]:
    return [(n, m) for n, m in ((n, catalog.metric(n)) for n in names) if m.role == "headline"]


def content_metrics(names: Sequence[str], catalog: Catalog | None = None) -> list[str]:
    """The accuracy bars: headline metrics declared as fractions, outside the own-table sections."""
    return [n for n, m in _headline(names, catalog or Catalog()) if m.percent and m.section not in OWN_TABLE_SECTIONS]


def style_metrics(names: Sequence[str], catalog: Catalog | None = None) -> list[str]:
    """The style axes of the style-against-content scatter: headline metrics of the ``style`` section."""
    return [n for n, m in _headline(names, catalog or Catalog()) if m.section == "style"]


def other_metrics(names: Sequence[str], catalog: Catalog | None = None) -> list[str]:
    """The panels of other metrics: headline metrics that are neither accuracy bars nor in an own-table section."""
    return [n for n, m in _headline(names, catalog or Catalog()) if not m.percent and m.section not in OWN_TABLE_SECTIONS]


# ------------------------------------------------------------------------------------------------
# the report


def picture_sections(catalog: Catalog) -> list[str]:
    """The report's picture sections in order: those the evaluators declare (registry order), then
    :data:`OTHER_PICTURES`."""
    return list(dict.fromkeys([*(p.section for p in catalog.pictures()), OTHER_PICTURES]))


def _copy_pictures(store: Store, results: SuiteResults, out: Path) -> dict[str, list[tuple[str, Path]]]:
    """Copy the PNGs runs wrote into their folders (first finished seed of each dataset/method) into
    ``out/runs``; returns section -> [(caption, relative path)]. Section and caption are the
    evaluator's :class:`~sslbench.sdk.metrics.Picture` declaration of the file name; an undeclared
    PNG goes under :data:`OTHER_PICTURES`, captioned by its file name."""
    sections: dict[str, list[tuple[str, Path]]] = {}
    seen: set[tuple[str, str]] = set()
    for cell in results.cells:
        key = (cell.dataset, cell.method)
        if key in seen or results.status.get(cell.run_id) != "done":
            continue
        folder = store.run_folder(cell.run_id)
        pngs = sorted(folder.glob("*.png")) if folder.is_dir() else []
        if not pngs:
            continue
        seen.add(key)
        for png in pngs:
            target = _within(out, out / "runs" / f"{cell.dataset}-{cell.method.replace(':', '.')}-seed{cell.seed}-{png.name}")
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(png, target)
            declared = results.catalog.picture(png.name)
            section = declared.section if declared else OTHER_PICTURES
            what = declared.caption if declared else png.stem.replace("_", " ")
            caption = f"{cell.method} on {cell.dataset}, seed {cell.seed}: {what}"
            sections.setdefault(section, []).append((caption, target.relative_to(out)))
    return sections


def _within(out: Path, path: Path) -> Path:
    """``path`` unchanged, after checking it lies inside the report folder ``out`` (an
    :class:`~sslbench.sdk.files.UnsafePathError` otherwise): no name in a suite or run reaches outside."""
    inside(out, path)
    return path


def make_plots(results: SuiteResults, out: Path) -> dict[str, list[tuple[str, Path]]]:
    """Every plot of the report, per dataset: dataset -> [(caption, relative path)]."""
    from sslbench.bench import plots

    made: dict[str, list[tuple[str, Path]]] = {}
    suite = results.suite
    for dataset in suite.datasets:
        values = results.dataset_values(dataset)
        names = _metric_order(results.dataset_rows(dataset))
        catalog = results.catalog
        content = content_metrics(names, catalog)
        styles = style_metrics(names, catalog)
        others = other_metrics(names, catalog)
        tag = f"{suite.name} ({results.budget}) on {dataset}"
        entries = []
        if content:
            p = plots.metric_bars(f"{tag}: accuracy per method\nbars: mean ± std over seeds; dots: single seeds", suite.methods, values, content, _within(out, out / f"accuracy-{dataset}.png"), catalog)
            if p:
                entries.append(("Accuracy per method", p.relative_to(out)))
        if others:
            p = plots.metric_panels(f"{tag}: other metrics (mean ± std over seeds; dots: single seeds)", suite.methods, values, others, _within(out, out / f"metrics-{dataset}.png"), catalog)
            if p:
                entries.append(("Other metrics", p.relative_to(out)))
        if styles and content:
            p = plots.style_scatter(f"{tag}: style against content", suite.methods, values, content[0], styles, _within(out, out / f"style-{dataset}.png"), catalog)
            if p:
                entries.append(("Style against content", p.relative_to(out)))
        histories = {m: results.histories.get((dataset, m), {}) for m in suite.methods}
        p = plots.training_curves(f"{tag}: training curves (each loss term, mean over short intervals)", histories, _within(out, out / f"curves-{dataset}.png"))
        if p:
            entries.append(("Training curves", p.relative_to(out)))
        made[dataset] = entries
    return made


def section_caption(section: str, declared: Sequence[Metric]) -> str:
    """The line above a section's own table: each declared metric (or pattern) with its help."""
    helps = list(dict.fromkeys(f"`{m.name}`: {m.help}" for m in declared if m.help))
    return f"{section.capitalize()}: " + ("; ".join(helps) if helps else "the metrics declared in this section") + "."


def _only_metrics(rows: Sequence[Row], keep: Callable[[str], bool]) -> list[Row]:
    """Copies of ``rows`` holding only the metrics whose name passes ``keep``."""
    return [replace(r, metrics={k: v for k, v in r.metrics.items() if keep(k)}) for r in rows]


def _budget_line(suite: Suite, budget: str, cells: Sequence[Cell]) -> str:
    b = suite.budgets[budget]
    amounts = sorted({(c.method, (c.budget is not None, c.epochs, c.budget_label)) for c in cells}, key=lambda x: suite.methods.index(x[0]))
    by_amount: dict[tuple[bool, int, str], list[str]] = {}
    for method, amount in amounts:  # "2 epochs: vae, simvae", or a budget in steps, views or FLOPs: "2000 steps: vae"
        by_amount.setdefault(amount, []).append(method)
    shown = "; ".join(f"{amount[2]}: {', '.join(ms)}" for amount, ms in sorted(by_amount.items()))
    return f"budget `{budget}`{f' ({b.description})' if b.description else ''}: seeds {', '.join(map(str, b.seeds))}; {shown}"


def _data_notes(store: Store, results: SuiteResults) -> list[str]:
    """What the data sets' loaders said about the data (e.g. a lossy copy), as stored with the runs."""
    notes = set()
    for cell in results.cells:
        record = store.get_run(cell.run_id)
        if record is not None and record.environment.get("data_note"):
            notes.add(record.environment["data_note"])
    return sorted(notes)


def markdown_report(store: Store, results: SuiteResults, claims: Sequence[ClaimResult], out: Path) -> str:
    suite = results.suite
    counts = results.counts()
    protocols = sorted({(c.dataset, c.protocol["name"], Protocol.from_dict(c.protocol).hash()) for c in results.cells})
    lines = [
        f"# Suite `{suite.name}`, budget `{results.budget}`",
        "",
        *([suite.description, ""] if suite.description else []),
        f"- {_budget_line(suite, results.budget, results.cells)}",
        f"- data sets and protocols: {', '.join(f'{d} (`{n}`, hash `{h}`)' for d, n, h in protocols)}",
        f"- protocol preset: `{presets_text(results.presets())}`",
        *[f"- data note: {note}" for note in _data_notes(store, results)],
        f"- evaluators: {', '.join(suite.evaluators)}; model selection on `{suite.selection}`"
        + (" (validation split carved from train)" if suite.selection == "val" else " (test set, as the SimVAE paper)"),
        f"- runs: {len(results.cells)} in the grid; " + ", ".join(f"{n} {s}" for s, n in counts.items() if n),
        f"- store: `{store.path}`; generated {time.strftime('%Y-%m-%d %H:%M')}",
        "",
    ]
    if counts["done"] < len(results.cells):
        lines += [f"> {len(results.cells) - counts['done']} of {len(results.cells)} runs are not finished: `sslbench bench {suite.name} --budget {results.budget}` resumes them.", ""]
    lines += ["## Claims", ""]
    if claims:
        held = sum(r.status == "held" for r in claims)
        not_held = sum(r.status == "not held" for r in claims)
        unequal = sum(r.status == "not at equal effort" for r in claims)
        lines += [
            f"{held} held, {not_held} not held, " + (f"{unequal} not at equal effort, " if unequal else "")
            + f"{len(claims) - held - not_held - unequal} not run (runs under the `{presets_text(results.presets())}` preset). "
            f"An ordering holds when the seed means are in the stated order; \"beyond seed spread\" is {SPREAD_RULE}. "
            f"A claim \"at equal steps|views|FLOPs\" also needs the two methods' effort in that unit within {100 * EFFORT_TOLERANCE:g}%; "
            "the detail names any steps, views or training FLOPs that differ by more.",
            "",
            claims_table(claims),
            "",
        ]
    else:
        lines += ["The suite states no claims.", ""]
    plots = make_plots(results, out)
    for dataset in suite.datasets:
        rows = results.dataset_rows(dataset)
        lines += [f"## Results on {dataset}", "", "Mean ± sample std over seeds (accuracies in %); `seeds` counts finished runs.", ""]
        catalog = results.catalog
        main_rows = _only_metrics(rows, lambda name: catalog.metric(name).section not in OWN_TABLE_SECTIONS)
        lines += [export(main_rows, "md", catalog=catalog), ""]
        efforts = [(m, results.efforts[(dataset, m)]) for m in suite.methods if (dataset, m) in results.efforts]
        if efforts:
            lines += ["Training effort (mean over the finished seeds; `-`: not recorded, for runs stored before the engine counted it):", "",
                      effort_markdown(efforts), ""]
        for section in OWN_TABLE_SECTIONS:
            section_rows = _only_metrics(rows, lambda name: catalog.metric(name).section == section)
            if any(r.metrics for r in section_rows):
                lines += [section_caption(section, [catalog.metric(n) for n in _metric_order(section_rows)]), "",
                          export(section_rows, "md", catalog=catalog), ""]
        notes = sorted({f"{r.method}: {ev}: {note}" for r in rows for ev, note in r.notes.items()})
        failed = [f"{r.method}: {f}" for r in rows for f in r.failed]
        if failed:
            lines += ["Failed runs: " + "; ".join(failed), ""]
        if notes:
            lines += ["Notes: " + "; ".join(notes), ""]
        for caption, path in plots.get(dataset, []):
            lines += [f"### {caption}", "", f"![{caption}]({path.as_posix()})", ""]
    pictures = _copy_pictures(store, results, out)
    for section in picture_sections(results.catalog):
        if section in pictures:
            lines += [f"## {section}", "", "Written by the evaluators into each run's folder (first finished seed shown).", ""]
            for caption, path in pictures[section]:
                lines += [f"**{caption}**", "", f"![{caption}]({path.as_posix()})", ""]
    lines += ["## Runs", "", runs_table(results), ""]
    return "\n".join(lines)


def runs_table(results: SuiteResults) -> str:
    from tabulate import tabulate

    body = []
    for cell in results.cells:
        record = results.records.get(cell.run_id)
        status = results.status[cell.run_id]
        seconds = f"{record.train_seconds:.0f}" if record and record.train_seconds else "-"
        e = Effort().add(record.effort if record else None)
        body.append([cell.run_id, cell.dataset, cell.method, cell.seed, cell.budget_label,
                     preset_of(cell.protocol), status, seconds, count_text(e.mean("steps")), count_text(e.mean("views_seen")), flops_text(e.mean("train_flops"))])
    header = ["run", "dataset", "method", "seed", "budget", "preset", "status", "train s", "steps", "views", "train FLOPs"]
    return tabulate(body, header, tablefmt="github", disable_numparse=True)


def write_report(store: Store, results: SuiteResults, out: Path, fmt: str = "md") -> list[Path]:
    """Write ``report.md`` (tables, claims, plots, pictures) into ``out`` and, for ``fmt`` latex, csv
    or json, the same tables in that format. Returns the files written (report first)."""
    if fmt not in ("md", "latex", "csv", "json"):
        raise ValueError(f"--format {fmt!r}: choose md, latex, csv or json")
    out.mkdir(parents=True, exist_ok=True)
    claims = suite_claims(results)
    written = [_within(out, out / "report.md")]
    written[0].write_text(markdown_report(store, results, claims, out), encoding="utf-8")
    suite = results.suite
    if fmt == "latex":
        parts = [f"% sslbench suite {suite.name}, budget {results.budget}"]
        for dataset in suite.datasets:
            parts += [f"% results on {dataset}", export(results.dataset_rows(dataset), "latex", catalog=results.catalog)]
        if claims:
            parts += ["% claims", claims_table(claims, "latex")]
        written.append(_within(out, out / "report.tex"))
        written[-1].write_text("\n\n".join(parts) + "\n", encoding="utf-8")
    elif fmt == "csv":
        written.append(_within(out, out / "results.csv"))
        written[-1].write_text(summary_csv(results.rows, results.efforts, results.catalog), encoding="utf-8")
        buf = io.StringIO()
        records = claim_records(claims)
        fields = ["claim", "dataset", "metric", "status", "figures", "detail", "beyond_seed_spread", "budget", "source", "difference", "p_value",
                  "preset", "equal", "effort_gap", "effort_check"]
        writer = csv.DictWriter(buf, fieldnames=fields, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(records)
        written.append(_within(out, out / "claims.csv"))
        written[-1].write_text(buf.getvalue(), encoding="utf-8")
    elif fmt == "json":
        written.append(_within(out, out / "report.json"))
        written[-1].write_text(json.dumps(report_json(results, claims), indent=2), encoding="utf-8")
    return written


def report_json(results: SuiteResults, claims: Sequence[ClaimResult]) -> dict[str, Any]:
    return {
        "suite": results.suite.name,
        "budget": results.budget,
        "protocol_presets": results.presets(),
        "effort": [{"dataset": d, "method": m, **e.as_dict()} for (d, m), e in results.efforts.items()],
        "runs": {rid: s for rid, s in results.status.items()},
        "results": rows_as_records(results.rows),
        "claims": claim_records(claims),
        "spread_rule": SPREAD_RULE,
    }


__all__ = [
    "OTHER_PICTURES", "OWN_TABLE_SECTIONS", "SuiteResults", "claims_table", "collect", "content_metrics", "make_plots",
    "markdown_report", "other_metrics", "picture_sections", "style_metrics", "suite_claims", "write_report",
]

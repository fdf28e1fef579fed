"""Every run shows its training effort (issue 11): ``results --runs`` (all formats), ``show RUN``,
reports, ``compare`` and claims give steps, views seen and training FLOPs, the budget and the protocol
preset; runs stored before the engine counted a figure show it unknown (``-``, null), never 0; a gap
in effort beyond 10% of the smaller is named; and a claim "at equal FLOPs" holds only at equal FLOPs.

The stores here are written directly (start_run, finish_run, put_metrics): nothing trains."""

from __future__ import annotations

import csv
import io
import json
import textwrap
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console
from typer.testing import CliRunner

from sslbench.bench.claims import evaluate_claims
from sslbench.bench.compare import compare_runs, compare_suites, comparison_text
from sslbench.bench.effort import EFFORT_TOLERANCE, Effort, count_text, flops_text, gaps, gaps_text
from sslbench.bench.reports import SuiteResults, collect, write_report
from sslbench.bench.runs import RUN_COLUMNS, RunsTable, run_rows, runs_text
from sslbench.bench.suites import load_suites
from sslbench.cli import app
from sslbench.engine.cells import build_grid
from sslbench.engine.store import Store

RUNNER = CliRunner()

#: what a run stored before views and FLOPs were counted holds
OLD = {"steps": 28, "images_seen": 3584}
#: a run under the new engine: 300 steps of 128 images, 10 views each
NEW = {"steps": 300, "images_seen": 38400, "views_seen": 384000, "train_flops": 3.1e12, "flops_per_step": 3.1e12 / 300,
       "views_per_image": 10, "budget": {"unit": "epochs", "value": 2, "steps": 300}}


def effort(steps: int, flops: float, views: int | None = None) -> dict[str, Any]:
    return {"steps": steps, "images_seen": steps * 128, "views_seen": views if views is not None else steps * 128 * 2,
            "train_flops": flops, "flops_per_step": flops / steps, "budget": {"unit": "epochs", "value": 2, "steps": steps}}


def store_run(store: Store, cell: Any, effort: dict[str, Any], values: dict[str, float], preset: str | None = None) -> str:
    """Store ``cell`` as a finished run with ``effort`` and metric ``values`` (its evaluators', its selection)."""
    protocol = {**cell.protocol, **({"preset": preset} if preset else {})}
    store.start_run(cell.run_id, json.loads(cell.to_json()), protocol, "p0hash", {}, None)
    store.finish_run(cell.run_id, status="done", train_seconds=2.0, images_per_s=1000.0, augment_share=0.02, peak_memory_mb=50.0,
                     history={"loss": [1.0, 0.5]}, effort=effort)
    for name, options in cell.evaluators:
        store.put_metrics(cell.run_id, name, options, cell.selection, {k: v for k, v in values.items()})
    return cell.run_id


@pytest.fixture
def two_runs(tmp_path: Path, registry):  # type: ignore[no-untyped-def]
    """An old vae run (steps and images only) and a new simvae run under the paper preset."""
    store = Store(tmp_path / "home")
    (old,) = build_grid(registry, ["vae"], "digits", [0], 2, ["knn"])
    (new,) = build_grid(registry, ["simvae"], "digits", [0], 2, ["knn"])
    store_run(store, old, OLD, {"knn_acc": 0.80})
    store_run(store, new, NEW, {"knn_acc": 0.85}, preset="paper")
    return store, old.run_id, new.run_id


def _stdout(args: list[str], home: Path) -> str:
    result = RUNNER.invoke(app, [*args, "--home", str(home)], env={"COLUMNS": "250"})
    assert result.exit_code == 0, result.output
    return result.stdout


# -- results --runs ------------------------------------------------------------------------------------


def test_runs_json_has_effort_keys_null_for_an_old_record(two_runs) -> None:  # type: ignore[no-untyped-def]
    store, old, new = two_runs
    rows = {r["id"]: r for r in json.loads(_stdout(["results", "--runs", "--format", "json"], store.home))}
    for row in rows.values():
        assert {"steps", "images_seen", "views_seen", "train_flops", "protocol_preset", "budget"} <= set(row)
    assert rows[old]["steps"] == 28 and rows[old]["images_seen"] == 3584
    assert rows[old]["views_seen"] is None and rows[old]["train_flops"] is None and rows[old]["budget"] is None  # unknown, not 0
    assert rows[old]["protocol_preset"] == "uniform"  # no preset stored: uniform
    assert rows[new]["views_seen"] == 384000 and rows[new]["train_flops"] == pytest.approx(3.1e12)
    assert rows[new]["budget"] == {"unit": "epochs", "value": 2, "steps": 300} and rows[new]["protocol_preset"] == "paper"


def test_runs_csv_md_and_table_show_effort_and_preset(two_runs) -> None:  # type: ignore[no-untyped-def]
    store, old, new = two_runs
    rows = {r["id"]: r for r in csv.DictReader(io.StringIO(runs_text(store, store.runs(), "csv")))}
    assert float(rows[new]["train_flops"]) == pytest.approx(3.1e12) and int(rows[new]["views_seen"]) == 384000
    assert rows[old]["train_flops"] == "" and rows[old]["views_seen"] == "" and rows[old]["steps"] == "28"
    assert rows[new]["protocol_preset"] == "paper" and rows[new]["budget_unit"] == "epochs" and rows[new]["budget_steps"] == "300"
    md = runs_text(store, store.runs(), "md")
    header = md.splitlines()[0]
    assert all(col in header for col in ("steps", "views", "train FLOPs", "preset", "budget"))
    line = next(x for x in md.splitlines() if new in x)
    assert "3.1 TFLOP" in line and "384k" in line and "paper" in line and "2 epochs" in line
    old_cells = [c.strip() for c in next(x for x in md.splitlines() if old in x).strip("|").split("|")]
    assert old_cells[RUN_COLUMNS.index("views")] == "-" and old_cells[RUN_COLUMNS.index("train FLOPs")] == "-"
    assert old_cells[RUN_COLUMNS.index("steps")] == "28"


@pytest.mark.parametrize("width", [80, 250])
def test_runs_table_fits_the_console_and_keeps_effort_columns(two_runs, width: int) -> None:  # type: ignore[no-untyped-def]
    store, old, new = two_runs
    console = Console(width=width, record=True, force_terminal=True, color_system=None, file=io.StringIO())
    console.print(RunsTable(run_rows(store, store.runs()), title="stored runs"))
    text = console.export_text()
    assert all(len(line) <= width for line in text.splitlines()), text
    header = next(line for line in text.splitlines() if " id " in line or "┃ id" in line)
    assert "steps" in header and "views" in header and "FLOPs" in header and "preset" in header
    assert new in text and old in text and "3.1 TFLOP" in text and "paper" in text
    if width == 80:  # columns of least use left out, and named
        assert "not shown at 80 columns:" in text and "protocol" in text.split("not shown at 80 columns:")[1]
    else:
        assert all(col in header for col in RUN_COLUMNS) and "not shown" not in text


def test_human_units() -> None:
    assert flops_text(1.2e12) == "1.2 TFLOP" and flops_text(2.9e11) == "290 GFLOP" and flops_text(None) == "-"
    assert count_text(4690) == "4690" and count_text(38400) == "38.4k" and count_text(3.84e6) == "3.84M" and count_text(None) == "-"
    assert count_text(0) == "0" and flops_text(0.0) == "0 FLOP"  # a stored zero is a zero


# -- show ----------------------------------------------------------------------------------------------


def test_show_prints_effort_and_budget(two_runs) -> None:  # type: ignore[no-untyped-def]
    store, old, new = two_runs
    text = _stdout(["show", new], store.home)
    assert "training effort" in text and "3.1 TFLOP" in text and "384k" in text and "2 epochs (300 steps)" in text
    assert "FLOPs per step" in text and "10.3 GFLOP" in text
    record = json.loads(_stdout(["show", old, "--json"], store.home))
    assert record["effort"]["steps"] == 28 and record["effort"]["views_seen"] is None and record["effort"]["train_flops"] is None
    assert record["effort"]["budget"] is None and record["protocol"]["preset"] == "uniform"
    assert "not stored" in _stdout(["show", old], store.home)


# -- the 10% rule --------------------------------------------------------------------------------------


def test_gap_beyond_ten_percent_is_named_and_five_percent_is_not() -> None:
    assert EFFORT_TOLERANCE == pytest.approx(0.10)
    vae, simvae = Effort().add(effort(28, 2.9e11)), Effort().add(effort(300, 3.1e12))
    (steps, views, flops) = gaps("simvae", simvae, "vae", vae)
    assert steps.text == "simvae trained 10.7x the steps of vae" and flops.text == "simvae used 10.7x the training FLOPs of vae"
    assert views.text == "simvae saw 10.7x the views of vae"
    close = Effort().add(effort(294, 3.1e12 * 1.05))  # 5% apart of the smaller: not a gap
    assert gaps("a", Effort().add(effort(280, 3.1e12)), "b", close) == []
    assert gaps("old", Effort().add(OLD), "new", Effort().add(NEW), ["views", "flops"]) == []  # unknown: not judged
    floor = Effort().add({"steps": 0, "images_seen": 0, "views_seen": 0, "train_flops": 0.0})  # the random floor trains nothing
    assert gaps_text(gaps("random", floor, "vae", vae, ["steps", "flops"])) == "random trained no steps (vae 28); random used no training FLOPs (vae 290 GFLOP)"


def test_compare_runs_names_the_gap(two_runs, registry) -> None:  # type: ignore[no-untyped-def]
    store, old, new = two_runs
    (vae,) = build_grid(registry, ["vae"], "digits", [1], 2, ["knn"])
    store_run(store, vae, effort(28, 2.9e11), {"knn_acc": 0.80})
    a, b = store.get_run(vae.run_id), store.get_run(new)
    c = compare_runs(store, a, b)
    text = comparison_text(c, "md")
    assert "B trained 10.7x the steps of A" in text and "B used 10.7x the training FLOPs of A" in text and "EFFORT DIFFERS" in text
    rows = {r[0]: r[1:] for r in c.rows}
    assert rows["steps (training effort)"] == ["28", "300", "10.7x"]
    assert rows["training FLOPs (training effort)"] == ["290 GFLOP", "3.1 TFLOP", "10.7x"]
    assert "preset paper" in text and "preset uniform" in text
    data = json.loads(comparison_text(c, "json"))
    assert data["effort"]["b"]["train_flops"] == pytest.approx(3.1e12) and len(data["effort"]["differs"]) == 3
    (near,) = build_grid(registry, ["vae"], "digits", [2], 2, ["knn"])
    store_run(store, near, effort(29, 2.9e11 * 1.05), {"knn_acc": 0.81})
    text = comparison_text(compare_runs(store, a, store.get_run(near.run_id)), "md")
    assert "EFFORT DIFFERS" not in text and "trained" not in text and "within 10%" in text
    old_vs_new = comparison_text(compare_runs(store, store.get_run(old), b), "md")
    assert "B trained 10.7x the steps of A" in old_vs_new and "FLOPs of A" not in old_vs_new  # FLOPs unknown on A: not judged


def test_compare_suites_names_the_gap_per_method(tmp_path: Path) -> None:
    suite = load_suites(_suite_file(tmp_path, ['"simvae > vae on knn_acc"'])).get("eq")

    def side(steps: int) -> SuiteResults:
        return SuiteResults(suite, "cpu", [], {}, [], {("digits", "vae"): {"knn_acc": [0.8, 0.81]}}, {},
                            efforts={("digits", "vae"): Effort().add(effort(steps, steps * 1e9)).add(effort(steps, steps * 1e9))})

    c = compare_suites(side(28), side(300))
    assert c.records[0]["effort_differs"] == "B trained 10.7x the steps of A; B saw 10.7x the views of A; B used 10.7x the training FLOPs of A"
    assert c.rows[0][-1] == c.records[0]["effort_differs"] and any("EFFORT DIFFERS for vae on digits" in n for n in c.notes)
    same = compare_suites(side(28), side(29))
    assert same.records[0]["effort_differs"] == "" and same.rows[0][-1] == "within 10%"


# -- claims --------------------------------------------------------------------------------------------


def _suite_file(tmp_path: Path, claims: list[str]) -> Path:
    path = tmp_path / "suites.toml"
    path.write_text(textwrap.dedent(f"""\
        [suites.eq]
        methods = ["vae", "simvae"]
        datasets = ["digits"]
        evaluators = ["knn"]
        seeds = 2
        claims = [{", ".join(claims)}]

        [suites.eq.budgets.cpu]
        epochs = 2
        """))
    return path


VALUES = {("digits", "simvae"): {"knn_acc": [0.85, 0.86]}, ("digits", "vae"): {"knn_acc": [0.80, 0.81]}}


def _efforts(simvae: dict[str, Any], vae: dict[str, Any], preset: str = "paper") -> dict[tuple[str, str], Effort]:
    protocol = {"name": "digits", "preset": preset}
    return {("digits", "simvae"): Effort().add(simvae, protocol).add(simvae, protocol), ("digits", "vae"): Effort().add(vae, protocol).add(vae, protocol)}


def test_claim_names_preset_and_an_effort_gap(tmp_path: Path) -> None:
    suite = load_suites(_suite_file(tmp_path, ['"simvae > vae on knn_acc"'])).get("eq")
    (r,) = evaluate_claims(suite.claims, VALUES, "cpu", efforts=_efforts(effort(300, 3.1e12), effort(28, 2.9e11)))
    assert r.status == "held" and r.preset == "paper"
    assert "simvae trained 10.7x the steps of vae" in r.detail and r.verdict.startswith("held under paper; simvae trained 10.7x the steps of vae")
    (close,) = evaluate_claims(suite.claims, VALUES, "cpu", efforts=_efforts(effort(300, 3.1e12), effort(286, 3.1e12 / 1.05, 286 * 256)))
    assert close.status == "held" and "trained" not in close.detail and close.verdict == "held under paper"
    (plain,) = evaluate_claims(suite.claims, VALUES, "cpu")  # no effort given: the verdict as before
    assert plain.detail.startswith("difference +5.00 pp") and "effort" not in plain.detail and plain.preset == ""


def test_at_equal_flops_claim_needs_equal_flops(tmp_path: Path) -> None:
    suite = load_suites(_suite_file(tmp_path, ['"simvae > vae on knn_acc at equal FLOPS"', '"vae > simvae on knn_acc at equal flops"'])).get("eq")
    claim, reverse = suite.claims
    assert claim.equal == "flops" and claim.text == "simvae > vae on knn_acc at equal FLOPs"
    equal = _efforts(effort(300, 3.0e12), effort(28, 2.9e12), preset="uniform")  # 3.4% apart in FLOPs, 10.7x in steps
    held, not_held = evaluate_claims(suite.claims, VALUES, "cpu", efforts=equal)
    assert held.status == "held" and "at equal FLOPs: simvae 3 TFLOP, vae 2.9 TFLOP (within 10%)" in held.detail
    assert "simvae trained 10.7x the steps of vae" in held.detail  # the other units' gaps are still named
    assert held.verdict.startswith("held under uniform") and not_held.status == "not held"
    apart = _efforts(effort(300, 3.1e12), effort(28, 2.9e11))
    unequal, reverse_unequal = evaluate_claims(suite.claims, VALUES, "cpu", efforts=apart)
    assert unequal.status == "not at equal effort" and reverse_unequal.status == "not at equal effort"  # neither passes nor fails
    assert unequal.verdict == "not at equal FLOPs under paper: simvae 3.1 TFLOP, vae 290 GFLOP (10.7x; more than 10% apart)"
    assert "the ordering alone holds" in unequal.detail and "the ordering alone does not hold" in reverse_unequal.detail
    (unknown, _) = evaluate_claims(suite.claims, VALUES, "cpu", efforts=_efforts(effort(300, 3.1e12), OLD))
    assert unknown.status == "not at equal effort" and "vae -" in unknown.verdict and "unknown" in unknown.verdict
    (no_effort, _) = evaluate_claims(suite.claims, VALUES, "cpu")
    assert no_effort.status == "not run" and "at equal FLOPs" in no_effort.detail


def test_equal_effort_suffix_in_every_unit_and_refused_when_misspelt(tmp_path: Path) -> None:
    from sslbench.bench.suites import SuiteError

    claims = load_suites(_suite_file(tmp_path, ['"simvae > vae on knn_acc at equal steps"', '"simvae > vae on knn_acc At Equal Views in digits"'])).get("eq").claims
    assert [c.equal for c in claims] == ["steps", "views"] and claims[1].text == "simvae > vae on knn_acc in digits at equal views"
    with pytest.raises(SuiteError, match="at equal steps|views|flops"):
        load_suites(_suite_file(tmp_path, ['"simvae > vae on knn_acc at equal epochs"']))


# -- reports -------------------------------------------------------------------------------------------


def test_report_shows_effort_beside_results_and_names_the_preset(tmp_path: Path, registry) -> None:  # type: ignore[no-untyped-def]
    suite = load_suites(_suite_file(tmp_path, ['"simvae > vae on knn_acc"', '"simvae > vae on knn_acc at equal flops"'])).get("eq")
    cells = suite.cells(registry, "cpu")
    store = Store(tmp_path / "home")
    for cell in cells:
        big = cell.method == "simvae"
        store_run(store, cell, effort(300, 3.1e12) if big else effort(28, 2.9e11), {"knn_acc": 0.85 if big else 0.80})
    results = collect(store, suite, "cpu", cells)
    written = write_report(store, results, tmp_path / "out", "json")
    text = written[0].read_text()
    assert "- protocol preset: `uniform`" in text
    table = text.split("Training effort")[1].split("\n\n")[1]
    simvae = next(line for line in table.splitlines() if line.startswith("| simvae"))
    assert "300" in simvae and "3.1 TFLOP" in simvae and "76.8k" in simvae  # mean over the 2 seeds
    held = next(line for line in text.splitlines() if line.startswith("| simvae > vae on knn_acc under uniform"))
    assert "| held " in held and "simvae trained 10.7x the steps of vae" in held
    unequal = next(line for line in text.splitlines() if line.startswith("| simvae > vae on knn_acc at equal FLOPs under uniform"))
    assert "*not at equal effort*" in unequal and "not at equal FLOPs: simvae 3.1 TFLOP, vae 290 GFLOP" in unequal
    assert "1 held, 0 not held, 1 not at equal effort, 0 not run" in text
    runs = text.split("## Runs")[1]
    assert "train FLOPs" in runs and "3.1 TFLOP" in runs and "uniform" in runs
    data = json.loads(written[1].read_text())
    assert data["protocol_presets"] == ["uniform"]
    assert {(e["method"], e["steps"]) for e in data["effort"]} == {("vae", 28), ("simvae", 300)}
    assert [c["status"] for c in data["claims"]] == ["held", "not at equal effort"] and data["claims"][1]["equal"] == "flops"
    csv_rows = list(csv.DictReader((write_report(store, results, tmp_path / "csv", "csv")[1]).open()))
    flops = next(r for r in csv_rows if r["method"] == "simvae" and r["metric"] == "train_flops")
    assert float(flops["mean"]) == pytest.approx(3.1e12) and flops["unit"] == "FLOPs" and flops["n"] == "2"

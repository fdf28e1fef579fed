"""Suite reports (tables, claims, plots, run pictures, LaTeX/CSV/JSON) and `compare`, from real
stored runs of the quick suite's grid (digits, 1 epoch)."""

from __future__ import annotations

import csv
import json
import statistics
import textwrap

import pytest
from PIL import Image
from typer.testing import CliRunner

from sslbench.cli import app
from sslbench.engine.plugins import build_registry
from sslbench.bench.compare import compare_suites
from sslbench.bench.reports import SuiteResults, collect, write_report
from sslbench.engine.runner import InProcessExecutor
from sslbench.engine.store import Store
from sslbench.bench.suites import load_suites

SUITES = """\
[suites.small]
description = "the quick suite's grid at 1 epoch"
methods = ["random", "vae", "simclr"]
datasets = ["digits"]
evaluators = ["knn", "linear"]
seeds = 2
params = { linear = { epochs = 5 } }
claims = [
    "vae > random on knn_acc",
    "simclr > random on linear_acc",
    "random < simclr on knn_acc",
    { method = "simclr", metric = "knn_acc", value = "80%", tolerance = "10%" },
]

[suites.small.budgets.cpu]
epochs = 1

[suites.wider]
description = "the same runs plus a method nobody ran"
methods = ["random", "vae", "simclr", "moco"]
datasets = ["digits"]
evaluators = ["knn", "linear"]
seeds = 2
params = { linear = { epochs = 5 } }
claims = ["moco > random on knn_acc", "simclr > random on linear_acc"]

[suites.wider.budgets.cpu]
epochs = 1
"""


@pytest.fixture(scope="module")
def stored(tmp_path_factory):  # type: ignore[no-untyped-def]
    """The `small` suite run in-process into a fresh store; a fake picture in one run folder."""
    folder = tmp_path_factory.mktemp("report")
    path = folder / "suites.toml"
    path.write_text(textwrap.dedent(SUITES))
    registry = build_registry()
    suite = load_suites(path).get("small")
    cells = suite.cells(registry, "cpu")
    store = Store(folder / "home")
    executor = InProcessExecutor(store, registry)
    outcomes = [executor.submit(c) for c in cells]
    assert all(o.status == "done" for o in outcomes)
    Image.new("RGB", (40, 20), (200, 30, 30)).save(store.run_dir(cells[1].run_id) / "reconstructions.png")
    return path, store, registry, cells


def seed_values(store: Store, cells, method: str, metric: str) -> list[float]:  # type: ignore[no-untyped-def]
    out = []
    for cell in cells:
        if cell.method == method:
            out += [m["value"] for m in store.metrics(cell.run_id) if m["name"] == metric]
    return out


def test_report_has_tables_claims_plots_and_pictures(stored, tmp_path) -> None:  # type: ignore[no-untyped-def]
    path, store, registry, cells = stored
    suite = load_suites(path).get("small")
    results = collect(store, suite, "cpu", cells)
    assert results.counts()["done"] == 6
    written = write_report(store, results, tmp_path / "out", "md")
    text = written[0].read_text()
    assert "## Claims" in text and "## Results on digits" in text and "## Runs" in text
    # each claim's verdict, recomputed here from the stored per-seed metrics
    mean = {m: {k: statistics.fmean(seed_values(store, cells, m, k)) for k in ("knn_acc", "linear_acc")} for m in suite.methods}
    expected = [
        mean["vae"]["knn_acc"] > mean["random"]["knn_acc"],
        mean["simclr"]["linear_acc"] > mean["random"]["linear_acc"],
        mean["random"]["knn_acc"] < mean["simclr"]["knn_acc"],
        abs(mean["simclr"]["knn_acc"] - 0.8) <= 0.1,
    ]
    claim_lines = [line for line in text.splitlines() if line.startswith("| ") and (" on " in line or "knn_acc =" in line)]
    assert len(claim_lines) == 4
    for line, held in zip(claim_lines, expected):
        cells_of_line = [c.strip() for c in line.strip("|").split("|")]
        assert cells_of_line[1] == ("held" if held else "**not held**"), line
    vae_knn = seed_values(store, cells, "vae", "knn_acc")
    assert f"vae {100 * statistics.fmean(vae_knn):.1f} ± {100 * statistics.stdev(vae_knn):.1f} (n=2)" in text
    # plots exist, are PNGs and are linked from the report
    for name in ("accuracy-digits.png", "curves-digits.png"):
        assert f"]({name})" in text
        with Image.open(tmp_path / "out" / name) as image:
            assert image.format == "PNG" and image.size[0] > 400 and image.size[1] > 300
    # the picture a run wrote is copied and shown under its section
    assert "## Reconstructions and samples" in text
    copied = tmp_path / "out" / "runs" / f"digits-vae-seed{cells[1].seed}-reconstructions.png"
    assert copied.is_file() and f"](runs/{copied.name})" in text


def test_unrun_method_makes_its_claims_not_run(stored, tmp_path) -> None:  # type: ignore[no-untyped-def]
    path, store, registry, _ = stored
    suite = load_suites(path).get("wider")
    results = collect(store, suite, "cpu", suite.cells(registry, "cpu"))
    assert results.counts() == {"done": 6, "not evaluated": 0, "failed": 0, "error": 0, "running": 0, "interrupted": 0, "not run": 2}
    text = write_report(store, results, tmp_path, "md")[0].read_text()
    line = next(line for line in text.splitlines() if line.startswith("| moco > random on knn_acc"))
    assert [c.strip() for c in line.strip("|").split("|")][1] == "not run" and "no stored knn_acc for moco" in line
    assert "2 of 8 runs are not finished: `sslbench bench wider --budget cpu` resumes them." in text


@pytest.mark.parametrize("fmt", ["latex", "csv", "json"])
def test_the_same_tables_in_other_formats(stored, tmp_path, fmt) -> None:  # type: ignore[no-untyped-def]
    path, store, registry, cells = stored
    suite = load_suites(path).get("small")
    written = write_report(store, collect(store, suite, "cpu", cells), tmp_path, fmt)
    assert written[0].name == "report.md"
    if fmt == "latex":
        tex = written[1].read_text()
        assert "\\begin{tabular}" in tex and "$\\pm$" in tex and "vae $>$ random on knn\\_acc" in tex
        assert tex.count("\\begin{tabular}") == 2  # results and claims
    elif fmt == "csv":
        rows = list(csv.DictReader(written[1].open()))
        assert {r["method"] for r in rows} == {"random", "vae", "simclr"}
        claims = list(csv.DictReader(written[2].open()))
        assert [c["status"] in ("held", "not held") for c in claims] == [True] * 4
    else:
        data = json.loads(written[1].read_text())
        assert data["suite"] == "small" and len(data["claims"]) == 4
        vae = next(r for r in data["results"] if r["method"] == "vae")
        assert vae["metrics"]["knn_acc"]["values"] == pytest.approx(seed_values(store, cells, "vae", "knn_acc"))


def test_report_and_compare_commands(stored, tmp_path) -> None:  # type: ignore[no-untyped-def]
    path, store, registry, cells = stored
    runner = CliRunner()
    base = ["--file", str(path), "--home", str(store.home)]
    result = runner.invoke(app, ["report", "small", "--out", str(tmp_path / "r"), "--format", "csv", *base])
    assert result.exit_code == 0, result.output
    assert "6 of 6 runs finished" in result.output and (tmp_path / "r" / "claims.csv").is_file()
    # two runs: metric by metric, with the rule that one run per side has no spread to judge by
    vae0, simclr0 = cells[1].run_id, cells[2].run_id
    result = runner.invoke(app, ["compare", vae0[:8], simclr0, "--format", "md", *base])
    assert result.exit_code == 0, result.output
    knn = {m["name"]: m["value"] for m in store.metrics(vae0)}["knn_acc"], {m["name"]: m["value"] for m in store.metrics(simclr0)}["knn_acc"]
    assert f"{100 * (knn[1] - knn[0]):+.2f}" in result.output
    assert "the runs differ in: method" in result.output and "no seed-to-seed spread" in result.output
    # two suites sharing their runs: every difference is zero and none exceeds the spread
    result = runner.invoke(app, ["compare", "small", "wider@cpu", "--format", "json", *base])
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert data["rows"] and all(r["difference"] == 0 and r["beyond_seed_spread"] == "no" for r in data["rows"])
    assert any("Welch" in n for n in data["notes"])
    result = runner.invoke(app, ["compare", "small", "nothing-like-this", *base])
    assert result.exit_code == 2 and "neither a stored run id" in result.output


def test_compare_suites_flags_a_gap_beyond_the_seed_spread(stored) -> None:  # type: ignore[no-untyped-def]
    path, store, registry, cells = stored
    suite = load_suites(path).get("small")

    def fake(values):  # type: ignore[no-untyped-def]
        return SuiteResults(suite, "cpu", [], {}, [], values, {})

    a = fake({("digits", "vae"): {"knn_acc": [0.80, 0.81, 0.79]}, ("digits", "simclr"): {"knn_acc": [0.9]}})
    b = fake({("digits", "vae"): {"knn_acc": [0.90, 0.91, 0.89]}, ("digits", "simclr"): {"knn_acc": [0.95]}})
    rows = {(r["method"], r["metric"]): r for r in compare_suites(a, b).records}
    assert rows[("vae", "knn_acc")]["beyond_seed_spread"] == "yes" and rows[("vae", "knn_acc")]["difference"] == pytest.approx(0.1)
    assert rows[("simclr", "knn_acc")]["beyond_seed_spread"] == "n/a (1 seed)"
    c = fake({("digits", "vae"): {"knn_acc": [0.70, 0.95, 0.82]}})
    assert compare_suites(a, c).records[0]["beyond_seed_spread"] == "no"

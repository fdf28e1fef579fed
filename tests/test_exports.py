"""Exports other tools read: ``results -f csv|json`` carry numbers (mean, std, n, unit in columns of
their own), ``results --runs`` honours every format, and ``sslbench show RUN`` gives a run's record."""

from __future__ import annotations

import csv
import io
import json
import math
from pathlib import Path

import pytest
from typer.testing import CliRunner

from sslbench.cli import app
from sslbench.engine.store import Store

RUNNER = CliRunner()


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Two seeds of a trained VAE (one epoch) and of the random floor on digits, kNN and a short linear probe."""
    home = tmp_path_factory.mktemp("exports-home")
    result = RUNNER.invoke(app, ["run", "vae", "random", "--dataset", "digits", "--epochs", "1", "--seeds", "2", "-e", "knn",
                                 "-e", "linear", "-p", "linear.epochs=3", "--home", str(home)])
    assert result.exit_code == 0, result.output
    return home


def _stdout(args: list[str], home: Path) -> str:
    result = RUNNER.invoke(app, [*args, "--home", str(home)], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    return result.stdout


def _stored(home: Path, method: str, name: str) -> list[float]:
    store = Store(home)
    return sorted(m["value"] for r in store.runs(method=method) for m in store.metrics(r.id) if m["name"] == name)


def test_results_csv_has_numeric_mean_std_n_and_unit_columns(home: Path) -> None:
    text = _stdout(["results", "-f", "csv"], home)
    assert "±" not in text
    rows = list(csv.DictReader(io.StringIO(text)))
    assert {"metric", "mean", "std", "n", "unit"} <= set(rows[0])
    for row in rows:  # every number reads back as a number: no "80.9 ± 0.6", no "4,731"
        float(row["mean"]), float(row["std"]), int(row["n"])
    knn = next(r for r in rows if r["method"] == "vae" and r["metric"] == "knn_acc")
    values = _stored(home, "vae", "knn_acc")
    assert knn["unit"] == "fraction" and knn["evaluator"] == "knn" and int(knn["n"]) == 2
    assert math.isclose(float(knn["mean"]), sum(values) / 2)  # stored units: a fraction, not a percentage
    assert math.isclose(float(knn["std"]), abs(values[1] - values[0]) / math.sqrt(2))
    speed = next(r for r in rows if r["method"] == "vae" and r["metric"] == "images_per_s")
    assert float(speed["mean"]) > 0 and speed["unit"] == "images/s"
    assert any(r["metric"] == "knn_k" for r in rows)  # details are exported
    try:
        import pandas
    except ImportError:  # pandas is not a dependency; the csv module and float() read it above
        return
    frame = pandas.read_csv(io.StringIO(text))
    assert pandas.api.types.is_float_dtype(frame["mean"]) and pandas.api.types.is_float_dtype(frame["std"])


def test_results_json_is_typed_with_units(home: Path) -> None:
    records = json.loads(_stdout(["results", "-f", "json"], home))
    vae = next(r for r in records if r["method"] == "vae")
    knn = vae["metrics"]["knn_acc"]
    assert knn["unit"] == "fraction" and knn["higher_is_better"] is True and knn["evaluator"] == "knn"
    assert isinstance(knn["mean"], float) and isinstance(knn["n"], int) and sorted(knn["values"]) == _stored(home, "vae", "knn_acc")
    assert isinstance(vae["images_per_s"], float)


def test_md_and_latex_keep_the_table_look(home: Path) -> None:
    md = _stdout(["results", "-f", "md"], home)
    assert md.lstrip().startswith("| dataset") and "±" in md
    latex = _stdout(["results", "-f", "latex"], home)
    assert "\\begin{tabular}" in latex and "$\\pm$" in latex


@pytest.mark.parametrize("fmt", ["table", "md", "latex", "csv", "json"])
def test_results_runs_honours_every_format(home: Path, fmt: str) -> None:
    text = _stdout(["results", "--runs", "-f", fmt], home)
    store = Store(home)
    ids = [r.id for r in store.runs()]
    assert len(ids) == 4 and all(i in text for i in ids)
    if fmt == "table":  # the full table's box, or the compact one's header rule when it is too wide
        assert "┃" in text or "│" in text or "─" in text
    elif fmt == "md":
        assert text.lstrip().startswith("| id") and "┃" not in text
    elif fmt == "latex":
        assert "\\begin{tabular}" in text and "knn\\_acc" in text
    elif fmt == "csv":
        rows = list(csv.DictReader(io.StringIO(text)))
        assert {r["id"] for r in rows} == set(ids)
        for r in rows:
            assert r["unit"] and math.isfinite(float(r["value"]))
        run = store.runs(method="vae")[0]
        stored = {m["name"]: m["value"] for m in store.metrics(run.id)}
        mine = {r["metric"]: float(r["value"]) for r in rows if r["id"] == run.id}
        assert mine == pytest.approx(stored)
        assert float(next(r for r in rows if r["id"] == run.id)["images_per_s"]) == pytest.approx(run.images_per_s)
    else:
        records = json.loads(text)
        assert {r["id"] for r in records} == set(ids) and all(isinstance(r["seed"], int) for r in records)


def test_show_prints_and_returns_a_runs_whole_record(home: Path) -> None:
    store = Store(home)
    run = store.runs(method="vae")[0]
    record = json.loads(_stdout(["show", run.id[:6], "--json"], home))
    assert record["id"] == run.id and record["method"] == "vae" and record["seed"] == run.seed and record["status"] == "done"
    assert record["protocol"]["hash"] == run.protocol_hash and record["protocol"]["batch_size"] == 128
    assert record["parameters"]["method"]["beta"] == 1.0 and record["parameters"]["evaluators"]["linear"]["epochs"] == 3
    assert record["environment"]["torch"] and record["provenance"]["method"]["name"] == "vae"
    assert record["files"]["checkpoint_exists"] is True and Path(record["files"]["checkpoint"]) == store.checkpoint_path(run.id)
    assert isinstance(record["files"]["checkpoint_bytes"], int)
    assert record["history"]["curves"] == run.history and record["history"]["terms"]["loss"]["last"] == run.history["loss"][-1]
    assert isinstance(record["timing"]["images_per_s"], float) and record["error"] is None
    knn = next(m for m in record["metrics"] if m["name"] == "knn_acc")
    assert knn["value"] == {m["name"]: m["value"] for m in store.metrics(run.id)}["knn_acc"]
    assert knn["unit"] == "fraction" and knn["options"] == {"k_max": 15} and knn["selection"] == "val"
    text = _stdout(["show", run.id], home)
    for part in (run.id, "protocol", "parameters", "environment", "model.pt", "training history", "knn_acc", "kl"):
        assert part in text, part


def test_show_refuses_unknown_unsafe_and_short_references(home: Path) -> None:
    run = Store(home).runs()[0]
    wrong = run.id[:5] + ("0" if run.id[5] != "0" else "1")
    result = RUNNER.invoke(app, ["show", wrong, "--home", str(home)])
    assert result.exit_code == 2 and "no stored run" in result.output and run.id in result.output  # the close match
    for ref, said in (("../../etc/passwd", "not allowed"), ("ab", "at least 4"), ("zzzz", "hexadecimal")):
        result = RUNNER.invoke(app, ["show", ref, "--home", str(home)])
        assert result.exit_code == 2 and said in result.output, (ref, result.output)


def test_show_names_every_run_an_ambiguous_prefix_matches() -> None:
    from types import SimpleNamespace

    from sslbench.bench.show import RunLookupError, find_run

    runs = [SimpleNamespace(id=i, method="vae", dataset="digits", seed=s) for s, i in enumerate(("abcd0001", "abcd0002", "ffff0003"))]
    store = SimpleNamespace(runs=lambda: runs, get_run=lambda i: next((r for r in runs if r.id == i), None), path="db")
    assert find_run(store, "ffff").id == "ffff0003" and find_run(store, "ABCD0002").id == "abcd0002"
    with pytest.raises(RunLookupError, match="matches 2 runs: abcd0001 .*abcd0002"):
        find_run(store, "abcd")

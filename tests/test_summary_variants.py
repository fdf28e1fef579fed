"""Metrics stored with different evaluator options or selection rules are never averaged together as
if they were seeds: each variant is its own column, and `sslbench run` shows what it asked for."""

from __future__ import annotations

import csv
import io

from typer.testing import CliRunner

from sslbench.bench.tables import export, summarise, table_rows
from sslbench.cli import app
from sslbench.engine.plugins import build_registry
from sslbench.engine.runner import InProcessExecutor, build_grid, run_grid
from sslbench.engine.store import Store


def _run(store, reg, k_max: int, selection: str = "val", seeds=(0, 1)):  # type: ignore[no-untyped-def]
    cells = build_grid(reg, ["random"], "digits", seeds, 0, ["knn"], {"knn": {"k_max": str(k_max)}}, selection=selection)
    run_grid(cells, InProcessExecutor(store, reg))
    return cells


def test_options_and_selection_variants_are_separate_columns(tmp_path) -> None:  # type: ignore[no-untyped-def]
    reg, store = build_registry(), Store(tmp_path)
    _run(store, reg, 15)
    _run(store, reg, 1)
    _run(store, reg, 15, selection="test")
    (row,) = summarise(store, store.runs())
    assert sorted(row.metrics) == [
        "knn_acc [k_max=1, select=val]", "knn_acc [k_max=15, select=test]", "knn_acc [k_max=15, select=val]",
        "knn_k [k_max=1, select=val]", "knn_k [k_max=15, select=test]", "knn_k [k_max=15, select=val]",
    ]
    assert all(len(v) == 2 for v in row.metrics.values())  # two seeds each, never six values pooled
    assert row.metrics["knn_k [k_max=1, select=val]"] == [1.0, 1.0]
    header, body = table_rows([row])
    # the labelled columns keep their declarations: accuracies in %, the chosen k left out as a detail
    assert sorted(h for h in header if h.startswith("knn")) == ["knn_acc [k_max=1, select=val]", "knn_acc [k_max=15, select=test]", "knn_acc [k_max=15, select=val]"]
    shown = body[0][header.index("knn_acc [k_max=1, select=val]")]
    assert float(shown.split(" ± ")[0]) > 1  # a percentage, not a fraction
    assert "knn_k [k_max=1, select=val]" in {r["metric"] for r in csv.DictReader(io.StringIO(export([row], "csv")))}


def test_one_variant_keeps_the_bare_name_and_run_shows_only_what_it_asked(tmp_path) -> None:  # type: ignore[no-untyped-def]
    reg, store = build_registry(), Store(tmp_path)
    cells = _run(store, reg, 15)
    assert sorted(summarise(store, store.runs())[0].metrics) == ["knn_acc", "knn_k"]
    _run(store, reg, 3)
    (asked,) = summarise(store, store.runs(), cells[0].evaluators, cells[0].selection)
    assert sorted(asked.metrics) == ["knn_acc", "knn_k"] and len(asked.metrics["knn_acc"]) == 2
    result = CliRunner().invoke(app, ["run", "random", "--dataset", "digits", "--seeds", "2", "-e", "knn", "-p", "knn.k_max=3",
                                      "--format", "csv", "--home", str(tmp_path)])
    assert result.exit_code == 0, result.output
    start = result.stdout.index("dataset,")
    metrics = {r["metric"] for r in csv.DictReader(io.StringIO(result.stdout[start:]))}
    assert "knn_acc" in metrics and not any("[" in m for m in metrics)  # only the k_max=3 metrics this command asked for

"""Suite files: parsing, errors with file/line/key, grids per budget, claims, dry runs, and a bench
killed with SIGKILL that resumes with every run present once."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from sslbench.cli import app
from sslbench.engine.runner import InProcessExecutor
from sslbench.engine.store import Store
from sslbench.bench.claims import evaluate_claims, welch
from sslbench.bench.suites import SuiteError, default_suite_file, load_suites
from sslbench.bench.toml_lines import KeyLocator

REPO = Path(__file__).resolve().parent.parent

GOOD = """\
# a comment
[suites.small]
description = "tiny"
methods = ["random", "vae", "simclr"]
datasets = ["digits"]
evaluators = ["knn", "linear"]
seeds = 2
params = { linear = { epochs = 5 } }
claims = [
    "vae > random on knn_acc",
    { claim = "simclr > random on linear_acc", budget = "cpu" },
    { method = "simclr", metric = "knn_acc", value = "90%", tolerance = "5%", source = "a guess" },
]

[suites.small.budgets.cpu]
epochs = 1

[suites.small.budgets.long]
epochs = { generative = 3, discriminative = 5, simclr = 7 }
seeds = [4]
params = { knn = { k_max = 5 } }
"""


def write(tmp_path: Path, text: str, name: str = "suites.toml") -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text))
    return path


def error_of(path: Path, registry=None) -> str:  # type: ignore[no-untyped-def]
    with pytest.raises(SuiteError) as info:
        sf = load_suites(path)
        for suite in sf.suites.values():
            suite.check(registry)
    return str(info.value)


def line_of(path: Path, needle: str) -> int:
    return next(i for i, line in enumerate(path.read_text().splitlines(), 1) if needle in line)


# -- parsing ---------------------------------------------------------------------------------------


def test_good_file_gives_grids_per_budget(tmp_path, registry) -> None:  # type: ignore[no-untyped-def]
    sf = load_suites(write(tmp_path, GOOD))
    suite = sf.get("small")
    suite.check(registry)
    cpu = suite.cells(registry, "cpu")
    # data set, then seed, then method: a suite stopped half-way has every method at seed 0
    assert [(c.seed, c.method, c.epochs) for c in cpu] == [
        (0, "random", 0), (0, "vae", 1), (0, "simclr", 1), (1, "random", 0), (1, "vae", 1), (1, "simclr", 1)
    ]
    assert all(c.suite == "small" and c.evaluators[1] == ("linear", {"epochs": 5, "lr": 0.01, "weight_decay": 1e-05, "batch_size": 256}) for c in cpu)
    long = suite.cells(registry, "long")
    assert [(c.seed, c.method, c.epochs) for c in long] == [(4, "random", 0), (4, "vae", 3), (4, "simclr", 7)]
    assert dict(long[0].evaluators)["knn"] == {"k_max": 5}  # budget params overlay the suite's
    assert dict(long[0].evaluators)["linear"]["epochs"] == 5
    assert {c.run_id for c in cpu}.isdisjoint({c.run_id for c in long})
    kinds = [(c.kind, c.text, c.budget) for c in suite.claims]
    assert kinds == [
        ("order", "vae > random on knn_acc", None),
        ("order", "simclr > random on linear_acc", "cpu"),
        ("reference", "simclr knn_acc = 90% ± 5%", None),
    ]
    assert suite.claims[2].value == pytest.approx(0.9) and suite.claims[2].tolerance == pytest.approx(0.05)


def test_shipped_suites_are_valid_and_name_data_sets_never_paths(registry) -> None:  # type: ignore[no-untyped-def]
    sf = load_suites(default_suite_file())
    assert (REPO / "benchmarks.toml").read_text(encoding="utf-8") == sf.text  # the top-level file is the packaged one
    wanted = {"quick", "table1-mnist", "table1-fashion", "linear-gmm", "ari-nmi", "mse-fid-mnist", "style-shapes", "vi-simsiam", "ssvae-balls"}
    assert wanted <= set(sf.suites)
    for suite in sf.suites.values():
        suite.check(registry)
        assert "paper" in suite.budgets or suite.name == "quick"
    table1 = sf.get("table1-mnist")
    cells = table1.cells(registry, "cpu")
    assert len(cells) == 9 * 2
    assert all(suite.data_dirs == {} for suite in sf.suites.values())  # found by name under the data root
    paper = {c.method: c.epochs for c in table1.cells(registry, "paper")}
    assert paper["simvae"] == 400 and paper["simclr"] == 800 and paper["random"] == 0
    # the MNIST evaluation suites reuse table1-mnist's trained runs at the cpu budget
    shared = {c.run_id for c in sf.get("linear-gmm").cells(registry, "cpu") if c.dataset == "mnist"}
    assert shared == {c.run_id for c in cells}
    refs = [c for c in sf.get("vi-simsiam").claims if c.kind == "reference"]
    assert sorted((c.dataset, c.method, round(c.value * 100, 1)) for c in refs) == [
        ("imagenette", "simsiam", 88.2), ("imagenette", "vi-simsiam", 90.7),
        ("imagewoof", "simsiam", 72.4), ("imagewoof", "vi-simsiam", 78.5),
    ]


def test_data_dir_override_for_one_dataset(tmp_path, registry) -> None:  # type: ignore[no-untyped-def]
    path = write(tmp_path, GOOD.replace('seeds = 2\n', 'seeds = 2\ndata_dir = { digits = "data/here" }\n', 1))
    suite = load_suites(path).get("small")
    assert suite.cells(registry, "cpu")[0].data_dir == str((tmp_path / "data" / "here").resolve())
    assert suite.cells(registry, "cpu", data_dirs={"digits": "/else"})[0].data_dir == "/else"


def test_malformed_toml_names_file_and_line(tmp_path) -> None:  # type: ignore[no-untyped-def]
    path = write(tmp_path, """\
        [suites.x]
        methods = ["vae"]
        datasets = ["digits"
        evaluators = ["knn"]
        """)
    message = error_of(path)
    assert message.startswith(f"{path}:") and "TOML syntax error" in message
    assert message.split(":")[1] in {"3", "4"}


def test_unknown_method_points_at_its_line_and_suggests(tmp_path, registry) -> None:  # type: ignore[no-untyped-def]
    path = write(tmp_path, GOOD.replace('methods = ["random", "vae", "simclr"]', 'methods = [\n    "random",\n    "vae",\n    "simvea",\n    "simclr",\n]'))
    message = error_of(path, registry)
    assert message.startswith(f"{path}:{line_of(path, 'simvea')}: suites.small.methods[2]: ")
    assert "Unknown method 'simvea'" in message and "'simvae'" in message and "list-methods" in message


def test_bad_key_points_at_its_line(tmp_path) -> None:  # type: ignore[no-untyped-def]
    path = write(tmp_path, GOOD.replace("[suites.small.budgets.cpu]\nepochs = 1", "[suites.small.budgets.cpu]\nepoch = 1"))
    message = error_of(path)
    assert message.startswith(f"{path}:{line_of(path, 'epoch = 1')}: suites.small.budgets.cpu.epoch: ")
    assert "Did you mean 'epochs'" in message


def test_bad_parameter_value_and_stray_owner(tmp_path, registry) -> None:  # type: ignore[no-untyped-def]
    path = write(tmp_path, GOOD.replace("params = { knn = { k_max = 5 } }", "params = { knn = { k_max = \"many\" } }"))
    message = error_of(path, registry)
    assert message.startswith(f"{path}:{line_of(path, 'many')}: suites.small.budgets.long.params.knn.k_max: ")
    assert "knn.k_max='many' is not a valid int" in message
    path = write(tmp_path, GOOD.replace("params = { linear = { epochs = 5 } }", "params = { moco = { momentum = 0.9 } }"))
    message = error_of(path, registry)
    assert f":{line_of(path, 'moco')}: suites.small.params.moco: 'moco' is not a method" in message


@pytest.mark.parametrize(
    ("old", "new", "needle", "expected"),
    [
        ('"vae > random on knn_acc",', '"vae >> random on knn_acc",', ">>", "cannot read claim"),
        ('"vae > random on knn_acc",', '"moco > random on knn_acc",', "moco >", "not in the suite's methods"),
        ('value = "90%"', 'value = "ninety"', "ninety", "value must be a number"),
        ('budget = "cpu" }', 'budget = "gpu" }', '"gpu"', "does not have"),
        ("epochs = { generative = 3, discriminative = 5, simclr = 7 }", "epochs = { generative = 3 }", "generative = 3 }", "no epochs for simclr"),
    ],
)
def test_claim_and_budget_errors(tmp_path, registry, old, new, needle, expected) -> None:  # type: ignore[no-untyped-def]
    assert old in GOOD
    path = write(tmp_path, GOOD.replace(old, new))
    message = error_of(path, registry)
    assert expected in message and message.startswith(f"{path}:{line_of(path, needle)}: "), message


def test_unknown_suite_and_budget_are_named(tmp_path, registry) -> None:  # type: ignore[no-untyped-def]
    sf = load_suites(write(tmp_path, GOOD))
    with pytest.raises(SuiteError, match="no suite 'smal'. Did you mean 'small'"):
        sf.get("smal")
    with pytest.raises(SuiteError, match="has no budget 'paper'; its budgets: cpu, long"):
        sf.get("small").cells(registry, "paper")


def test_key_locator_follows_inline_tables_and_arrays() -> None:
    text = '[a.b]\nx = { y = [1,\n  { z = "q]" }] }\n[[c]]\nk = 1\n[[c]]\nk = 2\n'
    loc = KeyLocator(text)
    assert loc.line(("a", "b", "x", "y", 1, "z")) == 3
    assert loc.line(("a", "b", "x", "y", 0)) == 2
    assert loc.line(("c", 1, "k")) == 7
    assert loc.line(("a", "b", "missing")) == 1


# -- claims ------------------------------------------------------------------------------------------


def test_claims_held_not_held_not_run(tmp_path) -> None:  # type: ignore[no-untyped-def]
    suite = load_suites(write(tmp_path, GOOD)).get("small")
    values = {("digits", "vae"): {"knn_acc": [0.80, 0.82]}, ("digits", "random"): {"knn_acc": [0.70, 0.71], "linear_acc": [0.5]},
              ("digits", "simclr"): {"knn_acc": [0.86, 0.88]}}
    results = evaluate_claims(suite.claims, values, "cpu")
    assert [r.status for r in results] == ["held", "not run", "held"]
    assert "vae 81.0 ± 1.4 (n=2) vs random 70.5 ± 0.7 (n=2)" == results[0].figures
    assert results[0].beyond_spread == "yes" and results[0].numbers["difference"] == pytest.approx(0.105)
    assert "no stored linear_acc for simclr" in results[1].detail and "its runs store knn_acc" in results[1].detail
    assert "reference 90% ± 5%" in results[2].figures
    values[("digits", "vae")]["knn_acc"] = [0.60, 0.75]
    values[("digits", "simclr")]["knn_acc"] = [0.70]
    results = evaluate_claims(suite.claims, values, "long")
    assert [r.status for r in results] == ["not held", "not run", "not held"]
    assert results[0].beyond_spread == "no"
    assert "off by -20.00 pp" in results[2].detail


def test_budget_scoped_claim_is_not_run_at_another_budget(tmp_path) -> None:  # type: ignore[no-untyped-def]
    suite = load_suites(write(tmp_path, GOOD)).get("small")
    values = {("digits", "simclr"): {"linear_acc": [0.9, 0.91]}, ("digits", "random"): {"linear_acc": [0.5, 0.52]}}
    (result,) = evaluate_claims([suite.claims[1]], values, "long")
    assert result.status == "not run" and "for the cpu budget" in result.detail and "simclr 90.5" in result.figures


def test_welch_matches_scipy_and_needs_two_seeds() -> None:
    from scipy import stats

    a, b = [0.1, 0.2, 0.15], [0.3, 0.35, 0.5, 0.4]
    assert welch(a, b) == pytest.approx(stats.ttest_ind(a, b, equal_var=False).pvalue)
    assert welch([0.1], b) is None
    assert welch([0.5, 0.5], [0.6, 0.6]) == 0.0 and welch([0.5, 0.5], [0.5, 0.5]) == 1.0


# -- bench -------------------------------------------------------------------------------------------


def test_dry_run_prints_grid_size_and_what_is_stored(tmp_path, registry) -> None:  # type: ignore[no-untyped-def]
    path = write(tmp_path, GOOD)
    home = tmp_path / "home"
    runner = CliRunner()
    result = runner.invoke(app, ["bench", "small", "--dry-run", "--file", str(path), "--home", str(home)])
    assert result.exit_code == 0, result.output
    assert "6 runs: 0 complete" in result.output and "6 to train" in result.output
    assert not (home / "results.sqlite").exists()  # a dry run creates no store
    suite = load_suites(path).get("small")
    cell = suite.cells(registry, "cpu")[0]  # random, seed 0: no training
    InProcessExecutor(Store(home), registry).submit(cell)
    result = runner.invoke(app, ["bench", "small", "--dry-run", "--file", str(path), "--home", str(home), "--budget", "long"])
    assert "3 runs: 0 complete" in result.output
    result = runner.invoke(app, ["bench", "small", "--dry-run", "--file", str(path), "--home", str(home)])
    assert "6 runs: 1 complete" in result.output and "5 to train" in result.output
    result = runner.invoke(app, ["bench", "small", "--budget", "gpu", "--file", str(path), "--home", str(home)])
    assert result.exit_code == 2 and "no budget 'gpu'" in result.output


def test_bench_killed_with_sigkill_resumes_with_every_run_once(tmp_path, registry) -> None:  # type: ignore[no-untyped-def]
    """The quick suite's grid (digits; random, vae, simclr; 2 seeds) at 1 epoch: SIGKILL the bench
    while a run is in progress, run it again, and find every run stored exactly once, finished."""
    path = write(tmp_path, GOOD)
    home = tmp_path / "home"
    env = {**os.environ, "SSLBENCH_HOME": str(home), "OMP_NUM_THREADS": "1", "SSLBENCH_THREADS": "1"}
    command = [sys.executable, "-m", "sslbench", "bench", "small", "--file", str(path)]
    proc = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    db = home / "results.sqlite"
    killed_at: list[tuple[str, int]] = []
    deadline = time.monotonic() + 180
    try:
        while time.monotonic() < deadline and proc.poll() is None:
            if db.exists():
                try:
                    with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=1) as con:
                        counts = dict(con.execute("SELECT status, COUNT(*) FROM runs GROUP BY status").fetchall())
                except sqlite3.OperationalError:
                    counts = {}
                if counts.get("done", 0) >= 2 and counts.get("running", 0) >= 1:
                    os.kill(proc.pid, signal.SIGKILL)
                    killed_at = sorted(counts.items())
                    break
            time.sleep(0.05)
    finally:
        if proc.poll() is None and not killed_at:
            proc.kill()
        proc.wait(timeout=30)
    assert killed_at, "the bench finished or stalled before it could be killed mid-suite"
    assert proc.returncode == -signal.SIGKILL
    done_before = {r.id for r in Store(home).runs(status="done")}
    again = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    assert again.returncode == 0, again.stderr[-2000:]
    cells = load_suites(path).get("small").cells(registry, "cpu")
    store = Store(home)
    runs = store.runs()
    assert sorted(r.id for r in runs) == sorted(c.run_id for c in cells)  # every run once, nothing else
    assert all(r.status == "done" for r in runs)
    for run in runs:
        assert {m["evaluator"] for m in store.metrics(run.id)} == {"knn", "linear"}
    reused = again.stderr.count("(stored run reused)")
    assert reused == len(done_before) >= 2  # finished runs were not trained again

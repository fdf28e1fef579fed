"""Bad input refused before any work starts, with a message that names what was wrong and what to
write instead: devices, thread counts, formats, statuses, NaN/inf parameters, seeds, epochs, batch
sizes larger than the data, an ignored --data-dir; and metric values an evaluator returns."""

from __future__ import annotations

import math
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from sslbench.bench.suites import load_suites
from sslbench.bench.toml_lines import SuiteError
from sslbench.bench.validate import FORMATS, OptionError, check_format, check_status, ignored_data_dir
from sslbench.cli import app
from sslbench.engine.cells import GridError, build_grid
from sslbench.engine.limits import MAX_EPOCHS, MAX_SEED, MAX_SEEDS, BatchSizeError, LimitError, check_batch, check_budget
from sslbench.engine.store import RUN_STATUSES
from sslbench.engine.train import SetupError, available_devices, configure_threads, pick_device
from sslbench.sdk.api import DataError
from sslbench.sdk.metrics import Metric, MetricValueError, check_value, check_values
from sslbench.sdk.params import Param, ParamError
from sslbench.sdk.protocol import DIGITS_MLP


def cli(*args: str, env: dict[str, str] | None = None):  # type: ignore[no-untyped-def]
    return CliRunner().invoke(app, list(args), env={"COLUMNS": "200", **(env or {})})


# -- devices ------------------------------------------------------------------------------------

no_cuda = pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")


@no_cuda
@pytest.mark.parametrize("name", ["cuda", "cuda:7", "tpu", "mps", "gpu", "xla", "cuda:-1"])
def test_a_device_this_machine_lacks_is_refused_with_what_is_available(name: str) -> None:
    if name == "mps" and "mps" in available_devices():
        pytest.skip("this machine has MPS")
    with pytest.raises(SetupError) as info:
        pick_device(name)
    assert "--device" in str(info.value) and "available here: cpu" in str(info.value)


def test_cuda_index_beyond_the_device_count_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    with pytest.raises(SetupError, match=r"no CUDA device 7 \(available here: cpu, cuda:0, cuda:1"):
        pick_device("cuda:7")
    assert pick_device("cuda:1") == torch.device("cuda:1")
    monkeypatch.setattr(torch.cuda, "current_device", lambda: 0)
    assert pick_device("cuda") == torch.device("cuda:0")  # with its index, recorded in the environment (issue 15)
    assert pick_device("cpu") == torch.device("cpu")


@no_cuda
def test_build_grid_refuses_the_device_before_any_work(registry) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(SetupError, match="CUDA is not available"):
        build_grid(registry, ["random"], "digits", range(1), 1, ["knn"], device="cuda:7")


@no_cuda
def test_run_with_a_missing_device_exits_2_and_stores_nothing(tmp_path: Path) -> None:
    home = tmp_path / "home"
    result = cli("run", "random", "--device", "tpu", "--home", str(home))
    assert result.exit_code == 2, result.output
    assert "error:" in result.output and "available here: cpu" in result.output
    assert not home.exists()


# -- threads ------------------------------------------------------------------------------------


@pytest.mark.parametrize("value", ["abc", "0", "-1", "1.5"])
def test_a_bad_thread_count_names_the_variable_and_what_to_write(value: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SSLBENCH_THREADS", value)
    with pytest.raises(SetupError, match=r"SSLBENCH_THREADS=.*whole number >= 1"):
        configure_threads()
    result = cli("run", "random", "--epochs", "0")
    assert result.exit_code == 2 and "SSLBENCH_THREADS" in result.output


def test_a_good_thread_count_is_set(monkeypatch: pytest.MonkeyPatch) -> None:
    before = torch.get_num_threads()
    monkeypatch.setenv("SSLBENCH_THREADS", " 1 ")
    try:
        configure_threads()
        assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)


# -- formats and statuses -----------------------------------------------------------------------


@pytest.mark.parametrize("args", [
    ["results", "--format", "bogus"],
    ["results", "--runs", "--format", "bogus"],
    ["report", "anything", "--format", "bogus"],
    ["compare", "a", "b", "--format", "bogus"],
    ["run", "random", "--format", "bogus"],
])
def test_a_bad_format_exits_2_with_the_allowed_values(args: list[str], tmp_path: Path) -> None:
    result = cli(*args, "--home", str(tmp_path / "home"))
    assert result.exit_code == 2, result.output
    assert "--format" in result.output and "choose" in result.output


def test_a_bad_status_exits_2_with_every_status(tmp_path: Path) -> None:
    result = cli("results", "--status", "bogus", "--home", str(tmp_path / "home"))
    assert result.exit_code == 2, result.output
    for status in RUN_STATUSES:
        assert status in result.output


def test_the_checks_themselves() -> None:
    for command, allowed in FORMATS.items():
        for fmt in allowed:
            check_format(command, fmt)
    with pytest.raises(OptionError, match="choose table, md, latex, csv or json"):
        check_format("results --runs", "bogus")
    check_status(None)
    check_status("done")
    with pytest.raises(OptionError, match="--status 'Done'"):
        check_status("Done")


# -- parameters ---------------------------------------------------------------------------------


@pytest.mark.parametrize("value", ["nan", "inf", "-inf", "1e400", float("nan"), float("inf")])
def test_a_float_parameter_refuses_nan_and_inf_naming_it(value: object) -> None:
    with pytest.raises(ParamError, match=r"vae\.beta=.*finite number"):
        Param(1.0, "KL weight").parse("vae", "beta", value)


def test_a_parameter_may_allow_non_finite_values_and_may_have_a_maximum() -> None:
    assert math.isinf(Param(1.0, finite=False).parse("x", "y", "inf"))
    assert Param(3, maximum=10).parse("x", "k", "10") == 10
    with pytest.raises(ParamError, match=r"x\.k=11: must be <= 10"):
        Param(3, maximum=10).parse("x", "k", "11")


def test_run_refuses_a_nan_parameter_before_any_run(tmp_path: Path) -> None:
    home = tmp_path / "home"
    result = cli("run", "vae", "-p", "vae.beta=nan", "--home", str(home))
    assert result.exit_code == 2, result.output
    assert "vae.beta" in result.output and "finite" in result.output
    assert not home.exists()


# -- seeds and epochs ---------------------------------------------------------------------------


def test_the_limits() -> None:
    check_budget(range(MAX_SEEDS), MAX_EPOCHS)
    with pytest.raises(LimitError, match=f"limit of {MAX_SEEDS}"):
        check_budget(range(MAX_SEEDS + 1), 1)
    with pytest.raises(LimitError, match="seed"):
        check_budget([0, MAX_SEED + 1], 1)
    with pytest.raises(LimitError, match="epochs"):
        check_budget([0], MAX_EPOCHS + 1)


def test_build_grid_refuses_a_billion_seeds_without_listing_them(registry) -> None:  # type: ignore[no-untyped-def]
    start = time.perf_counter()
    with pytest.raises(GridError, match="1000000000 seeds per method"):
        build_grid(registry, ["random"], "digits", range(10**9), 1, ["knn"])
    assert time.perf_counter() - start < 5
    with pytest.raises(GridError, match="epochs is outside"):
        build_grid(registry, ["vae"], "digits", range(1), 10**20, ["knn"])


@pytest.mark.parametrize("args, words", [
    (["--seeds", "1000000000"], "seeds per method"),
    (["--epochs", "100000000000000000000"], "epochs is outside"),
])
def test_run_refuses_huge_seeds_and_epochs(args: list[str], words: str, tmp_path: Path) -> None:
    result = cli("run", "random", *args, "--home", str(tmp_path / "home"))
    assert result.exit_code == 2, result.output
    assert words in result.output


SUITE = """\
[suites.big]
methods = ["random"]
datasets = ["digits"]
evaluators = ["knn"]
seeds = {seeds}

[suites.big.budgets.cpu]
epochs = {epochs}
"""


@pytest.mark.parametrize("seeds, epochs, line, key, words", [
    ("1000000000", "1", 5, "suites.big.seeds", "1000000000 seeds per method is more than the limit of 1000"),
    ("[0, 99999999999999]", "1", 5, "suites.big.seeds", "seed 99999999999999 is outside"),
    ("1", "100000000000000000000", 8, "suites.big.budgets.cpu.epochs", "<= 100000"),
    ("1", "{ random = 1, default = 1000001 }", 8, "suites.big.budgets.cpu.epochs.default", "<= 100000"),
])
def test_a_suite_with_huge_seeds_or_epochs_fails_at_its_line(seeds: str, epochs: str, line: int, key: str, words: str, tmp_path: Path) -> None:
    path = tmp_path / "suites.toml"
    path.write_text(SUITE.format(seeds=seeds, epochs=epochs))
    start = time.perf_counter()
    with pytest.raises(SuiteError) as info:
        load_suites(path)
    assert time.perf_counter() - start < 5
    message = str(info.value)
    assert message.startswith(f"{path}:{line}: {key}:"), message
    assert words in message
    result = cli("bench", "big", "--dry-run", "--file", str(path), "--home", str(tmp_path / "home"))
    assert result.exit_code == 2 and words in result.output


# -- batch size, data folder --------------------------------------------------------------------


def test_a_batch_size_larger_than_the_training_set_is_refused_with_both_numbers() -> None:
    big = DIGITS_MLP.replace(batch_size=5000)
    with pytest.raises(BatchSizeError) as info:
        check_batch(big, 1347, "digits", default=DIGITS_MLP)
    assert "5000" in str(info.value) and "1347" in str(info.value) and "digits" in str(info.value)
    assert isinstance(info.value, DataError)  # the runner's per-data-set policy skips that data set's cells
    check_batch(DIGITS_MLP.replace(batch_size=1347), 1347, "digits", default=DIGITS_MLP)
    # the protocol's own batch size on a set smaller than it is not the user's doing: the loop clamps it
    check_batch(DIGITS_MLP, 50, "tiny", default=DIGITS_MLP)
    with pytest.raises(BatchSizeError):
        check_batch(DIGITS_MLP, 50, "tiny")


def test_a_data_dir_for_a_data_set_that_reads_no_files_is_reported_ignored(registry, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    warning = ignored_data_dir(registry, "digits", str(tmp_path))
    assert warning is not None and "ignored" in warning and "digits" in warning
    assert ignored_data_dir(registry, "digits", None) is None
    assert ignored_data_dir(registry, "mnist", str(tmp_path)) is None


# -- metric values ------------------------------------------------------------------------------

ACC = Metric("knn_acc", unit="fraction")


@pytest.mark.parametrize("value", [0.5, 1, 0, np.float32(0.25), np.float64(0.75), np.int64(1), np.array(0.5),
                                   np.array([0.5]), torch.tensor(0.5), torch.tensor([0.5]), torch.tensor(0.5, requires_grad=True)])
def test_check_value_accepts_one_real_number(value: object) -> None:
    number = check_value(ACC, "knn_acc", value)
    assert type(number) is float and 0 <= number <= 1


@pytest.mark.parametrize("value, words", [
    ("0.9", "not a number"), (None, "not a number"), ([0.9], "not a number"), ({"a": 1}, "not a number"),
    (torch.tensor([0.1, 0.2]), "shape (2,)"), (np.array([0.1, 0.2]), "shape (2,)"), (1 + 2j, "not a number"),
    (float("nan"), "is nan"), (float("inf"), "is inf"), (torch.tensor(float("-inf")), "is -inf"),
])
def test_check_value_refuses_what_is_not_one_finite_number_naming_the_metric(value: object, words: str) -> None:
    with pytest.raises(MetricValueError) as info:
        check_value(ACC, "knn_acc", value)
    assert "'knn_acc'" in str(info.value) and words in str(info.value)


def test_check_value_refuses_a_value_outside_the_declared_range() -> None:
    with pytest.raises(MetricValueError, match=r"knn_acc' = 1\.918 is outside its declared range \[0, 1\].*percentage"):
        check_value(ACC, "knn_acc", 1.918)
    with pytest.raises(MetricValueError, match="outside"):
        check_value(ACC, "knn_acc", -0.01)
    assert check_value(ACC, "knn_acc", 1 + 1e-9) == pytest.approx(1.0)  # rounding is not an error
    assert Metric("r", unit="correlation").value_range == (-1.0, 1.0)
    assert Metric("r2", unit="r2").value_range == (None, 1.0)
    assert Metric("s", unit="score").value_range == (None, None)
    assert Metric("fid", unit="fid").value_range == (None, None)
    assert check_value(Metric("r2", unit="r2"), "r2", -3.0) == -3.0
    bounded = Metric("agreement", unit="score", bounds=(0.0, 1.0))
    with pytest.raises(MetricValueError, match=r"\[0, 1\]"):
        check_value(bounded, "agreement", 2.0)
    opened = Metric("odd", unit="fraction", bounds=(None, None))  # an explicit override of the unit's range
    assert check_value(opened, "odd", 5.0) == 5.0
    assert check_value(None, "undeclared", 1e6) == 1e6
    with pytest.raises(MetricValueError, match="undeclared"):
        check_value(None, "undeclared", float("nan"))


def test_check_values_checks_a_whole_result_against_its_declarations() -> None:
    declared = [ACC, Metric("attr_*", unit="fraction")]
    assert check_values(declared, {"knn_acc": np.float64(0.5), "attr_smile": 0.25, "other": 3}) == {
        "knn_acc": 0.5, "attr_smile": 0.25, "other": 3.0}
    with pytest.raises(MetricValueError, match="attr_smile"):
        check_values(declared, {"attr_smile": 2.0})
    for bad in ("0.5", None, [0.5], torch.tensor([0.5, 0.5])):
        with pytest.raises(MetricValueError, match="not a dict"):
            check_values(declared, bad)


def test_every_installed_metric_declaration_has_a_sane_range(registry) -> None:  # type: ignore[no-untyped-def]
    for evaluator in registry.evaluators.values():
        for metric in evaluator.metrics:
            low, high = metric.value_range
            assert low is None or high is None or low < high, metric

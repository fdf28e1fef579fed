"""Results you can trust (issue 12): a stored result is reused only while the code and the data that
made it are unchanged; a fault of one run or one evaluator ends only that, named, and is retried;
a retrain never loses the result it replaces; a dead owner's run is shown interrupted."""

from __future__ import annotations

import importlib.util
import json
import os
import sys
import textwrap
import types
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from sslbench import hookimpl
from sslbench.engine import plugins as plugin_module
from sslbench.engine.cells import build_grid
from sslbench.engine.plugins import build_registry
from sslbench.engine.provenance import source_hash, stale_reasons
from sslbench.engine.reuse import cell_state, stale_runs
from sslbench.engine.runner import DataCache, InProcessExecutor, execute_cell, run_grid
from sslbench.engine.store import Store

PLUGIN_SOURCE = '''
import torch
from sslbench import hookimpl
from sslbench.sdk.api import DatasetPlugin, Evaluator, ImageData, Metric
from sslbench_plugins.datasets.digits import Digits
from sslbench_plugins.methods.random_encoder import RandomEncoder

SCALE = {scale}


class Mine(RandomEncoder):
    name = "mine"
    description = "the random encoder, scaled (a method a user edits)"

    def embed(self, x):
        if SCALE == 0:
            raise RuntimeError("embed is broken")
        return super().embed(x) * SCALE


class Talker(Evaluator):
    name = "talker"
    description = "returns whatever RESULT is"
    metrics = (Metric("talk_acc", "fraction", True, help="a test metric"),)

    def evaluate(self, inputs, **options):
        return {{"talk_acc": {result}}}


class FileDigits(DatasetPlugin):
    name = "filedigits"
    description = "digits whose training images are offset by one byte read from DIR/offset.bin"
    protocol = Digits.protocol
    needs_files = True

    def load(self, data_dir, **params):
        d = Digits().load(None)
        offset = open(data_dir + "/offset.bin", "rb").read()[0]
        return ImageData('filedigits', d.train_x // 2 + offset, d.train_y, d.test_x, d.test_y, classes=d.classes)


@hookimpl
def register_methods(register):
    register(Mine)


@hookimpl
def register_evaluators(register):
    register(Talker)


@hookimpl
def register_datasets(register):
    register(FileDigits)
'''


def write_plugin(folder: Path, scale: float = 1.0, result: str = "0.5") -> types.ModuleType:
    """(Re)write the user's plugin module and import it afresh, as a new process would."""
    path = folder / "user_plugin.py"
    path.write_text(PLUGIN_SOURCE.format(scale=scale, result=result))
    os.utime(path, ns=(path.stat().st_atime_ns, path.stat().st_mtime_ns + 1_000_000))
    spec = importlib.util.spec_from_file_location("user_plugin", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules["user_plugin"] = module
    spec.loader.exec_module(module)  # type: ignore[union-attr]
    return module


def registry_with(module: types.ModuleType):  # type: ignore[no-untyped-def]
    return build_registry(extra_plugins=[("user-plugin", module)])


def cells_for(reg, methods=("mine",), evaluators=("knn",), dataset="digits", seeds=(0,), **kw):  # type: ignore[no-untyped-def]
    return build_grid(reg, list(methods), dataset, list(seeds), 0, list(evaluators), **kw)


def test_source_hash_follows_the_file(tmp_path) -> None:  # type: ignore[no-untyped-def]
    first = source_hash(write_plugin(tmp_path).Mine)
    assert first and source_hash(write_plugin(tmp_path).Mine) == first
    assert source_hash(write_plugin(tmp_path, scale=2.0).Mine) != first
    assert stale_reasons(None, {"sslbench": "x"}) == ["stored before sslbench recorded the code and data behind a result"]


def test_editing_a_method_retrains_it_and_keeps_the_old_result_superseded(tmp_path) -> None:  # type: ignore[no-untyped-def]
    store = Store(tmp_path / "home")
    reg = registry_with(write_plugin(tmp_path))
    (cell,) = cells_for(reg)
    first = execute_cell(cell, store, reg)
    assert first.status == "done" and not first.reused
    old_value = store.metrics(cell.run_id)[0]["value"]
    assert execute_cell(cell, store, reg).reused  # unchanged code: reused

    reg = registry_with(write_plugin(tmp_path, scale=2.0))  # the user edits the method
    assert cell_state(store, cell, reg) == "stale"
    assert "method mine changed" in stale_runs(store.runs(), reg)[cell.run_id][0]
    (keep,) = cells_for(reg, reuse_stale=True)
    assert cell_state(store, keep, reg) == "complete"  # --reuse-stale keeps the old numbers
    again = execute_cell(cell, store, reg)
    assert not again.reused and again.stale and "method mine changed" in again.stale[0]
    assert cell_state(store, cell, reg) == "complete"
    superseded = store.runs(status="superseded")
    assert [r.superseded_by for r in superseded] == [cell.run_id]
    assert store.metrics(superseded[0].id)[0]["value"] == old_value  # the old result is kept, with its metrics
    assert superseded[0].folder_name != store.get_run(cell.run_id).folder_name  # and its own folder
    assert [r.id for r in store.runs()] == [cell.run_id]  # tables never pool the superseded one


def test_an_evaluator_edit_reevaluates_without_retraining(tmp_path) -> None:  # type: ignore[no-untyped-def]
    store = Store(tmp_path / "home")
    reg = registry_with(write_plugin(tmp_path))
    (cell,) = cells_for(reg, methods=("random",), evaluators=("talker",))
    execute_cell(cell, store, reg)
    assert cell_state(store, cell, reg) == "complete"
    reg = registry_with(write_plugin(tmp_path, result="0.25"))  # the evaluator's code changes
    assert cell_state(store, cell, reg) == "evaluate"  # the run is not stale, its metrics are
    out = execute_cell(cell, store, reg)
    assert out.reused and out.evaluated == ["talker"]
    assert [m["value"] for m in store.metrics(cell.run_id)] == [0.25]


def test_swapped_data_files_are_reloaded_and_retrained(tmp_path) -> None:  # type: ignore[no-untyped-def]
    data = tmp_path / "data"
    data.mkdir()
    (data / "offset.bin").write_bytes(b"\x01")
    store = Store(tmp_path / "home")
    reg = registry_with(write_plugin(tmp_path))
    (cell,) = cells_for(reg, methods=("random",), dataset="filedigits", data_dir=str(data))
    assert execute_cell(cell, store, reg).status == "done"
    assert execute_cell(cell, store, reg, DataCache()).reused
    (data / "offset.bin").write_bytes(b"\x05")  # same name, other content
    again = execute_cell(cell, store, reg, DataCache())  # a new process: a new data cache
    assert not again.reused and any("data fingerprint changed" in r for r in again.stale)


def test_one_bad_embed_evaluator_and_checkpoint_end_only_themselves(tmp_path) -> None:  # type: ignore[no-untyped-def]
    store = Store(tmp_path / "home")
    reg = registry_with(write_plugin(tmp_path, scale=0, result="'high'"))  # embed raises, talker says "high"
    cells = cells_for(reg, methods=("mine", "random"), evaluators=("knn", "talker"), seeds=(0, 1))
    grid = run_grid(cells, InProcessExecutor(store, reg))
    by = {(o.method, o.seed): o for o in grid.outcomes}
    assert len(grid.outcomes) == 4
    for seed in (0, 1):
        mine = by[("mine", seed)]
        assert mine.failed and "embed() raised RuntimeError: embed is broken" in mine.errors[0]
        assert f"run {mine.run_id}" in mine.errors[0] and "plugin 'user-plugin'" in mine.errors[0]
        rnd = by[("random", seed)]
        assert rnd.evaluated == ["knn"] and len(rnd.errors) == 1  # knn stored; talker refused
        assert "metric 'talk_acc'" in rnd.errors[0] and "not a number" in rnd.errors[0]
    # an unreadable checkpoint: truncated
    ckpt = store.checkpoint_path(by[("random", 1)].run_id)
    ckpt.write_bytes(ckpt.read_bytes()[:10])

    reg = registry_with(write_plugin(tmp_path, scale=1, result="0.75"))  # the user fixes both
    cells = cells_for(reg, methods=("mine", "random"), evaluators=("knn", "talker"), seeds=(0, 1), reuse_stale=True)
    # the method file changed (it is the same module), so reuse stale results to redo only the faults
    redo = {(o.method, o.seed): o for o in run_grid(cells, InProcessExecutor(store, reg)).outcomes}
    assert redo[("mine", 0)].evaluated == ["knn", "talker"] and not redo[("mine", 0)].failed
    assert redo[("random", 0)].evaluated == ["talker"]  # knn was stored: only the failed evaluator reruns
    bad = redo[("random", 1)]
    assert bad.status == "error" and "cannot be loaded" in bad.message and str(ckpt) in bad.message
    assert store.get_run(bad.run_id).status == "error"
    third = {(o.method, o.seed): o for o in run_grid(cells, InProcessExecutor(store, reg)).outcomes}
    assert not third[("random", 1)].reused and third[("random", 1)].status == "done"  # retrained
    assert all(o.reused and not o.evaluated for k, o in third.items() if k != ("random", 1))
    assert store.runs(status="superseded")[0].superseded_by == bad.run_id


def test_nan_and_inf_metrics_are_refused_and_retried(tmp_path) -> None:  # type: ignore[no-untyped-def]
    store = Store(tmp_path / "home")
    for bad in ("float('nan')", "float('inf')", "1.9"):
        reg = registry_with(write_plugin(tmp_path, result=bad))
        (cell,) = cells_for(reg, methods=("random",), evaluators=("talker",), reuse_stale=True)
        out = execute_cell(cell, store, reg)
        assert out.failed and "talk_acc" in out.errors[0], bad
        assert cell_state(store, cell, reg) == "evaluate"  # an error is not a result
    reg = registry_with(write_plugin(tmp_path, result="0.5"))
    (cell,) = cells_for(reg, methods=("random",), evaluators=("talker",), reuse_stale=True)
    assert execute_cell(cell, store, reg).evaluated == ["talker"]
    assert [m["value"] for m in store.metrics(cell.run_id)] == [0.5]


def test_a_dead_owner_shows_interrupted_and_an_interrupted_retrain_keeps_the_result(tmp_path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    store = Store(tmp_path / "home")
    reg = registry_with(write_plugin(tmp_path))
    (cell,) = cells_for(reg, methods=("random",))
    store.start_run(cell.run_id, json.loads(cell.to_json()), cell.protocol, "x", {}, None)
    assert store.get_run(cell.run_id).status == "running"  # this process owns it
    import socket
    store._db.execute("UPDATE runs SET owner = ? WHERE id = ?", (f"{socket.gethostname()}:999999999", cell.run_id))
    assert store.get_run(cell.run_id).status == "interrupted"  # no such pid: never "running" forever
    assert [r.id for r in store.runs(status="interrupted")] == [cell.run_id]
    assert cell_state(store, cell, reg) == "retrain"
    assert execute_cell(cell, store, reg).status == "done"
    value = store.metrics(cell.run_id)[0]["value"]

    # --force retrain interrupted by Ctrl-C: the finished result stays current
    import sslbench.engine.runner as runner

    def stopped(*args, **kwargs):  # type: ignore[no-untyped-def]
        raise KeyboardInterrupt

    monkeypatch.setattr(runner, "train", stopped)
    (forced,) = cells_for(reg, methods=("random",), force=True)
    with pytest.raises(KeyboardInterrupt):
        execute_cell(forced, store, reg)
    record = store.get_run(cell.run_id)
    assert record.status == "done"  # the finished result stays current
    assert record.replacement is not None and not record.replacement["alive"]  # the interrupted retrain can resume
    assert store.metrics(cell.run_id)[0]["value"] == value and store.checkpoint_path(cell.run_id).is_file()


def test_cli_grid_with_faults_exits_1_names_them_and_results_marks_stale(tmp_path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    from sslbench.cli import app

    reg = registry_with(write_plugin(tmp_path, scale=0))
    monkeypatch.setattr(plugin_module, "_REGISTRY", reg)
    home = tmp_path / "home"
    result = CliRunner().invoke(app, ["run", "mine", "random", "-e", "knn", "--home", str(home)])
    assert result.exit_code == 1, result.output
    assert "embed() raised RuntimeError" in result.output and "plugin 'user-plugin'" in result.output
    monkeypatch.setattr(plugin_module, "_REGISTRY", registry_with(write_plugin(tmp_path, scale=3)))
    listed = CliRunner().invoke(app, ["results", "--runs", "--format", "json", "--home", str(home)])
    assert listed.exit_code == 0, listed.output
    rows = json.loads(listed.stdout if hasattr(listed, "stdout") else listed.output)
    assert {r["method"]: r["status"] for r in rows} == {"mine": "stale", "random": "done"}
    assert any("method mine changed" in reason for r in rows for reason in r["stale"])
    again = CliRunner().invoke(app, ["results", "--status", "stale", "--home", str(home)])
    assert again.exit_code == 0 and "stale" in again.output

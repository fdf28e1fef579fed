"""Training loop, runner, store and reports, end to end on the embedded digits data."""

from __future__ import annotations

import json
import math
import types

import pytest
import torch

from sslbench import hookimpl
from sslbench.sdk.api import Method
from sslbench.engine.plugins import build_registry
from sslbench.bench.tables import export, summarise
from sslbench.engine.runner import Cell, GridError, InProcessExecutor, build_grid, split_params
from sslbench.engine.store import Store


class NaNAtStep3(Method):
    """Trains normally for two steps, then its loss becomes NaN."""

    name = "nan-at-3"

    def __init__(self, ctx, **params):  # type: ignore[no-untyped-def]
        super().__init__(ctx, **params)
        self.encoder = ctx.encoder()
        self.calls = 0

    @property
    def views(self) -> int:
        return 1

    def loss(self, views):  # type: ignore[no-untyped-def]
        self.calls += 1
        value = self.encoder(views[:, 0]).pow(2).mean()
        if self.calls >= 3:
            value = value * float("nan")
        return {"loss": value, "energy": value}

    def embed(self, x):  # type: ignore[no-untyped-def]
        return self.encoder(x)


def register_methods(register):  # type: ignore[no-untyped-def]
    register(NaNAtStep3)


@pytest.fixture
def reg():  # type: ignore[no-untyped-def]
    plugin = types.SimpleNamespace(register_methods=hookimpl(register_methods))
    return build_registry(extra_plugins=[("test-nan", plugin)])


def grid(reg, methods, seeds=(0,), epochs=1, **kw):  # type: ignore[no-untyped-def]
    return build_grid(reg, methods, "digits", seeds, epochs, ["knn", "linear"], **kw)


def test_divergence_is_reported_with_its_step_and_the_grid_goes_on(reg, tmp_path) -> None:  # type: ignore[no-untyped-def]
    store = Store(tmp_path)
    ex = InProcessExecutor(store, reg)
    outcomes = [ex.submit(c) for c in grid(reg, ["nan-at-3", "simclr"])]
    assert [o.status for o in outcomes] == ["failed", "done"]
    assert "step 3" in outcomes[0].message
    failed = store.get_run(outcomes[0].run_id)
    assert failed.status == "failed" and failed.failed_step == 3
    rows = summarise(store, store.runs())
    by_method = {r.method: r for r in rows}
    assert by_method["nan-at-3"].failed == ["seed 0: failed at step 3"]
    assert 0 < by_method["simclr"].metrics["knn_acc"][0] <= 1


def test_same_seed_same_numbers_on_cpu_and_reuse(reg, tmp_path) -> None:  # type: ignore[no-untyped-def]
    cells = grid(reg, ["vae"], seeds=(7,))
    a = InProcessExecutor(Store(tmp_path / "a"), reg).submit(cells[0])
    b_store = Store(tmp_path / "b")
    b = InProcessExecutor(b_store, reg).submit(cells[0])
    ma = {m["name"]: m["value"] for m in Store(tmp_path / "a").metrics(a.run_id)}
    mb = {m["name"]: m["value"] for m in b_store.metrics(b.run_id)}
    assert ma == mb and not a.reused
    ha = Store(tmp_path / "a").get_run(a.run_id).history
    assert ha == b_store.get_run(b.run_id).history and set(ha) == {"loss", "reconstruction", "kl", "_epoch"}
    # one epoch of digits is 10 steps: the curve has a point per step, ending at epoch 1
    assert len(ha["loss"]) == len(ha["_epoch"]) == 10 and ha["_epoch"][-1] == 1.0
    again = InProcessExecutor(b_store, reg).submit(cells[0])
    assert again.reused and again.evaluated == []  # nothing retrained, nothing re-evaluated
    other_seed = grid(reg, ["vae"], seeds=(8,))[0]
    assert other_seed.run_id != cells[0].run_id


def test_new_evaluator_on_a_stored_run_evaluates_without_retraining(reg, tmp_path) -> None:  # type: ignore[no-untyped-def]
    store = Store(tmp_path)
    ex = InProcessExecutor(store, reg)
    cell = build_grid(reg, ["simclr"], "digits", [0], 1, ["knn"])[0]
    first = ex.submit(cell)
    started = store.get_run(first.run_id).started
    cell2 = build_grid(reg, ["simclr"], "digits", [0], 1, ["knn", "linear"])[0]
    second = ex.submit(cell2)
    assert second.reused and second.evaluated == ["linear"]
    assert store.get_run(first.run_id).started == started
    forced = ex.submit(build_grid(reg, ["simclr"], "digits", [0], 1, ["knn"], force=True)[0])
    assert not forced.reused


def test_checkpoint_loads_with_weights_only(reg, tmp_path) -> None:  # type: ignore[no-untyped-def]
    store = Store(tmp_path)
    out = InProcessExecutor(store, reg).submit(grid(reg, ["simclr"])[0])
    state = torch.load(store.run_dir(out.run_id) / "model.pt", weights_only=True)
    assert any(k.startswith("encoder.") for k in state)


def test_interrupted_run_is_retrained_not_reused(reg, tmp_path) -> None:  # type: ignore[no-untyped-def]
    store = Store(tmp_path)
    cell = grid(reg, ["vae"])[0]
    store.start_run(cell.run_id, json.loads(cell.to_json()), cell.protocol, "x", {}, None)  # killed mid-training
    out = InProcessExecutor(store, reg).submit(cell)
    assert not out.reused and store.get_run(cell.run_id).status == "done"


def test_run_records_protocol_hash_throughput_and_environment(reg, tmp_path) -> None:  # type: ignore[no-untyped-def]
    from sslbench.sdk.protocol import Protocol

    store = Store(tmp_path)
    cell = grid(reg, ["vae"], batch_size=64)[0]
    InProcessExecutor(store, reg).submit(cell)
    rec = store.get_run(cell.run_id)
    assert rec.protocol["batch_size"] == 64
    assert rec.protocol_hash == Protocol.from_dict(rec.protocol).hash()
    assert rec.images_per_s > 0 and 0 < rec.augment_share < 1 and rec.peak_memory_mb > 0
    assert rec.environment["torch"] == torch.__version__ and rec.config["method_params"]["beta"] == 1.0
    assert rec.environment["data_note"].startswith("scikit-learn digits")  # the loader's word on its data


def test_cell_json_round_trip(reg) -> None:  # type: ignore[no-untyped-def]
    cell = grid(reg, ["simclr"], seeds=(3,), params={"simclr": {"temperature": "0.5"}})[0]
    back = Cell.from_json(cell.to_json())
    assert back == cell and back.run_id == cell.run_id
    assert back.method_params["temperature"] == 0.5


def test_bad_params_fail_before_training(reg) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(GridError, match="temperature"):
        grid(reg, ["simclr"], params={"simclr": {"temperature": "warm"}})
    with pytest.raises(GridError, match="no parameter"):
        grid(reg, ["simclr"], params={"simclr": {"temprature": "0.5"}})
    with pytest.raises(GridError, match="not a method, dataset or evaluator"):
        grid(reg, ["simclr"], params={"vicreg": {"x": "1"}})
    with pytest.raises(GridError, match="OWNER.NAME=VALUE"):
        split_params(["temperature=0.5"])


def test_exports_agree_with_the_stored_values(reg, tmp_path) -> None:  # type: ignore[no-untyped-def]
    store = Store(tmp_path)
    ex = InProcessExecutor(store, reg)
    for cell in grid(reg, ["random"], seeds=(0, 1)):
        ex.submit(cell)
    rows = summarise(store, store.runs())
    values = rows[0].metrics["knn_acc"]
    assert len(values) == 2
    records = json.loads(export(rows, "json"))
    mean = records[0]["metrics"]["knn_acc"]["mean"]
    assert math.isclose(mean, sum(values) / 2)
    assert f"{100 * mean:.1f} ±" in export(rows, "md")
    latex = export(rows, "latex")
    assert "$\\pm$" in latex and "knn\\_acc" in latex  # underscores escaped: the table compiles
    assert export(rows, "csv").splitlines()[0].startswith("dataset,method")


def test_runs_on_different_data_set_parameters_are_not_pooled(reg, tmp_path) -> None:  # type: ignore[no-untyped-def]
    store = Store(tmp_path)
    ex = InProcessExecutor(store, reg)
    for data_seed in ("0", "1"):
        params = {"shapes": {"n_train": "200", "n_test": "100", "size": "16", "seed": data_seed}}
        for cell in build_grid(reg, ["random"], "shapes", [0], 0, ["knn"], params=params):
            ex.submit(cell)
    rows = summarise(store, store.runs())
    assert sorted(r.dataset for r in rows) == ["shapes [seed=0]", "shapes [seed=1]"]
    assert all(len(r.metrics["knn_acc"]) == 1 for r in rows)

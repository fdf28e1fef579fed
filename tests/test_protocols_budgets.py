"""Named protocols (``uniform``, ``paper``) and budgets in units of effort (issue 11).

Pins: what ``paper`` sets (SimVAE's batch of 128 views, the official likelihood, binarised MNIST, the
mean prior, Adam eps and lr, VICReg's lr, the probes and GMM), that ``uniform`` is unchanged (same
protocol dicts, same hashes as before presets existed), the batch-summed loss and Adam's eps, a budget
in steps / views / FLOPs converted to steps and stored both ways, FLOPs counted on a copy without
touching the method, and the suite keys.
"""

from __future__ import annotations

import json
import math
import sqlite3
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from sslbench.cli import app
from sslbench.engine.cells import GridError, build_grid
from sslbench.engine.effort import Budget, BudgetError, count_step_flops, pick_budget, resolve_steps, step_shape, views_per_image
from sslbench.engine.jobs import build_method
from sslbench.engine.train import make_optimizer, train
from sslbench.sdk.api import ImageData
from sslbench.engine.plugins import UnknownNameError, build_registry
from sslbench.sdk.protocol import COLOUR_CONV, DIGITS_MLP, MNIST_MLP, Protocol, ProtocolPreset, Uniform, named
from sslbench_plugins.protocols import Paper


def tiny_data(n: int = 96, seed: int = 0) -> ImageData:
    g = torch.Generator().manual_seed(seed)
    x = torch.randint(0, 256, (n, 1, 8, 8), generator=g, dtype=torch.uint8)
    y = torch.randint(0, 10, (n,), generator=g)
    return ImageData(name="tiny", train_x=x, train_y=y, test_x=x[:16], test_y=y[:16])


def cell_for(registry, method: str, preset: str = "uniform", **kw):  # type: ignore[no-untyped-def]
    return build_grid(registry, [method], "digits", [0], 1, ["knn"], protocol=preset, **kw)[0]


# --- presets ----------------------------------------------------------------------------------


def test_uniform_protocol_dicts_and_hashes_are_those_of_before_presets() -> None:
    # the hashes of the three presets as the code before issue 11 computed them
    assert (MNIST_MLP.hash(), DIGITS_MLP.hash(), COLOUR_CONV.hash()) == ("f1f8db9f47a6", "b6e5aa14df95", "47ab3a4f3d46")
    assert "preset" not in MNIST_MLP.to_dict() and "methods" not in MNIST_MLP.to_dict()
    assert named(MNIST_MLP, Uniform) is MNIST_MLP and named(MNIST_MLP, None) is MNIST_MLP


def test_paper_preset_sets_the_official_simvae_settings(registry) -> None:  # type: ignore[no-untyped-def]
    assert registry.lookup("protocols", "paper") is Paper and registry.lookup("protocols", "uniform") is Uniform
    mnist = registry.lookup("datasets", "mnist").protocol_for(Paper)
    assert mnist.preset == "paper" and mnist.hash() != MNIST_MLP.hash()
    sim = mnist.method_settings("simvae", "generative")
    assert sim["likelihood"] == "bernoulli" and sim["nll_weight"] == pytest.approx(math.exp(4.6))
    assert sim["binarise"] == 0.5 and sim["mean_prior"] is True and sim["lr"] == 8e-5
    assert mnist.training("simvae", "generative") == {"batch_unit": "views", "adam_eps": 1e-4, "loss_reduction": "sum"}
    assert mnist.images_per_step("simvae", "generative", 10) == 12  # 128 views: 12 images x 10 views
    assert mnist.images_per_step("vae", "generative", 1) == 128
    assert mnist.arch_options["hidden"] == [2000, 500, 500]  # the official encoder's layer order
    assert mnist.evaluators["gmm"]["n_init"] == 200 and mnist.evaluators["mlp"]["epochs"] == 200
    assert mnist.method_settings("vicreg", "discriminative") == {"lr": 1e-4}
    fashion = registry.lookup("datasets", "fashion-mnist").protocol_for(Paper)
    assert "binarise" not in fashion.method_settings("simvae", "generative")  # Fashion-MNIST stays grey
    colour = named(COLOUR_CONV, Paper)
    assert colour.method_settings("vae", "generative")["likelihood"] == "gaussian"
    assert colour.method_settings("vae", "generative")["likelihood_var"] == pytest.approx(math.exp(-4.6))
    assert Protocol.from_dict(mnist.to_dict()) == mnist


def test_paper_cells_carry_the_settings_and_user_params_win(registry) -> None:  # type: ignore[no-untyped-def]
    cell = cell_for(registry, "simvae", "paper")
    assert cell.method_params["likelihood"] == "bernoulli" and cell.method_params["mean_prior"] is True
    assert cell.method_params["official_entropy"] is False  # the paper's equation unless asked
    assert cell.protocol["preset"] == "paper"
    assert cell.run_id != cell_for(registry, "simvae").run_id
    mine = build_grid(registry, ["simvae"], "digits", [0], 1, ["gmm"], {"simvae": {"lr": "1e-3"}, "gmm": {"n_init": "3"}}, protocol="paper")[0]
    assert mine.method_params["lr"] == 1e-3 and dict(mine.evaluators)["gmm"]["n_init"] == 3
    gmm = build_grid(registry, ["vae"], "digits", [0], 1, ["gmm"], protocol="paper")[0]
    assert dict(gmm.evaluators)["gmm"]["n_init"] == 200
    vicreg = cell_for(registry, "vicreg", "paper")
    assert vicreg.method_params["lr"] == 1e-4 and cell_for(registry, "vicreg").method_params["lr"] == 0.0


def test_unknown_protocol_is_refused_with_a_close_match(registry) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(UnknownNameError, match="Did you mean 'paper'"):
        cell_for(registry, "vae", "papr")
    result = CliRunner().invoke(app, ["run", "vae", "--protocol", "papers", "--steps", "1"])
    assert result.exit_code == 2 and "Did you mean 'paper'" in result.output and "sslbench plugins" in result.output


class Tiny(ProtocolPreset):
    """A third party's preset: the core applies it like the first-party ones."""

    name = "tiny-batches"
    methods = {"generative": {"batch_unit": "views", "lr": 3e-4}}
    evaluators = {"knn": {"k_max": 3}}
    by_architecture = {"mlp": {"arch_options": {"hidden": [64]}}}


class _TinyPlugin:
    from sslbench import hookimpl

    @staticmethod
    @hookimpl
    def register_protocols(register) -> None:  # type: ignore[no-untyped-def]
        register(Tiny)


def test_a_plugin_registers_a_protocol_and_the_core_applies_it() -> None:
    registry = build_registry(extra_plugins=[("tiny", _TinyPlugin, "tiny-dist")])
    assert registry.lookup("protocols", "tiny-batches") is Tiny
    cell = build_grid(registry, ["simvae"], "digits", [0], 1, ["knn"], protocol="tiny-batches")[0]
    protocol = Protocol.from_dict(cell.protocol)
    assert protocol.preset == "tiny-batches" and protocol.arch_options["hidden"] == [64]
    assert protocol.images_per_step("simvae", "generative", 10) == 12
    assert cell.method_params["lr"] == 3e-4 and dict(cell.evaluators)["knn"]["k_max"] == 3
    assert "binarise" not in protocol.method_settings("simvae", "generative")  # the data set adds only to paper


# --- the loop under a preset ------------------------------------------------------------------


def test_batch_of_views_gives_images_per_step(registry) -> None:  # type: ignore[no-untyped-def]
    data = tiny_data(240)
    cell = cell_for(registry, "simvae", "paper", budget=Budget("steps", 3))
    method = build_method(registry, cell, data, torch.device("cpu"))
    protocol = Protocol.from_dict(cell.protocol)
    assert step_shape(method, data, protocol) == (12, 240)
    result = train(method, data, protocol, 0, 0, steps=3)
    assert (result.steps, result.images) == (3, 36)  # 3 steps of 12 images (120 views each)


def test_adam_eps_and_batch_summed_loss(registry) -> None:  # type: ignore[no-untyped-def]
    """The batch-summed loss with eps e trains exactly like the per-view mean with eps e / (views in
    the batch): Adam is invariant to the loss scale but for eps, which is what "sum" is for."""
    data = tiny_data()
    cell = cell_for(registry, "vae", "paper")
    paper = Protocol.from_dict(cell.protocol)
    opt = make_optimizer(build_method(registry, cell, data, torch.device("cpu")), paper)
    assert opt.defaults["eps"] == 1e-4
    batch = paper.batch_size if paper.batch_size <= data.train_x.shape[0] else data.train_x.shape[0]
    summed = paper
    meaned = paper.replace(methods={**paper.methods, "vae": {"loss_reduction": "mean", "adam_eps": 1e-4 / batch}})
    weights = []
    for protocol in (summed, meaned):
        method = build_method(registry, cell, data, torch.device("cpu"))
        torch.manual_seed(1)
        train(method, data, protocol, 0, 0, steps=4)
        weights.append(torch.cat([p.detach().flatten() for p in method.parameters()]))
    assert torch.allclose(weights[0], weights[1], rtol=1e-4, atol=1e-6)
    plain = build_method(registry, cell, data, torch.device("cpu"))
    torch.manual_seed(1)
    train(plain, data, paper.replace(methods={**paper.methods, "vae": {"loss_reduction": "mean"}}), 0, 0, steps=4)
    assert not torch.allclose(weights[0], torch.cat([p.detach().flatten() for p in plain.parameters()]), rtol=1e-4, atol=1e-6)


def test_a_step_budget_stops_part_way_through_an_epoch(registry) -> None:  # type: ignore[no-untyped-def]
    data = tiny_data(96)
    cell = cell_for(registry, "vae", budget=Budget("steps", 5))
    method = build_method(registry, cell, data, torch.device("cpu"))
    protocol = Protocol.from_dict(cell.protocol).replace(batch_size=32)  # 3 steps per epoch
    result = train(method, data, protocol, 0, 0, steps=5)
    assert result.steps == 5 and result.images == 160
    assert result.history["_epoch"][-1] == pytest.approx(5 / 3, abs=1e-3)


def test_a_step_budget_shorter_than_an_epoch_still_has_a_whole_training_curve(registry) -> None:  # type: ignore[no-untyped-def]
    data = tiny_data(960)
    cell = cell_for(registry, "vae", budget=Budget("steps", 40))
    method = build_method(registry, cell, data, torch.device("cpu"))
    protocol = Protocol.from_dict(cell.protocol).replace(batch_size=8)  # 120 steps per epoch, 40 trained
    result = train(method, data, protocol, 0, 0, steps=40)
    assert len(result.history["loss"]) == 20  # HISTORY_POINTS over the 40 steps, not 20 per (unfinished) epoch


# --- FLOPs and conversions --------------------------------------------------------------------


def test_flops_are_counted_on_a_copy_and_scale_with_views(registry) -> None:  # type: ignore[no-untyped-def]
    data = tiny_data()
    vae_cell, sim_cell = cell_for(registry, "vae"), cell_for(registry, "simvae")
    vae = build_method(registry, vae_cell, data, torch.device("cpu"))
    sim = build_method(registry, sim_cell, data, torch.device("cpu"))
    before = {k: v.clone() for k, v in sim.state_dict().items()}
    rng = torch.get_rng_state()
    f_vae = count_step_flops(vae, data, Protocol.from_dict(vae_cell.protocol))
    f_sim = count_step_flops(sim, data, Protocol.from_dict(sim_cell.protocol))
    assert torch.equal(rng, torch.get_rng_state())
    assert all(torch.equal(before[k], v) for k, v in sim.state_dict().items())
    assert all(p.grad is None for p in sim.parameters())
    # the same encoder and decoder on 10 views of each image instead of 1
    assert views_per_image(sim, data) == 10 and views_per_image(vae, data) == 1
    assert f_sim == pytest.approx(10 * f_vae, rel=1e-9)
    # a linear layer's forward is 2 * in * out FLOPs per row: the count is at least the forward of the MLP
    images = step_shape(vae, data, Protocol.from_dict(vae_cell.protocol))[0]
    assert f_vae > 2 * images * (64 * 500 + 500 * 500 + 500 * 2000)


def test_resolve_steps_per_unit() -> None:
    assert resolve_steps(Budget("steps", 2000), 128, 10, 1e9) == 2000
    assert resolve_steps(Budget("views", 12_800), 128, 10, 1e9) == 10
    assert resolve_steps(Budget("flops", 10.4e9), 128, 10, 1e9) == 10
    assert resolve_steps(Budget("flops", 1e3), 128, 10, 1e9) == 1  # at least one step
    with pytest.raises(BudgetError, match="one budget"):
        pick_budget(2, 100, None, None)
    with pytest.raises(BudgetError, match="positive"):
        Budget("flops", -1.0).check()
    with pytest.raises(BudgetError, match="whole number"):
        Budget("steps", 2.5).check()
    assert pick_budget(None, None, None, 1.2e16) == Budget("flops", 1.2e16)


def _efforts(home: Path) -> dict[str, dict]:
    with sqlite3.connect(home / "results.sqlite") as db:
        return {m: json.loads(e) for m, e in db.execute("SELECT method, effort FROM runs")}


def test_steps_and_flops_budgets_end_to_end(tmp_path: Path) -> None:
    runner = CliRunner()
    home = tmp_path / "steps"
    result = runner.invoke(app, ["run", "vae", "simvae", "--steps", "12", "-e", "knn", "--home", str(home), "-p", "simvae.views=2"])
    assert result.exit_code == 0, result.output
    for method, effort in _efforts(home).items():
        assert effort["steps"] == 12 and effort["budget"] == {"unit": "steps", "value": 12, "steps": 12}
        assert effort["train_flops"] == pytest.approx(12 * effort["flops_per_step"])
        assert effort["views_seen"] == effort["images_seen"] * (2 if method == "simvae" else 1)
    home = tmp_path / "flops"
    target = 3e11
    result = runner.invoke(app, ["run", "vae", "simvae", "--flops", str(target), "-e", "knn", "--home", str(home), "-p", "simvae.views=2"])
    assert result.exit_code == 0, result.output
    efforts = _efforts(home)
    assert efforts["vae"]["steps"] > efforts["simvae"]["steps"]  # the cheaper step gets more of them
    for effort in efforts.values():
        assert effort["budget"]["unit"] == "flops" and effort["budget"]["value"] == target
        assert abs(effort["train_flops"] - target) <= effort["flops_per_step"]  # within one step


def test_runs_of_another_precision_are_a_row_of_their_own(tmp_path: Path) -> None:
    """Precision is part of a run's id: a table never averages bf16 seeds with fp32 ones."""
    runner = CliRunner()
    home = str(tmp_path / "home")
    for precision in ("fp32", "bf16"):
        result = runner.invoke(app, ["run", "vae", "--steps", "3", "-e", "knn", "--precision", precision, "--home", home])
        assert result.exit_code == 0, result.output
    rows = json.loads(runner.invoke(app, ["results", "-f", "json", "--home", home]).output)
    assert sorted((r["method"], r["precision"], len(r["seeds"])) for r in rows) == [("vae", "bf16", 1), ("vae", "fp32", 1)]
    assert "vae (bf16)" in runner.invoke(app, ["results", "--home", home], env={"COLUMNS": "200"}).output


# --- suites -----------------------------------------------------------------------------------

SUITE = """
[suites.s]
methods = ["random", "vae", "simvae"]
datasets = ["digits"]
evaluators = ["knn"]
protocol = "paper"

[suites.s.budgets.a]
epochs = 1

[suites.s.budgets.b]
protocol = "uniform"
methods = ["random", "vae"]
steps = { vae = 30 }

[suites.s.budgets.c]
flops = 1e12
"""


def test_suite_protocol_steps_flops_and_methods(tmp_path: Path, registry) -> None:  # type: ignore[no-untyped-def]
    from sslbench.bench.suites import load_suites

    path = tmp_path / "s.toml"
    path.write_text(SUITE)
    suite = load_suites(path).get("s")
    suite.check(registry)
    a = suite.cells(registry, "a")
    assert {c.protocol.get("preset") for c in a} == {"paper"} and all(c.budget is None for c in a)
    b = suite.cells(registry, "b")
    assert [c.method for c in b] == ["random", "vae"] and b[1].budget == {"unit": "steps", "value": 30}
    assert "preset" not in b[1].protocol
    c = suite.cells(registry, "c")
    assert [x.budget for x in c if x.method != "random"] == [{"unit": "flops", "value": 1e12}] * 2


def test_a_suite_naming_an_unknown_protocol_fails_its_check(tmp_path: Path, registry) -> None:  # type: ignore[no-untyped-def]
    from sslbench.bench.suites import SuiteError, load_suites

    path = tmp_path / "p.toml"
    path.write_text('[suites.s]\nmethods = ["vae"]\ndatasets = ["digits"]\nclaims = ["vae > vae on knn_acc under papr"]\n\n'
                    '[suites.s.budgets.x]\nepochs = 1\nprotocol = "papr"\n')
    with pytest.raises(SuiteError, match="Did you mean 'paper'") as info:
        load_suites(path).get("s").check(registry)
    assert str(info.value).startswith(f"{path}:")
    path.write_text(path.read_text().replace('protocol = "papr"', 'protocol = "paper"'))
    with pytest.raises(SuiteError, match="names protocol 'papr'"):
        load_suites(path).get("s").check(registry)


@pytest.mark.parametrize("body, message", [
    ("protocol = 3\nepochs = 1", "must name a protocol"),
    ("epochs = 1\nsteps = 5", "one unit"),
    ('methods = ["simclr"]\nepochs = 1', "not one of the suite's methods"),
    ("flops = -3.0", "positive number"),
])
def test_suite_budget_errors_name_file_line_and_key(tmp_path: Path, body: str, message: str) -> None:
    from sslbench.bench.suites import SuiteError, load_suites

    path = tmp_path / "bad.toml"
    path.write_text('[suites.s]\nmethods = ["vae"]\ndatasets = ["digits"]\n\n[suites.s.budgets.x]\n' + body + "\n")
    with pytest.raises(SuiteError, match=message) as info:
        load_suites(path)
    assert str(info.value).startswith(f"{path}:")

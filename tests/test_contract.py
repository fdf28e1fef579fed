"""The plugin contract's own behaviour: a method owns its parameters (``lr`` declared once on the base),
the loop refuses a method whose views do not fit a data set's frame pairs, and atomic writes."""

from __future__ import annotations

import os
import types
from pathlib import Path

import pytest
import torch

from sslbench import hookimpl
from sslbench.engine.plugins import build_registry
from sslbench.engine.runner import GridError, InProcessExecutor, build_grid, run_grid
from sslbench.engine.store import Store
from sslbench.engine.train import train
from sslbench.sdk.api import BuildContext, DatasetPlugin, ImageData, Method, Param, ParamError
from sslbench.sdk.files import atomic_path, atomic_write_text
from sslbench.sdk.nets import MLP
from sslbench.sdk.protocol import DIGITS_MLP


class NoLrMethod(Method):
    """A third-party method that declares no ``lr`` of its own."""

    name = "no-lr"
    family = "generative"
    params = {"width": Param(3, "an unused width", minimum=1)}

    def __init__(self, ctx, **params):  # type: ignore[no-untyped-def]
        super().__init__(ctx, **params)
        self.encoder = ctx.encoder()

    @property
    def views(self) -> int:
        return 1

    def loss(self, views):  # type: ignore[no-untyped-def]
        value = self.encoder(views[:, 0]).pow(2).mean()
        return {"loss": value, "energy": value}

    def embed(self, x):  # type: ignore[no-untyped-def]
        return self.encoder(x)


class TenViews(NoLrMethod):
    name = "ten-views"

    @property
    def views(self) -> int:
        return 10


class FramePairs(DatasetPlugin):
    """Twelve tiny frames, each paired with the next (as moving-balls' ``train_next``)."""

    name = "frame-pairs"
    protocol = DIGITS_MLP

    def load(self, data_dir, **params):  # type: ignore[no-untyped-def]
        g = torch.Generator().manual_seed(0)
        x = torch.randint(0, 256, (12, 1, 8, 8), dtype=torch.uint8, generator=g)
        nxt = torch.arange(1, 13)
        nxt[-1] = -1
        return ImageData("frame-pairs", x, torch.zeros(12, dtype=torch.long), x[:4], torch.zeros(4, dtype=torch.long), train_next=nxt)


def _plugin() -> types.SimpleNamespace:
    return types.SimpleNamespace(
        register_methods=hookimpl(lambda register: [register(NoLrMethod), register(TenViews)]),
        register_datasets=hookimpl(lambda register: register(FramePairs)),
    )


@pytest.fixture
def reg():  # type: ignore[no-untyped-def]
    return build_registry(extra_plugins=[("contract-test", _plugin())])


def test_a_method_without_lr_accepts_lr_from_the_base(reg) -> None:  # type: ignore[no-untyped-def]
    assert "lr" not in NoLrMethod.params and "lr" in NoLrMethod.declared_params()
    assert "generative default" in NoLrMethod.declared_params()["lr"].help
    cells = build_grid(reg, ["no-lr"], "digits", [0], 1, ["knn"], {"no-lr": {"lr": "0.003"}})
    assert cells[0].method_params == {"lr": 0.003, "width": 3}
    ctx = BuildContext(DIGITS_MLP, (1, 8, 8), 100, 10, torch.device("cpu"), {"mlp": MLP})
    assert NoLrMethod(ctx, **cells[0].method_params).learning_rate() == pytest.approx(0.003)
    # lr = 0 (the default) means the protocol's rate for the method's family
    assert NoLrMethod(ctx, **NoLrMethod.resolve({})).learning_rate() == DIGITS_MLP.lr_for("generative")


def test_untrainable_methods_have_no_lr_and_bad_values_are_refused(reg) -> None:  # type: ignore[no-untyped-def]
    assert "lr" not in reg.methods["random"].declared_params()
    with pytest.raises(GridError, match="random has no parameter lr"):
        build_grid(reg, ["random"], "digits", [0], 1, ["knn"], {"random": {"lr": "0.1"}})
    with pytest.raises(ParamError, match=r"no-lr.lr=-1.0: must be >= 0"):
        NoLrMethod.resolve({"lr": "-1"})


def test_loop_refuses_a_method_whose_views_do_not_fit_frame_pairs(reg, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    data = FramePairs().load(None)
    ctx = BuildContext(DIGITS_MLP, data.image_shape, 12, 1, torch.device("cpu"), {"mlp": MLP})
    method = TenViews(ctx, **TenViews.resolve({}))
    with pytest.raises(ValueError, match="pairs of consecutive frames.*ten-views asks for 10 view"):
        train(method, data, DIGITS_MLP.replace(batch_size=4), 1, 0)
    # through the runner it is one run's stored error, and the grid goes on
    store = Store(tmp_path)
    cells = build_grid(reg, ["ten-views", "random"], "frame-pairs", [0], 1, ["knn"])
    outcomes = run_grid(cells, InProcessExecutor(store, reg)).outcomes
    assert [o.status for o in outcomes] == ["error", "done"]
    assert "pairs of consecutive frames" in outcomes[0].message


def test_atomic_path_replaces_whole_or_not_at_all(tmp_path: Path) -> None:
    target = tmp_path / "sub" / "file.txt"
    atomic_write_text(target, "first")
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            assert tmp.parent == target.parent and str(os.getpid()) in tmp.name and tmp != target
            tmp.write_text("half")
            raise RuntimeError("killed mid-write")
    assert target.read_text() == "first"
    assert sorted(p.name for p in target.parent.iterdir()) == ["file.txt"]  # no temp file left behind
    atomic_write_text(target, "second")
    assert target.read_text() == "second"

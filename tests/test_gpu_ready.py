"""The training loop is ready for a GPU (issue 15, item 3): no host-device synchronisation per step
on CUDA, CUDA-event timing, torch.compile, channels-last, fp32 islands under bf16, explicit TF32 and
determinism settings in the run's identity, a sticky device assert that stops the grid, and
contiguous views. There is no GPU here: each CUDA-only path is tested through its logic on CPU."""

from __future__ import annotations

import math
import os

import pytest
import torch

from sslbench.engine import precision, stepwatch, train as train_mod
from sslbench.engine.augment import lay_out, make_views
from sslbench.engine.cells import build_grid, with_numerics
from sslbench.engine.plugins import build_registry
from sslbench.engine.provenance import device_part, stale_reasons
from sslbench.engine.stepwatch import AugmentTimer, Diverged, LossWatch, as_floats
from sslbench.engine.train import DeviceAssert, is_device_assert, make_optimizer, optimizer_name, pick_device, train
from sslbench.sdk.api import BuildContext, ImageData, Method
from sslbench.sdk.losses import nt_xent, positive_index, reparameterise
from sslbench.sdk.numerics import strict
from sslbench.sdk.protocol import COLOUR_CONV, DIGITS_MLP, Protocol


@pytest.fixture(scope="module")
def reg():  # type: ignore[no-untyped-def]
    return build_registry()


def tiny_data(n: int = 64, shape: tuple[int, ...] = (1, 8, 8)) -> ImageData:
    g = torch.Generator().manual_seed(0)
    x = torch.randint(0, 256, (n, *shape), dtype=torch.uint8, generator=g)
    y = torch.arange(n) % 4
    return ImageData("tiny", x, y, x[:16], y[:16])


def build(reg, name: str, data: ImageData, protocol: Protocol = DIGITS_MLP, seed: int = 0, **params) -> Method:  # type: ignore[no-untyped-def]
    ctx = BuildContext(protocol=protocol, image_shape=data.image_shape, num_train=data.train_x.shape[0],
                       num_classes=data.num_classes, device=torch.device("cpu"), architectures=reg.architectures)
    cls = reg.lookup("methods", name)
    torch.manual_seed(seed)
    return cls(ctx, **cls.resolve(params))


SMALL = DIGITS_MLP.replace(batch_size=16)


class Blows(Method):
    """Finite for ``ok`` steps, then NaN: a divergence at a known step."""

    name = "blows"
    family = "generative"

    def __init__(self, ctx, ok: int = 3) -> None:  # type: ignore[no-untyped-def]
        super().__init__(ctx)
        self.w = torch.nn.Parameter(torch.ones(1))
        self.ok, self.calls = ok, 0

    def loss(self, views):  # type: ignore[no-untyped-def]
        self.calls += 1
        value = (views.mean() * self.w).pow(2)
        if self.calls > self.ok:
            value = value * float("nan")
        return {"loss": value, "energy": value.detach() + 1}

    def embed(self, x):  # type: ignore[no-untyped-def]
        return x.flatten(1)


def blows(reg, ok: int = 3) -> Blows:  # type: ignore[no-untyped-def]
    data = tiny_data()
    ctx = BuildContext(protocol=SMALL, image_shape=data.image_shape, num_train=64, num_classes=4,
                       device=torch.device("cpu"), architectures=reg.architectures)
    return Blows(ctx, ok)


# -- 1. no host-device sync per step -------------------------------------------------------------

def test_deferred_loss_watch_names_the_first_bad_step() -> None:
    watch = LossWatch(defer=True)
    for step in range(1, 6):
        bad = float("inf") if step in (3, 5) else 1.0
        watch.check(step, {"loss": torch.tensor(bad), "term": torch.tensor(float(step))})
    assert watch.pending == 5
    with pytest.raises(Diverged) as info:
        watch.look()
    assert info.value.step == 3 and info.value.terms == {"loss": math.inf, "term": 3.0}
    assert watch.pending == 0
    watch.look()  # nothing kept: nothing to raise


def test_immediate_loss_watch_raises_at_once() -> None:
    watch = LossWatch(defer=False)
    watch.check(1, {"loss": torch.tensor(1.0)})
    with pytest.raises(Diverged, match="diverged at step 2"):
        watch.check(2, {"loss": torch.tensor(float("nan"))})
    assert not stepwatch.defers(torch.device("cpu")) and stepwatch.defers(torch.device("cuda"))


def test_as_floats_reads_the_same_numbers_as_float() -> None:
    values = {"a": torch.tensor(1 / 3), "b": torch.tensor(2.5e-7), "c": torch.tensor(-4.0)}
    assert as_floats(values, 7) == {k: float(v) / 7 for k, v in values.items()}
    assert as_floats({}) == {}


def test_the_deferred_loop_gives_the_cpu_numbers_and_names_the_same_step(reg, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    data = tiny_data()
    method = build(reg, "vae", data)
    now = train(method, data, SMALL, 2, 0, report_every=3)
    monkeypatch.setattr(train_mod, "defers", lambda device: True)
    later = train(build(reg, "vae", data), data, SMALL, 2, 0, report_every=3)
    assert later.history == now.history and later.steps == now.steps
    with pytest.raises(Diverged) as deferred:
        train(blows(reg), data, SMALL, 2, 0, report_every=100)
    monkeypatch.undo()
    with pytest.raises(Diverged) as immediate:
        train(blows(reg), data, SMALL, 2, 0)
    assert deferred.value.step == immediate.value.step == 4
    assert str(deferred.value) == str(immediate.value)


def test_the_deferred_loop_looks_every_report_every_steps(reg, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    looks: list[int] = []
    real = LossWatch.look

    def look(self):  # type: ignore[no-untyped-def]
        looks.append(self.pending)
        real(self)

    monkeypatch.setattr(train_mod, "defers", lambda device: True)
    monkeypatch.setattr(LossWatch, "look", look)
    data = tiny_data(n=256)
    train(build(reg, "vae", data), data, SMALL, 1, 0, report_every=5)  # 16 steps, history every step
    assert max(looks) <= 5 and sum(looks) == 16


class FakeEvent:
    clock = 0.0

    def __init__(self) -> None:
        self.t = 0.0
        self.synced = False

    def record(self) -> None:
        FakeEvent.clock += 0.25
        self.t = FakeEvent.clock

    def synchronize(self) -> None:
        self.synced = True

    def elapsed_time(self, end: "FakeEvent") -> float:
        assert end.synced
        return (end.t - self.t) * 1000.0  # milliseconds, as CUDA events


def test_augmentation_is_timed_with_events_where_there_are_events() -> None:
    timer = AugmentTimer(torch.device("cpu"), event=FakeEvent)
    assert timer.events
    for _ in range(3):
        timer.start()
        timer.stop()
    assert timer.take() == pytest.approx(0.75)
    assert timer.take() == 0.0
    host = AugmentTimer(torch.device("cpu"))
    host.start()
    host.stop()
    assert not host.events and host.take() >= 0.0


def test_nt_xent_targets_are_made_on_the_device_once_and_give_the_same_loss() -> None:
    g = torch.Generator().manual_seed(0)
    z1, z2 = torch.randn(8, 5, generator=g), torch.randn(8, 5, generator=g)
    assert positive_index(8, torch.device("cpu")) is positive_index(8, torch.device("cpu"))
    z = torch.nn.functional.normalize(torch.cat([z1, z2]), dim=1)
    sim = z @ z.t() / 0.5
    sim.fill_diagonal_(float("-inf"))
    old = torch.nn.functional.cross_entropy(sim, torch.cat([torch.arange(8, 16), torch.arange(0, 8)]))
    assert torch.equal(nt_xent(z1, z2, 0.5), old)


# -- 2. compile, channels-last, fp32 islands under bf16 ----------------------------------------------

def test_compile_is_timed_apart_and_recorded(reg, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setattr(train_mod, "compile_loss", lambda method: torch.compile(method.loss, backend="eager"))
    data = tiny_data()
    result = train(build(reg, "simclr", data), data, SMALL, 1, 0, compile=True)
    assert result.compile_seconds > 0 and result.numerics["compile"] is True and result.steps == 4
    plain = train(build(reg, "simclr", data), data, SMALL, 1, 0)
    assert plain.compile_seconds == 0.0 and plain.numerics["compile"] is False


@pytest.mark.slow
def test_compile_with_inductor_trains_on_cpu(reg) -> None:  # type: ignore[no-untyped-def]
    data = tiny_data()
    result = train(build(reg, "vae", data), data, SMALL, 1, 0, compile=True)
    assert result.compile_seconds > 0 and all(math.isfinite(v) for v in result.history["loss"])


def test_channels_last_only_for_conv_on_cuda(reg) -> None:  # type: ignore[no-untyped-def]
    data = tiny_data(shape=(3, 32, 32))
    conv = build(reg, "simclr", data, COLOUR_CONV)
    mlp = build(reg, "simclr", tiny_data(), DIGITS_MLP)
    assert train_mod.wants_channels_last(conv, torch.device("cuda"))
    assert not train_mod.wants_channels_last(conv, torch.device("cpu"))
    assert not train_mod.wants_channels_last(mlp, torch.device("cuda"))
    views = make_views(data.train_x[:4], COLOUR_CONV.augment, 2, False, torch.Generator().manual_seed(0), channels_last=True)
    plain = make_views(data.train_x[:4], COLOUR_CONV.augment, 2, False, torch.Generator().manual_seed(0))
    assert torch.equal(views, plain) and views.flatten(0, 1).is_contiguous(memory_format=torch.channels_last)
    major = make_views(data.train_x[:4], COLOUR_CONV.augment, 2, False, torch.Generator().manual_seed(0), view_major=True, channels_last=True)
    assert torch.equal(major, plain) and major[:, 1].is_contiguous(memory_format=torch.channels_last)


def test_fp32_islands_under_bf16_autocast(reg) -> None:  # type: ignore[no-untyped-def]
    g = torch.Generator().manual_seed(0)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        z1 = torch.nn.Linear(5, 6)(torch.randn(8, 5, generator=g))
        assert z1.dtype == torch.bfloat16
        assert reparameterise(z1, z1).dtype == torch.float32
        from sslbench_plugins.methods.simvae import simvae_prior_term

        assert simvae_prior_term(z1.view(4, 2, 6), 0.15).dtype == torch.float32
    data = tiny_data()
    moco = build(reg, "moco", data, SMALL)
    q = torch.nn.functional.normalize(torch.randn(4, 128, generator=g), dim=1)
    k = torch.nn.functional.normalize(torch.randn(4, 128, generator=g), dim=1)
    exact = moco.info_nce(q, k)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        # the logits over the queue are fp32 even when the queries arrive in bf16
        assert moco.info_nce(q.bfloat16(), k).dtype == torch.float32
        assert torch.equal(moco.info_nce(q, k), exact)


# -- 3. numerics in one place, in the run's identity ------------------------------------------------

def test_training_numerics_are_set_and_restored(monkeypatch) -> None:
    monkeypatch.delenv("CUBLAS_WORKSPACE_CONFIG", raising=False)
    before = (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32, torch.are_deterministic_algorithms_enabled())
    with precision.training(precision.Numerics("tf32", deterministic=True)) as applied:
        assert torch.backends.cuda.matmul.allow_tf32 and torch.backends.cudnn.allow_tf32
        assert torch.get_float32_matmul_precision() == "high"
        assert torch.are_deterministic_algorithms_enabled() and torch.backends.cudnn.deterministic
        assert os.environ["CUBLAS_WORKSPACE_CONFIG"] == precision.CUBLAS_WORKSPACE
        with strict():
            assert not torch.backends.cuda.matmul.allow_tf32 and not torch.backends.cudnn.allow_tf32
        assert torch.backends.cudnn.allow_tf32
    assert applied["tf32_matmul"] and applied["deterministic"] and applied["cublas_workspace_config"] == precision.CUBLAS_WORKSPACE
    assert (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32, torch.are_deterministic_algorithms_enabled()) == before
    with precision.training(precision.Numerics("fp32")):
        assert not torch.backends.cudnn.allow_tf32  # "fp32" convolutions are fp32, not PyTorch's TF32 default
    with pytest.raises(ValueError, match="choose fp32"):
        precision.check_precision("fp16")


def test_the_device_is_part_of_a_runs_provenance() -> None:
    assert device_part("cpu") == {"type": "cpu"}
    assert device_part("cpu", "tf32", deterministic=True) == {"type": "cpu"}  # the flags change nothing on CPU
    cuda = device_part("cuda:1", "tf32")
    assert cuda == {"type": "cuda", "tf32_matmul": True, "tf32_conv": True, "deterministic": False}
    assert device_part("cpu", compile=True) == {"type": "cpu", "compile": True}
    old = {"sslbench": "0.1", "data": "abc"}  # stored before the device part existed: a CPU run
    assert stale_reasons(old, {"device": device_part("cpu")}) == []
    assert stale_reasons(old, {"device": cuda}) == ["device changed (cpu -> cuda tf32_matmul tf32_conv)"]
    assert stale_reasons({**old, "device": cuda}, {"device": device_part("cpu")})
    assert device_part("tpu:0")["type"] == "tpu"  # a record made elsewhere is described, not refused


def test_compile_and_deterministic_are_cell_fields_outside_the_run_key(reg) -> None:  # type: ignore[no-untyped-def]
    (plain,) = build_grid(reg, ["vae"], "digits", [0], 1, [])
    (numerics,) = build_grid(reg, ["vae"], "digits", [0], 1, [], compile=True, deterministic=True)
    assert numerics.compile and numerics.deterministic and numerics.run_id == plain.run_id
    assert with_numerics([plain], compile=True)[0].compile
    (tf32,) = build_grid(reg, ["vae"], "digits", [0], 1, [], precision="tf32")
    assert tf32.run_id != plain.run_id


def test_pick_device_names_the_cuda_index(monkeypatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    monkeypatch.setattr(torch.cuda, "current_device", lambda: 1)
    assert pick_device() == torch.device("cuda", 1)
    assert pick_device("cuda") == torch.device("cuda", 1)
    assert pick_device("cuda:0") == torch.device("cuda", 0)
    assert pick_device("cpu") == torch.device("cpu")


def test_a_device_side_assert_becomes_a_dedicated_error(reg) -> None:  # type: ignore[no-untyped-def]
    class Asserts(Blows):
        def loss(self, views):  # type: ignore[no-untyped-def]
            raise RuntimeError("CUDA error: device-side assert triggered\nCUDA kernel errors might be ...")

    data = tiny_data()
    ctx = BuildContext(protocol=SMALL, image_shape=data.image_shape, num_train=64, num_classes=4,
                       device=torch.device("cpu"), architectures=reg.architectures)
    with pytest.raises(DeviceAssert, match="CUDA_LAUNCH_BLOCKING=1"):
        train(Asserts(ctx), data, SMALL, 1, 0)
    assert is_device_assert(RuntimeError("... device-side assert triggered"))
    assert not is_device_assert(RuntimeError("shapes do not match"))
    accelerator = getattr(torch, "AcceleratorError", None)
    if accelerator is not None:
        assert is_device_assert(accelerator.__new__(accelerator))


# -- 4. MoCo's update, contiguous views, the optimiser, FID's batch ---------------------------------

def test_moco_momentum_update_is_the_loop_bit_for_bit(reg) -> None:  # type: ignore[no-untyped-def]
    data = tiny_data()
    moco = build(reg, "moco", data, SMALL)
    with torch.no_grad():
        for p in moco._query_parameters():
            p.add_(torch.randn_like(p))
    expected = [pk.detach().clone().mul_(0.99).add_(pq.detach(), alpha=0.01) for pk, pq in zip(moco._key_parameters(), moco._query_parameters())]
    moco.momentum_update()
    assert all(torch.equal(a, b) for a, b in zip(moco._key_parameters(), expected))


@pytest.mark.parametrize("views, original", [(2, False), (3, True), (0, True)])
def test_view_major_views_are_the_same_numbers_each_contiguous(views: int, original: bool) -> None:
    for spec, shape in ((COLOUR_CONV.augment, (6, 3, 16, 16)), (DIGITS_MLP.augment, (6, 1, 8, 8))):
        x = torch.randint(0, 256, shape, dtype=torch.uint8, generator=torch.Generator().manual_seed(1))
        a = make_views(x, spec, views, original, torch.Generator().manual_seed(2))
        b = make_views(x, spec, views, original, torch.Generator().manual_seed(2), view_major=True)
        assert a.shape == b.shape and torch.equal(a, b)
        assert all(b[:, j].is_contiguous() for j in range(b.shape[1]))
        assert torch.equal(lay_out(b, False, False), a) and lay_out(b, False, False).is_contiguous()


def test_the_per_view_methods_ask_for_view_major_views(reg) -> None:  # type: ignore[no-untyped-def]
    for name in ("moco", "simsiam", "vicreg", "vi-simsiam"):
        assert reg.lookup("methods", name).view_major, name
    for name in ("simclr", "simvae", "vae", "cr-vae"):
        assert not reg.lookup("methods", name).view_major, name


def test_the_optimiser_that_ran_is_recorded(reg, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    data = tiny_data()
    method = build(reg, "vae", data)
    assert optimizer_name(make_optimizer(method, SMALL)) == "adam (fused)"
    assert optimizer_name(make_optimizer(method, SMALL.replace(optimizer="sgd"))) == "sgd"
    real = torch.optim.Adam

    def no_fused(params, **kw):  # type: ignore[no-untyped-def]
        if kw.get("fused"):
            raise RuntimeError("fused=True requires all the params to be floating point Tensors of supported devices")
        return real(params, **kw)

    monkeypatch.setattr(torch.optim, "Adam", no_fused)
    assert optimizer_name(make_optimizer(method, SMALL)) == "adam"
    assert train(method, data, SMALL, 1, 0).optimizer == "adam"


def test_fid_runs_larger_batches_on_cuda() -> None:
    from sslbench_plugins.evaluators.fid import CUDA_BATCH, batch_for

    assert batch_for(torch.device("cpu"), 50) == 50
    assert batch_for(torch.device("cuda", 0), 50) == CUDA_BATCH > 50
    assert batch_for(torch.device("cuda", 0), 500) == 500


def test_a_sticky_device_error_is_stored_and_stops_the_grid(tmp_path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """A CUDA device-side assert leaves the process's device unusable: the run stores the error and
    the grid stops instead of storing misleading errors for every later cell (the CLI exits 1)."""
    import sslbench.engine.runner as runner
    from sslbench.engine.cells import build_grid
    from sslbench.engine.plugins import build_registry
    from sslbench.engine.runner import InProcessExecutor, run_grid
    from sslbench.engine.store import Store
    from sslbench.engine.train import DeviceAssert

    def broken(*args, **kwargs):  # type: ignore[no-untyped-def]
        raise DeviceAssert("CUDA error: device-side assert triggered; rerun with CUDA_LAUNCH_BLOCKING=1")

    monkeypatch.setattr(runner, "train", broken)
    reg = build_registry()
    cells = build_grid(reg, ["vae"], "digits", [0, 1], 1, ["knn"])
    store = Store(tmp_path)
    with pytest.raises(DeviceAssert):
        run_grid(cells, InProcessExecutor(store, reg))
    first = store.get_run(cells[0].run_id)
    assert first.status == "error" and "device-side assert" in first.error
    assert store.get_run(cells[1].run_id) is None  # the grid stopped: nothing was tried on a dead device

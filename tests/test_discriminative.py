"""The discriminative family: SimCLR's NT-Xent, MoCo v2, VICReg, SimSiam.

Each formula is checked against a direct computation on inputs where the answer is known; each method
trains a few steps through the core loop on tiny data without NaN. Everything is small (8x8 images,
tiny MLPs) so the file runs in seconds on one thread.
"""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn
from torch.nn import functional as F

from sslbench.sdk.api import BuildContext, ImageData, ParamError, resolve_params
from sslbench.sdk.losses import nt_xent
from sslbench.sdk.nets import MLP, ResNet
from sslbench.sdk.protocol import COLOUR_CONV, MNIST_MLP
from sslbench.engine.train import train
from sslbench_plugins.methods.moco import MoCo, default_queue_size
from sslbench_plugins.methods.simclr import SimCLR
from sslbench_plugins.methods.simsiam import SimSiam, negative_cosine
from sslbench_plugins.methods.vicreg import VICReg, covariance_term, invariance_term, variance_term

ARCHS = {"mlp": MLP, "resnet": ResNet}
TINY_MLP = MNIST_MLP.replace(name="tiny-mlp", latent_dim=4, batch_size=16, arch_options={"hidden": [32, 32]})
TINY_CONV = COLOUR_CONV.replace(name="tiny-conv", latent_dim=4, batch_size=8, arch_options={"channels": [4, 8]})
# small heads so that every test is fast
SMALL = {
    "moco": {"head_hidden": 16, "head_dim": 8},
    "vicreg": {"expander_hidden": 16, "expander_dim": 16},
    "simsiam": {"proj_dim": 16, "pred_hidden": 8},
    "simclr": {"proj_hidden": 16, "proj_dim": 8},
}
CLASSES = {"moco": MoCo, "vicreg": VICReg, "simsiam": SimSiam, "simclr": SimCLR}


def ctx_for(protocol=TINY_MLP, image_shape=(1, 8, 8), num_train=64) -> BuildContext:  # type: ignore[no-untyped-def]
    return BuildContext(
        protocol=protocol, image_shape=image_shape, num_train=num_train, num_classes=10,
        device=torch.device("cpu"), architectures=ARCHS,
    )


def build(name: str, ctx: BuildContext | None = None, **overrides):  # type: ignore[no-untyped-def]
    cls = CLASSES[name]
    torch.manual_seed(0)
    params = resolve_params(name, cls.params, {**SMALL[name], **overrides})
    return cls(ctx or ctx_for(), **params)


def tiny_data(n: int = 64, shape=(1, 8, 8), seed: int = 0) -> ImageData:  # type: ignore[no-untyped-def]
    g = torch.Generator().manual_seed(seed)
    x = torch.randint(0, 256, (n, *shape), generator=g, dtype=torch.uint8)
    y = torch.randint(0, 10, (n,), generator=g)
    return ImageData(name="tiny", train_x=x, train_y=y, test_x=x[:16], test_y=y[:16])


# ----------------------------------------------------------------------------------------------
# NT-Xent (SimCLR)


def nt_xent_loop(z1: torch.Tensor, z2: torch.Tensor, t: float) -> float:
    """SimCLR eq. 1 written out anchor by anchor: l(i, j) = -log exp(s_ij / t) / sum_{k != i} exp(s_ik / t)."""
    z = [F.normalize(v, dim=0) for v in torch.cat([z1, z2])]
    n = len(z)
    b = n // 2
    total = 0.0
    for i in range(n):
        j = i + b if i < b else i - b
        denominator = sum(math.exp(float(z[i] @ z[k]) / t) for k in range(n) if k != i)
        total += -math.log(math.exp(float(z[i] @ z[j]) / t) / denominator)
    return total / n


@pytest.mark.parametrize("temperature", [0.1, 0.5, 0.7])
def test_nt_xent_matches_a_direct_loop(temperature: float) -> None:
    g = torch.Generator().manual_seed(1)
    z1, z2 = torch.randn(5, 3, generator=g), torch.randn(5, 3, generator=g)
    assert nt_xent(z1, z2, temperature).item() == pytest.approx(nt_xent_loop(z1, z2, temperature), rel=1e-5)


def test_nt_xent_is_low_when_views_agree_and_negatives_are_far() -> None:
    z = torch.eye(4) * 3.0
    agree = nt_xent(z, z, 0.1).item()
    shuffled = nt_xent(z, z.roll(1, 0), 0.1).item()
    assert agree < 0.01 < shuffled


# ----------------------------------------------------------------------------------------------
# MoCo v2


def test_default_queue_is_sized_to_the_data_set() -> None:
    assert default_queue_size(60000, 128) == 59904  # 468 full batches
    assert default_queue_size(100, 128) == 128  # never less than one batch
    assert default_queue_size(10_000_000, 256) == 65536  # the published K caps it
    assert build("moco", ctx_for(num_train=70)).queue_size == 4096  # MoCo's CIFAR-10 recipe, whatever the data set
    assert build("moco", ctx_for(num_train=70), queue_size=0).queue_size == 64  # 0: sized to the data set, 4 batches of 16


def test_moco_queue_is_a_ring_buffer_with_wraparound() -> None:
    m = build("moco", queue_size=5, head_dim=2)
    assert {"queue", "queue_ptr"} <= set(dict(m.named_buffers()))
    keys = torch.arange(14, dtype=torch.float32).view(7, 2)
    m.enqueue(keys[:3])  # slots 0, 1, 2
    assert int(m.queue_ptr) == 3
    assert torch.equal(m.queue[:3], keys[:3])
    m.enqueue(keys[3:6])  # slots 3, 4, then wraps to 0
    assert int(m.queue_ptr) == 1
    assert torch.equal(m.queue, torch.stack([keys[5], keys[1], keys[2], keys[3], keys[4]]))
    m.enqueue(keys[6:7])
    assert int(m.queue_ptr) == 2 and torch.equal(m.queue[1], keys[6])
    # more keys than the queue holds: the last five are kept, in ring order from the pointer
    many = torch.arange(16, dtype=torch.float32).view(8, 2) + 100
    m.enqueue(many)
    assert int(m.queue_ptr) == (2 + 5) % 5
    assert sorted(m.queue[:, 0].tolist()) == sorted(many[-5:, 0].tolist())
    assert torch.equal(m.queue[2], many[3])


def test_moco_momentum_update_follows_eq_2() -> None:
    m = build("moco", momentum=0.9)
    before_k = [p.detach().clone() for p in m._key_parameters()]
    with torch.no_grad():  # make the query encoder differ from its copy
        for p in m._query_parameters():
            p.add_(torch.randn_like(p))
    q = [p.detach().clone() for p in m._query_parameters()]
    m.after_step()
    for pk, k0, pq in zip(m._key_parameters(), before_k, q):
        assert torch.allclose(pk, 0.9 * k0 + 0.1 * pq, atol=1e-6)
    assert len(before_k) == len(q) > 0


def test_moco_key_encoder_gets_no_gradient_and_keys_are_enqueued_after_the_step() -> None:
    m = build("moco", bn_groups=1, queue_size=32)
    m.train()
    views = torch.rand(16, 2, 1, 8, 8)
    with torch.no_grad():
        expected = F.normalize(m.key_head(m.key_encoder(views[:, 1])), dim=1)
    queue_before = m.queue.clone()
    terms = m.loss(views)
    terms["loss"].backward()
    assert all(p.grad is None and not p.requires_grad for p in m._key_parameters())
    assert all(p.grad is not None for p in m._query_parameters())
    assert torch.equal(m.queue, queue_before)  # loss() does not touch the queue
    m.after_step()
    assert int(m.queue_ptr) == 16
    assert torch.allclose(m.queue[:16], expected, atol=1e-6)
    assert torch.equal(m.queue[16:], queue_before[16:])


def test_moco_info_nce_matches_the_formula() -> None:
    m = build("moco", head_dim=3, queue_size=4, temperature=0.5)
    g = torch.Generator().manual_seed(2)
    q = F.normalize(torch.randn(2, 3, generator=g), dim=1)
    k = F.normalize(torch.randn(2, 3, generator=g), dim=1)
    expected = 0.0
    for i in range(2):
        pos = math.exp(float(q[i] @ k[i]) / 0.5)
        neg = sum(math.exp(float(q[i] @ key) / 0.5) for key in m.queue)
        expected += -math.log(pos / (pos + neg)) / 2
    assert m.info_nce(q, k).item() == pytest.approx(expected, rel=1e-5)


def test_moco_shuffled_bn_keys_stay_aligned_with_their_images() -> None:
    """With BN on running statistics (eval) chunking changes nothing, so shuffled keys must equal
    unshuffled ones row for row: the un-permutation is right."""
    m = build("moco", ctx_for(TINY_CONV, (3, 8, 8)), bn_groups=4)
    assert m._shuffle_bn
    x = torch.rand(8, 3, 8, 8)
    m.eval()
    shuffled = m._keys(x)
    m._shuffle_bn = False
    assert torch.allclose(shuffled, m._keys(x), atol=1e-5)


def test_moco_queue_survives_a_checkpoint() -> None:
    m = build("moco", queue_size=16)
    m.enqueue(F.normalize(torch.randn(5, 8), dim=1))
    fresh = build("moco", queue_size=16)
    fresh.load_state_dict(m.state_dict())
    assert torch.equal(fresh.queue, m.queue) and int(fresh.queue_ptr) == 5
    assert torch.equal(fresh.key_encoder.net[0].weight, m.key_encoder.net[0].weight)


def test_moco_rejects_a_momentum_above_one() -> None:
    with pytest.raises(ParamError, match="momentum"):
        build("moco", momentum=1.5)


# ----------------------------------------------------------------------------------------------
# VICReg


def test_vicreg_identical_views_have_zero_invariance() -> None:
    z = torch.randn(32, 6)
    assert invariance_term(z, z).item() == 0.0
    assert invariance_term(z, z + 1.0).item() == pytest.approx(1.0)


def test_vicreg_constant_embedding_has_variance_gamma_minus_sqrt_eps_and_no_covariance() -> None:
    z = torch.full((16, 5), 3.0)
    assert variance_term(z, gamma=1.0, eps=1e-4).item() == pytest.approx(1.0 - 0.01)
    assert variance_term(z, gamma=2.0, eps=0.0).item() == pytest.approx(2.0)
    assert covariance_term(z).item() == 0.0


def test_vicreg_variance_hinge_is_zero_above_gamma() -> None:
    z = torch.randn(512, 4, generator=torch.Generator().manual_seed(0)) * 3.0
    assert variance_term(z).item() == 0.0


def test_vicreg_covariance_on_a_known_matrix() -> None:
    # two perfectly correlated dims: C = [[2, 2], [2, 2]] (n - 1 = 1), off-diagonal sum of squares 8, / d = 4
    z = torch.tensor([[1.0, 1.0], [-1.0, -1.0]])
    assert covariance_term(z).item() == pytest.approx(4.0)
    g = torch.Generator().manual_seed(3)
    for n, d in ((20, 7), (5, 12)):  # more samples than dimensions, and fewer (the Gram-matrix path)
        z = torch.randn(n, d, generator=g) + torch.randn(d, generator=g)
        c = torch.cov(z.t())
        off = c.pow(2).sum() - c.diag().pow(2).sum()
        assert covariance_term(z).item() == pytest.approx((off / d).item(), rel=1e-5)


def test_vicreg_loss_is_the_weighted_sum_of_its_three_terms() -> None:
    m = build("vicreg", invariance_weight=2.0, variance_weight=3.0, covariance_weight=5.0)
    z1, z2 = torch.randn(8, 16), torch.randn(8, 16)
    t = m.terms(z1, z2)
    inv = F.mse_loss(z1, z2)
    var = 0.5 * (variance_term(z1) + variance_term(z2))
    cov = covariance_term(z1) + covariance_term(z2)
    assert set(t) == {"loss", "invariance", "variance", "covariance"}
    assert t["loss"].item() == pytest.approx((2 * inv + 3 * var + 5 * cov).item(), rel=1e-6)


def test_vicreg_terms_stay_fp32_under_bf16_autocast() -> None:
    m = build("vicreg")
    with torch.autocast("cpu", dtype=torch.bfloat16):
        terms = m.loss(torch.rand(8, 2, 1, 8, 8))
    assert all(v.dtype == torch.float32 for v in terms.values())


# ----------------------------------------------------------------------------------------------
# SimSiam


def test_negative_cosine_stops_the_gradient_to_its_target() -> None:
    p = torch.randn(4, 3, requires_grad=True)
    z = torch.randn(4, 3, requires_grad=True)
    negative_cosine(p, z).backward()
    assert p.grad is not None and z.grad is None
    assert negative_cosine(z, z).item() == pytest.approx(-1.0)


def test_simsiam_gradient_flows_only_through_the_predictor_branch() -> None:
    """With an identity predictor, L = -(cos(z1, sg z2) + cos(z2, sg z1)) / 2 has exactly half the
    gradient of -cos(z1, z2) without stop-gradient; without the stop-gradient they would be equal."""
    m = build("simsiam")
    m.predictor = nn.Identity()
    views = torch.rand(8, 2, 1, 8, 8)
    m.zero_grad()
    m.loss(views)["loss"].backward()
    with_sg = [p.grad.clone() for p in m.encoder.parameters()]
    m.zero_grad()
    z1 = m.projector(m.encoder(views[:, 0]))
    z2 = m.projector(m.encoder(views[:, 1]))
    (-F.cosine_similarity(z1, z2, dim=1).mean()).backward()
    without_sg = [p.grad.clone() for p in m.encoder.parameters()]
    for a, b in zip(with_sg, without_sg):
        assert torch.allclose(a, 0.5 * b, atol=1e-6)
    assert any(b.abs().sum() > 0 for b in without_sg)


def test_simsiam_logs_its_collapse_monitor() -> None:
    m = build("simsiam")
    terms = m.loss(torch.rand(8, 2, 1, 8, 8))
    assert terms["loss"] is terms["negative_cosine"]
    assert not terms["output_std"].requires_grad
    assert 0.0 <= terms["output_std"].item() <= 1.0


# ----------------------------------------------------------------------------------------------
# all four: registered, and train through the core loop


def test_discriminative_methods_are_registered(registry) -> None:  # type: ignore[no-untyped-def]
    for name, cls in CLASSES.items():
        assert registry.methods[name] is cls
        assert cls.family == "discriminative"
        assert "lr" in cls.declared_params()  # declared once, on the Method base


@pytest.mark.parametrize("name", sorted(CLASSES))
def test_method_trains_a_few_steps_without_nan(name: str) -> None:
    m = build(name)
    before = [p.detach().clone() for p in m.encoder.parameters()]
    result = train(m, tiny_data(), TINY_MLP, epochs=2, seed=0)
    assert result.steps == 8
    assert result.history["loss"] and all(math.isfinite(v) for vs in result.history.values() for v in vs)
    assert any(not torch.equal(a, b) for a, b in zip(before, m.encoder.parameters()))
    m.eval()
    with torch.no_grad():
        z = m.embed(torch.rand(5, 1, 8, 8))
    assert z.shape == (5, TINY_MLP.latent_dim) and torch.isfinite(z).all()


def test_moco_trains_with_a_batchnorm_encoder() -> None:
    m = build("moco", ctx_for(TINY_CONV, (3, 8, 8)), symmetric=True)
    key_before = [p.detach().clone() for p in m._key_parameters()]
    result = train(m, tiny_data(32, (3, 8, 8)), TINY_CONV, epochs=1, seed=0)
    assert result.steps == 4 and all(math.isfinite(v) for v in result.history["loss"])
    assert int(m.queue_ptr) == (4 * 2 * 8) % m.queue_size  # both views' keys, every step
    assert any(not torch.equal(a, b) for a, b in zip(key_before, m._key_parameters()))

"""Probabilistic SSL: the Power Spherical density, VI-SimSiam, the SSVAE family and the uncertainty
evaluator. Everything is tiny (8x8 digits, narrow networks) and runs on one CPU thread."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy import integrate
from scipy.special import gammaln

from sslbench.sdk.api import BuildContext, EvalInputs, ImageData, Method
from sslbench.sdk.power_spherical import log_normaliser, log_prob
from sslbench.sdk.protocol import DIGITS_MLP

TINY = DIGITS_MLP.replace(arch_options={"hidden": [32]})


def context(registry, protocol=TINY, image_shape=(1, 8, 8)) -> BuildContext:  # type: ignore[no-untyped-def]
    return BuildContext(
        protocol=protocol, image_shape=image_shape, num_train=64, num_classes=10,
        device=torch.device("cpu"), architectures=registry.architectures,
    )


def build(registry, name: str, **params):  # type: ignore[no-untyped-def]
    cls = registry.methods[name]
    values = {k: p.default for k, p in cls.params.items()}
    values.update(params)
    return cls(context(registry), **values)


# ---------------------------------------------------------------------------------------------
# Power Spherical


@pytest.mark.parametrize("kappa", [0.0, 0.3, 1.0, 7.5, 60.0])
def test_log_normaliser_matches_integral_on_the_circle(kappa: float) -> None:
    # d = 2: 1 / C = int_0^{2 pi} (1 + cos t)^kappa dt
    integral, _ = integrate.quad(lambda t: (1 + math.cos(t)) ** kappa, 0, 2 * math.pi, limit=200)
    got = log_normaliser(torch.tensor(kappa, dtype=torch.float64), 2).item()
    assert got == pytest.approx(-math.log(integral), abs=1e-8)


@pytest.mark.parametrize("dim", [3, 5, 16, 128])
@pytest.mark.parametrize("kappa", [0.5, 4.0, 40.0])
def test_log_normaliser_matches_integral_in_higher_dimensions(dim: int, kappa: float) -> None:
    # 1 / C = |S^{d-2}| int_{-1}^{1} (1 + t)^kappa (1 - t^2)^{(d-3)/2} dt  (t = mu . z)
    n = dim - 1
    log_area = math.log(2) + 0.5 * n * math.log(math.pi) - gammaln(0.5 * n)
    integrand = lambda t: math.exp(kappa * math.log1p(t) + 0.5 * (dim - 3) * math.log1p(-t * t))  # noqa: E731
    integral, _ = integrate.quad(integrand, -1, 1, limit=400)
    got = log_normaliser(torch.tensor(kappa, dtype=torch.float64), dim).item()
    assert got == pytest.approx(-(log_area + math.log(integral)), rel=1e-7, abs=1e-7)


def test_density_integrates_to_one_on_the_circle() -> None:
    t = torch.linspace(0, 2 * math.pi, 20001, dtype=torch.float64)[:-1]
    z = torch.stack([t.cos(), t.sin()], 1)
    mu = torch.nn.functional.normalize(torch.tensor([[0.3, -0.8]], dtype=torch.float64), dim=1)
    for kappa in (0.2, 3.0, 50.0):
        density = log_prob(z, mu.expand_as(z), torch.full((len(z),), kappa, dtype=torch.float64)).exp()
        assert (density.sum() * (2 * math.pi / len(t))).item() == pytest.approx(1.0, abs=1e-6)


def test_density_integrates_to_one_on_the_sphere() -> None:
    # d = 3, a tilted mean direction, midpoint rule in (theta, phi) with the sin(theta) area element
    n_theta, n_phi = 1200, 600
    theta = (torch.arange(n_theta, dtype=torch.float64) + 0.5) * math.pi / n_theta
    phi = (torch.arange(n_phi, dtype=torch.float64) + 0.5) * 2 * math.pi / n_phi
    th, ph = torch.meshgrid(theta, phi, indexing="ij")
    z = torch.stack([th.sin() * ph.cos(), th.sin() * ph.sin(), th.cos()], -1).reshape(-1, 3)
    mu = torch.nn.functional.normalize(torch.tensor([[0.5, 0.2, -0.7]], dtype=torch.float64), dim=1)
    area = (th.sin() * (math.pi / n_theta) * (2 * math.pi / n_phi)).reshape(-1)
    for kappa in (0.5, 5.0, 30.0):
        density = log_prob(z, mu.expand_as(z), torch.full((len(z),), kappa, dtype=torch.float64)).exp()
        assert (density * area).sum().item() == pytest.approx(1.0, abs=1e-4)


def test_log_prob_gradients_are_finite_for_extreme_concentrations() -> None:
    d = 2048
    kappa = torch.tensor([1e-4, 1.0, 1e4], requires_grad=True)
    mu = torch.nn.functional.normalize(torch.randn(3, d), dim=1)
    z = torch.nn.functional.normalize(mu + 0.1 * torch.randn(3, d), dim=1)
    lp = log_prob(z, mu, kappa)
    lp.sum().backward()
    assert torch.isfinite(lp).all() and torch.isfinite(kappa.grad).all()
    # antipodal z: a large but finite penalty, not -inf
    assert torch.isfinite(log_prob(-mu, mu, kappa.detach())).all()


def test_log_prob_is_computed_in_float32_for_bf16_inputs() -> None:
    torch.manual_seed(0)
    mu = torch.nn.functional.normalize(torch.randn(4, 2048), dim=1)
    z = torch.nn.functional.normalize(mu + 0.05 * torch.randn(4, 2048), dim=1)
    kappa = torch.tensor([0.5, 20.0, 300.0, 4000.0])
    half = log_prob(z.bfloat16(), mu.bfloat16(), kappa.bfloat16())
    assert half.dtype == torch.float32
    # only the rounding of the inputs to bf16 remains (kappa 4000 -> 4000, 300 -> 300, ...)
    exact = log_prob(z.bfloat16().float(), mu.bfloat16().float(), kappa.bfloat16().float())
    assert torch.allclose(half, exact)


def test_log_normaliser_rejects_dimension_one() -> None:
    with pytest.raises(ValueError, match="dimension >= 2"):
        log_normaliser(torch.tensor(1.0), 1)


# ---------------------------------------------------------------------------------------------
# VI-SimSiam


def test_vi_simsiam_loss_is_the_symmetric_power_spherical_nll(registry) -> None:  # type: ignore[no-untyped-def]
    torch.manual_seed(0)
    m = build(registry, "vi-simsiam", proj_dim=16, pred_hidden=8)
    assert m.family == "probabilistic" and "uncertainty" in m.capabilities()
    views = torch.rand(6, 2, 1, 8, 8)
    terms = m.loss(views)
    assert {"loss", "nll", "mean_kappa", "alignment"} <= set(terms)
    # recompute by hand with the same modules (batch norm in train mode: the same batches give the same outputs)
    z1, z2 = (m.projector(m.encoder(views[:, i])) for i in (0, 1))
    (mu1, k1), (mu2, k2) = m.predictor(z1), m.predictor(z2)
    n1, n2 = (torch.nn.functional.normalize(z, dim=1) for z in (z1, z2))
    by_hand = -(log_prob(n2, mu1, k1) + log_prob(n1, mu2, k2)).mean()
    assert terms["loss"].item() == pytest.approx(by_hand.item(), rel=1e-5)
    assert terms["nll"].item() == pytest.approx(0.5 * by_hand.item(), rel=1e-5)
    assert terms["mean_kappa"].item() == pytest.approx(0.5 * (k1.mean() + k2.mean()).item(), rel=1e-5)


def test_vi_simsiam_stops_the_gradient_through_the_target(registry) -> None:  # type: ignore[no-untyped-def]
    # the method's encoder gradient equals that of the hand-written loss with .detach() on the
    # targets, and differs from the one without it
    torch.manual_seed(0)
    m = build(registry, "vi-simsiam", proj_dim=16, pred_hidden=8)
    views = torch.rand(6, 2, 1, 8, 8)

    def encoder_grad(loss: torch.Tensor) -> torch.Tensor:
        m.zero_grad()
        loss.backward()
        return torch.cat([p.grad.flatten() for p in m.encoder.parameters()])

    def by_hand(stop: bool) -> torch.Tensor:
        z1, z2 = (m.projector(m.encoder(views[:, i])) for i in (0, 1))
        (mu1, k1), (mu2, k2) = m.predictor(z1), m.predictor(z2)
        n1, n2 = (torch.nn.functional.normalize(z, dim=1) for z in (z1, z2))
        if stop:
            n1, n2 = n1.detach(), n2.detach()
        return -(log_prob(n2, mu1, k1) + log_prob(n1, mu2, k2)).mean()

    g_method = encoder_grad(m.loss(views)["loss"])
    g_stop, g_free = encoder_grad(by_hand(True)), encoder_grad(by_hand(False))
    assert torch.allclose(g_method, g_stop, rtol=1e-4, atol=1e-6)
    assert not torch.allclose(g_method, g_free, rtol=1e-2, atol=1e-4)


def test_vi_simsiam_uncertainty_is_inverse_kappa_and_embed_is_the_encoder(registry) -> None:  # type: ignore[no-untyped-def]
    torch.manual_seed(0)
    m = build(registry, "vi-simsiam", proj_dim=16, pred_hidden=8).eval()
    x = torch.rand(5, 1, 8, 8)
    with torch.no_grad():
        u = m.uncertainty(x)
        assert u.shape == (5,) and (u > 0).all()
        assert torch.allclose(u, 1.0 / m.concentration(x))
        assert torch.equal(m.embed(x), m.encoder(x))
        assert m.embed(x).shape == (5, TINY.latent_dim)


def test_vi_simsiam_concentrates_on_agreeing_views(registry) -> None:  # type: ignore[no-untyped-def]
    # identical views: the target is predictable, so training raises both the alignment and kappa
    torch.manual_seed(0)
    m = build(registry, "vi-simsiam", proj_dim=16, pred_hidden=8)
    opt = torch.optim.Adam(m.parameters(), lr=1e-2)
    x = torch.rand(32, 1, 1, 8, 8).expand(32, 2, 1, 8, 8)
    first = m.loss(x)
    for _ in range(60):
        terms = m.loss(x)
        opt.zero_grad()
        terms["loss"].backward()
        opt.step()
    assert terms["loss"].item() < first["loss"].item() - 1.0
    assert terms["mean_kappa"].item() > 2 * first["mean_kappa"].item()
    assert terms["alignment"].item() > first["alignment"].item()


def test_vi_simsiam_rejects_other_view_counts(registry) -> None:  # type: ignore[no-untyped-def]
    m = build(registry, "vi-simsiam", proj_dim=16, pred_hidden=8)
    with pytest.raises(ValueError, match="exactly 2 views"):
        m.loss(torch.rand(4, 3, 1, 8, 8))


# ---------------------------------------------------------------------------------------------
# SSVAE


def test_ssvae_registers_three_couplings_sharing_one_base(registry) -> None:  # type: ignore[no-untyped-def]
    from sslbench_plugins.methods.ssvae import SSVAE

    couplings = {name: registry.methods[name].coupling for name in ("ssvae-linear", "ssvae-rbf", "ssvae-cosine")}
    assert couplings == {"ssvae-linear": "linear", "ssvae-rbf": "rbf", "ssvae-cosine": "cosine"}
    assert all(issubclass(registry.methods[n], SSVAE) for n in couplings)
    assert all(registry.methods[n].family == "probabilistic" for n in couplings)


def test_ssvae_couplings_follow_their_formulas(registry) -> None:  # type: ignore[no-untyped-def]
    torch.manual_seed(0)
    z, zn = torch.randn(5, 10), torch.randn(5, 10)
    lin = build(registry, "ssvae-linear")
    with torch.no_grad():
        lin.W.copy_(torch.randn(10, 10))
    assert torch.allclose(lin.log_coupling(z, zn), torch.einsum("id,de,je->ij", z, lin.W, zn), atol=1e-5)
    rbf = build(registry, "ssvae-rbf", length=2.5)
    sq = ((z[:, None] - zn[None]) ** 2).sum(-1)
    assert torch.allclose(rbf.log_coupling(z, zn), -sq / (2 * 2.5**2), atol=1e-5)
    cos = build(registry, "ssvae-cosine", temperature=0.2)
    expected = torch.nn.functional.cosine_similarity(z[:, None], zn[None], dim=-1) / 0.2
    assert torch.allclose(cos.log_coupling(z, zn), expected, atol=1e-5)


class _Fixed(torch.nn.Module):
    """An 'encoder' returning prescribed codes: each image's first 10 pixels (the latent size)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.flatten(1)[:, :10]


def with_codes(codes: torch.Tensor) -> torch.Tensor:
    """(B, 2, 1, 8, 8) views whose first 10 pixels are ``codes`` (B, 2, 10)."""
    views = torch.zeros(codes.shape[0], 2, 64)
    views[:, :, :10] = codes
    return views.view(-1, 2, 1, 8, 8)


def test_ssvae_infonce_is_log_batch_for_a_constant_code_and_zero_for_a_perfect_one(registry) -> None:  # type: ignore[no-untyped-def]
    b = 8
    for name in ("ssvae-linear", "ssvae-rbf", "ssvae-cosine"):
        m = build(registry, name)
        m.encoder = _Fixed()
        terms = m.loss(with_codes(torch.ones(b, 2, 10)))
        assert terms["infonce"].item() == pytest.approx(math.log(b), abs=1e-5), name
        assert terms["mi_bound"].item() == pytest.approx(0.0, abs=1e-5), name
        # well-separated codes, identical within each positive pair
        codes = 30.0 * torch.eye(10)[:b]
        terms = m.loss(with_codes(codes.unsqueeze(1).expand(b, 2, 10)))
        if name == "ssvae-cosine":  # bounded coupling: cosine 1 for the positive, 0 for the negatives
            t = m.hparams["temperature"]
            expected = math.log1p((b - 1) * math.exp(-1.0 / t))
            assert terms["infonce"].item() == pytest.approx(expected, rel=1e-5)
        else:
            assert terms["infonce"].item() < 1e-3, name
        assert terms["positive_top1"].item() == 1.0, name


def test_ssvae_loss_is_cross_entropy_of_the_coupling_matrix(registry) -> None:  # type: ignore[no-untyped-def]
    torch.manual_seed(1)
    m = build(registry, "ssvae-rbf")
    m.encoder = _Fixed()
    codes = torch.randn(6, 2, 10)
    views = with_codes(codes)
    z, zn = codes[:, 0], codes[:, 1]
    logits = m.log_coupling(z, zn)
    forward = torch.nn.functional.cross_entropy(logits, torch.arange(6))
    assert m.loss(views)["loss"].item() == pytest.approx(forward.item(), rel=1e-6)
    sym = build(registry, "ssvae-rbf", symmetric=True)
    sym.encoder = _Fixed()
    backward = torch.nn.functional.cross_entropy(logits.t(), torch.arange(6))
    assert sym.loss(views)["loss"].item() == pytest.approx(0.5 * (forward + backward).item(), rel=1e-6)


def test_ssvae_learns_the_rbf_length_and_the_encoder(registry) -> None:  # type: ignore[no-untyped-def]
    torch.manual_seed(0)
    m = build(registry, "ssvae-rbf")
    terms = m.loss(torch.rand(8, 2, 1, 8, 8))
    assert "length" in terms and terms["length"].item() == pytest.approx(1.0)
    terms["loss"].backward()
    assert m.log_length.grad is not None and m.log_length.grad.abs().item() > 0
    assert all(p.grad is not None for p in m.encoder.parameters())


# ---------------------------------------------------------------------------------------------
# the uncertainty evaluator


class _ToyMethod(Method):
    """Uncertainty = mean squared distance to the nearest stored clean image (grows with any damage)."""

    name = "toy-distance"

    def __init__(self, ctx: BuildContext, clean: torch.Tensor) -> None:
        super().__init__(ctx)
        self.register_buffer("clean", clean.flatten(1))

    def loss(self, views: torch.Tensor) -> dict[str, torch.Tensor]:
        raise NotImplementedError

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        return x.flatten(1)

    def uncertainty(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cdist(x.flatten(1), self.clean).min(1).values.pow(2)


class _RandomUncertainty(_ToyMethod):
    name = "toy-random"

    def uncertainty(self, x: torch.Tensor) -> torch.Tensor:
        return torch.rand(x.shape[0], generator=torch.Generator().manual_seed(int(x.sum() * 1000) % 2**31))


class _ConstantUncertainty(_ToyMethod):
    name = "toy-constant"

    def uncertainty(self, x: torch.Tensor) -> torch.Tensor:
        return torch.ones(x.shape[0])


@pytest.fixture(scope="module")
def digits() -> ImageData:
    from sslbench_plugins.datasets.digits import Digits

    return Digits().load(None)


def eval_inputs(method: Method, data: ImageData, run_dir: str | None) -> EvalInputs:
    z = torch.zeros(data.train_x.shape[0], 2)
    return EvalInputs(
        train_z=z, test_z=torch.zeros(data.test_x.shape[0], 2), data=data, method=method,
        device=torch.device("cpu"), seed=0, selection="val", val_index=torch.arange(10), run_dir=run_dir,
    )


def uncertainty_scores(registry, method: Method, data: ImageData, run_dir: str | None = None, **opts):  # type: ignore[no-untyped-def]
    cls = registry.evaluators["uncertainty"]
    options = {k: p.default for k, p in cls.params.items()}
    options.update(opts)
    evaluator = cls()
    inputs = eval_inputs(method, data, run_dir)
    assert evaluator.applies(inputs) is None
    return evaluator.evaluate(inputs, **options)


def test_uncertainty_correlates_with_corruption_for_a_method_that_tracks_damage(registry, digits, tmp_path) -> None:  # type: ignore[no-untyped-def]
    clean = digits.test_x.float() / 255
    method = _ToyMethod(context(registry), clean)
    scores = uncertainty_scores(registry, method, digits, run_dir=str(tmp_path), max_images=200)
    for corruption in ("blur", "noise", "occlusion"):
        assert scores[f"uncertainty_spearman_{corruption}"] > 0.8, scores
    assert scores["uncertainty_spearman"] == pytest.approx(
        np.mean([scores[f"uncertainty_spearman_{c}"] for c in ("blur", "noise", "occlusion")])
    )
    assert scores["uncertainty_clean_mean"] == pytest.approx(0.0, abs=1e-5)
    for png in ("uncertainty_hist.png", "uncertainty_vs_corruption.png"):
        path = tmp_path / png
        assert path.is_file() and path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert method.training  # the evaluator restores the mode it found


def test_uncertainty_is_uncorrelated_for_a_method_that_ignores_the_image(registry, digits) -> None:  # type: ignore[no-untyped-def]
    method = _RandomUncertainty(context(registry), digits.test_x.float() / 255)
    scores = uncertainty_scores(registry, method, digits, max_images=200)
    for corruption in ("blur", "noise", "occlusion"):
        assert abs(scores[f"uncertainty_spearman_{corruption}"]) < 0.15, scores
    constant = _ConstantUncertainty(context(registry), digits.test_x.float() / 255)
    assert math.isnan(uncertainty_scores(registry, constant, digits, max_images=50)["uncertainty_spearman"])


def test_uncertainty_evaluator_skips_methods_without_the_capability(registry, digits) -> None:  # type: ignore[no-untyped-def]
    simclr = build(registry, "simclr")
    reason = registry.evaluators["uncertainty"]().applies(eval_inputs(simclr, digits, None))
    assert reason is not None and "uncertainty" in reason


def test_uncertainty_evaluator_runs_on_vi_simsiam(registry, digits) -> None:  # type: ignore[no-untyped-def]
    torch.manual_seed(0)
    m = build(registry, "vi-simsiam", proj_dim=16, pred_hidden=8)
    scores = uncertainty_scores(registry, m, digits, max_images=64, levels=2)
    assert all(math.isfinite(v) for v in scores.values()) and scores["uncertainty_clean_mean"] > 0


def test_corruptions_grow_with_strength() -> None:
    from sslbench_plugins.evaluators.uncertainty import CORRUPTIONS

    torch.manual_seed(0)
    x = torch.rand(4, 3, 16, 16)
    for name, corrupt in CORRUPTIONS.items():
        assert torch.equal(corrupt(x, 0.0, torch.Generator().manual_seed(0)), x), name
        damage = [(corrupt(x, s, torch.Generator().manual_seed(0)) - x).abs().mean().item() for s in (0.2, 0.6, 1.0)]
        assert damage[0] > 0 and damage == sorted(damage), (name, damage)

"""The generative family (VAE, beta-VAE, SimVAE, CR-VAE), its evaluators (mse, samples) and the PNG
grids: every loss term is checked against an independent computation (torch.distributions or a
hand-worked case), and every method trains a few steps on tiny data."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch.distributions import Bernoulli, Normal, kl_divergence

from sslbench.sdk.api import BuildContext, EvalInputs, ImageData, Method, ParamError, resolve_params
from sslbench.engine.augment import make_views
from sslbench.sdk.losses import gaussian_entropy
from sslbench.sdk.protocol import MNIST_MLP

SMALL = MNIST_MLP.replace(name="tiny-mlp", arch_options={"hidden": [32, 16]})
SHAPE = (1, 8, 8)
GENERATIVE = ("vae", "beta-vae", "simvae", "cr-vae")


@pytest.fixture(scope="module")
def reg():  # type: ignore[no-untyped-def]
    from sslbench.engine.plugins import build_registry

    return build_registry()


def build(reg, name: str, **given) -> Method:  # type: ignore[no-untyped-def]
    cls = reg.methods[name]
    ctx = BuildContext(
        protocol=SMALL, image_shape=SHAPE, num_train=64, num_classes=3,
        device=torch.device("cpu"), architectures=reg.architectures,
    )
    torch.manual_seed(0)
    return cls(ctx, **resolve_params(name, cls.params, given))


def images(n: int, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.rand(n, *SHAPE, generator=g)


def posterior_normal(model: Method, x: torch.Tensor) -> Normal:
    mu, logvar = model.posterior(x)
    return Normal(mu, torch.exp(0.5 * logvar))


# ---- registration and parameters ---------------------------------------------------------------


def test_generative_methods_are_registered_with_their_capabilities(reg) -> None:  # type: ignore[no-untyped-def]
    for name in GENERATIVE:
        cls = reg.methods[name]
        assert cls.family == "generative"
        assert cls.capabilities() == {"decode", "uncertainty"}
    for name in ("mse", "fid", "samples"):
        assert name in reg.evaluators


@pytest.mark.parametrize(
    "name, given",
    [("simvae", {"views": "0"}), ("simvae", {"prior_var": "-1"}), ("simvae", {"likelihood": "poisson"}),
     ("cr-vae", {"consistency": "-0.1"}), ("beta-vae", {"beta": "many"}), ("vae", {"gamma": "1"})],
)
def test_bad_params_are_refused_with_their_name(reg, name: str, given: dict) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ParamError, match=f"{name}"):
        resolve_params(name, reg.methods[name].params, given)


def test_declared_defaults(reg) -> None:  # type: ignore[no-untyped-def]
    simvae = build(reg, "simvae")
    assert (simvae.views, simvae.original) == (10, False)
    assert simvae.hparams["prior_var"] == 0.15 and simvae.hparams["likelihood_var"] == 0.02
    assert build(reg, "simvae", views="4").views == 4
    assert build(reg, "beta-vae").hparams["beta"] == 4.0
    cr = build(reg, "cr-vae")
    assert (cr.views, cr.original, cr.hparams["consistency"]) == (1, True, 0.1)


# ---- VAE and beta-VAE --------------------------------------------------------------------------


@pytest.mark.parametrize("name, beta", [("vae", 1.0), ("beta-vae", 4.0)])
def test_vae_terms_match_torch_distributions(reg, name: str, beta: float) -> None:  # type: ignore[no-untyped-def]
    model = build(reg, name)
    x = images(6)
    torch.manual_seed(1)
    terms = model.loss(x.unsqueeze(1))
    with torch.no_grad():
        q = posterior_normal(model, x)
        kl = kl_divergence(q, Normal(torch.zeros_like(q.loc), torch.ones_like(q.scale))).sum(-1).mean()
        torch.manual_seed(1)
        z = q.loc + torch.randn_like(q.loc) * q.scale
        mean = torch.sigmoid(model.decoder(z))
        rec = -Normal(mean, math.sqrt(0.02)).log_prob(x).flatten(1).sum(-1).mean()
    assert torch.allclose(terms["kl"], kl, rtol=1e-5)
    assert torch.allclose(terms["reconstruction"], rec, rtol=1e-5)
    assert torch.allclose(terms["loss"], rec + beta * kl, rtol=1e-5)


def test_bernoulli_likelihood_matches_torch_distributions(reg) -> None:  # type: ignore[no-untyped-def]
    model = build(reg, "vae", likelihood="bernoulli")
    x = (images(5) > 0.5).float()
    torch.manual_seed(2)
    terms = model.loss(x.unsqueeze(1))
    with torch.no_grad():
        q = posterior_normal(model, x)
        torch.manual_seed(2)
        z = q.loc + torch.randn_like(q.loc) * q.scale
        rec = -Bernoulli(logits=model.decoder(z)).log_prob(x).flatten(1).sum(-1).mean()
    assert torch.allclose(terms["reconstruction"], rec, rtol=1e-5)


# ---- SimVAE ------------------------------------------------------------------------------------


def test_simvae_prior_term_hand_computed() -> None:
    from sslbench_plugins.methods.simvae import simvae_prior_term

    # image 1: views (0,0) and (2,0): z_bar = (1,0), each squared distance 1 -> 1 / (2 * 0.15)
    # image 2: views (0,0) and (0,0) -> 0
    z = torch.tensor([[[0.0, 0.0], [2.0, 0.0]], [[0.0, 0.0], [0.0, 0.0]]])
    expected = torch.tensor([[1 / 0.3, 1 / 0.3], [0.0, 0.0]])
    assert torch.allclose(simvae_prior_term(z, 0.15), expected)
    # three 1-d views 0, 3, 6: z_bar = 3, squared distances 9, 0, 9, prior variance 0.5 -> 9, 0, 9
    z = torch.tensor([[[0.0], [3.0], [6.0]]])
    assert torch.allclose(simvae_prior_term(z, 0.5), torch.tensor([[9.0, 0.0, 9.0]]))


def test_simvae_terms_match_an_independent_computation(reg) -> None:  # type: ignore[no-untyped-def]
    b, j = 3, 4
    model = build(reg, "simvae", views=str(j))
    views = images(b * j).view(b, j, *SHAPE)
    torch.manual_seed(3)
    terms = model.loss(views)
    with torch.no_grad():
        x = views.flatten(0, 1)
        q = posterior_normal(model, x)
        entropy = q.entropy().sum(-1).mean()
        torch.manual_seed(3)
        z = q.loc + torch.randn_like(q.loc) * q.scale
        rec = -Normal(torch.sigmoid(model.decoder(z)), math.sqrt(0.02)).log_prob(x).flatten(1).sum(-1).mean()
        prior = 0.0
        for i in range(b):
            zi = z[i * j : (i + 1) * j]
            z_bar = sum(zi[k] for k in range(j)) / j
            prior += sum(float(((zi[k] - z_bar) ** 2).sum()) / (2 * 0.15) for k in range(j)) / j
        prior /= b
    assert torch.allclose(terms["entropy"], entropy, rtol=1e-5)
    assert torch.allclose(terms["reconstruction"], rec, rtol=1e-5)
    assert terms["prior"].item() == pytest.approx(prior, rel=1e-5)
    assert terms["loss"].item() == pytest.approx((rec - entropy).item() + prior, rel=1e-5)
    assert "mean_prior" not in terms


def test_gaussian_entropy_matches_normal_entropy() -> None:
    logvar = torch.randn(7, 5, generator=torch.Generator().manual_seed(4)) * 3
    expected = Normal(torch.zeros_like(logvar), torch.exp(0.5 * logvar)).entropy().sum(-1)
    assert torch.allclose(gaussian_entropy(logvar), expected, rtol=1e-6)


def test_simvae_with_one_view_and_no_prior_is_a_vae_without_kl_minus_entropy(reg) -> None:  # type: ignore[no-untyped-def]
    simvae = build(reg, "simvae", views="1")
    vae = build(reg, "vae", beta="0")
    vae.load_state_dict(simvae.state_dict())
    views = images(5).unsqueeze(1)
    torch.manual_seed(5)
    s = simvae.loss(views)
    torch.manual_seed(5)
    v = vae.loss(views)
    with torch.no_grad():
        entropy = posterior_normal(simvae, views[:, 0]).entropy().sum(-1).mean()
    assert s["prior"].item() == 0.0  # z_bar is the single view's z
    assert torch.allclose(s["reconstruction"], v["reconstruction"])
    assert torch.allclose(v["loss"], v["reconstruction"])  # beta = 0: no KL
    assert torch.allclose(s["loss"], v["loss"] - entropy, rtol=1e-5)


def test_simvae_with_one_view_and_mean_prior_is_a_vae_with_a_sampled_kl(reg) -> None:  # type: ignore[no-untyped-def]
    """With J = 1 the N(0, I) term on z_bar = z makes the loss -log p(x|z) - H(q) - log N(z; 0, I), the
    VAE's ELBO with the KL estimated from the same sample z."""
    simvae = build(reg, "simvae", views="1", mean_prior="true")
    views = images(5).unsqueeze(1)
    torch.manual_seed(6)
    s = simvae.loss(views)
    with torch.no_grad():
        q = posterior_normal(simvae, views[:, 0])
        torch.manual_seed(6)
        z = q.loc + torch.randn_like(q.loc) * q.scale
        log_prior = Normal(torch.zeros_like(z), torch.ones_like(z)).log_prob(z).sum(-1).mean()
        entropy = q.entropy().sum(-1).mean()
    assert torch.allclose(s["mean_prior"], -log_prior, rtol=1e-5)
    assert torch.allclose(s["loss"], s["reconstruction"] - entropy - log_prior, rtol=1e-5)


# ---- CR-VAE ------------------------------------------------------------------------------------


def test_gaussian_kl_matches_kl_divergence() -> None:
    from sslbench_plugins.methods.cr_vae import gaussian_kl

    g = torch.Generator().manual_seed(7)
    mq, lq, mp, lp = (torch.randn(4, 6, generator=g) for _ in range(4))
    expected = kl_divergence(Normal(mq, torch.exp(0.5 * lq)), Normal(mp, torch.exp(0.5 * lp))).sum(-1)
    assert torch.allclose(gaussian_kl(mq, lq, mp, lp), expected, rtol=1e-5)


def test_cr_vae_consistency_is_kl_from_augmented_to_original_posterior(reg) -> None:  # type: ignore[no-untyped-def]
    model = build(reg, "cr-vae", consistency="0.1")
    x, x_aug = images(4, seed=1), images(4, seed=2)
    views = torch.stack([x, x_aug], 1)
    terms = model.loss(views)
    with torch.no_grad():
        q, q_aug = posterior_normal(model, x), posterior_normal(model, x_aug)
        consistency = kl_divergence(q_aug, q).sum(-1).mean()
        reverse = kl_divergence(q, q_aug).sum(-1).mean()
        std = Normal(torch.zeros_like(q.loc), torch.ones_like(q.scale))
        kl, kl_aug = kl_divergence(q, std).sum(-1).mean(), kl_divergence(q_aug, std).sum(-1).mean()
    assert torch.allclose(terms["consistency"], consistency, rtol=1e-5)
    assert not torch.allclose(terms["consistency"], reverse, rtol=1e-3)  # the direction matters
    assert torch.allclose(terms["kl"], kl, rtol=1e-5) and torch.allclose(terms["kl_aug"], kl_aug, rtol=1e-5)
    total = terms["reconstruction"] + terms["kl"] + terms["reconstruction_aug"] + terms["kl_aug"] + 0.1 * consistency
    assert torch.allclose(terms["loss"], total, rtol=1e-5)


# ---- training ----------------------------------------------------------------------------------


@pytest.mark.parametrize("name, given", [("vae", {}), ("beta-vae", {}), ("simvae", {"views": "4"}), ("cr-vae", {}), ("simvae", {"views": "2", "likelihood": "bernoulli", "mean_prior": "true"})])
def test_each_method_trains_on_tiny_data(reg, name: str, given: dict) -> None:  # type: ignore[no-untyped-def]
    model = build(reg, name, **given)
    data = (images(32, seed=9) * 255).to(torch.uint8)
    g = torch.Generator().manual_seed(0)
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    losses = []
    for _ in range(40):
        views = make_views(data, SMALL.augment, model.views, model.original, g)
        assert views.shape == (32, model.views + int(model.original), *SHAPE)
        terms = model.loss(views)
        assert all(torch.isfinite(t) and t.dim() == 0 for t in terms.values()), terms
        opt.zero_grad()
        terms["loss"].backward()
        opt.step()
        model.after_step()
        losses.append(terms["loss"].item())
    assert np.mean(losses[-5:]) < np.mean(losses[:5])
    model.eval()
    with torch.no_grad():
        x = data.float() / 255
        z = model.embed(x)
        assert z.shape == (32, SMALL.latent_dim)
        assert torch.allclose(z, model.posterior(x)[0])  # representation = posterior mean
        out = model.decode(z)
        assert out.shape == (32, *SHAPE) and out.min() >= 0 and out.max() <= 1
        u = model.uncertainty(x)
        assert u.shape == (32,) and (u > 0).all()


# ---- evaluators: mse and samples ---------------------------------------------------------------


class PixelCode(Method):
    """A fake 'method' whose representation is the flattened image and whose decoder inverts it: a
    perfect auto-encoder, so generation metrics have a known best case."""

    name = "pixel-code"
    family = "generative"

    def __init__(self, ctx: BuildContext, broken: bool = False) -> None:
        super().__init__(ctx)
        self.broken = broken

    def loss(self, views: torch.Tensor) -> dict[str, torch.Tensor]:
        raise NotImplementedError

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        return x.flatten(1)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        if self.broken:
            return torch.full((z.shape[0], *SHAPE), 0.5)
        return z.view(-1, *SHAPE).clamp(0, 1)


def prototype_data(n_train: int = 90, n_test: int = 30, seed: int = 0) -> ImageData:
    """Three classes, each a fixed random prototype plus small noise."""
    g = torch.Generator().manual_seed(seed)
    protos = torch.rand(3, *SHAPE, generator=g)

    def split(n: int) -> tuple[torch.Tensor, torch.Tensor]:
        y = torch.arange(n) % 3
        x = (protos[y] + 0.03 * torch.randn(n, *SHAPE, generator=g)).clamp(0, 1)
        return (x * 255).round().to(torch.uint8), y

    (train_x, train_y), (test_x, test_y) = split(n_train), split(n_test)
    return ImageData(name="prototypes", train_x=train_x, train_y=train_y, test_x=test_x, test_y=test_y, classes=["a", "b", "c"])


def eval_inputs(method: Method, data: ImageData, run_dir: str | None = None, decoder=None) -> EvalInputs:  # type: ignore[no-untyped-def]
    with torch.no_grad():
        train_z, test_z = method.embed(data.train_x.float() / 255), method.embed(data.test_x.float() / 255)
    return EvalInputs(
        train_z=train_z, test_z=test_z, data=data, method=method, device=torch.device("cpu"), seed=0,
        selection="val", val_index=torch.arange(10), run_dir=run_dir, _decoder=decoder,
    )


def ctx_for(reg) -> BuildContext:  # type: ignore[no-untyped-def]
    return BuildContext(protocol=SMALL, image_shape=SHAPE, num_train=90, num_classes=3, device=torch.device("cpu"), architectures=reg.architectures)


def test_mse_matches_a_direct_computation(reg) -> None:  # type: ignore[no-untyped-def]
    from sslbench_plugins.evaluators.mse import ReconstructionMSE

    data = prototype_data()
    model = build(reg, "vae")
    model.eval()
    inputs = eval_inputs(model, data)
    out = ReconstructionMSE().evaluate(inputs, batch_size=7)
    with torch.no_grad():
        expected = (model.decode(inputs.test_z) - data.test_x.float() / 255).pow(2).mean().item()
    assert out["mse"] == pytest.approx(expected, rel=1e-5)
    assert out["mse_frozen_decoder"] == 0.0
    perfect = ReconstructionMSE().evaluate(eval_inputs(PixelCode(ctx_for(reg)), data), batch_size=500)
    assert perfect["mse"] < 1e-10


def test_mse_flags_a_frozen_representation_decoder(reg) -> None:  # type: ignore[no-untyped-def]
    from sslbench_plugins.evaluators.mse import ReconstructionMSE

    class NoDecoder(PixelCode):
        decode = Method.decode  # type: ignore[assignment]

    data = prototype_data()
    inputs = eval_inputs(NoDecoder(ctx_for(reg)), data, decoder=lambda z: torch.zeros(z.shape[0], *SHAPE))
    out = ReconstructionMSE().evaluate(inputs, batch_size=500)
    assert out["mse_frozen_decoder"] == 1.0
    assert out["mse"] == pytest.approx((data.test_x.float() / 255).pow(2).mean().item(), rel=1e-5)


def test_samples_writes_grids_and_its_metric_separates_good_from_broken_decoders(reg, tmp_path) -> None:  # type: ignore[no-untyped-def]
    from PIL import Image

    from sslbench_plugins.evaluators.samples import ClassConditionalSamples

    data = prototype_data()
    options = {"per_class": 4, "num_recon": 16, "num_eval": 30, "k": 5}
    good = ClassConditionalSamples().evaluate(eval_inputs(PixelCode(ctx_for(reg)), data, str(tmp_path)), **options)
    assert good["samples_knn_agreement"] > 0.9 and good["recon_knn_agreement"] > 0.9
    broken = ClassConditionalSamples().evaluate(eval_inputs(PixelCode(ctx_for(reg), broken=True), data), **options)
    assert broken["samples_knn_agreement"] < 0.5  # every sample decodes to the same grey image

    samples = np.asarray(Image.open(tmp_path / "samples.png"))
    recon = np.asarray(Image.open(tmp_path / "reconstructions.png"))
    cell = 32 + 2  # 8x8 images enlarged 4x, plus padding
    assert samples.shape == (3 * cell + 2, 4 * cell + 2)  # one row per class
    assert recon.shape == (4 * cell + 2, 8 * cell + 2)  # 16 test images: 2 rows of 8, each above its reconstruction


def test_samples_refuses_unlabelled_data(reg) -> None:  # type: ignore[no-untyped-def]
    from sslbench_plugins.evaluators.samples import ClassConditionalSamples

    data = prototype_data()
    data.train_y = torch.zeros_like(data.train_y)
    data.test_y = torch.zeros_like(data.test_y)
    reason = ClassConditionalSamples().applies(eval_inputs(PixelCode(ctx_for(reg)), data))
    assert reason is not None and "class labels" in reason


def test_class_gaussians_fit_mean_and_covariance() -> None:
    from sslbench_plugins.evaluators.samples import ClassGaussians

    g = torch.Generator().manual_seed(0)
    a = torch.randn(4000, 2, generator=g) @ torch.tensor([[2.0, 0.0], [1.0, 0.5]]) + torch.tensor([5.0, -1.0])
    b = torch.randn(4000, 2, generator=g) * 0.1
    z, y = torch.cat([a, b]), torch.cat([torch.zeros(4000), torch.ones(4000)]).long()
    gauss = ClassGaussians.fit(z, y)
    s, labels = gauss.sample(torch.tensor([20000, 10]), torch.Generator().manual_seed(1))
    assert s.shape == (20010, 2) and (labels[:20000] == 0).all() and (labels[20000:] == 1).all()
    drawn = s[:20000].double()
    assert torch.allclose(drawn.mean(0), a.double().mean(0), atol=0.05)
    assert torch.allclose(torch.cov(drawn.t()), torch.cov(a.double().t()), atol=0.1)


# ---- pictures ----------------------------------------------------------------------------------


def test_save_grid_layout_and_pixels(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from PIL import Image

    from sslbench.sdk.pictures import save_grid

    grey = torch.zeros(5, 1, 16, 16)
    grey[1] = 1.0
    path = save_grid(grey, tmp_path / "sub" / "g.png", ncol=3, padding=2, min_cell=32)
    pixels = np.asarray(Image.open(path))
    assert pixels.shape == (2 * 34 + 2, 3 * 34 + 2)  # 16 px enlarged 2x; 2 rows of 3 cells
    assert pixels[2:34, 2:34].max() == 0  # image 0 black
    assert pixels[2:34, 36:68].min() == 255  # image 1 white
    assert pixels[0, :].min() == 255  # white padding

    rgb = torch.zeros(2, 3, 3, 40, 40)
    rgb[:, :, 0] = 1.0  # red
    pixels = np.asarray(Image.open(save_grid(rgb, tmp_path / "c.png", padding=0)))
    assert pixels.shape == (80, 120, 3) and (pixels[..., 0] == 255).all() and (pixels[..., 1] == 0).all()
    with pytest.raises(ValueError, match="channels"):
        save_grid(torch.zeros(2, 2, 8, 8), tmp_path / "bad.png")

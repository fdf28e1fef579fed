"""Options of the VAE family that the ``paper`` protocol sets: ``nll_weight``, ``binarise``, SimVAE's
``official_entropy``, and the VAE's ``augment`` (one augmented view per image by default). Each test
pins a value or an exact relation; the full-loss test rebuilds the official SimVAE objective by hand."""

from __future__ import annotations

import math

import pytest
import torch
from torch.distributions import Normal
from torch.nn import functional as F

from sslbench.engine.augment import make_views
from sslbench.sdk.api import BuildContext, Method, ParamError

from test_generative import SHAPE, SMALL, build, reg  # noqa: E402, F401 - the shared builder and its registry fixture

FAMILY = ("vae", "beta-vae", "simvae", "cr-vae")


def images(n: int, seed: int = 0) -> torch.Tensor:
    return torch.rand(n, *SHAPE, generator=torch.Generator().manual_seed(seed))


def batch(name: str, b: int = 4, seed: int = 0) -> torch.Tensor:
    """A (B, V, C, H, W) batch of grey images with the number of views each method reads."""
    v = {"simvae": 3, "cr-vae": 2}.get(name, 1)
    return images(b * v, seed).view(b, v, *SHAPE)


def terms_at(model: Method, views: torch.Tensor, seed: int) -> dict[str, torch.Tensor]:
    torch.manual_seed(seed)  # the same reparameterisation noise
    with torch.no_grad():
        return model.loss(views)


# ---- parameters ----------------------------------------------------------------------------


@pytest.mark.parametrize("name", FAMILY)
def test_every_family_member_declares_the_options_with_defaults_that_change_nothing(reg, name: str) -> None:  # type: ignore[no-untyped-def]
    values = reg.methods[name].resolve({})
    assert (values["nll_weight"], values["binarise"]) == (1.0, 0.0)
    assert reg.methods[name].resolve({"nll_weight": "99.48", "binarise": "0.5"})["binarise"] == 0.5


@pytest.mark.parametrize("given", [{"nll_weight": "0"}, {"nll_weight": "-1"}, {"binarise": "1"}, {"binarise": "-0.1"}, {"binarise": "1.5"}])
@pytest.mark.parametrize("name", ["vae", "simvae"])
def test_out_of_range_options_are_refused_by_resolve_and_by_the_constructor(reg, name: str, given: dict) -> None:  # type: ignore[no-untyped-def]
    (key,) = given
    with pytest.raises(ParamError, match=f"{name}.{key}"):
        reg.methods[name].resolve(given)
    cls = reg.methods[name]
    values = {**cls.resolve({}), key: float(given[key])}  # bypassing Param's own (inclusive) bounds
    ctx = BuildContext(protocol=SMALL, image_shape=SHAPE, num_train=8, num_classes=3, device=torch.device("cpu"),
                       architectures=reg.architectures)
    with pytest.raises(ParamError, match=f"{name}.{key}"):
        cls(ctx, **values)


# ---- nll_weight ----------------------------------------------------------------------------


@pytest.mark.parametrize("name", FAMILY)
@pytest.mark.parametrize("likelihood", ["gaussian", "bernoulli"])
def test_nll_weight_scales_the_reconstruction_terms_and_the_loss_exactly(reg, name: str, likelihood: str) -> None:  # type: ignore[no-untyped-def]
    w = 3.5
    views = batch(name)
    plain = terms_at(build(reg, name, likelihood=likelihood), views, 1)
    weighted = terms_at(build(reg, name, likelihood=likelihood, nll_weight=str(w)), views, 1)
    rec_keys = [k for k in plain if k.startswith("reconstruction")]
    assert rec_keys == (["reconstruction", "reconstruction_aug"] if name == "cr-vae" else ["reconstruction"])
    for k in rec_keys:  # the logged term is the weighted one
        assert torch.allclose(weighted[k], w * plain[k], rtol=1e-6)
    for k in set(plain) - set(rec_keys) - {"loss"}:  # nothing else moves
        assert torch.equal(weighted[k], plain[k]), k
    extra = (w - 1.0) * sum(plain[k] for k in rec_keys)
    assert torch.allclose(weighted["loss"], plain["loss"] + extra, rtol=1e-6)


def test_nll_weight_of_the_vae_is_the_weighted_negative_elbo(reg) -> None:  # type: ignore[no-untyped-def]
    w = math.exp(4.6)
    x = (images(5) > 0.5).float()
    model = build(reg, "vae", likelihood="bernoulli", nll_weight=str(w))
    terms = terms_at(model, x.unsqueeze(1), 2)
    with torch.no_grad():
        mu, logvar = model.posterior(x)
        torch.manual_seed(2)
        z = mu + torch.randn_like(mu) * torch.exp(0.5 * logvar)
        bce = F.binary_cross_entropy_with_logits(model.decoder(z), x, reduction="none").flatten(1).sum(-1)
        kl = (0.5 * (mu**2 + logvar.exp() - 1 - logvar).sum(-1)).mean()
    assert terms["reconstruction"].item() == pytest.approx(w * bce.mean().item(), rel=1e-6)
    assert terms["loss"].item() == pytest.approx(w * bce.mean().item() + kl.item(), rel=1e-6)


# ---- binarise ------------------------------------------------------------------------------


@pytest.mark.parametrize("name", FAMILY)
def test_binarise_thresholds_the_images_embed_and_uncertainty_read(reg, name: str) -> None:  # type: ignore[no-untyped-def]
    model = build(reg, name, binarise="0.5").eval()
    plain = build(reg, name).eval()
    grey, dark, light, one = (torch.full((3, *SHAPE), v) for v in (0.4, 0.0, 0.6, 1.0))
    with torch.no_grad():
        assert torch.equal(model.embed(grey), model.embed(dark))  # 0.4 -> 0
        assert torch.equal(model.embed(light), model.embed(one))  # 0.6 -> 1
        assert torch.equal(model.uncertainty(grey), model.uncertainty(dark))
        assert not torch.allclose(plain.embed(grey), plain.embed(dark))  # off by default
        x = images(6)
        assert torch.equal(model.embed(x), plain.embed((x > 0.5).float()))


def test_binarise_threshold_is_strict_and_any_level_can_be_chosen(reg) -> None:  # type: ignore[no-untyped-def]
    model = build(reg, "vae", binarise="0.25")
    x = torch.tensor([0.0, 0.25, 0.2501, 0.5, 1.0]).view(1, 1, 1, 5)
    assert model.inputs(x).flatten().tolist() == [0.0, 0.0, 1.0, 1.0, 1.0]
    assert model.inputs(x).dtype == x.dtype
    assert build(reg, "vae").inputs(x) is x  # off: the image itself


@pytest.mark.parametrize("name", FAMILY)
def test_binarise_thresholds_every_training_view_and_the_reconstruction_target(reg, name: str) -> None:  # type: ignore[no-untyped-def]
    views = batch(name, seed=3)
    binarised = (views > 0.5).float()
    on = build(reg, name, binarise="0.5", likelihood="bernoulli")
    off = build(reg, name, likelihood="bernoulli")
    grey = terms_at(on, views, 4)
    assert grey.keys() == terms_at(off, binarised, 4).keys()
    for k, v in terms_at(off, binarised, 4).items():  # the model saw only the thresholded views
        assert torch.equal(grey[k], v), k
    assert not torch.allclose(terms_at(off, views, 4)["loss"], grey["loss"])


# ---- SimVAE's entropy ----------------------------------------------------------------------


def test_official_entropy_helper_hand_computed() -> None:
    from sslbench_plugins.methods.simvae import official_entropy

    # 0.5 * (2 pi * 1 + 2 pi * (-2)) = -pi ; 0.5 * 2 pi * (0 + 3) = 3 pi
    out = official_entropy(torch.tensor([[1.0, -2.0], [0.0, 3.0]]))
    assert torch.allclose(out, torch.tensor([-math.pi, 3 * math.pi]))


def test_simvae_entropy_is_the_gaussian_one_by_default_and_the_official_term_on_request(reg) -> None:  # type: ignore[no-untyped-def]
    views = batch("simvae", seed=5)
    default = build(reg, "simvae", views="3")
    official = build(reg, "simvae", views="3", official_entropy="true")
    t_default, t_official = terms_at(default, views, 6), terms_at(official, views, 6)
    with torch.no_grad():
        mu, logvar = default.posterior(views.flatten(0, 1))
        gaussian = Normal(mu, torch.exp(0.5 * logvar)).entropy().sum(-1).mean()
        multiplier = (0.5 * (2 * math.pi * logvar).sum(-1)).mean()
    assert default.hparams["official_entropy"] is False
    assert torch.allclose(t_default["entropy"], gaussian, rtol=1e-6)
    assert torch.allclose(t_official["entropy"], multiplier, rtol=1e-6)
    # the other terms are unchanged, the loss moves by the entropy difference alone
    for k in ("reconstruction", "prior"):
        assert torch.equal(t_default[k], t_official[k])
    expected = t_default["loss"] + t_default["entropy"] - t_official["entropy"]
    assert torch.allclose(t_official["loss"], expected, rtol=1e-6)


def test_simvae_full_loss_matches_the_official_sum_form_objective(reg) -> None:  # type: ignore[no-untyped-def]
    """The official objective, written out as a sum over the batch's B images and J views:

        recon / exp(log_var_x) - 0.5 * sum(2 pi logvar) + 0.5 * sum_ij ||z_ij - z_bar_i||^2 / var_z_y
                               + 0.5 * sum_i ||z_bar_i||^2

    with recon the Bernoulli cross-entropy summed over pixels, views thresholded at 0.5, log_var_x =
    -4.6 and var_z_y = 0.15. sslbench's loss is a per-view mean, and its -log N(z_bar; 0, I) keeps the
    constant 0.5 * D * log(2 pi) the official Prior_Sup drops, once per image, so

        loss = official / (B * J) + 0.5 * D * log(2 pi) / J.
    """
    b, j, log_var_x, var_z_y = 3, 4, -4.6, 0.15
    model = build(
        reg, "simvae", views=str(j), likelihood="bernoulli", nll_weight=str(math.exp(-log_var_x)),
        mean_prior="true", official_entropy="true", binarise="0.5", prior_var=str(var_z_y),
    )
    views = images(b * j, seed=7).view(b, j, *SHAPE)  # grey: the threshold matters
    terms = terms_at(model, views, 8)
    with torch.no_grad():
        x = (views.flatten(0, 1) > 0.5).float()  # image i's views are rows i*J .. i*J + J - 1
        mu, logvar = model.posterior(x)
        torch.manual_seed(8)
        z = mu + torch.randn_like(mu) * torch.exp(0.5 * logvar)
        recon = F.binary_cross_entropy(torch.sigmoid(model.decoder(z)), x, reduction="sum") / math.exp(log_var_x)
        minus_entropy = -0.5 * torch.sum(2 * math.pi * logvar)
        official = recon + minus_entropy
        for i in range(b):
            zi = z[i * j : (i + 1) * j]
            z_bar = zi.sum(0) / j
            official = official + 0.5 * ((zi - z_bar) ** 2).sum() / var_z_y + 0.5 * (z_bar**2).sum()
        d = z.shape[1]
    assert d == SMALL.latent_dim
    expected = official.item() / (b * j) + 0.5 * d * math.log(2 * math.pi) / j
    assert terms["loss"].item() == pytest.approx(expected, rel=1e-5)
    assert terms["reconstruction"].item() == pytest.approx(recon.item() / (b * j), rel=1e-5)
    assert terms["entropy"].item() == pytest.approx(-minus_entropy.item() / (b * j), rel=1e-5)


# ---- VAE views -----------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["vae", "beta-vae"])
def test_vae_trains_on_one_augmented_view_by_default_and_on_the_image_with_augment_false(reg, name: str) -> None:  # type: ignore[no-untyped-def]
    default, plain = build(reg, name), build(reg, name, augment="false")
    assert default.hparams["augment"] is True
    assert (default.views, default.original) == (1, False)
    assert (plain.views, plain.original) == (0, True)
    data = (images(16, seed=9) * 255).to(torch.uint8)
    x = data.float() / 255
    aug = make_views(data, SMALL.augment, default.views, default.original, torch.Generator().manual_seed(0))
    raw = make_views(data, SMALL.augment, plain.views, plain.original, torch.Generator().manual_seed(0))
    assert aug.shape == raw.shape == (16, 1, *SHAPE)
    assert torch.equal(raw[:, 0], x)
    assert not torch.allclose(aug[:, 0], x)  # an augmentation, not the image
    # both read views[:, 0]: on the same tensor they are the same loss
    assert torch.equal(terms_at(default, raw, 10)["loss"], terms_at(plain, raw, 10)["loss"])


def test_cr_vae_keeps_the_image_and_one_augmentation(reg) -> None:  # type: ignore[no-untyped-def]
    cr = build(reg, "cr-vae")
    assert (cr.views, cr.original) == (1, True)
    assert "augment" not in reg.methods["cr-vae"].resolve({})

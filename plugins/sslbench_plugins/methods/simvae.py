"""SimVAE (Bizeul, Schölkopf & Allen, "A Probabilistic Model to explain Self-Supervised Representation
Learning", eq. 4 and 9; docs/methods.md "SimVAE").

J augmentations x_1..x_J of one image share a content variable y. Each view has its own Gaussian
posterior q(z|x_j) = N(mu_j, diag sigma_j^2); z_j is drawn by reparameterisation and y is estimated by
z_bar = (1/J) sum_j z_j. The prior ties the views together:

    log p(z_j | y) = -||z_j - z_bar||^2 / (2 * prior_var)       (prior_var = 0.15; no constant)

and the per-image objective to minimise is

    sum_j [ nll_weight * -log p(x_j | z_j) - H(q(z | x_j)) - log p(z_j | y) ]  (+ -log N(z_bar; 0, I) if mean_prior)

with the Gaussian entropy H = 0.5 * sum(log(2 pi e) + log sigma^2), the paper's equation (the
default). The official code computes 0.5 * sum(2 pi * log sigma^2) instead: 2 pi *multiplies* the
log-variance rather than entering the logarithm, so the entropy's gradient is weighted 2 pi times
more than the correct one (and the constant 0.5 * log(2 pi e) per dimension is dropped);
``official_entropy = true`` uses that term, to reproduce the official objective exactly.

``mean_prior``: the official code's ``p_y_prior = gaussian`` (its default; ``uniform`` adds only a
constant, i.e. ``mean_prior = false``) adds -0.5 * ||z_bar||^2 once per image with no constant
(``Prior_Sup``). sslbench's term is the full -log N(z_bar; 0, I) = 0.5 * ||z_bar||^2 + 0.5 * D * log(2 pi),
constant included: the same gradients, and a loss higher by the constant 0.5 * D * log(2 pi) / J.

**Scale:** the sum over views is divided by J, so every logged term is a per-view average over the
batch and J = 1 has the VAE's per-image scale (learning rates transfer between the two); the optional
``mean_prior`` term occurs once per image and is therefore added as mean_prior / J. The official
code's loss is the sum over the batch's B images and J views, so (with ``likelihood = bernoulli``,
``nll_weight = exp(-log_var_x)``, ``prior_var = var_z_y``, ``mean_prior`` and ``official_entropy``)
sslbench's loss = official / (B * J) + 0.5 * D * log(2 pi) / J. Logged terms: ``reconstruction``
(nll_weight * -log p(x_j|z_j)), ``entropy`` (H or the official term, entering the loss with a minus
sign), ``prior`` (-log p(z_j|y)) and, when on, ``mean_prior``;
``loss`` = reconstruction - entropy + prior (+ mean_prior / J).

The representation is the posterior mean; ``decode`` and ``uncertainty`` (mean posterior variance)
come from :class:`GaussianVAEBase`, and ``binarise`` thresholds every view and evaluation image.
"""

from __future__ import annotations

import math

import torch

from sslbench import hookimpl
from sslbench.sdk.api import Param
from sslbench.sdk.losses import LOG_2PI, gaussian_entropy, reparameterise
from sslbench_plugins.methods.vae import LIKELIHOOD_PARAMS, GaussianVAEBase


def simvae_prior_term(z: torch.Tensor, prior_var: float) -> torch.Tensor:
    """-log p(z_j | y) = ||z_j - z_bar||^2 / (2 prior_var) for z of shape (B, J, D); returns (B, J).

    z_bar is the mean over the J views of each image (gradients flow through it). Computed in fp32
    even under bf16 autocast (a small prior variance magnifies rounding errors)."""
    with torch.autocast(device_type=z.device.type, enabled=False):
        z = z.float()
        z_bar = z.mean(1, keepdim=True)
        return (z - z_bar).pow(2).sum(-1) / (2.0 * prior_var)


def official_entropy(logvar: torch.Tensor) -> torch.Tensor:
    """The official SimVAE code's entropy term per sample, 0.5 * sum(2 pi * logvar): the Gaussian
    entropy 0.5 * sum(log(2 pi e) + logvar) with 2 pi as a multiplier of logvar and no constant."""
    return 0.5 * (2.0 * math.pi * logvar).sum(-1)


class SimVAE(GaussianVAEBase):
    name = "simvae"
    description = "SimVAE: J augmented views share a content prior N(z_bar, 0.15 I); Gaussian VAE per view"
    params = {
        **LIKELIHOOD_PARAMS,
        "views": Param(10, "J, augmentations per image", minimum=1),
        "prior_var": Param(0.15, "variance of p(z_j | y) around the views' mean z_bar", minimum=1e-6),
        "mean_prior": Param(False, "add -log N(z_bar; 0, I) once per image (off in the paper; the official code's p_y_prior=gaussian)"),
        "official_entropy": Param(False, "use the official code's entropy 0.5 * sum(2 pi * logvar) instead of the Gaussian entropy"),
    }

    @property
    def views(self) -> int:
        return int(self.hparams["views"])

    @property
    def original(self) -> bool:
        return False

    def loss(self, views: torch.Tensor) -> dict[str, torch.Tensor]:
        b, j = views.shape[:2]
        x = self.inputs(views.flatten(0, 1))  # (B*J, C, H, W): every view in one pass
        mu, logvar = self.posterior(x)
        z = reparameterise(mu, logvar)
        rec = self.reconstruction(x, self.decoder(z)).mean()
        entropy = official_entropy(logvar) if self.hparams.get("official_entropy", False) else gaussian_entropy(logvar)
        entropy = entropy.mean()
        z = z.view(b, j, -1)
        prior = simvae_prior_term(z, float(self.hparams["prior_var"])).mean()
        terms = {"reconstruction": rec, "entropy": entropy, "prior": prior}
        loss = rec - entropy + prior
        if self.hparams["mean_prior"]:
            z_bar = z.mean(1)
            mean_prior = (0.5 * z_bar.pow(2).sum(-1) + 0.5 * z_bar.shape[-1] * LOG_2PI).mean()
            terms["mean_prior"] = mean_prior
            loss = loss + mean_prior / j
        return {"loss": loss, **terms}


@hookimpl
def register_methods(register) -> None:  # type: ignore[no-untyped-def]
    register(SimVAE)

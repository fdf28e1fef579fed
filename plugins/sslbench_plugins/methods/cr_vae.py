"""CR-VAE (Sinha & Dieng, "Consistency Regularization for Variational Auto-Encoders", NeurIPS 2021).

The VAE's ELBO on an image x and on a semantics-preserving augmentation t(x), plus a consistency
penalty between the two posteriors (the paper's regulariser R(x, phi) and CR-VAE objective, section 3):

    minimise  -ELBO(x) - ELBO(t(x)) + lambda * KL( q(z | t(x)) || q(z | x) )

with lambda = ``consistency`` (0.1 by default, docs/methods.md "The protocol"). Each -ELBO is
reconstruction (nll_weight * -log p(x|z), one reparameterised sample; nll_weight = 1 by default) +
KL(q(z|x) || N(0, I)); all terms are averaged over the images of the batch. Gradients flow through
both posteriors of the consistency KL.
Logged terms: ``reconstruction``, ``kl`` (on x), ``reconstruction_aug``, ``kl_aug`` (on t(x)) and
``consistency``. The loop hands the un-augmented image first and one augmentation
(``original = True``, ``views = 1``): the method is defined on x and t(x), so it has no ``augment``
switch (unlike the VAE). With ``binarise`` > 0 both x and t(x) are thresholded before the encoder
and as the reconstruction target.
"""

from __future__ import annotations

import torch

from sslbench import hookimpl
from sslbench.sdk.api import Param
from sslbench.sdk.losses import gaussian_kl_standard, reparameterise
from sslbench_plugins.methods.vae import LIKELIHOOD_PARAMS, GaussianVAEBase


def gaussian_kl(mu_q: torch.Tensor, logvar_q: torch.Tensor, mu_p: torch.Tensor, logvar_p: torch.Tensor) -> torch.Tensor:
    """KL(N(mu_q, diag e^logvar_q) || N(mu_p, diag e^logvar_p)) per sample:

    0.5 * sum( logvar_p - logvar_q + (e^logvar_q + (mu_q - mu_p)^2) / e^logvar_p - 1 )."""
    return 0.5 * (logvar_p - logvar_q + (logvar_q.exp() + (mu_q - mu_p).pow(2)) / logvar_p.exp() - 1.0).sum(-1)


class CRVAE(GaussianVAEBase):
    name = "cr-vae"
    description = "CR-VAE: ELBO on x and on an augmentation + 0.1 * KL(q(z|t(x)) || q(z|x)) (Sinha & Dieng 2021)"
    params = {
        **LIKELIHOOD_PARAMS,
        "consistency": Param(0.1, "lambda, weight of KL(q(z|t(x)) || q(z|x))", minimum=0.0),
    }

    @property
    def views(self) -> int:
        return 1

    @property
    def original(self) -> bool:
        return True

    def loss(self, views: torch.Tensor) -> dict[str, torch.Tensor]:
        b = views.shape[0]
        x = self.inputs(views[:, :2].transpose(0, 1).flatten(0, 1))  # (2B, ...): originals first, then augmentations
        mu, logvar = self.posterior(x)
        z = reparameterise(mu, logvar)
        rec = self.reconstruction(x, self.decoder(z))
        kl = gaussian_kl_standard(mu, logvar)
        consistency = gaussian_kl(mu[b:], logvar[b:], mu[:b], logvar[:b]).mean()
        terms = {
            "reconstruction": rec[:b].mean(),
            "kl": kl[:b].mean(),
            "reconstruction_aug": rec[b:].mean(),
            "kl_aug": kl[b:].mean(),
            "consistency": consistency,
        }
        elbos = terms["reconstruction"] + terms["kl"] + terms["reconstruction_aug"] + terms["kl_aug"]
        return {"loss": elbos + self.hparams["consistency"] * consistency, **terms}


@hookimpl
def register_methods(register) -> None:  # type: ignore[no-untyped-def]
    register(CRVAE)

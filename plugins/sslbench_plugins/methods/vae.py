"""VAE (Kingma & Welling 2014) and beta-VAE (Higgins et al. 2017) under the protocol.

Gaussian posterior q(z|x) = N(mu(x), diag sigma^2(x)), fixed-variance Gaussian (or Bernoulli)
likelihood p(x|z), N(0, I) prior. Loss terms, each averaged over the images of the batch:
``reconstruction`` = -log p(x|z) (one reparameterised sample, constant included) and
``kl`` = KL(q(z|x) || N(0, I)) (closed form, Kingma & Welling 2014, appendix B);
``loss`` = reconstruction + beta * kl, i.e. the negative ELBO when beta = 1.

Both train on the un-augmented images (``views = 0``, ``original = True``). The representation is the
posterior mean; ``decode`` gives the likelihood mean sigmoid(decoder(z)); ``uncertainty`` the mean
posterior variance. :class:`GaussianVAEBase` is shared by the whole family (SimVAE, CR-VAE).
"""

from __future__ import annotations

import torch

from sslbench import hookimpl
from sslbench.sdk.api import BuildContext, Method, Param
from sslbench.sdk.losses import bernoulli_nll, gaussian_kl_standard, gaussian_nll, reparameterise


class GaussianVAEBase(Method):
    """Shared parts of the VAE family: a Gaussian encoder (mean, log-variance) and a decoder.

    Subclasses declare :data:`LIKELIHOOD_PARAMS` (``likelihood``, ``likelihood_var``, ``lr``)."""

    family = "generative"

    def __init__(self, ctx: BuildContext, **params) -> None:  # type: ignore[no-untyped-def]
        super().__init__(ctx, **params)
        self.latent_dim = ctx.protocol.latent_dim
        self.encoder = ctx.encoder(2 * self.latent_dim)
        self.decoder = ctx.decoder(self.latent_dim)

    def posterior(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Mean and log-variance (clamped to [-12, 8] for stability) of q(z|x), each (B, latent)."""
        h = self.encoder(x)
        mu, logvar = h.chunk(2, dim=1)
        return mu, logvar.clamp(-12.0, 8.0)

    def nll(self, x: torch.Tensor, logits: torch.Tensor) -> torch.Tensor:
        """-log p(x|z) per image from the decoder's logits: Gaussian with mean sigmoid(logits) and
        variance ``likelihood_var``, or Bernoulli with those logits."""
        if self.hparams.get("likelihood", "gaussian") == "bernoulli":
            return bernoulli_nll(x, logits)
        return gaussian_nll(x, torch.sigmoid(logits), self.hparams["likelihood_var"])

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        return self.posterior(x)[0]

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.decoder(z))

    def uncertainty(self, x: torch.Tensor) -> torch.Tensor:
        """Mean posterior variance over latent dimensions."""
        return self.posterior(x)[1].exp().mean(1)


LIKELIHOOD_PARAMS = {
    "likelihood": Param("gaussian", "p(x|z): gaussian with fixed variance, or bernoulli", choices=("gaussian", "bernoulli")),
    "likelihood_var": Param(0.02, "variance of the Gaussian likelihood", minimum=1e-6),
}


class VAE(GaussianVAEBase):
    name = "vae"
    description = "VAE: Gaussian posterior and likelihood, N(0, I) prior (trained on un-augmented images)"
    params = {**LIKELIHOOD_PARAMS, "beta": Param(1.0, "weight of the KL term", minimum=0.0)}

    @property
    def views(self) -> int:
        return 0

    @property
    def original(self) -> bool:
        return True

    def loss(self, views: torch.Tensor) -> dict[str, torch.Tensor]:
        x = views[:, 0]
        mu, logvar = self.posterior(x)
        z = reparameterise(mu, logvar)
        rec = self.nll(x, self.decoder(z)).mean()
        kl = gaussian_kl_standard(mu, logvar).mean()
        return {"loss": rec + self.hparams["beta"] * kl, "reconstruction": rec, "kl": kl}


class BetaVAE(VAE):
    """beta-VAE (Higgins et al. 2017, eq. 4): the VAE objective with the KL weighted by beta > 1."""

    name = "beta-vae"
    description = "beta-VAE: the VAE with its KL term weighted by beta (default 4)"
    params = {**LIKELIHOOD_PARAMS, "beta": Param(4.0, "weight of the KL term (beta-VAE: > 1)", minimum=0.0)}


@hookimpl
def register_methods(register) -> None:  # type: ignore[no-untyped-def]
    register(VAE)
    register(BetaVAE)

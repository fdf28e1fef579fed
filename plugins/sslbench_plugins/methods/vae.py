"""VAE (Kingma & Welling 2014) under the protocol: Gaussian posterior, fixed-variance Gaussian (or
Bernoulli) likelihood, N(0, I) prior. Loss terms: ``reconstruction`` = -log p(x|z) and ``kl`` =
KL(q(z|x) || N(0, I)), both per image; ``loss`` = reconstruction + beta * kl."""

from __future__ import annotations

import torch

from sslbench import hookimpl
from sslbench.api import BuildContext, Method, Param
from sslbench.losses import bernoulli_nll, gaussian_kl_standard, gaussian_nll, reparameterise


class GaussianVAEBase(Method):
    """Shared parts of the VAE family: a Gaussian encoder (mean, log-variance) and a decoder."""

    family = "generative"

    def __init__(self, ctx: BuildContext, **params) -> None:  # type: ignore[no-untyped-def]
        super().__init__(ctx, **params)
        self.latent_dim = ctx.protocol.latent_dim
        self.encoder = ctx.encoder(2 * self.latent_dim)
        self.decoder = ctx.decoder(self.latent_dim)

    def posterior(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = self.encoder(x)
        mu, logvar = h.chunk(2, dim=1)
        return mu, logvar.clamp(-12.0, 8.0)

    def nll(self, x: torch.Tensor, logits: torch.Tensor) -> torch.Tensor:
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
    "lr": Param(0.0, "learning rate; 0 takes the protocol's generative default"),
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


@hookimpl
def register_methods(register) -> None:  # type: ignore[no-untyped-def]
    register(VAE)

"""VAE (Kingma & Welling 2014) and beta-VAE (Higgins et al. 2017) under the protocol.

Gaussian posterior q(z|x) = N(mu(x), diag sigma^2(x)), fixed-variance Gaussian (or Bernoulli)
likelihood p(x|z), N(0, I) prior. Loss terms, each averaged over the images of the batch:
``reconstruction`` = nll_weight * -log p(x|z) (one reparameterised sample, constant included; the
logged value is the weighted one, the one that enters the loss) and
``kl`` = KL(q(z|x) || N(0, I)) (closed form, Kingma & Welling 2014, appendix B);
``loss`` = reconstruction + beta * kl, i.e. the negative ELBO when beta = 1 and nll_weight = 1.

Both train on ONE AUGMENTED view per image by default (``views = 1``, ``original = False``): the
SimVAE paper holds the augmentation fixed across methods and trains its VAE baselines on augmented
views. ``augment = false`` trains on the un-augmented images instead (``views = 0``,
``original = True``; sslbench's behaviour before this parameter existed). The representation is the
posterior mean; ``decode`` gives the likelihood mean sigmoid(decoder(z)); ``uncertainty`` the mean
posterior variance.

:class:`GaussianVAEBase` is shared by the whole family (VAE, beta-VAE, SimVAE, CR-VAE), and so are
its :data:`LIKELIHOOD_PARAMS`:

* ``likelihood``, ``likelihood_var``: p(x|z), Gaussian with mean sigmoid(logits) and that variance,
  or Bernoulli with those logits;
* ``nll_weight`` (> 0, default 1): multiplies -log p(x|z). The official SimVAE code divides its
  Bernoulli cross-entropy (summed over pixels) by exp(log_var_x) with log_var_x = -4.6, i.e.
  nll_weight = exp(4.6) ~ 99.48 with ``likelihood = bernoulli`` (its Gaussian case,
  0.5 * ||x - mean||^2 / exp(log_var_x), is ``likelihood_var = exp(log_var_x)`` with nll_weight = 1,
  up to a constant);
* ``binarise`` (in [0, 1), default 0 = off): every image the method reads -- the training views in
  ``loss`` and the images ``embed`` and ``uncertainty`` see -- becomes (x > binarise) as floats, as
  the official code thresholds MNIST at 0.5 after augmentation and for evaluation
  (:meth:`GaussianVAEBase.inputs`, the one place this happens).
"""

from __future__ import annotations

from typing import Any, Mapping

import torch

from sslbench import hookimpl
from sslbench.sdk.api import BuildContext, Method, Param, ParamError
from sslbench.sdk.losses import bernoulli_nll, gaussian_kl_standard, gaussian_nll, reparameterise


def check_ranges(owner: str, values: Mapping[str, Any]) -> None:
    """nll_weight > 0 and 0 <= binarise < 1: the open ends :class:`Param` cannot say (its bounds are
    inclusive), checked again when a method is built from values that did not pass :meth:`resolve`."""
    if "nll_weight" in values and not float(values["nll_weight"]) > 0.0:
        raise ParamError(f"{owner}.nll_weight={values['nll_weight']!r}: must be > 0")
    if "binarise" in values and not 0.0 <= float(values["binarise"]) < 1.0:
        raise ParamError(f"{owner}.binarise={values['binarise']!r}: must be in [0, 1) (0 turns thresholding off)")


class GaussianVAEBase(Method):
    """Shared parts of the VAE family: a Gaussian encoder (mean, log-variance) and a decoder.

    Subclasses declare :data:`LIKELIHOOD_PARAMS` (``likelihood``, ``likelihood_var``, ``nll_weight``,
    ``binarise``); every image a subclass reads goes through :meth:`inputs` first."""

    family = "generative"

    @classmethod
    def resolve(cls, given: Mapping[str, Any]) -> dict[str, Any]:
        values = super().resolve(given)
        check_ranges(cls.name, values)
        return values

    def __init__(self, ctx: BuildContext, **params) -> None:  # type: ignore[no-untyped-def]
        super().__init__(ctx, **params)
        check_ranges(self.name, self.hparams)
        self.latent_dim = ctx.protocol.latent_dim
        self.encoder = ctx.encoder(2 * self.latent_dim)
        self.decoder = ctx.decoder(self.latent_dim)

    def inputs(self, x: torch.Tensor) -> torch.Tensor:
        """The image the model reads: ``x`` itself, or (x > binarise) in x's dtype when binarise > 0."""
        threshold = float(self.hparams.get("binarise", 0.0))
        return (x > threshold).to(x.dtype) if threshold > 0.0 else x

    def posterior(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Mean and log-variance (clamped to [-12, 8] for stability) of q(z|x), each (B, latent).
        ``x`` is taken as given (callers pass it through :meth:`inputs`)."""
        h = self.encoder(x)
        mu, logvar = h.chunk(2, dim=1)
        return mu, logvar.clamp(-12.0, 8.0)

    def nll(self, x: torch.Tensor, logits: torch.Tensor) -> torch.Tensor:
        """-log p(x|z) per image from the decoder's logits: Gaussian with mean sigmoid(logits) and
        variance ``likelihood_var``, or Bernoulli with those logits."""
        if self.hparams.get("likelihood", "gaussian") == "bernoulli":
            return bernoulli_nll(x, logits)
        return gaussian_nll(x, torch.sigmoid(logits), self.hparams["likelihood_var"])

    def reconstruction(self, x: torch.Tensor, logits: torch.Tensor) -> torch.Tensor:
        """The reconstruction term per image as it enters the loss: nll_weight * -log p(x|z)."""
        return float(self.hparams.get("nll_weight", 1.0)) * self.nll(x, logits)

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        return self.posterior(self.inputs(x))[0]

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.decoder(z))

    def uncertainty(self, x: torch.Tensor) -> torch.Tensor:
        """Mean posterior variance over latent dimensions."""
        return self.posterior(self.inputs(x))[1].exp().mean(1)


LIKELIHOOD_PARAMS = {
    "likelihood": Param("gaussian", "p(x|z): gaussian with fixed variance, or bernoulli", choices=("gaussian", "bernoulli")),
    "likelihood_var": Param(0.02, "variance of the Gaussian likelihood", minimum=1e-6),
    "nll_weight": Param(
        1.0, "weight of -log p(x|z) in the loss, > 0 (the official SimVAE code: exp(4.6) ~ 99.48 with bernoulli)",
        minimum=0.0,
    ),
    "binarise": Param(
        0.0, "threshold every input image, x -> (x > binarise), in [0, 1); 0 = off (the official code: 0.5 on MNIST)",
        minimum=0.0, maximum=1.0,
    ),
}


class VAE(GaussianVAEBase):
    name = "vae"
    description = "VAE: Gaussian posterior and likelihood, N(0, I) prior (trained on one augmented view per image)"
    params = {
        **LIKELIHOOD_PARAMS,
        "beta": Param(1.0, "weight of the KL term", minimum=0.0),
        "augment": Param(True, "train on one augmented view per image (false: on the un-augmented image)"),
    }

    @property
    def views(self) -> int:
        return 1 if self.hparams.get("augment", True) else 0

    @property
    def original(self) -> bool:
        return not self.hparams.get("augment", True)

    def loss(self, views: torch.Tensor) -> dict[str, torch.Tensor]:
        x = self.inputs(views[:, 0])
        mu, logvar = self.posterior(x)
        z = reparameterise(mu, logvar)
        rec = self.reconstruction(x, self.decoder(z)).mean()
        kl = gaussian_kl_standard(mu, logvar).mean()
        return {"loss": rec + self.hparams["beta"] * kl, "reconstruction": rec, "kl": kl}


class BetaVAE(VAE):
    """beta-VAE (Higgins et al. 2017, eq. 4): the VAE objective with the KL weighted by beta > 1."""

    name = "beta-vae"
    description = "beta-VAE: the VAE with its KL term weighted by beta (default 4)"
    params = {**VAE.params, "beta": Param(4.0, "weight of the KL term (beta-VAE: > 1)", minimum=0.0)}


@hookimpl
def register_methods(register) -> None:  # type: ignore[no-untyped-def]
    register(VAE)
    register(BetaVAE)

"""VI-SimSiam (Nakamura et al. 2023, "Representation Uncertainty in Self-Supervised Learning as
Variational Inference"): SimSiam whose predictor outputs a Power Spherical distribution.

Architecture as sslbench's ``simsiam`` (Chen & He 2021): encoder f -> projector g (``proj_layers``
Linear-BN layers of width 2048, ReLU between them) -> predictor h (bottleneck Linear(2048, 512)-BN-ReLU)
with two heads instead of SimSiam's one output layer: a mean direction
mu (normalised) and a concentration kappa = softplus(.) + 1e-4 > 0. For two views with unit
projections z1, z2 the loss is the negative Power Spherical log-likelihood of each view's
(stop-gradient) projection under the other view's predicted distribution (docs/methods.md, VI-SimSiam):

    loss = -log PS(sg(z2); mu1, kappa1) - log PS(sg(z1); mu2, kappa2),   averaged over the batch,

with log PS from :mod:`sslbench.sdk.power_spherical`. Logged terms: ``nll`` (the mean of the two
directions), ``mean_kappa``, ``alignment`` (mean cosine mu . z, SimSiam's own objective).

The representation is the encoder output, before the projector (as in SimSiam). The per-image
uncertainty is 1 / kappa of the un-augmented image: it grows as the predicted distribution widens.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from sslbench import hookimpl
from sslbench.sdk.power_spherical import log_prob
from sslbench_plugins.methods.simsiam import SimSiam

KAPPA_FLOOR = 1e-4


class PowerSphericalPredictor(nn.Module):
    """SimSiam's bottleneck predictor with a mean-direction head and a concentration head."""

    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.trunk = nn.Sequential(nn.Linear(dim, hidden, bias=False), nn.BatchNorm1d(hidden), nn.ReLU(inplace=True))
        self.mean = nn.Linear(hidden, dim)
        self.concentration = nn.Linear(hidden, 1)

    def forward(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(unit mean directions (B, dim), concentrations (B,) > 0)."""
        h = self.trunk(z)
        mu = F.normalize(self.mean(h), dim=1)
        kappa = F.softplus(self.concentration(h)).squeeze(1) + KAPPA_FLOOR
        return mu, kappa


class VISimSiam(SimSiam):
    name = "vi-simsiam"
    family = "probabilistic"
    description = "VI-SimSiam: SimSiam with a Power Spherical predictor; kappa is the per-image uncertainty"

    def build_predictor(self, dim: int, hidden: int) -> nn.Module:
        return PowerSphericalPredictor(dim, hidden)

    def loss(self, views: torch.Tensor) -> dict[str, torch.Tensor]:
        if views.shape[1] != 2:
            raise ValueError(f"vi-simsiam needs exactly 2 views per image, got {views.shape[1]}")
        # each view through the networks separately: batch-norm statistics per view, as in SimSiam
        z1 = self.projector(self.encoder(views[:, 0]))
        z2 = self.projector(self.encoder(views[:, 1]))
        (mu1, kappa1), (mu2, kappa2) = self.predictor(z1), self.predictor(z2)
        t1, t2 = F.normalize(z1, dim=1).detach(), F.normalize(z2, dim=1).detach()
        loss = (-log_prob(t2, mu1, kappa1) - log_prob(t1, mu2, kappa2)).mean()  # float32 inside
        with torch.no_grad():
            alignment = 0.5 * ((mu1 * t2).sum(1) + (mu2 * t1).sum(1)).mean()
            mean_kappa = 0.5 * (kappa1.mean() + kappa2.mean())
        return {"loss": loss, "nll": 0.5 * loss.detach(), "mean_kappa": mean_kappa, "alignment": alignment}

    def concentration(self, x: torch.Tensor) -> torch.Tensor:
        """kappa (B,) that the predictor assigns to un-augmented images."""
        return self.predictor(self.projector(self.encoder(x)))[1]

    def uncertainty(self, x: torch.Tensor) -> torch.Tensor:
        """1 / kappa per image: grows as the predicted Power Spherical distribution widens."""
        return 1.0 / self.concentration(x)


@hookimpl
def register_methods(register) -> None:  # type: ignore[no-untyped-def]
    register(VISimSiam)

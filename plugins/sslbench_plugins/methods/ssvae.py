"""SSVAE (Aitchison & Ganev, "InfoNCE is a variational autoencoder", 2021-2023): InfoNCE read as the
ELBO of a model whose prior couples the latents of a positive pair, p(z, z') proportional to
f(z, z') p(z) p(z'). With a deterministic encoder and the batch's other pairs as negatives, the
objective per anchor i is the InfoNCE cross-entropy (van den Oord et al. 2018, eq. 4)

    loss_i = -log f(z_i, z'_i) + log sum_j f(z_i, z'_j),

and log B - mean_i loss_i is InfoNCE's bound on the mutual information (logged as ``mi_bound``).
The coupling f is the prior, one class per choice (``coupling`` class attribute):

* ``ssvae-linear``: log f = z^T W z' with a learned D x D matrix W (initialised to the identity), the
  bilinear critic of the original InfoNCE / CPC;
* ``ssvae-rbf``: log f = -||z - z'||^2 / (2 L^2) with a learned length scale L (parametrised by
  log L), the Gaussian-process-like prior for which the seed reports that moving-balls works;
* ``ssvae-cosine``: log f = cos(z, z') / T with a fixed temperature T (SimCLR's similarity).

Positives are the two views handed by the loop: two augmentations of an image, or on a video data
set whose ImageData has ``train_next`` (moving-balls), frames t and t+1. The representation is the
encoder output.
"""

from __future__ import annotations

import math
from typing import ClassVar

import torch
from torch import nn
from torch.nn import functional as F

from sslbench import hookimpl
from sslbench.sdk.api import BuildContext, Method, Param

COMMON_PARAMS = {
    "symmetric": Param(False, "also predict view 1 from view 2 and average (InfoNCE itself is one-directional)"),
}


class SSVAE(Method):
    """InfoNCE with the coupling ``log_coupling`` as its prior; subclasses set ``coupling``."""

    family = "probabilistic"
    coupling: ClassVar[str]

    def __init__(self, ctx: BuildContext, **params) -> None:  # type: ignore[no-untyped-def]
        super().__init__(ctx, **params)
        self.encoder = ctx.encoder()

    def log_coupling(self, z: torch.Tensor, z_next: torch.Tensor) -> torch.Tensor:  # pragma: no cover
        """(B, B) matrix of log f(z_i, z'_j)."""
        raise NotImplementedError

    def coupling_terms(self) -> dict[str, torch.Tensor]:
        """Extra logged values of the prior's parameters (e.g. the RBF length scale)."""
        return {}

    def loss(self, views: torch.Tensor) -> dict[str, torch.Tensor]:
        if views.shape[1] != 2:
            raise ValueError(f"{self.name} needs exactly 2 views (a positive pair) per item, got {views.shape[1]}")
        b = views.shape[0]
        z = self.encoder(views.flatten(0, 1)).view(b, 2, -1).float()
        # the prior in float32 even under bf16 autocast: squared pixel distances need the digits
        with torch.autocast(device_type=z.device.type, enabled=False):
            logits = self.log_coupling(z[:, 0], z[:, 1])  # row i: anchor z_i against every z'_j
        target = torch.arange(b, device=logits.device)
        infonce = F.cross_entropy(logits, target)
        if self.hparams["symmetric"]:
            infonce = 0.5 * (infonce + F.cross_entropy(logits.t(), target))
        with torch.no_grad():
            accuracy = (logits.argmax(1) == target).float().mean()
        return {
            "loss": infonce,
            "infonce": infonce.detach(),
            "mi_bound": math.log(b) - infonce.detach(),
            "positive_top1": accuracy,
            **self.coupling_terms(),
        }

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        return self.encoder(x)


class SSVAELinear(SSVAE):
    name = "ssvae-linear"
    coupling = "linear"
    description = "SSVAE with the bilinear prior log f = z^T W z' (original InfoNCE), learned W"
    params = dict(COMMON_PARAMS)

    def __init__(self, ctx: BuildContext, **params) -> None:  # type: ignore[no-untyped-def]
        super().__init__(ctx, **params)
        self.W = nn.Parameter(torch.eye(ctx.protocol.latent_dim))

    def log_coupling(self, z: torch.Tensor, z_next: torch.Tensor) -> torch.Tensor:
        return z @ self.W @ z_next.t()


class SSVAERBF(SSVAE):
    name = "ssvae-rbf"
    coupling = "rbf"
    description = "SSVAE with the Gaussian RBF prior log f = -||z - z'||^2 / (2 L^2), learned L"
    params = {**COMMON_PARAMS, "length": Param(1.0, "initial RBF length scale L (learned through log L)", minimum=1e-6)}

    def __init__(self, ctx: BuildContext, **params) -> None:  # type: ignore[no-untyped-def]
        super().__init__(ctx, **params)
        self.log_length = nn.Parameter(torch.tensor(math.log(self.hparams["length"])))

    def log_coupling(self, z: torch.Tensor, z_next: torch.Tensor) -> torch.Tensor:
        sq = (z.unsqueeze(1) - z_next.unsqueeze(0)).pow(2).sum(-1)  # exact, safe gradient at 0
        return -sq / (2.0 * torch.exp(2.0 * self.log_length))

    def coupling_terms(self) -> dict[str, torch.Tensor]:
        return {"length": self.log_length.detach().exp()}


class SSVAECosine(SSVAE):
    name = "ssvae-cosine"
    coupling = "cosine"
    description = "SSVAE with the cosine prior log f = cos(z, z') / T (SimCLR-like similarity)"
    params = {**COMMON_PARAMS, "temperature": Param(0.5, "temperature T of the cosine coupling", minimum=1e-4)}

    def log_coupling(self, z: torch.Tensor, z_next: torch.Tensor) -> torch.Tensor:
        return F.normalize(z, dim=1) @ F.normalize(z_next, dim=1).t() / self.hparams["temperature"]


@hookimpl
def register_methods(register) -> None:  # type: ignore[no-untyped-def]
    register(SSVAELinear)
    register(SSVAERBF)
    register(SSVAECosine)

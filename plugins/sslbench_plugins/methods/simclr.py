"""SimCLR (Chen et al. 2020): NT-Xent between the projections of two augmented views.

The representation is the encoder output, taken before the projection head."""

from __future__ import annotations

import torch

from sslbench import hookimpl
from sslbench.sdk.api import BuildContext, Method, Param
from sslbench.sdk.losses import nt_xent
from sslbench.sdk.nets import projection_head


class SimCLR(Method):
    name = "simclr"
    family = "discriminative"
    description = "SimCLR: NT-Xent on two views, projection head, representation before the head"
    params = {
        "temperature": Param(0.7, "NT-Xent temperature (the SimVAE paper used 0.7; SimCLR's own default 0.5)", minimum=1e-4),
        "proj_hidden": Param(512, "projection head hidden width", minimum=1),
        "proj_dim": Param(128, "projection output size", minimum=1),
    }

    def __init__(self, ctx: BuildContext, **params) -> None:  # type: ignore[no-untyped-def]
        super().__init__(ctx, **params)
        self.encoder = ctx.encoder()
        self.head = projection_head(ctx.protocol.latent_dim, self.hparams["proj_hidden"], self.hparams["proj_dim"])

    def loss(self, views: torch.Tensor) -> dict[str, torch.Tensor]:
        b = views.shape[0]
        h = self.encoder(views.flatten(0, 1))  # (2B, D): both views in one pass
        p = self.head(h).view(b, 2, -1)
        contrastive = nt_xent(p[:, 0], p[:, 1], self.hparams["temperature"])
        return {"loss": contrastive, "contrastive": contrastive}

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        return self.encoder(x)


@hookimpl
def register_methods(register) -> None:  # type: ignore[no-untyped-def]
    register(SimCLR)

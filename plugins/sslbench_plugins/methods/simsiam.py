"""SimSiam (Chen & He 2021, "Exploring Simple Siamese Representation Learning").

Both views go through the encoder f and projector g (z = g(f(x))); a predictor h maps one branch onto
the other, and the target branch is cut from the gradient (the stop-gradient the paper shows is what
prevents collapse). Loss (paper eq. 3-4), symmetrised:

    D(p, z) = -(p / ||p||) . (z / ||z||)            (negative cosine similarity)
    L = D(p1, stopgrad(z2)) / 2 + D(p2, stopgrad(z1)) / 2,   p = h(z)

Logged terms: ``negative_cosine`` (= ``loss``, in [-1, 1], -1 at perfect agreement) and
``output_std``, the paper's collapse monitor (sec. 4.1, Fig. 2): the standard deviation over the batch
of the l2-normalised z, averaged over dimensions -- about 1/sqrt(d) when healthy, 0 when collapsed. It
is detached and not part of the loss.

Architecture (paper, CIFAR experiments in appendix D; the protocol's data sets are CIFAR-scale):
projector of ``proj_layers`` = 2 fully connected layers of width 2048 with BN on each (the output
BN without learned scale and shift, ``affine=False``, as the reference code), ReLU on the hidden one,
no ReLU on the output (the ImageNet projector has 3 layers: ``-p simsiam.proj_layers=3``);
predictor Linear(2048, 512)-BN-ReLU-Linear(512, 2048), a bottleneck (paper sec. 3, "Predictor").
Each view goes through the networks separately, so BatchNorm statistics are per view, as in the
paper's pseudocode (Algorithm 1).

The representation is the encoder output, before the projector.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from sslbench import hookimpl
from sslbench.sdk.api import BuildContext, Method, Param


def projector(in_dim: int, width: int, layers: int) -> nn.Sequential:
    """SimSiam's projection MLP: ``layers`` Linear-BN blocks, ReLU after all but the last; the last
    BN has no learned scale and shift (``affine=False``), as in the reference implementation
    (facebookresearch/simsiam: the projector ends in ``BatchNorm1d(dim, affine=False)``)."""
    modules: list[nn.Module] = []
    dim = in_dim
    for i in range(layers):
        last = i == layers - 1
        modules += [nn.Linear(dim, width, bias=False), nn.BatchNorm1d(width, affine=not last)]
        if not last:
            modules.append(nn.ReLU(inplace=True))
        dim = width
    return nn.Sequential(*modules)


def predictor(dim: int, hidden: int) -> nn.Sequential:
    """SimSiam's prediction MLP: Linear-BN-ReLU to the bottleneck, then Linear back (no BN on the output)."""
    return nn.Sequential(nn.Linear(dim, hidden, bias=False), nn.BatchNorm1d(hidden), nn.ReLU(inplace=True), nn.Linear(hidden, dim))


def negative_cosine(p: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
    """D(p, stopgrad(z)) (SimSiam eq. 1 with the stop-gradient of eq. 3), averaged over the batch."""
    return -F.cosine_similarity(p, z.detach(), dim=1).mean()


class SimSiam(Method):
    name = "simsiam"
    family = "discriminative"
    description = "SimSiam: predictor + stop-gradient, symmetrised negative cosine, no negatives"
    view_major = True  # each view goes through the networks on its own
    params = {
        "proj_dim": Param(2048, "projector width and output size (paper: 2048)", minimum=1),
        "proj_layers": Param(2, "projector layers (paper: 2 on CIFAR, 3 on ImageNet)", choices=(1, 2, 3)),
        "pred_hidden": Param(512, "predictor bottleneck width (paper: 512)", minimum=1),
    }

    def __init__(self, ctx: BuildContext, **params) -> None:  # type: ignore[no-untyped-def]
        super().__init__(ctx, **params)
        hp = self.hparams
        self.encoder = ctx.encoder()
        self.projector = projector(ctx.protocol.latent_dim, int(hp["proj_dim"]), int(hp["proj_layers"]))
        self.predictor = self.build_predictor(int(hp["proj_dim"]), int(hp["pred_hidden"]))

    def build_predictor(self, dim: int, hidden: int) -> nn.Module:
        """The prediction head h (VI-SimSiam replaces it with a distribution-valued one)."""
        return predictor(dim, hidden)

    def loss(self, views: torch.Tensor) -> dict[str, torch.Tensor]:
        z1 = self.projector(self.encoder(views[:, 0]))
        z2 = self.projector(self.encoder(views[:, 1]))
        p1, p2 = self.predictor(z1), self.predictor(z2)
        d = 0.5 * (negative_cosine(p1, z2) + negative_cosine(p2, z1))
        with torch.no_grad():
            output_std = F.normalize(z1.float(), dim=1).std(0).mean()
        return {"loss": d, "negative_cosine": d, "output_std": output_std}

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        return self.encoder(x)


@hookimpl
def register_methods(register) -> None:  # type: ignore[no-untyped-def]
    register(SimSiam)

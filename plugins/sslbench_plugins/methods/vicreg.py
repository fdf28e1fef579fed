"""VICReg (Bardes, Ponce & LeCun 2022, "VICReg: Variance-Invariance-Covariance Regularization for
Self-Supervised Learning").

Both views go through the protocol's encoder and an expander MLP, giving embeddings Z, Z' (n x d).
Loss (paper eq. 6): ``lambda * s(Z, Z') + mu * v + nu * c``, with the three terms logged separately:

* ``invariance`` s(Z, Z') (eq. 5): mean squared distance between the paired embeddings,
  ``(1/n) sum_i ||z_i - z'_i||^2 / d`` (the official code's ``F.mse_loss``);
* ``variance`` (eq. 1-2): hinge on the per-dimension standard deviation,
  ``v(Z) = (1/d) sum_j max(0, gamma - sqrt(Var(z^j) + eps))``, gamma = 1, eps = 1e-4; the logged term
  is the mean over the two branches ``(v(Z) + v(Z')) / 2``, as in the official code (the paper's eq. 6
  writes the sum; the published weights 25/25/1 were tuned with the code);
* ``covariance`` (eq. 3-4): ``c(Z) = (1/d) sum_{i != j} C(Z)_ij^2`` with C the (unbiased) covariance
  matrix, summed over the two branches ``c(Z) + c(Z')``, as in both paper and code.

Published weights: lambda = 25, mu = 25, nu = 1. The published expander is three layers of 8192 for a
2048-d ResNet-50 representation on ImageNet; the default here, 2048-2048-2048 (Linear-BN-ReLU twice,
then Linear), is the CIFAR-scale width used by reproductions such as solo-learn and keeps the CPU cost
near the encoder's (``-p vicreg.expander_dim=8192`` for the ImageNet size). Each branch goes through the
networks separately, so BatchNorm statistics are per view, as in the official code.

The representation is the encoder output, before the expander.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from sslbench import hookimpl
from sslbench.sdk.api import BuildContext, Method, Param


def expander(in_dim: int, hidden: int, out_dim: int) -> nn.Sequential:
    """VICReg's expander: Linear-BN-ReLU, Linear-BN-ReLU, Linear (paper sec. 4.2)."""
    return nn.Sequential(
        nn.Linear(in_dim, hidden), nn.BatchNorm1d(hidden), nn.ReLU(inplace=True),
        nn.Linear(hidden, hidden), nn.BatchNorm1d(hidden), nn.ReLU(inplace=True),
        nn.Linear(hidden, out_dim),
    )


def invariance_term(z1: torch.Tensor, z2: torch.Tensor) -> torch.Tensor:
    """s(Z, Z') (VICReg eq. 5), as the mean over samples and dimensions of (z - z')^2."""
    return F.mse_loss(z1, z2)


def variance_term(z: torch.Tensor, gamma: float = 1.0, eps: float = 1e-4) -> torch.Tensor:
    """v(Z) (VICReg eq. 1-2): mean over dimensions of max(0, gamma - sqrt(Var(z^j) + eps))."""
    std = torch.sqrt(z.var(dim=0) + eps)
    return F.relu(gamma - std).mean()


def covariance_term(z: torch.Tensor) -> torch.Tensor:
    """c(Z) (VICReg eq. 3-4): sum of the squared off-diagonal entries of the covariance matrix
    C(Z) = (Z - mean)^T (Z - mean) / (n - 1), divided by d.

    The sum is ||C||_F^2 - sum_j C_jj^2. When the batch is smaller than d (128 images, d = 2048) the
    Frobenius norm is computed from the n x n Gram matrix, ||Zc^T Zc||_F = ||Zc Zc^T||_F, which is
    the same number at n/d of the cost of forming the d x d matrix."""
    n, d = z.shape
    zc = z - z.mean(0)
    diagonal = zc.pow(2).sum(0) / (n - 1)
    inner = zc @ zc.t() if n < d else zc.t() @ zc
    frobenius_sq = inner.pow(2).sum() / (n - 1) ** 2
    return (frobenius_sq - diagonal.pow(2).sum()) / d


class VICReg(Method):
    name = "vicreg"
    family = "discriminative"
    description = "VICReg: invariance + variance + covariance regularisation on an expander, no negatives"
    view_major = True  # each view goes through the networks on its own
    params = {
        "invariance_weight": Param(25.0, "lambda, weight of the invariance term (paper: 25)", minimum=0.0),
        "variance_weight": Param(25.0, "mu, weight of the variance term (paper: 25)", minimum=0.0),
        "covariance_weight": Param(1.0, "nu, weight of the covariance term (paper: 1)", minimum=0.0),
        "gamma": Param(1.0, "target standard deviation of the variance hinge (paper: 1)", minimum=0.0),
        "eps": Param(1e-4, "epsilon inside the variance term's square root (paper: 1e-4)", minimum=0.0),
        "expander_hidden": Param(2048, "expander hidden width (paper on ImageNet: 8192)", minimum=1),
        "expander_dim": Param(2048, "expander output size d (paper on ImageNet: 8192)", minimum=2),
    }

    def __init__(self, ctx: BuildContext, **params) -> None:  # type: ignore[no-untyped-def]
        super().__init__(ctx, **params)
        self.encoder = ctx.encoder()
        self.expander = expander(ctx.protocol.latent_dim, int(self.hparams["expander_hidden"]), int(self.hparams["expander_dim"]))

    def terms(self, z1: torch.Tensor, z2: torch.Tensor) -> dict[str, torch.Tensor]:
        """The three VICReg terms and their weighted sum for expander outputs ``z1``, ``z2`` (n, d)."""
        hp = self.hparams
        gamma, eps = float(hp["gamma"]), float(hp["eps"])
        inv = invariance_term(z1, z2)
        var = 0.5 * (variance_term(z1, gamma, eps) + variance_term(z2, gamma, eps))
        cov = covariance_term(z1) + covariance_term(z2)
        total = hp["invariance_weight"] * inv + hp["variance_weight"] * var + hp["covariance_weight"] * cov
        return {"loss": total, "invariance": inv, "variance": var, "covariance": cov}

    def loss(self, views: torch.Tensor) -> dict[str, torch.Tensor]:
        if views.shape[0] < 2:
            raise ValueError("VICReg's variance and covariance terms need a batch of at least 2 images")
        z1 = self.expander(self.encoder(views[:, 0]))
        z2 = self.expander(self.encoder(views[:, 1]))
        # variances and covariances are computed in fp32 even when the loop runs under bf16 autocast
        with torch.autocast(device_type=z1.device.type, enabled=False):
            return self.terms(z1.float(), z2.float())

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        return self.encoder(x)


@hookimpl
def register_methods(register) -> None:  # type: ignore[no-untyped-def]
    register(VICReg)

"""The Power Spherical distribution on the unit sphere S^{d-1} (De Cao & Aziz 2020, "The Power
Spherical distribution", eq. 2-3), used by VI-SimSiam as the likelihood of a view's projection.

Density with respect to the uniform (surface) measure on S^{d-1}:

    p(z; mu, kappa) = C(kappa, d) * (1 + mu^T z)^kappa,      ||mu|| = ||z|| = 1, kappa >= 0,

    log C(kappa, d) = -[(alpha + beta) ln 2 + lgamma(alpha) - lgamma(alpha + beta) + beta ln pi],
    alpha = (d - 1) / 2 + kappa,   beta = (d - 1) / 2.

Unlike the von Mises-Fisher distribution, the normaliser needs no Bessel function, so its gradient
in kappa is stable for every kappa (the reason VI-SimSiam uses it).
"""

from __future__ import annotations

import math

import torch


def log_normaliser(kappa: torch.Tensor, dim: int) -> torch.Tensor:
    """log C(kappa, d) of the Power Spherical density on S^{dim-1} (De Cao & Aziz 2020, eq. 3).

    ``kappa`` may have any shape; ``dim`` is the ambient dimension d >= 2 of the unit vectors.
    """
    if dim < 2:
        raise ValueError(f"the Power Spherical distribution needs unit vectors of dimension >= 2, got {dim}")
    beta = (dim - 1) / 2.0
    alpha = beta + kappa
    return -(
        (alpha + beta) * math.log(2.0)
        + torch.lgamma(alpha)
        - torch.lgamma(alpha + beta)
        + beta * math.log(math.pi)
    )


def log_prob(z: torch.Tensor, mu: torch.Tensor, kappa: torch.Tensor) -> torch.Tensor:
    """log p(z; mu, kappa) = log C(kappa, d) + kappa * log1p(mu^T z) for unit vectors (De Cao & Aziz
    2020, eq. 2).

    ``z`` and ``mu`` are (..., d) unit vectors (normalise them first), ``kappa`` is (...) or (..., 1)
    and positive. The cosine is clamped to one machine epsilon above -1, so an antipodal ``z`` gives
    a large finite penalty instead of -inf. Half-precision inputs (bf16 autocast) are computed in
    float32: lgamma of (d - 1) / 2 + kappa loses every digit that matters in bf16.
    """
    if z.dtype in (torch.float16, torch.bfloat16) or mu.dtype in (torch.float16, torch.bfloat16) or kappa.dtype in (torch.float16, torch.bfloat16):
        z, mu, kappa = z.float(), mu.float(), kappa.float()
    if kappa.dim() == z.dim():
        kappa = kappa.squeeze(-1)
    cosine = (mu * z).sum(-1).clamp(min=-1.0 + torch.finfo(z.dtype).eps, max=1.0)
    return log_normaliser(kappa, z.shape[-1]) + kappa * torch.log1p(cosine)

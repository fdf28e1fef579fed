"""Loss building blocks shared by method plugins, each with the equation it implements."""

from __future__ import annotations

import math
from functools import lru_cache

import torch
from torch.nn import functional as F

LOG_2PI = math.log(2 * math.pi)


def gaussian_kl_standard(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """KL(N(mu, diag exp(logvar)) || N(0, I)) per sample: 0.5 * sum(mu^2 + var - 1 - logvar)."""
    return 0.5 * (mu.pow(2) + logvar.exp() - 1.0 - logvar).sum(-1)


def gaussian_entropy(logvar: torch.Tensor) -> torch.Tensor:
    """Entropy of a diagonal Gaussian per sample: 0.5 * sum(log(2 pi e) + log sigma^2)."""
    return 0.5 * (LOG_2PI + 1.0 + logvar).sum(-1)


def gaussian_nll(x: torch.Tensor, mean: torch.Tensor, variance: float) -> torch.Tensor:
    """-log N(x; mean, variance I) per sample, summed over pixels (constant included)."""
    d = x[0].numel()
    sq = (x - mean).pow(2).flatten(1).sum(-1)
    return 0.5 * sq / variance + 0.5 * d * (LOG_2PI + math.log(variance))


def bernoulli_nll(x: torch.Tensor, logits: torch.Tensor) -> torch.Tensor:
    """-log Bernoulli(x; sigmoid(logits)) per sample, summed over pixels (x may be grey levels)."""
    return F.binary_cross_entropy_with_logits(logits, x, reduction="none").flatten(1).sum(-1)


def reparameterise(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """z = mu + sigma * eps, eps ~ N(0, I), in fp32 even under bf16 autocast (exp of a bf16
    log-variance and the sum with mu would lose the small sigmas)."""
    with torch.autocast(device_type=mu.device.type, enabled=False):
        mu = mu.float()
        return mu + torch.randn_like(mu) * torch.exp(0.5 * logvar.float())


def nt_xent(z1: torch.Tensor, z2: torch.Tensor, temperature: float) -> torch.Tensor:
    """SimCLR's NT-Xent (Chen et al. 2020, eq. 1), averaged over the 2B anchors.

    For anchor i its positive is the other view of the same image; the 2B-2 other views are the
    negatives; similarity is cosine / temperature. The similarities are computed in fp32 even under bf16 autocast.
    """
    b = z1.shape[0]
    with torch.autocast(device_type=z1.device.type, enabled=False):
        z = F.normalize(torch.cat([z1.float(), z2.float()], 0), dim=1)
        sim = z @ z.t() / temperature
        sim.fill_diagonal_(float("-inf"))
        return F.cross_entropy(sim, positive_index(b, z.device))


def _positive_index(b: int, device: torch.device) -> torch.Tensor:
    return torch.cat([torch.arange(b, 2 * b, device=device), torch.arange(0, b, device=device)])


_cached_positive_index = lru_cache(maxsize=16)(_positive_index)


def positive_index(b: int, device: torch.device) -> torch.Tensor:
    """NT-Xent's targets for 2B anchors, ``[B, ..., 2B-1, 0, ..., B-1]``, made on ``device`` (no
    host-to-device copy per step) and cached per batch size and device; inside ``torch.compile``
    made in the graph instead."""
    compiling = getattr(getattr(torch, "compiler", None), "is_compiling", None)
    if compiling is not None and compiling():
        return _positive_index(b, device)
    return _cached_positive_index(b, device)

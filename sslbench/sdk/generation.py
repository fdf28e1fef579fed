"""Helpers the generative evaluators share: frozen evaluation, batching, class-conditional Gaussians.

``mse``, ``fid`` and ``samples`` all decode representations into images through
``inputs.decoder()`` (the method's own decoder, or the one the engine trains on frozen
representations); class-conditional generation fits one full-covariance Gaussian per class to the
train representations and samples from it (SimVAE paper, appendix A.7.6).
"""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass
from typing import Callable, Iterator

import torch

from sslbench.sdk.api import EvalInputs, Method


@contextmanager
def frozen(method: Method) -> Iterator[None]:
    """Eval mode and no gradients for the duration; the method's previous mode is restored."""
    was_training = method.training
    method.eval()
    try:
        with torch.no_grad():
            yield
    finally:
        method.train(was_training)


def in_batches(fn: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor, batch_size: int) -> torch.Tensor:
    """``fn`` applied to ``x`` in chunks of ``batch_size`` rows, concatenated."""
    if x.shape[0] == 0:
        raise ValueError("in_batches got no rows")
    return torch.cat([fn(x[i : i + batch_size]) for i in range(0, x.shape[0], batch_size)])


def as_float_images(x_uint8: torch.Tensor) -> torch.Tensor:
    return x_uint8.float().div(255.0)


@dataclass
class ClassGaussians:
    """One full-covariance Gaussian per class, fitted to representations (float64)."""

    classes: torch.Tensor  # (K,) class labels present in the fit
    means: torch.Tensor  # (K, D)
    chols: torch.Tensor  # (K, D, D) Cholesky factors of the covariances

    @classmethod
    def fit(cls, z: torch.Tensor, y: torch.Tensor, ridge: float = 1e-6) -> "ClassGaussians":
        """Sample mean and covariance (n - 1 normalisation) per class, plus ``ridge`` times the mean
        variance on the diagonal (raised tenfold until the Cholesky factorisation succeeds), so that a
        class with fewer images than dimensions still gets a proper Gaussian."""
        z = z.detach().double()
        classes = torch.unique(y)
        means, chols = [], []
        eye = torch.eye(z.shape[1], dtype=z.dtype, device=z.device)
        for c in classes:
            zc = z[y == c]
            mean = zc.mean(0)
            centred = zc - mean
            cov = centred.t() @ centred / max(zc.shape[0] - 1, 1)
            scale = float(cov.diagonal().mean()) or 1.0
            eps = ridge
            for _ in range(8):
                chol, info = torch.linalg.cholesky_ex(cov + eps * scale * eye)
                if int(info) == 0:
                    break
                eps *= 10
            else:
                raise ValueError(f"class {int(c)}: the representation covariance is not positive definite even with a ridge of {eps:g}; the representations contain NaN or inf")
            means.append(mean)
            chols.append(chol)
        return cls(classes=classes, means=torch.stack(means), chols=torch.stack(chols))

    def sample(self, counts: torch.Tensor, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        """``counts[k]`` samples of class ``classes[k]``; returns float32 (N, D) and their labels (N,).

        ``generator`` is a CPU generator (reproducible across devices); samples end on the means' device."""
        zs, ys = [], []
        for k, n in enumerate(counts.tolist()):
            if n <= 0:
                continue
            eps = torch.randn(int(n), self.means.shape[1], generator=generator, dtype=torch.float64).to(self.means.device)
            zs.append(self.means[k] + eps @ self.chols[k].t())
            ys.append(torch.full((int(n),), int(self.classes[k]), dtype=torch.long, device=self.means.device))
        if not zs:
            raise ValueError("ClassGaussians.sample was asked for no samples")
        return torch.cat(zs).float(), torch.cat(ys)


def decode_all(inputs: EvalInputs, z: torch.Tensor, batch_size: int = 500) -> torch.Tensor:
    """Images in [0, 1] decoded from representations ``z`` by ``inputs.decoder()``, in batches."""
    decoder = inputs.decoder()
    with frozen(inputs.method):
        return in_batches(lambda chunk: decoder(chunk.to(inputs.device)).float().clamp(0, 1), z, batch_size)


def needs_labels(inputs: EvalInputs) -> str | None:
    if inputs.data.train_y.dim() != 1 or inputs.data.num_classes < 2:
        return f"{inputs.data.name} has no class labels to condition on"
    return None


__all__ = ["ClassGaussians", "as_float_images", "decode_all", "frozen", "in_batches", "needs_labels"]

"""Does a method's per-image uncertainty grow when the image gets worse?

For methods with the ``uncertainty`` capability (VI-SimSiam's 1 / kappa, a VAE's posterior variance,
...), test images are corrupted progressively by three corruptions, each at ``levels`` strengths s in
(0, 1] plus the clean image (s = 0):

* ``blur``: Gaussian blur with sigma = s * side / 10 pixels (reflect padding);
* ``noise``: additive Gaussian noise with standard deviation 0.5 s, clipped to [0, 1];
* ``occlusion``: a mid-grey (0.5) square covering a fraction s / 2 of the image at a random place.

For each corruption the score is Spearman's rank correlation between the strength and the method's
uncertainty, pooled over every (image, strength) pair (``uncertainty_spearman_<corruption>``; +1: the
uncertainty always rises with the corruption; about 0: unrelated); ``uncertainty_spearman`` is the
mean over the three corruptions and ``uncertainty_clean_mean`` the mean uncertainty on clean images.
Noise and occlusion positions are drawn from the run's seed, on the same random subset of at most
``max_images`` test images for every corruption. A constant uncertainty has no rank correlation: its
score is NaN.

Artefacts in the run folder: ``uncertainty_hist.png`` (histogram of the uncertainty over the clean
test images) and ``uncertainty_vs_corruption.png`` (mean uncertainty against strength).
"""

from __future__ import annotations

import math
import os
import warnings
from typing import Any, Callable

import numpy as np
import torch
from torch.nn import functional as F

from sslbench import hookimpl
from sslbench.sdk.api import EvalInputs, Evaluator, Metric, Param, Picture

Corruption = Callable[[torch.Tensor, float, torch.Generator], torch.Tensor]


def gaussian_blur(x: torch.Tensor, strength: float, g: torch.Generator) -> torch.Tensor:
    """Separable Gaussian blur of (B, C, H, W) with sigma = strength * min(H, W) / 10 pixels."""
    sigma = strength * min(x.shape[-2:]) / 10.0
    if sigma <= 0:
        return x
    radius = min(int(math.ceil(3 * sigma)), min(x.shape[-2:]) - 1)
    t = torch.arange(-radius, radius + 1, device=x.device, dtype=x.dtype)
    kernel = torch.exp(-0.5 * (t / sigma) ** 2)
    kernel = kernel / kernel.sum()
    c = x.shape[1]
    out = F.pad(x, (radius, radius, radius, radius), mode="reflect")
    out = F.conv2d(out, kernel.view(1, 1, 1, -1).expand(c, 1, 1, -1), groups=c)
    return F.conv2d(out, kernel.view(1, 1, -1, 1).expand(c, 1, -1, 1), groups=c)


def additive_noise(x: torch.Tensor, strength: float, g: torch.Generator) -> torch.Tensor:
    """x + N(0, (0.5 * strength)^2), clipped to [0, 1]."""
    noise = torch.randn(x.shape, generator=g, device=x.device, dtype=x.dtype)
    return (x + 0.5 * strength * noise).clamp(0, 1)


def occlusion(x: torch.Tensor, strength: float, g: torch.Generator) -> torch.Tensor:
    """A mid-grey square covering a fraction strength / 2 of each image, at a random place."""
    b, _, h, w = x.shape
    side_h = int(round(math.sqrt(strength / 2) * h))
    side_w = int(round(math.sqrt(strength / 2) * w))
    if side_h == 0 or side_w == 0:
        return x
    top = (torch.rand(b, generator=g, device=x.device) * (h - side_h + 1)).long().view(b, 1, 1)
    left = (torch.rand(b, generator=g, device=x.device) * (w - side_w + 1)).long().view(b, 1, 1)
    rows = torch.arange(h, device=x.device).view(1, h, 1)
    cols = torch.arange(w, device=x.device).view(1, 1, w)
    inside = (rows >= top) & (rows < top + side_h) & (cols >= left) & (cols < left + side_w)
    return torch.where(inside.unsqueeze(1), torch.full_like(x, 0.5), x)


CORRUPTIONS: dict[str, Corruption] = {"blur": gaussian_blur, "noise": additive_noise, "occlusion": occlusion}


def spearman(strength: np.ndarray, uncertainty: np.ndarray) -> float:
    """Spearman's rank correlation (ties get average ranks); NaN when either input is constant."""
    from scipy.stats import spearmanr

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return float(spearmanr(strength, uncertainty).statistic)


class UncertaintyEvaluator(Evaluator):
    name = "uncertainty"
    description = "Spearman correlation between corruption strength (blur, noise, occlusion) and the method's uncertainty"
    requires = frozenset({"uncertainty"})
    params = {
        "levels": Param(5, "corruption strengths per corruption, besides the clean image", minimum=1),
        "max_images": Param(1000, "test images used (a seeded random subset)", minimum=2),
        "batch_size": Param(256, "images per uncertainty call", minimum=1),
    }
    metrics = (
        Metric("uncertainty_spearman", unit="correlation", higher_is_better=True, role="headline", section="uncertainty",
               help="mean over the corruptions of Spearman's correlation between corruption strength and uncertainty"),
        *(
            Metric(f"uncertainty_spearman_{c}", unit="correlation", higher_is_better=True, role="headline", section="uncertainty",
                   help=f"Spearman's correlation between {c} strength and the method's uncertainty")
            for c in CORRUPTIONS
        ),
        Metric("uncertainty_clean_mean", unit="score", higher_is_better=None, role="headline", section="uncertainty",
               help="mean uncertainty on the clean test images (in the method's own units)"),
    )
    pictures = (
        Picture("uncertainty_hist.png", "histogram of the uncertainty on clean test images", section="Uncertainty"),
        Picture("uncertainty_vs_corruption.png", "mean uncertainty against corruption strength", section="Uncertainty"),
    )

    def evaluate(self, inputs: EvalInputs, **options: Any) -> dict[str, float]:
        method = inputs.method
        test_x = inputs.data.test_x
        n = min(int(options["max_images"]), test_x.shape[0])
        pick = torch.Generator().manual_seed(inputs.seed)
        images = test_x[torch.randperm(test_x.shape[0], generator=pick)[:n].to(test_x.device)]
        g = torch.Generator(device=inputs.device).manual_seed(inputs.seed)
        strengths = np.linspace(0.0, 1.0, int(options["levels"]) + 1)
        batch = int(options["batch_size"])

        def uncertainty(corrupt: Corruption, strength: float) -> np.ndarray:
            parts = []
            for start in range(0, n, batch):
                x = images[start : start + batch].to(inputs.device).float().div_(255)
                parts.append(method.uncertainty(corrupt(x, strength, g)).float().reshape(-1).cpu())
            u = torch.cat(parts).numpy()
            if u.shape[0] != n or not np.isfinite(u).all():
                raise ValueError(
                    f"{method.name}.uncertainty must return one finite value per image; got shape "
                    f"{u.shape} with {int((~np.isfinite(u)).sum())} non-finite values"
                )
            return u

        was_training = method.training
        method.eval()
        try:
            with torch.no_grad():
                clean = uncertainty(lambda x, s, g: x, 0.0)
                curves = {
                    name: [clean] + [uncertainty(corrupt, float(s)) for s in strengths[1:]]
                    for name, corrupt in CORRUPTIONS.items()
                }
        finally:
            method.train(was_training)

        scores: dict[str, float] = {}
        for name, per_level in curves.items():
            level = np.repeat(strengths, n)
            scores[f"uncertainty_spearman_{name}"] = spearman(level, np.concatenate(per_level))
        scores["uncertainty_spearman"] = float(np.mean([scores[f"uncertainty_spearman_{c}"] for c in CORRUPTIONS]))
        scores["uncertainty_clean_mean"] = float(clean.mean())
        if inputs.run_dir:
            self._plot(inputs.run_dir, method.name, clean, strengths, curves)
        return scores

    @staticmethod
    def _plot(run_dir: str, method_name: str, clean: np.ndarray, strengths: np.ndarray, curves: dict[str, list[np.ndarray]]) -> None:
        """Write the histogram and the strength curves as PNG files (Agg canvas, no pyplot state)."""
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure

        os.makedirs(run_dir, exist_ok=True)
        fig = Figure(figsize=(5, 3.5))
        FigureCanvasAgg(fig)
        ax = fig.add_subplot()
        ax.hist(clean, bins=50)
        ax.set_xlabel("uncertainty")
        ax.set_ylabel("test images")
        ax.set_title(f"{method_name}: uncertainty on clean test images", fontsize=9)
        fig.tight_layout()
        fig.savefig(os.path.join(run_dir, "uncertainty_hist.png"), dpi=100)

        fig = Figure(figsize=(5, 3.5))
        FigureCanvasAgg(fig)
        ax = fig.add_subplot()
        for name, per_level in curves.items():
            ax.plot(strengths, [u.mean() for u in per_level], marker="o", label=name)
        ax.set_xlabel("corruption strength")
        ax.set_ylabel("mean uncertainty")
        ax.set_title(f"{method_name}: uncertainty under corruption", fontsize=9)
        ax.legend()
        fig.tight_layout()
        fig.savefig(os.path.join(run_dir, "uncertainty_vs_corruption.png"), dpi=100)


@hookimpl
def register_evaluators(register) -> None:  # type: ignore[no-untyped-def]
    register(UncertaintyEvaluator)

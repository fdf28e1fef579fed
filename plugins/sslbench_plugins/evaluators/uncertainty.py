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
A pooled correlation mixes two things: whether each image's uncertainty rises with its corruption,
and how the images' uncertainty levels differ. ``uncertainty_spearman_within`` keeps the first only:
for each image, Spearman's correlation across the strengths (an image whose uncertainty does not
change with the strength counts 0), averaged over the images, then over the corruptions.

The untrained reference (``untrained``, on by default): the same pooled and within-image means on a
freshly initialised copy of the method (same class and parameters, ``torch.manual_seed(seed)``
before it is built, in eval mode), fed the very same corrupted images:
``uncertainty_spearman_untrained`` and ``uncertainty_spearman_within_untrained``. A negative
correlation that the untrained copy shares comes from the architecture, not from training. The
reference is left out when the method cannot be rebuilt from ``(ctx, **hparams)`` (a warning says
so) and its pooled mean when the untrained uncertainty is constant.

Noise and occlusion positions are drawn from the run's seed, on the same random subset of at most
``max_images`` test images for every corruption. A constant uncertainty has no rank correlation: its
pooled score is NaN.

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


def spearman_within(per_level: list[np.ndarray]) -> float:
    """The mean over images of Spearman's correlation between strength and uncertainty across one
    image's strengths: ``per_level[l][i]`` is image i's uncertainty at the l-th (increasing)
    strength. Ties get average ranks; an image whose uncertainty is the same at every strength has
    no rank order and counts 0."""
    from scipy.stats import rankdata

    u = np.stack(per_level, 1).astype(np.float64)  # (images, strengths)
    ranks = rankdata(u, axis=1)
    ranks -= ranks.mean(1, keepdims=True)
    level = np.arange(u.shape[1], dtype=np.float64)
    level -= level.mean()
    norm = np.sqrt((ranks**2).sum(1) * (level**2).sum())
    rho = np.divide(ranks @ level, norm, out=np.zeros(u.shape[0]), where=norm > 0)
    return float(rho.mean())


def untrained_copy(method: Any, seed: int, device: torch.device) -> Any:
    """A freshly initialised copy of ``method`` (same class, same parameters, ``torch.manual_seed(seed)``
    before it is built; the global random state is restored after), on ``device`` in eval mode; None,
    with a warning, when the class cannot be built from ``(method.ctx, **method.hparams)``."""
    try:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            fresh = type(method)(method.ctx, **method.hparams)
    except Exception as exc:  # noqa: BLE001 - any constructor; the trained model's scores stand alone
        warnings.warn(f"uncertainty: no untrained reference for {method.name} ({type(exc).__name__}: {exc})", stacklevel=2)
        return None
    return fresh.to(device).eval()


class UncertaintyEvaluator(Evaluator):
    name = "uncertainty"
    description = "Spearman correlation between corruption strength (blur, noise, occlusion) and the method's uncertainty"
    requires = frozenset({"uncertainty"})
    params = {
        "levels": Param(5, "corruption strengths per corruption, besides the clean image", minimum=1),
        "max_images": Param(1000, "test images used (a seeded random subset)", minimum=2),
        "batch_size": Param(256, "images per uncertainty call", minimum=1),
        "untrained": Param(True, "also score a freshly initialised copy of the method, the untrained reference"),
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
        Metric("uncertainty_spearman_within", unit="correlation", higher_is_better=True, role="headline", section="uncertainty",
               help="per image, Spearman's correlation between corruption strength and uncertainty, averaged over images and corruptions"),
        Metric("uncertainty_spearman_untrained", unit="correlation", higher_is_better=None, role="secondary", section="uncertainty",
               help="uncertainty_spearman of a freshly initialised copy of the method (what the architecture gives without training)"),
        Metric("uncertainty_spearman_within_untrained", unit="correlation", higher_is_better=None, role="secondary", section="uncertainty",
               help="uncertainty_spearman_within of a freshly initialised copy of the method"),
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
        models = [method]
        if options["untrained"]:
            fresh = untrained_copy(method, inputs.seed, inputs.device)
            if fresh is not None:
                models.append(fresh)

        def uncertainty(corrupt: Corruption, strength: float) -> list[np.ndarray]:
            """Each model's uncertainty of the same corrupted images (corrupted once per batch)."""
            parts: list[list[torch.Tensor]] = [[] for _ in models]
            for start in range(0, n, batch):
                x = corrupt(images[start : start + batch].to(inputs.device).float().div_(255), strength, g)
                for part, model in zip(parts, models):
                    part.append(model.uncertainty(x).float().reshape(-1).cpu())
            out = []
            for part, model in zip(parts, models):
                u = torch.cat(part).numpy()
                if u.shape[0] != n or not np.isfinite(u).all():
                    raise ValueError(
                        f"{model.name}.uncertainty must return one finite value per image; got shape "
                        f"{u.shape} with {int((~np.isfinite(u)).sum())} non-finite values"
                    )
                out.append(u)
            return out

        was_training = method.training
        method.eval()
        try:
            with torch.no_grad():
                clean = uncertainty(lambda x, s, g: x, 0.0)
                # curves[model][corruption]: the uncertainty at each strength, clean first
                curves: list[dict[str, list[np.ndarray]]] = [{} for _ in models]
                for name, corrupt in CORRUPTIONS.items():
                    levels = [clean] + [uncertainty(corrupt, float(s)) for s in strengths[1:]]
                    for m, curve in enumerate(curves):
                        curve[name] = [level[m] for level in levels]
        finally:
            method.train(was_training)

        def pooled(curve: dict[str, list[np.ndarray]]) -> dict[str, float]:
            level = np.repeat(strengths, n)
            return {c: spearman(level, np.concatenate(per_level)) for c, per_level in curve.items()}

        trained = pooled(curves[0])
        scores = {f"uncertainty_spearman_{c}": rho for c, rho in trained.items()}
        scores["uncertainty_spearman"] = float(np.mean(list(trained.values())))
        scores["uncertainty_clean_mean"] = float(clean[0].mean())
        scores["uncertainty_spearman_within"] = float(np.mean([spearman_within(v) for v in curves[0].values()]))
        if len(models) > 1:
            reference = float(np.mean(list(pooled(curves[1]).values())))
            if np.isfinite(reference):  # NaN: the untrained uncertainty is constant, it has no rank order
                scores["uncertainty_spearman_untrained"] = reference
            scores["uncertainty_spearman_within_untrained"] = float(np.mean([spearman_within(v) for v in curves[1].values()]))
        if inputs.run_dir:
            self._plot(inputs.run_dir, method.name, clean[0], strengths, curves[0])
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

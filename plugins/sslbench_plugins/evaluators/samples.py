"""Class-conditional generation from frozen representations (SimVAE paper, appendix A.7.6).

A full-covariance Gaussian is fitted to the train representations of each class; representations
sampled from it are decoded by ``inputs.decoder()`` (the method's own decoder, or one trained on the
frozen representations for methods without one). Written into ``inputs.run_dir`` (when set):

* ``reconstructions.png`` -- test images (odd rows) above their reconstructions (even rows);
* ``samples.png`` -- ``per_class`` generated images per class, one row per class.

Metric: ``samples_knn_agreement``, the fraction of generated images that, re-encoded by the method's
``embed``, a kNN classifier on the labelled train representations assigns to the class they were
sampled from (chance is 1 / classes). ``recon_knn_agreement`` is the same classifier on re-encoded
reconstructions of as many test images against their true labels: the ceiling the decode-then-encode
round trip allows, to read the first number against.

The module also holds the helpers the other generative evaluators (``mse``, ``fid``) share.
"""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

import torch

from sslbench import hookimpl
from sslbench.sdk.api import EvalInputs, Evaluator, Method, Param
from sslbench.sdk.evaluation import knn_predict
from sslbench.sdk.pictures import save_grid


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


class ClassConditionalSamples(Evaluator):
    name = "samples"
    on_save_images = True
    description = "class-conditional generation (Gaussian per class, decoded): PNG grids + kNN agreement of the samples"
    params = {
        "per_class": Param(10, "generated images per class drawn in samples.png", minimum=1),
        "num_recon": Param(32, "test images drawn beside their reconstructions in reconstructions.png", minimum=1),
        "num_eval": Param(100, "generated images per class scored by the kNN agreement", minimum=1),
        "k": Param(5, "k of the kNN classifier (train representations) that labels re-encoded images", minimum=1),
    }

    def applies(self, inputs: EvalInputs) -> str | None:
        return super().applies(inputs) or needs_labels(inputs)

    def evaluate(self, inputs: EvalInputs, **options) -> dict[str, float]:  # type: ignore[no-untyped-def]
        data = inputs.data
        per_class, num_eval, k = int(options["per_class"]), int(options["num_eval"]), int(options["k"])
        train_y = data.train_y.to(inputs.train_z.device)
        keep = train_y >= 0  # unlabelled images (-1) belong to no class Gaussian
        train_z, train_y = inputs.train_z[keep], train_y[keep]
        k = min(k, train_z.shape[0])
        gaussians = ClassGaussians.fit(train_z, train_y)
        generator = torch.Generator().manual_seed(inputs.seed)
        counts = torch.full((len(gaussians.classes),), max(num_eval, per_class))
        z, y = gaussians.sample(counts, generator)
        images = decode_all(inputs, z)

        def agreement(imgs: torch.Tensor, labels: torch.Tensor) -> float:
            with frozen(inputs.method):
                z_again = in_batches(lambda chunk: inputs.method.embed(chunk.to(inputs.device)).float(), imgs, 500)
            pred = knn_predict(train_z.float(), train_y, z_again.to(train_z.device), [k], data.num_classes)[k]
            return (pred == labels.to(pred.device)).float().mean().item()

        n_classes = len(gaussians.classes)
        per_row = images.view(n_classes, -1, *images.shape[1:])  # sampled class by class, in order
        eval_images = per_row[:, :num_eval].flatten(0, 1)
        eval_labels = y.view(n_classes, -1)[:, :num_eval].flatten()
        generator_test = torch.Generator().manual_seed(0)
        labelled_test = (data.test_y.cpu() >= 0).nonzero().squeeze(1)
        n_ref = min(num_eval * n_classes, labelled_test.numel())
        ref = labelled_test[torch.randperm(labelled_test.numel(), generator=generator_test)[:n_ref]].to(inputs.test_z.device)
        recon = decode_all(inputs, inputs.test_z[ref])
        metrics = {
            "samples_knn_agreement": agreement(eval_images, eval_labels),
            "recon_knn_agreement": agreement(recon, data.test_y.to(ref.device)[ref]),
        }

        if inputs.run_dir is not None:
            out = Path(inputs.run_dir)
            save_grid(per_row[:, :per_class], out / "samples.png")
            n = min(int(options["num_recon"]), data.test_x.shape[0])
            ncol = min(8, n)
            n -= n % ncol
            real = as_float_images(data.test_x[:n]).to(inputs.device)
            mine = decode_all(inputs, inputs.test_z[:n])
            pairs = torch.stack([real.view(-1, ncol, *real.shape[1:]), mine.view(-1, ncol, *mine.shape[1:])], 1)
            save_grid(pairs.flatten(0, 1), out / "reconstructions.png")
        return metrics


@hookimpl
def register_evaluators(register) -> None:  # type: ignore[no-untyped-def]
    register(ClassConditionalSamples)

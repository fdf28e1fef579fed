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

The helpers it shares with ``mse`` and ``fid`` live in :mod:`sslbench.sdk.generation`.
"""

from __future__ import annotations

from pathlib import Path

import torch

from sslbench import hookimpl
from sslbench.sdk.api import EvalInputs, Evaluator, Metric, Param, Picture
from sslbench.sdk.evaluation import knn_predict
from sslbench.sdk.generation import ClassGaussians, as_float_images, decode_all, frozen, in_batches, needs_labels
from sslbench.sdk.pictures import save_grid


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
    metrics = (
        Metric("samples_knn_agreement", unit="score", higher_is_better=True, role="headline", section="generation",
               help="share in [0, 1] (shown as is) of re-encoded samples that kNN assigns to the class they were sampled from"),
        Metric("recon_knn_agreement", unit="score", higher_is_better=True, role="headline", section="generation",
               help="share in [0, 1] (shown as is) of re-encoded test reconstructions that kNN assigns to their true class"),
    )
    pictures = (
        Picture("reconstructions.png", "test images (odd rows) above their reconstructions (even rows)", section="Reconstructions and samples"),
        Picture("samples.png", "class-conditional samples, one row per class", section="Reconstructions and samples"),
    )

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

"""Reconstruction error on the test set (SimVAE paper, appendix A.7.5 and A.7.6).

``mse`` is the per-pixel mean squared error between the test images (in [0, 1]) and the images
``inputs.decoder()`` makes from their frozen test representations, averaged over images, channels and
pixels. For a method with its own decoder (the VAE family) that decoder is used; otherwise the
protocol's decoder is trained on the frozen train representations, and ``mse_frozen_decoder`` is 1 so
that the two kinds of number are never compared unawares.
"""

from __future__ import annotations

import torch

from sslbench import hookimpl
from sslbench.sdk.api import EvalInputs, Evaluator, Metric, Param
from sslbench.sdk.generation import as_float_images, frozen


class ReconstructionMSE(Evaluator):
    name = "mse"
    description = "per-pixel reconstruction MSE of the test images (own decoder, or one trained on frozen representations)"
    params = {"batch_size": Param(500, "images decoded at a time", minimum=1)}
    metrics = (
        Metric("mse", unit="mse", higher_is_better=False, role="headline", section="generation",
               help="per-pixel mean squared error of the test reconstructions, images in [0, 1]"),
        Metric("mse_frozen_decoder", unit="flag", higher_is_better=None, role="detail", section="generation",
               help="1 when the decoder was trained on the frozen representations, 0 for the method's own decoder"),
    )

    def evaluate(self, inputs: EvalInputs, **options) -> dict[str, float]:  # type: ignore[no-untyped-def]
        decoder = inputs.decoder()
        x_all, z_all = inputs.data.test_x, inputs.test_z
        bs = int(options["batch_size"])
        total = torch.zeros((), dtype=torch.float64)
        with frozen(inputs.method):
            for i in range(0, x_all.shape[0], bs):
                x = as_float_images(x_all[i : i + bs].to(inputs.device))
                recon = decoder(z_all[i : i + bs].to(inputs.device)).float()
                if recon.shape != x.shape:
                    raise RuntimeError(
                        f"{inputs.method.name}'s decoder returned images of shape {tuple(recon.shape[1:])} for "
                        f"{inputs.data.name} images of shape {tuple(x.shape[1:])}; decode must return (B, C, H, W) in [0, 1]"
                    )
                total += (recon - x).pow(2).sum().double().cpu()
        mse = total.item() / x_all[0].numel() / x_all.shape[0]
        return {"mse": mse, "mse_frozen_decoder": 0.0 if inputs.has_own_decoder else 1.0}


@hookimpl
def register_evaluators(register) -> None:  # type: ignore[no-untyped-def]
    register(ReconstructionMSE)

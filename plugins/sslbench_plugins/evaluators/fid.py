"""Fréchet Inception Distance (Heusel et al. 2017) through pytorch-fid's InceptionV3.

FID = ||mu_1 - mu_2||^2 + Tr(S_1 + S_2 - 2 (S_1 S_2)^{1/2}) between Gaussians fitted to the 2048-d
pool features of two image sets. Reported against a fixed subset of ``num_images`` test images (the
same subset, chosen with seed 0, for every method and seed, so its statistics are computed once per
process):

* ``fid_recon`` -- reconstructions of those test images (``inputs.decoder()`` of their frozen
  representations);
* ``fid_samples`` -- as many class-conditional samples (a full-covariance Gaussian per class fitted to
  the labelled train representations, sampled in the proportions of the subset's labelled images and
  decoded; SimVAE paper A.7.6). Images labelled -1 (no class, e.g. CelebA images with zero or several
  hair colours) are in no class: they fit no Gaussian, and the sample set keeps the subset's size.

Images are prepared as pytorch-fid prepares image files: grey images repeated to three channels, values
quantised to 8 bits, then its InceptionV3 resizes to 299x299 (bilinear) and scales to [-1, 1].
The trace term is computed from the eigenvalues of S_1^{1/2} S_2 S_1^{1/2} (symmetric, so its square
root is stable), in float64; it agrees with pytorch-fid's ``calculate_frechet_distance``.

Weights: the evaluator option ``weights`` (a path; its default is ``$SSLBENCH_FID_WEIGHTS`` as set when
the plugin is imported, so the stored options name the file), else pytorch-fid's own file in torch's
hub cache (``$TORCH_HOME/hub/checkpoints/pt_inception-2015-12-05-6726825d.pth``), downloaded if
missing. FID with few images is biased upwards: compare numbers only at the same
``num_images``.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any
from unittest import mock

import torch
from torch import nn
from torch.nn import functional as F

from sslbench import hookimpl
from sslbench.sdk.api import DataError, EvalInputs, Evaluator, Metric, Param
from sslbench.sdk.generation import ClassGaussians, as_float_images, decode_all, needs_labels
from sslbench.sdk.numerics import strict

WEIGHTS_ENV = "SSLBENCH_FID_WEIGHTS"
WEIGHTS_FILE = "pt_inception-2015-12-05-6726825d.pth"

_NETWORKS: dict[tuple[str, str], nn.Module] = {}
_STATS: dict[tuple[Any, ...], tuple[torch.Tensor, torch.Tensor]] = {}


def _how_to_provide() -> str:
    hub = Path(torch.hub.get_dir()) / "checkpoints" / WEIGHTS_FILE
    return (
        f"Give a local copy of pytorch-fid's {WEIGHTS_FILE}: set {WEIGHTS_ENV}=/path/to/{WEIGHTS_FILE}, "
        f"or pass it to the fid evaluator (`sslbench run ... -e fid -p fid.weights=PATH`), or put the file at {hub}."
    )


def resolve_weights(option: str) -> str | None:
    """The local weights file to use (the option, else ``$SSLBENCH_FID_WEIGHTS``), or None for
    pytorch-fid's own cache/download. A named file that does not exist is an error."""
    if option:
        path, source = option, "the fid evaluator's `weights` option"
    elif os.environ.get(WEIGHTS_ENV):
        path, source = os.environ[WEIGHTS_ENV], f"${WEIGHTS_ENV}"
    else:
        return None
    path = os.path.expanduser(path)
    if not os.path.isfile(path):
        raise DataError(f"FID weights file {path} (from {source}) does not exist. {_how_to_provide()}")
    return path


def load_feature_network(weights: str, device: torch.device) -> nn.Module:
    """pytorch-fid's InceptionV3 returning the 2048-d pool features, in eval mode on ``device``.

    Cached per (weights, device). Raises :class:`DataError` saying how to provide the weights when
    the named file is unusable or, without one, the download fails (no internet)."""
    from pytorch_fid import inception

    path = resolve_weights(weights)
    key = (path or "pytorch-fid", str(device))
    if key in _NETWORKS:
        return _NETWORKS[key]
    if path is not None:
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as exc:  # noqa: BLE001 - pickle/zip/IO errors come in many types
            raise DataError(f"FID weights file {path} is not a readable PyTorch state dict ({type(exc).__name__}: {exc}). {_how_to_provide()}") from exc

        def fetch(url: str, *args: Any, **kwargs: Any) -> Any:
            return state
    else:
        download = inception.load_state_dict_from_url

        def fetch(url: str, *args: Any, **kwargs: Any) -> Any:
            try:
                return download(url, progress=False)
            except Exception as exc:  # noqa: BLE001 - network failures come in many types
                raise DataError(f"could not get the FID Inception weights from {url} ({type(exc).__name__}: {exc}). {_how_to_provide()}") from exc

    # pytorch-fid builds its network and fetches the weights in one call; hand it ours.
    with mock.patch.object(inception, "load_state_dict_from_url", fetch):
        try:
            net = inception.InceptionV3([inception.InceptionV3.BLOCK_INDEX_BY_DIM[2048]])
        except DataError:
            raise
        except (RuntimeError, KeyError, TypeError) as exc:
            raise DataError(f"FID weights file {path} does not fit pytorch-fid's FID InceptionV3 ({str(exc)[:200]}). {_how_to_provide()}") from exc
    net = net.to(device).eval()
    _NETWORKS[key] = net
    return net


def prepare(images: torch.Tensor) -> torch.Tensor:
    """Float images in [0, 1] as pytorch-fid reads image files: 3 channels, 8-bit levels."""
    if images.shape[1] == 1:
        images = images.expand(-1, 3, -1, -1)
    elif images.shape[1] != 3:
        raise ValueError(f"FID needs grey or RGB images, got {images.shape[1]} channels")
    return images.clamp(0, 1).mul(255).round().div(255)


#: images per Inception pass on CUDA at least (batch 50 leaves a GPU mostly idle; the batch does not
#: change the features, each image is computed on its own in eval mode)
CUDA_BATCH = 200


def batch_for(device: torch.device, batch_size: int) -> int:
    """The Inception batch: ``batch_size`` on CPU, at least :data:`CUDA_BATCH` on CUDA."""
    return max(batch_size, CUDA_BATCH) if device.type == "cuda" else batch_size


@torch.no_grad()
def features(net: nn.Module, images: torch.Tensor, device: torch.device, batch_size: int, precision: str) -> torch.Tensor:
    """(N, F) float64 features of images (N, C, H, W) in [0, 1]: the network's pooled output.

    ``net`` maps (B, 3, H, W) to a list whose first entry is (B, F, h, w) (pytorch-fid's interface);
    spatial maps larger than 1x1 are average-pooled, as pytorch-fid does."""
    out = []
    batch_size = batch_for(device, batch_size)
    for i in range(0, images.shape[0], batch_size):
        x = prepare(images[i : i + batch_size].to(device).float())
        with strict(), torch.autocast(device.type, dtype=torch.bfloat16, enabled=precision == "bf16"):
            f = net(x)[0]
        if f.shape[2:] != (1, 1):
            f = F.adaptive_avg_pool2d(f, (1, 1))
        out.append(f.flatten(1).double().cpu())
    return torch.cat(out)


def statistics(feats: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean and covariance (n - 1 normalisation, like numpy.cov) of (N, F) features."""
    mu = feats.mean(0)
    centred = feats - mu
    return mu, centred.t() @ centred / (feats.shape[0] - 1)


def frechet_distance(mu1: torch.Tensor, s1: torch.Tensor, mu2: torch.Tensor, s2: torch.Tensor) -> float:
    """||mu1 - mu2||^2 + Tr(S1) + Tr(S2) - 2 Tr((S1 S2)^{1/2}) (Dowson & Landau 1982; Heusel et al. 2017).

    Tr((S1 S2)^{1/2}) = sum sqrt(eig(S1^{1/2} S2 S1^{1/2})): S1 S2 is similar to that symmetric PSD
    matrix, so the eigenvalues are real and non-negative (tiny negative round-off is clipped)."""
    mu1, s1, mu2, s2 = (t.double() for t in (mu1, s1, mu2, s2))
    w, v = torch.linalg.eigh((s1 + s1.t()) / 2)
    root1 = (v * w.clamp_min(0).sqrt()) @ v.t()
    m = root1 @ s2 @ root1
    tr_sqrt = torch.linalg.eigvalsh((m + m.t()) / 2).clamp_min(0).sqrt().sum()
    diff = mu1 - mu2
    return float(diff @ diff + s1.trace() + s2.trace() - 2 * tr_sqrt)


def reference_index(num_test: int, num_images: int) -> torch.Tensor:
    """The fixed test subset FID compares against (seed 0, independent of the run's seed)."""
    return torch.randperm(num_test, generator=torch.Generator().manual_seed(0))[: min(num_images, num_test)]


def sample_counts(ref_y: torch.Tensor, classes: torch.Tensor) -> torch.Tensor:
    """How many class-conditional samples of each of ``classes`` stand in for the reference subset
    with labels ``ref_y``: as many samples in all as the subset has images, shared among the classes
    in proportion to the subset's labelled images (largest remainders get the rounding), so images
    labelled -1 (no class) are no class of their own and the sample set stays the reference's size
    (FID's bias depends on it). Without unlabelled images these are the subset's class counts. All
    zero when the subset has no labelled image."""
    labelled = torch.stack([(ref_y == c).sum() for c in classes]).double()
    total, known = ref_y.numel(), float(labelled.sum())
    if known == 0:
        return torch.zeros(len(classes), dtype=torch.long)
    share = labelled * total / known
    counts = share.floor().long()
    rest = total - int(counts.sum())
    if rest > 0:  # ties go to the first class, stably
        order = torch.argsort(-(share - counts.double()), stable=True)
        counts[order[:rest]] += 1
    return counts


class FID(Evaluator):
    name = "fid"
    description = "FID (pytorch-fid InceptionV3) of test reconstructions and class-conditional samples vs test images"
    params = {
        "num_images": Param(1000, "test images (and as many reconstructions/samples) per FID; about 7 images/s on 2 CPU cores", minimum=2),
        # the default is read from the environment so that the stored options name the file used
        "weights": Param(os.environ.get(WEIGHTS_ENV, ""), f"path to pytorch-fid's {WEIGHTS_FILE} (default ${WEIGHTS_ENV}); empty: pytorch-fid's cache/download"),
        "batch_size": Param(50, f"images per Inception forward pass (on CUDA at least {CUDA_BATCH})", minimum=1),
        "precision": Param("fp32", "Inception arithmetic: fp32 (comparable), or bf16 (about 2.5x faster on CPU, slightly different values)", choices=("fp32", "bf16")),
    }
    metrics = (
        Metric("fid_recon", unit="fid", higher_is_better=False, role="headline", section="generation",
               help="FID of the reconstructions of a fixed test subset against that subset"),
        Metric("fid_samples", unit="fid", higher_is_better=False, role="headline", section="generation",
               help="FID of class-conditional samples (as many per class as the subset has) against the test subset"),
    )

    def evaluate(self, inputs: EvalInputs, **options) -> dict[str, float]:  # type: ignore[no-untyped-def]
        net = load_feature_network(str(options["weights"]), inputs.device)
        bs, precision = int(options["batch_size"]), str(options["precision"])
        data = inputs.data
        idx = reference_index(data.test_x.shape[0], int(options["num_images"]))
        if idx.shape[0] < 2:
            raise DataError(f"FID needs at least 2 test images; {data.name} has {data.test_x.shape[0]}")
        real = data.test_x[idx.to(data.test_x.device)]

        def feats(images: torch.Tensor) -> torch.Tensor:
            return features(net, images, inputs.device, bs, precision)

        key = (resolve_weights(str(options["weights"])) or "pytorch-fid", precision, hashlib.sha1(real.cpu().numpy().tobytes()).hexdigest())
        if key not in _STATS:
            _STATS[key] = statistics(feats(as_float_images(real)))
        mu_real, cov_real = _STATS[key]

        recon = decode_all(inputs, inputs.test_z[idx.to(inputs.test_z.device)])
        metrics = {"fid_recon": frechet_distance(*statistics(feats(recon)), mu_real, cov_real)}

        if needs_labels(inputs) is None:
            train_y = data.train_y.to(inputs.train_z.device)
            keep = train_y >= 0  # unlabelled images (-1, e.g. CelebA's) belong to no class Gaussian
            gaussians = ClassGaussians.fit(inputs.train_z[keep], train_y[keep])
            ref_y = data.test_y[idx.to(data.test_y.device)].cpu()
            counts = sample_counts(ref_y, gaussians.classes.cpu())
            if int(counts.sum()) > 0:
                z, _ = gaussians.sample(counts, torch.Generator().manual_seed(inputs.seed))
                samples = decode_all(inputs, z)
                metrics["fid_samples"] = frechet_distance(*statistics(feats(samples)), mu_real, cov_real)
        return metrics


@hookimpl
def register_evaluators(register) -> None:  # type: ignore[no-untyped-def]
    register(FID)

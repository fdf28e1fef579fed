"""A decoder trained on frozen representations, for methods that have no decoder of their own.

The SimVAE paper (appendix A.7.6) measures how much *style* information a discriminative
representation keeps by training the protocol's decoder, with the encoder frozen, to reconstruct the
images from their representations, then reporting the reconstruction MSE and showing the
reconstructions. :func:`train_frozen_decoder` does exactly that, once per run: it is what
``EvalInputs.decoder()`` returns for SimCLR, MoCo, VICReg, SimSiam, ... so the ``mse``, reconstruction
grid and class-conditional sample evaluators work for every method.

Training: the protocol's decoder (``ctx.decoder(in_dim)``), inputs = the frozen train representations
standardised by their own mean and std (representations of discriminative methods have arbitrary
scale), targets = the un-augmented train images in [0, 1], loss = MSE between ``sigmoid(logits)`` and
the image, Adam (lr ``LEARNING_RATE``), the protocol's batch size, on the evaluation device, seeded
with the run's seed. The number of epochs is ``DEFAULT_EPOCHS`` (10: enough for MNIST-size data to
get well below the mean-image error on 2 CPU cores in a couple of minutes), overridden by the
environment variable ``SSLBENCH_DECODER_EPOCHS``.

When ``inputs.run_dir`` is set, the trained decoder is saved there as ``frozen_decoder.pt`` (written
atomically) and reused by later evaluations of the same run when its settings match.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

from sslbench.sdk.api import EvalInputs
from sslbench.sdk.files import atomic_path

#: epochs of decoder training when ``SSLBENCH_DECODER_EPOCHS`` is not set
DEFAULT_EPOCHS = 10
#: the environment variable that overrides :data:`DEFAULT_EPOCHS`
EPOCHS_ENV = "SSLBENCH_DECODER_EPOCHS"
#: Adam learning rate of the frozen decoder
LEARNING_RATE = 1e-3
#: file name of the cached decoder inside a run directory
CACHE_NAME = "frozen_decoder.pt"
#: images decoded per forward pass when the returned function is called on many representations
DECODE_CHUNK = 1024
#: bumped whenever the training recipe changes, so an old cache is not reused
RECIPE_VERSION = 1


def decoder_epochs() -> int:
    """Epochs of frozen-decoder training: ``$SSLBENCH_DECODER_EPOCHS`` or :data:`DEFAULT_EPOCHS`."""
    raw = os.environ.get(EPOCHS_ENV)
    if raw is None or raw.strip() == "":
        return DEFAULT_EPOCHS
    try:
        epochs = int(raw)
    except ValueError:
        epochs = -1
    if epochs < 1:
        raise ValueError(
            f"{EPOCHS_ENV}={raw!r} is not a positive whole number of epochs; "
            f"set it to e.g. {DEFAULT_EPOCHS}, or unset it to use the default ({DEFAULT_EPOCHS})"
        )
    return epochs


class FrozenDecoder:
    """Representations (N, D) -> images (N, C, H, W) in [0, 1], through a decoder trained on frozen
    representations. Callable; runs in eval mode without gradients, in chunks, on the decoder's
    device. ``train_mse`` is the mean squared error of the last training epoch (per pixel)."""

    def __init__(self, decoder: nn.Module, z_mean: torch.Tensor, z_std: torch.Tensor, epochs: int, train_mse: float) -> None:
        self.decoder = decoder.eval()
        self.z_mean = z_mean
        self.z_std = z_std
        self.epochs = epochs
        self.train_mse = train_mse

    @property
    def device(self) -> torch.device:
        return self.z_mean.device

    @torch.no_grad()
    def __call__(self, z: torch.Tensor) -> torch.Tensor:
        if z.dim() != 2 or z.shape[1] != self.z_mean.shape[1]:
            raise ValueError(
                f"the frozen decoder takes representations of shape (N, {self.z_mean.shape[1]}), got {tuple(z.shape)}"
            )
        self.decoder.eval()
        z = z.to(self.device, torch.float32)
        out = [
            torch.sigmoid(self.decoder((chunk - self.z_mean) / self.z_std))
            for chunk in z.split(DECODE_CHUNK)
        ]
        return torch.cat(out) if out else torch.empty(0, *self._image_shape(), device=self.device)

    def _image_shape(self) -> tuple[int, ...]:
        with torch.no_grad():
            return tuple(self.decoder(self.z_mean).shape[1:])


def _atomic_save(obj: Any, path: Path) -> None:
    """``torch.save`` through :func:`sslbench.sdk.files.atomic_path`."""
    with atomic_path(path) as tmp:
        torch.save(obj, tmp)


def _settings(inputs: EvalInputs, epochs: int) -> dict[str, Any]:
    """What a cached decoder must match to be reused."""
    return {
        "recipe": RECIPE_VERSION,
        "epochs": epochs,
        "seed": int(inputs.seed),
        "z_dim": int(inputs.train_z.shape[1]),
        "num_train": int(inputs.train_z.shape[0]),
        "image_shape": list(inputs.data.image_shape),
        "protocol": inputs.method.ctx.protocol.hash(),
    }


def _load_cached(path: Path, settings: dict[str, Any], decoder: nn.Module, device: torch.device) -> FrozenDecoder | None:
    """The cached decoder at ``path`` if it exists, is readable and was trained with ``settings``."""
    if not path.is_file():
        return None
    try:
        blob = torch.load(path, map_location=device, weights_only=True)
        if blob.get("settings") != settings:
            return None
        decoder.load_state_dict(blob["state_dict"])
        return FrozenDecoder(decoder, blob["z_mean"].to(device), blob["z_std"].to(device), settings["epochs"], float(blob["train_mse"]))
    except Exception:  # noqa: BLE001 - an unreadable or stale cache is simply retrained and replaced
        return None


def train_frozen_decoder(inputs: EvalInputs, epochs: int | None = None) -> FrozenDecoder:
    """Train the protocol's decoder on frozen train representations (SimVAE paper, appendix A.7.6).

    Minimises the per-pixel MSE ``mean((sigmoid(decoder((z - m) / s)) - x)^2)`` over the train set,
    where ``z = inputs.train_z`` (frozen), ``m``/``s`` its per-dimension mean and std, and ``x`` the
    un-augmented train image (uint8 / 255). ``epochs`` defaults to :func:`decoder_epochs`. Seeded
    with ``inputs.seed`` (initialisation and batch order) without disturbing the global RNG.
    Returns a :class:`FrozenDecoder`; with ``inputs.run_dir`` set, saves it there and reuses it.
    """
    epochs = decoder_epochs() if epochs is None else int(epochs)
    if epochs < 1:
        raise ValueError(f"train_frozen_decoder needs at least 1 epoch, got {epochs}")
    device = inputs.device
    train_z = inputs.train_z.detach().to(device, torch.float32)
    images = inputs.data.train_x
    if train_z.dim() != 2 or train_z.shape[0] != images.shape[0]:
        raise ValueError(
            f"train_z has shape {tuple(train_z.shape)} but there are {images.shape[0]} train images; "
            "the representations must be (num_train, D), one row per train image, in order"
        )
    if not torch.isfinite(train_z).all():
        raise ValueError(
            "the train representations contain NaN or inf, so no decoder can be trained on them; "
            "the method's training diverged -- check its logged loss terms or lower its learning rate"
        )
    ctx = inputs.method.ctx
    settings = _settings(inputs, epochs)
    cache = Path(inputs.run_dir) / CACHE_NAME if inputs.run_dir else None

    devices = [device] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(inputs.seed)
        decoder = ctx.decoder(train_z.shape[1]).to(device)
    if cache is not None:
        cached = _load_cached(cache, settings, decoder, device)
        if cached is not None:
            return cached

    z_mean = train_z.mean(0, keepdim=True)
    z_std = train_z.std(0, keepdim=True).clamp_min(1e-6) if train_z.shape[0] > 1 else torch.ones_like(z_mean)
    inputs_std = (train_z - z_mean) / z_std
    images = images.to(device)
    n = images.shape[0]
    batch = int(ctx.protocol.batch_size)
    g = torch.Generator(device=device).manual_seed(inputs.seed)
    opt = torch.optim.Adam(decoder.parameters(), lr=LEARNING_RATE)
    decoder.train()
    train_mse = float("nan")
    with torch.random.fork_rng(devices=devices):  # dropout or other randomness inside a decoder
        torch.manual_seed(inputs.seed)
        for _ in range(epochs):
            perm = torch.randperm(n, generator=g, device=device)
            total, count = torch.zeros((), device=device), 0
            for start in range(0, n, batch):
                idx = perm[start : start + batch]
                target = images[idx].float().div_(255)
                loss = F.mse_loss(torch.sigmoid(decoder(inputs_std[idx])), target)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                total += loss.detach() * idx.numel()
                count += idx.numel()
            train_mse = (total / max(count, 1)).item()
    if not torch.isfinite(torch.tensor(train_mse)):
        raise RuntimeError(
            "the frozen decoder's training diverged (MSE is not finite); "
            "check the representations for extreme values"
        )
    result = FrozenDecoder(decoder, z_mean, z_std, epochs, train_mse)
    if cache is not None:
        _atomic_save(
            {
                "settings": settings,
                "state_dict": {k: v.detach().cpu() for k, v in decoder.state_dict().items()},
                "z_mean": z_mean.cpu(),
                "z_std": z_std.cpu(),
                "train_mse": train_mse,
            },
            cache,
        )
    return result

"""The uniform protocol: what every method trained on a data set shares.

One :class:`Protocol` per data set fixes the encoder/decoder architecture, the latent size, the batch
size, the optimiser and its per-family learning rates, and the augmentations. The values of the
presets come from the SimVAE paper's appendix A.7 (tabled in ``docs/methods.md``, "The protocol");
every stored result carries the full protocol it ran under and its hash, so a number never loses its
protocol.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass, field
from typing import Any, Mapping


@dataclass(frozen=True)
class AugmentSpec:
    """Batched augmentation parameters (torchvision semantics).

    Random resized crop: area fraction in ``crop_scale``, aspect ratio (w/h) log-uniform in
    ``crop_ratio``. Flips with probabilities ``hflip_p``/``vflip_p``. Colour jitter with
    probability ``jitter_p``: brightness/contrast/saturation factors uniform in [1-s, 1+s], hue shift
    uniform in [-hue, hue] (fraction of a turn). Random grayscale with ``grayscale_p``.
    """

    crop_scale: tuple[float, float] = (0.08, 1.0)
    crop_ratio: tuple[float, float] = (0.75, 1.3)
    hflip_p: float = 0.0
    vflip_p: float = 0.0
    brightness: float = 0.0
    contrast: float = 0.0
    saturation: float = 0.0
    hue: float = 0.0
    jitter_p: float = 0.0
    grayscale_p: float = 0.0

    @property
    def has_colour(self) -> bool:
        return self.jitter_p > 0 and (self.brightness or self.contrast or self.saturation or self.hue) != 0


@dataclass(frozen=True)
class Protocol:
    """The declared protocol of one data set. Frozen; change a copy with :meth:`replace`."""

    name: str
    architecture: str
    latent_dim: int
    batch_size: int = 128
    optimizer: str = "adam"
    #: learning rate per method family; the SimVAE paper trained the VAE family at about 1e-4
    lr: Mapping[str, float] = field(
        default_factory=lambda: {"generative": 1e-4, "discriminative": 1e-3, "probabilistic": 1e-3, "baseline": 1e-3}
    )
    weight_decay: float = 0.0
    augment: AugmentSpec = AugmentSpec()
    #: architecture-specific options (e.g. MLP hidden sizes); plain JSON values
    arch_options: Mapping[str, Any] = field(default_factory=dict)

    def lr_for(self, family: str) -> float:
        return float(self.lr.get(family, self.lr.get("discriminative", 1e-3)))

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON values (tuples become lists), keys sorted: what is stored with a result."""
        d = dataclasses.asdict(self)
        d["lr"] = dict(self.lr)
        d["arch_options"] = dict(self.arch_options)
        return json.loads(json.dumps(d, sort_keys=True))

    def hash(self) -> str:
        """A short stable hash of the whole protocol."""
        blob = json.dumps(self.to_dict(), sort_keys=True, default=list)
        return hashlib.sha256(blob.encode()).hexdigest()[:12]

    def replace(self, **changes: Any) -> "Protocol":
        return dataclasses.replace(self, **changes)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "Protocol":
        d = dict(d)
        aug = dict(d.pop("augment", {}))
        for key in ("crop_scale", "crop_ratio"):
            if key in aug:
                aug[key] = tuple(aug[key])
        return cls(augment=AugmentSpec(**aug), **d)


# --- presets (SimVAE paper, appendix A.7; docs/methods.md "The protocol") -------------------------

#: MNIST / FashionMNIST: MLP 784-500-500-2000-z, mirrored decoder, latent 10; crop scale 0.4,
#: ratio [0.75, 1.3], vertical flip 0.5, no colour jitter.
MNIST_MLP = Protocol(
    name="mnist-mlp",
    architecture="mlp",
    latent_dim=10,
    augment=AugmentSpec(crop_scale=(0.4, 1.0), crop_ratio=(0.75, 1.3), vflip_p=0.5),
    arch_options={"hidden": [500, 500, 2000]},
)

#: CIFAR10 / CelebA (64x64): the paper's small ResNet18-style conv encoder (Table 4, channels
#: 16-32-64-128-256), conv decoder, latent 64; crop scale 0.6, vertical flip 0.5, colour jitter
#: brightness/saturation/contrast 0.8, hue 0.2, with probability 0.8.
COLOUR_CONV = Protocol(
    name="colour-conv",
    architecture="resnet",
    latent_dim=64,
    augment=AugmentSpec(
        crop_scale=(0.6, 1.0),
        crop_ratio=(0.75, 1.3),
        vflip_p=0.5,
        brightness=0.8,
        contrast=0.8,
        saturation=0.8,
        hue=0.2,
        jitter_p=0.8,
    ),
    arch_options={"channels": [16, 32, 64, 128, 256]},
)

#: scikit-learn digits (8x8 grey): the MNIST protocol scaled to 64 inputs; a small embedded default.
DIGITS_MLP = MNIST_MLP.replace(name="digits-mlp")

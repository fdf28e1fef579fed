"""Protocols: what every method trained on a data set shares, under a named preset.

One :class:`Protocol` per data set fixes the encoder/decoder architecture, the latent size, the batch
size, the optimiser and its per-family learning rates, and the augmentations. The values come from
the SimVAE paper's appendix A.7 (tabled in ``docs/protocols.md``). Two named presets exist:

* ``uniform`` (the default, each data set's ``protocol``): sslbench's own fair protocol. Held equal
  across methods: images per optimiser step (``batch_size``), epochs (or the budget in steps, views or
  FLOPs), encoder and decoder, latent size, augmentation, optimiser. Not equal, and shown beside every
  number: views per image (SimVAE 10, SimCLR 2, VAE 1), hence views and FLOPs per step, and the
  learning rate (per method family).
* ``paper``: each method as its paper and its official code trained it (:func:`named`, tabled with
  sources in ``docs/protocols.md``); the preset's ``methods`` entries set method parameters and
  per-method training settings, its ``evaluators`` entries set evaluator parameters.

Every stored result carries the full protocol it ran under and its hash, so a number never loses its
protocol.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
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
    #: the named preset this protocol is (:data:`PRESETS`)
    preset: str = "uniform"
    #: per method name or family: method parameter defaults and the training settings of
    #: :data:`TRAINING_KEYS` (a method's own entry overrides its family's)
    methods: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    #: per evaluator name: parameter defaults under this protocol (a user's ``-p`` still wins)
    evaluators: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)

    def lr_for(self, family: str) -> float:
        return float(self.lr.get(family, self.lr.get("discriminative", 1e-3)))

    def method_settings(self, method: str, family: str) -> dict[str, Any]:
        """Everything this protocol sets for ``method``: its family's entry overlaid with its own."""
        return {**self.methods.get(family, {}), **self.methods.get(method, {})}

    def method_params(self, method: str, family: str, declared: Mapping[str, Any]) -> dict[str, Any]:
        """The method parameter defaults this protocol sets, restricted to the ones ``method`` declares
        (a family entry may name a parameter only some of its members have)."""
        return {k: v for k, v in self.method_settings(method, family).items() if k not in TRAINING_KEYS and k in declared}

    def training(self, method: str, family: str) -> dict[str, Any]:
        """The training settings (:data:`TRAINING_KEYS`) for ``method``, defaults filled in."""
        s = self.method_settings(method, family)
        return {key: s.get(key, default) for key, default in TRAINING_KEYS.items()}

    def images_per_step(self, method: str, family: str, views: int) -> int:
        """Images in one optimiser step: ``batch_size``, or ``batch_size // views`` when the batch
        counts views (the official SimVAE code's ``bs = bs // num_sim``)."""
        if self.training(method, family)["batch_unit"] == "views":
            return max(1, self.batch_size // max(1, views))
        return self.batch_size

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON values (tuples become lists), keys sorted: what is stored with a result. The
        preset fields are left out when they hold the uniform defaults, so a uniform protocol's dict
        (and every run id made from it) is what it was before presets existed."""
        d = dataclasses.asdict(self)
        d["lr"] = dict(self.lr)
        d["arch_options"] = dict(self.arch_options)
        d["methods"] = {k: dict(v) for k, v in self.methods.items()}
        d["evaluators"] = {k: dict(v) for k, v in self.evaluators.items()}
        for key, default in (("preset", "uniform"), ("methods", {}), ("evaluators", {})):
            if d[key] == default:
                del d[key]
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


#: the named protocols (``--protocol``, ``protocol = "..."`` in a suite)
PRESETS = ("uniform", "paper")

#: per-method training settings a protocol's ``methods`` entry may hold, with their defaults:
#: ``batch_unit`` whether ``batch_size`` counts images or views; ``adam_eps`` Adam's epsilon;
#: ``loss_reduction`` "mean" (the method's per-image/per-view mean) or "sum" (the loss summed over the
#: batch's views before backward, as the official SimVAE code does: with Adam it matters only through eps)
TRAINING_KEYS: dict[str, Any] = {"batch_unit": "images", "adam_eps": 1e-8, "loss_reduction": "mean"}


class ProtocolError(ValueError):
    """An unknown preset name; the message lists the known ones."""


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


# --- the paper preset (sources: docs/protocols.md) -------------------------------------------------

#: the official SimVAE code divides its summed likelihood by exp(log_var_x), log_var_x = -4.6
#: (``main.py`` option ``-v``; ``src/model/models.py`` ``BaseVAE.recon_and_entropy``)
OFFICIAL_LOG_VAR_X = -4.6

#: what ``paper`` sets for every data set: the VAE family as the official SimVAE code trains it
#: (Adam lr 8e-5 and eps 1e-4, the loss summed over the batch), SimVAE's batch of 128 *views* and its
#: N(0, I) prior on the views' mean, VICReg at the SimVAE paper's lr 1e-4; probes and the GMM as the
#: paper's appendix A.7 (the official code: probe lr 3e-4).
PAPER_METHODS: dict[str, dict[str, Any]] = {
    "generative": {"lr": 8e-5, "adam_eps": 1e-4, "loss_reduction": "sum"},
    "simvae": {"batch_unit": "views", "mean_prior": True},
    "vicreg": {"lr": 1e-4},
}
PAPER_EVALUATORS: dict[str, dict[str, Any]] = {
    "linear": {"epochs": 200, "batch_size": 128, "lr": 3e-4},
    "mlp": {"epochs": 200, "batch_size": 128, "lr": 3e-4},
    "gmm": {"n_init": 200},
}
#: the likelihood per architecture: grey images a Bernoulli (BCE) times exp(4.6), colour images a
#: Gaussian of variance exp(-4.6); the MLP's layers in the official code's order (its encoder runs
#: ``m_dims[::-1]``: 784-2000-500-500-z, decoder z-500-500-2000-784)
PAPER_BY_ARCHITECTURE: dict[str, dict[str, Any]] = {
    "mlp": {"likelihood": "bernoulli", "nll_weight": math.exp(-OFFICIAL_LOG_VAR_X)},
    "resnet": {"likelihood": "gaussian", "likelihood_var": math.exp(OFFICIAL_LOG_VAR_X)},
}
PAPER_ARCH_OPTIONS: dict[str, dict[str, Any]] = {"mlp": {"hidden": [2000, 500, 500]}}


def _merge(*tables: Mapping[str, Mapping[str, Any]]) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for table in tables:
        for key, entry in table.items():
            out[key] = {**out.get(key, {}), **entry}
    return out


def named(base: Protocol, preset: str, data_methods: Mapping[str, Mapping[str, Any]] | None = None) -> Protocol:
    """The data set protocol ``base`` under ``preset``. ``data_methods``: what the data set adds
    under ``paper`` (e.g. MNIST binarised at 0.5 for the VAE family). Raises :class:`ProtocolError`
    for an unknown preset."""
    if preset not in PRESETS:
        from difflib import get_close_matches

        close = get_close_matches(preset, PRESETS, n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise ProtocolError(f"unknown protocol {preset!r}{hint}; the named protocols are {', '.join(PRESETS)} (docs/protocols.md)")
    if preset == "uniform":
        return base
    likelihood = PAPER_BY_ARCHITECTURE.get(base.architecture, {})
    methods = _merge({"generative": likelihood}, PAPER_METHODS, data_methods or {})
    arch = {**base.arch_options, **PAPER_ARCH_OPTIONS.get(base.architecture, {})}
    return base.replace(preset="paper", methods=methods, evaluators=_merge(PAPER_EVALUATORS), arch_options=arch)

"""Protocols: what every method trained on a data set shares, under a named preset.

One :class:`Protocol` per data set fixes the encoder/decoder architecture, the latent size, the batch
size, the optimiser and its per-family learning rates, and the augmentations. The values come from
the SimVAE paper's appendix A.7 (tabled in ``docs/protocols.md``). Two named presets exist:

* ``uniform`` (the default, each data set's ``protocol``): sslbench's own fair protocol. Held equal
  across methods: images per optimiser step (``batch_size``), epochs (or the budget in steps, views or
  FLOPs), encoder and decoder, latent size, augmentation, optimiser. Not equal, and shown beside every
  number: views per image (SimVAE 10, SimCLR 2, VAE 1), hence views and FLOPs per step, and the
  learning rate (per method family).
* ``paper``: each method as its paper and its official code trained it, a :class:`ProtocolPreset`
  registered by the first-party plugin ``sslbench_plugins.protocols`` (tabled with sources in
  ``docs/protocols.md``): its ``methods`` entries set method parameters and per-method training
  settings, its ``evaluators`` entries set evaluator parameters (:func:`named`). A plugin may register
  more presets.

Every stored result carries the full protocol it ran under and its hash, so a number never loses its
protocol.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass, field
from typing import Any, ClassVar, Mapping

import pluggy

#: the hook marker (the same as :data:`sslbench.sdk.hookspecs.hookimpl`; defined here because the
#: hook specifications import this module)
hookimpl = pluggy.HookimplMarker("sslbench")


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
    #: the named preset this protocol is (a registered :class:`ProtocolPreset`: "uniform", "paper", ...)
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


#: per-method training settings a protocol's ``methods`` entry may hold, with their defaults:
#: ``batch_unit`` whether ``batch_size`` counts images or views; ``adam_eps`` Adam's epsilon;
#: ``loss_reduction`` "mean" (the method's per-image/per-view mean) or "sum" (the loss summed over the
#: batch's views before backward, as the official SimVAE code does: with Adam it matters only through eps)
TRAINING_KEYS: dict[str, Any] = {"batch_unit": "images", "adam_eps": 1e-8, "loss_reduction": "mean"}


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


# --- named protocols --------------------------------------------------------------------------


class ProtocolPreset:
    """A named protocol (``--protocol NAME``, ``protocol = "NAME"`` in a suite): settings laid over
    each data set's own protocol, which is the ``uniform`` one. Subclass, set the class attributes,
    register it with the ``register_protocols`` hook. The first-party ``paper`` preset
    (``sslbench_plugins.protocols``) is one; ``uniform`` (:class:`Uniform`) lays nothing over.

    ``methods``: per method name or family, method parameter defaults and the training settings of
    :data:`TRAINING_KEYS` (a user's ``-p`` still wins; a family entry sets only the parameters a method
    declares). ``evaluators``: per evaluator name, parameter defaults. ``by_architecture``: per
    architecture name, more ``methods`` entries (e.g. a likelihood that suits grey or colour images)
    and, under the key ``arch_options``, options for the architecture itself.
    """

    name: ClassVar[str]
    description: ClassVar[str] = ""
    methods: ClassVar[Mapping[str, Mapping[str, Any]]] = {}
    evaluators: ClassVar[Mapping[str, Mapping[str, Any]]] = {}
    by_architecture: ClassVar[Mapping[str, Mapping[str, Any]]] = {}


class Uniform(ProtocolPreset):
    """sslbench's own protocol: each data set's ``protocol`` as it is."""

    name = "uniform"
    description = "sslbench's fair protocol: equal images per step, budget, encoder, augmentation and optimiser for every method"


def _merge(*tables: Mapping[str, Mapping[str, Any]]) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for table in tables:
        for key, entry in table.items():
            out[key] = {**out.get(key, {}), **entry}
    return out


def named(base: Protocol, preset: type[ProtocolPreset] | None, data_methods: Mapping[str, Mapping[str, Any]] | None = None) -> Protocol:
    """The data set protocol ``base`` under ``preset`` (None or :class:`Uniform`: ``base`` itself).
    ``data_methods``: what the data set adds under this preset (e.g. MNIST binarised at 0.5)."""
    if preset is None or preset.name == Uniform.name:
        return base
    extra = dict(preset.by_architecture.get(base.architecture, {}))
    arch = {**base.arch_options, **extra.pop("arch_options", {})}
    methods = _merge(extra, preset.methods, data_methods or {})
    return base.replace(preset=preset.name, methods=methods, evaluators=_merge(preset.evaluators), arch_options=arch)


@hookimpl
def register_protocols(register) -> None:  # type: ignore[no-untyped-def]
    register(Uniform)

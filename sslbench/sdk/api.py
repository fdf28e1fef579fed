"""The contract between sslbench's core and its plugins.

A plugin module implements one or more hooks from :mod:`sslbench.sdk.hookspecs`; each hook receives a
``register`` callback and hands it classes defined against the bases below:

* :class:`Method` -- a self-supervised method (``register_methods``);
* :class:`DatasetPlugin` -- a data set and its protocol (``register_datasets``);
* :class:`Evaluator` -- a metric on frozen representations (``register_evaluators``);
* :class:`Architecture` -- an encoder/decoder family a protocol can name (``register_architectures``).

Plugins import from here (and from :mod:`sslbench.sdk.nets`, :mod:`sslbench.sdk.protocol`), never from the
runner or the CLI.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, ClassVar, Mapping, Sequence

import torch
from torch import nn

from sslbench.sdk.protocol import Protocol

FAMILIES = ("generative", "discriminative", "probabilistic", "baseline")


class ParamError(ValueError):
    """A method, dataset or evaluator parameter was unknown or had a bad value."""


@dataclass(frozen=True)
class Param:
    """A declared, user-settable hyper-parameter (``sslbench run -p simvae.views=4``)."""

    default: Any
    help: str = ""
    choices: tuple[Any, ...] | None = None
    minimum: float | None = None

    def parse(self, owner: str, name: str, value: Any) -> Any:
        """Convert ``value`` (often a string from the CLI or TOML) to the default's type and check it."""
        kind = type(self.default)
        try:
            if isinstance(value, str) and kind is bool:
                lowered = value.strip().lower()
                if lowered not in {"true", "false", "1", "0", "yes", "no"}:
                    raise ValueError(value)
                parsed: Any = lowered in {"true", "1", "yes"}
            elif self.default is None:
                parsed = value
            elif kind is float and isinstance(value, (int, float, str)):
                parsed = float(value)
            elif kind is int and isinstance(value, (int, str)) and not isinstance(value, bool):
                parsed = int(value)
            elif kind is str:
                parsed = str(value)
            elif isinstance(value, kind):
                parsed = value
            else:
                raise ValueError(value)
        except ValueError:
            raise ParamError(
                f"{owner}.{name}={value!r} is not a valid {kind.__name__}; "
                f"default is {self.default!r}. {self.help}".strip()
            ) from None
        if self.choices is not None and parsed not in self.choices:
            raise ParamError(f"{owner}.{name}={parsed!r}: choose one of {list(self.choices)}")
        if self.minimum is not None and parsed < self.minimum:
            raise ParamError(f"{owner}.{name}={parsed!r}: must be >= {self.minimum}")
        return parsed


def resolve_params(owner: str, declared: Mapping[str, Param], given: Mapping[str, Any]) -> dict[str, Any]:
    """Defaults overlaid with ``given``, each value parsed and checked; unknown names are errors."""
    unknown = sorted(set(given) - set(declared))
    if unknown:
        known = ", ".join(sorted(declared)) or "none"
        raise ParamError(f"{owner} has no parameter {', '.join(unknown)}; its parameters: {known}")
    values = {name: p.default for name, p in declared.items()}
    for name, value in given.items():
        values[name] = declared[name].parse(owner, name, value)
    return values


# ----------------------------------------------------------------------------------------------
# data


@dataclass
class ImageData:
    """A data set resident in memory as uint8 tensors (N, C, H, W) with integer labels.

    ``train_attrs``/``test_attrs`` hold optional per-image style/attribute targets (N, A); their
    columns are named by ``attr_names`` and ``attr_kinds`` ("binary", "categorical" or "continuous").
    ``train_next``, when present, gives for each train image the index of its positive partner
    (e.g. the next video frame), or -1 where it has none.
    """

    name: str
    train_x: torch.Tensor
    train_y: torch.Tensor
    test_x: torch.Tensor
    test_y: torch.Tensor
    classes: Sequence[str] = ()
    train_attrs: torch.Tensor | None = None
    test_attrs: torch.Tensor | None = None
    attr_names: Sequence[str] = ()
    attr_kinds: Sequence[str] = ()
    train_next: torch.Tensor | None = None
    note: str = ""

    def __post_init__(self) -> None:
        for split in ("train", "test"):
            x = getattr(self, f"{split}_x")
            y = getattr(self, f"{split}_y")
            if x.dtype != torch.uint8 or x.dim() != 4:
                raise ValueError(f"{self.name}: {split}_x must be uint8 (N, C, H, W), got {x.dtype} {tuple(x.shape)}")
            if y.shape[0] != x.shape[0]:
                raise ValueError(f"{self.name}: {split}_y has {y.shape[0]} labels for {x.shape[0]} images")

    @property
    def image_shape(self) -> tuple[int, int, int]:
        return tuple(self.train_x.shape[1:])  # type: ignore[return-value]

    @property
    def num_classes(self) -> int:
        return int(max(self.train_y.max(), self.test_y.max()).item()) + 1 if self.train_y.dim() == 1 else 0

    def to(self, device: torch.device) -> "ImageData":
        """The same data set with every tensor on ``device`` (moved once, before training)."""
        moved = {}
        for key, value in self.__dict__.items():
            moved[key] = value.to(device) if isinstance(value, torch.Tensor) else value
        return ImageData(**moved)


class DatasetPlugin:
    """A data set: loads :class:`ImageData` and names the protocol it is trained under."""

    name: ClassVar[str]
    description: ClassVar[str] = ""
    #: the protocol this data set is trained under (see :mod:`sslbench.sdk.protocol`)
    protocol: ClassVar[Protocol]
    params: ClassVar[Mapping[str, Param]] = {}
    #: whether load() needs files (``--data-dir``) or can make/download them itself
    needs_files: ClassVar[bool] = False

    def load(self, data_dir: str | None, **params: Any) -> ImageData:  # pragma: no cover - interface
        """Load the data set. Raise :class:`DataError` with what is missing and how to get it."""
        raise NotImplementedError


class DataError(RuntimeError):
    """A data set's files are missing or corrupt; the message says what to do."""


# ----------------------------------------------------------------------------------------------
# methods


@dataclass
class BuildContext:
    """What a method needs to build its modules under the protocol."""

    protocol: Protocol
    image_shape: tuple[int, int, int]
    num_train: int
    num_classes: int
    device: torch.device
    architectures: Mapping[str, type["Architecture"]] = field(default_factory=dict)

    def _architecture(self) -> "Architecture":
        try:
            return self.architectures[self.protocol.architecture]()
        except KeyError:
            raise RuntimeError(
                f"protocol {self.protocol.name!r} names architecture {self.protocol.architecture!r}, "
                f"which no plugin registers (known: {sorted(self.architectures)})"
            ) from None

    def encoder(self, out_dim: int | None = None) -> nn.Module:
        """The protocol's encoder, mapping (B, C, H, W) images in [0, 1] to (B, out_dim) features.

        ``out_dim`` defaults to the protocol's latent size; a Gaussian-posterior method asks for
        ``2 * latent_dim`` (mean and log-variance).
        """
        out = self.protocol.latent_dim if out_dim is None else out_dim
        return self._architecture().encoder(self.image_shape, out, self.protocol)

    def decoder(self, in_dim: int | None = None) -> nn.Module:
        """The protocol's decoder, mapping (B, in_dim) latents to (B, C, H, W) logits.

        ``torch.sigmoid`` of the output is the image mean in [0, 1] (Gaussian likelihood); the output
        itself is the Bernoulli logit.
        """
        dim = self.protocol.latent_dim if in_dim is None else in_dim
        return self._architecture().decoder(self.image_shape, dim, self.protocol)


class Method(nn.Module):
    """A self-supervised method. Subclass, set the class attributes, implement ``loss`` and ``embed``.

    The training loop hands ``loss`` a float tensor ``views`` of shape (B, V, C, H, W) in [0, 1]:
    when ``original`` is true, ``views[:, 0]`` is the un-augmented image and the next ``views``
    entries are augmentations; otherwise all V entries are augmentations. ``loss`` returns a dict of
    named scalar terms; ``"loss"`` is the one minimised (the weighted sum of the others), every term
    is logged.
    """

    name: ClassVar[str]
    family: ClassVar[str] = "discriminative"
    description: ClassVar[str] = ""
    params: ClassVar[Mapping[str, Param]] = {}
    #: whether the method has anything to train (the random-encoder floor does not)
    trainable: ClassVar[bool] = True

    def __init__(self, ctx: BuildContext, **params: Any) -> None:
        super().__init__()
        self.ctx = ctx
        self.hparams = dict(params)

    # -- what the loop needs ---------------------------------------------------------------
    @property
    def views(self) -> int:
        """Number of augmented views per image (SimCLR 2, SimVAE J)."""
        return 2

    @property
    def original(self) -> bool:
        """Whether ``views[:, 0]`` should be the un-augmented image."""
        return False

    def learning_rate(self) -> float:
        """The learning rate: the ``lr`` parameter if the method declares one, else the protocol's
        default for the method's family."""
        lr = self.hparams.get("lr")
        return float(lr) if lr else self.ctx.protocol.lr_for(self.family)

    def loss(self, views: torch.Tensor) -> dict[str, torch.Tensor]:  # pragma: no cover - interface
        raise NotImplementedError

    def after_step(self) -> None:
        """Called after each optimiser step (e.g. a momentum encoder update)."""

    def embed(self, x: torch.Tensor) -> torch.Tensor:  # pragma: no cover - interface
        """The frozen representation of un-augmented images (B, C, H, W) in [0, 1]."""
        raise NotImplementedError

    # -- optional capabilities: evaluators check ``capabilities()`` --------------------------------
    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """Images (B, C, H, W) in [0, 1] from representations (generative methods)."""
        raise NotImplementedError(f"{self.name} has no decoder")

    def uncertainty(self, x: torch.Tensor) -> torch.Tensor:
        """A per-image scalar that grows with the model's uncertainty (B,)."""
        raise NotImplementedError(f"{self.name} exposes no uncertainty")

    @classmethod
    def capabilities(cls) -> set[str]:
        """Which optional methods this class overrides: a subset of {"decode", "uncertainty"}."""
        return {name for name in ("decode", "uncertainty") if getattr(cls, name) is not getattr(Method, name)}


# ----------------------------------------------------------------------------------------------
# evaluators


@dataclass
class EvalInputs:
    """Everything an evaluator may use: frozen embeddings of both splits, the data, the method.

    ``selection`` is "val" (hyper-parameters such as k or the probe epoch chosen on a validation split
    carved from train; the default) or "test" (chosen on the test set, as the SimVAE paper did);
    ``val_index`` is the fixed index of that validation split into the train set.
    """

    train_z: torch.Tensor
    test_z: torch.Tensor
    data: ImageData
    method: Method
    device: torch.device
    seed: int
    selection: str
    val_index: torch.Tensor
    run_dir: str | None = None
    _decoder: Callable[[torch.Tensor], torch.Tensor] | None = field(default=None, repr=False)

    def decoder(self) -> Callable[[torch.Tensor], torch.Tensor]:
        """A map from representations to images in [0, 1]: the method's own ``decode`` when it has one,
        else the protocol's decoder trained with MSE on the frozen train representations (SimVAE paper
        A.7.6), trained once per run and shared by every evaluator that asks."""
        if self._decoder is None:
            if "decode" in self.method.capabilities():
                self._decoder = self.method.decode
            else:
                from sslbench.engine.decoding import train_frozen_decoder

                self._decoder = train_frozen_decoder(self)
        return self._decoder

    @property
    def has_own_decoder(self) -> bool:
        return "decode" in self.method.capabilities()

    @property
    def fit_index(self) -> torch.Tensor:
        """Train indices that are not in the validation split."""
        mask = torch.ones(self.train_z.shape[0], dtype=torch.bool, device=self.val_index.device)
        mask[self.val_index] = False
        return mask.nonzero().squeeze(1)


class Evaluator:
    """A metric on frozen representations. ``evaluate`` returns named floats."""

    name: ClassVar[str]
    description: ClassVar[str] = ""
    params: ClassVar[Mapping[str, Param]] = {}
    #: method capabilities this evaluator needs (e.g. {"decode"}); runs lacking one are skipped
    requires: ClassVar[frozenset[str]] = frozenset()
    #: whether ``sslbench run --save-images`` adds this evaluator (it writes picture grids)
    on_save_images: ClassVar[bool] = False

    def applies(self, inputs: EvalInputs) -> str | None:
        """None when the evaluator can run on ``inputs``, else the reason it cannot (stored)."""
        missing = self.requires - inputs.method.capabilities()
        if missing:
            return f"{inputs.method.name} lacks {', '.join(sorted(missing))}"
        return None

    def evaluate(self, inputs: EvalInputs, **options: Any) -> dict[str, float]:  # pragma: no cover
        raise NotImplementedError


# ----------------------------------------------------------------------------------------------
# architectures


class Architecture:
    """An encoder/decoder family that protocols name (``Protocol.architecture``)."""

    name: ClassVar[str]
    description: ClassVar[str] = ""

    def encoder(self, image_shape: tuple[int, int, int], out_dim: int, protocol: Protocol) -> nn.Module:
        raise NotImplementedError  # pragma: no cover - interface

    def decoder(self, image_shape: tuple[int, int, int], in_dim: int, protocol: Protocol) -> nn.Module:
        raise NotImplementedError  # pragma: no cover - interface


Register = Callable[[type], None]

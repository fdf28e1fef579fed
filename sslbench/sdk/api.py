"""The contract between sslbench's core and its plugins.

A plugin module implements one or more hooks from :mod:`sslbench.sdk.hookspecs`; each hook receives a
``register`` callback and hands it classes defined against the bases below:

* :class:`Method` -- a self-supervised method (``register_methods``);
* :class:`DatasetPlugin` -- a data set and its protocol (``register_datasets``);
* :class:`Evaluator` -- a metric on frozen representations (``register_evaluators``);
* :class:`Architecture` -- an encoder/decoder family a protocol can name (``register_architectures``).

Each base resolves and validates its own ``params`` (:meth:`Method.resolve`); an evaluator declares
the metrics it returns and the pictures it writes (:mod:`sslbench.sdk.metrics`). Plugins import from
:mod:`sslbench.sdk` only, never from the engine, bench or the CLI; the plugin guide
(``docs/plugins.md``) walks through one complete plugin of each kind.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, ClassVar, Mapping, Sequence

import torch
from torch import nn

from sslbench.sdk.metrics import Metric, Picture, find_metric
from sslbench.sdk.params import Param, ParamError, resolve_params
from sslbench.sdk.protocol import Protocol, ProtocolPreset, named

FAMILIES = ("generative", "discriminative", "probabilistic", "baseline")


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


class _Parametrised:
    """The parameter handling shared by methods, data sets and evaluators."""

    name: ClassVar[str]
    params: ClassVar[Mapping[str, Param]] = {}

    @classmethod
    def declared_params(cls) -> dict[str, Param]:
        """Every parameter a user may set on this class (``-p NAME.KEY=VALUE``)."""
        return dict(cls.params)

    @classmethod
    def resolve(cls, given: Mapping[str, Any]) -> dict[str, Any]:
        """The defaults overlaid with ``given``, each value parsed and checked (:class:`ParamError`)."""
        return resolve_params(cls.name, cls.declared_params(), given)


class DatasetPlugin(_Parametrised):
    """A data set: loads :class:`ImageData` and names the protocol it is trained under."""

    name: ClassVar[str]
    description: ClassVar[str] = ""
    #: the protocol this data set is trained under (see :mod:`sslbench.sdk.protocol`): the ``uniform`` preset
    protocol: ClassVar[Protocol]
    #: method settings this data set adds under the ``paper`` preset, by method name or family (e.g.
    #: MNIST: ``{"generative": {"binarise": 0.5}}``, the official SimVAE code's thresholded images)
    paper_methods: ClassVar[Mapping[str, Mapping[str, Any]]] = {}
    params: ClassVar[Mapping[str, Param]] = {}
    #: whether load() reads files (``--data-dir``, or a download) or makes its data itself; listed by
    #: ``sslbench list-datasets``
    needs_files: ClassVar[bool] = False
    #: folders below a data root (``SSLBENCH_DATA``) where this data set's files conventionally live,
    #: most specific first; empty means a folder named after the data set (``sslbench data`` lists them)
    folders: ClassVar[tuple[str, ...]] = ()
    #: the files (or sub-folders) a folder must hold to count as this data set; a file also counts
    #: when only ``NAME.gz`` is there. Empty: any existing folder counts
    files: ClassVar[tuple[str, ...]] = ()
    #: md5 of the official release's files by file name; for a compressed ``NAME.gz``, ``NAME`` gives
    #: the md5 of its uncompressed content (so a re-compressed copy of the official bytes still matches)
    digests: ClassVar[Mapping[str, str]] = {}
    #: where load() downloads the files to, relative to sslbench's cache folder (None: no download)
    download_folder: ClassVar[str | None] = None
    #: how a user gets the files: a command (torchvision's download) or a URL, with where to unpack them
    how_to_get: ClassVar[str] = ""

    @classmethod
    def protocol_for(cls, preset: type[ProtocolPreset] | None = None) -> Protocol:
        """This data set's protocol under ``preset`` (a registered :class:`ProtocolPreset`; None: its
        own, the ``uniform`` one), with :attr:`paper_methods` added under ``paper``."""
        return named(cls.protocol, preset, cls.paper_methods if preset is not None and preset.name == "paper" else None)

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


def _lr_param(family: str) -> Param:
    return Param(0.0, f"learning rate; 0 takes the protocol's {family} default", minimum=0.0)


class Method(_Parametrised, nn.Module):
    """A self-supervised method. Subclass, set the class attributes, implement ``loss`` and ``embed``.

    The training loop hands ``loss`` a float tensor ``views`` of shape (B, V, C, H, W) in [0, 1]:
    when ``original`` is true, ``views[:, 0]`` is the un-augmented image and the next ``views``
    entries are augmentations; otherwise all V entries are augmentations. ``loss`` returns a dict of
    named scalar terms; ``"loss"`` is the one minimised (the weighted sum of the others), every term
    is logged.

    ``params`` declares the method's own hyper-parameters; every trainable method also has ``lr``
    (declared here once: 0, the default, takes the protocol's learning rate for the method's family).
    The runner resolves the user's values with :meth:`resolve` and passes them to ``__init__``, where
    they are ``self.hparams``.
    """

    name: ClassVar[str]
    family: ClassVar[str] = "discriminative"
    description: ClassVar[str] = ""
    params: ClassVar[Mapping[str, Param]] = {}
    #: whether the method has anything to train (the random-encoder floor does not)
    trainable: ClassVar[bool] = True
    #: whether ``loss`` takes the views one at a time (``views[:, j]``): the loop then lays the
    #: (B, V, C, H, W) tensor out view after view in memory, so each ``views[:, j]`` is contiguous
    #: (same shape, same values; ``views.flatten(0, 1)`` would then copy, so methods that pass all
    #: views at once keep the default)
    view_major: ClassVar[bool] = False

    @classmethod
    def declared_params(cls) -> dict[str, Param]:
        """The class's ``params`` plus ``lr`` for a trainable method (a method may redeclare ``lr``)."""
        return {"lr": _lr_param(cls.family), **cls.params} if cls.trainable else dict(cls.params)

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
    #: builds a decoder for a method without one; the engine passes its frozen-decoder trainer
    decoder_factory: Callable[["EvalInputs"], Callable[[torch.Tensor], torch.Tensor]] | None = field(default=None, repr=False)
    _decoder: Callable[[torch.Tensor], torch.Tensor] | None = field(default=None, repr=False)

    def decoder(self) -> Callable[[torch.Tensor], torch.Tensor]:
        """A map from representations to images in [0, 1]: the method's own ``decode`` when it has one,
        else what ``decoder_factory`` builds (in sslbench runs: the protocol's decoder trained with MSE
        on the frozen train representations, SimVAE paper A.7.6), built once per run and shared by
        every evaluator that asks."""
        if self._decoder is None:
            if "decode" in self.method.capabilities():
                self._decoder = self.method.decode
            elif self.decoder_factory is not None:
                self._decoder = self.decoder_factory(self)
            else:
                raise RuntimeError(
                    f"{self.method.name} has no decoder of its own and these EvalInputs were given no "
                    "decoder_factory to train one; sslbench's runner passes one, a test must too"
                )
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


class Evaluator(_Parametrised):
    """A metric on frozen representations. ``evaluate`` returns named floats.

    ``metrics`` declares every name ``evaluate`` may return (a :class:`Metric` each, or one with a
    ``*`` pattern for names that depend on the data); ``pictures`` declares the files it writes into
    ``inputs.run_dir``. Tables, claims and reports read only these declarations.
    """

    name: ClassVar[str]
    description: ClassVar[str] = ""
    params: ClassVar[Mapping[str, Param]] = {}
    metrics: ClassVar[tuple[Metric, ...]] = ()
    pictures: ClassVar[tuple[Picture, ...]] = ()
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

    @classmethod
    def metric(cls, name: str) -> Metric | None:
        """The declaration of metric ``name`` (exact name first, then a matching pattern), or None."""
        return find_metric(cls.metrics, name)


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

__all__ = [
    "FAMILIES", "Architecture", "BuildContext", "DataError", "DatasetPlugin", "EvalInputs", "Evaluator", "ImageData",
    "Method", "Metric", "Param", "ParamError", "Picture", "ProtocolPreset", "Register", "resolve_params",
]

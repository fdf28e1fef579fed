"""The floor: the protocol's encoder at its random initialisation, never trained."""

from __future__ import annotations

import torch

from sslbench import hookimpl
from sslbench.sdk.api import BuildContext, Method


class RandomEncoder(Method):
    name = "random"
    family = "baseline"
    description = "randomly initialised encoder, untrained: the floor every method should beat"
    trainable = False

    def __init__(self, ctx: BuildContext, **params) -> None:  # type: ignore[no-untyped-def]
        super().__init__(ctx, **params)
        self.encoder = ctx.encoder()

    def loss(self, views: torch.Tensor) -> dict[str, torch.Tensor]:
        raise RuntimeError("the random encoder is not trained")

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        return self.encoder(x)


@hookimpl
def register_methods(register) -> None:  # type: ignore[no-untyped-def]
    register(RandomEncoder)

"""The shared encoders and decoders of the protocol (SimVAE paper, appendix A.7, Tables 3 and 4).

* ``mlp``: the MNIST/FashionMNIST network, 784-500-500-2000-z with ReLU, decoder mirrored.
* ``resnet``: the small ResNet18-style conv encoder of the colour data sets (channels
  16-32-64-128-256, two basic blocks per stage, the last 256-channel map of side H/16 flattened into
  the linear head, no global pooling) and a mirrored conv decoder (linear to a 256-channel map of
  side H/16, four upsampling residual stages).

Both are registered as built-in architectures through the same hook a plugin uses. Encoders take
images in [0, 1]; decoders return logits (``sigmoid`` gives the image mean).
"""

from __future__ import annotations

import math
from typing import Sequence

import torch
from torch import nn
from torch.nn import functional as F

from sslbench.sdk.api import Architecture
from sslbench.sdk.hookspecs import hookimpl
from sslbench.sdk.protocol import Protocol


def mlp(sizes: Sequence[int], final_activation: bool = False) -> nn.Sequential:
    """Linear layers with ReLU between them (and after the last one when asked)."""
    layers: list[nn.Module] = []
    for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
        layers.append(nn.Linear(a, b))
        if i < len(sizes) - 2 or final_activation:
            layers.append(nn.ReLU(inplace=True))
    return nn.Sequential(*layers)


class MLPEncoder(nn.Module):
    def __init__(self, image_shape: tuple[int, int, int], out_dim: int, hidden: Sequence[int]) -> None:
        super().__init__()
        self.net = mlp([math.prod(image_shape), *hidden, out_dim])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x.flatten(1))


class MLPDecoder(nn.Module):
    def __init__(self, image_shape: tuple[int, int, int], in_dim: int, hidden: Sequence[int]) -> None:
        super().__init__()
        self.image_shape = tuple(image_shape)
        self.net = mlp([in_dim, *reversed(list(hidden)), math.prod(image_shape)])

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.net(z).view(z.shape[0], *self.image_shape)


class MLP(Architecture):
    name = "mlp"
    description = "MLP 784-500-500-2000-z with a mirrored decoder (SimVAE paper, MNIST/FashionMNIST)"

    def encoder(self, image_shape: tuple[int, int, int], out_dim: int, protocol: Protocol) -> nn.Module:
        return MLPEncoder(image_shape, out_dim, protocol.arch_options.get("hidden", [500, 500, 2000]))

    def decoder(self, image_shape: tuple[int, int, int], in_dim: int, protocol: Protocol) -> nn.Module:
        return MLPDecoder(image_shape, in_dim, protocol.arch_options.get("hidden", [500, 500, 2000]))


class BasicBlock(nn.Module):
    """ResNet basic block (two 3x3 convs) with a 1x1 projection shortcut when the shape changes."""

    def __init__(self, c_in: int, c_out: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(c_out)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(c_out)
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or c_in != c_out:
            self.shortcut = nn.Sequential(nn.Conv2d(c_in, c_out, 1, stride, bias=False), nn.BatchNorm2d(c_out))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)), inplace=True)
        out = self.bn2(self.conv2(out))
        return F.relu(out + self.shortcut(x), inplace=True)


class UpBlock(nn.Module):
    """Nearest-neighbour x2 upsampling followed by a basic block (the decoder's mirror of a stage)."""

    def __init__(self, c_in: int, c_out: int) -> None:
        super().__init__()
        self.block = BasicBlock(c_in, c_out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.block(F.interpolate(x, scale_factor=2.0, mode="nearest"))


class ResNetEncoder(nn.Module):
    """Stem (3x3 conv, stride 1), then per further channel count two basic blocks, the first of them
    with stride 1 in the first stage and stride 2 after it (ResNet18's layout: layer1 keeps the
    resolution), then the last feature map flattened into the linear head (the paper's Table 4: no
    global pooling). Each stride-2 stage takes a side s to ceil(s / 2), so with 16-32-64-128-256 the
    map is 256 x ceil(H/8) x ceil(W/8): 256 x 4 x 4 for 32 x 32 images (Table 4), 256 x 8 x 8 for 64 x 64."""

    def __init__(self, image_shape: tuple[int, int, int], out_dim: int, channels: Sequence[int]) -> None:
        super().__init__()
        c0, *stages = channels
        self.stem = nn.Sequential(nn.Conv2d(image_shape[0], c0, 3, 1, 1, bias=False), nn.BatchNorm2d(c0), nn.ReLU(inplace=True))
        blocks: list[nn.Module] = []
        c_prev = c0
        for i, c in enumerate(stages):
            blocks += [BasicBlock(c_prev, c, stride=1 if i == 0 else 2), BasicBlock(c, c)]
            c_prev = c
        self.blocks = nn.Sequential(*blocks)
        self.map_shape = (c_prev, *final_side(image_shape[1:], max(0, len(stages) - 1)))
        self.head = nn.Linear(math.prod(self.map_shape), out_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(torch.flatten(self.blocks(self.stem(x)), 1))


def final_side(sides: Sequence[int], stride2_stages: int) -> tuple[int, ...]:
    """Each side after ``stride2_stages`` 3x3 stride-2 convolutions with padding 1: s -> ceil(s / 2)."""
    out = list(sides)
    for _ in range(stride2_stages):
        out = [(s + 1) // 2 for s in out]
    return tuple(out)


class ResNetDecoder(nn.Module):
    def __init__(self, image_shape: tuple[int, int, int], in_dim: int, channels: Sequence[int]) -> None:
        super().__init__()
        c, h, w = image_shape
        rev = list(reversed(list(channels)))  # 256, 128, 64, 32, 16
        n_up = len(rev) - 1
        if h % (2**n_up) or w % (2**n_up):
            raise ValueError(f"resnet decoder needs image sides divisible by {2**n_up}, got {h}x{w}")
        self.start = (rev[0], h // 2**n_up, w // 2**n_up)
        self.fc = nn.Linear(in_dim, math.prod(self.start))
        self.ups = nn.Sequential(*[UpBlock(a, b) for a, b in zip(rev[:-1], rev[1:])])
        self.out = nn.Conv2d(rev[-1], c, 3, 1, 1)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        h = F.relu(self.fc(z), inplace=True).view(z.shape[0], *self.start)
        return self.out(self.ups(h))


class ResNet(Architecture):
    name = "resnet"
    description = "small ResNet18-style conv encoder 16-32-64-128-256 and mirrored conv decoder (SimVAE paper Table 4)"

    def encoder(self, image_shape: tuple[int, int, int], out_dim: int, protocol: Protocol) -> nn.Module:
        return ResNetEncoder(image_shape, out_dim, protocol.arch_options.get("channels", [16, 32, 64, 128, 256]))

    def decoder(self, image_shape: tuple[int, int, int], in_dim: int, protocol: Protocol) -> nn.Module:
        return ResNetDecoder(image_shape, in_dim, protocol.arch_options.get("channels", [16, 32, 64, 128, 256]))


def projection_head(in_dim: int, hidden: int, out_dim: int) -> nn.Sequential:
    """The usual SSL projection head: Linear-BN-ReLU-Linear."""
    return nn.Sequential(nn.Linear(in_dim, hidden), nn.BatchNorm1d(hidden), nn.ReLU(inplace=True), nn.Linear(hidden, out_dim))


@hookimpl
def register_architectures(register) -> None:  # type: ignore[no-untyped-def]
    register(MLP)
    register(ResNet)

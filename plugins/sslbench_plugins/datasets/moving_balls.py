"""Moving balls: the proof-of-principle video of "InfoNCE is a variational autoencoder" (Aitchison &
Ganev), generated here from a seed, with its own encoder architecture and protocol.

The video (docs/methods.md, SSVAE): ``frames`` frames (900) of ``size`` x ``size`` pixels (256) showing
three balls of diameter size / 8 (32 at 256) on a black background. Every frame each ball moves one
diameter along its heading; each heading turns by noise uniform in +-2 degrees, and when any two
balls would then overlap (centres closer than a diameter) the noise of all three is redrawn with its
range doubled, until no two overlap. A ball whose step would leave the image is reflected off the
wall (position mirrored, that velocity component flipped), like a billiard ball. Positions are only
checked at frames, so two balls may pass through each other between frames. The balls are pure red,
green and blue, one per channel, so the encoder's three sigmoid maps can each find one ball; edges
are anti-aliased over one pixel, so the centres are sub-pixel accurate.

Labels: the true centres in pixels, (x, y) per ball with x the column and y the row (pixel (i, j)
covers [j, j + 1) x [i, i + 1)), are the continuous attributes ``red_x, red_y, green_x, ...``; the
class label is 0 for every frame (one class: kNN/linear accuracy is trivially 1 here; use the
``position`` evaluator). Split in time: the first 80% of frames train, the last 20% test, so test
frames are a stretch of the video the encoder never saw. ``train_next[t] = t + 1`` inside the train
segment (-1 for its last frame): the training loop hands a method the pair (frame t, frame t + 1).

Protocol ``moving-balls`` (the seed's set-up): the ``balls`` encoder (two 3x3 conv layers, 6 maps
ReLU then 3 maps sigmoid, batch-normed, then the centre of mass (x, y) of each sigmoid map: 6
numbers), latent 6, batch 30 pairs, no augmentation, SGD at lr 0.005 for every method family;
about 30 epochs.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch
from torch import nn

from sslbench import hookimpl
from sslbench.sdk.api import FAMILIES, Architecture, DataError, DatasetPlugin, ImageData, Param
from sslbench.sdk.protocol import AugmentSpec, Protocol

BALL_COLOURS = ("red", "green", "blue")
NOISE_DEGREES = 2.0
MAX_REDRAWS = 60

#: the seed's set-up: latent 6 (three (x, y) centres), 30 pairs per batch, identity augmentation,
#: SGD at 0.005 whatever the method's family.
MOVING_BALLS = Protocol(
    name="moving-balls",
    architecture="balls",
    latent_dim=6,
    batch_size=30,
    optimizer="sgd",
    lr={family: 0.005 for family in FAMILIES},
    augment=AugmentSpec(crop_scale=(1.0, 1.0), crop_ratio=(1.0, 1.0)),
)


def simulate_centres(frames: int, size: int, seed: int, balls: int = 3) -> np.ndarray:
    """Ball centres (frames, balls, 2) in pixels, (x, y) per ball, following the module docstring."""
    diameter = size / 8.0
    radius, speed = diameter / 2.0, diameter
    lo, hi = radius, size - radius
    rng = np.random.default_rng(seed)

    def overlapping(p: np.ndarray) -> bool:
        d = np.linalg.norm(p[:, None] - p[None], axis=-1)
        return bool((d[np.triu_indices(balls, 1)] < diameter).any())

    for _ in range(1000):
        pos = rng.uniform(lo, hi, size=(balls, 2))
        if not overlapping(pos):
            break
    else:
        raise DataError(f"moving-balls: could not place {balls} balls of diameter {diameter:g} in {size}x{size}; use a larger size")
    heading = rng.uniform(0.0, 2.0 * math.pi, size=balls)
    out = np.empty((frames, balls, 2))
    out[0] = pos
    for t in range(1, frames):
        amplitude = math.radians(NOISE_DEGREES)
        for _ in range(MAX_REDRAWS):
            h = heading + rng.uniform(-amplitude, amplitude, size=balls)
            vel = speed * np.stack([np.cos(h), np.sin(h)], 1)
            new = pos + vel
            # reflect off the walls: mirror the position, flip the velocity component
            low, high = new < lo, new > hi
            new = np.where(low, 2 * lo - new, np.where(high, 2 * hi - new, new))
            vel = np.where(low | high, -vel, vel)
            if not overlapping(new):
                break
            amplitude *= 2.0
        else:
            raise DataError(
                f"moving-balls: no collision-free move for frame {t} after {MAX_REDRAWS} redraws "
                f"(size {size}, seed {seed}); use another seed or a larger size"
            )
        pos, heading = new, np.arctan2(vel[:, 1], vel[:, 0])
        out[t] = pos
    return out


def render(centres: np.ndarray, size: int) -> np.ndarray:
    """uint8 frames (N, 3, size, size): ball k drawn in channel k, anti-aliased over one pixel."""
    n, balls, _ = centres.shape
    if balls > 3:
        raise ValueError("render draws at most 3 balls (one per RGB channel)")
    radius = size / 16.0
    frames = np.zeros((n, 3, size, size), dtype=np.uint8)
    half = int(math.ceil(radius)) + 2
    for t in range(n):
        for k in range(balls):
            cx, cy = centres[t, k]
            j0, j1 = max(0, int(cx) - half), min(size, int(cx) + half + 1)
            i0, i1 = max(0, int(cy) - half), min(size, int(cy) + half + 1)
            jj = np.arange(j0, j1) + 0.5
            ii = np.arange(i0, i1) + 0.5
            dist = np.sqrt((jj[None, :] - cx) ** 2 + (ii[:, None] - cy) ** 2)
            cover = np.clip(radius + 0.5 - dist, 0.0, 1.0)
            frames[t, k, i0:i1, j0:j1] = np.rint(cover * 255).astype(np.uint8)
    return frames


class MovingBalls(DatasetPlugin):
    name = "moving-balls"
    description = "3 coloured balls bouncing in a video (SSVAE seed); positives are consecutive frames"
    protocol = MOVING_BALLS
    params = {
        "frames": Param(900, "number of video frames (first 80% train, last 20% test)", minimum=10),
        "size": Param(256, "frame side in pixels; ball diameter and step are size / 8 (64 keeps CPU tests small)", minimum=16),
        "seed": Param(0, "seed of the generator (the video is the same for every training seed)"),
    }

    def load(self, data_dir: str | None, **params: Any) -> ImageData:
        frames, size, seed = int(params.get("frames", 900)), int(params.get("size", 256)), int(params.get("seed", 0))
        centres = simulate_centres(frames, size, seed)
        x = torch.from_numpy(render(centres, size))
        attrs = torch.from_numpy(centres.reshape(frames, -1)).float()
        n_train = int(round(0.8 * frames))
        nxt = torch.arange(1, n_train + 1)
        nxt[-1] = -1
        return ImageData(
            name=self.name,
            train_x=x[:n_train],
            train_y=torch.zeros(n_train, dtype=torch.long),
            test_x=x[n_train:],
            test_y=torch.zeros(frames - n_train, dtype=torch.long),
            classes=("frame",),
            train_attrs=attrs[:n_train],
            test_attrs=attrs[n_train:],
            attr_names=tuple(f"{c}_{axis}" for c in BALL_COLOURS for axis in ("x", "y")),
            attr_kinds=("continuous",) * 6,
            train_next=nxt,
            note=f"{frames} frames {size}x{size}, seed {seed}; centres in pixels; one class (use -e position)",
        )


class CentreOfMass(nn.Module):
    """(B, M, H, W) non-negative maps -> (B, 2M): the centre of mass (x, y) of each map in pixels,
    with the labels' convention (pixel (i, j) has its centre at x = j + 0.5, y = i + 0.5). Pixel
    units, as in the seed: a step of one ball diameter then moves the representation by size / 8."""

    def forward(self, maps: torch.Tensor) -> torch.Tensor:
        # in fp32 even under bf16 autocast: bf16 sums over a 64x64 map are off by up to 0.25 px
        with torch.autocast(device_type=maps.device.type, enabled=False):
            maps = maps.float()
            b, m, h, w = maps.shape
            xs = torch.arange(w, device=maps.device, dtype=maps.dtype) + 0.5
            ys = torch.arange(h, device=maps.device, dtype=maps.dtype) + 0.5
            mass = maps.sum((2, 3)).clamp_min(1e-8)
            cx = (maps.sum(2) * xs).sum(2) / mass
            cy = (maps.sum(3) * ys).sum(2) / mass
            return torch.stack([cx, cy], 2).flatten(1)


class BallsEncoder(nn.Module):
    """The seed's encoder: conv 3x3 -> BN -> ReLU (``2M`` maps), conv 3x3 -> BN -> sigmoid (M maps),
    then the centre of mass of each sigmoid map; M = out_dim / 2 (3 for the protocol's 6)."""

    def __init__(self, channels: int, out_dim: int) -> None:
        super().__init__()
        maps = out_dim // 2
        self.features = nn.Sequential(
            nn.Conv2d(channels, 2 * maps, 3, padding=1), nn.BatchNorm2d(2 * maps), nn.ReLU(inplace=True),
            nn.Conv2d(2 * maps, maps, 3, padding=1), nn.BatchNorm2d(maps), nn.Sigmoid(),
        )
        self.centre = CentreOfMass()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.centre(self.features(x))


class Balls(Architecture):
    name = "balls"
    description = "moving-balls encoder: two 3x3 convs (6 ReLU, 3 sigmoid maps, BN), centre of mass of each map"

    def encoder(self, image_shape: tuple[int, int, int], out_dim: int, protocol: Protocol) -> nn.Module:
        if out_dim % 2:
            raise ValueError(
                f"the balls encoder outputs an (x, y) centre per map, so its output size must be even; got {out_dim}"
            )
        return BallsEncoder(image_shape[0], out_dim)

    def decoder(self, image_shape: tuple[int, int, int], in_dim: int, protocol: Protocol) -> nn.Module:
        raise NotImplementedError(
            "the balls architecture has no decoder: on moving-balls, run encoder-only methods "
            "(ssvae-rbf, ssvae-linear, simclr, ...) and evaluate with `-e position`, not with "
            "evaluators that decode (reconstruction, FID) or with generative methods"
        )


@hookimpl
def register_datasets(register) -> None:  # type: ignore[no-untyped-def]
    register(MovingBalls)


@hookimpl
def register_architectures(register) -> None:  # type: ignore[no-untyped-def]
    register(Balls)

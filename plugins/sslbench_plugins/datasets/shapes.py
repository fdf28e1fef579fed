"""Shapes: a generated data set with known content and style factors (no download).

Each RGB image (32x32 by default; ``size`` 16 or 64) shows one filled shape on black. Content (the class ``y``): circle, square,
triangle, cross or star. Style (``attrs``), drawn independently and uniformly per image:

* ``colour`` -- categorical, one of six fully saturated hues (red, yellow, green, cyan, blue, magenta);
* ``x``, ``y`` -- continuous, the shape's centre in [-0.4, 0.4] (image coordinates in [-1, 1],
  y pointing down);
* ``scale`` -- continuous, the radius of the shape's bounding circle in [0.35, 0.6];
* ``rot_cos``, ``rot_sin`` -- continuous, cos(k*theta) and sin(k*theta) of the rotation theta, where
  k is the shape's rotational symmetry order (square 4, triangle 3, cross 4, star 5): a rotation by
  2*pi/k gives the same image, so only k*theta is visible, and (cos, sin) keeps it continuous across
  the wrap-around. A circle has no visible rotation: its two rotation entries are NaN, and the
  ``attributes`` evaluator leaves NaN targets out.

This is the procedurally generated stand-in for the SimVAE paper's style tasks (CelebA hair colour):
a representation that keeps style lets a probe read colour, position, size and rotation; one
trained to be invariant to the protocol's augmentations (crops move and scale the shape; colour
jitter changes its hue) loses them. Rendering is vectorised torch: shapes are evaluated on a 2x
supersampled pixel grid in each shape's own rotated, scaled frame and averaged down (antialiasing),
so 12,000 images take about four seconds on one core. Same ``seed``, same images.
"""

from __future__ import annotations

import math
from typing import Any, ClassVar, Mapping

import torch

from sslbench import hookimpl
from sslbench.sdk.api import DatasetPlugin, ImageData, Param
from sslbench.sdk.protocol import COLOUR_CONV

CLASSES = ("circle", "square", "triangle", "cross", "star")
#: rotational symmetry order of each class (0: every rotation looks the same)
SYMMETRY = (0, 4, 3, 4, 5)
COLOURS = ("red", "yellow", "green", "cyan", "blue", "magenta")
ATTR_NAMES = ("colour", "x", "y", "scale", "rot_cos", "rot_sin")
ATTR_KINDS = ("categorical", "continuous", "continuous", "continuous", "continuous", "continuous")
CENTRE_RANGE = 0.4
SCALE_RANGE = (0.35, 0.6)


def shape_masks(u: torch.Tensor, v: torch.Tensor, shape: int) -> torch.Tensor:
    """Inside-test of class ``shape`` at points (u, v) of its own frame, where every shape fits in the
    unit circle: circle of radius 1; square of half-side 1/sqrt(2); equilateral triangle with vertices
    on the unit circle (one pointing up, v < 0); cross of two bars 1.9 long and 0.6 wide; five-armed star
    r <= 0.6 + 0.4 cos(5 phi)."""
    if shape == 0:
        return u * u + v * v <= 1.0
    if shape == 1:
        return torch.maximum(u.abs(), v.abs()) <= 1 / math.sqrt(2)
    if shape == 2:
        inside = torch.ones_like(u, dtype=torch.bool)
        for k in range(3):  # outward edge normals at -90 + 120k degrees; inradius 1/2
            a = math.radians(90 + 120 * k)
            inside &= u * math.cos(a) + v * math.sin(a) <= 0.5
        return inside
    if shape == 3:
        return ((u.abs() <= 0.3) & (v.abs() <= 0.95)) | ((u.abs() <= 0.95) & (v.abs() <= 0.3))
    if shape == 4:
        r = torch.sqrt(u * u + v * v)
        phi = torch.atan2(v, u) + math.pi / 2  # an arm points up
        return r <= 0.6 + 0.4 * torch.cos(5 * phi)
    raise ValueError(f"unknown shape class {shape}")


def hue_rgb(hue_index: torch.Tensor) -> torch.Tensor:
    """RGB in [0, 1] of the six saturated hues 0, 60, ..., 300 degrees."""
    table = torch.tensor([[1, 0, 0], [1, 1, 0], [0, 1, 0], [0, 1, 1], [0, 0, 1], [1, 0, 1]], dtype=torch.float32)
    return table[hue_index]


def render(shape: torch.Tensor, colour: torch.Tensor, cx: torch.Tensor, cy: torch.Tensor, scale: torch.Tensor, angle: torch.Tensor, size: int = 32, supersample: int = 2) -> torch.Tensor:
    """uint8 images (N, 3, size, size) of the given per-image factors (see the module docstring)."""
    n = shape.shape[0]
    side = size * supersample
    t = (torch.arange(side, dtype=torch.float32) + 0.5) / side * 2 - 1  # pixel centres in [-1, 1]
    gy, gx = torch.meshgrid(t, t, indexing="ij")
    dx = gx.unsqueeze(0) - cx.view(n, 1, 1)
    dy = gy.unsqueeze(0) - cy.view(n, 1, 1)
    cos, sin = torch.cos(angle).view(n, 1, 1), torch.sin(angle).view(n, 1, 1)
    s = scale.view(n, 1, 1)
    u = (cos * dx + sin * dy) / s  # rotate the grid by -angle: the shape turns by +angle
    v = (-sin * dx + cos * dy) / s
    mask = torch.zeros(n, side, side)
    for k in range(len(CLASSES)):
        idx = (shape == k).nonzero().squeeze(1)
        if len(idx):
            mask[idx] = shape_masks(u[idx], v[idx], k).float()
    coverage = torch.nn.functional.avg_pool2d(mask.unsqueeze(1), supersample)  # (N, 1, size, size)
    image = coverage * hue_rgb(colour).view(n, 3, 1, 1)
    return (image * 255).round().to(torch.uint8)


def generate(n: int, g: torch.Generator, size: int = 32, chunk: int = 2048) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``n`` random images, their classes and their style attributes (N, 6) in :data:`ATTR_NAMES` order."""
    shape = torch.randint(len(CLASSES), (n,), generator=g)
    colour = torch.randint(len(COLOURS), (n,), generator=g)
    cx = (torch.rand(n, generator=g) * 2 - 1) * CENTRE_RANGE
    cy = (torch.rand(n, generator=g) * 2 - 1) * CENTRE_RANGE
    scale = torch.rand(n, generator=g) * (SCALE_RANGE[1] - SCALE_RANGE[0]) + SCALE_RANGE[0]
    angle = torch.rand(n, generator=g) * 2 * math.pi
    images = torch.cat([
        render(shape[i : i + chunk], colour[i : i + chunk], cx[i : i + chunk], cy[i : i + chunk],
               scale[i : i + chunk], angle[i : i + chunk], size)
        for i in range(0, n, chunk)
    ]) if n else torch.zeros(0, 3, size, size, dtype=torch.uint8)
    order = torch.tensor(SYMMETRY, dtype=torch.float32)[shape]
    rot_cos = torch.where(order > 0, torch.cos(order * angle), torch.full_like(angle, math.nan))
    rot_sin = torch.where(order > 0, torch.sin(order * angle), torch.full_like(angle, math.nan))
    attrs = torch.stack([colour.float(), cx, cy, scale, rot_cos, rot_sin], dim=1)
    return images, shape, attrs


class Shapes(DatasetPlugin):
    name = "shapes"
    description = "generated shapes (32x32): 5 content classes, known style factors (colour, position, scale, rotation)"
    protocol = COLOUR_CONV
    needs_files = False
    params: ClassVar[Mapping[str, Param]] = {
        "n_train": Param(10000, "number of train images", minimum=1),
        "n_test": Param(2000, "number of test images", minimum=1),
        "seed": Param(0, "generator seed (same seed, same images)", minimum=0),
        "size": Param(32, "image side in pixels (16 is about 4x cheaper to train on a CPU)", choices=(16, 32, 64)),
    }

    def load(self, data_dir: str | None, **params: Any) -> ImageData:
        n_train = int(params.get("n_train", self.params["n_train"].default))
        n_test = int(params.get("n_test", self.params["n_test"].default))
        seed = int(params.get("seed", self.params["seed"].default))
        size = int(params.get("size", self.params["size"].default))
        g = torch.Generator().manual_seed(seed)
        train_x, train_y, train_attrs = generate(n_train, g, size)
        test_x, test_y, test_attrs = generate(n_test, g, size)
        return ImageData(
            name=self.name,
            train_x=train_x, train_y=train_y, test_x=test_x, test_y=test_y,
            train_attrs=train_attrs, test_attrs=test_attrs,
            classes=CLASSES, attr_names=ATTR_NAMES, attr_kinds=ATTR_KINDS,
            note=f"generated shapes, seed {seed}, {n_train} train / {n_test} test, {size}x{size}",
        )


@hookimpl
def register_datasets(register) -> None:  # type: ignore[no-untyped-def]
    register(Shapes)

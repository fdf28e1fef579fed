"""Batched augmentation: torchvision semantics, per-sample randomness, determinism."""

from __future__ import annotations

import math

import pytest
import torch
import torchvision.transforms.functional as TF

from sslbench.engine import augment as A
from sslbench.sdk.protocol import COLOUR_CONV, MNIST_MLP, AugmentSpec


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


@pytest.mark.parametrize("name", ["brightness", "contrast", "saturation"])
def test_colour_ops_match_torchvision_per_sample(name: str) -> None:
    x = torch.rand(5, 3, 9, 7)
    f = torch.tensor([0.2, 0.7, 1.0, 1.4, 1.8]).view(5, 1, 1, 1)
    ours = getattr(A, f"adjust_{name}")(x, f)
    ref = torch.stack([getattr(TF, f"adjust_{name}")(x[i], float(f[i])) for i in range(5)])
    torch.testing.assert_close(ours, ref, atol=2e-4, rtol=0)


def test_hue_matches_torchvision() -> None:
    x = torch.rand(4, 3, 6, 6)
    shift = torch.tensor([-0.2, -0.05, 0.1, 0.2])
    ref = torch.stack([TF.adjust_hue(x[i], float(shift[i])) for i in range(4)])
    torch.testing.assert_close(A.adjust_hue(x, shift), ref, atol=1e-5, rtol=0)


def test_crop_parameters_respect_scale_and_ratio() -> None:
    spec = AugmentSpec(crop_scale=(0.4, 1.0), crop_ratio=(0.75, 1.3))
    w, h, cx, cy = A.crop_params(20000, spec, gen(), torch.device("cpu"))
    area, ratio = w * h, w / h
    assert area.min() >= 0.4 - 1e-6 and area.max() <= 1.0 + 1e-6
    assert ratio.min() >= 0.75 - 1e-5 and ratio.max() <= 1.3 + 1e-5
    assert (cx.abs() <= 1 - w + 1e-6).all() and (cy.abs() <= 1 - h + 1e-6).all()  # crop inside the image
    # log-uniform ratio: the median is the geometric mean of the bounds
    assert abs(ratio.median().item() - math.sqrt(0.75 * 1.3)) < 0.02
    assert w.std() > 0.05  # per-sample parameters, not one draw per batch


def test_identity_spec_returns_the_image_and_flip_flips() -> None:
    x = torch.rand(3, 1, 8, 8)
    same = A.augment(x, AugmentSpec(crop_scale=(1, 1), crop_ratio=(1, 1)), gen())
    torch.testing.assert_close(same, x, atol=1e-5, rtol=0)
    flipped = A.augment(x, AugmentSpec(crop_scale=(1, 1), crop_ratio=(1, 1), vflip_p=1.0), gen())
    torch.testing.assert_close(flipped, x.flip(2), atol=1e-5, rtol=0)
    flipped = A.augment(x, AugmentSpec(crop_scale=(1, 1), crop_ratio=(1, 1), hflip_p=1.0), gen())
    torch.testing.assert_close(flipped, x.flip(3), atol=1e-5, rtol=0)


def test_views_shape_original_first_and_determinism() -> None:
    x = (torch.rand(6, 3, 16, 16) * 255).to(torch.uint8)
    v1 = A.make_views(x, COLOUR_CONV.augment, views=4, original=True, g=gen(3))
    v2 = A.make_views(x, COLOUR_CONV.augment, views=4, original=True, g=gen(3))
    assert v1.shape == (6, 5, 3, 16, 16)
    torch.testing.assert_close(v1, v2)
    torch.testing.assert_close(v1[:, 0], x.float() / 255)
    assert not torch.allclose(v1[:, 1], v1[:, 2])  # views differ from each other
    assert v1.min() >= 0 and v1.max() <= 1


def test_mnist_protocol_views_are_grey_and_differ() -> None:
    x = (torch.rand(4, 1, 28, 28) * 255).to(torch.uint8)
    v = A.make_views(x, MNIST_MLP.augment, views=10, original=False, g=gen())
    assert v.shape == (4, 10, 1, 28, 28)
    assert (v[:, 0] - v[:, 1]).abs().mean() > 0.01

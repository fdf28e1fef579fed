"""Batched, on-device augmentation with per-sample random parameters.

One sampling grid + ``grid_sample`` performs random-resized-crop and flips for a whole batch; colour
jitter and grayscale are a few vectorised tensor ops. A method asking for J views of B images gets one
(B, J, C, H, W) tensor made in a single pass over B*J images; with ``view_major`` its memory is laid
out view after view, so that each ``views[:, j]`` is one contiguous block (a method that runs each
view through its networks separately then copies nothing), with the very same numbers: the random
parameters are drawn in the same (image-major) order and only handed to the images in another. Semantics follow torchvision's
``RandomResizedCrop`` (area fraction and log-uniform aspect ratio, whole-pixel crop boxes inside the
image, as its ``get_params``; bilinear),
``RandomHorizontalFlip``/``RandomVerticalFlip`` and ``ColorJitter`` (brightness, contrast, saturation,
hue, applied in that fixed order rather than a random one).
"""

from __future__ import annotations

import math

import torch
from torch.nn import functional as F

from sslbench.sdk.protocol import AugmentSpec


def _uniform(n: int, low: float, high: float, g: torch.Generator, device: torch.device) -> torch.Tensor:
    return torch.rand(n, generator=g, device=device) * (high - low) + low


def crop_params(
    n: int, spec: AugmentSpec, g: torch.Generator, device: torch.device, size: tuple[int, int] | None = None,
) -> tuple[torch.Tensor, ...]:
    """Per-sample crop width/height (fractions of the side) and centre (normalised [-1, 1] coords).

    Area fraction s ~ U(scale) and ratio r = w/h log-uniform in ``ratio``; like torchvision, a draw
    that does not fit is redrawn (up to 10 times). With ``size`` = (height, width), the image the
    crops are for (what :func:`augment` passes), the boxes are torchvision's
    ``RandomResizedCrop.get_params`` boxes: whole pixels, w = round(sqrt(s r H W)),
    h = round(sqrt(s H W / r)) (round half to even, as Python's ``round``), a draw fits when
    0 < w <= W and 0 < h <= H, the top-left corner is a whole pixel uniform in [0, H - h] x [0, W - w],
    and when no draw fits, torchvision's central crop at the ratio clamped to the range. Without
    ``size``: the same draws for a continuous image (w = sqrt(s r), h = sqrt(s / r), centre uniform in
    the room left; no draw fits: the whole image).
    """
    tries = 10
    s = torch.rand(n, tries, generator=g, device=device) * (spec.crop_scale[1] - spec.crop_scale[0]) + spec.crop_scale[0]
    log_lo, log_hi = math.log(spec.crop_ratio[0]), math.log(spec.crop_ratio[1])
    r = torch.exp(torch.rand(n, tries, generator=g, device=device) * (log_hi - log_lo) + log_lo)
    if size is not None:
        return _pixel_boxes(s, r, g, spec, size)
    cw, ch = torch.sqrt(s * r), torch.sqrt(s / r)
    ok = (cw <= 1) & (ch <= 1)
    first = ok.float().argmax(1, keepdim=True)  # the first draw that fits, as torchvision's retry loop
    w, h = cw.gather(1, first).squeeze(1), ch.gather(1, first).squeeze(1)
    # no draw fits (rare): the whole image, whose ratio 1 lies inside every protocol's range
    fits = ok.any(1)
    w = torch.where(fits, w, torch.ones_like(w))
    h = torch.where(fits, h, torch.ones_like(h))
    cx = (_uniform(n, -1.0, 1.0, g, device)) * (1 - w)
    cy = (_uniform(n, -1.0, 1.0, g, device)) * (1 - h)
    return w, h, cx, cy


def _pixel_boxes(s: torch.Tensor, r: torch.Tensor, g: torch.Generator, spec: AugmentSpec, size: tuple[int, int]) -> tuple[torch.Tensor, ...]:
    """:func:`crop_params` for an image of ``size`` (height, width): torchvision's whole-pixel boxes
    from the draws ``s``, ``r`` (n, tries), as (w / W, h / H, centre x, centre y) in grid units."""
    n, device = s.shape[0], s.device
    height, width = size
    area = float(height * width)
    cw = torch.round(torch.sqrt(s * r * area))  # pixels; torch.round is half-to-even, as Python's round
    ch = torch.round(torch.sqrt(s / r * area))
    ok = (cw > 0) & (cw <= width) & (ch > 0) & (ch <= height)
    first = ok.float().argmax(1, keepdim=True)  # the first draw that fits, as torchvision's retry loop
    w, h = cw.gather(1, first).squeeze(1), ch.gather(1, first).squeeze(1)
    # no draw fits (rare): torchvision's central crop, the ratio clamped to the range
    in_ratio = width / height
    if in_ratio < min(spec.crop_ratio):
        fw, fh = width, int(round(width / min(spec.crop_ratio)))
    elif in_ratio > max(spec.crop_ratio):
        fw, fh = int(round(height * max(spec.crop_ratio))), height
    else:
        fw, fh = width, height
    fits = ok.any(1)
    w = torch.where(fits, w, torch.full_like(w, float(fw)))
    h = torch.where(fits, h, torch.full_like(h, float(fh)))
    # the corner: the same two uniform draws as the continuous case, made whole pixels
    # (floor(u * (room + 1)) is uniform over 0..room, as torch.randint(0, room + 1)); central on fallback
    ux, uy = torch.rand(n, generator=g, device=device), torch.rand(n, generator=g, device=device)
    left = torch.minimum(torch.floor(ux * (width - w + 1)), width - w)
    top = torch.minimum(torch.floor(uy * (height - h + 1)), height - h)
    left = torch.where(fits, left, torch.full_like(left, float((width - fw) // 2)))
    top = torch.where(fits, top, torch.full_like(top, float((height - fh) // 2)))
    # grid units (align_corners=False): the box [left, left + w) spans 2 left / W - 1 .. 2 (left + w) / W - 1
    return w / width, h / height, (2 * left + w) / width - 1, (2 * top + h) / height - 1


def _grayscale(x: torch.Tensor) -> torch.Tensor:
    """ITU-R 601-2 luma (torchvision's rgb_to_grayscale), keeping the channel dim."""
    r, g, b = x.unbind(1)
    return (0.299 * r + 0.587 * g + 0.114 * b).unsqueeze(1)


def _rgb_to_hsv(x: torch.Tensor) -> torch.Tensor:
    r, g, b = x.unbind(1)
    maxc, _ = x.max(1)
    minc, _ = x.min(1)
    v = maxc
    delta = maxc - minc
    s = delta / torch.where(maxc > 0, maxc, torch.ones_like(maxc))
    safe = torch.where(delta > 0, delta, torch.ones_like(delta))
    rc, gc, bc = (maxc - r) / safe, (maxc - g) / safe, (maxc - b) / safe
    h = torch.where(maxc == r, bc - gc, torch.where(maxc == g, 2.0 + rc - bc, 4.0 + gc - rc))
    h = torch.where(delta > 0, (h / 6.0) % 1.0, torch.zeros_like(h))
    return torch.stack([h, s, v], 1)


def _hsv_to_rgb(x: torch.Tensor) -> torch.Tensor:
    h, s, v = x.unbind(1)
    i = torch.floor(h * 6.0)
    f = h * 6.0 - i
    i = i.to(torch.int64) % 6
    p, q, t = v * (1 - s), v * (1 - s * f), v * (1 - s * (1 - f))
    choices = torch.stack(
        [torch.stack(c, 1) for c in ((v, t, p), (q, v, p), (p, v, t), (p, q, v), (t, p, v), (v, p, q))], 0
    )  # (6, B, 3, H, W)
    idx = i.unsqueeze(0).unsqueeze(2).expand(1, -1, 3, -1, -1)
    return choices.gather(0, idx).squeeze(0)


def adjust_brightness(x: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
    """torchvision's adjust_brightness with a per-sample factor (N, 1, 1, 1)."""
    return (x * factor).clamp(0, 1)


def adjust_contrast(x: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
    """torchvision's adjust_contrast: blend with the mean grey level of each image."""
    mean = _grayscale(x).mean((1, 2, 3), keepdim=True)
    return ((x - mean) * factor + mean).clamp(0, 1)


def adjust_saturation(x: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
    """torchvision's adjust_saturation: blend with the grey version of each image."""
    grey = _grayscale(x)
    return ((x - grey) * factor + grey).clamp(0, 1)


def adjust_hue(x: torch.Tensor, shift: torch.Tensor) -> torch.Tensor:
    """torchvision's adjust_hue: rotate the hue by ``shift`` (N,) turns, in HSV space."""
    hsv = _rgb_to_hsv(x)
    hue = (hsv[:, :1] + shift.view(-1, 1, 1, 1)) % 1.0
    return _hsv_to_rgb(torch.cat([hue, hsv[:, 1:]], 1))


def _rows(t: torch.Tensor, order: torch.Tensor | None) -> torch.Tensor:
    """Per-sample draws ``t`` handed to the samples in ``order`` (``t[order]``; ``t`` when None)."""
    return t if order is None else t[order]


def colour_jitter(x: torch.Tensor, spec: AugmentSpec, g: torch.Generator, order: torch.Tensor | None = None) -> torch.Tensor:
    """Per-sample brightness, contrast, saturation and hue jitter on (N, 3, H, W) in [0, 1], each
    image jittered with probability ``spec.jitter_p`` (factors 1 and shift 0 for the others).
    ``order``: see :func:`augment`."""
    n, device = x.shape[0], x.device
    apply = (_rows(torch.rand(n, generator=g, device=device), order) < spec.jitter_p).view(n, 1, 1, 1)

    def factor(strength: float) -> torch.Tensor:
        f = _rows(_uniform(n, max(0.0, 1 - strength), 1 + strength, g, device), order).view(n, 1, 1, 1)
        return torch.where(apply, f, torch.ones_like(f))

    out = x
    if spec.brightness:
        out = adjust_brightness(out, factor(spec.brightness))
    if spec.contrast:
        out = adjust_contrast(out, factor(spec.contrast))
    if spec.saturation:
        out = adjust_saturation(out, factor(spec.saturation))
    if spec.hue:
        shift = _rows(_uniform(n, -spec.hue, spec.hue, g, device), order)
        out = adjust_hue(out, torch.where(apply.view(n), shift, torch.zeros_like(shift)))
    return out


def augment(x: torch.Tensor, spec: AugmentSpec, g: torch.Generator, order: torch.Tensor | None = None) -> torch.Tensor:
    """Augment a batch (N, C, H, W) of float images in [0, 1], each with its own random parameters.

    ``order`` (a permutation of N): image ``p`` gets the parameters drawn for sample ``order[p]``;
    the draws themselves come from ``g`` in the same sequence either way, and every operation is per
    image, so a reordered batch gives the very same images, reordered."""
    n, c, height, width = x.shape
    device = x.device
    w, h, cx, cy = (_rows(t, order) for t in crop_params(n, spec, g, device, (height, width)))
    sx = torch.where(_rows(torch.rand(n, generator=g, device=device), order) < spec.hflip_p, -w, w)
    sy = torch.where(_rows(torch.rand(n, generator=g, device=device), order) < spec.vflip_p, -h, h)
    # the affine map has no rotation or shear, so the sampling grid is two broadcast products
    # (F.affine_grid would spend a batched matmul on the same numbers)
    xs = (torch.arange(width, device=device, dtype=x.dtype) * 2 + 1) / width - 1  # pixel centres
    ys = (torch.arange(height, device=device, dtype=x.dtype) * 2 + 1) / height - 1
    gx = (sx.view(n, 1, 1) * xs.view(1, 1, width) + cx.view(n, 1, 1)).expand(n, height, width)
    gy = (sy.view(n, 1, 1) * ys.view(1, height, 1) + cy.view(n, 1, 1)).expand(n, height, width)
    grid = torch.stack([gx, gy], dim=-1)
    out = F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)
    if c == 3 and spec.has_colour:
        out = colour_jitter(out, spec, g, order)
    if c == 3 and spec.grayscale_p > 0:
        grey = (_rows(torch.rand(n, generator=g, device=device), order) < spec.grayscale_p).view(n, 1, 1, 1)
        out = torch.where(grey, _grayscale(out).expand_as(out), out)
    return out


def lay_out(views: torch.Tensor, view_major: bool, channels_last: bool) -> torch.Tensor:
    """``views`` (B, V, C, H, W), same shape and values, with its memory view-major (each
    ``views[:, j]`` contiguous) or image-major, and each image channels-last when asked; copies only
    when the layout differs."""
    b, v = views.shape[:2]
    shape = views.shape[2:]
    vb = views.transpose(0, 1) if view_major else views  # the order the memory should have
    flat = vb.reshape(b * v, *shape)
    fmt = torch.channels_last if channels_last and len(shape) == 3 else torch.contiguous_format
    flat = flat.contiguous(memory_format=fmt)
    vb = flat.view(v, b, *shape) if view_major else flat.view(b, v, *shape)
    return vb.transpose(0, 1) if view_major else vb


def make_views(
    x_uint8: torch.Tensor, spec: AugmentSpec, views: int, original: bool, g: torch.Generator,
    view_major: bool = False, channels_last: bool = False,
) -> torch.Tensor:
    """(B, V, C, H, W) float views of a uint8 batch: the original first when asked, then ``views``
    augmentations, all made in one batched pass of B*views images.

    ``view_major``: the same tensor (same shape, same values, bit for bit) with each ``views[:, j]``
    a contiguous block in memory, for methods that take the views one at a time (``views[:, j]``
    of an image-major tensor is a strided slice that each network copies); ``flatten(0, 1)`` on it
    would copy instead. ``channels_last``: each image laid out channels-last (convolutions on CUDA)."""
    x = x_uint8.float().div_(255)
    b = x.shape[0]
    if not view_major:
        parts = []
        if original:
            parts.append(x.unsqueeze(1))
        if views > 0:
            rep = x.unsqueeze(1).expand(b, views, *x.shape[1:]).reshape(b * views, *x.shape[1:])
            parts.append(augment(rep, spec, g).view(b, views, *x.shape[1:]))
        out = parts[0] if len(parts) == 1 else torch.cat(parts, 1)
        return lay_out(out, False, True) if channels_last else out
    vparts = []
    if original:
        vparts.append(x.unsqueeze(0))
    if views > 0:
        rep = x.unsqueeze(0).expand(views, b, *x.shape[1:]).reshape(views * b, *x.shape[1:])
        # view-major image p = j*b + i gets the draws of image-major sample i*views + j
        order = torch.arange(b * views, device=x.device).view(b, views).t().reshape(-1)
        vparts.append(augment(rep, spec, g, order).view(views, b, *x.shape[1:]))
    vb = vparts[0] if len(vparts) == 1 else torch.cat(vparts, 0)
    out = vb.transpose(0, 1)
    return lay_out(out, True, True) if channels_last else out

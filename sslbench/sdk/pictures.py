"""Save grids of images as PNG files (for evaluators that write artefacts into ``inputs.run_dir``).

Images are float tensors in [0, 1] with 1 (grey) or 3 (RGB) channels, given either as a batch
(N, C, H, W) laid out ``ncol`` per row, or as a table (rows, cols, C, H, W). Small images are enlarged
by an integer factor (nearest neighbour) so that every cell is at least ``min_cell`` pixels high.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np
import torch
from torch.nn import functional as F

from sslbench.sdk.files import atomic_path


def image_grid(images: torch.Tensor, ncol: int | None = None, padding: int = 2, pad_value: float = 1.0, min_cell: int = 32) -> np.ndarray:
    """A (H', W', C) uint8 array holding the images in a grid separated by ``padding`` pixels."""
    if images.dim() == 5:
        rows, cols = images.shape[:2]
        table = images
    elif images.dim() == 4:
        n = images.shape[0]
        cols = max(1, min(ncol or math.ceil(math.sqrt(n)), n))
        rows = math.ceil(n / cols)
        fill = images.new_full((rows * cols - n, *images.shape[1:]), pad_value)
        table = torch.cat([images, fill]).view(rows, cols, *images.shape[1:])
    else:
        raise ValueError(f"image_grid takes (N, C, H, W) or (rows, cols, C, H, W) images, got shape {tuple(images.shape)}")
    c, h, w = table.shape[2:]
    if c not in (1, 3):
        raise ValueError(f"image_grid needs 1 (grey) or 3 (RGB) channels, got {c}")
    if rows == 0 or cols == 0:
        raise ValueError("image_grid got no images to draw")
    table = table.detach().float().cpu().clamp(0, 1)
    scale = max(1, math.ceil(min_cell / h))
    if scale > 1:
        flat = F.interpolate(table.reshape(rows * cols, c, h, w), scale_factor=scale, mode="nearest")
        table = flat.view(rows, cols, c, h * scale, w * scale)
        h, w = h * scale, w * scale
    canvas = torch.full((c, rows * (h + padding) + padding, cols * (w + padding) + padding), pad_value)
    for r in range(rows):
        for k in range(cols):
            top, left = padding + r * (h + padding), padding + k * (w + padding)
            canvas[:, top : top + h, left : left + w] = table[r, k]
    pixels = (canvas * 255).round().to(torch.uint8).permute(1, 2, 0).numpy()
    return pixels


def save_grid(images: torch.Tensor, path: str | os.PathLike[str], ncol: int | None = None, padding: int = 2, min_cell: int = 32) -> Path:
    """Write :func:`image_grid` of ``images`` to ``path`` as a PNG (atomically); returns the path."""
    from PIL import Image

    pixels = image_grid(images, ncol=ncol, padding=padding, min_cell=min_cell)
    path = Path(path)
    with atomic_path(path) as tmp:
        # a 2-D uint8 array becomes a grey ("L") PNG, an (H, W, 3) one an RGB PNG
        Image.fromarray(pixels[:, :, 0] if pixels.shape[2] == 1 else pixels).save(tmp, format="PNG")
    return path

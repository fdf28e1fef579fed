"""Helpers for dataset plugins: where files live, IDX files, deterministic splits.

The data path itself is simple on purpose: a dataset plugin returns :class:`sslbench.sdk.api.ImageData`
(uint8 tensors); the runner moves it to the training device once; the training loop indexes it there.
"""

from __future__ import annotations

import gzip
import os
import shutil
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Iterator

import torch

from sslbench.sdk.api import DataError
from sslbench.sdk.files import atomic_path

if TYPE_CHECKING:
    import numpy as np


def cache_dir(*parts: str) -> Path:
    """sslbench's cache folder (``$SSLBENCH_CACHE``, else ``~/.cache/sslbench``), created on demand."""
    root = Path(os.environ.get("SSLBENCH_CACHE") or Path.home() / ".cache" / "sslbench")
    path = root.joinpath(*parts)
    path.mkdir(parents=True, exist_ok=True)
    return path


@contextmanager
def downloading(name: str, offline_hint: str) -> Iterator[None]:
    """Run a download (torchvision's or an archive fetch) and turn any failure -- network, quota,
    checksum -- into a :class:`DataError` that names the data set and says how to provide it offline."""
    try:
        yield
    except Exception as exc:  # noqa: BLE001 - network failures come in many types
        raise DataError(f"could not download {name} ({type(exc).__name__}: {exc}). {offline_hint}") from exc


def find_file(data_dir: Path, stem: str, subdirs: tuple[str, ...] = ("",)) -> Path | None:
    """The first of ``data_dir/<subdir>/<stem>`` or ``<stem>.gz`` that exists."""
    for sub in subdirs:
        for suffix in ("", ".gz"):
            candidate = data_dir / sub / f"{stem}{suffix}"
            if candidate.is_file():
                return candidate
    return None


def unpack_gz(path: Path, into: Path) -> Path:
    """Decompress ``path`` (if it is .gz) into ``into`` once, atomically; return the unpacked file."""
    if path.suffix != ".gz":
        return path
    target = into / path.stem
    if target.is_file() and target.stat().st_mtime >= path.stat().st_mtime:
        return target
    try:
        with atomic_path(target) as tmp, gzip.open(path, "rb") as src, open(tmp, "wb") as dst:
            shutil.copyfileobj(src, dst)
    except (OSError, EOFError) as exc:
        raise DataError(f"{path} is not a readable gzip file ({exc}); replace it with an intact copy") from exc
    return target


def stratified_split(labels: torch.Tensor, test_fraction: float, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Deterministic stratified split of indices into (train, test)."""
    g = torch.Generator().manual_seed(seed)
    train, test = [], []
    for c in labels.unique():
        idx = (labels == c).nonzero().squeeze(1)
        idx = idx[torch.randperm(len(idx), generator=g)]
        k = int(round(len(idx) * test_fraction))
        test.append(idx[:k])
        train.append(idx[k:])
    return torch.cat(train).sort().values, torch.cat(test).sort().values


def validation_index(labels: torch.Tensor, fraction: float = 0.1, seed: int = 0) -> torch.Tensor:
    """The fixed validation split carved from train for model selection (stratified)."""
    _, val = stratified_split(labels.cpu(), fraction, seed)
    return val


# --- image files: decoding once, caching the decoded tensors ---------------------------------------

#: file name endings read as images (torchvision's ImageFolder set), compared lower-case
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp")

#: bump when the decoding below changes, so cached tensors made by an older version are not reused
DECODE_VERSION = 1


def decode_image(path: Path, size: int, centre_crop: int | None = None) -> np.ndarray:
    """One image file as a (3, size, size) uint8 RGB array.

    An optional ``centre_crop`` (a square of that side, torchvision ``CenterCrop`` placement) comes
    first; then the shorter side is resized to ``size`` (bilinear, antialiased as Pillow does when
    shrinking) and the centre ``size`` x ``size`` square kept -- torchvision's ``Resize(size)`` then
    ``CenterCrop(size)``. A file that is missing or not a readable image raises :class:`DataError`
    naming it.
    """
    import numpy as np
    from PIL import Image

    try:
        with Image.open(path) as opened:
            image = opened.convert("RGB")
    except FileNotFoundError:
        raise DataError(f"image {path} is missing; restore it from the original archive") from None
    except (OSError, ValueError, SyntaxError) as exc:  # PIL: UnidentifiedImageError, truncated files
        raise DataError(
            f"image {path} is not a readable image ({type(exc).__name__}: {exc}); replace it with an intact "
            "copy from the original archive, or delete it"
        ) from exc
    if centre_crop is not None:
        image = _centre_crop(image, centre_crop)
    w, h = image.size
    if min(w, h) != size:
        scale = size / min(w, h)
        new = (max(size, round(w * scale)), max(size, round(h * scale)))
        image = image.resize(new, Image.BILINEAR)
    image = _centre_crop(image, size)
    return np.asarray(image, dtype=np.uint8).transpose(2, 0, 1)


def _centre_crop(image, side: int):  # type: ignore[no-untyped-def]
    w, h = image.size
    if w < side or h < side:
        raise DataError(f"an image of {w}x{h} pixels is smaller than the {side}x{side} centre crop asked for")
    left, top = int(round((w - side) / 2.0)), int(round((h - side) / 2.0))
    return image.crop((left, top, left + side, top + side))


def decode_images(paths: list[Path], size: int, centre_crop: int | None = None, workers: int | None = None) -> torch.Tensor:
    """Decode many image files into one (N, 3, size, size) uint8 tensor with :func:`decode_image`.

    Pillow releases the GIL while it decodes and resizes, so a small thread pool (one thread per core
    by default) uses the cores without worker processes.
    """
    import numpy as np
    from concurrent.futures import ThreadPoolExecutor

    out = np.empty((len(paths), 3, size, size), dtype=np.uint8)

    def work(i: int) -> None:
        out[i] = decode_image(paths[i], size, centre_crop)

    workers = workers or max(1, min(8, os.cpu_count() or 1))
    if workers == 1 or len(paths) < 64:
        for i in range(len(paths)):
            work(i)
    else:
        with ThreadPoolExecutor(max_workers=workers) as pool:
            for _ in pool.map(work, range(len(paths))):
                pass  # re-raises the first DataError
    return torch.from_numpy(out)


def files_fingerprint(paths: list[Path], **settings: object) -> str:
    """A short key for a list of files and the settings they are decoded with: every path, size and
    modification time (so an edited, added or removed file changes the key) plus ``settings``."""
    import hashlib
    import json

    digest = hashlib.sha256(json.dumps(settings, sort_keys=True, default=str).encode())
    for path in paths:
        try:
            st = path.stat()
        except FileNotFoundError:
            raise DataError(f"{path} is missing; restore it from the original archive") from None
        digest.update(f"{path}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
    return digest.hexdigest()[:20]


def cached_tensors(namespace: str, key: str, build) -> dict:  # type: ignore[no-untyped-def]
    """``build()`` (a dict of tensors, strings and lists) computed once and kept in
    ``cache_dir(namespace)/<key>.pt``; later calls with the same key load it instead. The file is
    written atomically; an unreadable cache file is rebuilt rather than trusted."""
    path = cache_dir(namespace) / f"{key}.pt"
    if path.is_file():
        try:
            return torch.load(path, weights_only=True)
        except Exception:  # noqa: BLE001 - a half-written or foreign file: rebuild it
            path.unlink(missing_ok=True)
    result = build()
    with atomic_path(path) as tmp:
        torch.save(result, tmp)
    return result

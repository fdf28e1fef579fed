"""Helpers for dataset plugins: where files live, IDX files, deterministic splits.

The data path itself is simple on purpose: a dataset plugin returns :class:`sslbench.sdk.api.ImageData`
(uint8 tensors); the runner moves it to the training device once; the training loop indexes it there.
"""

from __future__ import annotations

import gzip
import hashlib
import logging
import os
import shutil
import zlib
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Iterator, Mapping

import torch

from sslbench.sdk.api import DataError, ImageData
from sslbench.sdk.files import atomic_path

if TYPE_CHECKING:
    import numpy as np

log = logging.getLogger("sslbench.sdk.data")

#: bytes read at a time when a file is hashed or unpacked
CHUNK = 1 << 20


def cache_root() -> Path:
    """sslbench's cache folder (``$SSLBENCH_CACHE``, else ``~/.cache/sslbench``), not created."""
    return Path(os.environ.get("SSLBENCH_CACHE") or Path.home() / ".cache" / "sslbench").expanduser()


def cache_dir(*parts: str) -> Path:
    """A folder inside sslbench's cache folder (:func:`cache_root`), created on demand."""
    path = cache_root().joinpath(*parts)
    path.mkdir(parents=True, exist_ok=True)
    return path


def file_digest(path: Path, algorithm: str = "sha256") -> str:
    """The hex digest of a file's bytes (read in chunks); a missing or unreadable file is a
    :class:`DataError` naming it."""
    digest = hashlib.new(algorithm)
    try:
        with open(path, "rb") as f:
            while chunk := f.read(CHUNK):
                digest.update(chunk)
    except OSError as exc:
        raise DataError(f"{path} cannot be read ({exc}); restore it or point the data set at another copy") from exc
    return digest.hexdigest()


def gz_content_digest(path: Path, algorithm: str = "md5") -> str:
    """The hex digest of the uncompressed content of the gzip file ``path``."""
    digest = hashlib.new(algorithm)
    try:
        with gzip.open(path, "rb") as src:
            while chunk := src.read(CHUNK):
                digest.update(chunk)
    except (OSError, EOFError, zlib.error) as exc:
        raise DataError(f"{path} is not a readable gzip file ({exc}); replace it with an intact copy") from exc
    return digest.hexdigest()


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
    """Decompress ``path`` (if it is .gz) into ``into`` once; return the unpacked file.

    The unpacked copy is named after a digest of the compressed bytes (``<stem>.<sha256 prefix>``), so
    other files with the same name -- whatever their modification times -- are never served an old
    copy. It is written atomically: a damaged archive raises :class:`DataError` naming it and leaves
    no partial file behind."""
    if path.suffix != ".gz":
        return path
    target = into / f"{path.stem}.{file_digest(path)[:20]}"
    if target.is_file():
        return target
    try:
        with atomic_path(target) as tmp, gzip.open(path, "rb") as src, open(tmp, "wb") as dst:
            shutil.copyfileobj(src, dst, CHUNK)
    except (OSError, EOFError, zlib.error) as exc:
        raise DataError(f"{path} is not a readable gzip file ({exc}); replace it with an intact copy") from exc
    return target


def matches_official(path: Path, digests: Mapping[str, str], plain: Path | None = None) -> bool | None:
    """Whether ``path`` holds the official file of its name: True or False, None when ``digests``
    (file name -> md5, as :attr:`DatasetPlugin.digests`) knows no digest for it.

    A ``NAME.gz`` matches when its own md5 is the official archive's, or when its uncompressed content
    has the md5 listed for ``NAME`` (a re-compressed copy of the official bytes); ``plain``, when
    given, is that uncompressed content already unpacked (:func:`unpack_gz`), so it is not inflated twice.
    """
    name = path.name
    stem = name[:-3] if name.endswith(".gz") else None
    if name not in digests and (stem is None or stem not in digests):
        return None
    if name in digests and file_digest(path, "md5") == digests[name]:
        return True
    if stem is not None and stem in digests:
        content = file_digest(plain, "md5") if plain is not None else gz_content_digest(path)
        return content == digests[stem]
    return False


def check_official(dataset: str, path: Path, digests: Mapping[str, str], plain: Path | None = None) -> str:
    """Compare ``path`` with the published digest of the official file (:func:`matches_official`).
    Returns "" when it matches or no digest is known; otherwise logs a warning naming the file and
    returns it (for the data set's note)."""
    if matches_official(path, digests, plain) is not False:
        return ""
    message = (
        f"{path} is not the official {dataset} file of that name (its md5 differs from the published one); "
        "results on it are not comparable with published figures"
    )
    log.warning("warning: %s", message)
    return message
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


def files_fingerprint(paths: list[Path], workers: int | None = None, **settings: object) -> str:
    """A short key for a list of files and the settings they are decoded with: every path, size and
    SHA-256 of the bytes (so a replaced, added or removed file changes the key whatever its
    modification time) plus ``settings``. Files are hashed on a small thread pool."""
    import json
    from concurrent.futures import ThreadPoolExecutor

    def one(path: Path) -> str:
        if not path.is_file():
            raise DataError(f"{path} is missing; restore it from the original archive")
        return f"{path}\0{path.stat().st_size}\0{file_digest(path)}\n"

    digest = hashlib.sha256(json.dumps(settings, sort_keys=True, default=str).encode())
    workers = workers or max(1, min(8, os.cpu_count() or 1))
    if workers == 1 or len(paths) < 256:
        lines = [one(p) for p in paths]
    else:
        with ThreadPoolExecutor(max_workers=workers) as pool:
            lines = list(pool.map(one, paths, chunksize=64))
    for line in lines:
        digest.update(line.encode())
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


#: the tensors of :class:`ImageData` a fingerprint covers, in this order (absent optional ones are skipped)
FINGERPRINTED = ("train_x", "train_y", "test_x", "test_y", "train_attrs", "test_attrs", "train_next")


def data_fingerprint(data: ImageData) -> str:
    """A short hex SHA-256 of the data actually loaded: for each tensor of :data:`FINGERPRINTED`
    present (images, labels, and the optional attributes and partner indices), its name, dtype,
    shape and bytes. Equal data give equal fingerprints on any device; one changed pixel or label
    changes it. MNIST takes a few hundredths of a second."""
    digest = hashlib.sha256(b"sslbench-data-v1\n")
    for key in FINGERPRINTED:
        tensor = getattr(data, key)
        if tensor is None:
            continue
        tensor = tensor.detach().to("cpu").contiguous()
        digest.update(f"{key}\0{tensor.dtype}\0{tuple(tensor.shape)}\n".encode())
        digest.update(tensor.reshape(-1).view(torch.uint8).numpy().data)
    return digest.hexdigest()[:16]

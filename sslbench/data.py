"""Helpers for dataset plugins: where files live, IDX files, deterministic splits.

The data path itself is simple on purpose: a dataset plugin returns :class:`sslbench.api.ImageData`
(uint8 tensors); the runner moves it to the training device once; the training loop indexes it there.
"""

from __future__ import annotations

import gzip
import os
import shutil
from pathlib import Path

import torch

from sslbench.api import DataError


def cache_dir(*parts: str) -> Path:
    """sslbench's cache folder (``$SSLBENCH_CACHE``, else ``~/.cache/sslbench``), created on demand."""
    root = Path(os.environ.get("SSLBENCH_CACHE") or Path.home() / ".cache" / "sslbench")
    path = root.joinpath(*parts)
    path.mkdir(parents=True, exist_ok=True)
    return path


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
    into.mkdir(parents=True, exist_ok=True)
    tmp = target.with_suffix(target.suffix + ".part")
    try:
        with gzip.open(path, "rb") as src, open(tmp, "wb") as dst:
            shutil.copyfileobj(src, dst)
    except (OSError, EOFError) as exc:
        tmp.unlink(missing_ok=True)
        raise DataError(f"{path} is not a readable gzip file ({exc}); replace it with an intact copy") from exc
    os.replace(tmp, target)
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

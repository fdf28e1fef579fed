"""Data sets of the core issue: digits (embedded), MNIST/Fashion-MNIST from IDX files."""

from __future__ import annotations

import gzip
import struct
from pathlib import Path

import numpy as np
import pytest
import torch

from sslbench.sdk.api import DataError

from conftest import SHARED


def write_idx(path: Path, array: np.ndarray, compress: bool = True) -> None:
    """The IDX format: magic (0, 0, dtype 0x08 = ubyte, ndim), big-endian dims, then the bytes."""
    header = struct.pack(">BBBB", 0, 0, 0x08, array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    data = header + array.astype(np.uint8).tobytes()
    if compress:
        with gzip.open(path.with_name(path.name + ".gz"), "wb", compresslevel=1) as f:
            f.write(data)
    else:
        path.write_bytes(data)


def fake_mnist(root: Path, compress: bool = True, n_train: int = 60000) -> None:
    rng = np.random.default_rng(0)
    root.mkdir(parents=True, exist_ok=True)
    for prefix, n in (("train", n_train), ("t10k", 10000)):
        labels = rng.integers(0, 10, n)
        images = np.zeros((n, 28, 28), np.uint8)
        images[np.arange(n), 2 + labels, 3] = 255  # a class-dependent pixel
        write_idx(root / f"{prefix}-images-idx3-ubyte", images, compress)
        write_idx(root / f"{prefix}-labels-idx1-ubyte", labels, compress)


def test_digits_is_embedded_and_split(registry) -> None:  # type: ignore[no-untyped-def]
    data = registry.datasets["digits"]().load(None)
    assert data.train_x.shape == (1347, 1, 8, 8) and data.test_x.shape == (450, 1, 8, 8)
    assert data.train_x.dtype == torch.uint8 and data.train_x.max() == 255
    assert data.num_classes == 10


@pytest.mark.parametrize("layout", ["flat-gz", "torchvision-raw-plain"])
def test_mnist_reads_idx_files_from_data_dir(registry, tmp_path: Path, layout: str) -> None:  # type: ignore[no-untyped-def]
    root = tmp_path / "d"
    if layout == "flat-gz":
        fake_mnist(root)
    else:
        fake_mnist(root / "MNIST" / "raw", compress=False)
    before = sorted(p.relative_to(root) for p in root.rglob("*"))
    data = registry.datasets["mnist"]().load(str(root))
    assert data.train_x.shape == (60000, 1, 28, 28) and data.test_x.shape == (10000, 1, 28, 28)
    # the planted pixel encodes the label: the reader kept images and labels aligned
    assert (data.train_x[:, 0, 2:12, 3].argmax(1) == data.train_y).all()
    assert sorted(p.relative_to(root) for p in root.rglob("*")) == before  # nothing written into --data-dir


def test_missing_truncated_and_corrupt_files_give_clear_errors(registry, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    plugin = registry.datasets["fashion-mnist"]()
    with pytest.raises(DataError, match="does not exist"):
        plugin.load(str(tmp_path / "nowhere"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="train-images-idx3-ubyte"):
        plugin.load(str(tmp_path / "empty"))
    fake_mnist(tmp_path / "short", n_train=100)
    with pytest.raises(DataError, match="100 images"):
        plugin.load(str(tmp_path / "short"))
    fake_mnist(tmp_path / "bad")
    (tmp_path / "bad" / "t10k-labels-idx1-ubyte.gz").write_bytes(b"\x1f\x8bnot really gzip")
    with pytest.raises(DataError, match="t10k-labels"):
        plugin.load(str(tmp_path / "bad"))


@pytest.mark.slow
@pytest.mark.skipif(not (SHARED / "data" / "MNIST" / "raw").is_dir(), reason="../shared/data/MNIST not present")
def test_real_mnist_files_load(registry) -> None:  # type: ignore[no-untyped-def]
    data = registry.datasets["mnist"]().load(str(SHARED / "data"))
    assert data.train_x.shape == (60000, 1, 28, 28)
    # the official training set's label counts start 5923 zeros, 6742 ones
    counts = torch.bincount(data.train_y, minlength=10)
    assert counts[0].item() == 5923 and counts[1].item() == 6742


FASHION = Path("/usr/share/datasets/fashion-mnist")


@pytest.mark.slow
@pytest.mark.skipif(not FASHION.is_dir(), reason="apt-get install dataset-fashion-mnist")
def test_simclr_runs_on_real_fashion_mnist(tmp_path: Path) -> None:
    import json

    from test_plugins import run_cli

    result = run_cli("run", "simclr", "--dataset", "fashion-mnist", "--data-dir", str(FASHION), "--epochs", "1",
                     "--format", "json", env={"SSLBENCH_HOME": str(tmp_path)})
    assert result.returncode == 0, result.stderr
    row = json.loads(result.stdout)[0]
    # one epoch of SimCLR on Fashion-MNIST is far above chance (10%)
    assert row["metrics"]["knn_acc"]["mean"] > 0.5 and row["metrics"]["linear_acc"]["mean"] > 0.5


def test_a_failed_download_names_the_data_set_and_the_offline_way() -> None:
    from sslbench.sdk.data import downloading

    with pytest.raises(DataError, match=r"could not download MNIST \(URLError: .*\)\. Without internet, pass --data-dir"):
        with downloading("MNIST", "Without internet, pass --data-dir DIR."):
            import urllib.error

            raise urllib.error.URLError("no route to host")

"""Caches keyed by content (issue 12, Deliver 2): unpacked .gz files and decoded images are served
from the cache only for the same bytes, a damaged archive is named and leaves nothing behind, the
official files' published digests are checked, and `data_fingerprint` covers the loaded tensors."""

from __future__ import annotations

import gzip
import logging
import os
import shutil
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from sslbench.sdk.api import DataError, ImageData
from sslbench.sdk.data import cache_dir, check_official, data_fingerprint, matches_official, unpack_gz

from conftest import SHARED
from test_data_core import fake_mnist
from test_datasets import write_cifar, write_folder

REAL_MNIST = SHARED / "data" / "MNIST" / "raw"


def gz(path: Path, content: bytes) -> Path:
    with gzip.open(path, "wb") as f:
        f.write(content)
    return path


def test_unpack_gz_is_keyed_by_content_not_by_name_or_time(tmp_path: Path) -> None:
    into = tmp_path / "cache"
    source = gz(tmp_path / "file.gz", b"first content")
    first = unpack_gz(source, into)
    assert first.read_bytes() == b"first content"
    # other bytes under the same name, with an OLDER modification time than the cached copy
    gz(source, b"second content")
    os.utime(source, ns=(1, 1))
    second = unpack_gz(source, into)
    assert second.read_bytes() == b"second content" and second != first
    assert unpack_gz(source, into) == second  # the same bytes again: served from the cache


def test_a_gz_with_flipped_bytes_is_named_and_leaves_no_part_file(tmp_path: Path) -> None:
    into = tmp_path / "cache"
    source = gz(tmp_path / "t10k-labels-idx1-ubyte.gz", bytes(range(256)) * 400)
    data = bytearray(source.read_bytes())
    for i in range(20, 60):
        data[i] ^= 0xFF
    source.write_bytes(bytes(data))
    with pytest.raises(DataError, match="t10k-labels-idx1-ubyte.gz is not a readable gzip file"):
        unpack_gz(source, into)
    assert not list(into.glob("*")), "a partial file was left in the cache"


def test_mnist_reloads_swapped_files_with_the_same_names(registry, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    plugin = registry.datasets["mnist"]()
    fake_mnist(tmp_path / "a")
    data_dir = tmp_path / "data"
    shutil.copytree(tmp_path / "a", data_dir)
    first = plugin.load(str(data_dir))
    # other files under the same names: labels shifted by one, so the planted pixel moves
    other = tmp_path / "b"
    fake_mnist(other)
    from test_data_core import write_idx

    labels = (first.train_y.numpy() + 1) % 10
    images = np.zeros((60000, 28, 28), np.uint8)
    images[np.arange(60000), 2 + labels, 3] = 255
    write_idx(other / "train-images-idx3-ubyte", images)
    write_idx(other / "train-labels-idx1-ubyte", labels)
    for when in ("newer", "older"):
        for path in other.iterdir():
            shutil.copyfile(path, data_dir / path.name)
            stamp = time.time() + 100 if when == "newer" else 1.0
            os.utime(data_dir / path.name, (stamp, stamp))
        second = plugin.load(str(data_dir))
        assert torch.equal(second.train_y, torch.from_numpy(labels).long()), f"{when} files: the cached old content was loaded"
        assert (second.train_x[:, 0, 2:12, 3].argmax(1) == second.train_y).all()


def test_decoded_images_are_keyed_by_content(registry, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    from PIL import Image

    write_folder(tmp_path, suffix=".ppm")  # uncompressed: every image of a size has the same byte count
    plugin = registry.datasets["imagefolder"]()
    first = plugin.load(str(tmp_path), size=8)
    image = sorted((tmp_path / "train").rglob("*.ppm"))[0]
    stat = image.stat()
    Image.new("RGB", (24, 20), (0, 0, 255)).save(image)
    os.utime(image, ns=(stat.st_atime_ns, stat.st_mtime_ns))  # same name, size and modification time
    assert image.stat().st_size == stat.st_size
    second = plugin.load(str(tmp_path), size=8)
    assert not torch.equal(first.train_x, second.train_x)
    assert second.train_x[0].float().mean((1, 2)).tolist() == [0.0, 0.0, 255.0]


def test_official_digest_check_of_a_plain_and_a_compressed_file(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    import hashlib

    content = b"the official bytes"
    digests = {"f.gz": "0" * 32, "f": hashlib.md5(content).hexdigest()}
    recompressed = gz(tmp_path / "f.gz", content)
    assert matches_official(recompressed, digests) is True  # not the official archive, but its content
    (tmp_path / "f").write_bytes(content)
    assert matches_official(tmp_path / "f", digests) is True
    (tmp_path / "f").write_bytes(b"other bytes")
    assert matches_official(tmp_path / "f", digests) is False
    assert matches_official(tmp_path / "f", {}) is None
    with caplog.at_level(logging.WARNING, logger="sslbench.sdk.data"):
        message = check_official("MNIST", tmp_path / "f", digests)
    assert str(tmp_path / "f") in message and str(tmp_path / "f") in caplog.text


def test_unofficial_mnist_files_load_with_a_warning_naming_them(registry, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:  # type: ignore[no-untyped-def]
    fake_mnist(tmp_path)
    with caplog.at_level(logging.WARNING, logger="sslbench.sdk.data"):
        data = registry.datasets["mnist"]().load(str(tmp_path))
    assert "train-images-idx3-ubyte.gz is not the official mnist file" in caplog.text
    assert "NOT the official files" in data.note


def test_unofficial_cifar10_batches_load_with_a_warning(registry, tmp_path: Path, monkeypatch, caplog) -> None:  # type: ignore[no-untyped-def]
    cls = registry.datasets["cifar10"]
    monkeypatch.setattr(cls, "sizes", {"train": 30, "test": 6})
    write_cifar(tmp_path)
    with caplog.at_level(logging.WARNING, logger="sslbench.sdk.data"):
        data = cls().load(str(tmp_path))
    assert "data_batch_1 is not the official CIFAR-10 file" in caplog.text
    assert "NOT the official files" in data.note


@pytest.mark.skipif(not REAL_MNIST.is_dir(), reason="../shared/data/MNIST not present")
def test_mnist_files_given_as_fashion_mnist_are_refused(registry, caplog: pytest.LogCaptureFixture) -> None:  # type: ignore[no-untyped-def]
    with caplog.at_level(logging.WARNING, logger="sslbench.sdk.data"):
        data = registry.datasets["mnist"]().load(str(REAL_MNIST))
    assert "not the official" not in caplog.text and "NOT" not in data.note  # recompressed official content
    with pytest.raises(DataError, match="is the official MNIST file, not fashion-mnist's"):
        registry.datasets["fashion-mnist"]().load(str(REAL_MNIST))
    assert not list(cache_dir("FashionMNIST", "raw").glob("*.part"))


def _data(x: torch.Tensor) -> ImageData:
    y = torch.arange(len(x)) % 10
    return ImageData("t", x, y, x[:100].clone(), y[:100].clone())


def test_data_fingerprint_sees_one_pixel_and_is_cheap() -> None:
    x = torch.randint(0, 256, (60000, 1, 28, 28), dtype=torch.uint8)
    data = _data(x)
    start = time.perf_counter()
    first = data_fingerprint(data)
    elapsed = time.perf_counter() - start
    assert len(first) == 16 and int(first, 16) >= 0
    assert data_fingerprint(_data(x.clone())) == first  # equal data, equal fingerprint
    changed = x.clone()
    changed[12345, 0, 7, 7] ^= 1
    assert data_fingerprint(_data(changed)) != first
    relabelled = _data(x)
    relabelled.test_y[0] = 9 - relabelled.test_y[0]
    assert data_fingerprint(relabelled) != first
    assert data_fingerprint(_data(x.reshape(60000, 1, 784, 1))) != first  # same bytes, another shape
    assert elapsed < 1.0, f"fingerprinting MNIST-sized data took {elapsed:.2f} s"

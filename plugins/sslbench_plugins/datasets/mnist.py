"""MNIST and Fashion-MNIST through torchvision's readers.

``--data-dir DIR`` reads the official IDX files (plain or ``.gz``) from ``DIR``, ``DIR/MNIST/raw`` (or
``DIR/FashionMNIST/raw``) -- the layout torchvision uses -- unpacking ``.gz`` files into sslbench's
cache, never into ``DIR``. Without ``--data-dir`` torchvision downloads them into the cache. Each file
is checked (IDX magic number, 28x28 images, 60,000/10,000 images matching their labels, labels 0-9).
"""

from __future__ import annotations

from pathlib import Path

import torch

from sslbench import hookimpl
from sslbench.sdk.api import DataError, DatasetPlugin, ImageData
from sslbench.sdk.data import cache_dir, downloading, find_file, unpack_gz
from sslbench.sdk.protocol import MNIST_MLP

FILES = {
    "train_x": "train-images-idx3-ubyte",
    "train_y": "train-labels-idx1-ubyte",
    "test_x": "t10k-images-idx3-ubyte",
    "test_y": "t10k-labels-idx1-ubyte",
}
SIZES = {"train": 60000, "test": 10000}


class _IDXDataset(DatasetPlugin):
    protocol = MNIST_MLP
    torchvision_name: str  # the torchvision class name and folder
    classes: tuple[str, ...] = tuple(str(i) for i in range(10))

    def load(self, data_dir: str | None, **params) -> ImageData:  # type: ignore[no-untyped-def]
        if data_dir is None:
            root = self._download()
        else:
            root = Path(data_dir).expanduser()
            if not root.is_dir():
                raise DataError(f"--data-dir {root} does not exist; point it at the folder holding the {self.name} IDX files")
        tensors = {key: self._read(root, key, stem) for key, stem in FILES.items()}
        for split, n in SIZES.items():
            x, y = tensors[f"{split}_x"], tensors[f"{split}_y"]
            if tuple(x.shape[1:]) != (28, 28) or x.shape[0] != y.shape[0]:
                raise DataError(
                    f"{self.name} {split} files disagree: images {tuple(x.shape)}, labels {tuple(y.shape)}; "
                    "expected (N, 28, 28) images with one label each. Replace the files with the official ones."
                )
            if x.shape[0] != n:
                raise DataError(f"{self.name} {split} has {x.shape[0]} images, the official release {n}: files truncated or mixed up")
            if y.min() < 0 or y.max() > 9:
                raise DataError(f"{self.name} {split} labels outside 0..9: the label file is corrupt")
        return ImageData(
            name=self.name,
            train_x=tensors["train_x"].unsqueeze(1).contiguous(),
            train_y=tensors["train_y"].long(),
            test_x=tensors["test_x"].unsqueeze(1).contiguous(),
            test_y=tensors["test_y"].long(),
            classes=self.classes,
        )

    def _read(self, root: Path, key: str, stem: str) -> torch.Tensor:
        from torchvision.datasets.mnist import read_image_file, read_label_file

        sub = (f"{self.torchvision_name}/raw", "raw", "")
        path = find_file(root, stem, ("",) + sub)
        if path is None:
            raise DataError(
                f"{self.name}: no {stem} or {stem}.gz in {root} (looked in {', '.join(str(root / s) for s in sub)}). "
                f"Give --data-dir the folder with the four official IDX files, or omit --data-dir to download them."
            )
        plain = unpack_gz(path, cache_dir(self.torchvision_name, "raw"))
        reader = read_image_file if key.endswith("_x") else read_label_file
        try:
            return reader(str(plain))
        except Exception as exc:  # noqa: BLE001 - torchvision raises AssertionError/ValueError/RuntimeError
            raise DataError(f"{path} is not a valid IDX file ({type(exc).__name__}: {exc}); replace it with the official file") from exc

    def _download(self) -> Path:
        import torchvision

        root = cache_dir("torchvision")
        cls = getattr(torchvision.datasets, self.torchvision_name)
        with downloading(self.name, "Without internet, pass --data-dir DIR with the official IDX files (.gz is fine)."):
            cls(root=str(root), train=True, download=True)
            cls(root=str(root), train=False, download=True)
        return root / self.torchvision_name / "raw"


class MNIST(_IDXDataset):
    name = "mnist"
    description = "MNIST handwritten digits, 60k/10k 28x28 grey (torchvision; --data-dir for local IDX files)"
    torchvision_name = "MNIST"
    needs_files = True


class FashionMNIST(_IDXDataset):
    name = "fashion-mnist"
    description = "Fashion-MNIST, 60k/10k 28x28 grey (torchvision; --data-dir for local IDX files)"
    torchvision_name = "FashionMNIST"
    needs_files = True
    classes = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot")


@hookimpl
def register_datasets(register) -> None:  # type: ignore[no-untyped-def]
    register(MNIST)
    register(FashionMNIST)

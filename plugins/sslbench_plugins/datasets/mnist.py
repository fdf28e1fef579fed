"""MNIST and Fashion-MNIST through torchvision's readers.

``--data-dir DIR`` reads the official IDX files (plain or ``.gz``) from ``DIR``, ``DIR/MNIST/raw`` (or
``DIR/FashionMNIST/raw``) -- the layout torchvision uses -- unpacking ``.gz`` files into sslbench's
cache (under a digest of the compressed bytes), never into ``DIR``. Without a folder (``--data-dir``,
the ``[data]`` config or the data root ``SSLBENCH_DATA``) torchvision downloads them into the cache.
Each file is checked (IDX magic number, 28x28 images, 60,000/10,000 images matching their labels,
labels 0-9) and compared with the published md5 of the official file (torchvision's for the ``.gz``
archives, the uncompressed files' for their content): a file that differs is loaded with a warning
naming it, and a file that is the OTHER data set's official file (MNIST given as Fashion-MNIST, or
the reverse) is refused.
"""

from __future__ import annotations

from pathlib import Path

import torch

from sslbench import hookimpl
from sslbench.sdk.api import DataError, DatasetPlugin, ImageData
from sslbench.sdk.data import cache_dir, check_official, downloading, file_digest, find_file, unpack_gz
from sslbench.sdk.protocol import MNIST_MLP

FILES = {
    "train_x": "train-images-idx3-ubyte",
    "train_y": "train-labels-idx1-ubyte",
    "test_x": "t10k-images-idx3-ubyte",
    "test_y": "t10k-labels-idx1-ubyte",
}
SIZES = {"train": 60000, "test": 10000}

#: md5 of the official files: the ``.gz`` archives (as torchvision's MNIST and FashionMNIST carry them)
#: and their uncompressed content (as published with the releases)
MNIST_DIGESTS = {
    "train-images-idx3-ubyte.gz": "f68b3c2dcbeaaa9fbdd348bbdeb94873",
    "train-labels-idx1-ubyte.gz": "d53e105ee54ea40749a09fcbcd1e9432",
    "t10k-images-idx3-ubyte.gz": "9fb629c4189551a2d022fa330f9573f3",
    "t10k-labels-idx1-ubyte.gz": "ec29112dd5afa0611ce80d1b7f02629c",
    "train-images-idx3-ubyte": "6bbc9ace898e44ae57da46a324031adb",
    "train-labels-idx1-ubyte": "a25bea736e30d166cdddb491f175f624",
    "t10k-images-idx3-ubyte": "2646ac647ad5339dbf082846283269ea",
    "t10k-labels-idx1-ubyte": "27ae3e4e09519cfbb04c329615203637",
}
FASHION_DIGESTS = {
    "train-images-idx3-ubyte.gz": "8d4fb7e6c68d591d4c3dfef9ec88bf0d",
    "train-labels-idx1-ubyte.gz": "25c81989df183df01b3e8a0aad5dffbe",
    "t10k-images-idx3-ubyte.gz": "bef4ecab320f06d8554ea6380940ec79",
    "t10k-labels-idx1-ubyte.gz": "bb300cfdad3c16e7a12a480ee83cd310",
    "train-images-idx3-ubyte": "f4a8712d7a061bf5bd6d2ca38dc4d50a",
    "train-labels-idx1-ubyte": "9018921c3c673c538a1fc5bad174d6f9",
    "t10k-images-idx3-ubyte": "8181f5470baa50b63fa0f6fddb340f0a",
    "t10k-labels-idx1-ubyte": "15d484375f8d13e6eb1aabb0c3f46965",
}


class _IDXDataset(DatasetPlugin):
    protocol = MNIST_MLP
    torchvision_name: str  # the torchvision class name and folder
    classes: tuple[str, ...] = tuple(str(i) for i in range(10))
    files = tuple(FILES.values())
    #: the other IDX data set's official digests: its files given as this data set are refused
    impostor: tuple[str, dict[str, str]] = ("", {})

    def load(self, data_dir: str | None, **params) -> ImageData:  # type: ignore[no-untyped-def]
        if data_dir is None:
            root = self._download()
        else:
            root = Path(data_dir).expanduser()
            if not root.is_dir():
                raise DataError(f"--data-dir {root} does not exist; point it at the folder holding the {self.name} IDX files")
        self._unofficial: list[str] = []
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
            note=self._note(root),
        )

    def _note(self, root: Path) -> str:
        note = f"{self.name} (IDX files in {root})"
        if self._unofficial:
            note += f"; NOT the official files: {', '.join(self._unofficial)} differ from the published digests"
        return note

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
        self._check_digest(path, plain)
        reader = read_image_file if key.endswith("_x") else read_label_file
        try:
            return reader(str(plain))
        except Exception as exc:  # noqa: BLE001 - torchvision raises AssertionError/ValueError/RuntimeError
            raise DataError(f"{path} is not a valid IDX file ({type(exc).__name__}: {exc}); replace it with the official file") from exc

    def _check_digest(self, path: Path, plain: Path) -> None:
        """Warn (and note) when ``path`` is not the official file; refuse it when it is the other IDX
        data set's official file (the wrong data set under this one's name)."""
        if not check_official(self.name, path, self.digests, plain):
            return
        other, digests = self.impostor
        stem = path.name[:-3] if path.name.endswith(".gz") else path.name
        if digests and file_digest(plain, "md5") == digests.get(stem):
            raise DataError(
                f"{path} is the official {other} file, not {self.name}'s: point {self.name} at the "
                f"{self.name} files (--data-dir, or `sslbench data` to see where it looks)"
            )
        self._unofficial.append(path.name)

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
    #: under ``paper`` the VAE family sees MNIST thresholded at 0.5 after augmentation, as the official
    #: SimVAE code does (src/data/data_loader.py ThresholdTransform); Fashion-MNIST stays grey there
    paper_methods = {"generative": {"binarise": 0.5}}
    folders = ("MNIST/raw", "MNIST", "mnist")
    digests = MNIST_DIGESTS
    impostor = ("Fashion-MNIST", FASHION_DIGESTS)
    download_folder = "torchvision/MNIST/raw"
    how_to_get = (
        "python -c \"import torchvision; torchvision.datasets.MNIST('DATA_ROOT', download=True)\" "
        "(writes DATA_ROOT/MNIST/raw)"
    )


class FashionMNIST(_IDXDataset):
    name = "fashion-mnist"
    description = "Fashion-MNIST, 60k/10k 28x28 grey (torchvision; --data-dir for local IDX files)"
    torchvision_name = "FashionMNIST"
    needs_files = True
    folders = ("FashionMNIST/raw", "FashionMNIST", "fashion-mnist")
    digests = FASHION_DIGESTS
    impostor = ("MNIST", MNIST_DIGESTS)
    download_folder = "torchvision/FashionMNIST/raw"
    how_to_get = (
        "python -c \"import torchvision; torchvision.datasets.FashionMNIST('DATA_ROOT', download=True)\" "
        "(writes DATA_ROOT/FashionMNIST/raw)"
    )
    classes = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot")


@hookimpl
def register_datasets(register) -> None:  # type: ignore[no-untyped-def]
    register(MNIST)
    register(FashionMNIST)

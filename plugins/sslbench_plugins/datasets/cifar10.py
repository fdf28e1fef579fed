"""CIFAR-10 from the official python pickle batches (torchvision's ``CIFAR10`` format).

``--data-dir DIR`` reads ``data_batch_1`` .. ``data_batch_5``, ``test_batch`` and (for the class
names) ``batches.meta`` from ``DIR/cifar-10-batches-py/`` -- the folder torchvision unpacks -- or from
``DIR`` itself. Without ``--data-dir`` torchvision downloads and unpacks the official archive into
sslbench's cache. The files are read with :func:`sslbench.sdk.safe_pickle.load_data_pickle`, which admits
only plain data and numpy arrays (a pickle naming any other global is refused before anything of it
runs). Each batch is checked: a readable pickle holding ``data`` (N x 3072 uint8: the
1024 red, then green, then blue values of a 32x32 image, row-major) and N ``labels`` in 0..9; the
splits must hold the official 50,000 and 10,000 images. Trained under the protocol
:data:`sslbench.sdk.protocol.COLOUR_CONV` (the SimVAE paper's CIFAR10 setting).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from sslbench import hookimpl
from sslbench.sdk.api import DataError, DatasetPlugin, ImageData
from sslbench.sdk.data import cache_dir, check_official, downloading
from sslbench.sdk.protocol import COLOUR_CONV
from sslbench.sdk.safe_pickle import load_data_pickle

FOLDER = "cifar-10-batches-py"
BATCHES = {"train": [f"data_batch_{i}" for i in range(1, 6)], "test": ["test_batch"]}
CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")


class CIFAR10(DatasetPlugin):
    name = "cifar10"
    description = "CIFAR-10, 50k/10k 32x32 colour, 10 classes (official pickle batches; --data-dir or download)"
    protocol = COLOUR_CONV
    needs_files = True
    #: images per split in the official release; a batch set of another size is refused
    sizes = {"train": 50000, "test": 10000}
    folders = (FOLDER,)
    files = (*BATCHES["train"], *BATCHES["test"])
    #: md5 of the official batches (as torchvision's CIFAR10 carries them); a differing batch loads with a warning
    digests = {
        "data_batch_1": "c99cafc152244af753f735de768cd75f", "data_batch_2": "d4bba439e000b95fd0a9bffe97cbabec",
        "data_batch_3": "54ebc095f3ab1f0389bbae665268c751", "data_batch_4": "634d18415352ddfa80567beed471001a",
        "data_batch_5": "482c414d41f54cd18b22e5b47cb7c3cb", "test_batch": "40351d587109b95175f43aff81a1287e",
        "batches.meta": "5ff9c542aee3614f3951f8cda6e48888",
    }
    download_folder = f"torchvision/{FOLDER}"
    how_to_get = (
        "python -c \"import torchvision; torchvision.datasets.CIFAR10('DATA_ROOT', download=True)\" "
        f"(writes DATA_ROOT/{FOLDER})"
    )

    def load(self, data_dir: str | None, **params: Any) -> ImageData:
        root = self._download() if data_dir is None else self._locate(Path(data_dir).expanduser())
        tensors: dict[str, torch.Tensor] = {}
        for split, names in BATCHES.items():
            xs, ys = zip(*(self._read_batch(root / name) for name in names))
            x, y = np.concatenate(xs), np.concatenate(ys)
            if len(x) != self.sizes[split]:
                raise DataError(
                    f"cifar10 {split} batches in {root} hold {len(x)} images, the official release "
                    f"{self.sizes[split]}: files truncated or mixed up; replace them with the official ones"
                )
            tensors[f"{split}_x"] = torch.from_numpy(x.reshape(-1, 3, 32, 32).copy())
            tensors[f"{split}_y"] = torch.from_numpy(y.astype(np.int64))
        differ = [name for name in (*BATCHES["train"], *BATCHES["test"]) if check_official("CIFAR-10", root / name, self.digests)]
        note = f"CIFAR-10 (official batches in {root})" if not differ else (
            f"CIFAR-10 batches in {root}; NOT the official files: {', '.join(differ)} differ from the published digests")
        return ImageData(name=self.name, classes=self._classes(root), note=note, **tensors)

    def _locate(self, root: Path) -> Path:
        if not root.is_dir():
            raise DataError(f"--data-dir {root} does not exist; point it at the folder holding {FOLDER}/")
        for candidate in (root / FOLDER, root):
            if (candidate / "data_batch_1").is_file() or (candidate / "test_batch").is_file():
                return candidate
        raise DataError(
            f"no CIFAR-10 batches in {root} or {root / FOLDER}: expected data_batch_1..5 and test_batch "
            "(the python version, cifar-10-python.tar.gz, unpacked). Omit --data-dir to download it."
        )

    def _read_batch(self, path: Path) -> tuple[np.ndarray, np.ndarray]:
        if not path.is_file():
            raise DataError(f"{path} is missing; the official python batches are data_batch_1..5 and test_batch")
        try:
            batch = load_data_pickle(path, what="a CIFAR-10 batch")
        except DataError:
            raise  # a refused global: named, and nothing of the file ran
        except Exception as exc:  # noqa: BLE001 - pickle raises many types on a damaged file
            raise DataError(f"{path} is not a readable CIFAR-10 pickle batch ({type(exc).__name__}: {exc}); replace it with the official file") from exc
        if not isinstance(batch, dict) or "data" not in batch or "labels" not in batch:
            raise DataError(f"{path} is a pickle but not a CIFAR-10 batch (no 'data' and 'labels'); replace it with the official file")
        x = np.asarray(batch["data"])
        y = np.asarray(batch["labels"])
        if x.dtype != np.uint8 or x.ndim != 2 or x.shape[1] != 3 * 32 * 32 or y.shape != (x.shape[0],):
            raise DataError(
                f"{path}: data {x.dtype} {x.shape} with {y.shape} labels; expected uint8 (N, 3072) and N labels. "
                "Replace it with the official file."
            )
        if y.size and (y.min() < 0 or y.max() > 9):
            raise DataError(f"{path}: labels outside 0..9; the file is corrupt, replace it with the official one")
        return x, y

    def _classes(self, root: Path) -> tuple[str, ...]:
        meta = root / "batches.meta"
        if not meta.is_file():
            return CLASSES
        try:
            names = tuple(str(n) for n in load_data_pickle(meta, what="CIFAR-10's batches.meta")["label_names"])
        except DataError:
            raise  # a refused global: a crafted file is refused, never silently passed over
        except Exception:  # noqa: BLE001 - the meta file only names the classes; fall back to the official names
            return CLASSES
        return names if len(names) == 10 else CLASSES

    def _download(self) -> Path:
        from torchvision.datasets import CIFAR10 as TorchvisionCIFAR10

        root = cache_dir("torchvision")
        hint = f"Without internet, pass --data-dir DIR with the unpacked python batches ({FOLDER}/ from cifar-10-python.tar.gz)."
        with downloading("CIFAR-10", hint):
            TorchvisionCIFAR10(root=str(root), train=True, download=True)
        return root / FOLDER


@hookimpl
def register_datasets(register) -> None:  # type: ignore[no-untyped-def]
    register(CIFAR10)

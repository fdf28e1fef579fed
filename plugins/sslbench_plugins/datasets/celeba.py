"""CelebA (aligned and cropped faces) in torchvision's file layout, at 64x64.

``--data-dir DIR`` is torchvision's ``celeba`` folder (or its parent) holding ``img_align_celeba/``
(the 178x218 JPEGs), ``list_attr_celeba.txt`` (40 binary attributes, +1/-1) and
``list_eval_partition.txt`` (0 train, 1 valid, 2 test); a data root (``SSLBENCH_DATA``) is searched for
its ``celeba`` folder. Without any folder torchvision's
``CelebA(download=True)`` fetches them into the cache (from Google Drive, which often refuses).

Images: centre crop 140x140 then resize to 64x64 (bilinear, antialiased), the usual CelebA-64
preprocessing of VAE papers (e.g. the SimVAE paper's 64x64 CelebA); decoded once and cached. Splits:
official partition 0 is the train set and 2 the test set; partition 1 (valid) is not used, since
sslbench carves its own validation split from train. ``n_train``/``n_test`` take a fixed random
subset (seed 0) for CPU-sized runs.

Labels: ``y`` is the 5-class hair colour (bald, black, blond, brown, gray) of the SimVAE paper's style
task, taken from the attributes Bald, Black_Hair, Blond_Hair, Brown_Hair and Gray_Hair; an image with
none or several of them is ambiguous and labelled -1 (evaluators drop it). ``attrs`` holds all 40
attributes as 0/1 ("binary"). Protocol: :data:`sslbench.sdk.protocol.COLOUR_CONV`.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, ClassVar, Mapping

import torch

from sslbench import hookimpl
from sslbench.sdk.api import DataError, DatasetPlugin, ImageData, Param
from sslbench.sdk.data import DECODE_VERSION, cache_dir, cached_tensors, check_official, decode_images, downloading, files_fingerprint
from sslbench.sdk.protocol import COLOUR_CONV

log = logging.getLogger("sslbench.sdk.data")

HAIR = ("Bald", "Black_Hair", "Blond_Hair", "Brown_Hair", "Gray_Hair")
HAIR_CLASSES = ("bald", "black", "blond", "brown", "gray")
CROP, SIZE = 140, 64
OFFICIAL_IMAGES = 202599
FILES = ("list_attr_celeba.txt", "list_eval_partition.txt")
IMAGES = "img_align_celeba"


def read_attributes(path: Path) -> tuple[list[str], list[str], torch.Tensor]:
    """``list_attr_celeba.txt``: a count line, a line of attribute names, then one line per image
    (file name and one +1/-1 per attribute). Returns (file names, attribute names, (N, A) tensor of
    0/1); any inconsistency is a :class:`DataError` naming the file and line."""
    lines = _lines(path)
    if len(lines) < 2:
        raise DataError(f"{path} is truncated: it needs a count line and an attribute-name line; replace it with the official file")
    try:
        count = int(lines[0].split()[0])
    except (ValueError, IndexError):
        raise DataError(f"{path}: the first line should be the number of images, got {lines[0][:60]!r}; replace it with the official file") from None
    names = lines[1].split()
    rows = lines[2:]
    if len(rows) != count:
        raise DataError(f"{path} announces {count} images but lists {len(rows)}: the file is truncated or corrupt; replace it with the official file")
    files: list[str] = []
    values: list[list[int]] = []
    for number, row in enumerate(rows, start=3):
        fields = row.split()
        if len(fields) != len(names) + 1 or any(v not in ("1", "-1") for v in fields[1:]):
            raise DataError(f"{path} line {number}: expected a file name and {len(names)} values of 1 or -1; replace it with the official file")
        files.append(fields[0])
        values.append([v == "1" for v in fields[1:]])
    missing = [h for h in HAIR if h not in names]
    if missing:
        raise DataError(f"{path} lacks the attributes {', '.join(missing)}; it is not CelebA's list_attr_celeba.txt")
    return files, names, torch.tensor(values, dtype=torch.float32).reshape(len(rows), len(names))


def read_partition(path: Path) -> dict[str, int]:
    """``list_eval_partition.txt``: one ``<file> <0|1|2>`` line per image."""
    partition: dict[str, int] = {}
    for number, row in enumerate(_lines(path), start=1):
        fields = row.split()
        if len(fields) != 2 or fields[1] not in ("0", "1", "2"):
            raise DataError(f"{path} line {number}: expected '<file> <0|1|2>', got {row[:60]!r}; replace it with the official file")
        partition[fields[0]] = int(fields[1])
    return partition


def _lines(path: Path) -> list[str]:
    try:
        text = path.read_text()
    except UnicodeDecodeError as exc:
        raise DataError(f"{path} is not a text file ({exc}); replace it with the official file") from exc
    return [line for line in text.splitlines() if line.strip()]


def hair_colour(attrs: torch.Tensor, names: list[str]) -> torch.Tensor:
    """The 5-class hair colour label: the index in :data:`HAIR` of the one hair attribute an image
    has, or -1 when it has none or several."""
    hair = attrs[:, [names.index(h) for h in HAIR]]
    one = hair.sum(1) == 1
    return torch.where(one, hair.argmax(1), torch.full_like(one, -1, dtype=torch.long))


class CelebA(DatasetPlugin):
    name = "celeba"
    description = "CelebA faces at 64x64 (crop 140, resize): y = 5 hair colours (-1 ambiguous), 40 binary attributes"
    protocol = COLOUR_CONV
    needs_files = True
    folders = ("celeba",)
    files = (IMAGES, *FILES)
    #: md5 of the official text files (as torchvision's CelebA carries them); a differing one loads with a warning
    digests = {"list_attr_celeba.txt": "75e246fa4810816ffd6ee81facbd244c", "list_eval_partition.txt": "d32c9cbf5e040fd4025c592c306e6668"}
    download_folder = "torchvision/celeba"
    how_to_get = (
        "python -c \"import torchvision; torchvision.datasets.CelebA('DATA_ROOT', split='all', download=True)\" "
        "(writes DATA_ROOT/celeba; Google Drive often refuses: then get img_align_celeba.zip and the two "
        "list_*.txt files from https://mmlab.ie.cuhk.edu.hk/projects/CelebA.html and unpack them in DATA_ROOT/celeba)"
    )
    params: ClassVar[Mapping[str, Param]] = {
        "n_train": Param(0, "train images to use, a fixed random subset of partition 0 (0 = all 162,770)", minimum=0),
        "n_test": Param(0, "test images to use, a fixed random subset of partition 2 (0 = all 19,962)", minimum=0),
    }

    def load(self, data_dir: str | None, **params: Any) -> ImageData:
        root = self._download() if data_dir is None else self._locate(Path(data_dir).expanduser())
        unofficial = [name for name in FILES if check_official("CelebA", root / name, self.digests)]
        files, names, attrs = read_attributes(root / FILES[0])
        partition = read_partition(root / FILES[1])
        absent = [f for f in files if f not in partition]
        if absent:
            raise DataError(
                f"{root / FILES[1]} has no partition for {len(absent)} images listed in {FILES[0]} (e.g. {absent[0]}); "
                "the two files come from different releases: replace both with the official ones"
            )
        y = hair_colour(attrs, names)
        split = torch.tensor([partition[f] for f in files])
        tensors: dict[str, Any] = {}
        for key, part, limit in (("train", 0, params.get("n_train", 0)), ("test", 2, params.get("n_test", 0))):
            index = (split == part).nonzero().squeeze(1)
            if len(index) == 0:
                raise DataError(f"{root / FILES[1]} puts no image in partition {part} ({key}); replace it with the official file")
            if limit and limit < len(index):
                g = torch.Generator().manual_seed(0)
                index = index[torch.randperm(len(index), generator=g)[:limit]].sort().values
            paths = [root / IMAGES / files[i] for i in index.tolist()]
            cache_key = files_fingerprint(paths, crop=CROP, size=SIZE, version=DECODE_VERSION)

            def build(paths: list[Path] = paths) -> dict[str, Any]:
                log.info("decoding %d CelebA images from %s (once; cached)", len(paths), root / IMAGES)
                return {"x": decode_images(paths, SIZE, centre_crop=CROP)}

            tensors[f"{key}_x"] = cached_tensors("celeba", cache_key, build)["x"]
            tensors[f"{key}_y"] = y[index]
            tensors[f"{key}_attrs"] = attrs[index]
        official = "" if len(files) == OFFICIAL_IMAGES else f"; {len(files)} images listed, not the official {OFFICIAL_IMAGES}"
        if unofficial:
            official += f"; {', '.join(unofficial)} differ from the published digests"
        return ImageData(
            name=self.name,
            classes=HAIR_CLASSES,
            attr_names=tuple(names),
            attr_kinds=("binary",) * len(names),
            note=(
                f"CelebA at {root}: centre crop {CROP} then resize to {SIZE}x{SIZE}; y = hair colour "
                f"({', '.join(HAIR_CLASSES)}), -1 where ambiguous{official}"
            ),
            **tensors,
        )

    def _locate(self, given: Path) -> Path:
        if not given.is_dir():
            raise DataError(f"--data-dir {given} does not exist; point it at torchvision's celeba folder")
        for candidate in (given, given / "celeba"):
            if (candidate / FILES[0]).is_file() or (candidate / IMAGES).is_dir():
                root = candidate
                break
        else:
            root = given
        for needed in (*FILES, IMAGES):
            if not (root / needed).exists():
                raise DataError(
                    f"CelebA: {root / needed} is missing. --data-dir must hold img_align_celeba/, "
                    "list_attr_celeba.txt and list_eval_partition.txt (torchvision's celeba folder, or its parent)."
                )
        return root

    def _download(self) -> Path:
        from torchvision.datasets import CelebA as TorchvisionCelebA

        root = cache_dir("torchvision")
        hint = (
            "Google Drive often refuses. Download img_align_celeba.zip, list_attr_celeba.txt and "
            "list_eval_partition.txt from the CelebA site, unpack the zip next to them and pass --data-dir to that folder."
        )
        with downloading("CelebA", hint):
            TorchvisionCelebA(root=str(root), split="all", target_type="attr", download=True)
        return root / "celeba"


@hookimpl
def register_datasets(register) -> None:  # type: ignore[no-untyped-def]
    register(CelebA)

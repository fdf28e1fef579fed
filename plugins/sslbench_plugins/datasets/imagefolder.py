"""Any folder of images in torchvision's ImageFolder layout, plus the ImageNette and ImageWoof presets.

Layout: ``DIR/train/<class>/<image>`` and ``DIR/test/<class>/<image>`` (or ``DIR/val/...`` when there
is no ``test/``); classes are the train sub-folders in sorted order (torchvision's rule), images are the
files ending in a known image extension, found recursively -- without following folder links (so a link
loop cannot repeat images), reading each file once however many links reach it, and refusing any link
that leads out of the data folder; the data set's note says how many images were read and what was
skipped. Every image is decoded ONCE with Pillow
(shorter side resized to ``size``, bilinear and antialiased, then the centre ``size`` x ``size``
square: torchvision's ``Resize`` + ``CenterCrop``) into uint8 tensors, which are cached in sslbench's
cache folder under a key made of every file's path, size and SHA-256 digest and the decoding
settings (a replaced file is noticed whatever its modification time); a second run loads the cache instead of decoding again. A file that is not a readable image
stops the load with its name.

Presets: ``imagenette`` and ``imagewoof`` are fast.ai's 160px releases (10 ImageNet classes each; train/
and val/ with one WordNet-id folder per class); ``--data-dir`` is the unpacked folder (or its parent),
and without it the archive is downloaded into the cache. They default to 64x64 images. All use the
protocol :data:`sslbench.sdk.protocol.COLOUR_CONV`.

The project's offline CIFAR-10 copy (``cifar10-jpeg``) is a LOSSY JPEG re-encoding: when the folder
looks like it (the ten CIFAR-10 class folders of JPEG files), the data set's note says so, and its
figures must not be reported as CIFAR-10 figures.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Mapping

import torch

from sslbench import hookimpl
from sslbench.sdk.api import DataError, DatasetPlugin, ImageData, Param
from sslbench.sdk.data import DECODE_VERSION, IMAGE_EXTENSIONS, cache_dir, cached_tensors, decode_images, downloading, files_fingerprint
from sslbench.sdk.protocol import COLOUR_CONV

log = logging.getLogger("sslbench.sdk.data")

CIFAR10_CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")


@dataclass
class ScanCount:
    """What scanning a data folder read, and what it passed over."""

    images: int = 0
    #: folder links below a class folder: never followed (so a link loop cannot repeat images)
    folder_links: int = 0
    #: files reached a second time (a file link to an image already read): read once
    duplicates: int = 0

    def text(self) -> str:
        skipped = []
        if self.folder_links:
            skipped.append(f"{self.folder_links} linked folder(s) not followed")
        if self.duplicates:
            skipped.append(f"{self.duplicates} duplicate link(s) to images already read")
        return f"read {self.images} images" + (f"; skipped {', '.join(skipped)}" if skipped else "")


def _inside_data(root: Path, path: Path) -> Path:
    """``path`` resolved, if it lies inside the data folder ``root`` (resolved); else a DataError."""
    real = path.resolve()
    if real != root and root not in real.parents:
        raise DataError(
            f"{path} is a link to {real}, outside the data folder {root}: sslbench reads only files inside "
            "--data-dir. Copy the files in, or point --data-dir at the folder that really holds them."
        )
    return real


def scan_split(
    split_dir: Path, classes: list[str] | None = None, within: Path | None = None, count: ScanCount | None = None
) -> tuple[list[str], list[Path], list[int]]:
    """Class names, image paths and labels of one split folder (``<class>/<image>``, recursive).

    ``classes`` given (the train split's) fixes the label of each folder name; the split must not have
    a class folder the train split lacks. Links never lead out of the data folder ``within`` (default:
    the split's parent; a link that resolves outside is a DataError), folder links below a class folder
    are not followed (no loops), and each file is read once however many links reach it (the first
    class folder, in sorted order, keeps it). ``count`` (if given) is told what was read and skipped."""
    count = count if count is not None else ScanCount()
    root = (within if within is not None else split_dir.parent).resolve()
    found = sorted(entry.name for entry in os.scandir(split_dir) if entry.is_dir())
    if not found:
        raise DataError(f"{split_dir} has no class sub-folders; the ImageFolder layout is {split_dir}/<class>/<image>")
    if classes is None:
        classes = found
    unknown = sorted(set(found) - set(classes))
    if unknown:
        raise DataError(
            f"{split_dir} has class folders the train split lacks: {', '.join(unknown[:5])}; "
            "train/ and the test split must use the same class folder names"
        )
    label_of = {name: i for i, name in enumerate(classes)}
    paths: list[Path] = []
    labels: list[int] = []
    seen: set[Path] = set()
    for name in found:
        _inside_data(root, split_dir / name)
        files = []
        for dirpath, dirnames, filenames in os.walk(split_dir / name, followlinks=False):
            dirnames.sort()
            count.folder_links += sum(os.path.islink(os.path.join(dirpath, d)) for d in dirnames)
            for f in sorted(filenames):
                if not f.lower().endswith(IMAGE_EXTENSIONS):
                    continue
                path = Path(dirpath) / f
                real = _inside_data(root, path)
                if real in seen:
                    count.duplicates += 1
                    continue
                seen.add(real)
                files.append(path)
        files.sort()
        count.images += len(files)
        if not files:
            raise DataError(f"class folder {split_dir / name} holds no image files ({', '.join(IMAGE_EXTENSIONS)}); add images or remove it")
        paths += files
        labels += [label_of[name]] * len(files)
    return classes, paths, labels


class ImageFolder(DatasetPlugin):
    name = "imagefolder"
    description = "images in torchvision's ImageFolder layout (DIR/train/<class>/, DIR/test|val/<class>/), decoded once and cached"
    protocol = COLOUR_CONV
    needs_files = True
    files = ("train",)
    how_to_get = "any folder with train/ and test/ (or val/), one sub-folder of images per class: pass --data-dir DIR or set imagefolder = \"DIR\" in [data]"
    params: ClassVar[Mapping[str, Param]] = {
        "size": Param(32, "side of the square images after resize + centre crop (pixels)", minimum=8),
    }

    def load(self, data_dir: str | None, **params: Any) -> ImageData:
        root = self._root(data_dir)
        size = int(params.get("size", self.params["size"].default))
        test_name = "test" if (root / "test").is_dir() else "val"
        count = ScanCount()
        classes, train_paths, train_labels = scan_split(root / "train", within=root, count=count)
        _, test_paths, test_labels = scan_split(root / test_name, classes, within=root, count=count)
        log.info("%s: %s", root, count.text())
        key = files_fingerprint(train_paths + test_paths, size=size, version=DECODE_VERSION, test=test_name)

        def build() -> dict[str, Any]:
            log.info("decoding %d images from %s at %dx%d (once; cached)", len(train_paths) + len(test_paths), root, size, size)
            return {
                "train_x": decode_images(train_paths, size),
                "test_x": decode_images(test_paths, size),
                "classes": list(classes),
            }

        decoded = cached_tensors("imagefolder", key, build)
        return ImageData(
            name=self.name,
            train_x=decoded["train_x"],
            train_y=torch.tensor(train_labels, dtype=torch.long),
            test_x=decoded["test_x"],
            test_y=torch.tensor(test_labels, dtype=torch.long),
            classes=self.class_names(decoded["classes"]),
            note=f"{self.note(root, size, test_name, classes, train_paths + test_paths)}; {count.text()}",
        )

    # -- what presets change ---------------------------------------------------------------------
    def _root(self, data_dir: str | None) -> Path:
        if data_dir is None:
            raise DataError("imagefolder needs --data-dir DIR: a folder with train/ and test/ (or val/), one sub-folder per class")
        root = Path(data_dir).expanduser()
        if not root.is_dir():
            raise DataError(f"--data-dir {root} does not exist; point it at a folder with train/ and test/ (or val/)")
        if not (root / "train").is_dir() or not ((root / "test").is_dir() or (root / "val").is_dir()):
            raise DataError(
                f"{root} is not in the ImageFolder layout: it needs train/ and test/ (or val/) sub-folders, "
                "each with one folder of images per class"
            )
        return root

    def class_names(self, folders: list[str]) -> list[str]:
        return list(folders)

    def note(self, root: Path, size: int, test_name: str, classes: list[str], paths: list[Path]) -> str:
        text = f"ImageFolder at {root} (train/ and {test_name}/), {size}x{size}"
        if tuple(classes) == CIFAR10_CLASSES and all(p.suffix.lower() in (".jpg", ".jpeg") for p in paths):
            text += (
                "; LOSSY JPEG copy of CIFAR-10, not the official CIFAR-10: accuracies run a few points below "
                "CIFAR-10 figures, so compare methods with each other and never report them as CIFAR-10 results"
            )
        return text


class _FastAIPreset(ImageFolder):
    """fast.ai's 160px ImageNet subsets: ``<folder>/train/<wnid>/``, ``<folder>/val/<wnid>/``."""

    needs_files = True
    params: ClassVar[Mapping[str, Param]] = {
        "size": Param(64, "side of the square images after resize + centre crop (pixels)", minimum=8),
    }
    folder: ClassVar[str]
    url: ClassVar[str]
    md5: ClassVar[str | None]
    wnid_names: ClassVar[Mapping[str, str]]
    title: ClassVar[str]

    def _root(self, data_dir: str | None) -> Path:
        if data_dir is None:
            return self._download()
        given = Path(data_dir).expanduser()
        for candidate in (given, given / self.folder):
            if (candidate / "train").is_dir() and (candidate / "val").is_dir():
                return candidate
        raise DataError(
            f"no {self.name} in {given}: expected {self.folder}/train/ and {self.folder}/val/ (unpack "
            f"{self.url}) at --data-dir or just below it; omit --data-dir to download it"
        )

    def _download(self) -> Path:
        from torchvision.datasets.utils import download_and_extract_archive

        into = cache_dir(self.name)
        root = into / self.folder
        if (root / "train").is_dir() and (root / "val").is_dir():
            return root
        with downloading(self.name, f"Without internet, unpack {self.url} elsewhere and pass --data-dir to the {self.folder} folder."):
            download_and_extract_archive(self.url, download_root=str(into), md5=self.md5)
        return root

    def class_names(self, folders: list[str]) -> list[str]:
        return [self.wnid_names.get(f, f) for f in folders]

    def note(self, root: Path, size: int, test_name: str, classes: list[str], paths: list[Path]) -> str:
        return f"{self.title} (fast.ai 160px release at {root}; val/ used as the test split), {size}x{size}"


class ImageNette(_FastAIPreset):
    name = "imagenette"
    description = "ImageNette 160px (fast.ai): 10 easy ImageNet classes, ~9.5k/3.9k, at 64x64 by default"
    title = "ImageNette"
    folder = "imagenette2-160"
    url = "https://s3.amazonaws.com/fast-ai-imageclas/imagenette2-160.tgz"
    folders, files, download_folder = (folder,), ("train", "val"), f"imagenette/{folder}"
    how_to_get = f"download {url} and unpack it in DATA_ROOT (tar xzf imagenette2-160.tgz -C DATA_ROOT)"
    md5 = "e793b78cc4c9e9a4ccc0c1155377a412"
    wnid_names = {
        "n01440764": "tench", "n02102040": "English springer", "n02979186": "cassette player",
        "n03000684": "chain saw", "n03028079": "church", "n03394916": "French horn",
        "n03417042": "garbage truck", "n03425413": "gas pump", "n03445777": "golf ball",
        "n03888257": "parachute",
    }


class ImageWoof(_FastAIPreset):
    name = "imagewoof"
    description = "ImageWoof 160px (fast.ai): 10 dog breeds from ImageNet, ~9k/3.9k, at 64x64 by default"
    title = "ImageWoof"
    folder = "imagewoof2-160"
    url = "https://s3.amazonaws.com/fast-ai-imageclas/imagewoof2-160.tgz"
    folders, files, download_folder = (folder,), ("train", "val"), f"imagewoof/{folder}"
    how_to_get = f"download {url} and unpack it in DATA_ROOT (tar xzf imagewoof2-160.tgz -C DATA_ROOT)"
    md5 = None  # fast.ai publishes no checksum for this archive
    wnid_names = {
        "n02086240": "Shih-Tzu", "n02087394": "Rhodesian ridgeback", "n02088364": "beagle",
        "n02089973": "English foxhound", "n02093754": "Border terrier", "n02096294": "Australian terrier",
        "n02099601": "golden retriever", "n02105641": "Old English sheepdog", "n02111889": "Samoyed",
        "n02115641": "dingo",
    }


@hookimpl
def register_datasets(register) -> None:  # type: ignore[no-untyped-def]
    register(ImageFolder)
    register(ImageNette)
    register(ImageWoof)

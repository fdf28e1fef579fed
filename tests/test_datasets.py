"""Data sets of the full protocol: CIFAR-10 pickle batches, ImageFolder (+ ImageNette/ImageWoof
presets), CelebA, and the generated shapes. Loaders run on small files written here in the real
on-disk formats; damaged or missing files must give a DataError naming the file."""

from __future__ import annotations

import math
import os
import pickle
import tarfile
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from sslbench.sdk.api import DataError

from conftest import SHARED

# --------------------------------------------------------------------------------------------------
# CIFAR-10: torchvision's python pickle batches


def write_cifar(root: Path, per_batch: int = 6, with_meta: bool = True) -> dict[str, np.ndarray]:
    """cifar-10-batches-py/ with data_batch_1..5 and test_batch of ``per_batch`` images each, in the
    official format: a latin-1 pickled dict with 'data' (N, 3072) uint8 -- 1024 red, 1024 green, 1024
    blue values, row-major -- and 'labels'. Returns the planted arrays per file."""
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    planted = {}
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        data = rng.integers(0, 256, (per_batch, 3072), dtype=np.uint8)
        labels = [int(v) for v in rng.integers(0, 10, per_batch)]
        batch = {"batch_label": name, "labels": labels, "data": data, "filenames": [f"{i}.png" for i in range(per_batch)]}
        with open(folder / name, "wb") as f:
            pickle.dump(batch, f, protocol=2)
        planted[name] = (data, np.array(labels))
    if with_meta:
        names = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
        with open(folder / "batches.meta", "wb") as f:
            pickle.dump({"label_names": names, "num_cases_per_batch": per_batch, "num_vis": 3072}, f)
    return planted


@pytest.fixture
def cifar(registry, monkeypatch):  # type: ignore[no-untyped-def]
    cls = registry.datasets["cifar10"]
    monkeypatch.setattr(cls, "sizes", {"train": 30, "test": 6})  # five batches of 6, one of 6
    return cls()


@pytest.mark.parametrize("point_at", ["parent", "batches-folder"])
def test_cifar10_reads_official_pickle_batches(cifar, tmp_path: Path, point_at: str) -> None:  # type: ignore[no-untyped-def]
    planted = write_cifar(tmp_path)
    data_dir = tmp_path if point_at == "parent" else tmp_path / "cifar-10-batches-py"
    data = cifar.load(str(data_dir))
    assert data.train_x.shape == (30, 3, 32, 32) and data.test_x.shape == (6, 3, 32, 32)
    assert data.train_x.dtype == torch.uint8 and data.train_y.dtype == torch.long
    # row layout: channel-major planes of 32x32, batches concatenated in order 1..5
    raw, labels = planted["data_batch_2"]
    image = data.train_x[6 + 1]  # second image of the second batch
    assert image[0, 0, 0] == raw[1, 0] and image[1, 0, 0] == raw[1, 1024] and image[2, 31, 31] == raw[1, 3071]
    assert image[0, 1, 3] == raw[1, 32 + 3]
    assert data.train_y[6:12].tolist() == labels.tolist()
    assert data.test_y.tolist() == planted["test_batch"][1].tolist()
    assert list(data.classes)[3] == "cat" and cifar.protocol.name == "colour-conv"


def test_cifar10_damaged_or_missing_batches_name_the_file(cifar, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(DataError, match="does not exist"):
        cifar.load(str(tmp_path / "nowhere"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="data_batch_1"):
        cifar.load(str(tmp_path / "empty"))

    write_cifar(tmp_path / "truncated")
    path = tmp_path / "truncated" / "cifar-10-batches-py" / "data_batch_3"
    path.write_bytes(path.read_bytes()[:500])
    with pytest.raises(DataError, match="data_batch_3.*not a readable"):
        cifar.load(str(tmp_path / "truncated"))

    write_cifar(tmp_path / "missing")
    (tmp_path / "missing" / "cifar-10-batches-py" / "test_batch").unlink()
    with pytest.raises(DataError, match="test_batch is missing"):
        cifar.load(str(tmp_path / "missing"))

    write_cifar(tmp_path / "shape")
    path = tmp_path / "shape" / "cifar-10-batches-py" / "data_batch_5"
    with open(path, "wb") as f:
        pickle.dump({"data": np.zeros((6, 1000), np.uint8), "labels": [0] * 6}, f)
    with pytest.raises(DataError, match="data_batch_5.*expected uint8 \\(N, 3072\\)"):
        cifar.load(str(tmp_path / "shape"))


def test_cifar10_refuses_a_split_of_the_wrong_size(registry, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    write_cifar(tmp_path)  # 30 train images; the real plugin expects the official 50,000
    with pytest.raises(DataError, match="30 images, the official release 50000"):
        registry.datasets["cifar10"]().load(str(tmp_path))


# --------------------------------------------------------------------------------------------------
# ImageFolder and presets

COLOURS = {"apple": (200, 30, 30), "kiwi": (30, 200, 30), "plum": (120, 30, 160)}


def write_folder(root: Path, test_name: str = "test", per_class: int = 3, suffix: str = ".png", size=(24, 20)) -> None:
    """root/{train,<test_name>}/<class>/<i><suffix>: solid images of the class colour."""
    for split, n in (("train", per_class), (test_name, 2)):
        for name, rgb in COLOURS.items():
            (root / split / name).mkdir(parents=True, exist_ok=True)
            for i in range(n):
                Image.new("RGB", size, rgb).save(root / split / name / f"{i:03d}{suffix}")


def test_imagefolder_decodes_labels_and_resizes(registry, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    write_folder(tmp_path, "val")
    # a nested file inside a class folder counts too (torchvision walks recursively)
    (tmp_path / "train" / "kiwi" / "more").mkdir()
    Image.new("RGB", (20, 20), COLOURS["kiwi"]).save(tmp_path / "train" / "kiwi" / "more" / "x.png")
    (tmp_path / "train" / "kiwi" / "notes.txt").write_text("not an image")
    data = registry.datasets["imagefolder"]().load(str(tmp_path), size=16)
    assert list(data.classes) == ["apple", "kiwi", "plum"]
    assert data.train_x.shape == (10, 3, 16, 16) and data.test_x.shape == (6, 3, 16, 16)
    assert data.train_y.tolist() == [0, 0, 0, 1, 1, 1, 1, 2, 2, 2]
    for x, y in ((data.train_x, data.train_y), (data.test_x, data.test_y)):
        means = x.float().mean((2, 3))
        expected = torch.tensor([COLOURS[data.classes[c]] for c in y.tolist()], dtype=torch.float32)
        assert (means - expected).abs().max() < 1.5
    assert data.note.startswith(f"ImageFolder at {tmp_path}") and "LOSSY" not in data.note


def test_imagefolder_resize_then_centre_crop_like_torchvision(registry, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    # 60x20: red sides, a green 20x20 centre. Resize(10) gives 30x10, CenterCrop(10) keeps the green.
    image = np.zeros((20, 60, 3), np.uint8)
    image[:, :20] = image[:, 40:] = (255, 0, 0)
    image[:, 20:40] = (0, 255, 0)
    for split in ("train", "test"):
        (tmp_path / split / "only").mkdir(parents=True)
        Image.fromarray(image).save(tmp_path / split / "only" / "a.png")
    data = registry.datasets["imagefolder"]().load(str(tmp_path), size=10)
    x = data.train_x[0].float()
    assert x[1].min() > 200 and x[0, :, 1:-1].max() < 40  # green everywhere, red at most bleeding into the edge columns

    import torchvision.transforms.functional as TF

    reference = TF.center_crop(TF.resize(Image.fromarray(image), 10), 10)
    assert (torch.from_numpy(np.array(reference)).permute(2, 0, 1).float() - x).abs().max() <= 2


def test_imagefolder_caches_decoded_tensors_and_notices_changes(registry, tmp_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    import sslbench_plugins.datasets.imagefolder as module

    write_folder(tmp_path)
    plugin = registry.datasets["imagefolder"]()
    calls = []
    real = module.decode_images
    monkeypatch.setattr(module, "decode_images", lambda paths, size, **kw: calls.append(len(paths)) or real(paths, size, **kw))
    first = plugin.load(str(tmp_path), size=8)
    assert calls == [9, 6]
    second = plugin.load(str(tmp_path), size=8)
    assert calls == [9, 6], "the second load decoded again instead of reading the cache"
    assert torch.equal(first.train_x, second.train_x) and torch.equal(first.test_x, second.test_x)
    plugin.load(str(tmp_path), size=16)  # another size is another cache entry
    assert calls == [9, 6, 9, 6]
    changed = tmp_path / "train" / "plum" / "000.png"
    Image.new("RGB", (24, 20), (0, 0, 255)).save(changed)
    os.utime(changed, ns=(1, 1))  # a new modification time
    third = plugin.load(str(tmp_path), size=8)
    assert calls == [9, 6, 9, 6, 9, 6]
    assert third.train_x[6].float().mean((1, 2)).tolist() == [0.0, 0.0, 255.0]


def test_imagefolder_bad_layouts_and_corrupt_images(registry, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    plugin = registry.datasets["imagefolder"]()
    with pytest.raises(DataError, match="needs --data-dir"):
        plugin.load(None)
    (tmp_path / "flat").mkdir()
    with pytest.raises(DataError, match="train/ and test/ \\(or val/\\)"):
        plugin.load(str(tmp_path / "flat"))

    write_folder(tmp_path / "extra")
    (tmp_path / "extra" / "test" / "pear").mkdir()
    Image.new("RGB", (8, 8)).save(tmp_path / "extra" / "test" / "pear" / "a.png")
    with pytest.raises(DataError, match="pear"):
        plugin.load(str(tmp_path / "extra"))

    write_folder(tmp_path / "empty-class")
    (tmp_path / "empty-class" / "train" / "fig").mkdir()
    with pytest.raises(DataError, match="fig holds no image"):
        plugin.load(str(tmp_path / "empty-class"))

    write_folder(tmp_path / "corrupt", suffix=".jpg")
    bad = tmp_path / "corrupt" / "train" / "kiwi" / "001.jpg"
    bad.write_bytes(bad.read_bytes()[:40])
    with pytest.raises(DataError, match="001.jpg is not a readable image"):
        plugin.load(str(tmp_path / "corrupt"))


def test_imagefolder_flags_a_lossy_cifar10_copy(registry, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    names = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
    for split in ("train", "test"):
        for name in names:
            (tmp_path / split / name).mkdir(parents=True)
            Image.new("RGB", (32, 32), (9, 9, 9)).save(tmp_path / split / name / "0000.jpg", quality=75)
    data = registry.datasets["imagefolder"]().load(str(tmp_path))
    assert data.image_shape == (3, 32, 32)
    assert "LOSSY JPEG copy of CIFAR-10" in data.note and "never report them as CIFAR-10" in data.note


@pytest.mark.parametrize("preset, folder, wnid, name", [
    ("imagenette", "imagenette2-160", "n03888257", "parachute"),
    ("imagewoof", "imagewoof2-160", "n02111889", "Samoyed"),
])
def test_fastai_presets_read_the_release_layout(registry, tmp_path: Path, preset: str, folder: str, wnid: str, name: str) -> None:  # type: ignore[no-untyped-def]
    root = tmp_path / folder
    for split in ("train", "val"):
        for w in (wnid, "n09999999"):
            (root / split / w).mkdir(parents=True)
            Image.new("RGB", (213, 160), (50, 60, 70)).save(root / split / w / "ILSVRC_1.JPEG")
    plugin = registry.datasets[preset]()
    for given in (tmp_path, root):  # the unpacked folder or its parent
        data = plugin.load(str(given))
        assert data.train_x.shape == (2, 3, 64, 64)  # presets default to 64x64
        assert name in data.classes and "n09999999" in data.classes  # unknown wnids keep their folder name
        assert "fast.ai 160px" in data.note
    with pytest.raises(DataError, match=f"{folder}/train/"):
        plugin.load(str(tmp_path / folder / "train"))


@pytest.mark.slow
@pytest.mark.skipif(not (SHARED / "data" / "cifar10-jpeg.tar.gz").is_file(), reason="../shared/data/cifar10-jpeg.tar.gz not present")
def test_imagefolder_on_the_real_lossy_cifar10_copy(registry, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """A slice of the real archive (the first 20 JPEGs per class and split), unpacked into tmp_path."""
    taken: dict[tuple[str, str], int] = {}
    with tarfile.open(SHARED / "data" / "cifar10-jpeg.tar.gz") as tar:
        for member in tar:
            parts = Path(member.name).parts
            if member.isfile() and len(parts) == 4 and parts[-1].endswith(".jpg"):
                key = (parts[1], parts[2])
                if taken.get(key, 0) < 20:
                    taken[key] = taken.get(key, 0) + 1
                    tar.extract(member, tmp_path, filter="data")
    data = registry.datasets["imagefolder"]().load(str(tmp_path / "cifar10-jpeg"))
    assert data.train_x.shape == (200, 3, 32, 32) and data.test_x.shape == (200, 3, 32, 32)
    assert torch.bincount(data.train_y).tolist() == [20] * 10
    assert "LOSSY JPEG copy of CIFAR-10" in data.note
    mean = data.train_x.float().mean((0, 2, 3)) / 255  # natural images: CIFAR-10's mean is about (0.49, 0.48, 0.45)
    assert ((mean - torch.tensor([0.49, 0.48, 0.45])).abs() < 0.08).all()


# --------------------------------------------------------------------------------------------------
# CelebA

ATTRS = (
    "5_o_Clock_Shadow Arched_Eyebrows Attractive Bags_Under_Eyes Bald Bangs Big_Lips Big_Nose Black_Hair "
    "Blond_Hair Blurry Brown_Hair Bushy_Eyebrows Chubby Double_Chin Eyeglasses Goatee Gray_Hair Heavy_Makeup "
    "High_Cheekbones Male Mouth_Slightly_Open Mustache Narrow_Eyes No_Beard Oval_Face Pale_Skin Pointy_Nose "
    "Receding_Hairline Rosy_Cheeks Sideburns Smiling Straight_Hair Wavy_Hair Wearing_Earrings Wearing_Hat "
    "Wearing_Lipstick Wearing_Necklace Wearing_Necktie Young"
).split()
#: per image: (partition, hair attributes set, expected y)
FACES = [
    (0, ["Black_Hair"], 1), (0, ["Blond_Hair"], 2), (0, [], -1), (0, ["Brown_Hair", "Blond_Hair"], -1),
    (0, ["Gray_Hair"], 4), (1, ["Bald"], 0), (2, ["Brown_Hair"], 3), (2, ["Bald"], 0), (2, ["Black_Hair", "Gray_Hair"], -1),
]


def write_celeba(root: Path) -> Path:
    """torchvision's celeba/ layout: 178x218 JPEGs whose centre 140x140 square is one colour per image
    (its index) and whose border is white, and the attribute and partition lists."""
    folder = root / "celeba"
    (folder / "img_align_celeba").mkdir(parents=True)
    attr_lines = [str(len(FACES)), " ".join(ATTRS)]
    part_lines = []
    for i, (part, hair, _) in enumerate(FACES, start=1):
        name = f"{i:06d}.jpg"
        image = np.full((218, 178, 3), 255, np.uint8)
        image[39:179, 19:159] = (20 * i, 0, 0)  # the centre crop (torchvision placement)
        Image.fromarray(image).save(folder / "img_align_celeba" / name, quality=95)
        values = ["1" if a in hair or (a == "Smiling" and i % 2) else "-1" for a in ATTRS]
        attr_lines.append(f"{name} " + " ".join(f"{v:>2}" for v in values))
        part_lines.append(f"{name} {part}")
    (folder / "list_attr_celeba.txt").write_text("\n".join(attr_lines) + "\n")
    (folder / "list_eval_partition.txt").write_text("\n".join(part_lines) + "\n")
    return folder


def test_celeba_crops_labels_hair_colour_and_keeps_attributes(registry, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    folder = write_celeba(tmp_path)
    data = registry.datasets["celeba"]().load(str(tmp_path))  # the parent of celeba/ works too
    train = [i for i, f in enumerate(FACES) if f[0] == 0]
    test = [i for i, f in enumerate(FACES) if f[0] == 2]  # partition 1 (valid) is not used
    assert data.train_x.shape == (len(train), 3, 64, 64) and data.test_x.shape == (len(test), 3, 64, 64)
    assert data.train_y.tolist() == [FACES[i][2] for i in train]
    assert data.test_y.tolist() == [FACES[i][2] for i in test]
    assert list(data.classes) == ["bald", "black", "blond", "brown", "gray"] and data.num_classes == 5
    # the centre 140 crop removed the white border: the image is its one colour
    red = data.train_x[:, 0].float().mean((1, 2))
    assert torch.allclose(red, torch.tensor([20.0 * (i + 1) for i in train]), atol=3)
    # no white border left (a crop one pixel off would bring in a 255 row, about 115 after the resize);
    # JPEG's chroma bleed leaves small values at the edge
    assert data.train_x[:, 1:].max() < 40 and data.train_x[:, 1:, 4:-4, 4:-4].max() < 8
    assert data.train_attrs.shape == (len(train), 40) and list(data.attr_names) == ATTRS
    assert set(data.attr_kinds) == {"binary"}
    smiling = ATTRS.index("Smiling")
    assert data.train_attrs[:, smiling].tolist() == [float((i + 1) % 2) for i in train]
    assert data.train_attrs[:, ATTRS.index("Black_Hair")].tolist() == [1.0, 0, 0, 0, 0]
    assert "centre crop 140 then resize to 64x64" in data.note and "not the official 202599" in data.note
    again = registry.datasets["celeba"]().load(str(folder), n_train=2)
    assert again.train_x.shape[0] == 2 and again.test_x.shape[0] == len(test)


def test_celeba_missing_or_damaged_files_name_the_file(registry, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    plugin = registry.datasets["celeba"]()
    folder = write_celeba(tmp_path / "a")
    (folder / "img_align_celeba" / "000007.jpg").unlink()
    with pytest.raises(DataError, match="000007.jpg is missing"):
        plugin.load(str(folder))

    folder = write_celeba(tmp_path / "b")
    lines = (folder / "list_attr_celeba.txt").read_text().splitlines()
    (folder / "list_attr_celeba.txt").write_text("\n".join(lines[:-2]) + "\n")
    with pytest.raises(DataError, match="list_attr_celeba.txt announces 9 images but lists 7"):
        plugin.load(str(folder))

    folder = write_celeba(tmp_path / "c")
    (folder / "list_eval_partition.txt").unlink()
    with pytest.raises(DataError, match="list_eval_partition.txt is missing"):
        plugin.load(str(folder))

    folder = write_celeba(tmp_path / "d")
    (folder / "img_align_celeba" / "000002.jpg").write_bytes(b"\xff\xd8 not a jpeg")
    with pytest.raises(DataError, match="000002.jpg is not a readable image"):
        plugin.load(str(folder))

    folder = write_celeba(tmp_path / "e")
    text = (folder / "list_attr_celeba.txt").read_text().replace(" 1 ", " 7 ", 1)
    (folder / "list_attr_celeba.txt").write_text(text)
    with pytest.raises(DataError, match="list_attr_celeba.txt line 3"):
        plugin.load(str(folder))


# --------------------------------------------------------------------------------------------------
# shapes


def test_shapes_is_seeded_and_sized(registry) -> None:  # type: ignore[no-untyped-def]
    plugin = registry.datasets["shapes"]()
    a = plugin.load(None, n_train=64, n_test=16, seed=3)
    b = plugin.load(None, n_train=64, n_test=16, seed=3)
    c = plugin.load(None, n_train=64, n_test=16, seed=4)
    assert a.train_x.shape == (64, 3, 32, 32) and a.test_x.shape == (16, 3, 32, 32)
    assert torch.equal(a.train_x, b.train_x) and torch.equal(a.test_x, b.test_x)
    assert torch.equal(a.test_attrs.nan_to_num(9), b.test_attrs.nan_to_num(9))
    assert not torch.equal(a.train_x, c.train_x)
    assert not torch.equal(a.train_x[:16], a.test_x)  # train and test are different draws
    assert list(a.attr_names) == ["colour", "x", "y", "scale", "rot_cos", "rot_sin"]
    assert list(a.attr_kinds) == ["categorical"] + ["continuous"] * 5
    assert plugin.protocol.name == "colour-conv" and not plugin.needs_files
    small = plugin.load(None, n_train=64, n_test=16, seed=3, size=16)
    assert small.train_x.shape == (64, 3, 16, 16) and torch.equal(small.train_y, a.train_y)  # same draws, smaller


def test_shapes_images_show_their_factors(registry) -> None:  # type: ignore[no-untyped-def]
    data = registry.datasets["shapes"]().load(None, n_train=400, n_test=10, seed=0)
    x, y, attrs = data.train_x.float() / 255, data.train_y, data.train_attrs
    assert torch.bincount(y, minlength=5).min() > 50  # every class is drawn
    # colour: the channels that light up are the hue's (red, yellow, green, cyan, blue, magenta)
    table = torch.tensor([[1, 0, 0], [1, 1, 0], [0, 1, 0], [0, 1, 1], [0, 0, 1], [1, 0, 1]], dtype=torch.float32)
    lit = (x.amax((2, 3)) > 0.5).float()
    assert torch.equal(lit, table[attrs[:, 0].long()])
    # position: the centre of mass of a circle is its centre (pixel centres at (i + 0.5) / 16 - 1)
    coverage = x.amax(1)
    grid = (torch.arange(32) + 0.5) / 16 - 1
    mass = coverage.sum((1, 2))
    com_x = (coverage * grid.view(1, 1, 32)).sum((1, 2)) / mass
    com_y = (coverage * grid.view(1, 32, 1)).sum((1, 2)) / mass
    circles = y == 0
    assert (com_x[circles] - attrs[circles, 1]).abs().max() < 0.02
    assert (com_y[circles] - attrs[circles, 2]).abs().max() < 0.02
    # scale: a circle covers pi * r^2 of the 4-unit-square image
    area = mass / (32 * 32) * 4
    assert torch.allclose(area[circles], math.pi * attrs[circles, 3] ** 2, rtol=0.05)
    # rotation: unknown (NaN) exactly for circles, on the unit circle otherwise
    rot = attrs[:, 4:6]
    assert torch.isnan(rot[circles]).all() and not torch.isnan(rot[~circles]).any()
    assert torch.allclose(rot[~circles].norm(dim=1), torch.ones(int((~circles).sum())), atol=1e-5)


def test_shapes_rotation_by_the_symmetry_angle_gives_the_same_image() -> None:
    from sslbench_plugins.datasets.shapes import SYMMETRY, render

    for k, order in enumerate(SYMMETRY):
        if order == 0:
            continue
        one = torch.tensor([k, k])
        angles = torch.tensor([0.3, 0.3 + 2 * math.pi / order])
        images = render(one, torch.tensor([2, 2]), torch.zeros(2), torch.zeros(2), torch.full((2,), 0.6), angles)
        assert (images[0].float() - images[1].float()).abs().max() <= 2  # same image up to rounding
        turned = render(one[:1], torch.tensor([2]), torch.zeros(1), torch.zeros(1), torch.full((1,), 0.6), torch.tensor([0.3 + math.pi / order]))
        assert (images[0].float() - turned[0].float()).abs().max() > 100  # half a period is visible

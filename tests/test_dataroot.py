"""Data found by name: the data root ($SSLBENCH_DATA or the [data] config), per-data-set config paths,
--data-dir first; `sslbench data`; shipped suites resolve their data through the root, and the dry run
names what is missing (issue 16, Deliver 1)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from typer.testing import CliRunner

from sslbench.cli import app
from sslbench.engine.cells import build_grid
from sslbench.engine.dataroot import DataConfigError, config_file, data_status, read_config, resolve_data_dir

from conftest import SHARED

MNIST_FILES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")
REAL_MNIST = SHARED / "data" / "MNIST" / "raw"


def placeholder_mnist(folder: Path, gz: bool = True) -> Path:
    """The four MNIST file names (content irrelevant: finding a data set only looks at names)."""
    folder.mkdir(parents=True, exist_ok=True)
    for stem in MNIST_FILES:
        (folder / (stem + (".gz" if gz else ""))).write_bytes(b"placeholder")
    return folder


def write_config(text: str) -> Path:
    path = config_file()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def test_config_file_lives_under_the_platform_config_dir(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))
    assert config_file() == tmp_path / "xdg" / "sslbench" / "config.toml"
    monkeypatch.delenv("XDG_CONFIG_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert config_file() == tmp_path / "home" / ".config" / "sslbench" / "config.toml"


def test_resolution_order(registry, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:  # type: ignore[no-untyped-def]
    mnist = registry.datasets["mnist"]
    root = tmp_path / "root"
    assert resolve_data_dir(mnist, None) is None  # nothing configured: the loader's own download
    placeholder_mnist(root / "MNIST" / "raw")
    monkeypatch.setenv("SSLBENCH_DATA", str(root))
    assert resolve_data_dir(mnist, None) == str(root / "MNIST" / "raw")  # the root's conventional folder
    own = placeholder_mnist(tmp_path / "own-mnist")
    write_config(f'[data]\nmnist = "{own}"\n')
    assert resolve_data_dir(mnist, None) == str(own)  # a per-data-set path beats the root
    assert resolve_data_dir(mnist, "/explicit") == "/explicit"  # --data-dir beats everything
    # a data set the root does not hold is left to its loader
    assert resolve_data_dir(registry.datasets["fashion-mnist"], None) is None


def test_the_root_is_searched_in_each_conventional_folder(registry, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setenv("SSLBENCH_DATA", str(tmp_path))
    placeholder_mnist(tmp_path / "fashion-mnist", gz=False)  # Debian's folder name, unpacked files
    assert resolve_data_dir(registry.datasets["fashion-mnist"], None) == str(tmp_path / "fashion-mnist")
    batches = tmp_path / "cifar-10-batches-py"
    batches.mkdir()
    for name in [f"data_batch_{i}" for i in range(1, 6)]:
        (batches / name).write_bytes(b"x")
    assert resolve_data_dir(registry.datasets["cifar10"], None) is None  # test_batch missing: not this set
    (batches / "test_batch").write_bytes(b"x")
    assert resolve_data_dir(registry.datasets["cifar10"], None) == str(batches)


def test_data_sets_that_read_no_files_ignore_the_root(registry, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setenv("SSLBENCH_DATA", str(tmp_path))
    (tmp_path / "digits").mkdir()
    write_config(f'[data]\ndigits = "{tmp_path}"\n')
    for name in ("digits", "shapes", "moving-balls"):
        assert resolve_data_dir(registry.datasets[name], None) is None
        assert data_status(registry.datasets[name]).state == "embedded"


def test_config_root_relative_paths_and_env_precedence(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = write_config('[data]\nroot = "datasets"\ncifar10 = "~/cifar"\n')
    config = read_config()
    assert config.root == path.parent / "datasets" and str(path) in config.root_source
    assert config.paths == {"cifar10": Path("~/cifar").expanduser()}
    monkeypatch.setenv("SSLBENCH_DATA", str(tmp_path / "env-root"))
    config = read_config()
    assert config.root == tmp_path / "env-root" and config.root_source == "$SSLBENCH_DATA"
    assert "root" not in config.paths and "cifar10" in config.paths


@pytest.mark.parametrize("text, match", [("[data\nroot = 1", "cannot be read as TOML"), ("[data]\nmnist = 3\n", "mnist must be a folder path")])
def test_a_bad_config_file_is_named(text: str, match: str) -> None:
    path = write_config(text)
    with pytest.raises(DataConfigError, match=match) as info:
        read_config()
    assert str(path) in str(info.value)


def test_build_grid_gives_cells_the_resolved_folder(registry, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:  # type: ignore[no-untyped-def]
    placeholder_mnist(tmp_path / "MNIST" / "raw")
    monkeypatch.setenv("SSLBENCH_DATA", str(tmp_path))
    cells = build_grid(registry, ["random"], "mnist", [0], 1, ["knn"])
    assert cells[0].data_dir == str(tmp_path / "MNIST" / "raw")
    cells = build_grid(registry, ["random"], "mnist", [0], 1, ["knn"], data_dir="/given")
    assert cells[0].data_dir == "/given"
    assert build_grid(registry, ["random"], "digits", [0], 1, ["knn"])[0].data_dir is None


def test_status_found_missing_size_and_digest(registry, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setenv("SSLBENCH_DATA", str(tmp_path))
    folder = placeholder_mnist(tmp_path / "MNIST" / "raw", gz=False)
    status = data_status(registry.datasets["mnist"])
    assert status.state == "found" and status.path == str(folder) and "$SSLBENCH_DATA" in status.source
    assert status.size == 4 * len(b"placeholder")
    assert status.digest == "differs" and sorted(status.mismatched) == sorted(MNIST_FILES)
    missing = data_status(registry.datasets["fashion-mnist"])
    assert missing.state == "missing" and missing.path is None
    assert str(tmp_path / "FashionMNIST" / "raw") in missing.looked and str(tmp_path / "fashion-mnist") in missing.looked
    assert "torchvision.datasets.FashionMNIST" in missing.how_to_get
    assert data_status(registry.datasets["mnist"], verify=False).digest == "not checked"


@pytest.mark.skipif(not REAL_MNIST.is_dir(), reason="../shared/data/MNIST not present")
def test_status_recognises_the_official_mnist_content(registry, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:  # type: ignore[no-untyped-def]
    (tmp_path / "MNIST").mkdir()
    os.symlink(REAL_MNIST, tmp_path / "MNIST" / "raw")
    monkeypatch.setenv("SSLBENCH_DATA", str(tmp_path))
    status = data_status(registry.datasets["mnist"])
    assert status.state == "found" and status.digest == "official" and status.mismatched == []


def test_data_command_lists_every_data_set(tmp_path: Path) -> None:
    placeholder_mnist(tmp_path / "MNIST" / "raw")
    result = CliRunner().invoke(app, ["data", "--json", "--no-verify"], env={"SSLBENCH_DATA": str(tmp_path)})
    assert result.exit_code == 0, result.output
    rows = {r["name"]: r for r in json.loads(result.stdout)}
    assert {"mnist", "fashion-mnist", "cifar10", "celeba", "imagenette", "digits", "shapes", "moving-balls"} <= set(rows)
    assert rows["mnist"]["state"] == "found" and rows["mnist"]["path"] == str(tmp_path / "MNIST" / "raw")
    assert rows["cifar10"]["state"] == "missing" and str(tmp_path / "cifar-10-batches-py") in rows["cifar10"]["looked"]
    assert rows["digits"]["state"] == "embedded"
    table = CliRunner().invoke(app, ["data"], env={"SSLBENCH_DATA": str(tmp_path), "COLUMNS": "200"})
    assert table.exit_code == 0 and "found" in table.stdout and "missing" in table.stdout


def test_dry_run_finds_mnist_by_name_and_names_missing_data(tmp_path: Path) -> None:
    placeholder_mnist(tmp_path / "MNIST" / "raw")
    env = {"SSLBENCH_DATA": str(tmp_path), "COLUMNS": "200"}
    result = CliRunner().invoke(app, ["bench", "table1-mnist", "--budget", "cpu", "--dry-run"], env=env)
    assert result.exit_code == 0, result.output
    assert str(tmp_path / "MNIST" / "raw") in result.stdout and "missing data" not in result.stdout
    result = CliRunner().invoke(app, ["bench", "table1-fashion", "--budget", "cpu", "--dry-run"], env=env)
    assert result.exit_code == 0, result.output
    assert "missing data: fashion-mnist" in " ".join(result.stdout.split())


@pytest.mark.skipif(not REAL_MNIST.is_dir(), reason="../shared/data/MNIST not present")
def test_dry_run_on_a_root_with_the_real_mnist_symlinked(tmp_path: Path) -> None:
    (tmp_path / "MNIST" / "raw").mkdir(parents=True)
    for path in REAL_MNIST.iterdir():
        os.symlink(path, tmp_path / "MNIST" / "raw" / path.name)
    result = CliRunner().invoke(
        app, ["bench", "table1-mnist", "--budget", "cpu", "--dry-run"], env={"SSLBENCH_DATA": str(tmp_path), "COLUMNS": "200"}
    )
    assert result.exit_code == 0, result.output
    assert str(tmp_path / "MNIST" / "raw") in result.stdout and "shared" not in result.stdout

"""Where each data set's files are found: ``--data-dir``, the user config file, the data root.

A data set that reads files (:attr:`~sslbench.sdk.api.DatasetPlugin.needs_files`) is looked for, in
this order:

1. ``--data-dir DIR`` given explicitly (passed on unchanged: the loader accepts the folder or its
   conventional sub-folders and says what is missing);
2. its own path in the ``[data]`` table of the user config file (``mnist = "DIR"``);
3. the data root -- ``$SSLBENCH_DATA``, else ``root = "DIR"`` in ``[data]`` -- in each of the data
   set's conventional folders (:attr:`~sslbench.sdk.api.DatasetPlugin.folders`: ``MNIST/raw``,
   ``cifar-10-batches-py``, ...), the first that holds its files;
4. none: the loader's own behaviour (a download into sslbench's cache).

The config file is ``$XDG_CONFIG_HOME/sslbench/config.toml`` (else ``~/.config/sslbench/config.toml``;
``%APPDATA%\\sslbench\\config.toml`` on Windows); relative paths in it are read from its folder.
:func:`data_status` tells ``sslbench data`` and ``bench --dry-run`` what was found where.
Pure logic: nothing here prints.
"""

from __future__ import annotations

import os
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Mapping

from sslbench.sdk.api import DataError, DatasetPlugin
from sslbench.sdk.data import cache_root, matches_official

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

#: the environment variable naming the data root
ENV = "SSLBENCH_DATA"


class DataConfigError(DataError):
    """The user config file cannot be read or its ``[data]`` table is malformed; the message names the file."""


@dataclass(frozen=True)
class DataConfig:
    """The data root and per-data-set folders in force, and where each came from."""

    file: Path
    root: Path | None = None
    root_source: str = ""
    paths: Mapping[str, Path] = field(default_factory=dict)


def config_file() -> Path:
    """The user config file's path (it may not exist)."""
    xdg = os.environ.get("XDG_CONFIG_HOME")
    if xdg:
        base = Path(xdg)
    elif os.name == "nt" and os.environ.get("APPDATA"):  # pragma: no cover - Windows
        base = Path(os.environ["APPDATA"])
    else:
        base = Path.home() / ".config"
    return base.expanduser() / "sslbench" / "config.toml"


def read_config() -> DataConfig:
    """``$SSLBENCH_DATA`` and the config file's ``[data]`` table; raises :class:`DataConfigError`."""
    path = config_file()
    table: dict[str, Any] = {}
    if path.is_file():
        try:
            table = tomllib.loads(path.read_text(encoding="utf-8")).get("data", {})
        except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
            raise DataConfigError(f"{path} cannot be read as TOML ({exc}); fix it or move it away") from exc
        if not isinstance(table, dict):
            raise DataConfigError(f"{path}: [data] must be a table, e.g. [data] root = \"~/data\"")
    folders: dict[str, Path] = {}
    for key, value in table.items():
        if not isinstance(value, str) or not value.strip():
            raise DataConfigError(f"{path}: [data] {key} must be a folder path in quotes, e.g. {key} = \"~/data\"")
        folder = Path(value).expanduser()
        folders[key] = folder if folder.is_absolute() else (path.parent / folder)
    env = os.environ.get(ENV, "").strip()
    if env:
        return DataConfig(path, Path(env).expanduser().absolute(), f"${ENV}", {k: v for k, v in folders.items() if k != "root"})
    root = folders.pop("root", None)
    return DataConfig(path, root, f"{path} [data] root" if root else "", folders)


def conventional_folders(cls: type[DatasetPlugin]) -> tuple[str, ...]:
    """The folders below a data root a data set is looked for in (its name when it declares none)."""
    return tuple(cls.folders) or (cls.name,)


def holds(cls: type[DatasetPlugin], folder: Path) -> bool:
    """Whether ``folder`` holds every file the data set declares (a file may be ``NAME.gz``)."""
    if not folder.is_dir():
        return False
    return all((folder / f).exists() or (folder / f"{f}.gz").is_file() for f in cls.files)


def resolve_data_dir(dataset_cls: type[DatasetPlugin], explicit: str | None) -> str | None:
    """The folder ``dataset_cls.load`` is given: ``explicit`` when set, else the data set's config
    path, else the first conventional folder of the data root that holds its files, else None (the
    loader downloads). A data set that reads no files ignores the config and the root."""
    if explicit is not None:
        return explicit
    if not dataset_cls.needs_files:
        return None
    config = read_config()
    if dataset_cls.name in config.paths:
        return str(config.paths[dataset_cls.name])
    if config.root is not None:
        for sub in conventional_folders(dataset_cls):
            if holds(dataset_cls, config.root / sub):
                return str(config.root / sub)
    return None


# ------------------------------------------------------------------------------------------------
# what `sslbench data` reports


@dataclass
class DataStatus:
    """One data set as ``sslbench data`` shows it.

    ``state``: ``found`` (its files are at ``path``), ``missing`` (not found where it was looked for)
    or ``embedded`` (reads no files). ``source``: how ``path`` was chosen. ``digest``: ``official``
    (every file with a published digest matches), ``differs`` (``mismatched`` lists the files),
    ``unknown`` (no published digests), ``not checked`` or ``""`` when nothing was found.
    """

    name: str
    description: str
    state: str
    path: str | None = None
    source: str = ""
    looked: list[str] = field(default_factory=list)
    size: int | None = None
    digest: str = ""
    mismatched: list[str] = field(default_factory=list)
    how_to_get: str = ""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _candidates(cls: type[DatasetPlugin], explicit: str | None, config: DataConfig) -> list[tuple[Path, str]]:
    if explicit is not None:
        given = Path(explicit).expanduser()
        return [(given, "--data-dir"), *((given / sub, "--data-dir") for sub in cls.folders)]
    if cls.name in config.paths:
        given = config.paths[cls.name]
        return [(given, f"{config.file} [data] {cls.name}"), *((given / sub, f"{config.file} [data] {cls.name}") for sub in cls.folders)]
    out = [(config.root / sub, f"data root {config.root_source}") for sub in conventional_folders(cls)] if config.root else []
    if cls.download_folder:
        out.append((cache_root() / cls.download_folder, "download cache"))
    return out


def _size(folder: Path, names: tuple[str, ...]) -> int:
    total = 0
    paths = [folder / n if (folder / n).exists() else folder / f"{n}.gz" for n in names] if names else [folder]
    for path in paths:
        if path.is_file():
            total += path.stat().st_size
        elif path.is_dir():
            for dirpath, _, filenames in os.walk(path):
                total += sum(os.stat(os.path.join(dirpath, f)).st_size for f in filenames)
    return total


def _digest_check(cls: type[DatasetPlugin], folder: Path) -> tuple[str, list[str]]:
    if not cls.digests:
        return "unknown", []
    results: dict[str, bool] = {}
    for name in sorted({n[:-3] if n.endswith(".gz") else n for n in cls.digests}):
        path = folder / name if (folder / name).is_file() else folder / f"{name}.gz"
        if path.is_file():
            match = matches_official(path, cls.digests)
            if match is not None:
                results[path.name] = match
    if not results:
        return "unknown", []
    mismatched = [name for name, ok in results.items() if not ok]
    return ("differs" if mismatched else "official"), mismatched


def data_status(cls: type[DatasetPlugin], explicit: str | None = None, verify: bool = True) -> DataStatus:
    """Where ``cls``'s files are (looked for as :func:`resolve_data_dir` does, plus sslbench's
    download cache), their size and, with ``verify``, how they compare with the published digests."""
    status = DataStatus(cls.name, cls.description, "embedded", how_to_get=cls.how_to_get)
    if not cls.needs_files:
        return status
    status.state = "missing"
    for folder, source in _candidates(cls, explicit, read_config()):
        status.looked.append(str(folder))
        if holds(cls, folder):
            status.state, status.path, status.source = "found", str(folder), source
            break
    if status.path is not None:
        folder = Path(status.path)
        status.size = _size(folder, tuple(cls.files))
        try:
            status.digest, status.mismatched = _digest_check(cls, folder) if verify else ("not checked", [])
        except DataError as exc:  # a damaged archive: report it, keep listing the others
            status.digest, status.mismatched = "differs", [str(exc)]
    return status


def data_statuses(datasets: Mapping[str, type[DatasetPlugin]], verify: bool = True) -> list[DataStatus]:
    """:func:`data_status` of every installed data set, by name."""
    return [data_status(datasets[name], verify=verify) for name in sorted(datasets)]


__all__ = [
    "ENV", "DataConfig", "DataConfigError", "DataStatus", "config_file", "conventional_folders", "data_status",
    "data_statuses", "holds", "read_config", "resolve_data_dir",
]

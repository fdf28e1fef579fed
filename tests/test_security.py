"""Security: no code from data files, no unsafe loads in the source tree, user strings kept out of paths,
output paths kept inside the results folder, ImageFolder walks that cannot loop."""

from __future__ import annotations

import ast
import os
import pickle
from pathlib import Path

import numpy as np
import pytest

from sslbench.sdk.api import DataError
from sslbench.sdk.safe_pickle import UnsafePickleError, load_data_pickle

from conftest import REPO
from test_datasets import write_cifar

# --------------------------------------------------------------------------------------------------
# 1. no code from data files


class _Payload:
    """What a hostile data file holds: unpickling it calls os.system."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):  # type: ignore[no-untyped-def]
        return (os.system, (f"touch {self.marker}",))


@pytest.fixture
def cifar(registry, monkeypatch):  # type: ignore[no-untyped-def]
    cls = registry.datasets["cifar10"]
    monkeypatch.setattr(cls, "sizes", {"train": 30, "test": 6})
    return cls()


@pytest.mark.parametrize("protocol", [2, pickle.HIGHEST_PROTOCOL])
@pytest.mark.parametrize("victim", ["data_batch_1", "batches.meta"])
def test_a_crafted_cifar_file_is_refused_and_its_payload_never_runs(cifar, tmp_path: Path, victim: str, protocol: int) -> None:  # type: ignore[no-untyped-def]
    write_cifar(tmp_path / "d")
    marker = tmp_path / "payload-ran"
    path = tmp_path / "d" / "cifar-10-batches-py" / victim
    evil = {"data": _Payload(marker), "labels": [0] * 6} if victim != "batches.meta" else {"label_names": _Payload(marker)}
    path.write_bytes(pickle.dumps(evil, protocol=protocol))
    with pytest.raises(DataError, match=f"{victim}.*posix.system|{victim}.*os.system|{victim}.*nt.system") as caught:
        cifar.load(str(tmp_path / "d"))
    assert isinstance(caught.value, UnsafePickleError) and "nothing of it ran" in str(caught.value)
    assert not marker.exists(), "the pickle's payload ran"


@pytest.mark.parametrize("protocol", [2, 4, 5])
def test_the_restricted_unpickler_reads_what_numpy_and_python_write(tmp_path: Path, protocol: int) -> None:
    batch = {"data": np.arange(12, dtype=np.uint8).reshape(2, 6), "labels": [3, 4], "batch_label": "b", "filenames": [b"x.png", b""]}
    path = tmp_path / "batch"
    path.write_bytes(pickle.dumps(batch, protocol=protocol))
    back = load_data_pickle(path)
    assert back["labels"] == [3, 4] and back["filenames"] == [b"x.png", b""]
    assert back["data"].dtype == np.uint8 and back["data"].tolist() == batch["data"].tolist()


def test_the_restricted_unpickler_reads_numpy_1_names_as_the_official_files_carry_them(tmp_path: Path) -> None:
    raw = pickle.dumps({"data": np.ones((1, 3), np.uint8), "labels": [1]}, protocol=2)
    old = raw.replace(b"numpy._core.multiarray", b"numpy.core.multiarray")
    assert old != raw
    (tmp_path / "b").write_bytes(old)
    assert load_data_pickle(tmp_path / "b")["data"].tolist() == [[1, 1, 1]]


@pytest.mark.parametrize("payload", [
    {"x": np.array([object()], dtype=object)},  # object arrays: refused at the dtype
    {"x": {1, 2}},  # a set is not in the official files (builtins.set under protocol 2)
    {"x": bytearray(b"ab")},
])
def test_anything_else_is_refused_naming_the_file(tmp_path: Path, payload: dict) -> None:  # type: ignore[type-arg]
    path = tmp_path / "odd-file"
    path.write_bytes(pickle.dumps(payload, protocol=2))
    with pytest.raises((DataError, pickle.UnpicklingError)) as caught:
        load_data_pickle(path)
    if isinstance(caught.value, DataError):
        assert "odd-file" in str(caught.value)


def _unsafe_loads(source: str) -> list[tuple[int, str]]:
    """(line, what) of each unsafe deserialisation call in ``source``: ``torch.load`` without
    ``weights_only=True``, ``pickle.load(s)`` / ``Unpickler`` / ``dill`` / ``joblib`` / ``marshal`` loads,
    ``np.load`` with ``allow_pickle=True``, and ``from pickle import load``."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.ImportFrom) and node.module in {"pickle", "_pickle", "cPickle", "dill", "marshal"}:
            if any(a.name in {"load", "loads", "Unpickler"} for a in node.names):
                found.append((node.lineno, f"from {node.module} import load"))
        if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)):
            continue
        owner = node.func.value
        owner_name = owner.id if isinstance(owner, ast.Name) else owner.attr if isinstance(owner, ast.Attribute) else ""
        attr = node.func.attr
        kwargs = {k.arg: k.value for k in node.keywords}
        flag = lambda key: isinstance(kwargs.get(key), ast.Constant) and kwargs[key].value is True  # noqa: E731
        if owner_name == "torch" and attr == "load" and not flag("weights_only"):
            found.append((node.lineno, "torch.load without weights_only=True"))
        if owner_name in {"pickle", "_pickle", "cPickle", "dill", "joblib", "marshal"} and attr in {"load", "loads", "Unpickler"}:
            found.append((node.lineno, f"{owner_name}.{attr}"))
        if owner_name in {"np", "numpy"} and attr == "load" and flag("allow_pickle"):
            found.append((node.lineno, "np.load(allow_pickle=True)"))
    return sorted(found)


def test_the_scanner_sees_every_unsafe_form() -> None:
    bad = "import torch, pickle\ntorch.load(p)\ntorch.load(p, weights_only=False)\npickle.loads(b)\nnp.load(p, allow_pickle=True)\nfrom pickle import loads\n"
    assert [line for line, _ in _unsafe_loads(bad)] == [2, 3, 4, 5, 6]
    assert _unsafe_loads("torch.load(p, map_location='cpu', weights_only=True)\nnp.load(p)\npickle.dump(x, f)\n") == []


def test_no_unsafe_load_anywhere_in_the_source_tree() -> None:
    """Data and checkpoints are read without running code from them: this keeps it so."""
    allowed = {REPO / "sslbench" / "sdk" / "safe_pickle.py"}
    problems = []
    for top in ("sslbench", "plugins", "benchmarks", "tests"):
        for path in sorted((REPO / top).rglob("*.py")):
            if path in allowed:
                continue
            problems += [f"{path.relative_to(REPO)}:{line}: {what}" for line, what in _unsafe_loads(path.read_text())]
    assert problems == [], "unsafe loads (use weights_only=True or sslbench.sdk.safe_pickle):\n" + "\n".join(problems)


# --------------------------------------------------------------------------------------------------
# 3. user strings never become paths outside their folder


def test_safe_name_admits_plain_names_and_refuses_path_tricks() -> None:
    from sslbench.sdk.files import UnsafePathError, safe_name

    for good in ("quick", "table1-mnist", "cpu", "v1.2_b", "a" * 100, "0f3a9c"):
        assert safe_name(good, "suite name") == good
    for bad in ("../../x", "..", ".", "a/b", "a\\b", "", " a", "a b", "-x", ".hidden", "a" * 101, "x\n", "c:d", None, 3):
        with pytest.raises(UnsafePathError, match="suite name .*letters, digits"):
            safe_name(bad, "suite name")


def test_inside_accepts_paths_in_the_folder_and_refuses_escapes(tmp_path: Path) -> None:
    from sslbench.sdk.files import UnsafePathError, inside

    (tmp_path / "out").mkdir()
    assert inside(tmp_path / "out", tmp_path / "out" / "a" / "b.md") == (tmp_path / "out" / "a" / "b.md").resolve()
    assert inside(tmp_path / "out", "runs/x.png") == (tmp_path / "out" / "runs" / "x.png").resolve()
    for escape in (tmp_path / "out" / ".." / "x.md", "../../etc/passwd", "/etc/passwd"):
        with pytest.raises(UnsafePathError, match="outside"):
            inside(tmp_path / "out", escape)
    (tmp_path / "out" / "link").symlink_to(tmp_path)  # a link inside that leads out is caught too
    with pytest.raises(UnsafePathError, match="outside"):
        inside(tmp_path / "out", tmp_path / "out" / "link" / "x.md")


SUITE = """\
[suites.fine]
methods = ["random"]
datasets = ["digits"]

[suites.fine.budgets.cpu]
epochs = 0

[suites."{suite}"]
methods = ["random"]
datasets = ["digits"]

[suites."{suite}".budgets."{budget}"]
epochs = 0
"""


@pytest.mark.parametrize("suite, budget, line, what", [
    ("../../x", "cpu", 8, "suite name '../../x'"),
    ("ok", "../up", 12, "budget name '../up'"),
    ("a/b", "cpu", 8, "suite name 'a/b'"),
])
def test_a_suite_or_budget_name_with_path_tricks_is_refused_at_parse_time(tmp_path: Path, suite: str, budget: str, line: int, what: str) -> None:
    from sslbench.bench.suites import load_suites
    from sslbench.bench.toml_lines import SuiteError

    path = tmp_path / "suites.toml"
    path.write_text(SUITE.format(suite=suite, budget=budget))
    with pytest.raises(SuiteError, match=rf"^{path}:{line}: .*{what} is not allowed"):
        load_suites(path)


def test_report_refuses_to_write_outside_its_folder(tmp_path: Path) -> None:
    from sslbench.bench.reports import _within
    from sslbench.sdk.files import UnsafePathError

    out = tmp_path / "reports" / "quick-cpu"
    assert _within(out, out / "report.md") == out / "report.md"
    with pytest.raises(UnsafePathError, match="outside"):
        _within(out, out / "runs" / ".." / ".." / ".." / "evil.md")


def test_cli_report_of_a_path_trick_suite_fails_cleanly(tmp_path: Path) -> None:
    from test_plugins import run_cli

    path = tmp_path / "suites.toml"
    path.write_text(SUITE.format(suite="../../x", budget="cpu"))
    result = run_cli("report", "../../x", "--file", str(path), "--home", str(tmp_path / "home"))
    assert result.returncode == 2 and "not allowed" in result.stderr and "Traceback" not in result.stderr
    assert not (tmp_path / "x-cpu").exists() and not (tmp_path / "home").exists()


# --------------------------------------------------------------------------------------------------
# ImageFolder: no loops through links, nothing from outside the data folder


def _two_images(root: Path) -> None:
    from PIL import Image

    for split in ("train", "test"):
        for name, rgb in (("a", (200, 0, 0)), ("b", (0, 200, 0))):
            (root / split / name).mkdir(parents=True)
            Image.new("RGB", (8, 8), rgb).save(root / split / name / "0.png")


def test_imagefolder_with_a_symlink_loop_loads_each_image_once(registry, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    root = tmp_path / "data"
    _two_images(root)
    (root / "train" / "a" / "loop").symlink_to(root / "train")  # a/loop/a/loop/... and a/loop/b/...
    (root / "train" / "b" / "self").symlink_to(".")
    (root / "train" / "b" / "again.png").symlink_to(root / "train" / "b" / "0.png")  # same file twice
    data = registry.datasets["imagefolder"]().load(str(root), size=8)
    assert data.train_y.tolist() == [0, 1] and data.test_y.tolist() == [0, 1]
    assert "read 4 images" in data.note and "2 linked folder(s) not followed" in data.note and "1 duplicate" in data.note


def test_imagefolder_refuses_links_that_leave_the_data_folder(registry, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    from PIL import Image

    root = tmp_path / "data"
    _two_images(root)
    Image.new("RGB", (8, 8)).save(tmp_path / "elsewhere.png")
    (root / "train" / "a" / "out.png").symlink_to(tmp_path / "elsewhere.png")
    with pytest.raises(DataError, match="out.png is a link to .*elsewhere.png, outside the data folder"):
        registry.datasets["imagefolder"]().load(str(root), size=8)

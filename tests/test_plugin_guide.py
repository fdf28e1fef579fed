"""The plugin guide (docs/plugins.md) works as printed, and explains every field of the contract.

The guide's files are its fenced blocks whose info string names a file (```` ```python file=PATH ````).
They are written into a temporary package, loaded through ``build_registry(extra_plugins=...)`` as
their ``pyproject.toml`` declares them, and run end to end: the example method trained for one epoch
on the example data set and measured by the example evaluator. The guide's own test file is run too.
"""

from __future__ import annotations

import dataclasses
import importlib
import math
import os
import re
import subprocess
import sys
import tomllib
from pathlib import Path
from types import ModuleType
from typing import Iterator

import pytest

from conftest import REPO
from test_layers import plugin_violations

GUIDE = REPO / "docs" / "plugins.md"
BLOCK = re.compile(r"^```(\w+)([^\n]*)\n(.*?)^```$", re.S | re.M)
PLUGIN_FILES = {
    "src/my_sslbench_plugins/squares.py",
    "src/my_sslbench_plugins/meanmatch.py",
    "src/my_sslbench_plugins/centroid.py",
}


def guide_text() -> str:
    return GUIDE.read_text(encoding="utf-8")


def guide_files() -> dict[str, str]:
    """PATH -> content of every ```` ```LANG file=PATH ```` block of the guide."""
    files = {}
    for _lang, info, body in BLOCK.findall(guide_text()):
        match = re.search(r"\bfile=(\S+)", info)
        if match:
            assert match.group(1) not in files, f"docs/plugins.md has two blocks for {match.group(1)}"
            files[match.group(1)] = body
    return files


@pytest.fixture
def package(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[Path, dict[str, ModuleType]]]:
    """The guide's package written into ``tmp_path/pkg``, its plugin modules imported by entry-point name."""
    root = tmp_path / "pkg"
    for path, body in guide_files().items():
        target = root / path
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(body, encoding="utf-8")
    entry_points = tomllib.loads((root / "pyproject.toml").read_text())["project"]["entry-points"]["sslbench"]
    monkeypatch.syspath_prepend(str(root / "src"))
    before = set(sys.modules)
    try:
        yield root, {name: importlib.import_module(module) for name, module in entry_points.items()}
    finally:
        for name in set(sys.modules) - before:
            if name.startswith("my_sslbench_plugins"):
                del sys.modules[name]


def test_the_guide_holds_a_complete_package() -> None:
    files = guide_files()
    assert PLUGIN_FILES | {"pyproject.toml", "src/my_sslbench_plugins/__init__.py", "tests/test_my_plugins.py"} <= set(files)
    project = tomllib.loads(files["pyproject.toml"])["project"]
    modules = set(project["entry-points"]["sslbench"].values())
    assert {f"src/{m.replace('.', '/')}.py" for m in modules} == PLUGIN_FILES, "every example module is an entry point"


def test_the_example_plugins_import_only_the_sdk() -> None:
    for path, body in guide_files().items():
        if path in PLUGIN_FILES:
            assert plugin_violations(body, path) == [], path
            assert "sslbench.engine" not in body and "sslbench.bench" not in body, path


def test_the_import_block_of_the_guide_runs() -> None:
    blocks = [body for lang, info, body in BLOCK.findall(guide_text()) if lang == "python" and "file=" not in info]
    assert blocks, "the guide shows what a plugin imports"
    for body in blocks:
        exec(compile(body, "docs/plugins.md", "exec"), {})


def test_the_example_plugins_register_cleanly(package, monkeypatch: pytest.MonkeyPatch) -> None:  # type: ignore[no-untyped-def]
    from sslbench.engine.plugins import build_registry

    _, modules = package
    monkeypatch.setenv("SSLBENCH_LOAD_PLUGINS", "")
    registry = build_registry(extra_plugins=list(modules.items()))
    assert registry.warnings == []
    assert {"squares", "meanmatch", "centroid"} <= set(registry.plugins)
    assert set(registry.datasets) == {"squares"}
    assert set(registry.methods) == {"meanmatch"}
    assert set(registry.evaluators) == {"centroid"}
    assert registry.methods["meanmatch"].capabilities() == {"uncertainty"}
    assert "lr" in registry.methods["meanmatch"].declared_params()


def test_the_example_method_trains_on_the_example_data_and_the_evaluator_stores_its_metric(package, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:  # type: ignore[no-untyped-def]
    from sslbench.engine.plugins import build_registry
    from sslbench.engine.runner import InProcessExecutor, build_grid, run_grid
    from sslbench.engine.store import Store

    _, modules = package
    monkeypatch.setenv("SSLBENCH_LOAD_PLUGINS", "")
    registry = build_registry(extra_plugins=list(modules.items()))
    store = Store(tmp_path / "home")
    cells = build_grid(registry, ["meanmatch"], "squares", [0], 1, ["centroid"], params={"squares": {"n_train": "300", "n_test": "80"}})
    outcomes = run_grid(cells, InProcessExecutor(store, registry)).outcomes
    assert [o.status for o in outcomes] == ["done"], [o.message for o in outcomes]
    run_id = outcomes[0].run_id
    stored = {m["name"]: m for m in store.metrics(run_id)}
    assert stored["centroid_acc"]["note"] is None
    value = stored["centroid_acc"]["value"]
    assert value is not None and math.isfinite(value) and 0.0 <= value <= 1.0
    evaluator = registry.evaluators["centroid"]
    for name in stored:
        assert evaluator.metric(name) is not None, f"the example evaluator returns {name} without declaring it"
    for picture in evaluator.pictures:
        assert (store.run_folder(run_id) / picture.file).is_file(), picture.file
    history = store.get_run(run_id).history
    assert {"loss", "align", "target_std"} <= set(history)
    assert all(math.isfinite(v) for v in history["loss"])


def test_the_guides_own_test_file_passes(package) -> None:  # type: ignore[no-untyped-def]
    root, _ = package
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(root / "src"), os.environ.get("PYTHONPATH", "")]), "OMP_NUM_THREADS": "1"}
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(root / "tests" / "test_my_plugins.py")],
        capture_output=True, text=True, env=env, cwd=root, timeout=600,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-2000:]
    assert "3 passed" in done.stdout


def _fields(cls: type) -> list[str]:
    return [f.name for f in dataclasses.fields(cls) if not f.name.startswith("_")]


def test_the_guide_explains_every_field_of_the_contract() -> None:
    from sslbench.sdk import hookspecs
    from sslbench.sdk.api import BuildContext, DatasetPlugin, EvalInputs, Evaluator, ImageData, Method
    from sslbench.sdk.metrics import ROLES, UNITS, Metric, Picture
    from sslbench.sdk.params import Param
    from sslbench.sdk.protocol import AugmentSpec, Protocol

    text = guide_text()
    wanted: dict[str, list[str]] = {
        cls.__name__: _fields(cls) for cls in (ImageData, Protocol, AugmentSpec, BuildContext, EvalInputs, Param, Metric, Picture)
    }
    wanted["EvalInputs"] += ["fit_index", "decoder()", "has_own_decoder"]
    for cls in (Method, DatasetPlugin, Evaluator):
        wanted[cls.__name__] = [n for n in cls.__annotations__ if not n.startswith("_")]
    wanted["Method"] += ["views", "original", "loss(views)", "embed(x)", "after_step()", "decode(z)", "uncertainty(x)", "lr", "capabilities()"]
    wanted["Evaluator"] += ["applies(inputs)", "evaluate(inputs, **options)"]
    wanted["hooks"] = [name for name in vars(hookspecs) if name.startswith("register_")]
    wanted["units"] = [f'"{unit}"' for unit in UNITS]
    wanted["roles"] = [f'"{role}"' for role in ROLES]
    wanted["loading"] = ["@hookimpl", "[project.entry-points.sslbench]", "SSLBENCH_LOAD_PLUGINS", "sslbench plugins", "build_registry", "extra_plugins"]
    # the inline code spans of the prose (fenced blocks left out): a name counts when one of them shows it
    spans = re.findall(r"`([^`\n]+)`", BLOCK.sub("", text))
    missing = [
        f"{owner}.{name}" for owner, names in wanted.items() for name in names
        if not any(re.search(rf"(?<!\w){re.escape(name)}(?!\w)", span) for span in spans)
    ]
    assert missing == [], f"docs/plugins.md does not explain: {', '.join(missing)}"

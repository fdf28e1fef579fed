"""The layers hold in the imports: sdk <- engine <- bench <- cli, and plugins see only the sdk.

Every ``import`` and ``from ... import`` statement of every module is read with :mod:`ast` (those
inside functions and ``TYPE_CHECKING`` blocks too: a type-only import is still a dependency), relative
imports resolved against the module's package. See ``docs/architecture.md`` for what each layer is.
"""

from __future__ import annotations

import ast
import importlib
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import sslbench
from conftest import REPO

PACKAGE = REPO / "sslbench"
PLUGINS = REPO / "plugins" / "sslbench_plugins"

#: what each layer of the core must never import (module name prefixes)
FORBIDDEN = {
    "sdk": ("sslbench.engine", "sslbench.bench", "sslbench.cli", "sslbench.__main__"),
    "engine": ("sslbench.bench", "sslbench.cli", "sslbench.__main__"),
    "bench": ("sslbench.cli", "sslbench.__main__"),
}

#: longest a module of the core may be, and the command line
MAX_MODULE_LINES = 450
MAX_CLI_LINES = 400


def module_name(path: Path) -> str:
    """``plugins/sslbench_plugins/methods/vae.py`` -> ``sslbench_plugins.methods.vae``."""
    root = PLUGINS.parent if PLUGINS in path.parents else REPO
    parts = list(path.relative_to(root).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported_modules(source: str, module: str, is_package: bool = False) -> list[tuple[int, str]]:
    """(line, module name) of everything ``source`` imports. ``from a import b`` yields ``a`` and
    ``a.b`` (b may be a submodule); relative imports are resolved against ``module``'s package."""
    package = module if is_package else module.rpartition(".")[0]
    found: list[tuple[int, str]] = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found.extend((node.lineno, alias.name) for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base_parts = package.split(".")
                base_parts = base_parts[: len(base_parts) - (node.level - 1)]
                base = ".".join(base_parts + ([node.module] if node.module else []))
            else:
                base = node.module or ""
            found.append((node.lineno, base))
            found.extend((node.lineno, f"{base}.{alias.name}") for alias in node.names if alias.name != "*")
    return found


def layer_violations(source: str, module: str, layer: str, is_package: bool = False) -> list[str]:
    """The imports of ``source`` that ``layer`` (sdk, engine or bench) must not make."""
    bad = []
    for line, name in imported_modules(source, module, is_package):
        for prefix in FORBIDDEN[layer]:
            if name == prefix or name.startswith(prefix + "."):
                bad.append(f"{module}:{line} imports {name} ({layer} must not import {prefix})")
    return bad


def plugin_violations(source: str, module: str, is_package: bool = False) -> list[str]:
    """The imports of a first-party plugin module that reach past the sdk: from sslbench it may take
    ``hookimpl`` (``from sslbench import hookimpl``), ``sslbench.sdk...`` and the legacy names of
    :data:`sslbench.LEGACY_MODULES`; sibling ``sslbench_plugins`` modules are fine."""
    bad = []
    for node in ast.walk(ast.parse(source)):
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and not node.level:
            if node.module == "sslbench":
                names = ["sslbench" if a.name == "hookimpl" else f"sslbench.{a.name}" for a in node.names]
            else:
                names = [node.module or ""]
        for name in names:
            if name.split(".")[0] != "sslbench":
                continue
            if name == "sslbench" or name == "sslbench.sdk" or name.startswith("sslbench.sdk.") or name in sslbench.LEGACY_MODULES:
                continue
            bad.append(f"{module}:{node.lineno} imports {name}; a plugin imports only sslbench.sdk (or its legacy names)")
    return bad


def core_modules() -> list[tuple[str, Path]]:
    """(layer, path) of every module of the sdk, engine and bench subpackages."""
    return [(layer, path) for layer in FORBIDDEN for path in sorted((PACKAGE / layer).rglob("*.py"))]


# -- the checker itself: it must catch what it is there to catch --------------------------------


def test_the_checker_sees_absolute_relative_nested_and_from_package_imports() -> None:
    sdk = "sslbench.sdk.nets"
    assert layer_violations("from sslbench.engine.store import Store", sdk, "sdk")
    assert layer_violations("import sslbench.bench.tables as t", sdk, "sdk")
    assert layer_violations("from sslbench import cli", sdk, "sdk")
    assert layer_violations("from ..engine import runner", sdk, "sdk")
    assert layer_violations("def f():\n    from sslbench.engine.train import train\n", sdk, "sdk")
    assert layer_violations("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from sslbench.engine import store\n", sdk, "sdk")
    assert layer_violations("from . import api\nfrom .metrics import Metric\nimport torch", sdk, "sdk") == []
    assert layer_violations("from sslbench.sdk.api import Method\nfrom sslbench.engine.store import Store", "sslbench.engine.runner", "engine") == []
    assert layer_violations("from sslbench.bench.tables import export", "sslbench.engine.runner", "engine")
    assert layer_violations("from sslbench.cli import app", "sslbench.bench.reports", "bench")
    assert layer_violations("from sslbench.engine.runner import Cell", "sslbench.bench.reports", "bench") == []


def test_the_plugin_checker_allows_only_the_sdk() -> None:
    ok = textwrap.dedent("""
        from sslbench import hookimpl
        from sslbench.sdk.api import Method
        from sslbench.api import Param
        import sslbench.nets
        from sslbench.sdk import Metric
        from sslbench_plugins.methods.vae import GaussianVAEBase
        import torch
    """)
    assert plugin_violations(ok, "sslbench_plugins.methods.x") == []
    for bad in ("from sslbench.engine.decoding import train_frozen_decoder", "import sslbench.bench.tables",
                "from sslbench import cli", "from sslbench.engine import runner", "from sslbench import __version__",
                "def f():\n    from sslbench.engine.store import Store\n"):
        assert plugin_violations(bad, "sslbench_plugins.methods.x"), bad


# -- the tree ------------------------------------------------------------------------------------


def test_the_core_subpackages_exist_and_hold_modules() -> None:
    for layer, _ in FORBIDDEN.items():
        assert (PACKAGE / layer / "__init__.py").is_file(), f"sslbench/{layer}/ is not a package"
    assert len(core_modules()) >= 20
    assert (PACKAGE / "cli.py").is_file()


@pytest.mark.parametrize("layer", list(FORBIDDEN))
def test_no_layer_imports_a_layer_above_it(layer: str) -> None:
    bad = []
    for path in sorted((PACKAGE / layer).rglob("*.py")):
        bad += layer_violations(path.read_text(encoding="utf-8"), module_name(path), layer, path.name == "__init__.py")
    assert bad == [], "\n".join(bad)


def test_first_party_plugins_import_only_the_sdk() -> None:
    paths = sorted(PLUGINS.rglob("*.py"))
    assert len(paths) >= 25
    bad = []
    for path in paths:
        bad += plugin_violations(path.read_text(encoding="utf-8"), module_name(path), path.name == "__init__.py")
    assert bad == [], "\n".join(bad)


def test_no_module_of_the_core_is_too_long() -> None:
    too_long = []
    for path in sorted(PACKAGE.rglob("*.py")):
        lines = len(path.read_text(encoding="utf-8").splitlines())
        limit = MAX_CLI_LINES if path == PACKAGE / "cli.py" else MAX_MODULE_LINES
        if lines > limit:
            too_long.append(f"{path.relative_to(REPO)}: {lines} lines (at most {limit})")
    assert too_long == [], "split these modules:\n" + "\n".join(too_long)


# -- the legacy names plugins imported before the layers existed --------------------------------


def test_legacy_names_are_the_sdk_modules_themselves() -> None:
    assert sslbench.LEGACY_MODULES, "sslbench.LEGACY_MODULES is empty"
    for legacy, new in sslbench.LEGACY_MODULES.items():
        assert new.startswith("sslbench.sdk."), f"{legacy} aliases {new}, which is not an sdk module"
        old_module = importlib.import_module(legacy)
        new_module = importlib.import_module(new)
        assert old_module is new_module, f"import {legacy} gives a copy, not {new}"
        assert sys.modules[legacy] is sys.modules[new]
        assert new_module.__name__ == new and new_module.__spec__.name == new
    from sslbench.api import Method as OldMethod
    from sslbench.sdk.api import Method

    assert OldMethod is Method


def test_legacy_names_imported_first_in_a_fresh_process() -> None:
    """A plugin that imports ``sslbench.api`` before anything else loaded the sdk gets the same module."""
    code = textwrap.dedent("""
        import importlib, sys
        legacy = ["sslbench.api", "sslbench.nets", "sslbench.protocol", "sslbench.pictures", "sslbench.losses"]
        old = [importlib.import_module(name) for name in legacy]
        import sslbench
        for name, module in zip(legacy, old):
            assert module is importlib.import_module(sslbench.LEGACY_MODULES[name]), name
        from sslbench.sdk import Method, hookimpl
        assert Method is sys.modules["sslbench.api"].Method and hookimpl is sslbench.hookimpl
        print("ok")
    """)
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0 and done.stdout.strip() == "ok", done.stderr


def test_the_sdk_short_form_exports_the_contract() -> None:
    import sslbench.sdk as sdk
    from sslbench.sdk import api, metrics, params, protocol

    for name in sdk.__all__:
        assert hasattr(sdk, name), f"sslbench.sdk.__all__ names {name}, which it does not define"
    assert sdk.Method is api.Method and sdk.Metric is metrics.Metric and sdk.Param is params.Param
    assert sdk.Protocol is protocol.Protocol and sdk.hookimpl is sslbench.hookimpl


def test_every_module_is_listed_in_the_readme_layout_and_the_architecture_page() -> None:
    """A new module gets its line in README.md's Layout section and in docs/architecture.md."""
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    layout = readme[readme.index("## Layout"):]
    layout = layout[: layout.index("\n## ", 1)]
    architecture = (REPO / "docs" / "architecture.md").read_text(encoding="utf-8")
    missing = []
    for path in sorted(PACKAGE.rglob("*.py")):
        rel = path.relative_to(PACKAGE).as_posix()
        shown = f"sslbench/{rel}" if "/" not in rel else rel
        for page, text in (("README.md Layout", layout), ("docs/architecture.md", architecture)):
            if f"`{shown}`" not in text:
                missing.append(f"{shown} in {page}")
    assert missing == [], "not listed: " + ", ".join(missing)

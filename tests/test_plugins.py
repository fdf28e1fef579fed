"""The plugin system: entry points, isolation of broken plugins, SSLBENCH_LOAD_PLUGINS, listings."""

from __future__ import annotations

import inspect
import json
import os
import subprocess
import sys
import textwrap
import types
from pathlib import Path

import pytest

from sslbench import hookimpl
from sslbench.sdk import hookspecs
from sslbench.sdk.api import Method
from sslbench.engine.plugins import KINDS, UnknownNameError, build_registry

from conftest import REPO


def run_cli(*args: str, env: dict[str, str] | None = None, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    full_env = {**os.environ, **(env or {}), "COLUMNS": "200"}
    return subprocess.run([sys.executable, "-m", "sslbench", *args], capture_output=True, text=True, env=full_env, cwd=cwd, timeout=600)


def test_first_party_plugins_come_through_entry_points(registry) -> None:  # type: ignore[no-untyped-def]
    from importlib.metadata import entry_points

    names = {ep.name for ep in entry_points(group="sslbench")}
    assert {"vae", "simclr", "random", "knn", "linear", "digits", "mnist"} <= names
    assert {"vae", "simclr", "random"} <= set(registry.methods)
    assert registry.origin[("methods", "vae")] == "vae"
    assert registry.plugins["vae"].distribution == "sslbench"
    assert registry.warnings == []


def test_every_hook_has_a_docstring_and_is_documented_in_the_readme() -> None:
    readme = (REPO / "README.md").read_text()
    specs = [n for n, f in inspect.getmembers(hookspecs, inspect.isfunction) if n.startswith("register_")]
    assert sorted(specs) == sorted(hook for hook, _ in KINDS.values())
    for name in specs:
        assert getattr(hookspecs, name).__doc__, f"hook {name} has no docstring"
        assert name in readme, f"hook {name} is not documented in README.md"


def test_every_hook_is_exercised_by_a_test() -> None:
    """datasette's habit: a hook nobody tests is a hook nobody knows works."""
    tests = "".join(p.read_text() for p in (REPO / "tests").glob("test_*.py"))
    for _, (hook, _) in KINDS.items():
        assert f"def {hook}(" in tests, f"no test implements {hook}"


class Tiny(Method):
    name = "tiny-inline"

    def loss(self, views):  # type: ignore[no-untyped-def]
        raise NotImplementedError

    def embed(self, x):  # type: ignore[no-untyped-def]
        return x.flatten(1)


def _plugin(**hooks) -> types.SimpleNamespace:  # type: ignore[no-untyped-def]
    return types.SimpleNamespace(**{name: hookimpl(fn) for name, fn in hooks.items()})


def test_all_four_hooks_register_through_one_path() -> None:
    from sslbench.sdk.api import Architecture, DatasetPlugin, Evaluator

    class A(Architecture):
        name = "arch-x"

    class D(DatasetPlugin):
        name = "data-x"

    class E(Evaluator):
        name = "eval-x"

    def register_methods(register):  # type: ignore[no-untyped-def]
        register(Tiny)

    def register_datasets(register):  # type: ignore[no-untyped-def]
        register(D)

    def register_evaluators(register):  # type: ignore[no-untyped-def]
        register(E)

    def register_architectures(register):  # type: ignore[no-untyped-def]
        register(A)

    plugin = _plugin(register_methods=register_methods, register_datasets=register_datasets,
                     register_evaluators=register_evaluators, register_architectures=register_architectures)
    reg = build_registry(extra_plugins=[("xplug", plugin)])
    assert reg.methods["tiny-inline"] is Tiny and reg.datasets["data-x"] is D
    assert reg.evaluators["eval-x"] is E and reg.architectures["arch-x"] is A
    assert reg.plugins["xplug"].registered == {"methods": ["tiny-inline"], "datasets": ["data-x"], "evaluators": ["eval-x"], "architectures": ["arch-x"]}


def test_a_plugin_that_raises_while_registering_is_named_and_skipped() -> None:
    def register_methods(register):  # type: ignore[no-untyped-def]
        raise RuntimeError("boom")

    with pytest.warns(UserWarning, match="'exploding'.*boom"):
        reg = build_registry(extra_plugins=[("exploding", _plugin(register_methods=register_methods))])
    assert "vae" in reg.methods
    assert "boom" in (reg.plugins["exploding"].error or "")


def test_a_misspelled_hook_fails_check_pending_and_only_its_plugin_is_dropped() -> None:
    def register_method(register):  # type: ignore[no-untyped-def]  # missing "s"
        register(Tiny)

    with pytest.warns(UserWarning, match="'typo'"):
        reg = build_registry(extra_plugins=[("typo", _plugin(register_method=register_method))])
    assert reg.plugins["typo"].error and "simclr" in reg.methods and "tiny-inline" not in reg.methods


def test_registering_a_non_method_is_refused_with_the_plugin_named() -> None:
    def register_methods(register):  # type: ignore[no-untyped-def]
        register(object)

    with pytest.warns(UserWarning, match="'wrongtype'.*not a subclass of Method"):
        build_registry(extra_plugins=[("wrongtype", _plugin(register_methods=register_methods))])


def test_duplicate_names_keep_the_first_and_warn() -> None:
    from sslbench.sdk.api import Method as M

    class FakeVAE(M):
        name = "vae"

    def register_methods(register):  # type: ignore[no-untyped-def]
        register(FakeVAE)

    with pytest.warns(UserWarning, match="already registered"):
        reg = build_registry(extra_plugins=[("dup", _plugin(register_methods=register_methods))])
    assert reg.methods["vae"] is not FakeVAE


def test_load_plugins_env_selects_entry_points(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SSLBENCH_LOAD_PLUGINS", "")
    reg = build_registry()
    assert reg.methods == {} and set(reg.architectures) >= {"mlp", "resnet"}
    monkeypatch.setenv("SSLBENCH_LOAD_PLUGINS", "vae,digits")
    reg = build_registry()
    assert "vae" in reg.methods and "simclr" not in reg.methods and set(reg.datasets) == {"digits"}
    assert set(reg.plugins) == {"sslbench.nets", "sslbench.protocol", "vae", "digits"}


def test_unknown_name_suggests_close_matches(registry) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(UnknownNameError, match="'simclr'"):
        registry.lookup("methods", "simclrr")


def _write_distribution(root: Path, dist: str, module: str, source: str, entry: str) -> None:
    """An installed distribution as importlib.metadata sees it: a module plus a .dist-info folder with
    an ``sslbench`` entry point -- what `pip install` of a third-party plugin leaves on sys.path."""
    (root / f"{module}.py").write_text(textwrap.dedent(source))
    info = root / f"{dist}-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text(f"[sslbench]\n{entry} = {module}\n")


TINY_PLUGIN = '''
import torch
from torch import nn
from sslbench import hookimpl
from sslbench.sdk.api import Method


class MeanMatch(Method):
    """Pull the two views' representations together; a toy method for the plugin test."""

    name = "meanmatch"
    family = "discriminative"
    description = "toy out-of-tree method"

    def __init__(self, ctx, **params):
        super().__init__(ctx, **params)
        self.encoder = ctx.encoder()

    def loss(self, views):
        z = self.encoder(views.flatten(0, 1)).view(views.shape[0], 2, -1)
        align = (z[:, 0] - z[:, 1]).pow(2).sum(1).mean()
        spread = -torch.log(z.var(0).mean() + 1e-4)
        return {"loss": align + spread, "align": align, "spread": spread}

    def embed(self, x):
        return self.encoder(x)


@hookimpl
def register_methods(register):
    register(MeanMatch)
'''


def test_out_of_tree_plugin_runs_through_sslbench_run(tmp_path: Path) -> None:
    site = tmp_path / "site"
    site.mkdir()
    _write_distribution(site, "sslbench_meanmatch", "sslbench_meanmatch", TINY_PLUGIN, "meanmatch")
    _write_distribution(site, "sslbench_broken", "sslbench_broken", "raise ImportError('this plugin is broken')\n", "broken")
    env = {"PYTHONPATH": f"{site}{os.pathsep}{os.environ.get('PYTHONPATH', '')}", "SSLBENCH_HOME": str(tmp_path / "home")}

    listing = run_cli("plugins", "--json", env=env)
    assert listing.returncode == 0, listing.stderr
    plugins = {p["name"]: p for p in json.loads(listing.stdout)}
    assert plugins["meanmatch"]["registered"] == {"methods": ["meanmatch"]}
    assert plugins["meanmatch"]["distribution"] == "sslbench_meanmatch"
    assert "this plugin is broken" in plugins["broken"]["error"]
    assert "'broken'" in listing.stderr  # named in a warning

    result = run_cli("run", "meanmatch", "random", "--dataset", "digits", "--epochs", "1", "--format", "json", env=env)
    assert result.returncode == 0, result.stderr
    assert "'broken'" in result.stderr and "skipped" in result.stderr
    rows = {r["method"]: r for r in json.loads(result.stdout)}
    assert set(rows) == {"meanmatch", "random"}
    assert 0.0 < rows["meanmatch"]["metrics"]["knn_acc"]["mean"] <= 1.0


def test_cli_unknown_method_exits_nonzero_naming_the_close_match() -> None:
    result = run_cli("run", "simclrr", "--dataset", "digits")
    assert result.returncode == 2
    assert "simclr" in result.stderr and "list-methods" in result.stderr


def test_listings_have_json_for_scripts() -> None:
    for command in ("list-methods", "list-datasets", "list-evaluators"):
        result = run_cli(command, "--json")
        assert result.returncode == 0, result.stderr
        names = {r["name"] for r in json.loads(result.stdout)}
        assert names, command
    methods = {r["name"]: r for r in json.loads(run_cli("list-methods", "--json").stdout)}
    assert methods["vae"]["family"] == "generative" and "decode" in methods["vae"]["capabilities"]
    table = run_cli("list-methods")
    assert table.returncode == 0 and "simclr" in table.stdout

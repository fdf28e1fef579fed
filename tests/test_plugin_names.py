"""Names are owned: third-party plugins never replace first-party ones or each other silently, shared
entry-point names load both, and a plugin ending the interpreter at import is named and skipped."""

from __future__ import annotations

import json
import os
import textwrap
from pathlib import Path

import pytest

from sslbench import hookimpl
from sslbench.engine.plugins import PluginWarning, UnknownNameError, build_registry, plugin_records
from sslbench.sdk.api import Method

from test_plugins import TINY_PLUGIN, _plugin, _write_distribution, run_cli


def _method_plugin(method: str, tag: str) -> str:
    """A plugin module registering a toy method called ``method`` (the class remembers ``tag``)."""
    return TINY_PLUGIN.replace('name = "meanmatch"', f'name = "{method}"\n    tag = "{tag}"')


@pytest.fixture
def site(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A folder on sys.path (and PYTHONPATH, for the CLI) that fake installed distributions go into."""
    folder = tmp_path / "site"
    folder.mkdir()
    monkeypatch.syspath_prepend(str(folder))
    monkeypatch.setenv("PYTHONPATH", f"{folder}{os.pathsep}{os.environ.get('PYTHONPATH', '')}")
    monkeypatch.delenv("SSLBENCH_LOAD_PLUGINS", raising=False)
    return folder


def _build() -> tuple:  # type: ignore[type-arg]
    with pytest.warns(PluginWarning) as caught:
        reg = build_registry()
    return reg, [str(w.message) for w in caught]


def test_a_third_party_method_named_like_a_first_party_one_does_not_replace_it(site: Path) -> None:
    _write_distribution(site, "acme", "acme_simclr_x", _method_plugin("simclr", "acme"), "acme-simclr")
    reg, warned = _build()
    assert reg.methods["simclr"].__module__ == "sslbench_plugins.methods.simclr"
    assert reg.owner[("methods", "simclr")] == "sslbench" and reg.origin[("methods", "simclr")] == "simclr"
    theirs = reg.lookup("methods", "acme:simclr")
    assert theirs.tag == "acme" and theirs.name == "acme:simclr"  # runs and is stored under the qualified name
    assert reg.owner[("methods", "acme:simclr")] == "acme"
    assert reg.lookup("methods", "sslbench:simclr") is reg.methods["simclr"]
    conflict = [w for w in warned if "'simclr' is registered by" in w]
    assert len(conflict) == 1 and "'sslbench'" in conflict[0] and "'acme'" in conflict[0] and "'acme:simclr'" in conflict[0]
    record = next(r for r in plugin_records(reg) if r["name"] == "acme-simclr")
    assert record["qualified_only"] == {"methods": ["acme:simclr"]} and record["state"] == "loaded"


def test_a_shared_entry_point_name_loads_both_distributions(site: Path) -> None:
    _write_distribution(site, "acme", "acme_simclr_y", _method_plugin("acme-contrast", "acme"), "simclr")
    reg, warned = _build()
    assert "simclr" in reg.methods and "acme-contrast" in reg.methods
    assert reg.plugins["simclr"].distribution == "sslbench" and reg.plugins["acme:simclr"].distribution == "acme"
    assert any("entry point 'simclr'" in w and "'acme'" in w and "'sslbench'" in w for w in warned)


def test_two_third_party_distributions_with_one_name_both_lose_the_bare_name(site: Path) -> None:
    _write_distribution(site, "zeta", "zeta_widget", _method_plugin("widget", "zeta"), "widget-z")
    _write_distribution(site, "alpha", "alpha_widget", _method_plugin("widget", "alpha"), "widget-a")
    reg, warned = _build()
    assert "widget" not in reg.methods
    assert reg.lookup("methods", "alpha:widget").tag == "alpha" and reg.lookup("methods", "zeta:widget").tag == "zeta"
    with pytest.raises(UnknownNameError, match="'alpha:widget', 'zeta:widget'"):
        reg.lookup("methods", "widget")
    assert any("'alpha'" in w and "'zeta'" in w and "neither keeps 'widget'" in w for w in warned)
    # the plugin order does not depend on where the packages sit on disk: third parties sorted by distribution
    third = [name for name, info in reg.plugins.items() if info.distribution in ("alpha", "zeta")]
    assert third == ["widget-a", "widget-z"]


def test_one_plugin_alone_keeps_its_bare_name_and_the_qualified_form_works(site: Path) -> None:
    _write_distribution(site, "acme", "acme_solo", _method_plugin("solo", "acme"), "solo")
    reg = build_registry()
    assert reg.methods["solo"] is reg.lookup("methods", "acme:solo") and reg.warnings == []


@pytest.mark.parametrize("source", [
    "raise SystemExit(3)\n",
    "import sys\nsys.exit('bye')\n",
    "class Weird(BaseException):\n    pass\nraise Weird('odd')\n",
])
def test_a_plugin_ending_the_interpreter_at_import_is_named_and_skipped(site: Path, source: str) -> None:
    _write_distribution(site, "quitter", "quitter_mod", source, "quitter")
    reg, warned = _build()
    assert reg.plugins["quitter"].state == "failed" and reg.plugins["quitter"].error
    assert any("'quitter'" in w and "skipped" in w for w in warned)
    assert {"simclr", "vae"} <= set(reg.methods)


def test_a_plugin_raising_systemexit_while_registering_is_named_and_skipped() -> None:
    def register_methods(register):  # type: ignore[no-untyped-def]
        raise SystemExit(1)

    with pytest.warns(PluginWarning, match="'leaver'.*SystemExit"):
        reg = build_registry(extra_plugins=[("leaver", _plugin(register_methods=register_methods))])
    assert "simclr" in reg.methods and reg.plugins["leaver"].state == "failed"


def test_ctrl_c_still_stops_plugin_loading() -> None:
    def register_methods(register):  # type: ignore[no-untyped-def]
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        build_registry(extra_plugins=[("interrupted", _plugin(register_methods=register_methods))])


def test_a_registered_name_that_is_not_a_safe_name_is_refused() -> None:
    class Sneaky(Method):
        name = "../../sneaky"

    def register_methods(register):  # type: ignore[no-untyped-def]
        register(Sneaky)

    with pytest.warns(PluginWarning, match="'sneaky-plugin'.*not allowed"):
        reg = build_registry(extra_plugins=[("sneaky-plugin", _plugin(register_methods=register_methods))])
    assert "../../sneaky" not in reg.methods


def test_load_plugins_selects_by_distribution_and_qualified_name(site: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _write_distribution(site, "acme", "acme_simclr_z", _method_plugin("simclr", "acme"), "simclr")
    monkeypatch.setenv("SSLBENCH_LOAD_PLUGINS", "sslbench:*")
    reg = build_registry()
    assert reg.warnings == [] and reg.methods["simclr"].__module__ == "sslbench_plugins.methods.simclr"
    assert [(p.name, p.state) for p in reg.unloaded] == [("simclr", "not selected")]
    assert next(r for r in plugin_records(reg) if r["distribution"] == "acme")["state"] == "not selected"
    monkeypatch.setenv("SSLBENCH_LOAD_PLUGINS", "acme:simclr,digits")
    reg = build_registry()
    assert reg.methods["simclr"].tag == "acme" and set(reg.datasets) == {"digits"}


def test_every_command_still_works_beside_hostile_plugins(site: Path) -> None:
    _write_distribution(site, "quitter", "quitter_cli", "raise SystemExit(3)\n", "quitter")
    _write_distribution(site, "acme", "acme_cli", _method_plugin("simclr", "acme"), "simclr")
    _write_distribution(site, "markup", "markup_cli", "raise ImportError('[/bold] not markup [red]')\n", "markup")

    listing = run_cli("plugins", "--json")
    assert listing.returncode == 0, listing.stderr
    records = {r["name"]: r for r in json.loads(listing.stdout)}
    assert records["quitter"]["state"] == "failed" and "SystemExit" in records["quitter"]["error"]
    assert records["acme:simclr"]["distribution"] == "acme" and records["simclr"]["distribution"] == "sslbench"
    assert "'quitter'" in listing.stderr and "'acme'" in listing.stderr
    table = run_cli("plugins")
    assert table.returncode == 0 and "quitter" in table.stdout and "not markup" in table.stdout, table.stderr
    methods = run_cli("list-methods", "--json")
    assert methods.returncode == 0 and {"simclr", "acme:simclr"} <= {r["name"] for r in json.loads(methods.stdout)}

    result = run_cli("run", "random", "acme:simclr", "--dataset", "digits", "--epochs", "1", "--format", "json")
    assert result.returncode == 0, result.stderr
    assert {r["method"] for r in json.loads(result.stdout)} == {"random", "acme:simclr"}

"""The plugin manager: built-ins and entry points through one path.

Loading order: the core's built-in architectures (:mod:`sslbench.sdk.nets`), then every entry point in the
``sslbench`` group, first-party plugins included. ``SSLBENCH_LOAD_PLUGINS`` selects which entry points
load: unset loads all; a comma-separated list of entry-point names loads only those; an empty string
loads none (only the core's built-ins). A plugin that fails to import, fails validation
(``check_pending``) or raises while registering is named in a warning and skipped; the rest keeps
working.
"""

from __future__ import annotations

import difflib
import importlib.metadata
import os
import warnings
from dataclasses import dataclass, field
from typing import Any, Callable

import pluggy

from sslbench.sdk import hookspecs
from sslbench.sdk.api import Architecture, DatasetPlugin, Evaluator, Method

KINDS: dict[str, tuple[str, type]] = {
    "methods": ("register_methods", Method),
    "datasets": ("register_datasets", DatasetPlugin),
    "evaluators": ("register_evaluators", Evaluator),
    "architectures": ("register_architectures", Architecture),
}


class PluginWarning(UserWarning):
    """A plugin was skipped; the message names it and says why."""


class UnknownNameError(LookupError):
    """An unknown method/dataset/evaluator name; the message lists close matches."""


@dataclass
class PluginInfo:
    name: str
    distribution: str | None
    version: str | None
    hooks: list[str] = field(default_factory=list)
    registered: dict[str, list[str]] = field(default_factory=dict)
    error: str | None = None


@dataclass
class Registry:
    """Everything the loaded plugins registered, by kind and name, plus where each came from."""

    methods: dict[str, type[Method]] = field(default_factory=dict)
    datasets: dict[str, type[DatasetPlugin]] = field(default_factory=dict)
    evaluators: dict[str, type[Evaluator]] = field(default_factory=dict)
    architectures: dict[str, type[Architecture]] = field(default_factory=dict)
    plugins: dict[str, PluginInfo] = field(default_factory=dict)
    origin: dict[tuple[str, str], str] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)

    def lookup(self, kind: str, name: str) -> type:
        table: dict[str, type] = getattr(self, kind)
        if name in table:
            return table[name]
        singular = kind[:-1]
        close = difflib.get_close_matches(name, list(table), n=3, cutoff=0.6)
        hint = f" Did you mean {' or '.join(repr(c) for c in close)}?" if close else ""
        raise UnknownNameError(
            f"Unknown {singular} {name!r}.{hint} Run `sslbench list-{kind}` to see the installed {kind}."
        )


def _warn(registry: "Registry", message: str) -> None:
    registry.warnings.append(message)
    warnings.warn(message, PluginWarning, stacklevel=3)


def _selected_entry_points(registry: "Registry") -> list[importlib.metadata.EntryPoint]:
    eps = list(importlib.metadata.entry_points(group="sslbench"))
    wanted = os.environ.get("SSLBENCH_LOAD_PLUGINS")
    if wanted is None:
        return eps
    names = {n.strip() for n in wanted.split(",") if n.strip()}
    unknown = names - {ep.name for ep in eps}
    if unknown:
        _warn(registry, f"SSLBENCH_LOAD_PLUGINS names {sorted(unknown)}, which no installed package provides")
    return [ep for ep in eps if ep.name in names]


def _dist_of(ep: importlib.metadata.EntryPoint) -> tuple[str | None, str | None]:
    dist = getattr(ep, "dist", None)
    if dist is None:
        return None, None
    return dist.metadata["Name"], dist.version


def build_registry(extra_plugins: list[tuple[str, Any]] | None = None) -> Registry:
    """Load plugins and collect what they register. ``extra_plugins`` (name, object) is for tests."""
    pm = pluggy.PluginManager("sslbench")
    pm.add_hookspecs(hookspecs)
    registry = Registry()

    from sslbench.sdk import nets  # the core's own architectures: registered like any plugin

    candidates: list[tuple[str, Callable[[], Any], str | None, str | None]] = [
        ("sslbench.nets", lambda: nets, "sslbench", _version())
    ]
    for ep in _selected_entry_points(registry):
        dist, version = _dist_of(ep)
        candidates.append((ep.name, ep.load, dist, version))
    for name, obj in extra_plugins or []:
        candidates.append((name, lambda obj=obj: obj, None, None))

    for name, load, dist, version in candidates:
        info = PluginInfo(name=name, distribution=dist, version=version)
        registry.plugins[name] = info
        if pm.has_plugin(name):
            info.error = "a plugin of this name is already loaded"
            _warn(registry, f"plugin {name!r} ({dist}) skipped: {info.error}")
            continue
        try:
            module = load()
            pm.register(module, name=name)
        except Exception as exc:  # noqa: BLE001 - any failure of a third-party import is reported
            info.error = f"{type(exc).__name__}: {exc}"
            _warn(registry, f"plugin {name!r} ({dist}) failed to load and was skipped: {info.error}")
            continue

    # A hook implementation with no matching spec (a misspelled hook) fails loudly, but only its
    # plugin is dropped.
    while True:
        try:
            pm.check_pending()
            break
        except pluggy.PluginValidationError as exc:
            bad = pm.get_name(exc.plugin)
            registry.plugins[bad].error = str(exc)
            _warn(registry, f"plugin {bad!r} skipped: {exc}")
            pm.unregister(exc.plugin)

    for kind, (hook_name, base) in KINDS.items():
        hook = getattr(pm.hook, hook_name)
        for impl in hook.get_hookimpls():
            pname = pm.get_name(impl.plugin)
            info = registry.plugins[pname]
            if info.error:
                continue
            info.hooks.append(hook_name)
            collected: list[type] = []

            def register(cls: type, collected: list[type] = collected, base: type = base, pname: str = pname) -> None:
                if not (isinstance(cls, type) and issubclass(cls, base)):
                    raise TypeError(f"{hook_name} got {cls!r}, which is not a subclass of {base.__name__}")
                if not getattr(cls, "name", None):
                    raise TypeError(f"{cls.__name__} has no 'name'")
                collected.append(cls)

            try:
                impl.function(register=register)
            except Exception as exc:  # noqa: BLE001 - report the plugin, keep the rest
                info.error = f"{hook_name} raised {type(exc).__name__}: {exc}"
                _warn(registry, f"plugin {pname!r} skipped: {info.error}")
                continue
            table = getattr(registry, kind)
            for cls in collected:
                if cls.name in table:
                    first = registry.origin[(kind, cls.name)]
                    _warn(registry, f"plugin {pname!r} registers {kind[:-1]} {cls.name!r}, already registered by {first!r}; kept the first")
                    continue
                table[cls.name] = cls
                registry.origin[(kind, cls.name)] = pname
                info.registered.setdefault(kind, []).append(cls.name)
    return registry


def _version() -> str:
    from sslbench import __version__

    return __version__


_REGISTRY: Registry | None = None


def get_registry() -> Registry:
    """The process-wide registry, built on first use."""
    global _REGISTRY
    if _REGISTRY is None:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", PluginWarning)  # the CLI prints registry.warnings itself
            _REGISTRY = build_registry()
    return _REGISTRY


# ------------------------------------------------------------------------------------------------
# listings (``sslbench list-methods`` / ``list-datasets`` / ``list-evaluators`` / ``plugins``)


def describe(registry: Registry, kind: str) -> list[dict[str, Any]]:
    """One record per installed plugin class of ``kind`` (methods, datasets, evaluators,
    architectures), by name: its plugin, description, declared parameters (defaults as ``repr``)
    and what its kind adds (a method's family and capabilities, a data set's protocol and whether it
    reads files, an evaluator's requirements)."""
    records = []
    for name, cls in sorted(getattr(registry, kind).items()):
        rec: dict[str, Any] = {"name": name, "plugin": registry.origin[(kind, name)], "description": getattr(cls, "description", "")}
        if kind == "methods":
            rec["family"] = cls.family
            rec["capabilities"] = sorted(cls.capabilities())
        if kind == "datasets":
            rec["protocol"] = cls.protocol.name
            rec["protocol_hash"] = cls.protocol.hash()
            rec["needs_files"] = bool(cls.needs_files)
        if kind == "evaluators" and cls.requires:
            rec["requires"] = sorted(cls.requires)
        declared = cls.declared_params() if hasattr(cls, "declared_params") else {}
        rec["params"] = {p: repr(v.default) for p, v in declared.items()}
        records.append(rec)
    return records


def plugin_records(registry: Registry) -> list[dict[str, Any]]:
    """One record per loaded plugin: package, version, hooks, what it registered, or why it was skipped."""
    return [
        {"name": p.name, "distribution": p.distribution, "version": p.version, "hooks": p.hooks, "registered": p.registered, "error": p.error}
        for p in registry.plugins.values()
    ]

"""The plugin manager: built-ins and entry points through one path, every name owned by a distribution.

Loading order: the core's built-in architectures (:mod:`sslbench.sdk.nets`), then the entry points of
the ``sslbench`` group -- first-party ones (distribution ``sslbench``) in their declared order, then
third-party ones sorted by (distribution, entry-point name), so the result never depends on the order of
folders on disk. ``SSLBENCH_LOAD_PLUGINS`` selects which entry points load: unset loads all; a
comma-separated list loads only those it names, each as ``NAME`` (every entry point of that name),
``DIST:NAME`` (one distribution's) or ``DIST:*`` (all of a distribution's: ``sslbench:*`` is the
first-party plugins only); an empty string loads none (only the core's built-ins).

Names are owned. Every registered name records its plugin (:attr:`Registry.origin`) and distribution
(:attr:`Registry.owner`), and is also reachable as ``DIST:NAME`` (:meth:`Registry.lookup`). When two
distributions register the same name, a warning names both and the rule is fixed: the first-party one
keeps the bare name; if neither is first-party, neither does. Every other claimant is reachable only as
``DIST:NAME`` (its class is listed and run under that name); nothing is replaced silently. An entry-point
name two distributions share loads both (the second-party plugin is called ``DIST:NAME``). A plugin that
fails to import (any exception, ``SystemExit`` included; only ``KeyboardInterrupt`` passes), fails
validation (``check_pending``) or raises while registering is named in a warning and skipped; the rest
keeps working.
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
from sslbench.sdk.api import Architecture, DatasetPlugin, Evaluator, Method, ProtocolPreset
from sslbench.sdk.files import UnsafePathError, safe_name

KINDS: dict[str, tuple[str, type]] = {
    "methods": ("register_methods", Method),
    "datasets": ("register_datasets", DatasetPlugin),
    "evaluators": ("register_evaluators", Evaluator),
    "architectures": ("register_architectures", Architecture),
    "protocols": ("register_protocols", ProtocolPreset),
}

#: the distribution whose plugins are first-party: it keeps a bare name another distribution also registers
FIRST_PARTY = "sslbench"


class PluginWarning(UserWarning):
    """A plugin was skipped, or a name is contested; the message names the plugins and says why."""


class UnknownNameError(LookupError):
    """An unknown method/dataset/evaluator name; the message lists close matches."""


@dataclass
class PluginInfo:
    """One plugin (entry point, or the core's built-ins): where it came from and how it went.
    ``name`` is the entry-point name, or ``DIST:NAME`` when another distribution's entry point has
    that name too; ``qualified_only`` lists the names it registered that are reachable only as
    ``DIST:NAME`` because another distribution registers them too; ``state`` is ``loaded``,
    ``failed`` (``error`` says why) or ``not selected`` (by ``SSLBENCH_LOAD_PLUGINS``)."""

    name: str
    distribution: str | None
    version: str | None
    hooks: list[str] = field(default_factory=list)
    registered: dict[str, list[str]] = field(default_factory=dict)
    error: str | None = None
    entry_point: str | None = None
    qualified_only: dict[str, list[str]] = field(default_factory=dict)
    state: str = "loaded"

    @property
    def qualifier(self) -> str:
        """What ``DIST:NAME`` starts with for this plugin's names: its distribution, or its own name
        when it has none (a plugin handed in by a test)."""
        return self.distribution or self.name


@dataclass
class Registry:
    """Everything the loaded plugins registered, by kind and name, plus who owns each name.

    ``methods`` .. ``architectures`` map each runnable name to its class: a bare name, or
    ``DIST:NAME`` for a class whose bare name another distribution holds or contests. ``qualified``
    maps (kind, ``DIST:NAME``) to the class for every registration (the bare winners too);
    ``origin`` maps (kind, name) to the plugin and ``owner`` to the distribution (None for a plugin
    without one)."""

    methods: dict[str, type[Method]] = field(default_factory=dict)
    datasets: dict[str, type[DatasetPlugin]] = field(default_factory=dict)
    evaluators: dict[str, type[Evaluator]] = field(default_factory=dict)
    architectures: dict[str, type[Architecture]] = field(default_factory=dict)
    protocols: dict[str, type[ProtocolPreset]] = field(default_factory=dict)
    plugins: dict[str, PluginInfo] = field(default_factory=dict)
    origin: dict[tuple[str, str], str] = field(default_factory=dict)
    owner: dict[tuple[str, str], str | None] = field(default_factory=dict)
    qualified: dict[tuple[str, str], type] = field(default_factory=dict)
    #: entry points that did not become plugins: not selected, or their name was taken
    unloaded: list[PluginInfo] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    def lookup(self, kind: str, name: str) -> type:
        """The class registered as ``name`` (bare, or ``DIST:NAME``), else :class:`UnknownNameError`."""
        table: dict[str, type] = getattr(self, kind)
        if name in table:
            return table[name]
        if (kind, name) in self.qualified:
            return self.qualified[(kind, name)]
        singular = kind[:-1]
        known = list(table) + [q for k, q in self.qualified if k == kind]
        close = difflib.get_close_matches(name, known, n=3, cutoff=0.6)
        hint = f" Did you mean {' or '.join(repr(c) for c in close)}?" if close else ""
        contested = sorted(q for k, q in self.qualified if k == kind and q.endswith(f":{name}"))
        if contested:
            hint = f" {name!r} is registered by more than one third-party distribution: name one of {', '.join(map(repr, contested))}."
        raise UnknownNameError(
            f"Unknown {singular} {name!r}.{hint} Run `{'sslbench plugins' if kind == 'protocols' else f'sslbench list-{kind}'}` to see the installed {kind}."
        )


def _warn(registry: "Registry", message: str) -> None:
    registry.warnings.append(message)
    warnings.warn(message, PluginWarning, stacklevel=3)


def _dist_of(ep: importlib.metadata.EntryPoint) -> tuple[str | None, str | None]:
    dist = getattr(ep, "dist", None)
    if dist is None:
        return None, None
    return dist.metadata["Name"], dist.version


def _ordered_entry_points() -> list[importlib.metadata.EntryPoint]:
    """The ``sslbench`` entry points, first-party first (in declared order), then by distribution and name."""
    eps = list(importlib.metadata.entry_points(group="sslbench"))
    first = [ep for ep in eps if _dist_of(ep)[0] == FIRST_PARTY]
    rest = sorted((ep for ep in eps if _dist_of(ep)[0] != FIRST_PARTY), key=lambda ep: (str(_dist_of(ep)[0]).lower(), ep.name))
    return first + rest


def _selected_entry_points(registry: "Registry") -> list[importlib.metadata.EntryPoint]:
    eps = _ordered_entry_points()
    wanted = os.environ.get("SSLBENCH_LOAD_PLUGINS")
    if wanted is None:
        return eps
    tokens = {n.strip() for n in wanted.split(",") if n.strip()}

    def chosen(ep: importlib.metadata.EntryPoint) -> set[str]:
        dist = _dist_of(ep)[0]
        return tokens & {ep.name, f"{dist}:{ep.name}", f"{dist}:*"}

    used = set().union(*(chosen(ep) for ep in eps)) if eps else set()
    if tokens - used:
        _warn(registry, f"SSLBENCH_LOAD_PLUGINS names {sorted(tokens - used)}, which no installed package provides "
                        "(give NAME, DIST:NAME or DIST:*; `sslbench plugins` lists them)")
    for ep in eps:
        if not chosen(ep):
            dist, version = _dist_of(ep)
            registry.unloaded.append(PluginInfo(ep.name, dist, version, entry_point=ep.value, state="not selected"))
    return [ep for ep in eps if chosen(ep)]


def _plugin_keys(eps: list[importlib.metadata.EntryPoint]) -> list[str]:
    """A unique plugin name per entry point: its own name, unless another distribution's entry point
    has it too -- then ``DIST:NAME`` for all but a first-party one."""
    count: dict[str, int] = {}
    for ep in eps:
        count[ep.name] = count.get(ep.name, 0) + 1
    return [ep.name if count[ep.name] == 1 or _dist_of(ep)[0] == FIRST_PARTY else f"{_dist_of(ep)[0]}:{ep.name}" for ep in eps]


def _failure(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__


def _renamed(cls: type, qualified: str) -> type:
    """A subclass of ``cls`` that differs only in its ``name``: how a class reachable only as
    ``DIST:NAME`` runs and is stored under that name (never under the contested bare one)."""
    return type(cls.__name__, (cls,), {"name": qualified, "__module__": cls.__module__, "__qualname__": cls.__qualname__, "__doc__": cls.__doc__})


def _label(info: PluginInfo) -> str:
    return f"plugin {info.name!r} (distribution {info.distribution!r})" if info.distribution else f"plugin {info.name!r}"


def _load(registry: Registry, pm: pluggy.PluginManager, candidates: list[tuple[PluginInfo, Callable[[], Any]]]) -> None:
    """Import and register each candidate with pluggy; a failure of any kind but Ctrl-C skips only it."""
    for info, load in candidates:
        if info.name in registry.plugins:
            info.name = f"{info.qualifier}:{info.name}"
        if info.name in registry.plugins or pm.has_plugin(info.name):
            info.error, info.state = "a plugin of this name is already loaded", "failed"
            registry.unloaded.append(info)
            _warn(registry, f"{_label(info)} skipped: {info.error}")
            continue
        registry.plugins[info.name] = info
        try:
            module = load()
            pm.register(module, name=info.name)
        except KeyboardInterrupt:
            raise
        except BaseException as exc:  # noqa: BLE001 - SystemExit too: a plugin's import must not end sslbench
            info.error, info.state = _failure(exc), "failed"
            _warn(registry, f"{_label(info)} failed to load and was skipped: {info.error}")


def _collect(registry: Registry, pm: pluggy.PluginManager, kind: str, order: dict[str, int]) -> list[tuple[PluginInfo, type]]:
    """Call every loaded plugin's hook of ``kind``; (plugin, class) of what they registered, in load order."""
    hook_name, base = KINDS[kind]
    claims: list[tuple[PluginInfo, type]] = []
    for impl in getattr(pm.hook, hook_name).get_hookimpls():
        info = registry.plugins[pm.get_name(impl.plugin)]
        if info.error:
            continue
        info.hooks.append(hook_name)
        collected: list[type] = []

        def register(cls: type, collected: list[type] = collected, base: type = base) -> None:
            if not (isinstance(cls, type) and issubclass(cls, base)):
                raise TypeError(f"{hook_name} got {cls!r}, which is not a subclass of {base.__name__}")
            if not getattr(cls, "name", None):
                raise TypeError(f"{cls.__name__} has no 'name'")
            try:
                safe_name(cls.name, f"{base.__name__} name")
            except UnsafePathError as exc:
                raise TypeError(str(exc)) from None
            collected.append(cls)

        try:
            impl.function(register=register)
        except KeyboardInterrupt:
            raise
        except BaseException as exc:  # noqa: BLE001 - report the plugin, keep the rest
            info.error, info.state = f"{hook_name} raised {_failure(exc)}", "failed"
            _warn(registry, f"plugin {info.name!r} skipped: {info.error}")
            continue
        claims += [(info, cls) for cls in collected]
    return sorted(claims, key=lambda claim: order[claim[0].name])


def _settle(registry: Registry, kind: str, claims: list[tuple[PluginInfo, type]]) -> None:
    """Give each registered name to its owner by the fixed rule of the module docstring."""
    singular = kind[:-1]
    by_name: dict[str, dict[str, tuple[PluginInfo, type]]] = {}
    for info, cls in claims:
        firsts = by_name.setdefault(cls.name, {})
        if info.qualifier in firsts:
            kept = firsts[info.qualifier][0]
            _warn(registry, f"plugin {info.name!r} registers {singular} {cls.name!r}, already registered by {kept.name!r} of the same distribution; kept the first")
            continue
        firsts[info.qualifier] = (info, cls)
    table = getattr(registry, kind)
    for name, firsts in by_name.items():
        bare = next(iter(firsts)) if len(firsts) == 1 else FIRST_PARTY if FIRST_PARTY in firsts else None
        for qualifier, (info, cls) in firsts.items():
            qualified = f"{qualifier}:{name}"
            runnable = name if qualifier == bare else qualified
            kept = cls if qualifier == bare else _renamed(cls, qualified)
            table[runnable] = kept
            registry.qualified[(kind, qualified)] = kept
            for key in {runnable, qualified}:
                registry.origin[(kind, key)] = info.name
                registry.owner[(kind, key)] = info.distribution
            info.registered.setdefault(kind, []).append(runnable)
            if qualifier != bare:
                info.qualified_only.setdefault(kind, []).append(qualified)
        if len(firsts) > 1:
            who = " and ".join(_label(info) for info, _ in firsts.values())
            forms = ", ".join(repr(f"{q}:{name}") for q in firsts if q != bare)
            rule = (f"the first-party one keeps {name!r} (already registered by {firsts[FIRST_PARTY][0].name!r}); the other is reachable only as {forms}"
                    if bare else f"neither keeps {name!r} (no distribution is preferred over another); use {forms}")
            _warn(registry, f"{singular} {name!r} is registered by {who}: {rule}, or choose with SSLBENCH_LOAD_PLUGINS")


def build_registry(extra_plugins: list[tuple[str, Any]] | list[tuple[str, Any, str | None]] | None = None) -> Registry:
    """Load plugins and collect what they register. ``extra_plugins`` -- (name, object) or
    (name, object, distribution) -- is for tests: loaded after the entry points."""
    pm = pluggy.PluginManager("sslbench")
    pm.add_hookspecs(hookspecs)
    registry = Registry()

    from sslbench.sdk import nets, protocol  # the core's own architectures and uniform protocol: registered like any plugin

    candidates: list[tuple[PluginInfo, Callable[[], Any]]] = [
        (PluginInfo("sslbench.nets", FIRST_PARTY, _version(), entry_point="sslbench.sdk.nets"), lambda: nets),
        (PluginInfo("sslbench.protocol", FIRST_PARTY, _version(), entry_point="sslbench.sdk.protocol"), lambda: protocol),
    ]
    eps = _selected_entry_points(registry)
    keys = _plugin_keys(eps)
    for key, ep in zip(keys, eps):
        dist, version = _dist_of(ep)
        candidates.append((PluginInfo(key, dist, version, entry_point=ep.value), ep.load))
    for name in sorted({ep.name for ep, key in zip(eps, keys) if key != ep.name}):
        sharing = [(str(_dist_of(ep)[0]), key) for ep, key in zip(eps, keys) if ep.name == name]
        _warn(registry, f"entry point {name!r} is provided by distributions {' and '.join(repr(d) for d, _ in sharing)}; "
                        f"each loads, as plugin {' and '.join(repr(k) for _, k in sharing)}")
    for extra in extra_plugins or []:
        name, obj, dist = (*extra, None) if len(extra) == 2 else extra
        candidates.append((PluginInfo(name, dist, None), lambda obj=obj: obj))
    _load(registry, pm, candidates)

    # A hook implementation with no matching spec (a misspelled hook) fails loudly, but only its
    # plugin is dropped.
    while True:
        try:
            pm.check_pending()
            break
        except pluggy.PluginValidationError as exc:
            bad = pm.get_name(exc.plugin)
            registry.plugins[bad].error, registry.plugins[bad].state = str(exc), "failed"
            _warn(registry, f"plugin {bad!r} skipped: {exc}")
            pm.unregister(exc.plugin)

    order = {name: i for i, name in enumerate(registry.plugins)}
    for kind in KINDS:
        _settle(registry, kind, _collect(registry, pm, kind, order))
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


def number_text(value: float) -> str:
    """A number as a person writes it: ``1e-3`` rather than ``0.001``, ``0.5``, ``200``."""
    if isinstance(value, float) and value != 0 and abs(value) < 1e-2:
        mantissa, exponent = f"{value:e}".split("e")
        return f"{mantissa.rstrip('0').rstrip('.')}e{int(exponent)}"
    return f"{value:g}" if isinstance(value, float) else str(value)


def _json_value(value: Any) -> Any:
    """A parameter value as JSON: numbers, booleans, strings and None as they are, tuples as lists."""
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, (tuple, list)):
        return [_json_value(v) for v in value]
    return str(value)


def protocol_lr(registry: Registry, family: str) -> tuple[float, dict[str, float]]:
    """The learning rate the installed data sets' protocols give ``family``: the most common one, and
    the data sets whose protocol gives another."""
    by_dataset = {name: cls.protocol.lr_for(family) for name, cls in sorted(registry.datasets.items())}
    values = list(by_dataset.values()) or [1e-3]
    common = max(values, key=values.count)
    return common, {name: v for name, v in by_dataset.items() if v != common}


def param_records(registry: Registry, kind: str, cls: type) -> list[dict[str, Any]]:
    """Each declared parameter of ``cls``: name, type, typed default, ``default_text`` (a method's
    ``lr`` of 0 reads ``protocol default 1e-3``: its family's rate in most installed data sets'
    protocols, the others in ``protocol_default_by_dataset``), help, and choices and bounds."""
    out = []
    for name, p in (cls.declared_params() if hasattr(cls, "declared_params") else {}).items():
        number = isinstance(p.default, (int, float)) and not isinstance(p.default, bool)
        rec: dict[str, Any] = {"name": name, "type": type(p.default).__name__ if p.default is not None else "any", "default": _json_value(p.default),
                               "default_text": number_text(p.default) if number else str(p.default), "help": p.help}
        if kind == "methods" and name == "lr" and not p.default:
            common, others = protocol_lr(registry, cls.family)
            rec["protocol_default"], rec["protocol_default_by_dataset"] = common, others
            rec["default_text"] = f"protocol default {number_text(common)}"
        for key in ("choices", "minimum", "maximum"):
            if getattr(p, key, None) is not None:
                rec[key] = _json_value(getattr(p, key))
        out.append(rec)
    return out


def describe(registry: Registry, kind: str) -> list[dict[str, Any]]:
    """One record per installed plugin class of ``kind`` (methods, datasets, evaluators,
    architectures), by name: its plugin, description, declared parameters (``params``: name -> typed
    default, as JSON numbers, booleans and strings; ``parameters``: each with type, default, readable
    default, help, choices and bounds, see :func:`param_records`) and what its kind adds (a method's
    family and capabilities, a data set's protocol and whether it reads files, an evaluator's
    requirements)."""
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
        rec["parameters"] = param_records(registry, kind, cls)
        rec["params"] = {p["name"]: p["default"] for p in rec["parameters"]}
        records.append(rec)
    return records


def plugin_records(registry: Registry) -> list[dict[str, Any]]:
    """One record per plugin and per entry point that did not load: distribution, version, entry point,
    ``state`` (loaded, failed, not selected), hooks, what it registered (``qualified_only``: the names
    another distribution also registers, reachable only as ``DIST:NAME``), or why it was skipped."""
    return [
        {"name": p.name, "distribution": p.distribution, "version": p.version, "entry_point": p.entry_point,
         "state": p.state, "hooks": p.hooks, "registered": p.registered, "qualified_only": p.qualified_only, "error": p.error}
        for p in [*registry.plugins.values(), *registry.unloaded]
    ]

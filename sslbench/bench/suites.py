"""Named benchmark suites (``benchmarks.toml``): grids of methods x data sets x evaluators x seeds
under a named budget, with the claims a suite expects to hold.

A suite is one table under ``[suites.NAME]``::

    [suites.table1-mnist]
    description = "SimVAE paper, Table 1 (content): MLP probe and kNN on MNIST"
    methods = ["random", "vae", "simvae", "simclr"]
    datasets = ["mnist"]
    evaluators = ["mlp", "knn"]
    seeds = 3                                  # 0..2, or a list [0, 1, 2]
    data_dir = { mnist = "data/mnist" }        # per data set; relative to this file; --data-dir wins
    params = { simvae = { views = 10 }, knn = { k_max = 15 } }   # method, data set, evaluator params
    executor = "ray"                           # optional: in-process (default), local or ray; --executor wins
    protocol = "paper"                         # optional: uniform (default) or paper; selection = "val" or "test"
    claims = [
        "simvae > vae on knn_acc",             # an ordering of seed means (">" or "<"); "... at equal flops"
        { method = "simvae", metric = "knn_acc", value = "97.8%", tolerance = "1%", budget = "paper", source = "..." },
    ]

    [suites.table1-mnist.budgets.cpu]          # every suite has one or more named budgets
    epochs = 1                                 # or { generative = 400, discriminative = 800 }, or steps = ...
    seeds = 2                                  # optional: overrides the suite's seeds
A budget has one of ``epochs``, ``steps``, ``views`` or ``flops`` (steps, views and FLOPs become
optimiser steps per method, :mod:`sslbench.engine.effort`), as a number or a table by method name,
family or ``default``; and optionally ``seeds``, ``params``, ``batch_size``, ``precision``,
``description`` and ``protocol`` (the preset, ``uniform`` or ``paper``; a budget's wins over the suite's).
Every error names the file, the line and the key (``benchmarks.toml:12: suites.x.methods[3]: ...``).
"""

from __future__ import annotations

import re
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

from sslbench.sdk.api import FAMILIES, ParamError
from sslbench.sdk.files import UnsafePathError, safe_name
from sslbench.engine.plugins import Registry, UnknownNameError
from sslbench.engine.cells import Cell, GridError, build_grid
from sslbench.engine.limits import MAX_EPOCHS
from sslbench.engine.effort import BUDGET_LIMITS, BUDGET_UNITS, Budget as EffortBudget
from sslbench.bench.claims import Claim, parse_claim
from sslbench.bench.toml_lines import KeyLocator, SuiteError, _int, _merge, _names, _params, _seeds, check_keys, located

SUITE_KEYS = {
    "description", "methods", "datasets", "evaluators", "seeds", "params", "data_dir", "selection",
    "precision", "batch_size", "budgets", "claims", "executor", "protocol",
}
#: what a suite's ``executor`` may name (``--executor`` on the command line wins)
SUITE_EXECUTORS = ("in-process", "local", "ray")
BUDGET_KEYS = {"description", *BUDGET_UNITS, "seeds", "params", "batch_size", "precision", "protocol", "methods"}


@dataclass
class Budget:
    """A named budget of a suite: training in ``unit`` (per method/family), seeds, params, protocol."""

    name: str
    #: the amount in ``unit`` (epochs unless the budget gives steps, views or flops)
    epochs: int | float | dict[str, Any]
    seeds: list[int]
    params: dict[str, dict[str, Any]]
    description: str = ""
    batch_size: int | None = None
    precision: str = "fp32"
    #: the budget's own ``params`` table (before the suite's are merged in), to place errors
    own_params: dict[str, dict[str, Any]] = field(default_factory=dict)
    unit: str = "epochs"
    protocol: str = "uniform"
    #: the suite's methods this budget trains (a budget's ``methods``: a subset; None: all of them)
    methods: list[str] | None = None

    def epochs_for(self, method: str, family: str) -> Any:
        """The amount (in :attr:`unit`) for ``method``: by name, then family, then ``default``."""
        if not isinstance(self.epochs, dict):
            return self.epochs
        for key in (method, family, "default"):
            if key in self.epochs:
                return self.epochs[key]
        raise KeyError(method)


@dataclass
class Suite:
    name: str
    description: str
    methods: list[str]
    datasets: list[str]
    evaluators: list[str]
    seeds: list[int]
    params: dict[str, dict[str, Any]]
    data_dirs: dict[str, str]
    selection: str
    budgets: dict[str, Budget]
    claims: list[Claim]
    file: "SuiteFile"
    #: the executor the suite asks for (``executor = "ray"``); None: in-process unless --executor says otherwise
    executor: str | None = None

    def where(self, *keys: Any) -> str:
        return self.file.where(("suites", self.name, *keys))

    def budget(self, name: str) -> Budget:
        if name not in self.budgets:
            raise SuiteError(
                f"{self.where('budgets')}: suite {self.name!r} has no budget {name!r}; "
                f"its budgets: {', '.join(self.budgets)}. Choose one with --budget."
            )
        return self.budgets[name]

    def check(self, registry: Registry) -> None:
        """Check every name against the installed plugins and every parameter against its
        declaration, for every budget; raise :class:`SuiteError` at the offending key."""
        for kind, names in (("methods", self.methods), ("datasets", self.datasets), ("evaluators", self.evaluators)):
            for i, name in enumerate(names):
                try:
                    registry.lookup(kind, name)
                except UnknownNameError as exc:
                    raise SuiteError(f"{self.where(kind, i)}: {exc}") from None
        for b in self.budgets.values():
            try:
                registry.lookup("protocols", b.protocol)
            except UnknownNameError as exc:
                raise SuiteError(f"{self.where('budgets', b.name)}: protocol {b.protocol!r}: {exc}") from None
        for claim in self.claims:
            if claim.protocol and claim.protocol not in registry.protocols:
                raise SuiteError(f"{self.where(*claim.key[2:])}: claim {claim.text!r} names protocol {claim.protocol!r}, which no plugin registers ({', '.join(sorted(registry.protocols))})")
        owners = {**{m: "methods" for m in self.methods}, **{d: "datasets" for d in self.datasets}, **{e: "evaluators" for e in self.evaluators}}
        sources = [(("params",), self.params)] + [(("budgets", b.name, "params"), b.own_params) for b in self.budgets.values()]
        for keys, table in sources:
            for owner, given in table.items():
                if owner not in owners:
                    raise SuiteError(
                        f"{self.where(*keys, owner)}: {owner!r} is not a method, data set or evaluator of suite "
                        f"{self.name!r} ({', '.join(owners)}); add it to the suite or remove its parameters"
                    )
                cls = registry.lookup(owners[owner], owner)
                try:
                    cls.resolve(given)
                except ParamError as exc:
                    bad = next((k for k in given if k not in cls.declared_params()), None) or next(iter(given), None)
                    raise SuiteError(f"{self.where(*keys, owner, *([bad] if bad else []))}: {exc}") from None
        for budget in self.budgets.values():
            if isinstance(budget.epochs, dict):
                unknown = sorted(set(budget.epochs) - set(self.methods) - set(FAMILIES) - {"default"})
                if unknown:
                    raise SuiteError(
                        f"{self.where('budgets', budget.name, budget.unit, unknown[0])}: {unknown[0]!r} is neither a method of "
                        f"the suite nor a family ({', '.join(FAMILIES)}) nor 'default'"
                    )
                for method in budget.methods or self.methods:
                    cls = registry.lookup("methods", method)
                    if cls.trainable:
                        try:
                            budget.epochs_for(method, cls.family)
                        except KeyError:
                            raise SuiteError(
                                f"{self.where('budgets', budget.name, budget.unit)}: no {budget.unit} for {method} "
                                f"(family {cls.family}); add `{method} = N`, `{cls.family} = N` or `default = N`"
                            ) from None
            self.cells(registry, budget.name)

    def cells(
        self, registry: Registry, budget: str, data_dirs: Mapping[str, str] | None = None,
        device: str | None = None, force: bool = False,
    ) -> list[Cell]:
        """The suite's grid at ``budget``: ordered data set, then seed, then method, so a suite
        stopped half-way has every method at the first seeds. ``data_dirs`` (data set -> folder)
        override the suite's own."""
        b = self.budget(budget)
        dirs = {**self.data_dirs, **(data_dirs or {})}
        cells: list[Cell] = []
        for dataset in self.datasets:
            per_method: list[list[Cell]] = []
            for method in b.methods or self.methods:
                cls = registry.lookup("methods", method)
                amount = b.epochs_for(method, cls.family) if cls.trainable else 0
                epochs = amount if b.unit == "epochs" else 0
                effort = EffortBudget(b.unit, amount) if b.unit != "epochs" and cls.trainable else None
                owners = {dataset, method, *self.evaluators}
                params = {o: p for o, p in b.params.items() if o in owners}
                try:
                    per_method.append(build_grid(
                        registry, [method], dataset, b.seeds, epochs, self.evaluators, params,
                        batch_size=b.batch_size, precision=b.precision, selection=self.selection,
                        data_dir=dirs.get(dataset), device=device, force=force, suite=self.name,
                        protocol=b.protocol, budget=effort,
                    ))
                except (GridError, UnknownNameError) as exc:
                    raise SuiteError(f"{self.where('budgets', budget)}: {exc}") from None
            for i in range(len(b.seeds)):
                cells.extend(group[i] for group in per_method)
        return cells


@dataclass
class SuiteFile:
    path: Path
    text: str
    suites: dict[str, Suite] = field(default_factory=dict)
    locator: KeyLocator | None = None

    def where(self, keys: Sequence[Any]) -> str:
        line = self.locator.line(keys) if self.locator else None
        shown = "".join(f"[{k}]" if isinstance(k, int) else (f".{k}" if i else str(k)) for i, k in enumerate(keys))
        return f"{self.path}:{line or '?'}: {shown}"

    def get(self, name: str) -> Suite:
        if name not in self.suites:
            import difflib

            close = difflib.get_close_matches(name, list(self.suites), n=3, cutoff=0.5)
            hint = f" Did you mean {' or '.join(repr(c) for c in close)}?" if close else ""
            raise SuiteError(
                f"{self.path}: no suite {name!r}.{hint} Suites in this file: {', '.join(self.suites) or 'none'} "
                "(`sslbench bench --list` lists them)."
            )
        return self.suites[name]


# ------------------------------------------------------------------------------------------------
# parsing


#: the shipped suites: package data of :mod:`sslbench.bench` (the repository's top-level
#: ``benchmarks.toml`` is a link to this file)
SHIPPED_SUITES = "benchmarks.toml"


def default_suite_file() -> Path:
    """The suite file shipped inside the package (read through :mod:`importlib.resources`, so an
    installed wheel has it as well as a source checkout). A user's own suite file is given with
    ``--file``; a ``benchmarks.toml`` in the working folder is not read unless named."""
    from importlib import resources

    shipped = resources.files("sslbench.bench") / SHIPPED_SUITES
    if isinstance(shipped, Path):
        return shipped
    # a package imported from a zip: extract the file once for this process
    import atexit
    from contextlib import ExitStack

    stack = ExitStack()
    atexit.register(stack.close)
    return stack.enter_context(resources.as_file(shipped))


def load_suites(path: Path | str) -> SuiteFile:
    """Read and check the schema of a suite file (names are checked against the installed plugins
    later, by :meth:`Suite.check`)."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise SuiteError(f"{path}: no such suite file; pass --file PATH to a benchmarks.toml") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise SuiteError(f"{path}: cannot read the suite file: {exc}") from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        line = getattr(exc, "lineno", None)
        if line is None:
            m = re.search(r"line (\d+)", str(exc))
            line = int(m.group(1)) if m else "?"
        raise SuiteError(f"{path}:{line}: TOML syntax error: {exc}. Fix the file (https://toml.io) and retry.") from None
    sf = SuiteFile(path=path, text=text, locator=KeyLocator(text))
    unknown_top = sorted(set(data) - {"suites"})
    if unknown_top:
        raise SuiteError(f"{sf.where([unknown_top[0]])}: unknown top-level key; suites go under [suites.NAME]")
    suites = data.get("suites", {})
    if not isinstance(suites, dict):
        raise SuiteError(f"{sf.where(['suites'])}: must be a table of suites ([suites.NAME])")
    for name, body in suites.items():
        sf.suites[name] = _parse_suite(sf, name, body)
    return sf


def _path_safe(sf: SuiteFile, keys: Sequence[Any], name: str, what: str) -> None:
    """Suite and budget names become folder names (``reports/SUITE-BUDGET``): refuse unsafe ones here."""
    try:
        safe_name(name, what)
    except UnsafePathError as exc:
        raise located(sf, keys, str(exc)) from None


def _parse_suite(sf: SuiteFile, name: str, body: Any) -> Suite:
    at = ("suites", name)
    _path_safe(sf, at, name, "suite name")
    if not isinstance(body, dict):
        raise located(sf, at, "must be a table ([suites.NAME])")
    check_keys(sf, at, body, SUITE_KEYS, f"suite {name!r}")
    for required in ("methods", "datasets", "budgets"):
        if required not in body:
            raise located(sf, at, f"suite {name!r} has no `{required}`; every suite needs methods, datasets and at least one [suites.{name}.budgets.NAME]")
    methods = _names(sf, [*at, "methods"], body["methods"], "method")
    datasets = _names(sf, [*at, "datasets"], body["datasets"], "data set")
    evaluators = _names(sf, [*at, "evaluators"], body.get("evaluators", ["knn", "linear"]), "evaluator")
    seeds = _seeds(sf, [*at, "seeds"], body.get("seeds", 1))
    params = _params(sf, [*at, "params"], body.get("params", {}))
    selection = body.get("selection", "val")
    if selection not in ("val", "test"):
        raise located(sf, [*at, "selection"], "must be \"val\" (validation split from train) or \"test\" (as the SimVAE paper)")
    description = body.get("description", "")
    if not isinstance(description, str):
        raise located(sf, [*at, "description"], "must be a string")
    executor = body.get("executor")
    if executor is not None and executor not in SUITE_EXECUTORS:
        raise located(sf, [*at, "executor"], f"must be one of {', '.join(repr(e) for e in SUITE_EXECUTORS)} (--executor on the command line wins)")

    data_dirs: dict[str, str] = {}
    raw_dirs = body.get("data_dir", {})
    if isinstance(raw_dirs, str):
        raw_dirs = {d: raw_dirs for d in datasets}
    if not isinstance(raw_dirs, dict):
        raise located(sf, [*at, "data_dir"], "must be a folder (for every data set) or a table { DATASET = \"folder\" }")
    for dataset, folder in raw_dirs.items():
        if dataset not in datasets:
            raise located(sf, [*at, "data_dir", dataset], f"{dataset!r} is not one of the suite's data sets ({', '.join(datasets)})")
        if not isinstance(folder, str) or not folder:
            raise located(sf, [*at, "data_dir", dataset], "must be a folder path (relative paths are read from the suite file's folder)")
        path = Path(folder).expanduser()
        data_dirs[dataset] = str(path if path.is_absolute() else (sf.path.resolve().parent / path).resolve())

    protocol = body.get("protocol", "uniform")
    if not isinstance(protocol, str) or not protocol:
        raise located(sf, [*at, "protocol"], "must name a protocol, e.g. \"uniform\" or \"paper\" (docs/protocols.md)")
    defaults = {"precision": body.get("precision", "fp32"), "batch_size": body.get("batch_size"), "protocol": protocol}
    raw_budgets = body["budgets"]
    if not isinstance(raw_budgets, dict) or not raw_budgets:
        raise located(sf, [*at, "budgets"], f"must hold at least one budget table, e.g. [suites.{name}.budgets.cpu] with epochs = 2")
    budgets = {}
    for bname, bbody in raw_budgets.items():
        _path_safe(sf, [*at, "budgets", bname], bname, "budget name")
        budgets[bname] = _parse_budget(sf, [*at, "budgets", bname], bname, bbody, seeds, params, defaults, methods)

    suite = Suite(
        name=name, description=description, methods=methods, datasets=datasets, evaluators=evaluators,
        seeds=seeds, params=params, data_dirs=data_dirs, selection=selection, budgets=budgets, claims=[], file=sf,
        executor=executor,
    )
    raw_claims = body.get("claims", [])
    if not isinstance(raw_claims, list):
        raise located(sf, [*at, "claims"], "must be a list of claims: \"a > b on METRIC\" strings or tables")
    for i, raw in enumerate(raw_claims):
        suite.claims.extend(parse_claim(sf, [*at, "claims", i], raw, suite))
    return suite


def _parse_budget(
    sf: SuiteFile, at: list[Any], name: str, body: Any, seeds: list[int], params: dict[str, dict[str, Any]],
    defaults: Mapping[str, Any], methods: list[str],
) -> Budget:
    if not isinstance(body, dict):
        raise located(sf, at, f"must be a table with at least `epochs`, e.g. [{'.'.join(map(str, at))}] epochs = 2")
    check_keys(sf, at, body, BUDGET_KEYS, f"budget {name!r}")
    units = [u for u in BUDGET_UNITS if u in body]
    if not units:
        raise located(sf, at, "has no `epochs`: give a number, or a table by method/family, e.g. { generative = 400, discriminative = 800 } "
                              "(or the budget as `steps`, `views` or `flops`)")
    if len(units) > 1:
        raise located(sf, [*at, units[1]], f"a budget is given in one unit: this one has both `{units[0]}` and `{units[1]}`")
    unit = units[0]
    raw = body[unit]

    def amount(keys: list[Any], value: Any) -> int | float:
        if unit in ("epochs", "steps"):
            return _int(sf, keys, value, 0 if unit == "epochs" else 1, MAX_EPOCHS if unit == "epochs" else int(BUDGET_LIMITS[unit]))
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value <= BUDGET_LIMITS[unit]:
            raise located(sf, keys, f"must be a positive number of {unit} (at most {BUDGET_LIMITS[unit]:g}), e.g. 1.2e16")
        return float(value)

    if isinstance(raw, dict):
        if not raw:
            raise located(sf, [*at, unit], f"is an empty table; give {unit} per method or family")
        epochs: int | float | dict[str, Any] = {k: amount([*at, unit, k], v) for k, v in raw.items()}
    else:
        epochs = amount([*at, unit], raw)
    protocol = body.get("protocol", defaults["protocol"])
    if not isinstance(protocol, str) or not protocol:
        raise located(sf, [*at, "protocol"], "must name a protocol, e.g. \"uniform\" or \"paper\" (docs/protocols.md)")
    own = _params(sf, [*at, "params"], body.get("params", {}))
    precision = body.get("precision", defaults["precision"])
    if precision not in ("fp32", "bf16"):
        raise located(sf, [*at, "precision"], "must be \"fp32\" or \"bf16\"")
    batch = body.get("batch_size", defaults["batch_size"])
    if batch is not None:
        batch = _int(sf, [*at, "batch_size"], batch, 2)
    budget = Budget(
        name=name, epochs=epochs, seeds=_seeds(sf, [*at, "seeds"], body["seeds"]) if "seeds" in body else list(seeds),
        params=_merge(params, own), description=str(body.get("description", "")), batch_size=batch, precision=precision,
        own_params=own, unit=unit, protocol=protocol, methods=None,
    )
    if "methods" in body:
        budget.methods = _names(sf, [*at, "methods"], body["methods"], "method")
        stray = next((m for m in budget.methods if m not in methods), None)
        if stray:
            raise located(sf, [*at, "methods"], f"{stray!r} is not one of the suite's methods ({', '.join(methods)}): a budget trains a subset of them")
    return budget


__all__ = ["SHIPPED_SUITES", "Budget", "Claim", "Suite", "SuiteError", "SuiteFile", "default_suite_file", "load_suites"]

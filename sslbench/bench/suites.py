"""Named benchmark suites (``benchmarks.toml``): grids of methods x data sets x evaluators x seeds
under a named budget, with the claims a suite expects to hold.

A suite is one table under ``[suites.NAME]``::

    [suites.table1-mnist]
    description = "SimVAE paper, Table 1 (content): MLP probe and kNN on MNIST"
    methods = ["random", "vae", "simvae", "simclr"]
    datasets = ["mnist"]
    evaluators = ["mlp", "knn"]
    seeds = 3                                  # 0..2, or a list [0, 1, 2]
    data_dir = { mnist = "../shared/data" }    # per data set; relative to this file; --data-dir wins
    params = { simvae = { views = 10 }, knn = { k_max = 15 } }   # method, data set, evaluator params
    selection = "val"                          # optional: val (default) or test
    claims = [
        "simvae > vae on knn_acc",             # an ordering of seed means (">" or "<")
        { method = "simvae", metric = "knn_acc", value = "97.8%", tolerance = "1%", budget = "paper",
          source = "where the number comes from" },      # a reference value with a tolerance
    ]

    [suites.table1-mnist.budgets.cpu]          # every suite has one or more named budgets
    epochs = 1                                 # or { generative = 400, discriminative = 800, simvae = 300 }
    seeds = 2                                  # optional: overrides the suite's seeds
    params = { mlp = { epochs = 50 } }         # optional: overlaid on the suite's params

Keys allowed in a budget: ``epochs`` (required), ``seeds``, ``params``, ``batch_size``,
``precision``, ``description``. ``epochs`` as a table is looked up by method name, then by the
method's family (generative, discriminative, probabilistic, baseline), then ``default``.

Every error names the file, the line and the key (``benchmarks.toml:12: suites.x.methods[3]: ...``).
"""

from __future__ import annotations

import bisect
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

from sslbench.sdk.api import FAMILIES, ParamError, resolve_params
from sslbench.engine.plugins import Registry, UnknownNameError
from sslbench.engine.runner import Cell, GridError, build_grid

SUITE_KEYS = {
    "description", "methods", "datasets", "evaluators", "seeds", "params", "data_dir", "selection",
    "precision", "batch_size", "budgets", "claims",
}
BUDGET_KEYS = {"description", "epochs", "seeds", "params", "batch_size", "precision"}
ORDER_CLAIM_KEYS = {"claim", "budget", "source", "margin"}
REFERENCE_CLAIM_KEYS = {"method", "metric", "value", "tolerance", "dataset", "budget", "source", "text"}
ORDER_CLAIM = re.compile(
    r"^\s*(?P<left>[\w.\-]+)\s*(?P<op>[<>])\s*(?P<right>[\w.\-]+)\s+on\s+(?P<metric>[\w.\-]+)"
    r"(?:\s+in\s+(?P<dataset>[\w.\-]+))?\s*$"
)


class SuiteError(ValueError):
    """A suite file or suite is malformed or names something that is not installed. The message
    starts with ``FILE:LINE: KEY:`` and says what to do."""


# ------------------------------------------------------------------------------------------------
# where a key is in the text


class KeyLocator:
    """Line numbers of keys in a (syntactically valid) TOML text.

    A small structural scan: table headers, ``[[array tables]]``, dotted keys, inline tables and
    arrays (each element gets the path ``(..., index)``). ``line(path)`` gives the line of the
    longest recorded prefix of ``path``, so an error deep inside an inline table still points at
    its line.
    """

    def __init__(self, text: str) -> None:
        self.text = text
        self.lines: dict[tuple[Any, ...], int] = {}
        self._newlines = [i for i, c in enumerate(text) if c == "\n"]
        self._pos = 0
        try:
            self._scan()
        except (IndexError, ValueError):  # a shape the scan does not follow: keep what it found
            pass

    def line(self, path: Sequence[Any]) -> int | None:
        path = tuple(path)
        for end in range(len(path), 0, -1):
            if path[:end] in self.lines:
                return self.lines[path[:end]]
        return None

    # -- the scan ----------------------------------------------------------------------------
    def _line_at(self, pos: int) -> int:
        return bisect.bisect_left(self._newlines, pos) + 1

    def _record(self, path: tuple[Any, ...], pos: int) -> None:
        self.lines.setdefault(path, self._line_at(pos))

    def _peek(self, k: int = 1) -> str:
        return self.text[self._pos : self._pos + k]

    def _skip_space(self, newlines: bool) -> None:
        t = self.text
        while self._pos < len(t):
            c = t[self._pos]
            if c in " \t\r" or (newlines and c == "\n"):
                self._pos += 1
            elif c == "#":
                while self._pos < len(t) and t[self._pos] != "\n":
                    self._pos += 1
            else:
                return

    def _string(self) -> str:
        t = self.text
        quote = t[self._pos]
        if t.startswith(quote * 3, self._pos):
            end = t.index(quote * 3, self._pos + 3)
            while t.startswith(quote, end + 3):  # up to two quotes may close the content
                end += 1
            value = t[self._pos + 3 : end]
            self._pos = end + 3
            return value
        i = self._pos + 1
        out = []
        while t[i] != quote:
            if quote == '"' and t[i] == "\\":
                out.append(t[i : i + 2])
                i += 2
                continue
            out.append(t[i])
            i += 1
        self._pos = i + 1
        return "".join(out)

    def _key(self) -> tuple[str, ...]:
        parts = []
        while True:
            self._skip_space(False)
            if self._peek() in ("'", '"'):
                parts.append(self._string())
            else:
                m = re.compile(r"[A-Za-z0-9_\-]+").match(self.text, self._pos)
                if not m:
                    raise ValueError("no key")
                parts.append(m.group())
                self._pos = m.end()
            self._skip_space(False)
            if self._peek() == ".":
                self._pos += 1
                continue
            return tuple(parts)

    def _value(self, path: tuple[Any, ...]) -> None:
        self._skip_space(False)
        c = self._peek()
        if c == "{":
            self._pos += 1
            while True:
                self._skip_space(True)
                if self._peek() == "}":
                    self._pos += 1
                    return
                start = self._pos
                key = path + self._key()
                self._record(key, start)
                self._pos += 1  # '='
                self._value(key)
                self._skip_space(True)
                if self._peek() == ",":
                    self._pos += 1
        elif c == "[":
            self._pos += 1
            index = 0
            while True:
                self._skip_space(True)
                if self._peek() == "]":
                    self._pos += 1
                    return
                self._record(path + (index,), self._pos)
                self._value(path + (index,))
                index += 1
                self._skip_space(True)
                if self._peek() == ",":
                    self._pos += 1
        elif c in ("'", '"'):
            self._string()
        else:
            m = re.compile(r"[^,\]\}\n#]*").match(self.text, self._pos)
            self._pos = m.end() if m else self._pos + 1

    def _scan(self) -> None:
        t = self.text
        table: tuple[Any, ...] = ()
        counts: dict[tuple[Any, ...], int] = {}
        while True:
            self._skip_space(True)
            if self._pos >= len(t):
                return
            start = self._pos
            if t[self._pos] == "[":
                array = t.startswith("[[", self._pos)
                self._pos += 2 if array else 1
                path = self._key()
                self._pos += 2 if array else 1
                self._record(path, start)
                if array:
                    index = counts.get(path, 0)
                    counts[path] = index + 1
                    path = path + (index,)
                    self._record(path, start)
                table = path
                continue
            key = table + self._key()
            self._record(key, start)
            self._pos += 1  # '='
            self._value(key)


# ------------------------------------------------------------------------------------------------
# the model


@dataclass(frozen=True)
class Claim:
    """An expectation about a suite's results.

    ``kind == "order"``: ``left op right`` on ``metric`` compares the seed means (``op`` is ">" or
    "<"; ``margin`` is the least difference that counts). ``kind == "reference"``: the mean of
    ``method`` lies within ``tolerance`` of ``value`` (both in the metric's stored units: fractions for
    accuracies). ``budget``, when set, is the only budget the claim is tested at.
    """

    kind: str
    metric: str
    dataset: str
    text: str
    left: str = ""
    op: str = ">"
    right: str = ""
    margin: float = 0.0
    method: str = ""
    value: float = 0.0
    tolerance: float = 0.0
    budget: str | None = None
    source: str = ""
    key: tuple[Any, ...] = ()

    @property
    def methods(self) -> tuple[str, ...]:
        return (self.left, self.right) if self.kind == "order" else (self.method,)


@dataclass
class Budget:
    """A named budget of a suite: epochs (per method/family), seeds and parameter overlays."""

    name: str
    epochs: int | dict[str, int]
    seeds: list[int]
    params: dict[str, dict[str, Any]]
    description: str = ""
    batch_size: int | None = None
    precision: str = "fp32"
    #: the budget's own ``params`` table (before the suite's are merged in), to place errors
    own_params: dict[str, dict[str, Any]] = field(default_factory=dict)

    def epochs_for(self, method: str, family: str) -> int:
        if isinstance(self.epochs, int):
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
                    resolve_params(owner, cls.params, given)
                except ParamError as exc:
                    bad = next((k for k in given if k not in cls.params), None) or next(iter(given), None)
                    raise SuiteError(f"{self.where(*keys, owner, *([bad] if bad else []))}: {exc}") from None
        for budget in self.budgets.values():
            if isinstance(budget.epochs, dict):
                unknown = sorted(set(budget.epochs) - set(self.methods) - set(FAMILIES) - {"default"})
                if unknown:
                    raise SuiteError(
                        f"{self.where('budgets', budget.name, 'epochs', unknown[0])}: {unknown[0]!r} is neither a method of "
                        f"the suite nor a family ({', '.join(FAMILIES)}) nor 'default'"
                    )
                for method in self.methods:
                    cls = registry.lookup("methods", method)
                    if cls.trainable:
                        try:
                            budget.epochs_for(method, cls.family)
                        except KeyError:
                            raise SuiteError(
                                f"{self.where('budgets', budget.name, 'epochs')}: no epochs for {method} "
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
            for method in self.methods:
                cls = registry.lookup("methods", method)
                epochs = b.epochs_for(method, cls.family) if cls.trainable else 0
                owners = {dataset, method, *self.evaluators}
                params = {o: p for o, p in b.params.items() if o in owners}
                try:
                    per_method.append(build_grid(
                        registry, [method], dataset, b.seeds, epochs, self.evaluators, params,
                        batch_size=b.batch_size, precision=b.precision, selection=self.selection,
                        data_dir=dirs.get(dataset), device=device, force=force, suite=self.name,
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


def default_suite_file() -> Path:
    """``./benchmarks.toml`` when it exists, else the one beside the sslbench package (a source or
    editable install)."""
    here = Path("benchmarks.toml")
    if here.is_file():
        return here
    return Path(__file__).resolve().parent.parent / "benchmarks.toml"


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


def _fail(sf: SuiteFile, keys: Sequence[Any], message: str) -> SuiteError:
    return SuiteError(f"{sf.where(keys)}: {message}")


def _names(sf: SuiteFile, keys: Sequence[Any], value: Any, what: str) -> list[str]:
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not value or not all(isinstance(v, str) and v for v in value):
        raise _fail(sf, keys, f"must be a non-empty list of {what} names, e.g. [\"a\", \"b\"]")
    dup = sorted({v for v in value if value.count(v) > 1})
    if dup:
        raise _fail(sf, keys, f"{dup[0]!r} is listed twice")
    return list(value)


def _seeds(sf: SuiteFile, keys: Sequence[Any], value: Any) -> list[int]:
    if isinstance(value, int) and not isinstance(value, bool):
        if value < 1:
            raise _fail(sf, keys, "must be at least 1 (the number of seeds, 0..N-1) or a list of seeds")
        return list(range(value))
    if isinstance(value, list) and value and all(isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in value):
        if len(set(value)) != len(value):
            raise _fail(sf, keys, "lists a seed twice")
        return list(value)
    raise _fail(sf, keys, "must be a number of seeds (e.g. 3 for seeds 0, 1, 2) or a list of seeds >= 0")


def _params(sf: SuiteFile, keys: Sequence[Any], value: Any) -> dict[str, dict[str, Any]]:
    if not isinstance(value, dict):
        raise _fail(sf, keys, "must be a table OWNER = { NAME = VALUE }, e.g. params = { simvae = { views = 4 } }")
    for owner, table in value.items():
        if not isinstance(table, dict):
            raise _fail(sf, [*keys, owner], f"must be a table of {owner}'s parameters, e.g. {owner} = {{ name = 1 }}")
    return {owner: dict(table) for owner, table in value.items()}


def _merge(base: Mapping[str, Mapping[str, Any]], over: Mapping[str, Mapping[str, Any]]) -> dict[str, dict[str, Any]]:
    out = {k: dict(v) for k, v in base.items()}
    for owner, table in over.items():
        out.setdefault(owner, {}).update(table)
    return out


def _check_keys(sf: SuiteFile, keys: Sequence[Any], body: Mapping[str, Any], allowed: set[str], what: str) -> None:
    import difflib

    for key in body:
        if key not in allowed:
            close = difflib.get_close_matches(key, sorted(allowed), n=1, cutoff=0.6)
            hint = f" Did you mean {close[0]!r}?" if close else ""
            raise _fail(sf, [*keys, key], f"unknown key in {what}.{hint} Allowed: {', '.join(sorted(allowed))}")


def _int(sf: SuiteFile, keys: Sequence[Any], value: Any, minimum: int) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
        raise _fail(sf, keys, f"must be a whole number >= {minimum}")
    return value


def _parse_suite(sf: SuiteFile, name: str, body: Any) -> Suite:
    at = ("suites", name)
    if not isinstance(body, dict):
        raise _fail(sf, at, "must be a table ([suites.NAME])")
    _check_keys(sf, at, body, SUITE_KEYS, f"suite {name!r}")
    for required in ("methods", "datasets", "budgets"):
        if required not in body:
            raise _fail(sf, at, f"suite {name!r} has no `{required}`; every suite needs methods, datasets and at least one [suites.{name}.budgets.NAME]")
    methods = _names(sf, [*at, "methods"], body["methods"], "method")
    datasets = _names(sf, [*at, "datasets"], body["datasets"], "data set")
    evaluators = _names(sf, [*at, "evaluators"], body.get("evaluators", ["knn", "linear"]), "evaluator")
    seeds = _seeds(sf, [*at, "seeds"], body.get("seeds", 1))
    params = _params(sf, [*at, "params"], body.get("params", {}))
    selection = body.get("selection", "val")
    if selection not in ("val", "test"):
        raise _fail(sf, [*at, "selection"], "must be \"val\" (validation split from train) or \"test\" (as the SimVAE paper)")
    description = body.get("description", "")
    if not isinstance(description, str):
        raise _fail(sf, [*at, "description"], "must be a string")

    data_dirs: dict[str, str] = {}
    raw_dirs = body.get("data_dir", {})
    if isinstance(raw_dirs, str):
        raw_dirs = {d: raw_dirs for d in datasets}
    if not isinstance(raw_dirs, dict):
        raise _fail(sf, [*at, "data_dir"], "must be a folder (for every data set) or a table { DATASET = \"folder\" }")
    for dataset, folder in raw_dirs.items():
        if dataset not in datasets:
            raise _fail(sf, [*at, "data_dir", dataset], f"{dataset!r} is not one of the suite's data sets ({', '.join(datasets)})")
        if not isinstance(folder, str) or not folder:
            raise _fail(sf, [*at, "data_dir", dataset], "must be a folder path (relative paths are read from the suite file's folder)")
        path = Path(folder).expanduser()
        data_dirs[dataset] = str(path if path.is_absolute() else (sf.path.resolve().parent / path).resolve())

    defaults = {"precision": body.get("precision", "fp32"), "batch_size": body.get("batch_size")}
    raw_budgets = body["budgets"]
    if not isinstance(raw_budgets, dict) or not raw_budgets:
        raise _fail(sf, [*at, "budgets"], f"must hold at least one budget table, e.g. [suites.{name}.budgets.cpu] with epochs = 2")
    budgets = {}
    for bname, bbody in raw_budgets.items():
        budgets[bname] = _parse_budget(sf, [*at, "budgets", bname], bname, bbody, seeds, params, defaults, methods)

    suite = Suite(
        name=name, description=description, methods=methods, datasets=datasets, evaluators=evaluators,
        seeds=seeds, params=params, data_dirs=data_dirs, selection=selection, budgets=budgets, claims=[], file=sf,
    )
    raw_claims = body.get("claims", [])
    if not isinstance(raw_claims, list):
        raise _fail(sf, [*at, "claims"], "must be a list of claims: \"a > b on METRIC\" strings or tables")
    for i, raw in enumerate(raw_claims):
        suite.claims.extend(_parse_claim(sf, [*at, "claims", i], raw, suite))
    return suite


def _parse_budget(
    sf: SuiteFile, at: list[Any], name: str, body: Any, seeds: list[int], params: dict[str, dict[str, Any]],
    defaults: Mapping[str, Any], methods: list[str],
) -> Budget:
    if not isinstance(body, dict):
        raise _fail(sf, at, f"must be a table with at least `epochs`, e.g. [{'.'.join(map(str, at))}] epochs = 2")
    _check_keys(sf, at, body, BUDGET_KEYS, f"budget {name!r}")
    if "epochs" not in body:
        raise _fail(sf, at, "has no `epochs`: give a number, or a table by method/family, e.g. { generative = 400, discriminative = 800 }")
    raw = body["epochs"]
    if isinstance(raw, dict):
        if not raw:
            raise _fail(sf, [*at, "epochs"], "is an empty table; give epochs per method or family")
        epochs: int | dict[str, int] = {k: _int(sf, [*at, "epochs", k], v, 0) for k, v in raw.items()}
    else:
        epochs = _int(sf, [*at, "epochs"], raw, 0)
    own = _params(sf, [*at, "params"], body.get("params", {}))
    precision = body.get("precision", defaults["precision"])
    if precision not in ("fp32", "bf16"):
        raise _fail(sf, [*at, "precision"], "must be \"fp32\" or \"bf16\"")
    batch = body.get("batch_size", defaults["batch_size"])
    if batch is not None:
        batch = _int(sf, [*at, "batch_size"], batch, 2)
    budget = Budget(
        name=name, epochs=epochs, seeds=_seeds(sf, [*at, "seeds"], body["seeds"]) if "seeds" in body else list(seeds),
        params=_merge(params, own), description=str(body.get("description", "")), batch_size=batch, precision=precision,
        own_params=own,
    )
    return budget


def _amount(sf: SuiteFile, keys: Sequence[Any], value: Any, what: str) -> float:
    """A number in the metric's stored units, or a string ``"88.2%"`` (a percentage, divided by 100)."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    if isinstance(value, str) and value.strip().endswith("%"):
        try:
            return float(value.strip()[:-1]) / 100.0
        except ValueError:
            pass
    raise _fail(sf, keys, f"{what} must be a number in the metric's stored units (0.882 for 88.2% accuracy) or a string like \"88.2%\"")


def _parse_claim(sf: SuiteFile, at: list[Any], raw: Any, suite: Suite) -> list[Claim]:
    def check_method(name: str, keys: Sequence[Any]) -> None:
        if name not in suite.methods:
            import difflib

            close = difflib.get_close_matches(name, suite.methods, n=1, cutoff=0.6)
            hint = f"; the suite lists {close[0]!r}: is one of the two misspelt?" if close else ""
            raise _fail(sf, keys, f"claim names method {name!r}, which is not in the suite's methods ({', '.join(suite.methods)}){hint}")

    def datasets_for(dataset: str | None, keys: Sequence[Any]) -> list[str]:
        if dataset is None:
            return list(suite.datasets)
        if dataset not in suite.datasets:
            raise _fail(sf, keys, f"claim names data set {dataset!r}, which is not in the suite's data sets ({', '.join(suite.datasets)})")
        return [dataset]

    def budget_of(table: Mapping[str, Any]) -> str | None:
        b = table.get("budget")
        if b is not None and b not in suite.budgets:
            raise _fail(sf, [*at, "budget"], f"claim is for budget {b!r}, which the suite does not have ({', '.join(suite.budgets)})")
        return b

    if isinstance(raw, str) or (isinstance(raw, dict) and "claim" in raw):
        table = raw if isinstance(raw, dict) else {}
        if table:
            _check_keys(sf, at, table, ORDER_CLAIM_KEYS, "an ordering claim")
        text = table.get("claim", raw)
        m = ORDER_CLAIM.match(text) if isinstance(text, str) else None
        if not m:
            raise _fail(sf, at, f"cannot read claim {text!r}; write \"METHOD > METHOD on METRIC\" (or \"<\" when lower is better), optionally \"... in DATASET\"")
        check_method(m["left"], at)
        check_method(m["right"], at)
        margin = _amount(sf, [*at, "margin"], table["margin"], "margin") if "margin" in table else 0.0
        budget = budget_of(table)
        return [
            Claim(
                kind="order", metric=m["metric"], dataset=d, left=m["left"], op=m["op"], right=m["right"], margin=margin,
                budget=budget, source=str(table.get("source", "")), key=tuple(at),
                text=f"{m['left']} {m['op']} {m['right']} on {m['metric']}" + (f" in {d}" if len(suite.datasets) > 1 or m["dataset"] else ""),
            )
            for d in datasets_for(m["dataset"], at)
        ]
    if isinstance(raw, dict):
        _check_keys(sf, at, raw, REFERENCE_CLAIM_KEYS, "a reference-value claim")
        for key in ("method", "metric", "value", "tolerance"):
            if key not in raw:
                raise _fail(sf, at, f"a reference-value claim needs method, metric, value and tolerance; `{key}` is missing")
        check_method(raw["method"], [*at, "method"])
        value = _amount(sf, [*at, "value"], raw["value"], "value")
        tolerance = _amount(sf, [*at, "tolerance"], raw["tolerance"], "tolerance")
        if tolerance < 0:
            raise _fail(sf, [*at, "tolerance"], "must be >= 0")
        budget = budget_of(raw)
        return [
            Claim(
                kind="reference", metric=str(raw["metric"]), dataset=d, method=raw["method"], value=value, tolerance=tolerance,
                budget=budget, source=str(raw.get("source", "")), key=tuple(at),
                text=str(raw.get("text") or f"{raw['method']} {raw['metric']} = {_show(raw['metric'], value)} ± {_show(raw['metric'], tolerance)}")
                + (f" in {d}" if len(suite.datasets) > 1 else ""),
            )
            for d in datasets_for(raw.get("dataset"), [*at, "dataset"])
        ]
    raise _fail(sf, at, "a claim is a string \"a > b on METRIC\" or a table { method, metric, value, tolerance } / { claim = \"a > b on METRIC\", budget = ... }")


def _show(metric: str, value: float) -> str:
    """A value in the metric's display units (accuracies in %)."""
    from sslbench.bench.tables import PERCENT_SUFFIXES

    return f"{100 * value:.4g}%" if metric.endswith(PERCENT_SUFFIXES) else f"{value:.4g}"


def _show_diff(metric: str, value: float) -> str:
    """A signed difference in display units (accuracies in percentage points)."""
    from sslbench.bench.tables import PERCENT_SUFFIXES

    return f"{100 * value:+.2f} pp" if metric.endswith(PERCENT_SUFFIXES) else f"{value:+.4g}"


# ------------------------------------------------------------------------------------------------
# claims against results


@dataclass
class Figures:
    """A metric's values over seeds for one (data set, method)."""

    values: list[float]

    @property
    def n(self) -> int:
        return len(self.values)

    @property
    def mean(self) -> float:
        return sum(self.values) / len(self.values)

    @property
    def std(self) -> float:
        from sslbench.bench.tables import mean_std

        return mean_std(self.values)[1]


@dataclass
class ClaimResult:
    claim: Claim
    status: str  # "held", "not held" or "not run"
    figures: str
    detail: str = ""
    beyond_spread: str = "n/a"
    numbers: dict[str, Any] = field(default_factory=dict)


def welch(a: Sequence[float], b: Sequence[float]) -> float | None:
    """Two-sided p-value of Welch's unequal-variance t-test (``scipy.stats.ttest_ind(equal_var=False)``);
    None with fewer than two values on a side, 0 when both sides have no spread but differ, 1 when
    they are equal constants."""
    if len(a) < 2 or len(b) < 2:
        return None
    from sslbench.bench.tables import mean_std

    (ma, sa), (mb, sb) = mean_std(a), mean_std(b)
    if sa == 0 and sb == 0:
        return 1.0 if ma == mb else 0.0
    from scipy import stats

    return float(stats.ttest_ind(list(a), list(b), equal_var=False).pvalue)


SPREAD_RULE = "Welch's t-test over seeds, two-sided p < 0.05 (needs at least 2 seeds on each side)"


def format_figures(metric: str, values: Sequence[float]) -> str:
    from sslbench.bench.tables import format_value

    return f"{format_value(metric, values)} (n={len(values)})" if values else "no result"


def evaluate_claims(
    claims: Iterable[Claim], results: Mapping[tuple[str, str], Mapping[str, Sequence[float]]], budget: str,
) -> list[ClaimResult]:
    """Mark each claim held / not held / not run against ``results[(dataset, method)][metric]``
    (per-seed values)."""
    out = []
    for claim in claims:
        vals = {m: list(results.get((claim.dataset, m), {}).get(claim.metric, [])) for m in claim.methods}
        missing = [m for m, v in vals.items() if not v]
        if claim.kind == "order":
            a, b = vals[claim.left], vals[claim.right]
            figures = f"{claim.left} {format_figures(claim.metric, a)} vs {claim.right} {format_figures(claim.metric, b)}"
        else:
            a = vals[claim.method]
            figures = f"{claim.method} {format_figures(claim.metric, a)} vs reference {_show(claim.metric, claim.value)} ± {_show(claim.metric, claim.tolerance)}"
        result = ClaimResult(claim, "not run", figures)
        if missing:
            result.detail = f"no stored {claim.metric} for {', '.join(missing)} in {claim.dataset}"
            stored = sorted({k for m in missing for k in results.get((claim.dataset, m), {})})
            if stored:  # the runs exist: the metric name is probably wrong
                result.detail += f" (its runs store {', '.join(stored)}; is the metric name right?)"
            out.append(result)
            continue
        if claim.kind == "order":
            diff = Figures(a).mean - Figures(b).mean
            signed = diff if claim.op == ">" else -diff
            held = signed > claim.margin
            p = welch(a, b)
            result.numbers = {"difference": diff, "p_value": p}
            result.detail = f"difference {_show_diff(claim.metric, diff)}" + (f" (needs more than {_show(claim.metric, claim.margin)})" if claim.margin else "")
            if p is not None:
                result.detail += f", Welch p = {p:.3g}"
                result.beyond_spread = "yes" if p < 0.05 else "no"
        else:
            diff = Figures(a).mean - claim.value
            held = abs(diff) <= claim.tolerance
            result.numbers = {"difference": diff}
            result.detail = f"off by {_show_diff(claim.metric, diff)}"
        result.status = "held" if held else "not held"
        if claim.budget and claim.budget != budget:
            result.status = "not run"
            result.detail = f"the claim is for the {claim.budget} budget; these figures are from the {budget} budget ({result.detail})"
        out.append(result)
    return out


__all__ = [
    "Budget", "Claim", "ClaimResult", "KeyLocator", "SPREAD_RULE", "Suite", "SuiteError", "SuiteFile",
    "default_suite_file", "evaluate_claims", "load_suites", "welch",
]

"""Claims a suite states, and the statistics that judge them against stored results.

An ordering claim (``"simvae > vae on knn_acc"``) holds when the seed means are in the stated order;
a reference claim holds when a method's mean lies within a tolerance of a published value. Each
verdict says whether the difference exceeds the seed-to-seed spread (:data:`SPREAD_RULE`).

Given the runs' training effort (:class:`~sslbench.bench.effort.Effort` per data set and method), a
verdict names the protocol preset of its runs and any steps, views or training FLOPs in which the two
methods differ by more than :data:`~sslbench.engine.effort.EFFORT_TOLERANCE` of the smaller. An
ordering claim may end "at equal steps", "at equal views" or "at equal FLOPs" (any case): it then
holds only when the ordering holds and the two methods' effort in that unit is within the
tolerance; otherwise its verdict is ``not at equal effort`` (neither held nor not held).

Figures are shown in the metric's display units as its evaluator declares them (a ``"fraction"`` in
%, differences in percentage points), looked up in a :class:`~sslbench.bench.tables.Catalog`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Iterable, Mapping, Sequence

from sslbench.bench.effort import UNIT_LABELS, Effort, equal_effort, gaps, gaps_text, presets_text
from sslbench.bench.toml_lines import Locates, check_keys, located

if TYPE_CHECKING:
    from sslbench.bench.suites import Suite
    from sslbench.bench.tables import Catalog

ORDER_CLAIM_KEYS = {"claim", "budget", "source", "margin"}
REFERENCE_CLAIM_KEYS = {"method", "metric", "value", "tolerance", "dataset", "budget", "source", "text"}
#: the units an ordering claim may be stated "at equal ..." in (case-insensitive): steps, views, flops
EQUAL_UNITS = ("steps", "views", "flops")
ORDER_CLAIM = re.compile(
    r"^\s*(?P<left>[\w.\-]+)\s*(?P<op>[<>])\s*(?P<right>[\w.\-]+)\s+on\s+(?P<metric>[\w.\-]+)"
    r"(?:\s+in\s+(?P<dataset>[\w.\-]+))?"
    r"(?:\s+(?i:at\s+equal\s+(?P<equal>" + "|".join(EQUAL_UNITS) + r")))?"
    r"(?:\s+(?i:under)\s+(?P<under>[\w.\-]+))?"
    r"(?:\s+in\s+(?P<dataset_after>[\w.\-]+))?\s*$"
)
#: a claim's verdicts: "not at equal effort" is an "at equal ..." claim whose methods' effort in that
#: unit differs by more than :data:`~sslbench.engine.effort.EFFORT_TOLERANCE` (or is unknown): not tested
CLAIM_STATUSES = ("held", "not held", "not at equal effort", "not run")


@dataclass(frozen=True)
class Claim:
    """An expectation about a suite's results.

    ``kind == "order"``: ``left op right`` on ``metric`` compares the seed means (``op`` is ">" or
    "<"; ``margin`` is the least difference that counts). ``kind == "reference"``: the mean of
    ``method`` lies within ``tolerance`` of ``value`` (both in the metric's stored units: fractions for
    accuracies). ``budget``, when set, is the only budget the claim is tested at. ``equal`` (``steps``,
    ``views`` or ``flops``, from a claim ending "at equal FLOPs"): the ordering counts only when the
    two methods' effort in that unit is within :data:`~sslbench.engine.effort.EFFORT_TOLERANCE`.
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
    equal: str = ""
    #: the protocol preset the claim is stated under ("... under paper"): runs under another are not a test of it
    protocol: str = ""

    @property
    def methods(self) -> tuple[str, ...]:
        return (self.left, self.right) if self.kind == "order" else (self.method,)


def _amount(sf: Locates, keys: Sequence[Any], value: Any, what: str) -> float:
    """A number in the metric's stored units, or a string ``"88.2%"`` (a percentage, divided by 100)."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    if isinstance(value, str) and value.strip().endswith("%"):
        try:
            return float(value.strip()[:-1]) / 100.0
        except ValueError:
            pass
    raise located(sf, keys, f"{what} must be a number in the metric's stored units (0.882 for 88.2% accuracy) or a string like \"88.2%\"")


def parse_claim(sf: Locates, at: list[Any], raw: Any, suite: "Suite") -> list[Claim]:
    """The claims one entry of a suite's ``claims`` list states (one per data set it applies to)."""
    def check_method(name: str, keys: Sequence[Any]) -> None:
        if name not in suite.methods:
            import difflib

            close = difflib.get_close_matches(name, suite.methods, n=1, cutoff=0.6)
            hint = f"; the suite lists {close[0]!r}: is one of the two misspelt?" if close else ""
            raise located(sf, keys, f"claim names method {name!r}, which is not in the suite's methods ({', '.join(suite.methods)}){hint}")

    def datasets_for(dataset: str | None, keys: Sequence[Any]) -> list[str]:
        if dataset is None:
            return list(suite.datasets)
        if dataset not in suite.datasets:
            raise located(sf, keys, f"claim names data set {dataset!r}, which is not in the suite's data sets ({', '.join(suite.datasets)})")
        return [dataset]

    def budget_of(table: Mapping[str, Any]) -> str | None:
        b = table.get("budget")
        if b is not None and b not in suite.budgets:
            raise located(sf, [*at, "budget"], f"claim is for budget {b!r}, which the suite does not have ({', '.join(suite.budgets)})")
        return b

    if isinstance(raw, str) or (isinstance(raw, dict) and "claim" in raw):
        table = raw if isinstance(raw, dict) else {}
        if table:
            check_keys(sf, at, table, ORDER_CLAIM_KEYS, "an ordering claim")
        text = table.get("claim", raw)
        m = ORDER_CLAIM.match(text) if isinstance(text, str) else None
        if not m:
            raise located(sf, at, f"cannot read claim {text!r}; write \"METHOD > METHOD on METRIC\" (or \"<\" when lower is better), "
                                  f"optionally \"... in DATASET\", \"... at equal {'|'.join(EQUAL_UNITS)}\" and \"... under PROTOCOL\" (uniform, paper)")
        if m["dataset"] and m["dataset_after"]:
            raise located(sf, at, f"claim {text!r} names two data sets; name one, with \"in DATASET\"")
        dataset, equal, under = m["dataset"] or m["dataset_after"], (m["equal"] or "").lower(), (m["under"] or "")
        check_method(m["left"], at)
        check_method(m["right"], at)
        margin = _amount(sf, [*at, "margin"], table["margin"], "margin") if "margin" in table else 0.0
        budget = budget_of(table)
        return [
            Claim(
                kind="order", metric=m["metric"], dataset=d, left=m["left"], op=m["op"], right=m["right"], margin=margin,
                budget=budget, source=str(table.get("source", "")), key=tuple(at), equal=equal, protocol=under,
                text=f"{m['left']} {m['op']} {m['right']} on {m['metric']}" + (f" in {d}" if len(suite.datasets) > 1 or dataset else "")
                + (f" at equal {UNIT_LABELS[equal]}" if equal else "") + (f" under {under}" if under else ""),
            )
            for d in datasets_for(dataset, at)
        ]
    if isinstance(raw, dict):
        check_keys(sf, at, raw, REFERENCE_CLAIM_KEYS, "a reference-value claim")
        for key in ("method", "metric", "value", "tolerance"):
            if key not in raw:
                raise located(sf, at, f"a reference-value claim needs method, metric, value and tolerance; `{key}` is missing")
        check_method(raw["method"], [*at, "method"])
        value = _amount(sf, [*at, "value"], raw["value"], "value")
        tolerance = _amount(sf, [*at, "tolerance"], raw["tolerance"], "tolerance")
        if tolerance < 0:
            raise located(sf, [*at, "tolerance"], "must be >= 0")
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
    raise located(sf, at, "a claim is a string \"a > b on METRIC\" or a table { method, metric, value, tolerance } / { claim = \"a > b on METRIC\", budget = ... }")


def _percent(metric: str, catalog: "Catalog | None") -> bool:
    """Whether ``metric`` is declared a fraction (shown in %)."""
    from sslbench.bench.tables import Catalog

    return (catalog or Catalog()).metric(metric).percent


def _show(metric: str, value: float, catalog: "Catalog | None" = None) -> str:
    """A value in the metric's display units (fractions in %)."""
    return f"{100 * value:.4g}%" if _percent(metric, catalog) else f"{value:.4g}"


def _show_diff(metric: str, value: float, catalog: "Catalog | None" = None) -> str:
    """A signed difference in display units (fractions in percentage points)."""
    return f"{100 * value:+.2f} pp" if _percent(metric, catalog) else f"{value:+.4g}"


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
    status: str  # one of CLAIM_STATUSES
    figures: str
    detail: str = ""
    beyond_spread: str = "n/a"
    numbers: dict[str, Any] = field(default_factory=dict)
    #: the protocol preset of the runs the claim was tested on ("uniform", "paper and uniform"); "" when not known
    preset: str = ""
    #: where the compared methods' training differs by more than the tolerance ("simvae trained 10.7x the steps of vae")
    effort: str = ""
    #: for an "at equal ..." claim, whether the effort was equal and the figures ("not at equal FLOPs: simvae ..., vae ...")
    effort_check: str = ""

    @property
    def verdict(self) -> str:
        """One line: the verdict, the preset and the effort a reader must know of, e.g. ``held under
        uniform; simvae trained 10.7x the steps of vae`` or ``not at equal FLOPs under paper: simvae
        3.1 TFLOP, vae 290 GFLOP (10.7x; more than 10% apart)``."""
        under = f" under {self.preset}" if self.preset and self.preset != self.claim.protocol else ""
        if self.status == "not at equal effort" and self.effort_check:
            head, _, tail = self.effort_check.partition(": ")
            return f"{head}{under}: {tail}"
        return f"{self.status}{under}" + (f"; {self.effort}" if self.effort else "")


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


def format_figures(metric: str, values: Sequence[float], catalog: "Catalog | None" = None) -> str:
    """Mean ± std over seeds in display units, and n; "no result" without values."""
    from sslbench.bench.tables import format_value

    return f"{format_value(metric, values, catalog)} (n={len(values)})" if values else "no result"


def _effort_verdict(claim: Claim, result: ClaimResult, held: bool, efforts: Mapping[tuple[str, str], Effort] | None) -> None:
    """Add the preset and the effort gaps of ``claim``'s methods to ``result``; for an "at equal ..."
    claim, the status becomes ``not at equal effort`` when the effort in its unit is not within the
    tolerance (or unknown), and ``not run`` when no effort was given at all."""
    if efforts is None:
        if claim.equal:
            result.status = "not run"
            result.detail = f"no training effort was given to test it at equal {UNIT_LABELS[claim.equal]} ({result.detail})"
        return
    found = {m: efforts.get((claim.dataset, m)) for m in claim.methods}
    result.preset = presets_text(p for e in found.values() if e is not None for p in e.presets) if any(e is not None for e in found.values()) else ""
    trained = {p for e in found.values() if e is not None for p in e.presets}
    if claim.protocol and trained and trained != {claim.protocol}:
        result.status = "not run"
        result.detail = f"claimed under {claim.protocol}; these runs trained under {presets_text(trained)} ({result.detail})"
        return
    if claim.kind != "order":
        return
    left, right = found[claim.left], found[claim.right]
    apart = gaps(claim.left, left, claim.right, right, [u for u in ("steps", "views", "flops") if u != claim.equal])
    result.effort = gaps_text(apart)
    result.numbers["effort"] = {m: e.as_dict() if e is not None else None for m, e in found.items()}
    if claim.equal:
        equal, result.effort_check = equal_effort(claim.equal, claim.left, left, claim.right, right)
        if not equal:
            result.status = "not at equal effort"
            result.detail = f"{result.effort_check}; the ordering alone {'holds' if held else 'does not hold'} ({result.detail})"
            return
        result.detail += f"; {result.effort_check}"
    if result.effort:
        result.detail += f"; effort differs: {result.effort}"


def evaluate_claims(
    claims: Iterable[Claim], results: Mapping[tuple[str, str], Mapping[str, Sequence[float]]], budget: str,
    catalog: "Catalog | None" = None, efforts: Mapping[tuple[str, str], Effort] | None = None,
) -> list[ClaimResult]:
    """Mark each claim held / not held / not at equal effort / not run against
    ``results[(dataset, method)][metric]`` (per-seed values). ``catalog`` holds the metric
    declarations (default: the installed evaluators'). ``efforts[(dataset, method)]``, the training
    effort of the runs behind the values (:class:`~sslbench.bench.effort.Effort`), names the protocol
    preset in each verdict, says where two methods' steps, views or training FLOPs differ by more
    than the tolerance, and decides "at equal ..." claims (without it those are not run)."""
    from sslbench.bench.tables import Catalog

    catalog = catalog or Catalog()
    out = []
    for claim in claims:
        vals = {m: list(results.get((claim.dataset, m), {}).get(claim.metric, [])) for m in claim.methods}
        missing = [m for m, v in vals.items() if not v]
        if claim.kind == "order":
            a, b = vals[claim.left], vals[claim.right]
            figures = f"{claim.left} {format_figures(claim.metric, a, catalog)} vs {claim.right} {format_figures(claim.metric, b, catalog)}"
        else:
            a = vals[claim.method]
            figures = (f"{claim.method} {format_figures(claim.metric, a, catalog)} vs reference "
                       f"{_show(claim.metric, claim.value, catalog)} ± {_show(claim.metric, claim.tolerance, catalog)}")
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
            result.detail = f"difference {_show_diff(claim.metric, diff, catalog)}"
            if claim.margin:
                result.detail += f" (needs more than {_show(claim.metric, claim.margin, catalog)})"
            if p is not None:
                result.detail += f", Welch p = {p:.3g}"
                result.beyond_spread = "yes" if p < 0.05 else "no"
        else:
            diff = Figures(a).mean - claim.value
            held = abs(diff) <= claim.tolerance
            result.numbers = {"difference": diff}
            result.detail = f"off by {_show_diff(claim.metric, diff, catalog)}"
        result.status = "held" if held else "not held"
        _effort_verdict(claim, result, held, efforts)
        if claim.budget and claim.budget != budget:
            result.status = "not run"
            result.detail = f"the claim is for the {claim.budget} budget; these figures are from the {budget} budget ({result.detail})"
        out.append(result)
    return out


__all__ = ["CLAIM_STATUSES", "Claim", "ClaimResult", "EQUAL_UNITS", "SPREAD_RULE", "evaluate_claims", "parse_claim", "welch"]

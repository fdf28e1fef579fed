"""What an evaluator's numbers mean, declared once by the evaluator, read by every table and report.

An evaluator lists a :class:`Metric` for each name its ``evaluate`` returns (or a pattern such as
``attr_*`` for names that depend on the data set) and a :class:`Picture` for each file it writes into
the run folder. Tables, exports, claims, plots and reports format and place numbers from these
declarations only: the core never guesses a unit from a name suffix, nor names a plugin's files.
"""

from __future__ import annotations

import fnmatch
import math
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

#: units the tables know how to show; any other string is shown as a plain number with that unit
UNITS = {
    "fraction": "a share in [0, 1]; tables show it as a percentage",
    "score": "a dimensionless number (a probe's accuracy or R², an agreement), shown as is",
    "r2": "a coefficient of determination (at most 1)",
    "correlation": "a correlation coefficient in [-1, 1]",
    "pixels": "a distance in pixels",
    "mse": "a mean squared error per pixel, images in [0, 1]",
    "fid": "a Fréchet Inception distance",
    "nats": "an information quantity in nats",
    "count": "a whole number (e.g. the chosen k or epoch)",
    "flag": "0 or 1",
}

#: the range a unit implies, (lowest, highest), None for no limit; a Metric's ``bounds`` overrides it
UNIT_BOUNDS: dict[str, tuple[float | None, float | None]] = {
    "fraction": (0.0, 1.0),
    "r2": (None, 1.0),
    "correlation": (-1.0, 1.0),
    "pixels": (0.0, None),
    "mse": (0.0, None),
    "count": (0.0, None),
    "flag": (0.0, 1.0),
}

#: how far outside its range a value may be and still count as inside (floating-point rounding)
BOUNDS_TOLERANCE = 1e-6

#: which tables and plots a metric appears in
ROLES = {
    "headline": "comparison tables, claims and plots",
    "secondary": "comparison tables and claims, not plots (e.g. top-5 next to top-1, per-attribute scores)",
    "detail": "exports and the run record only (the chosen k or epoch, flags saying how a number was made)",
}

#: report sections, in the order a report shows them; a plugin may name its own
SECTIONS = ("content", "style", "generation", "uncertainty", "position", "other")


@dataclass(frozen=True)
class Metric:
    """The declaration of one metric (or of every metric whose name matches a ``*`` pattern).

    ``unit`` is one of :data:`UNITS` (``"fraction"`` is stored in [0, 1] and shown as a percentage);
    ``higher_is_better`` is True, False, or None where neither is (a chosen k); ``role`` is one of
    :data:`ROLES`; ``section`` is the report section (see :data:`SECTIONS`); ``help`` says in one line
    what the number is. ``bounds`` is the (lowest, highest) value the metric can take, None for no
    limit; left out, it is the unit's (:data:`UNIT_BOUNDS`: a ``fraction`` is in [0, 1]); a value
    outside it is refused when it is stored (:func:`check_value`).
    """

    name: str
    unit: str = "score"
    higher_is_better: bool | None = True
    role: str = "headline"
    section: str = "content"
    help: str = ""
    bounds: tuple[float | None, float | None] | None = None

    def __post_init__(self) -> None:
        if self.role not in ROLES:
            raise ValueError(f"Metric {self.name!r}: role {self.role!r} is not one of {', '.join(ROLES)}")

    def matches(self, name: str) -> bool:
        return fnmatch.fnmatchcase(name, self.name) if "*" in self.name else name == self.name

    @property
    def value_range(self) -> tuple[float | None, float | None]:
        """The declared ``bounds``, else the unit's, else no limits."""
        return self.bounds if self.bounds is not None else UNIT_BOUNDS.get(self.unit, (None, None))

    @property
    def percent(self) -> bool:
        """Whether tables show the value times 100 (a ``fraction``)."""
        return self.unit == "fraction"


def undeclared(name: str) -> Metric:
    """What a metric no installed evaluator declares is taken to be: a plain number, no direction."""
    return Metric(name, unit="score", higher_is_better=None, role="headline", section="other", help="not declared by any installed evaluator")


def find_metric(declared: Sequence[Metric], name: str) -> Metric | None:
    """The declaration of ``name``: an exact name first, then the first matching pattern."""
    for metric in declared:
        if metric.name == name:
            return metric
    for metric in declared:
        if metric.matches(name):
            return metric
    return None


class MetricValueError(ValueError):
    """An evaluator returned a value that is not a finite real number, or is outside its metric's range."""


def _as_number(value: Any) -> float | None:
    """``value`` as a float if it is one real number (Python, NumPy scalar, 0-d or 1-element array or
    tensor), else None. Imports neither NumPy nor torch: a value of theirs has ``item``."""
    if isinstance(value, bool):
        return float(value)
    if isinstance(value, (int, float)):
        return float(value)
    size = getattr(value, "size", None)
    count = value.numel() if hasattr(value, "numel") else (size if isinstance(size, int) else None)
    if count == 1 and hasattr(value, "item"):
        item = value.item()
        if isinstance(item, (bool, int, float)):
            return float(item)
    return None


def _shown(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def check_value(metric: Metric | None, name: str, value: Any) -> float:
    """``value`` as a float, if it is one real, finite number inside ``metric``'s range (see
    :attr:`Metric.value_range`; ``metric`` None: only finite). Raises :class:`MetricValueError`
    naming the metric: for a string, None, a list, a multi-element tensor, NaN, inf, or a value out
    of range."""
    number = _as_number(value)
    if number is None:
        shape = getattr(value, "shape", None)
        kind = type(value).__name__ + (f" of shape {tuple(shape)}" if shape is not None else "")
        raise MetricValueError(
            f"metric {name!r}: the evaluator returned {_shown(value)} ({kind}), not a number; "
            "return one finite float per metric name (e.g. float(acc))"
        )
    if not math.isfinite(number):
        raise MetricValueError(f"metric {name!r} is {number}: the evaluator must return a finite number")
    low, high = metric.value_range if metric is not None else (None, None)
    if (low is not None and number < low - BOUNDS_TOLERANCE) or (high is not None and number > high + BOUNDS_TOLERANCE):
        shown = f"[{'-inf' if low is None else f'{low:g}'}, {'inf' if high is None else f'{high:g}'}]"
        hint = " (a fraction is stored in [0, 1], not as a percentage)" if metric is not None and metric.percent else ""
        raise MetricValueError(
            f"metric {name!r} = {number:g} is outside its declared range {shown}, unit {metric.unit!r}{hint}"  # type: ignore[union-attr]
        )
    return number


def check_values(declared: Sequence[Metric], values: Any) -> dict[str, float]:
    """Every value of an evaluator's result checked by :func:`check_value` against its declaration
    in ``declared`` (see :func:`find_metric`); ``values`` must be a mapping of metric name to number."""
    if not isinstance(values, Mapping):
        raise MetricValueError(
            f"the evaluator returned {_shown(values)} ({type(values).__name__}), not a dict of metric name to number"
        )
    checked = {}
    for name, value in values.items():
        if not isinstance(name, str) or not name:
            raise MetricValueError(f"metric name {name!r} is not a non-empty string")
        checked[name] = check_value(find_metric(declared, name), name, value)
    return checked


@dataclass(frozen=True)
class Picture:
    """A picture an evaluator writes into the run folder (``run_dir/file``), and where a report shows it."""

    file: str
    caption: str
    section: str = "Pictures"


__all__ = [
    "BOUNDS_TOLERANCE", "Metric", "MetricValueError", "Picture", "ROLES", "SECTIONS", "UNITS", "UNIT_BOUNDS",
    "check_value", "check_values", "find_metric", "undeclared",
]

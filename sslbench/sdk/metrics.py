"""What an evaluator's numbers mean, declared once by the evaluator, read by every table and report.

An evaluator lists a :class:`Metric` for each name its ``evaluate`` returns (or a pattern such as
``attr_*`` for names that depend on the data set) and a :class:`Picture` for each file it writes into
the run folder. Tables, exports, claims, plots and reports format and place numbers from these
declarations only: the core never guesses a unit from a name suffix, nor names a plugin's files.
"""

from __future__ import annotations

import fnmatch
from dataclasses import dataclass
from typing import Sequence

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
    what the number is.
    """

    name: str
    unit: str = "score"
    higher_is_better: bool | None = True
    role: str = "headline"
    section: str = "content"
    help: str = ""

    def __post_init__(self) -> None:
        if self.role not in ROLES:
            raise ValueError(f"Metric {self.name!r}: role {self.role!r} is not one of {', '.join(ROLES)}")

    def matches(self, name: str) -> bool:
        return fnmatch.fnmatchcase(name, self.name) if "*" in self.name else name == self.name

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


@dataclass(frozen=True)
class Picture:
    """A picture an evaluator writes into the run folder (``run_dir/file``), and where a report shows it."""

    file: str
    caption: str
    section: str = "Pictures"


__all__ = ["Metric", "Picture", "ROLES", "SECTIONS", "UNITS", "find_metric", "undeclared"]

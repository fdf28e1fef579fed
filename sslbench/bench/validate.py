"""The command line's option values checked before any work starts: output formats per command, run
statuses, and a ``--data-dir`` that the data set would ignore.

Each check raises :class:`OptionError` with the option, the value given and the values allowed; the
CLI prints it as ``error: ...`` and exits 2.
"""

from __future__ import annotations

from typing import Sequence

from sslbench.engine.plugins import Registry
from sslbench.engine.store import RUN_STATUSES

#: the output formats of each command
FORMATS: dict[str, tuple[str, ...]] = {
    "run": ("table", "md", "latex", "csv", "json"),
    "results": ("table", "md", "latex", "csv", "json"),
    "results --runs": ("table", "md", "latex", "csv", "json"),
    "report": ("md", "latex", "csv", "json"),
    "compare": ("table", "md", "json"),
}


class OptionError(ValueError):
    """A command-line option has a value the command does not accept; nothing was run."""


def _choices(allowed: Sequence[str]) -> str:
    return allowed[0] if len(allowed) == 1 else f"{', '.join(allowed[:-1])} or {allowed[-1]}"


def check_choice(option: str, value: str, allowed: Sequence[str], what: str = "") -> None:
    """Refuse ``value`` for ``option`` unless it is one of ``allowed``."""
    if value not in allowed:
        raise OptionError(f"{option} {value!r}{f' {what}' if what else ''}: choose {_choices(allowed)}")


def check_format(command: str, fmt: str) -> None:
    """Refuse an output format ``command`` (a key of :data:`FORMATS`) cannot write."""
    check_choice("--format", fmt, FORMATS[command], f"is not a format of `{command}`")


def check_status(status: str | None) -> None:
    """Refuse a ``--status`` filter that is not a run status (:data:`~sslbench.engine.store.RUN_STATUSES`)."""
    if status is not None:
        check_choice("--status", status, RUN_STATUSES, "is not a run status")


def check_results_options(fmt: str, runs: bool, status: str | None) -> None:
    """``results``' ``--format`` (for the summary, or for ``--runs``) and ``--status``."""
    check_format("results --runs" if runs else "results", fmt)
    check_status(status)


def ignored_data_dir(registry: Registry, dataset: str, data_dir: str | None) -> str | None:
    """A warning when ``--data-dir`` is given for a data set that reads no files, else None."""
    if not data_dir:
        return None
    cls = registry.lookup("datasets", dataset)
    if cls.needs_files:
        return None
    return f"--data-dir {data_dir} is ignored: data set {dataset!r} reads no files (it makes its data itself)"


__all__ = [
    "FORMATS", "OptionError", "check_choice", "check_format", "check_results_options", "check_status", "ignored_data_dir",
]

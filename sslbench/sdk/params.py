"""Declared, validated parameters of methods, data sets and evaluators (``-p OWNER.NAME=VALUE``).

Every plugin class declares ``params = {"name": Param(default, help, ...)}``; the engine resolves what
the user gave against that declaration before any work starts, so a typo or a bad value fails with a
message that names the owner, the parameter and what it accepts.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Mapping


class ParamError(ValueError):
    """A method, dataset or evaluator parameter was unknown or had a bad value."""


@dataclass(frozen=True)
class Param:
    """A declared, user-settable hyper-parameter (``sslbench run -p simvae.views=4``).

    ``minimum`` and ``maximum`` bound a number (inclusive); a float parameter refuses NaN and
    infinities unless ``finite=False`` says the plugin handles them.
    """

    default: Any
    help: str = ""
    choices: tuple[Any, ...] | None = None
    minimum: float | None = None
    maximum: float | None = None
    finite: bool = True

    def parse(self, owner: str, name: str, value: Any) -> Any:
        """Convert ``value`` (often a string from the CLI or TOML) to the default's type and check it."""
        kind = type(self.default)
        try:
            if isinstance(value, str) and kind is bool:
                lowered = value.strip().lower()
                if lowered not in {"true", "false", "1", "0", "yes", "no"}:
                    raise ValueError(value)
                parsed: Any = lowered in {"true", "1", "yes"}
            elif self.default is None:
                parsed = value
            elif kind is float and isinstance(value, (int, float, str)):
                parsed = float(value)
            elif kind is int and isinstance(value, (int, str)) and not isinstance(value, bool):
                parsed = int(value)
            elif kind is str:
                parsed = str(value)
            elif isinstance(value, kind):
                parsed = value
            else:
                raise ValueError(value)
        except ValueError:
            raise ParamError(
                f"{owner}.{name}={value!r} is not a valid {kind.__name__}; "
                f"default is {self.default!r}. {self.help}".strip()
            ) from None
        if self.finite and isinstance(parsed, float) and not math.isfinite(parsed):
            raise ParamError(f"{owner}.{name}={value!r}: must be a finite number (not NaN or infinite); default is {self.default!r}")
        if self.choices is not None and parsed not in self.choices:
            raise ParamError(f"{owner}.{name}={parsed!r}: choose one of {list(self.choices)}")
        if self.minimum is not None and parsed < self.minimum:
            raise ParamError(f"{owner}.{name}={parsed!r}: must be >= {self.minimum}")
        if self.maximum is not None and parsed > self.maximum:
            raise ParamError(f"{owner}.{name}={parsed!r}: must be <= {self.maximum}")
        return parsed


def resolve_params(owner: str, declared: Mapping[str, Param], given: Mapping[str, Any]) -> dict[str, Any]:
    """Defaults overlaid with ``given``, each value parsed and checked; unknown names are errors."""
    unknown = sorted(set(given) - set(declared))
    if unknown:
        known = ", ".join(sorted(declared)) or "none"
        raise ParamError(f"{owner} has no parameter {', '.join(unknown)}; its parameters: {known}")
    values = {name: p.default for name, p in declared.items()}
    for name, value in given.items():
        values[name] = declared[name].parse(owner, name, value)
    return values

"""Provenance: which code and which data made a stored result.

A run's id (see :mod:`sslbench.engine.cells`) names *what was asked* (method, parameters, data set,
seed, budget, protocol). Its provenance names *what answered*: the sslbench version, and for each
plugin involved (the method, the data set, the protocol's architecture; for metrics, the evaluator)
its distribution, version and a content hash of its module's source file, plus a fingerprint of the
data actually loaded. A stored result whose provenance differs from the current code's is **stale**:
it is never reused silently (:func:`stale_reasons` says why), unless the user asks for it
(``--reuse-stale``).

What is *not* covered: edits to modules a plugin imports besides its own module file, and edits to
sslbench's own core between two releases with the same version string (bump the version, or pass
``--force``). Both are stated in docs/architecture.md.
"""

from __future__ import annotations

import hashlib
import inspect
import sys
from functools import lru_cache
from pathlib import Path
from typing import Any, Mapping

from sslbench import __version__
from sslbench.engine.plugins import Registry

#: provenance keys compared for runs (``data`` is compared only once the data are loaded)
RUN_PARTS = ("sslbench", "method", "dataset", "architecture", "data")


@lru_cache(maxsize=256)
def _file_hash(path: str, mtime_ns: int, size: int) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()[:16]


def source_hash(cls: type) -> str | None:
    """A short sha256 of the source file that defines ``cls`` (None when it has none, e.g. a class
    made at run time in a test or a REPL)."""
    module = sys.modules.get(cls.__module__)
    try:
        path = inspect.getsourcefile(module) if module is not None else None
    except TypeError:
        path = None
    if not path or not Path(path).is_file():
        return None
    st = Path(path).stat()
    return _file_hash(str(path), st.st_mtime_ns, st.st_size)


def plugin_provenance(registry: Registry, kind: str, name: str) -> dict[str, Any]:
    """``{"name", "plugin", "distribution", "version", "module", "source"}`` of one registered class."""
    cls = registry.lookup(kind, name)
    plugin = registry.origin.get((kind, name))
    info = registry.plugins.get(plugin) if plugin else None
    return {
        "name": name,
        "plugin": plugin,
        "distribution": getattr(info, "distribution", None),
        "version": getattr(info, "version", None),
        "module": cls.__module__,
        "source": source_hash(cls),
    }


def code_provenance(registry: Registry, method: str, dataset: str, protocol: Mapping[str, Any]) -> dict[str, Any]:
    """The code part of a run's provenance (everything but the data fingerprint)."""
    out: dict[str, Any] = {
        "sslbench": __version__,
        "method": plugin_provenance(registry, "methods", method),
        "dataset": plugin_provenance(registry, "datasets", dataset),
    }
    arch = protocol.get("architecture")
    if arch and arch in registry.architectures:
        out["architecture"] = plugin_provenance(registry, "architectures", arch)
    return out


def evaluator_provenance(registry: Registry, evaluator: str) -> dict[str, Any]:
    """What made an evaluator's stored metrics: sslbench's version and the evaluator's module."""
    return {"sslbench": __version__, "evaluator": plugin_provenance(registry, "evaluators", evaluator)}


def _describe(part: str, value: Any) -> str:
    if isinstance(value, dict):
        bits = [value.get("distribution") or value.get("plugin") or "?"]
        if value.get("version"):
            bits.append(str(value["version"]))
        if value.get("source"):
            bits.append(f"source {value['source']}")
        return " ".join(bits)
    return str(value)


def stale_reasons(stored: Mapping[str, Any] | None, current: Mapping[str, Any], parts: tuple[str, ...] | None = None) -> list[str]:
    """Why a result recorded with ``stored`` provenance would not be made by ``current`` code/data;
    empty when it would. Only the ``parts`` present in ``current`` are compared (so the data part
    is checked only where the data were loaded). A result stored before provenance was recorded is
    stale with that reason."""
    if not stored:
        return ["stored before sslbench recorded the code and data behind a result"]
    reasons = []
    for part in parts or tuple(current):
        if part not in current:
            continue
        old, new = stored.get(part), current[part]
        if isinstance(old, dict) and isinstance(new, dict):
            changed = [k for k in ("name", "distribution", "version", "source") if old.get(k) != new.get(k)]
            if changed:
                label = f"{part} {new.get('name', '')}".strip()
                reasons.append(f"{label} changed ({_describe(part, old)} -> {_describe(part, new)})")
        elif old != new:
            what = "data fingerprint" if part == "data" else part
            reasons.append(f"{what} changed ({old} -> {new})")
    return reasons


__all__ = ["RUN_PARTS", "code_provenance", "evaluator_provenance", "plugin_provenance", "source_hash", "stale_reasons"]

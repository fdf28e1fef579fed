"""Provenance: which code and which data made a stored result.

A run's id (see :mod:`sslbench.engine.cells`) names *what was asked* (method, parameters, data set,
seed, budget, protocol). Its provenance names *what answered*: the sslbench version, and for each
plugin involved (the method, the data set, the protocol's architecture; for metrics, the evaluator)
its distribution, version and a content hash of its module's source file, plus a fingerprint of the
data actually loaded, and the ``device`` part: the device type and, on CUDA, the TF32 and
determinism settings (CPU and GPU runs give other numbers, so one is never reused for, nor pooled
with, the other; see :func:`sslbench.engine.precision.device_identity`). A result stored before the
device part existed is read as a CPU run (sslbench had not run on a GPU before): it stays fresh on
CPU and is stale on CUDA. A stored result whose provenance differs from the current code's is **stale**:
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

import torch

from sslbench import __version__
from sslbench.engine.plugins import Registry
from sslbench.engine.precision import Numerics, device_identity

#: provenance keys compared for runs (``data`` is compared only once the data are loaded)
RUN_PARTS = ("sslbench", "method", "dataset", "architecture", "device", "data")

#: what a stored provenance without a ``device`` part stands for
LEGACY_DEVICE: dict[str, Any] = {"type": "cpu"}


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


def device_part(device: str | None, precision: str = "fp32", compile: bool = False, deterministic: bool = False) -> dict[str, Any]:
    """The ``device`` part of a run's provenance for a cell's ``--device`` (None: the device this
    machine would pick) and numerics. Never raises for a device this machine lacks (a record made
    elsewhere is described, not validated)."""
    try:
        kind = torch.device(device.strip()).type if device else ("cuda" if torch.cuda.is_available() else "cpu")
    except (RuntimeError, ValueError):
        kind = str(device)
    return device_identity(kind, Numerics(precision, deterministic, compile))


def code_provenance(
    registry: Registry, method: str, dataset: str, protocol: Mapping[str, Any], device: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The code part of a run's provenance (everything but the data fingerprint), with ``device``
    (:func:`device_part`) when given."""
    out: dict[str, Any] = {
        "sslbench": __version__,
        "method": plugin_provenance(registry, "methods", method),
        "dataset": plugin_provenance(registry, "datasets", dataset),
    }
    arch = protocol.get("architecture")
    if arch and arch in registry.architectures:
        out["architecture"] = plugin_provenance(registry, "architectures", arch)
    if device is not None:
        out["device"] = dict(device)
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


def _describe_device(part: Mapping[str, Any]) -> str:
    flags = [k if v is True else f"{k}={v}" for k, v in part.items() if k != "type" and v is not False]
    return " ".join([str(part.get("type", "?")), *flags])


def stale_reasons(stored: Mapping[str, Any] | None, current: Mapping[str, Any], parts: tuple[str, ...] | None = None) -> list[str]:
    """Why a result recorded with ``stored`` provenance would not be made by ``current`` code/data;
    empty when it would. Only the ``parts`` present in ``current`` are compared (so the data part
    is checked only where the data were loaded). A result stored before provenance was recorded is
    stale with that reason; one stored without a ``device`` part counts as a CPU run."""
    if not stored:
        return ["stored before sslbench recorded the code and data behind a result"]
    reasons = []
    for part in parts or tuple(current):
        if part not in current:
            continue
        old, new = stored.get(part), current[part]
        if part == "device":
            old = old if isinstance(old, dict) else LEGACY_DEVICE
            if old != new:
                reasons.append(f"device changed ({_describe_device(old)} -> {_describe_device(new)})")
            continue
        if isinstance(old, dict) and isinstance(new, dict):
            changed = [k for k in ("name", "distribution", "version", "source") if old.get(k) != new.get(k)]
            if changed:
                label = f"{part} {new.get('name', '')}".strip()
                reasons.append(f"{label} changed ({_describe(part, old)} -> {_describe(part, new)})")
        elif old != new:
            what = "data fingerprint" if part == "data" else part
            reasons.append(f"{what} changed ({old} -> {new})")
    return reasons


__all__ = ["LEGACY_DEVICE", "RUN_PARTS", "code_provenance", "device_part", "evaluator_provenance", "plugin_provenance", "source_hash", "stale_reasons"]

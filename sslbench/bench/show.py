"""One stored run's whole record (``sslbench show RUN``): what it is (method, data set, seed, budget,
suite), how it went (status, error, the step it diverged at), the protocol and every parameter it
trained and was evaluated under, the environment and code that made it, where its files are
(checkpoint, run folder), a summary of its training curves and every stored metric with its unit;
and its training effort: steps, images and views seen, training FLOPs (in all and per step) and the
budget as given and the steps it became (a figure the run did not store is unknown: null, ``-``).

:func:`find_run` turns a run id, or a unique prefix of one, into the stored run; :func:`run_record`
gives the record as typed JSON values (numbers as numbers, None as null); :func:`record_tables`
renders it for the terminal.
"""

from __future__ import annotations

import difflib
import json
import math
import re
from datetime import datetime, timezone
from typing import Any, Iterable, Mapping

from rich.markup import escape
from rich.table import Table

from sslbench.sdk.files import UnsafePathError, safe_name
from sslbench.engine.store import RunRecord, Store
from sslbench.bench.effort import EFFORT_FIELDS, budget_text, count_text, flops_text, preset_of, run_effort
from sslbench.bench.tables import Catalog

#: the shortest prefix of a run id accepted (as ``sslbench compare`` accepts)
MIN_PREFIX = 4
#: what a run id (16 hexadecimal digits) or a prefix of one looks like
RUN_ID = re.compile(r"[0-9a-f]{1,64}")


class RunLookupError(ValueError):
    """A run reference that names no stored run, or several; the message says what to give instead."""


def _check_reference(ref: str) -> str:
    """``ref`` as a lower-case run-id prefix, refused (:func:`~sslbench.sdk.files.safe_name`) before it can reach a path."""
    try:
        safe_name(ref, "run id")
    except UnsafePathError as exc:
        raise RunLookupError(str(exc)) from None
    if not RUN_ID.fullmatch(ref.lower()):
        raise RunLookupError(f"run id {ref!r}: a run id is hexadecimal (0-9, a-f), e.g. 4b7a340af6d2d2c7; "
                             "`sslbench results --runs` lists the stored ones")
    if len(ref) < MIN_PREFIX:
        raise RunLookupError(f"run id {ref!r}: give at least {MIN_PREFIX} characters of the id (`sslbench results --runs` lists them)")
    return ref.lower()


def find_run(store: Store, ref: str) -> RunRecord:
    """The stored run whose id is ``ref`` or starts with it. Raises :class:`RunLookupError` for an
    id that is malformed, matches several runs (naming them) or none (naming the closest ids)."""
    prefix = _check_reference(ref)
    exact = store.get_run(prefix)
    if exact is not None:
        return exact
    runs = store.runs()
    found = [r for r in runs if r.id.startswith(prefix)]
    if len(found) == 1:
        return store.get_run(found[0].id) or found[0]
    if found:
        shown = ", ".join(f"{r.id} ({r.method} on {r.dataset}, seed {r.seed})" for r in found[:5])
        raise RunLookupError(f"{ref!r} matches {len(found)} runs: {shown}{' ...' if len(found) > 5 else ''}; give more of the run id")
    ids = [r.id for r in runs]
    close = difflib.get_close_matches(prefix, [i[: len(prefix)] for i in ids], n=3, cutoff=0.5)
    near = [i for c in close for i in ids if i.startswith(c)][:3]
    hint = f" Closest: {', '.join(near)}." if near else ""
    raise RunLookupError(f"no stored run with id {ref!r} in {store.path}.{hint} "
                         "`sslbench results --runs` lists the stored runs (add --home DIR for another results folder).")


def _when(stamp: float | None) -> str | None:
    return datetime.fromtimestamp(stamp, tz=timezone.utc).isoformat(timespec="seconds") if stamp else None


def _finite(value: Any) -> Any:
    """``value`` with non-finite floats as None (JSON has no NaN or infinity)."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, list):
        return [_finite(v) for v in value]
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    return value


def history_summary(history: Mapping[str, list[float]]) -> dict[str, Any]:
    """Per loss term: its points, first, last, lowest and highest value; and the epochs the curve covers."""
    epochs = history.get("_epoch") or []
    terms = {}
    for term, curve in history.items():
        values = [v for v in curve if isinstance(v, (int, float)) and math.isfinite(v)]
        if term.startswith("_") or not values:
            continue
        terms[term] = {"points": len(curve), "first": curve[0], "last": curve[-1], "min": min(values), "max": max(values)}
    return {"points": max((len(c) for c in history.values()), default=0), "epochs": epochs[-1] if epochs else None, "terms": terms}


def run_record(store: Store, run: RunRecord, catalog: Catalog | None = None) -> dict[str, Any]:
    """Everything stored about ``run``, as typed JSON values."""
    catalog = catalog or Catalog()
    config = run.config
    folder = store.run_folder(run.id)
    checkpoint = store.checkpoint_path(run.id)
    metrics = []
    for m in store.metrics(run.id):
        declared = catalog.metric(m["name"], m["evaluator"])
        metrics.append({
            "evaluator": m["evaluator"], "name": m["name"], "value": m["value"], "unit": declared.unit,
            "higher_is_better": declared.higher_is_better, "role": declared.role, "selection": m["selection"],
            "options": json.loads(m["options"] or "{}"), "note": m["note"], "stored": _when(m["created"]),
        })
    record = {
        "id": run.id, "method": run.method, "dataset": run.dataset, "seed": run.seed, "epochs": run.epochs, "suite": run.suite,
        "status": run.status, "error": run.error, "failed_step": run.failed_step,
        "superseded_by": run.superseded_by, "replacement": run.replacement,
        "protocol": {"hash": run.protocol_hash, **run.protocol, "preset": preset_of(run.protocol)},
        "parameters": {
            "method": config.get("method_params", {}), "dataset": config.get("dataset_params", {}),
            "evaluators": {name: options for name, options in config.get("evaluators", [])},
            **{k: config.get(k) for k in ("precision", "selection", "batch_size", "device", "data_dir") if k in config},
        },
        "environment": run.environment, "provenance": run.provenance,
        "timing": {
            "started": _when(run.started), "finished": _when(run.finished), "train_seconds": run.train_seconds,
            "images_per_s": run.images_per_s, "augment_share": run.augment_share, "peak_memory_mb": run.peak_memory_mb,
        },
        "effort": {**run.effort, **run_effort(run.effort)},  # every figure present: null when the run did not store it
        "files": {
            "folder": str(folder), "checkpoint": str(checkpoint), "checkpoint_exists": checkpoint.is_file(),
            "checkpoint_bytes": checkpoint.stat().st_size if checkpoint.is_file() else None,
            "contents": sorted(p.name for p in folder.iterdir()) if folder.is_dir() else [],
        },
        "history": {**history_summary(run.history), "curves": run.history},
        "metrics": metrics,
    }
    return _finite(record)


def _text(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.6g}"
    if isinstance(value, (list, dict)):
        return json.dumps(value)
    return str(value)


def _flat(table: Mapping[str, Any], prefix: str = "") -> Iterable[tuple[str, Any]]:
    for key, value in table.items():
        if isinstance(value, dict) and value:
            yield from _flat(value, f"{prefix}{key}.")
        else:
            yield f"{prefix}{key}", value


def _section(title: str, pairs: Iterable[tuple[str, Any]]) -> Table:
    table = Table(title=title, title_justify="left", show_header=False, box=None, padding=(0, 2))
    table.add_column("key", style="bold", no_wrap=True)
    table.add_column("value", overflow="fold")
    for key, value in pairs:
        table.add_row(escape(key), escape(_text(value)))
    return table


def effort_pairs(effort: Mapping[str, Any], epochs: int | None = None) -> list[tuple[str, Any]]:
    """The ``training effort`` section: the budget, then each figure in human units with its exact
    value (``-`` when the run did not store it), then what else the engine stored about it."""
    figures = run_effort(effort)
    human = {"steps": count_text, "images_seen": count_text, "views_seen": count_text, "train_flops": flops_text, "flops_per_step": flops_text}
    labels = {"images_seen": "images seen", "views_seen": "views seen", "train_flops": "training FLOPs", "flops_per_step": "FLOPs per step"}
    pairs: list[tuple[str, Any]] = [("budget", budget_text(figures["budget"], epochs) + ("" if figures["budget"] else " (no budget stored)"))]
    for key in EFFORT_FIELDS:
        value = figures[key]
        exact = f"{value:,}" if isinstance(value, int) else (f"{value:.6g}" if value is not None else "")
        shown = human[key](value)
        if value is None:
            shown = "- (not stored: the run predates this figure)"
        elif shown.replace(",", "") != exact.replace(",", ""):
            shown = f"{shown} ({exact})"
        pairs.append((labels.get(key, key), shown))
    pairs += [(k, v) for k, v in _flat({k: v for k, v in effort.items() if k not in (*EFFORT_FIELDS, "budget")})]
    return pairs


def record_tables(record: Mapping[str, Any]) -> list[Table]:
    """The record of :func:`run_record` as terminal sections: the run, protocol, parameters,
    environment and code, files, training history and metrics."""
    status = record["status"] + (f" at step {record['failed_step']}" if record["failed_step"] else "")
    head = [("id", record["id"]), ("method", record["method"]), ("dataset", record["dataset"]), ("seed", record["seed"]),
            ("epochs", record["epochs"]), ("suite", record["suite"]), ("status", status)]
    head += [(k, record[k]) for k in ("error", "superseded_by", "replacement") if record[k]]
    head += list(_flat(record["timing"]))
    history = record["history"]
    curves = [(f"{term}", f"first {_text(s['first'])}, last {_text(s['last'])}, min {_text(s['min'])}, max {_text(s['max'])}")
              for term, s in history["terms"].items()]
    metrics = Table(title="metrics", title_justify="left")
    for col in ("evaluator", "metric", "value", "unit", "selection", "options", "note"):
        metrics.add_column(col, overflow="fold", justify="right" if col == "value" else "left")
    for m in record["metrics"]:
        metrics.add_row(*(escape(_text(v)) for v in (m["evaluator"], m["name"], m["value"], m["unit"], m["selection"], m["options"], m["note"])))
    return [
        _section(f"run {record['id']}", head),
        _section("training effort", effort_pairs(record.get("effort") or {}, record.get("epochs"))),
        _section(f"protocol {record['protocol']['hash']}", _flat({k: v for k, v in record["protocol"].items() if k != "hash"})),
        _section("parameters", _flat(record["parameters"])),
        _section("environment and code", _flat({"environment": record["environment"], "provenance": record["provenance"]})),
        _section("files", _flat(record["files"])),
        _section(f"training history ({history['points']} points, to epoch {_text(history['epochs'])})", curves or [("terms", "none stored")]),
        metrics,
    ]


__all__ = ["MIN_PREFIX", "RunLookupError", "effort_pairs", "find_run", "history_summary", "record_tables", "run_record"]

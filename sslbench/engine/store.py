"""The SQLite results store (stdlib ``sqlite3``).

One row per run (one cell: method, dataset, seed, protocol, budget), keyed by the hash of everything
that affects training, so a finished run is found again and reused. Metrics live in their own table,
keyed by run, evaluator and the hash of the evaluator's options, so adding an evaluator later only
evaluates, never retrains. Every write is one transaction (WAL journal): a killed process loses no
finished result.

Location: ``--home DIR`` or ``$SSLBENCH_HOME``, else ``~/.local/share/sslbench``; the database is
``results.sqlite`` there and each run's files (checkpoint, pictures) are in ``runs/<run id>/``.
"""

from __future__ import annotations

import hashlib
import json
import os
import sqlite3
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

SCHEMA = """
CREATE TABLE IF NOT EXISTS runs (
    id TEXT PRIMARY KEY,
    method TEXT NOT NULL,
    dataset TEXT NOT NULL,
    seed INTEGER NOT NULL,
    epochs INTEGER NOT NULL,
    protocol_hash TEXT NOT NULL,
    protocol TEXT NOT NULL,
    config TEXT NOT NULL,
    status TEXT NOT NULL,
    error TEXT,
    failed_step INTEGER,
    started REAL,
    finished REAL,
    train_seconds REAL,
    images_per_s REAL,
    augment_share REAL,
    peak_memory_mb REAL,
    history TEXT,
    environment TEXT,
    suite TEXT
);
CREATE INDEX IF NOT EXISTS runs_by_method ON runs(method, dataset);
CREATE TABLE IF NOT EXISTS metrics (
    run_id TEXT NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
    evaluator TEXT NOT NULL,
    options_hash TEXT NOT NULL,
    options TEXT NOT NULL,
    selection TEXT NOT NULL,
    name TEXT NOT NULL,
    value REAL,
    note TEXT,
    created REAL NOT NULL,
    PRIMARY KEY (run_id, evaluator, options_hash, selection, name)
);
"""


#: file name of a run's trained weights inside its folder
CHECKPOINT_NAME = "model.pt"


def default_home() -> Path:
    env = os.environ.get("SSLBENCH_HOME")
    if env:
        return Path(env).expanduser()
    xdg = os.environ.get("XDG_DATA_HOME")
    return (Path(xdg) if xdg else Path.home() / ".local" / "share") / "sslbench"


@dataclass
class RunRecord:
    id: str
    method: str
    dataset: str
    seed: int
    epochs: int
    protocol_hash: str
    protocol: dict[str, Any]
    config: dict[str, Any]
    status: str
    error: str | None
    failed_step: int | None
    started: float | None
    finished: float | None
    train_seconds: float | None
    images_per_s: float | None
    augment_share: float | None
    peak_memory_mb: float | None
    history: dict[str, list[float]]
    environment: dict[str, Any]
    suite: str | None

    @classmethod
    def from_row(cls, row: sqlite3.Row) -> "RunRecord":
        d = dict(row)
        for key in ("protocol", "config", "history", "environment"):
            d[key] = json.loads(d[key]) if d[key] else {}
        return cls(**d)


class Store:
    """The results database and the run folders beside it."""

    def __init__(self, home: Path | str | None = None) -> None:
        self.home = Path(home).expanduser() if home else default_home()
        self.home.mkdir(parents=True, exist_ok=True)
        self.path = self.home / "results.sqlite"
        self._db = sqlite3.connect(self.path, timeout=30.0, isolation_level=None)
        self._db.row_factory = sqlite3.Row
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA foreign_keys=ON")
        self._db.executescript(SCHEMA)

    def close(self) -> None:
        self._db.close()

    @contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        self._db.execute("BEGIN IMMEDIATE")
        try:
            yield self._db
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        self._db.execute("COMMIT")

    # -- the folder layout: HOME/results.sqlite, HOME/runs/<run id>/ ---------------------------
    def run_folder(self, run_id: str) -> Path:
        """Where a run's files (checkpoint, pictures, cached decoder) live; not created."""
        return self.home / "runs" / run_id

    def run_dir(self, run_id: str) -> Path:
        """:meth:`run_folder`, created."""
        path = self.run_folder(run_id)
        path.mkdir(parents=True, exist_ok=True)
        return path

    def checkpoint_path(self, run_id: str) -> Path:
        """The trained model's weights (``torch.save`` of its state dict, loaded with weights_only)."""
        return self.run_folder(run_id) / CHECKPOINT_NAME

    @staticmethod
    def options_hash(options: dict[str, Any]) -> str:
        """The key under which an evaluator's metrics for these options are stored."""
        return hashlib.sha256(json.dumps(options, sort_keys=True, default=list).encode()).hexdigest()[:16]

    # -- runs ---------------------------------------------------------------------------------
    def get_run(self, run_id: str) -> RunRecord | None:
        row = self._db.execute("SELECT * FROM runs WHERE id = ?", (run_id,)).fetchone()
        return RunRecord.from_row(row) if row else None

    def start_run(self, run_id: str, cell: dict[str, Any], protocol: dict[str, Any], protocol_hash: str, environment: dict[str, Any], suite: str | None) -> None:
        """Record a run as running (replacing an unfinished or forced earlier attempt and its metrics)."""
        with self._tx() as db:
            db.execute("DELETE FROM metrics WHERE run_id = ?", (run_id,))
            db.execute("DELETE FROM runs WHERE id = ?", (run_id,))
            db.execute(
                "INSERT INTO runs (id, method, dataset, seed, epochs, protocol_hash, protocol, config, status,"
                " started, environment, suite) VALUES (?,?,?,?,?,?,?,?,?,?,?,?)",
                (
                    run_id, cell["method"], cell["dataset"], cell["seed"], cell["epochs"], protocol_hash,
                    json.dumps(protocol, sort_keys=True), json.dumps(cell, sort_keys=True), "running",
                    time.time(), json.dumps(environment, sort_keys=True), suite,
                ),
            )

    def finish_run(self, run_id: str, *, status: str, error: str | None = None, failed_step: int | None = None, train_seconds: float | None = None, images_per_s: float | None = None, augment_share: float | None = None, peak_memory_mb: float | None = None, history: dict[str, list[float]] | None = None) -> None:
        with self._tx() as db:
            db.execute(
                "UPDATE runs SET status=?, error=?, failed_step=?, finished=?, train_seconds=?, images_per_s=?,"
                " augment_share=?, peak_memory_mb=?, history=? WHERE id=?",
                (status, error, failed_step, time.time(), train_seconds, images_per_s, augment_share,
                 peak_memory_mb, json.dumps(history or {}), run_id),
            )

    def set_suite(self, run_id: str, suite: str) -> None:
        with self._tx() as db:
            db.execute("UPDATE runs SET suite = COALESCE(suite, ?) WHERE id = ?", (suite, run_id))

    def runs(self, method: str | None = None, dataset: str | None = None, status: str | None = None, ids: list[str] | None = None) -> list[RunRecord]:
        clauses, args = [], []
        for col, val in (("method", method), ("dataset", dataset), ("status", status)):
            if val:
                clauses.append(f"{col} = ?")
                args.append(val)
        if ids is not None:
            if not ids:
                return []
            clauses.append(f"id IN ({','.join('?' * len(ids))})")
            args.extend(ids)
        where = f"WHERE {' AND '.join(clauses)}" if clauses else ""
        rows = self._db.execute(f"SELECT * FROM runs {where} ORDER BY started", args).fetchall()
        return [RunRecord.from_row(r) for r in rows]

    # -- metrics ------------------------------------------------------------------------------
    def has_metrics(self, run_id: str, evaluator: str, options: dict[str, Any], selection: str) -> bool:
        """Whether ``evaluator`` with ``options`` under the ``selection`` rule is stored for the run."""
        row = self._db.execute(
            "SELECT 1 FROM metrics WHERE run_id=? AND evaluator=? AND options_hash=? AND selection=? LIMIT 1",
            (run_id, evaluator, self.options_hash(options), selection),
        ).fetchone()
        return row is not None

    def put_metrics(self, run_id: str, evaluator: str, options: dict[str, Any], selection: str, values: dict[str, float], note: str | None = None) -> None:
        """Store one evaluator's metrics for a run atomically. A skipped evaluator stores its reason
        as a ``note`` under the metric name ``skipped`` with a NULL value."""
        options_hash = self.options_hash(options)
        now = time.time()
        with self._tx() as db:
            db.execute(
                "DELETE FROM metrics WHERE run_id=? AND evaluator=? AND options_hash=? AND selection=?",
                (run_id, evaluator, options_hash, selection),
            )
            rows = [(run_id, evaluator, options_hash, json.dumps(options, sort_keys=True), selection, k, float(v), note, now) for k, v in values.items()]
            if not rows:
                rows = [(run_id, evaluator, options_hash, json.dumps(options, sort_keys=True), selection, "skipped", None, note, now)]
            db.executemany("INSERT INTO metrics VALUES (?,?,?,?,?,?,?,?,?)", rows)

    def metrics(self, run_id: str) -> list[dict[str, Any]]:
        rows = self._db.execute("SELECT * FROM metrics WHERE run_id = ? ORDER BY evaluator, name", (run_id,)).fetchall()
        return [dict(r) for r in rows]

    def metrics_for(self, run_id: str, evaluators: list[tuple[str, dict[str, Any]]], selection: str) -> list[dict[str, Any]]:
        """The run's stored metrics of exactly these (evaluator, options) under ``selection``."""
        wanted = {(name, self.options_hash(options)) for name, options in evaluators}
        return [m for m in self.metrics(run_id) if (m["evaluator"], m["options_hash"]) in wanted and m["selection"] == selection]

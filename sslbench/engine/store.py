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
from pathlib import Path
from typing import Any, Iterator

from sslbench.engine.database import StoreError as StoreError, open_database  # StoreError: re-exported
from sslbench.engine.records import (  # re-exported: the store's record types and run-owner rules
    HEARTBEAT_TIMEOUT_S as HEARTBEAT_TIMEOUT_S, RESULT_STATUSES as RESULT_STATUSES, RUN_STATUSES as RUN_STATUSES,
    RunClaimed as RunClaimed, RunRecord as RunRecord, owner_alive as owner_alive, owner_id as owner_id,
)

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
CREATE TABLE IF NOT EXISTS attempts (
    run_id TEXT PRIMARY KEY,
    owner TEXT,
    started REAL,
    heartbeat REAL,
    folder TEXT NOT NULL,
    config TEXT NOT NULL,
    protocol TEXT NOT NULL,
    protocol_hash TEXT NOT NULL,
    environment TEXT,
    provenance TEXT,
    suite TEXT
);
"""

#: columns added after the first release: (table, column, type); added to older stores on open
ADDED_COLUMNS = (
    ("runs", "provenance", "TEXT"),
    ("runs", "owner", "TEXT"),
    ("runs", "heartbeat", "REAL"),
    ("runs", "folder", "TEXT"),
    ("runs", "superseded_by", "TEXT"),
    ("metrics", "provenance", "TEXT"),
    ("runs", "effort", "TEXT"),
)

#: how many more times a write waits for a locked database after SQLite's own 30 s busy timeout
LOCK_RETRIES = 5

#: file name of a run's trained weights inside its folder
CHECKPOINT_NAME = "model.pt"


def default_home() -> Path:
    env = os.environ.get("SSLBENCH_HOME")
    if env:
        return Path(env).expanduser()
    xdg = os.environ.get("XDG_DATA_HOME")
    return (Path(xdg) if xdg else Path.home() / ".local" / "share") / "sslbench"


class Store:
    """The results database and the run folders beside it."""

    def __init__(self, home: Path | str | None = None, readonly: bool = False) -> None:
        """Open (or create) the store at ``home``. ``readonly``: for commands that only read; the
        file is never written, a missing one reads as empty (:mod:`sslbench.engine.database`). A
        faulty home or file raises :class:`StoreError` saying what to do."""
        self.home = Path(home).expanduser() if home else default_home()
        self.path = self.home / "results.sqlite"
        self.readonly = readonly
        self._db = open_database(self.home, self.path, SCHEMA, migrate, readonly=readonly)

    def close(self) -> None:
        self._db.close()

    @contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        """One write transaction. SQLite's busy timeout (30 s) waits for another process's write;
        a database still locked after it is retried :data:`LOCK_RETRIES` more times, then named."""
        for attempt in range(LOCK_RETRIES + 1):
            try:
                self._db.execute("BEGIN IMMEDIATE")
                break
            except sqlite3.OperationalError as exc:
                if "locked" not in str(exc).lower() and "busy" not in str(exc).lower():
                    raise
                if attempt == LOCK_RETRIES:
                    raise StoreError(f"{self.path} stayed locked by another process for minutes: {exc}; "
                                     "wait for it to finish or pass --home DIR") from None
                time.sleep(0.5 * (attempt + 1))
        try:
            yield self._db
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        self._db.execute("COMMIT")

    # -- the folder layout: HOME/results.sqlite, HOME/runs/<folder>/ ----------------------------
    def run_folder(self, run_id: str) -> Path:
        """Where a run's files (checkpoint, pictures, cached decoder) live; not created. A run's
        folder is named by its id, or by a fresh name when it replaced an earlier result of the same
        id (the older result keeps its own folder)."""
        row = self._db.execute("SELECT folder FROM runs WHERE id = ?", (run_id,)).fetchone()
        return self.home / "runs" / ((row["folder"] if row else None) or run_id)

    def run_dir(self, run_id: str) -> Path:
        """:meth:`run_folder`, created."""
        path = self.run_folder(run_id)
        path.mkdir(parents=True, exist_ok=True)
        return path

    def checkpoint_path(self, run_id: str) -> Path:
        """The trained model's weights (``torch.save`` of its state dict, loaded with weights_only)."""
        return self.run_folder(run_id) / CHECKPOINT_NAME

    def new_folder(self, run_id: str) -> str:
        """A folder name for a new training attempt of ``run_id``: its id when that folder is unused,
        else ``<id>-<k>``, so files of an earlier attempt (a cached decoder, pictures) never mix with
        the new one's."""
        k = 0
        name = run_id
        while (self.home / "runs" / name).exists() or self._folder_taken(name):
            k += 1
            name = f"{run_id}-{k}"
        return name

    def _folder_taken(self, name: str) -> bool:
        return self._db.execute("SELECT 1 FROM runs WHERE folder = ? UNION SELECT 1 FROM attempts WHERE folder = ?", (name, name)).fetchone() is not None

    @staticmethod
    def options_hash(options: dict[str, Any]) -> str:
        """The key under which an evaluator's metrics for these options are stored."""
        return hashlib.sha256(json.dumps(options, sort_keys=True, default=list).encode()).hexdigest()[:16]

    # -- runs ---------------------------------------------------------------------------------
    def get_run(self, run_id: str) -> RunRecord | None:
        """The current record of ``run_id`` (never a superseded one), with a retrain under way noted
        in :attr:`RunRecord.replacement`."""
        row = self._db.execute("SELECT * FROM runs WHERE id = ?", (run_id,)).fetchone()
        if not row:
            return None
        record = RunRecord.from_row(row)
        attempt = self._db.execute("SELECT owner, started, heartbeat FROM attempts WHERE run_id = ?", (run_id,)).fetchone()
        if attempt:
            record.replacement = {"owner": attempt["owner"], "started": attempt["started"],
                                  "alive": owner_alive(attempt["owner"], attempt["heartbeat"] or attempt["started"])}
        return record

    def start_run(self, run_id: str, cell: dict[str, Any], protocol: dict[str, Any], protocol_hash: str, environment: dict[str, Any], suite: str | None, provenance: dict[str, Any] | None = None, folder: str | None = None, replaces: bool = True) -> str:
        """Record that this process trains ``run_id`` into ``folder`` (default :meth:`new_folder`);
        returns the folder name. When the run holds a result (done or diverged) it is kept as it is
        until :meth:`finish_run` stores the replacement (then it is kept as ``superseded``); an
        unfinished, crashed or interrupted record is replaced at once. Raises :class:`RunClaimed`
        when a live process trains the run, and, with ``replaces`` False (the caller found no result
        to replace), when another process stored a result since the caller looked."""
        folder = folder or self.new_folder(run_id)
        now = time.time()
        values = (json.dumps(cell, sort_keys=True), json.dumps(protocol, sort_keys=True), protocol_hash,
                  json.dumps(environment, sort_keys=True), json.dumps(provenance or {}, sort_keys=True), suite)
        with self._tx() as db:
            row = db.execute("SELECT status, owner, heartbeat, started FROM runs WHERE id = ?", (run_id,)).fetchone()
            attempt = db.execute("SELECT owner, heartbeat, started FROM attempts WHERE run_id = ?", (run_id,)).fetchone()
            for claim in (row if row is not None and row["status"] == "running" else None, attempt):
                if claim is not None and claim["owner"] != owner_id() and owner_alive(claim["owner"], claim["heartbeat"] or claim["started"]):
                    raise RunClaimed(run_id, claim["owner"])
            keep = row is not None and (row["status"] in RESULT_STATUSES or self._has_values(db, run_id))
            if keep and not replaces and row["status"] in RESULT_STATUSES:
                raise RunClaimed(run_id, "another process, which has stored it since")
            db.execute("DELETE FROM attempts WHERE run_id = ?", (run_id,))
            if keep:
                db.execute(
                    "INSERT INTO attempts (run_id, owner, started, heartbeat, folder, config, protocol, protocol_hash,"
                    " environment, provenance, suite) VALUES (?,?,?,?,?,?,?,?,?,?,?)",
                    (run_id, owner_id(), now, now, folder, *values),
                )
                return folder
            db.execute("DELETE FROM metrics WHERE run_id = ?", (run_id,))
            db.execute("DELETE FROM runs WHERE id = ?", (run_id,))
            db.execute(
                "INSERT INTO runs (id, method, dataset, seed, epochs, protocol_hash, protocol, config, status,"
                " started, environment, suite, provenance, owner, heartbeat, folder) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
                (run_id, cell["method"], cell["dataset"], cell["seed"], cell["epochs"], protocol_hash, values[1], values[0],
                 "running", now, values[3], suite, values[4], owner_id(), now, folder),
            )
        return folder

    @staticmethod
    def _has_values(db: sqlite3.Connection, run_id: str) -> bool:
        return db.execute("SELECT 1 FROM metrics WHERE run_id = ? AND value IS NOT NULL LIMIT 1", (run_id,)).fetchone() is not None

    def attempt_folder(self, run_id: str) -> str | None:
        """The folder of an unfinished retrain of ``run_id`` whose owner is gone (to resume it), else None."""
        row = self._db.execute("SELECT owner, heartbeat, started, folder FROM attempts WHERE run_id = ?", (run_id,)).fetchone()
        if row is None or owner_alive(row["owner"], row["heartbeat"] or row["started"]):
            return None
        return row["folder"]

    def heartbeat(self, run_id: str) -> None:
        """Note that the owner of ``run_id``'s training is alive (see :func:`owner_alive`)."""
        now = time.time()
        with self._tx() as db:
            db.execute("UPDATE runs SET heartbeat = ? WHERE id = ? AND status = 'running'", (now, run_id))
            db.execute("UPDATE attempts SET heartbeat = ? WHERE run_id = ?", (now, run_id))

    def finish_run(self, run_id: str, *, status: str, error: str | None = None, failed_step: int | None = None, train_seconds: float | None = None, images_per_s: float | None = None, augment_share: float | None = None, peak_memory_mb: float | None = None, history: dict[str, list[float]] | None = None, effort: dict[str, Any] | None = None, environment: dict[str, Any] | None = None) -> None:
        """Store how a training attempt ended (``effort``: steps, images, checkpoints, segments...;
        ``environment``, when given, replaces the one :meth:`start_run` noted: a worker's). When it replaced an earlier result, that result is
        kept under ``<id>-s<k>`` as ``superseded`` (with its metrics and folder), in the same
        transaction that stores the new one. An interrupted replacement is dropped: the earlier
        result stays current."""
        finish = (status, error, failed_step, time.time(), train_seconds, images_per_s, augment_share, peak_memory_mb, json.dumps(history or {}))
        with self._tx() as db:
            if environment is not None:
                env = json.dumps(environment, sort_keys=True)
                db.execute("UPDATE runs SET environment = ? WHERE id = ? AND status = 'running'", (env, run_id))
                db.execute("UPDATE attempts SET environment = ? WHERE run_id = ?", (env, run_id))
            attempt = db.execute("SELECT * FROM attempts WHERE run_id = ?", (run_id,)).fetchone()
            if attempt is None:
                db.execute(
                    "UPDATE runs SET status=?, error=?, failed_step=?, finished=?, train_seconds=?, images_per_s=?,"
                    " augment_share=?, peak_memory_mb=?, history=?, effort=?, owner=CASE WHEN ?='interrupted' THEN NULL ELSE owner END WHERE id=?",
                    (*finish, json.dumps(effort or {}), status, run_id),
                )
                return
            if status == "interrupted":  # the earlier result stays current; the attempt may resume
                db.execute("UPDATE attempts SET owner = NULL WHERE run_id = ?", (run_id,))
                return
            db.execute("DELETE FROM attempts WHERE run_id = ?", (run_id,))
            self._supersede(db, run_id)
            cell = json.loads(attempt["config"])
            db.execute(
                "INSERT INTO runs (id, method, dataset, seed, epochs, protocol_hash, protocol, config, status, error,"
                " failed_step, finished, train_seconds, images_per_s, augment_share, peak_memory_mb, history, started,"
                " environment, suite, provenance, owner, heartbeat, folder, effort) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
                (run_id, cell["method"], cell["dataset"], cell["seed"], cell["epochs"], attempt["protocol_hash"], attempt["protocol"],
                 attempt["config"], *finish, attempt["started"], attempt["environment"], attempt["suite"], attempt["provenance"],
                 attempt["owner"], attempt["heartbeat"], attempt["folder"], json.dumps(effort or {})),
            )

    @staticmethod
    def _supersede(db: sqlite3.Connection, run_id: str) -> None:
        """Move the current record of ``run_id`` (and its metrics) to ``<id>-s<k>``, status superseded."""
        if db.execute("SELECT 1 FROM runs WHERE id = ?", (run_id,)).fetchone() is None:
            return
        k = 1
        while db.execute("SELECT 1 FROM runs WHERE id = ?", (f"{run_id}-s{k}",)).fetchone():
            k += 1
        old_id = f"{run_id}-s{k}"
        cols = [r["name"] for r in db.execute("PRAGMA table_info(runs)").fetchall()]
        rest = [c for c in cols if c not in ("id", "status", "folder", "superseded_by")]
        db.execute(
            f"INSERT INTO runs (id, status, folder, superseded_by, {', '.join(rest)})"
            f" SELECT ?, 'superseded', COALESCE(folder, id), id, {', '.join(rest)} FROM runs WHERE id = ?",
            (old_id, run_id),
        )
        db.execute("UPDATE metrics SET run_id = ? WHERE run_id = ?", (old_id, run_id))
        db.execute("DELETE FROM runs WHERE id = ?", (run_id,))

    def mark_error(self, run_id: str, message: str) -> None:
        """Mark a finished run unusable (e.g. its checkpoint is unreadable): status ``error`` with
        ``message``; its metrics stay, and the next run retrains it (keeping this one superseded)."""
        with self._tx() as db:
            db.execute("UPDATE runs SET status = 'error', error = ? WHERE id = ?", (message, run_id))

    def set_suite(self, run_id: str, suite: str) -> None:
        with self._tx() as db:
            db.execute("UPDATE runs SET suite = COALESCE(suite, ?) WHERE id = ?", (suite, run_id))

    def runs(self, method: str | None = None, dataset: str | None = None, status: str | None = None, ids: list[str] | None = None) -> list[RunRecord]:
        """Stored runs, oldest first. Superseded results are left out unless ``status`` asks for
        them; ``status`` is matched against the status as shown (a dead owner's ``running`` run is
        ``interrupted``)."""
        clauses, args = [], []
        for col, val in (("method", method), ("dataset", dataset)):
            if val:
                clauses.append(f"{col} = ?")
                args.append(val)
        if status != "superseded":
            clauses.append("status != 'superseded'")
        if ids is not None:
            if not ids:
                return []
            clauses.append(f"id IN ({','.join('?' * len(ids))})")
            args.extend(ids)
        where = f"WHERE {' AND '.join(clauses)}" if clauses else ""
        rows = self._db.execute(f"SELECT * FROM runs {where} ORDER BY started", args).fetchall()
        records = [RunRecord.from_row(r) for r in rows]
        return [r for r in records if not status or r.status == status]

    # -- metrics ------------------------------------------------------------------------------
    def has_metrics(self, run_id: str, evaluator: str, options: dict[str, Any], selection: str, provenance: dict[str, Any] | None = None) -> bool:
        """Whether ``evaluator`` with ``options`` under the ``selection`` rule is stored for the run
        as a result: an evaluator error is not one (a rerun retries it), and with ``provenance``
        given, metrics made by other evaluator code are not either."""
        rows = self._db.execute(
            "SELECT note, provenance FROM metrics WHERE run_id=? AND evaluator=? AND options_hash=? AND selection=?",
            (run_id, evaluator, self.options_hash(options), selection),
        ).fetchall()
        if not rows or any((r["note"] or "").startswith(ERROR_NOTE) for r in rows):
            return False
        if provenance is not None:
            return all(json.loads(r["provenance"] or "{}") == provenance for r in rows)
        return True

    def put_metrics(self, run_id: str, evaluator: str, options: dict[str, Any], selection: str, values: dict[str, float], note: str | None = None, provenance: dict[str, Any] | None = None) -> None:
        """Store one evaluator's metrics for a run atomically. A skipped evaluator stores its reason
        as a ``note`` under the metric name ``skipped`` with a NULL value; an evaluator that failed
        stores a note starting with ``error:`` the same way (not a result: it is retried)."""
        options_hash = self.options_hash(options)
        now = time.time()
        prov = json.dumps(provenance or {}, sort_keys=True)
        opts = json.dumps(options, sort_keys=True)
        with self._tx() as db:
            db.execute(
                "DELETE FROM metrics WHERE run_id=? AND evaluator=? AND options_hash=? AND selection=?",
                (run_id, evaluator, options_hash, selection),
            )
            rows = [(run_id, evaluator, options_hash, opts, selection, k, float(v), note, now, prov) for k, v in values.items()]
            if not rows:
                rows = [(run_id, evaluator, options_hash, opts, selection, "skipped", None, note, now, prov)]
            db.executemany(
                "INSERT INTO metrics (run_id, evaluator, options_hash, options, selection, name, value, note, created, provenance)"
                " VALUES (?,?,?,?,?,?,?,?,?,?)", rows,
            )

    def metrics(self, run_id: str) -> list[dict[str, Any]]:
        rows = self._db.execute("SELECT * FROM metrics WHERE run_id = ? ORDER BY evaluator, name", (run_id,)).fetchall()
        return [dict(r) for r in rows]

    def metrics_for(self, run_id: str, evaluators: list[tuple[str, dict[str, Any]]], selection: str) -> list[dict[str, Any]]:
        """The run's stored metrics of exactly these (evaluator, options) under ``selection``."""
        wanted = {(name, self.options_hash(options)) for name, options in evaluators}
        return [m for m in self.metrics(run_id) if (m["evaluator"], m["options_hash"]) in wanted and m["selection"] == selection]


#: how an evaluator failure is noted in the metrics table (never a result: retried on the next run)
ERROR_NOTE = "error:"


def migrate(db: sqlite3.Connection) -> None:
    """Bring an older store's tables up to :data:`ADDED_COLUMNS` (adding nullable columns only)."""
    for table, column, kind in ADDED_COLUMNS:
        have = {r[1] for r in db.execute(f"PRAGMA table_info({table})").fetchall()}
        if column not in have:
            db.execute(f"ALTER TABLE {table} ADD COLUMN {column} {kind}")

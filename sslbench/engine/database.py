"""Opening the results database (``HOME/results.sqlite``) for :class:`~sslbench.engine.store.Store`,
with one clear :class:`StoreError` for each way a store on disk can be wrong.

Writable (``run``, ``bench``): the home and its ``runs/`` folder are checked to be folders, the file
is opened in WAL mode, SQLite's quick check reads every page, the schema is created or migrated, and
a write is tried and rolled back, so a garbage, truncated or read-only file is named here rather than
as a traceback half-way through a grid.

Read-only (``results``, ``report``, ``compare``, ``bench --dry-run``): the file is opened with a
``file:...?mode=ro`` URI (with ``immutable=1`` when no ``-wal`` file is beside it, so no ``-shm`` is
made, or when a WAL store sits in a folder this user cannot write) and copied into memory, where the schema and migrations apply without touching the
file; the copy refuses writes (``PRAGMA query_only``). A home without a database reads as an empty
store, and nothing is created on disk.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Callable
from urllib.parse import quote

#: what the store's constructor passes: its schema script and its migration of older stores
Migrate = Callable[[sqlite3.Connection], None]


class StoreError(RuntimeError):
    """The results store cannot be opened or used as asked; the message names the file and what to do."""


def explain(path: Path, exc: sqlite3.Error) -> str:
    """What an SQLite error opening ``path`` means for the user, and what to do about it."""
    text = str(exc)
    lowered = text.lower()
    if "not a database" in lowered:
        return f"{path} is not an SQLite database: move it away or pass --home DIR"
    if "malformed" in lowered or "corrupt" in lowered:
        return (f"{path} is damaged ({text}): move it away (`sqlite3 {path} .recover` may save its rows) "
                "or pass --home DIR")
    if "readonly" in lowered or "read-only" in lowered:
        return (f"{path} is read-only: this command writes results; make the file and its folder writable or "
                "pass --home DIR (results, report and compare can read a read-only store)")
    if "locked" in lowered:
        return f"{path} is locked by another process (waited 30 s): wait for it to finish or pass --home DIR"
    if "unable to open" in lowered:
        return f"cannot open {path} ({text}): check that it is a file this user may read and write, or pass --home DIR"
    return f"{path}: {text}: move it away or pass --home DIR"


def _check_folders(home: Path, path: Path, writable: bool) -> None:
    if home.exists() and not home.is_dir():
        raise StoreError(f"the results home {home} is a file, not a folder: move it away or pass --home DIR")
    if path.exists() and not path.is_file():
        raise StoreError(f"{path} is not a file (a folder?): move it away or pass --home DIR")
    if not writable:
        return
    try:
        home.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise StoreError(f"cannot create the results home {home}: {exc.strerror or exc}; pass --home DIR to a writable folder") from None
    runs = home / "runs"
    if runs.exists() and not runs.is_dir():
        raise StoreError(f"{runs} is a file, but run folders live there: move it away or pass --home DIR")


def _quick_check(db: sqlite3.Connection, path: Path) -> None:
    """Read every page (``PRAGMA quick_check``): a truncated file fails here, not in a later query."""
    result = db.execute("PRAGMA quick_check(1)").fetchone()
    if result is None or result[0] != "ok":
        raise StoreError(f"{path} is damaged ({result[0] if result else 'no check result'}): move it away or pass --home DIR")


def _open_writable(path: Path, schema: str, migrate: Migrate) -> sqlite3.Connection:
    db = sqlite3.connect(path, timeout=30.0, isolation_level=None)
    try:
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA foreign_keys=ON")
        _quick_check(db, path)
        db.executescript(schema)
        migrate(db)
        _probe_write(db)
    except BaseException:
        db.close()
        raise
    return db


def _probe_write(db: sqlite3.Connection) -> None:
    """Write the header's user version back unchanged and roll it back: a file or folder this user
    cannot write is refused now, not by the first result stored half-way through a grid."""
    db.execute("BEGIN IMMEDIATE")
    try:
        version = int(db.execute("PRAGMA user_version").fetchone()[0])
        db.execute(f"PRAGMA user_version = {version}")
    finally:
        if db.in_transaction:
            db.execute("ROLLBACK")


def connect_readonly(path: Path, immutable: bool = False) -> sqlite3.Connection:
    """``path`` opened read-only by URI; ``immutable`` also skips locking and the WAL index, for a
    store in a folder this user cannot write (no ``-shm`` file can be made there)."""
    uri = f"file:{quote(str(path.resolve()))}?mode=ro" + ("&immutable=1" if immutable else "")
    db = sqlite3.connect(uri, uri=True, timeout=30.0, isolation_level=None)
    try:
        db.execute("SELECT count(*) FROM sqlite_master").fetchone()  # the first read opens the file
    except sqlite3.OperationalError:
        db.close()
        if immutable:
            raise
        return connect_readonly(path, immutable=True)
    return db


def _open_readonly(path: Path, schema: str, migrate: Migrate) -> sqlite3.Connection:
    memory = sqlite3.connect(":memory:", isolation_level=None)
    try:
        if path.exists():
            # no -wal file: every row is in the main file, read it as immutable (no -shm is made);
            # else read through the WAL, as a live writer leaves it
            source = connect_readonly(path, immutable=not Path(f"{path}-wal").exists())
            try:
                _quick_check(source, path)
                source.backup(memory)
            finally:
                source.close()
        memory.executescript(schema)
        migrate(memory)
        memory.execute("PRAGMA foreign_keys=ON")
        memory.execute("PRAGMA query_only=ON")
    except BaseException:
        memory.close()
        raise
    return memory


def open_database(home: Path, path: Path, schema: str, migrate: Migrate, readonly: bool = False) -> sqlite3.Connection:
    """The store's connection (rows as :class:`sqlite3.Row`), writable or a read-only copy; every
    fault of the folder or the file is raised as :class:`StoreError`."""
    _check_folders(home, path, writable=not readonly)
    try:
        db = _open_readonly(path, schema, migrate) if readonly else _open_writable(path, schema, migrate)
    except sqlite3.Error as exc:
        raise StoreError(explain(path, exc)) from None
    db.row_factory = sqlite3.Row
    return db


__all__ = ["StoreError", "connect_readonly", "explain", "open_database"]

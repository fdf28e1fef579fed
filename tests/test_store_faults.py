"""Store faults, each with one clear message (a :class:`StoreError`, ``error: ...`` exit 2 on the
command line): a results.sqlite that is garbage, truncated or a folder, a home that is a file, a
``runs/`` that is a file; and read-only stores, which ``results``, ``report``, ``compare`` and
``bench --dry-run`` open read-only, without writing a byte (``results``, ``report`` and the dry run
are run below against a store this process cannot write; ``compare`` opens the store the same way).

This machine's tests may run as root, for whom ``chmod`` does not stop a write. The tests that need a
store the process really cannot write run the CLI in a subprocess without the capabilities that let
root ignore file modes (``setpriv --bounding-set -dac_override,...``), after checking that such a
subprocess is indeed refused a write to a read-only file; where that is not possible they skip. The
other read-only tests prove what the read-only open does itself: the file's bytes, time and folder are
unchanged, no ``-wal``/``-shm`` file is made, and a write through the read-only store is refused.
"""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from sslbench.cli import app
from sslbench.engine import database
from sslbench.engine.store import Store, StoreError

REPO = Path(__file__).resolve().parent.parent


def cli(*args: str):  # type: ignore[no-untyped-def]
    return CliRunner().invoke(app, list(args), env={"COLUMNS": "200"})


def filled_store(home: Path, rows: int = 2000) -> Path:
    """A store with ``rows`` bare run rows (enough pages that truncation cuts through them)."""
    store = Store(home)
    for i in range(rows):
        store._db.execute(
            "INSERT INTO runs (id, method, dataset, seed, epochs, protocol_hash, protocol, config, status)"
            " VALUES (?,?,?,?,?,?,?,?,?)", (f"run{i}", "m" * 200, "digits", 0, 1, "h", "{}", "{}", "done"),
        )
    store.close()
    return home / "results.sqlite"


# -- a file that is not a store -----------------------------------------------------------------


@pytest.mark.parametrize("readonly", [False, True])
def test_garbage_results_sqlite_is_named_with_what_to_do(tmp_path: Path, readonly: bool) -> None:
    (tmp_path / "results.sqlite").write_bytes(b"not a database at all " * 200)
    with pytest.raises(StoreError) as info:
        Store(tmp_path, readonly=readonly)
    assert str(info.value) == f"{tmp_path / 'results.sqlite'} is not an SQLite database: move it away or pass --home DIR"


@pytest.mark.parametrize("keep", [0.5, 0.9])
@pytest.mark.parametrize("readonly", [False, True])
def test_truncated_results_sqlite_is_named_damaged(tmp_path: Path, keep: float, readonly: bool) -> None:
    path = filled_store(tmp_path)
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])
    with pytest.raises(StoreError, match=r"results\.sqlite is damaged .*move it away .*--home"):
        Store(tmp_path, readonly=readonly)


def test_a_header_only_file_is_named(tmp_path: Path) -> None:
    path = filled_store(tmp_path, rows=10)
    path.write_bytes(path.read_bytes()[:50])
    with pytest.raises(StoreError, match="results.sqlite"):
        Store(tmp_path)


@pytest.mark.parametrize("command", [["results"], ["results", "--runs"], ["compare", "a", "b"]])
def test_the_cli_prints_a_store_fault_as_one_error_line(tmp_path: Path, command: list[str]) -> None:
    (tmp_path / "results.sqlite").write_bytes(b"garbage" * 100)
    result = cli(*command, "--home", str(tmp_path))
    assert result.exit_code == 2, result.output
    assert "error:" in result.output and "is not an SQLite database: move it away or pass --home" in result.output
    assert "Traceback" not in result.output


# -- folders that are files ---------------------------------------------------------------------


@pytest.mark.parametrize("readonly", [False, True])
def test_a_home_that_is_a_file(tmp_path: Path, readonly: bool) -> None:
    home = tmp_path / "home"
    home.write_text("oops")
    with pytest.raises(StoreError, match=f"the results home {home} is a file, not a folder: move it away or pass --home"):
        Store(home, readonly=readonly)
    result = cli("results", "--home", str(home))
    assert result.exit_code == 2 and "is a file, not a folder" in result.output


def test_a_runs_folder_that_is_a_file(tmp_path: Path) -> None:
    Store(tmp_path).close()
    (tmp_path / "runs").write_text("oops")
    with pytest.raises(StoreError, match=r"runs is a file, but run folders live there: move it away or pass --home"):
        Store(tmp_path)
    Store(tmp_path, readonly=True).close()  # reading the results needs no run folder
    result = cli("run", "random", "--epochs", "0", "-e", "knn", "--home", str(tmp_path))
    assert result.exit_code == 2 and "run folders live there" in result.output


def test_a_results_sqlite_that_is_a_folder(tmp_path: Path) -> None:
    (tmp_path / "results.sqlite").mkdir()
    with pytest.raises(StoreError, match="is not a file"):
        Store(tmp_path)


def test_the_messages_of_sqlite_errors() -> None:
    path = Path("/x/results.sqlite")
    assert "is read-only: this command writes results" in database.explain(path, sqlite3.OperationalError("attempt to write a readonly database"))
    assert "locked by another process" in database.explain(path, sqlite3.OperationalError("database is locked"))
    assert "cannot open /x/results.sqlite" in database.explain(path, sqlite3.OperationalError("unable to open database file"))


# -- read-only opens ----------------------------------------------------------------------------


def listing(folder: Path) -> dict[str, tuple[int, int]]:
    return {p.name: (p.stat().st_size, p.stat().st_mtime_ns) for p in folder.iterdir()}


def test_a_read_only_open_writes_nothing_and_refuses_writes(tmp_path: Path) -> None:
    path = filled_store(tmp_path, rows=5)
    before, data = listing(tmp_path), path.read_bytes()
    store = Store(tmp_path, readonly=True)
    assert len(store.runs()) == 5
    with pytest.raises(sqlite3.OperationalError, match="readonly"):
        store._db.execute("DELETE FROM runs")
    store.close()
    assert listing(tmp_path) == before and path.read_bytes() == data


def test_a_read_only_open_of_an_older_store_migrates_in_memory_only(tmp_path: Path) -> None:
    from sslbench.engine import store as store_module

    path = filled_store(tmp_path, rows=3)
    db = sqlite3.connect(path)
    dropped = []
    for table, column, _ in getattr(store_module, "ADDED_COLUMNS", ()):
        db.execute(f"ALTER TABLE {table} DROP COLUMN {column}")
        dropped.append(column)
    db.commit()
    db.close()
    data = path.read_bytes()
    store = Store(tmp_path, readonly=True)
    assert len(store.runs()) == 3
    store.close()
    assert path.read_bytes() == data  # the file keeps its old schema; a writable open migrates it


def test_a_read_only_open_of_a_missing_store_is_empty_and_creates_nothing(tmp_path: Path) -> None:
    home = tmp_path / "none"
    store = Store(home, readonly=True)
    assert store.runs() == [] and store.path == home / "results.sqlite"
    assert not home.exists()
    result = cli("results", "--home", str(home))
    assert result.exit_code == 0 and "no stored runs" in result.output and not home.exists()


def test_a_read_only_open_sees_rows_a_live_writer_keeps_in_its_wal(tmp_path: Path) -> None:
    writer = Store(tmp_path)
    writer._db.execute(
        "INSERT INTO runs (id, method, dataset, seed, epochs, protocol_hash, protocol, config, status)"
        " VALUES ('live', 'm', 'digits', 0, 1, 'h', '{}', '{}', 'done')"
    )
    assert (tmp_path / "results.sqlite-wal").exists()
    reader = Store(tmp_path, readonly=True)
    assert [r.id for r in reader.runs()] == ["live"]
    reader.close()
    writer.close()


def test_a_read_only_open_falls_back_to_immutable_when_the_wal_cannot_be_read(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """What a store in a folder this user cannot write looks like to SQLite (no -shm can be made):
    the first read fails with SQLITE_CANTOPEN. Simulated here: the plain read-only URI is refused."""
    filled_store(tmp_path, rows=4)
    real = sqlite3.connect
    uris = []

    class Refusing:
        def execute(self, *args: object) -> None:
            raise sqlite3.OperationalError("unable to open database file")

        def close(self) -> None:
            pass

    def connect(target, *args, **kwargs):  # type: ignore[no-untyped-def]
        uris.append(str(target))
        if "mode=ro" in str(target) and "immutable" not in str(target):
            return Refusing()
        return real(target, *args, **kwargs)

    monkeypatch.setattr(database.sqlite3, "connect", connect)
    db = database.connect_readonly(tmp_path / "results.sqlite")
    assert db.execute("SELECT count(*) FROM runs").fetchone()[0] == 4
    assert uris[-1].endswith("?mode=ro&immutable=1")


# -- a store this process really cannot write -----------------------------------------------------


def unprivileged() -> list[str]:
    """A command prefix that runs a subprocess subject to file modes (as root: without the
    capabilities that bypass them); skips the test when there is none."""
    if os.geteuid() != 0:
        return []
    if shutil.which("setpriv") is None:
        pytest.skip("running as root and setpriv is not available: chmod cannot make a store read-only")
    return ["setpriv", "--bounding-set", "-dac_override,-dac_read_search,-fowner"]


def run_cli(prefix: list[str], *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), str(REPO / "plugins"), os.environ.get("PYTHONPATH", "")]),
           "OMP_NUM_THREADS": "1", "SSLBENCH_THREADS": "1", "COLUMNS": "200"}
    return subprocess.run([*prefix, sys.executable, "-m", "sslbench", *args], env=env, capture_output=True, text=True, timeout=300)


def make_read_only(folder: Path) -> None:
    for path in [folder, *folder.rglob("*")]:
        mode = path.stat().st_mode
        path.chmod(mode & ~(stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH))


def make_writable(folder: Path) -> None:
    for path in [folder, *folder.rglob("*")]:
        path.chmod(path.stat().st_mode | stat.S_IWUSR)


SUITE = """\
[suites.tiny]
methods = ["random"]
datasets = ["digits"]
evaluators = ["knn"]

[suites.tiny.budgets.cpu]
epochs = 0
"""


def test_results_report_and_dry_run_read_a_read_only_store_and_run_refuses_it(tmp_path: Path) -> None:
    prefix = unprivileged()
    probe = tmp_path / "probe"
    probe.write_text("x")
    probe.chmod(0o444)
    check = subprocess.run([*prefix, sys.executable, "-c", f"open({str(probe)!r}, 'a')"], capture_output=True, text=True)
    if check.returncode == 0:
        pytest.skip("a subprocess here can still write a read-only file: no way to make a store read-only")

    home, suites = tmp_path / "home", tmp_path / "suites.toml"
    suites.write_text(SUITE)
    made = cli("bench", "tiny", "--file", str(suites), "--home", str(home))
    assert made.exit_code == 0, made.output
    run_id = json.loads(cli("results", "--runs", "--format", "json", "--home", str(home)).output)[0]["id"]
    make_read_only(home)
    before = listing(home)
    try:
        shown = run_cli(prefix, "results", "--runs", "--format", "json", "--home", str(home))
        assert shown.returncode == 0, shown.stderr
        assert [r["id"] for r in json.loads(shown.stdout)] == [run_id]
        out = tmp_path / "report"
        report = run_cli(prefix, "report", "tiny", "--file", str(suites), "--out", str(out), "--home", str(home))
        assert report.returncode == 0, report.stderr
        assert (out / "report.md").is_file()
        dry = run_cli(prefix, "bench", "tiny", "--dry-run", "--file", str(suites), "--home", str(home))
        assert dry.returncode == 0 and "1 complete" in dry.stdout, dry.stderr
        refused = run_cli(prefix, "run", "random", "--epochs", "0", "-e", "knn", "--seeds", "2", "--home", str(home))
        assert refused.returncode == 2, refused.stderr
        assert "is read-only: this command writes results" in refused.stderr and "Traceback" not in refused.stderr
        assert listing(home) == before
    finally:
        make_writable(home)

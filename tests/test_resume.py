"""Long runs survive (issue 13): training checkpoints, exact resume after a kill, Ctrl-C, a torn
checkpoint never loaded, and two processes splitting one grid on one store."""

from __future__ import annotations

import json
import os
import random
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import torch

from sslbench.engine.cells import build_grid
from sslbench.engine.checkpoint import STATE_NAME, CheckpointPolicy, PolicyError
from sslbench.engine.plugins import build_registry
from sslbench.engine.runner import execute_cell
from sslbench.engine.store import Store


@pytest.fixture(scope="module")
def reg():  # type: ignore[no-untyped-def]
    return build_registry()


def vae_cell(reg, epochs=4, every="1e", seed=0):  # type: ignore[no-untyped-def]
    (cell,) = build_grid(reg, ["vae"], "digits", [seed], epochs, ["knn"], checkpoint_every=every)
    return cell


def weights(store: Store, run_id: str) -> dict[str, torch.Tensor]:
    return torch.load(store.checkpoint_path(run_id), weights_only=True)


def same_run(a: Store, b: Store, run_id: str) -> None:
    ra, rb = a.get_run(run_id), b.get_run(run_id)
    assert ra.status == rb.status == "done"
    assert ra.history == rb.history  # every loss point, bit for bit
    wa, wb = weights(a, run_id), weights(b, run_id)
    assert wa.keys() == wb.keys() and all(torch.equal(wa[k], wb[k]) for k in wa)
    assert [(m["name"], m["value"]) for m in a.metrics(run_id)] == [(m["name"], m["value"]) for m in b.metrics(run_id)]


def test_policy_parsing() -> None:
    assert CheckpointPolicy.parse(None).auto and CheckpointPolicy.parse("off").off
    assert CheckpointPolicy.parse("10m").every_s == 600 and CheckpointPolicy.parse("2e").every_epochs == 2
    assert CheckpointPolicy.parse("500steps").every_steps == 500
    with pytest.raises(PolicyError, match="write a time"):
        CheckpointPolicy.parse("soon")


@pytest.mark.parametrize("every, stop_at", [("1e", 30), ("7steps", 30), ("3steps", 20)])
def test_a_run_stopped_mid_training_resumes_to_the_same_result(reg, tmp_path, every, stop_at) -> None:  # type: ignore[no-untyped-def]
    torch.set_num_threads(1)
    whole = Store(tmp_path / "whole")
    cell = vae_cell(reg, every=every)
    assert execute_cell(cell, whole, reg).status == "done"

    broken = Store(tmp_path / "broken")

    def crash(step, total, terms):  # type: ignore[no-untyped-def]
        if step >= stop_at:
            raise KeyboardInterrupt("killed")

    with pytest.raises(KeyboardInterrupt):
        execute_cell(cell, broken, reg, report=crash)
    record = broken.get_run(cell.run_id)
    assert record.status == "interrupted"
    assert (broken.run_folder(cell.run_id) / STATE_NAME).is_file()
    resumed = execute_cell(cell, broken, reg)
    assert resumed.status == "done" and resumed.message.startswith(f"resumed run {cell.run_id} from epoch")
    same_run(whole, broken, cell.run_id)
    effort = broken.get_run(cell.run_id).effort
    assert effort["segments"] == 2 and effort["steps"] == whole.get_run(cell.run_id).effort["steps"]
    assert not (broken.run_folder(cell.run_id) / STATE_NAME).exists()  # cleared once stored


def test_a_checkpoint_of_other_code_is_not_resumed(reg, tmp_path) -> None:  # type: ignore[no-untyped-def]
    store = Store(tmp_path)
    cell = vae_cell(reg)

    def crash(step, total, terms):  # type: ignore[no-untyped-def]
        if step >= 30:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        execute_cell(cell, store, reg, report=crash)
    path = store.run_folder(cell.run_id) / STATE_NAME
    state = torch.load(path, weights_only=True)
    state["meta"]["provenance"]["method"]["source"] = "0" * 16  # as if written by other code
    torch.save(state, path)
    out = execute_cell(cell, store, reg)
    assert out.status == "done" and "resumed" not in out.message  # started again


def _cli(home: Path, *args: str) -> list[str]:
    return [sys.executable, "-m", "sslbench", "run", "vae", "--dataset", "digits", "-e", "knn", "--home", str(home), *args]


def _env() -> dict[str, str]:
    return {**os.environ, "SSLBENCH_THREADS": "1", "OMP_NUM_THREADS": "1", "COLUMNS": "120"}


def _training(home: Path, run_id: str, proc: subprocess.Popen, timeout: float = 120.0) -> bool:  # type: ignore[type-arg]
    """Wait until ``proc`` trains ``run_id`` (its record says running); False if it ended first."""
    deadline = time.time() + timeout
    while time.time() < deadline and proc.poll() is None:
        if (home / "results.sqlite").is_file():
            try:
                row = sqlite3.connect(home / "results.sqlite", timeout=5).execute("SELECT status FROM runs WHERE id = ?", (run_id,)).fetchone()
                attempt = sqlite3.connect(home / "results.sqlite", timeout=5).execute("SELECT owner FROM attempts WHERE run_id = ?", (run_id,)).fetchone()
            except sqlite3.Error:
                row = attempt = None
            if (row is not None and row[0] == "running") or (attempt is not None and attempt[0]):
                return True
        time.sleep(0.1)
    return proc.poll() is None


@pytest.mark.slow
def test_sigkill_at_random_points_then_resume_equals_the_uninterrupted_run(reg, tmp_path) -> None:  # type: ignore[no-untyped-def]
    args = ("--epochs", "80", "--checkpoint-every", "1e")
    whole, killed = tmp_path / "whole", tmp_path / "killed"
    done = subprocess.run(_cli(whole, *args), env=_env(), capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    rng = random.Random(13)
    (cell,) = build_grid(reg, ["vae"], "digits", [0], 80, ["knn"], checkpoint_every="1e")
    kills = 0
    for _ in range(4):  # kill -9 at a random point of training, four times
        proc = subprocess.Popen(_cli(killed, *args), env=_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        if not _training(killed, cell.run_id, proc):
            break
        time.sleep(rng.uniform(1.5, 3.5))  # the first checkpoint comes about a second into training
        if proc.poll() is not None:
            break
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        kills += 1
    final = subprocess.run(_cli(killed, *args), env=_env(), capture_output=True, text=True, timeout=600)
    assert final.returncode == 0, final.stderr
    assert kills >= 2, "the kills should land during training"
    assert "resumed run" in final.stderr + final.stdout or Store(killed).get_run(cell.run_id).effort["segments"] > 1
    assert Store(killed).get_run(cell.run_id).effort["segments"] == kills + 1 or kills >= 2
    same_run(Store(whole), Store(killed), cell.run_id)
    db = sqlite3.connect(killed / "results.sqlite")
    assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"


@pytest.mark.slow
def test_a_kill_between_write_and_rename_never_loads_a_torn_checkpoint(reg, tmp_path) -> None:  # type: ignore[no-untyped-def]
    home, whole = tmp_path / "killed", tmp_path / "whole"
    script = textwrap.dedent(f"""
        import os, signal, sys
        real = os.replace
        seen = []
        def replace(src, dst):
            if str(dst).endswith("{STATE_NAME}"):
                seen.append(dst)
                if len(seen) == 3:  # the third checkpoint is written and fsync'd, not renamed
                    os.kill(os.getpid(), signal.SIGKILL)
            return real(src, dst)
        os.replace = replace
        from sslbench.cli import main
        sys.argv = ["sslbench", "run", "vae", "--dataset", "digits", "-e", "knn", "--home", {str(home)!r},
                    "--epochs", "6", "--checkpoint-every", "1e"]
        main()
    """)
    killed = subprocess.run([sys.executable, "-c", script], env=_env(), capture_output=True, text=True, timeout=600)
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    (cell,) = build_grid(reg, ["vae"], "digits", [0], 6, ["knn"], checkpoint_every="1e")
    folder = Store(home).run_folder(cell.run_id)
    parts = [p for p in folder.iterdir() if p.name.endswith(".part")]
    assert parts, "the torn write is left as a temporary file"
    state = torch.load(folder / STATE_NAME, weights_only=True)
    assert state["epoch"] == 2  # the second checkpoint: the third never replaced it
    again = subprocess.run(_cli(home, "--epochs", "6", "--checkpoint-every", "1e"), env=_env(), capture_output=True, text=True, timeout=600)
    assert again.returncode == 0 and "resumed run" in again.stderr + again.stdout
    assert subprocess.run(_cli(whole, "--epochs", "6", "--checkpoint-every", "1e"), env=_env(), capture_output=True, timeout=600).returncode == 0
    same_run(Store(whole), Store(home), cell.run_id)


@pytest.mark.slow
def test_ctrl_c_checkpoints_exits_130_and_resumes(reg, tmp_path) -> None:  # type: ignore[no-untyped-def]
    home = tmp_path / "home"
    proc = subprocess.Popen(_cli(home, "--epochs", "60", "--checkpoint-every", "off"), env=_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    (cell,) = build_grid(reg, ["vae"], "digits", [0], 60, ["knn"], checkpoint_every="off")
    assert _training(home, cell.run_id, proc)
    time.sleep(1.0)
    proc.send_signal(signal.SIGINT)
    out, errors = proc.communicate(timeout=120)
    assert proc.returncode == 130, errors
    assert "the same command again" in errors
    record = Store(home).get_run(cell.run_id)
    assert record.status == "interrupted" and "interrupted at epoch" in record.error and "checkpoint saved" in record.error
    again = subprocess.run(_cli(home, "--epochs", "60", "--checkpoint-every", "off"), env=_env(), capture_output=True, text=True, timeout=600)
    assert again.returncode == 0, again.stderr
    assert f"resumed run {cell.run_id}" in again.stderr + again.stdout


@pytest.mark.slow
def test_two_bench_processes_split_one_grid(reg, tmp_path) -> None:  # type: ignore[no-untyped-def]
    suites = tmp_path / "suites.toml"
    suites.write_text(textwrap.dedent("""\
        [suites.split]
        methods = ["vae", "simclr"]
        datasets = ["digits"]
        evaluators = ["knn"]
        seeds = 4
        [suites.split.budgets.cpu]
        epochs = 3
    """))
    home = tmp_path / "home"
    cmd = [sys.executable, "-m", "sslbench", "bench", "split", "--file", str(suites), "--home", str(home)]
    first = subprocess.Popen(cmd, env=_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    time.sleep(1.0)
    second = subprocess.Popen(cmd, env=_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    outs = [p.communicate(timeout=900) for p in (first, second)]
    assert first.returncode == 0 and second.returncode == 0, outs
    store = Store(home)
    runs = store.runs()
    assert len(runs) == 8 and all(r.status == "done" for r in runs)
    assert store.runs(status="superseded") == []  # nothing was trained twice
    trained = sum(line.startswith("done ") and "(stored run reused)" not in line for o in outs for line in o[1].splitlines())
    assert trained == 8, outs  # each run trained exactly once, by one of the two
    assert all(r.effort.get("segments") == 1 for r in runs)
    db = sqlite3.connect(home / "results.sqlite")
    assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    assert json.loads(json.dumps([r.id for r in runs]))


def test_a_write_waits_and_retries_while_another_process_holds_the_lock(tmp_path) -> None:  # type: ignore[no-untyped-def]
    import threading

    store = Store(tmp_path)
    store._db.execute("PRAGMA busy_timeout = 50")  # SQLite's own wait, shortened: the retries must do the rest
    other = sqlite3.connect(tmp_path / "results.sqlite", isolation_level=None, check_same_thread=False)
    other.execute("BEGIN IMMEDIATE")
    threading.Timer(1.0, lambda: other.execute("COMMIT")).start()
    t0 = time.perf_counter()
    store.set_suite("nothing", "x")  # a write: waits for the other writer, then goes through
    assert time.perf_counter() - t0 >= 0.9


def test_a_result_stored_by_another_process_meanwhile_is_not_trained_again(reg, tmp_path) -> None:  # type: ignore[no-untyped-def]
    """The race two bench processes hit: one decides to train a run that has no record, the other
    stores its result before the first claims it; the claim must not replace that fresh result."""
    from sslbench.engine.store import RunClaimed

    store = Store(tmp_path)
    cell = vae_cell(reg, epochs=1)
    cfg = json.loads(cell.to_json())
    store.start_run(cell.run_id, cfg, cell.protocol, "x", {}, None)  # the other process, start to finish
    store.finish_run(cell.run_id, status="done")
    with pytest.raises(RunClaimed, match="stored it since"):
        store.start_run(cell.run_id, cfg, cell.protocol, "x", {}, None, replaces=False)
    assert store.get_run(cell.run_id).status == "done" and store.runs(status="superseded") == []
    store.start_run(cell.run_id, cfg, cell.protocol, "x", {}, None, replaces=True)  # a knowing retrain keeps it until replaced
    assert store.get_run(cell.run_id).replacement is not None


def test_a_ctrl_c_during_a_step_never_stops_without_the_checkpoint_it_reports(tmp_path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """The loop reads the Ctrl-C flag once per step: a signal landing between the decision to
    checkpoint and the stop (here: the flag turns true on its 6th read) stops at a step whose
    checkpoint was written, so "checkpoint saved" is true and the run resumes."""
    from sslbench.engine import train as train_module
    from sslbench.engine.checkpoint import Checkpointer
    from sslbench.engine.jobs import build_method
    from sslbench.sdk.api import ImageData
    from sslbench.sdk.protocol import Protocol

    class _LateSignal:
        reads = 0

        def __enter__(self):  # type: ignore[no-untyped-def]
            return self

        def __exit__(self, *exc) -> None:  # type: ignore[no-untyped-def]
            pass

        @property
        def requested(self) -> bool:
            _LateSignal.reads += 1
            return _LateSignal.reads >= 6

    monkeypatch.setattr(train_module, "_StopOnSigint", _LateSignal)
    reg = build_registry()
    (cell,) = build_grid(reg, ["vae"], "digits", [0], 5, ["knn"], checkpoint_every="off")
    g = torch.Generator().manual_seed(0)
    x = torch.randint(0, 256, (64, 1, 8, 8), generator=g, dtype=torch.uint8)
    data = ImageData("tiny", x, torch.zeros(64, dtype=torch.long), x[:8], torch.zeros(8, dtype=torch.long))
    method = build_method(reg, cell, data, torch.device("cpu"))
    path = tmp_path / STATE_NAME
    protocol = Protocol.from_dict(cell.protocol).replace(batch_size=8)
    with pytest.raises(train_module.Interrupted) as info:
        train_module.train(method, data, protocol, 5, 0, checkpointer=Checkpointer(path, CheckpointPolicy.parse("off"), {"run": 1}))
    assert info.value.saved and path.is_file()

"""Grids beyond one process (issue 15): the local process pool stores exactly what the in-process
executor stores, the driver stays the only writer, a dead worker's cells are retried once and
stored once (resuming from their training checkpoints), and the executor options are checked."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from rich.console import Console

from sslbench.engine.cells import Outcome, build_grid
from sslbench.engine.executors import KILL_ONCE_VARIABLE, LocalExecutor, make_executor, worker_devices, worker_threads
from sslbench.engine.runner import InProcessExecutor, run_grid
from sslbench.engine.store import Store
from sslbench.engine.train import SetupError


def small_grid(registry):  # type: ignore[no-untyped-def]
    """Four cells on digits: two methods x two seeds, two epochs, a training checkpoint per epoch."""
    return build_grid(registry, ["vae", "simclr"], "digits", [0, 1], 2, ["knn"], checkpoint_every="1e")


def stored(store: Store, run_id: str) -> tuple:  # type: ignore[type-arg]
    """What a run stores that must not depend on where it ran: its history and metric values."""
    record = store.get_run(run_id)
    assert record is not None and record.status == "done", record
    metrics = sorted((m["evaluator"], m["name"], m["value"], m["note"]) for m in store.metrics(run_id))
    return record.history, metrics, record.effort["steps"], record.effort["images_seen"]


@pytest.fixture(scope="module")
def reference(tmp_path_factory):  # type: ignore[no-untyped-def]
    """The in-process results of :func:`small_grid` (CPU, one thread: deterministic)."""
    from sslbench.engine.plugins import build_registry

    registry = build_registry()
    store = Store(tmp_path_factory.mktemp("in-process"))
    grid = run_grid(small_grid(registry), InProcessExecutor(store, registry))
    assert [o.status for o in grid.outcomes] == ["done"] * 4
    return {c.run_id: stored(store, c.run_id) for c in small_grid(registry)}


def assert_same_and_once(store: Store, reference: dict, cells) -> None:  # type: ignore[no-untyped-def, type-arg]
    for cell in cells:
        assert stored(store, cell.run_id) == reference[cell.run_id], f"{cell.method} seed {cell.seed} differs from in-process"
    assert sorted(r.id for r in store.runs()) == sorted(c.run_id for c in cells)  # one record each
    assert store.runs(status="superseded") == []
    for cell in cells:
        assert not (store.run_folder(cell.run_id) / "train_state.pt").exists()  # cleared once stored
        assert store.checkpoint_path(cell.run_id).is_file()


def test_local_pool_with_two_jobs_stores_exactly_the_in_process_numbers(registry, reference, tmp_path) -> None:  # type: ignore[no-untyped-def]
    store = Store(tmp_path / "home")
    cells = small_grid(registry)
    where: dict[str, str] = {}
    done: list[Outcome] = []
    grid = run_grid(cells, LocalExecutor(store, registry, jobs=2), on_done=done.append,
                    on_where=lambda cell, at: where.__setitem__(cell.run_id, at))
    assert [o.status for o in grid.outcomes] == ["done"] * 4
    assert [o.run_id for o in grid.outcomes] == [c.run_id for c in cells]  # grid order, whatever the finishing order
    assert len(done) == 4
    assert_same_and_once(store, reference, cells)
    import os

    assert len(set(where.values())) >= 1 and all(str(os.getpid()) not in w.split()[0] for w in where.values())  # workers, not the driver
    assert store.get_run(cells[0].run_id).environment["threads"] == 1  # SSLBENCH_THREADS=1 (tests/conftest.py)
    again = run_grid(cells, LocalExecutor(store, registry, jobs=2))  # everything stored: reused, nothing spawned to train
    assert all(o.reused for o in again.outcomes)


@pytest.mark.slow
def test_a_killed_pool_worker_is_retried_resumes_and_is_stored_once(registry, reference, tmp_path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    marker = tmp_path / "killed"
    monkeypatch.setenv(KILL_ONCE_VARIABLE, str(marker))  # the first job past half its training kills its worker (SIGKILL)
    store = Store(tmp_path / "home")
    cells = small_grid(registry)
    grid = run_grid(cells, LocalExecutor(store, registry, jobs=2))
    assert marker.is_file(), "no worker was killed"
    assert [o.status for o in grid.outcomes] == ["done"] * 4, [o.message for o in grid.outcomes]
    assert_same_and_once(store, reference, cells)
    resumed = [o for o in grid.outcomes if o.message.startswith("resumed run")]
    assert resumed, "the retried cell should resume from its epoch-1 checkpoint"
    assert store.get_run(resumed[0].run_id).effort["segments"] == 2


def test_executor_options_are_checked_before_any_work(registry, tmp_path) -> None:  # type: ignore[no-untyped-def]
    store = Store(tmp_path / "home")
    assert isinstance(make_executor(None, store, registry), InProcessExecutor)
    assert isinstance(make_executor(None, store, registry, jobs=2), LocalExecutor)  # --jobs alone means local
    for kind, kwargs, words in (
        ("gpu-farm", {}, "in-process, local, ray"),
        ("in-process", {"jobs": 2}, "--jobs applies to --executor local"),
        ("local", {"ray_address": "ray://x:10001"}, "--ray-address applies to --executor ray"),
        ("local", {"cpus_per_run": 2.0, "gpus_per_run": 0.5}, "--cpus-per-run, --gpus-per-run apply"),
        ("local", {"jobs": 0}, "--jobs 0"),
    ):
        with pytest.raises(SetupError, match=words):
            make_executor(kind, store, registry, **kwargs)


def test_without_ray_installed_the_ray_executor_says_how_to_install_it(registry, tmp_path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setitem(sys.modules, "ray", None)  # import ray raises ImportError
    with pytest.raises(SetupError, match=r'pip install "sslbench\[ray\]"'):
        make_executor("ray", Store(tmp_path / "home"), registry)


def test_threads_are_divided_between_jobs_and_gpus_shared_round_robin(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.delenv("SSLBENCH_THREADS")
    assert worker_threads(2, cpus=8) == 4 and worker_threads(3, cpus=2) == 1
    monkeypatch.setenv("SSLBENCH_THREADS", "3")
    assert worker_threads(2, cpus=8) == 3
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    assert worker_devices(5) == ["cuda:0", "cuda:1", "cuda:0", "cuda:1", "cuda:0"]
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert worker_devices(2) == [None, None]


def test_a_suite_may_name_its_executor(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from sslbench.bench.suites import SuiteError, load_suites

    body = '[suites.s]\nmethods = ["random"]\ndatasets = ["digits"]\nexecutor = "{}"\n[suites.s.budgets.cpu]\nepochs = 1\n'
    path = tmp_path / "suites.toml"
    path.write_text(body.format("ray"))
    assert load_suites(path).get("s").executor == "ray"
    path.write_text(body.format("slurm"))
    with pytest.raises(SuiteError, match="executor"):
        load_suites(path).get("s")


def test_the_live_display_counts_the_grid_and_says_where_cells_run(registry) -> None:  # type: ignore[no-untyped-def]
    from sslbench.bench.live import LiveProgress

    cells = build_grid(registry, ["vae"], "digits", [0, 1, 2], 2, ["knn"])
    console = Console(width=100, record=True, force_terminal=False)
    with LiveProgress(console, total=3, concurrent=True) as live:
        reports = [live.on_start(c) for c in cells[:2]]
        assert live.counts() == {"queued": 1, "running": 2, "done": 0, "failed": 0}
        live.on_where(cells[0], "node7:4242 cpu")
        reports[0](5, 10, {"loss": 1.5})
        task = next(t for t in live.progress.tasks if t.id == live.lines[cells[0].run_id])
        assert "node7:4242 cpu" in task.fields["terms"] and "epoch 1/2" in task.description
        live.on_done(Outcome(cells[1].run_id, "vae", "digits", 1, status="failed", message="diverged at step 3"))
        assert live.counts() == {"queued": 1, "running": 1, "done": 0, "failed": 1}
        assert cells[0].run_id in live.lines  # the other running cell keeps its line
        grid_line = next(t for t in live.progress.tasks if t.id == live.overall)
        assert "1 queued · 1 running · 0 done · 1 failed" in grid_line.fields["terms"]


def test_a_pool_broken_since_the_last_wait_is_replaced_when_the_next_job_starts(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """A worker can die between two waits: submitting the next job to that pool raises
    BrokenProcessPool. The job goes to a fresh pool (a new generation) instead of ending the grid;
    the dead pool's jobs are then resubmitted by wait, which sees their older generation."""
    from concurrent.futures import Future
    from concurrent.futures.process import BrokenProcessPool

    from sslbench.engine.executors import LocalPool

    class _Broken:
        def submit(self, *args, **kwargs):  # type: ignore[no-untyped-def]
            raise BrokenProcessPool("a child process terminated abruptly")

        def shutdown(self, **kwargs) -> None:  # type: ignore[no-untyped-def]
            pass

    class _Fresh:
        submitted: list = []

        def submit(self, fn, job):  # type: ignore[no-untyped-def]
            self.submitted.append(job)
            return Future()

    pool = LocalPool(1)
    pool._pool.shutdown()
    pool._pool = _Broken()
    monkeypatch.setattr(pool, "_new_pool", _Fresh)
    handle = pool.start("job")  # type: ignore[arg-type]
    assert handle.generation == 1 and isinstance(pool._pool, _Fresh) and _Fresh.submitted == ["job"]

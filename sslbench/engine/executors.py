"""Executors that run a grid's cells side by side: the driver loop they share (:func:`run_concurrent`)
and the local process pool (:class:`LocalExecutor`, ``--executor local --jobs N``); Ray's is in
:mod:`sslbench.engine.ray_executor`.

The driver (this process) is the only writer of the results store: it prepares each cell
(:func:`~sslbench.engine.jobs.prepare_cell`, claiming its run) only when a worker is free, hands the
:class:`~sslbench.engine.jobs.Job` to a backend, stores each result the moment it returns
(:func:`~sslbench.engine.jobs.commit_job`), notes a heartbeat every 30 s for the runs its workers
train, and applies :func:`~sslbench.engine.runner.run_grid`'s rules: a data set that cannot be loaded
skips its cells, a cell another process trains waits. Ctrl-C stops the workers after their current
step (each writes a training checkpoint), stores what they return, and re-raises: the same command
resumes.

Workers keep a module-level registry and :class:`~sslbench.engine.jobs.DataCache`, so a data set is
loaded once per worker process, not once per cell.
"""

from __future__ import annotations

import multiprocessing
import os
import queue as queue_module
import signal
import socket
import time
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Protocol as TypingProtocol

import torch

from sslbench.sdk.api import DataError
from sslbench.engine.cells import Cell, Outcome
from sslbench.engine.jobs import DataCache, Job, JobResult, commit_job, prepare_cell
from sslbench.engine.plugins import Registry, get_registry
from sslbench.engine.runner import HEARTBEAT_EVERY_S, GridCallbacks, GridRun, skip_data_set, work_job
from sslbench.engine.store import Store
from sslbench.engine.train import THREADS_VARIABLE, Reporter, SetupError, pick_device

#: test hook: the path of a marker file; the first job that reports progress past half its training
#: while the file is absent creates it and kills its own worker process (SIGKILL), to exercise the
#: retry of a dead worker and its resume
KILL_ONCE_VARIABLE = "SSLBENCH_TEST_KILL_WORKER_ONCE"
#: seconds the driver waits after Ctrl-C for running jobs to stop and return (then it marks them interrupted)
INTERRUPT_GRACE_S = 60.0
#: at most one progress message per job per this many seconds crosses to the driver
PROGRESS_EVERY_S = 0.5

#: a progress message: (run id, where, step, total steps, loss terms)
Progress = tuple[str, str, int, int, dict[str, float]]


class Backend(TypingProtocol):
    """What :func:`run_concurrent` needs of a pool of workers."""

    #: how many jobs may run at once
    slots: int

    def start(self, job: Job) -> Any: ...

    def wait(self, handles: list[Any], timeout: float) -> list[tuple[Any, JobResult | BaseException]]: ...

    def progress(self) -> list[Progress]: ...

    def interrupt(self, handles: list[Any]) -> None: ...

    def close(self, interrupted: bool = False) -> None: ...


# -- the worker side ---------------------------------------------------------------------------

#: this worker process's registry, data cache, device and progress channel
WORKER: dict[str, Any] = {}


def worker_threads(jobs: int, cpus: int | None = None) -> int:
    """Torch threads per worker: ``SSLBENCH_THREADS`` when set, else the CPUs divided between ``jobs``, at least 1."""
    env = os.environ.get(THREADS_VARIABLE, "").strip()
    if env:
        try:
            return max(1, int(env))
        except ValueError:
            raise SetupError(f"{THREADS_VARIABLE}={env!r} is not a thread count: write a whole number >= 1") from None
    if cpus is None:
        cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return max(1, cpus // max(1, jobs))


def worker_devices(jobs: int) -> list[str | None]:
    """The device of each of ``jobs`` workers: round robin over the visible GPUs (several workers
    share one when there are more jobs than GPUs); None (each cell's own) without CUDA."""
    if not torch.cuda.is_available():
        return [None] * jobs
    count = torch.cuda.device_count()
    return [f"cuda:{i % count}" for i in range(jobs)]


def setup_worker(threads: int, device: str | None, progress: Any) -> None:
    """Make this process a worker: its torch threads, its device for cells that leave the device
    open (or ask for plain ``cuda``), the channel its progress goes to."""
    torch.set_num_threads(max(1, threads))
    WORKER.update(threads=threads, device=device, progress=progress)


def _init_pool_worker(threads: int, devices: Any, progress: Any) -> None:
    os.setpgrp()  # a terminal's Ctrl-C reaches the driver only; it tells each worker once
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # outside training (the loop stops after a step on SIGINT)
    try:
        device = devices.get_nowait()
    except queue_module.Empty:
        device = None
    setup_worker(threads, device, progress)


def _job_device(cell: Cell) -> torch.device:
    assigned = WORKER.get("device")
    if assigned and (cell.device is None or cell.device.strip() == "cuda"):
        return torch.device(assigned)
    return pick_device(cell.device)


def _reporter(run_id: str, where: str, send: Callable[[Progress], None]) -> Reporter:
    last = [0.0]
    marker = os.environ.get(KILL_ONCE_VARIABLE)

    def report(step: int, total: int, terms: dict[str, float]) -> None:
        if marker and step * 2 > total and not Path(marker).exists():  # past half way: after a checkpoint at 1e
            Path(marker).write_text(f"{where}\n")
            os.kill(os.getpid(), signal.SIGKILL)
        now = time.monotonic()
        if now - last[0] >= PROGRESS_EVERY_S or step == total:
            last[0] = now
            try:
                send((run_id, where, step, total, dict(terms)))
            except Exception:  # noqa: BLE001 - the display is a convenience; training goes on
                pass

    return report


def run_in_worker(job: Job, send: Callable[[Progress], None] | None = None) -> JobResult:
    """Do ``job`` in this worker process, with its cached registry and data."""
    registry = WORKER.get("registry")
    if registry is None:
        registry = WORKER["registry"] = get_registry()
        WORKER["cache"] = DataCache()
    cell = job.cell
    device = _job_device(cell)
    where = f"{socket.gethostname()}:{os.getpid()} {device}"
    progress = WORKER.get("progress")
    send = send or (progress.put if progress is not None else (lambda message: None))
    return work_job(job, registry, WORKER["cache"], _reporter(cell.run_id, where, send), device)


# -- the driver loop ---------------------------------------------------------------------------


@dataclass
class _Running:
    job: Job
    cell: Cell
    report: Reporter | None
    beat: float = field(default_factory=time.monotonic)
    placed: bool = False


def run_concurrent(cells: list[Cell], backend: Backend, store: Store, registry: Registry, callbacks: GridCallbacks, poll_s: float) -> GridRun:
    """Run ``cells`` on ``backend``'s workers (see the module docstring); the outcomes are in the
    order they finished. The backend is closed at the end."""
    result = GridRun()
    cache = DataCache()  # the driver's, on the CPU: for the data fingerprints and the batch check
    pending: list[tuple[int, Cell]] = list(enumerate(cells))
    waiting: list[tuple[int, Cell]] = []
    waited: set[str] = set()
    running: dict[Any, _Running] = {}
    last_poll = time.monotonic()

    def finish(cell: Cell, index: int, outcome: Outcome) -> None:
        if outcome.status == "busy":
            waiting.append((index, cell))
            if callbacks.on_wait:
                callbacks.on_wait(cell, outcome, cell.run_id not in waited)
            waited.add(cell.run_id)
            return
        result.outcomes.append(outcome)
        if callbacks.on_done:
            callbacks.on_done(outcome)

    def fill() -> None:
        while pending and len(running) < backend.slots:
            index, cell = pending.pop(0)
            if cell.dataset in result.data_errors:
                continue
            try:
                prepared = prepare_cell(cell, store, registry, cache, torch.device("cpu"))
            except DataError as exc:
                skip_data_set(result, cells, index, cell, exc, callbacks)
                continue
            if isinstance(prepared, Outcome):
                finish(cell, index, prepared)
                continue
            report = callbacks.on_start(cell) if callbacks.on_start else None
            running[backend.start(prepared)] = _Running(prepared, cell, report)

    def collect(timeout: float, stopping: bool = False) -> None:
        for handle, returned in backend.wait(list(running), timeout):
            entry = running.pop(handle)
            if isinstance(returned, JobResult):
                outcome = commit_job(store, entry.job, returned)
            elif stopping:
                outcome = _lost(store, entry.job, "interrupted (Ctrl-C)", interrupted=True)
            else:
                outcome = _lost(store, entry.job, f"its worker was lost ({type(returned).__name__}: {returned})")
            if outcome.status != "interrupted":
                finish(entry.cell, cells.index(entry.cell), outcome)
        for run_id, where, step, total, terms in backend.progress():
            entry = next((e for e in running.values() if e.job.run_id == run_id), None)
            if entry is None:
                continue
            if not entry.placed and callbacks.on_where:
                callbacks.on_where(entry.cell, where)
            entry.placed = True
            if entry.report is not None:
                entry.report(step, total, terms)
        now = time.monotonic()
        for entry in running.values():
            if entry.job.kind == "train" and now - entry.beat >= HEARTBEAT_EVERY_S:
                entry.beat = now
                store.heartbeat(entry.job.run_id)

    interrupted = False
    try:
        while pending or running or waiting:
            fill()
            if not pending and waiting and time.monotonic() - last_poll >= poll_s:
                pending.extend(waiting)
                waiting.clear()
                last_poll = time.monotonic()
                continue
            if running:
                collect(0.25)
            else:
                time.sleep(min(poll_s, 0.25))
    except KeyboardInterrupt:
        interrupted = True
        pending.clear()
        _stop(store, backend, running, collect)
        raise
    finally:
        backend.close(interrupted)
    return result


def _stop(store: Store, backend: Backend, running: dict[Any, _Running], collect: Callable[..., None]) -> None:
    """Ctrl-C: ask the running jobs to stop, store what they return within the grace time (a
    second Ctrl-C stops waiting) and mark the rest interrupted."""
    backend.interrupt(list(running))
    deadline = time.monotonic() + INTERRUPT_GRACE_S
    try:
        while running and time.monotonic() < deadline:
            collect(0.25, stopping=True)
    except KeyboardInterrupt:
        pass
    for entry in running.values():
        _lost(store, entry.job, "interrupted (Ctrl-C)", interrupted=True)
    running.clear()


def _lost(store: Store, job: Job, why: str, interrupted: bool = False) -> Outcome:
    """A job whose worker returned nothing: its training run is recorded as interrupted (it resumes
    from its last training checkpoint) or as crashed; an evaluation is simply retried next time."""
    cell = job.cell
    outcome = Outcome(job.run_id, cell.method, cell.dataset, cell.seed, status="interrupted" if interrupted else "error",
                      reused=job.kind == "evaluate", message=f"run {job.run_id} ({cell.method}, seed {cell.seed}): {why}")
    if job.kind == "train":
        status = "interrupted" if interrupted else "error"
        store.finish_run(job.run_id, status=status, error=f"{why}; the same command " + ("resumes it" if interrupted else "retrains it"))
    return outcome


# -- the local process pool --------------------------------------------------------------------


@dataclass(eq=False)
class _Handle:
    job: Job
    future: Future  # type: ignore[type-arg]
    generation: int
    attempts: int = 1


class LocalPool:
    """A :class:`Backend` of ``jobs`` worker processes on this machine (spawned; CPU threads
    divided between them, GPUs shared round robin). A pool whose worker died is replaced and the
    jobs it held are submitted once more (they resume from their training checkpoints)."""

    #: how many times a job is submitted at most (1 + retries after a dead worker)
    MAX_ATTEMPTS = 2

    def __init__(self, jobs: int, threads: int | None = None) -> None:
        if jobs < 1:
            raise SetupError(f"--jobs {jobs}: give a number of worker processes >= 1")
        self.slots = jobs
        self.threads = threads or worker_threads(jobs)
        self._ctx = multiprocessing.get_context("spawn")
        self._progress = self._ctx.Queue()
        self._generation = 0
        self._pool = self._new_pool()

    def _new_pool(self) -> ProcessPoolExecutor:
        devices = self._ctx.Queue()
        for device in worker_devices(self.slots):
            devices.put(device)
        return ProcessPoolExecutor(self.slots, mp_context=self._ctx, initializer=_init_pool_worker,
                                   initargs=(self.threads, devices, self._progress))

    def _replace_pool(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
        self._generation += 1
        self._pool = self._new_pool()

    def start(self, job: Job) -> _Handle:
        try:
            future = self._pool.submit(run_in_worker, job)
        except BrokenProcessPool:  # a worker died since the last wait: its jobs are resubmitted there, by generation
            self._replace_pool()
            future = self._pool.submit(run_in_worker, job)
        return _Handle(job, future, self._generation)

    def wait(self, handles: list[_Handle], timeout: float) -> list[tuple[_Handle, JobResult | BaseException]]:
        done, _ = wait([h.future for h in handles], timeout=timeout, return_when=FIRST_COMPLETED)
        out: list[tuple[_Handle, JobResult | BaseException]] = []
        broken = False
        for handle in handles:
            if handle.future not in done:
                continue
            try:
                out.append((handle, handle.future.result()))
            except BrokenProcessPool as exc:
                if handle.attempts >= self.MAX_ATTEMPTS:
                    out.append((handle, exc))
                    continue
                if handle.generation == self._generation and not broken:
                    broken = True
                    self._replace_pool()
                handle.attempts += 1
                handle.generation = self._generation
                handle.future = self._pool.submit(run_in_worker, handle.job)
            except BaseException as exc:  # noqa: BLE001 - e.g. a result that could not be sent back
                out.append((handle, exc))
        return out

    def progress(self) -> list[Progress]:
        messages = []
        while True:
            try:
                messages.append(self._progress.get_nowait())
            except (queue_module.Empty, OSError, EOFError):
                return messages

    def interrupt(self, handles: list[_Handle]) -> None:
        for process in list(getattr(self._pool, "_processes", {}).values()):
            try:
                os.kill(process.pid, signal.SIGINT)
            except (ProcessLookupError, PermissionError):
                pass

    def close(self, interrupted: bool = False) -> None:
        if interrupted:
            for process in list(getattr(self._pool, "_processes", {}).values()):
                process.terminate()
        self._pool.shutdown(wait=not interrupted, cancel_futures=True)


class LocalExecutor:
    """``--executor local --jobs N``: the grid on N worker processes of this machine (see :class:`LocalPool`)."""

    def __init__(self, store: Store, registry: Registry, jobs: int, threads: int | None = None) -> None:
        self.store, self.registry = store, registry
        self.pool = LocalPool(jobs, threads)  # checks its options; spawns nothing before the first job

    def run_all(self, cells: list[Cell], callbacks: GridCallbacks, poll_s: float) -> GridRun:
        return run_concurrent(cells, self.pool, self.store, self.registry, callbacks, poll_s)


#: the executors ``--executor`` chooses from
EXECUTORS = ("in-process", "local", "ray")
#: ``--executor local`` without ``--jobs``: one worker per CPU, at most this many
DEFAULT_MAX_JOBS = 8


def make_executor(kind: str | None, store: Store, registry: Registry, jobs: int | None = None, ray_address: str | None = None,
                  cpus_per_run: float | None = None, gpus_per_run: float | None = None) -> Any:
    """The executor ``--executor KIND`` names (default in-process; ``--jobs N`` alone means local),
    checked before any work: a :class:`SetupError` says what is wrong with the options."""
    from sslbench.engine.runner import InProcessExecutor

    kind = (kind or ("local" if jobs is not None else "in-process")).strip().lower()
    if kind not in EXECUTORS:
        raise SetupError(f"--executor {kind!r}: choose {', '.join(EXECUTORS)}")
    ray_options = [name for name, value in (("--ray-address", ray_address), ("--cpus-per-run", cpus_per_run), ("--gpus-per-run", gpus_per_run)) if value is not None]
    if kind != "ray" and ray_options:
        raise SetupError(f"{', '.join(ray_options)} {'apply' if len(ray_options) > 1 else 'applies'} to --executor ray only (this run uses --executor {kind})")
    if kind != "local" and jobs is not None:
        raise SetupError(f"--jobs applies to --executor local (this run uses --executor {kind}; Ray sizes itself by --cpus-per-run)")
    if kind == "in-process":
        return InProcessExecutor(store, registry)
    if kind == "local":
        return LocalExecutor(store, registry, jobs if jobs is not None else min(DEFAULT_MAX_JOBS, os.cpu_count() or 1))
    from sslbench.engine.ray_executor import RayExecutor

    gpus = gpus_per_run if gpus_per_run is not None else (1.0 if torch.cuda.is_available() else 0.0)
    return RayExecutor(store, registry, ray_address, cpus_per_run or 1.0, gpus)


__all__ = ["Backend", "EXECUTORS", "make_executor", "KILL_ONCE_VARIABLE", "LocalExecutor", "LocalPool", "WORKER", "run_concurrent", "run_in_worker",
           "setup_worker", "worker_devices", "worker_threads"]

"""``--executor ray``: a grid's cells as Ray tasks, on a local Ray instance or a cluster.

Each job (:class:`~sslbench.engine.jobs.Job`) is one ``ray.remote`` task with declared resources
(``--cpus-per-run``, torch threads follow it; ``--gpus-per-run``, fractional so that several small
runs share one GPU) and ``max_retries=2``: a task whose worker dies is run again, and resumes from
the training checkpoint the dead one left in the run folder. The driver (:func:`run_concurrent`) is
the only writer of the store and stores each result the moment its task returns; the tasks write
only into their run's folder, which must therefore be reachable from every node at the same path
(this machine, or a cluster's shared results folder: ``--home /shared/sslbench``). Data are loaded
once per Ray worker process (module-level cache in :mod:`sslbench.engine.executors`).

``ray.init(address=...)``: a local instance by default, ``--ray-address`` (or ``RAY_ADDRESS``) joins
a running cluster. Ray is an optional extra: ``pip install "sslbench[ray]"``.
"""

from __future__ import annotations

import os
from typing import Any

from sslbench.engine.cells import Cell
from sslbench.engine.executors import KILL_ONCE_VARIABLE, Progress, run_concurrent, run_in_worker, setup_worker
from sslbench.engine.jobs import Job, JobResult
from sslbench.engine.plugins import Registry
from sslbench.engine.runner import GridCallbacks, GridRun
from sslbench.engine.store import Store
from sslbench.engine.train import SetupError

#: what to tell a user whose Python has no Ray
INSTALL_HINT = 'Ray is not installed: pip install "sslbench[ray]" (or pip install "ray>=2.9"), or use --executor local --jobs N'
#: environment variables of the driver that travel with every task
FORWARDED = ("SSLBENCH_LOAD_PLUGINS", "SSLBENCH_CACHE", KILL_ONCE_VARIABLE)


def import_ray() -> Any:
    """The ``ray`` module, or :class:`SetupError` saying how to install it."""
    try:
        import ray
    except ImportError:
        raise SetupError(INSTALL_HINT) from None
    return ray


def _ray_task(job: Job, threads: int, env: dict[str, str], progress: Any) -> JobResult:
    """The body of one Ray task: a worker set up for ``threads`` torch threads, with the driver's
    forwarded variables, doing ``job``; progress goes to the driver's queue actor."""
    os.environ.update(env)
    setup_worker(threads, None, None)

    def send(message: Progress) -> None:
        progress.put_nowait(message)

    return run_in_worker(job, send)


class RayBackend:
    """A :class:`~sslbench.engine.executors.Backend` on Ray (see the module docstring). ``num_cpus``
    sizes a local instance (default: this machine's CPUs); a cluster brings its own."""

    def __init__(self, address: str | None = None, cpus_per_run: float = 1.0, gpus_per_run: float = 0.0, num_cpus: int | None = None) -> None:
        ray = import_ray()
        if cpus_per_run <= 0:
            raise SetupError(f"--cpus-per-run {cpus_per_run}: give the CPUs each run uses, > 0 (e.g. 1 or 2)")
        if gpus_per_run < 0:
            raise SetupError(f"--gpus-per-run {gpus_per_run}: give a share of a GPU >= 0 (e.g. 0.125 for 8 runs per GPU)")
        self.ray = ray
        address = address or os.environ.get("RAY_ADDRESS") or None
        self._owned = not ray.is_initialized()
        if self._owned:
            options: dict[str, Any] = {"include_dashboard": False, "log_to_driver": False, "logging_level": "warning"}
            if address:
                options["address"] = address
            elif num_cpus is not None:
                options["num_cpus"] = num_cpus
            try:
                ray.init(**options)
            except ConnectionError as exc:
                raise SetupError(f"--ray-address {address}: cannot join that Ray cluster ({exc}); check the address "
                                 "(ray status on the head node prints it) or leave it out for a local instance") from None
        resources = ray.cluster_resources()
        slots = int(resources.get("CPU", 1) // cpus_per_run)
        if gpus_per_run > 0:
            gpus = resources.get("GPU", 0)
            if gpus < gpus_per_run:
                raise SetupError(f"--gpus-per-run {gpus_per_run}: the Ray cluster has {gpus:g} GPUs; give 0, or add GPU nodes")
            slots = min(slots, int(gpus // gpus_per_run))
        if slots < 1:
            raise SetupError(f"--cpus-per-run {cpus_per_run:g}: the Ray cluster has only {resources.get('CPU', 0):g} CPUs")
        self.slots = slots
        self.threads = max(1, int(cpus_per_run))
        self._env = {k: os.environ[k] for k in FORWARDED if k in os.environ}
        from ray.util.queue import Queue

        self._progress = Queue(actor_options={"num_cpus": 0})
        self._task = ray.remote(_ray_task).options(num_cpus=cpus_per_run, num_gpus=gpus_per_run, max_retries=2)

    def start(self, job: Job) -> Any:
        return self._task.remote(job, self.threads, self._env, self._progress)

    def wait(self, handles: list[Any], timeout: float) -> list[tuple[Any, JobResult | BaseException]]:
        ready, rest = self.ray.wait(handles, num_returns=1, timeout=timeout)
        if ready and rest:
            more, _ = self.ray.wait(rest, num_returns=len(rest), timeout=0)
            ready += more
        out: list[tuple[Any, JobResult | BaseException]] = []
        for ref in ready:
            try:
                out.append((ref, self.ray.get(ref)))
            except Exception as exc:  # noqa: BLE001 - the task failed after its retries, or was cancelled
                out.append((ref, exc))
        return out

    def progress(self) -> list[Progress]:
        try:
            size = self._progress.qsize()
            return list(self._progress.get_nowait_batch(size)) if size else []
        except Exception:  # noqa: BLE001 - the display is a convenience
            return []

    def interrupt(self, handles: list[Any]) -> None:
        for ref in handles:
            self.ray.cancel(ref)

    def close(self, interrupted: bool = False) -> None:
        try:
            self.ray.kill(self._progress.actor)
        except Exception:  # noqa: BLE001
            pass
        if self._owned:
            self.ray.shutdown()


class RayExecutor:
    """``--executor ray``: the grid as Ray tasks (see the module docstring)."""

    def __init__(self, store: Store, registry: Registry, address: str | None = None, cpus_per_run: float = 1.0,
                 gpus_per_run: float = 0.0, num_cpus: int | None = None) -> None:
        self.store, self.registry = store, registry
        self.backend = RayBackend(address, cpus_per_run, gpus_per_run, num_cpus)  # starts or joins Ray; checks the options

    def run_all(self, cells: list[Cell], callbacks: GridCallbacks, poll_s: float) -> GridRun:
        return run_concurrent(cells, self.backend, self.store, self.registry, callbacks, poll_s)


__all__ = ["INSTALL_HINT", "RayBackend", "RayExecutor", "import_ray"]

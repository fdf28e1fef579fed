"""``--executor ray`` on a real local Ray instance (2 CPUs, shared by the tests of this module):
it stores exactly the in-process numbers, and a Ray worker killed mid-task is retried by Ray,
resumes from its training checkpoint and is stored once. Skipped when Ray is not installed."""

from __future__ import annotations

import pytest

ray = pytest.importorskip("ray")

from sslbench.engine.executors import KILL_ONCE_VARIABLE  # noqa: E402
from sslbench.engine.ray_executor import RayExecutor  # noqa: E402
from sslbench.engine.runner import run_grid  # noqa: E402
from sslbench.engine.store import Store  # noqa: E402

from test_executors import assert_same_and_once, reference, small_grid  # noqa: E402, F401 - the shared fixture

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module", autouse=True)
def ray_instance():  # type: ignore[no-untyped-def]
    """One local Ray instance with 2 CPUs for the module (Ray's start-up takes seconds)."""
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, logging_level="error")
    yield
    ray.shutdown()


def test_ray_with_two_cpus_stores_exactly_the_in_process_numbers(registry, reference, tmp_path) -> None:  # type: ignore[no-untyped-def]
    store = Store(tmp_path / "home")
    cells = small_grid(registry)
    where: dict[str, str] = {}
    executor = RayExecutor(store, registry, cpus_per_run=1, gpus_per_run=0)
    assert executor.backend.slots == 2
    grid = run_grid(cells, executor, on_where=lambda cell, at: where.__setitem__(cell.run_id, at))
    assert [o.status for o in grid.outcomes] == ["done"] * 4, [o.message for o in grid.outcomes]
    assert_same_and_once(store, reference, cells)
    assert len(where) == 4  # every task reported where it ran
    assert ray.is_initialized()  # an instance the executor joined is left running


def test_a_killed_ray_worker_is_retried_resumes_and_is_stored_once(registry, reference, tmp_path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    marker = tmp_path / "killed"
    monkeypatch.setenv(KILL_ONCE_VARIABLE, str(marker))  # forwarded to the tasks: the first past half its training dies
    store = Store(tmp_path / "home")
    cells = small_grid(registry)
    grid = run_grid(cells, RayExecutor(store, registry, cpus_per_run=1, gpus_per_run=0))
    assert marker.is_file(), "no Ray worker was killed"
    assert [o.status for o in grid.outcomes] == ["done"] * 4, [o.message for o in grid.outcomes]
    assert_same_and_once(store, reference, cells)
    resumed = [o for o in grid.outcomes if o.message.startswith("resumed run")]
    assert len(resumed) == 1 and store.get_run(resumed[0].run_id).effort["segments"] == 2

"""The store's records: a run's row as :class:`RunRecord`, its statuses, and who owns a run that is
being trained (``host:pid``, with a heartbeat) and whether that owner is still alive, so that a run
whose process died is shown ``interrupted`` and may be taken over (never ``running`` forever)."""

from __future__ import annotations

import json
import os
import socket
import sqlite3
import time
from dataclasses import dataclass, field, fields
from typing import Any

#: a run row's status: done, failed (diverged), error (crashed), running, interrupted, superseded
#: (an older result of the same run id, replaced by a retrain; kept, hidden unless asked for)
RUN_STATUSES = ("done", "failed", "error", "running", "interrupted", "superseded", "stale")
#: ``stale`` is not stored: it is a done or failed result the current code would not make
#: (:func:`sslbench.engine.reuse.stale_runs`), shown and filtered by ``sslbench results``

#: statuses whose row holds a result worth keeping: a retrain keeps it until its replacement is stored
RESULT_STATUSES = ("done", "failed")

#: a running row whose owner is on another host and has not beaten for this long is interrupted
HEARTBEAT_TIMEOUT_S = 600.0


class RunClaimed(RuntimeError):
    """Another live process is training this run (see :meth:`Store.start_run`)."""

    def __init__(self, run_id: str, owner: str) -> None:
        super().__init__(f"run {run_id} is being trained by {owner}")
        self.run_id, self.owner = run_id, owner


def owner_id() -> str:
    """``host:pid`` of this process, the owner recorded with a run it trains."""
    return f"{socket.gethostname()}:{os.getpid()}"


def owner_alive(owner: str | None, heartbeat: float | None, now: float | None = None) -> bool:
    """Whether the process ``host:pid`` that claimed a run is still there: on this host, by its pid;
    elsewhere, by a heartbeat younger than :data:`HEARTBEAT_TIMEOUT_S`."""
    if not owner:
        return False
    host, _, pid = owner.rpartition(":")
    if host == socket.gethostname():
        try:
            os.kill(int(pid), 0)
        except (ProcessLookupError, ValueError):
            return False
        except PermissionError:  # alive, owned by another user
            return True
        return True
    return heartbeat is not None and (now or time.time()) - heartbeat < HEARTBEAT_TIMEOUT_S



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
    provenance: dict[str, Any] = field(default_factory=dict)
    owner: str | None = None
    heartbeat: float | None = None
    folder: str | None = None
    superseded_by: str | None = None
    #: how much training the result took: steps, images, training checkpoints written, segments
    effort: dict[str, Any] = field(default_factory=dict)
    #: a retrain of this run under way (or interrupted): ``{"owner", "started", "alive"}``, else None
    replacement: dict[str, Any] | None = None

    @classmethod
    def from_row(cls, row: sqlite3.Row) -> "RunRecord":
        d = {k: v for k, v in dict(row).items() if k in _RECORD_FIELDS}
        for key in ("protocol", "config", "history", "environment", "provenance", "effort"):
            d[key] = json.loads(d[key]) if d.get(key) else {}
        record = cls(**d)
        if record.status == "running" and not owner_alive(record.owner, record.heartbeat or record.started):
            record.status = "interrupted"  # its process died or was stopped: never "running" forever
        return record

    @property
    def folder_name(self) -> str:
        """The run's folder under ``runs/`` (its id, or a fresh name when it replaced another)."""
        return self.folder or self.id


_RECORD_FIELDS = {f.name for f in fields(RunRecord)}



__all__ = ["HEARTBEAT_TIMEOUT_S", "RESULT_STATUSES", "RUN_STATUSES", "RunClaimed", "RunRecord", "owner_alive", "owner_id"]

"""Training checkpoints: a run's whole training state written while it trains, so that a killed,
pre-empted or interrupted run continues where it stopped instead of starting again.

The state (:func:`capture` / :func:`restore`) is everything the loop's next step depends on: the
model's and the optimiser's state dicts, the batch-order/augmentation generator, the global CPU
(and CUDA) random number generators that methods draw noise from, the epoch, the position in the
epoch's permutation, the running loss sums, the history so far, the training time and counters.
Restored into the same code on the same device, the rest of the run is the same computation: on
CPU the resumed run ends bit for bit where the uninterrupted one does (tests/test_resume.py).

The file (``train_state.pt`` in the run's folder) is written through
:func:`sslbench.sdk.files.atomic_path` (a temporary file named by this process, fsync'd, renamed),
so a process killed while writing leaves the previous checkpoint, never a torn one; it is loaded
with ``weights_only=True`` and only when its ``meta`` (run id, the run's key digest and code
provenance) matches the run being resumed.

When (:class:`CheckpointPolicy`): ``--checkpoint-every`` takes a time (``30s``, ``10m``, ``1h``),
a number of epochs (``1e``) or of steps (``500steps``), or ``off``. The default, ``auto``, writes
one every 10 minutes of training, and at an epoch's end once the training since the last one is at
least 100 times what writing the last one took: checkpoints cost at most about 1% of training time
(``benchmarks/bench_checkpoint.py`` measures it), and a run of long epochs is saved at every epoch.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from sslbench.sdk.files import atomic_path

#: the training-state file inside a run's folder
STATE_NAME = "train_state.pt"
#: format of the state; a state of another version is not resumed (the run starts again)
STATE_VERSION = 1
#: under ``auto``: a checkpoint at an epoch end needs this many times the last write's duration of training since
AUTO_COST_RATIO = 100.0
#: under ``auto``: a checkpoint in the middle of an epoch after this much training (seconds)
AUTO_EVERY_S = 600.0


class PolicyError(ValueError):
    """``--checkpoint-every`` was given something that is not a time, an epoch or step count, or off."""


@dataclass(frozen=True)
class CheckpointPolicy:
    """When the loop writes a training checkpoint (see the module docstring)."""

    every_s: float | None = AUTO_EVERY_S
    every_epochs: int | None = None
    every_steps: int | None = None
    auto: bool = True

    @classmethod
    def parse(cls, text: str | None) -> "CheckpointPolicy":
        """``auto`` (default), ``off``, ``30s`` / ``10m`` / ``2h``, ``1e`` (epochs), ``500steps``.
        ``off`` writes no periodic checkpoint; Ctrl-C still writes one, so the run can resume."""
        value = (text or "auto").strip().lower()
        if value == "auto":
            return cls()
        if value in ("off", "never", "0"):
            return cls(every_s=None, auto=False)
        m = re.fullmatch(r"(\d+(?:\.\d+)?)\s*(s|m|h|e|epochs?|steps?)", value)
        if not m or float(m.group(1)) <= 0:
            raise PolicyError(
                f"--checkpoint-every {text!r}: write a time (30s, 10m, 1h), a number of epochs (1e), "
                "a number of steps (500steps), auto or off"
            )
        number, unit = float(m.group(1)), m.group(2)
        if unit in ("s", "m", "h"):
            return cls(every_s=number * {"s": 1, "m": 60, "h": 3600}[unit], auto=False)
        if unit.startswith("e"):
            return cls(every_s=None, every_epochs=max(1, int(number)), auto=False)
        return cls(every_s=None, every_steps=max(1, int(number)), auto=False)

    @property
    def off(self) -> bool:
        return not (self.auto or self.every_s or self.every_epochs or self.every_steps)


@dataclass
class Checkpointer:
    """Writes a run's training state to ``path`` as its :class:`CheckpointPolicy` says; ``meta``
    identifies the run (checked on resume)."""

    path: Path
    policy: CheckpointPolicy = field(default_factory=CheckpointPolicy)
    meta: dict[str, Any] = field(default_factory=dict)
    writes: int = 0
    write_seconds: float = 0.0
    _last_write_s: float = 0.0
    _since: float = field(default_factory=time.perf_counter)

    def due(self, step: int, epoch_end: bool, epoch: int) -> bool:
        """Whether to write now: after ``step`` (1-based), and at an epoch's end (``epoch`` done, 1-based)."""
        p = self.policy
        waited = time.perf_counter() - self._since
        if p.every_steps and step % p.every_steps == 0:
            return True
        if epoch_end and p.every_epochs and epoch % p.every_epochs == 0:
            return True
        if p.every_s is not None and waited >= p.every_s:
            return True
        return bool(p.auto and epoch_end and waited >= AUTO_COST_RATIO * max(self._last_write_s, 1e-3))

    def write(self, state: dict[str, Any]) -> None:
        t0 = time.perf_counter()
        state = {"version": STATE_VERSION, "meta": self.meta, **state}
        with atomic_path(self.path) as tmp:
            torch.save(state, tmp)
        self._last_write_s = time.perf_counter() - t0
        self.write_seconds += self._last_write_s
        self.writes += 1
        self._since = time.perf_counter()

    def clear(self) -> None:
        """Remove the state once the run is stored (it is only for resuming)."""
        self.path.unlink(missing_ok=True)


def load_state(path: Path, meta: dict[str, Any], device: torch.device) -> dict[str, Any] | None:
    """The training state at ``path`` if it is readable, of this format and of the run ``meta``
    names; None otherwise (the run then starts from the beginning)."""
    if not path.is_file():
        return None
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception:  # noqa: BLE001 - unreadable: start again rather than resume from it
        return None
    if not isinstance(state, dict) or state.get("version") != STATE_VERSION or state.get("meta") != meta:
        return None
    return state


def rng_state(device: torch.device) -> dict[str, Any]:
    """The global random number generators a method may draw from (CPU, and the device's CUDA one)."""
    out: dict[str, Any] = {"cpu": torch.get_rng_state()}
    if device.type == "cuda":
        out["cuda"] = torch.cuda.get_rng_state(device)
    return out


def set_rng_state(state: dict[str, Any], device: torch.device) -> None:
    torch.set_rng_state(state["cpu"])
    if device.type == "cuda" and "cuda" in state:
        torch.cuda.set_rng_state(state["cuda"], device)


__all__ = ["AUTO_COST_RATIO", "AUTO_EVERY_S", "CheckpointPolicy", "Checkpointer", "PolicyError", "STATE_NAME", "load_state", "rng_state", "set_rng_state"]

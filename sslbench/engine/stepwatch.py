"""What the training loop watches at every step without stopping the device: whether the loss is
finite, and how long augmentation took.

On CPU a host-device synchronisation costs nothing, so the loss is checked at every step before the
backward pass (a divergence raises before the optimiser moves). On CUDA (and MPS) each
``bool(tensor)`` or ``float(tensor)`` would wait for all queued work and make small models
launch-bound, so :class:`LossWatch` keeps each step's finiteness flag and loss terms on the device
and :meth:`LossWatch.look` checks them in one go (every ``report_every`` steps, at each history
point, before a checkpoint, at epoch end); :class:`Diverged` still names the first bad step and its
terms. :class:`AugmentTimer` times augmentation with CUDA events there, since a host clock read after
queueing work measures nothing, and a synchronisation before it would absorb the previous step's
backward and optimiser work.
"""

from __future__ import annotations

import math
import time
from typing import Any, Callable

import torch


class Diverged(RuntimeError):
    """A loss term became NaN or infinite; ``step`` says when (1-based)."""

    def __init__(self, step: int, terms: dict[str, float]) -> None:
        bad = ", ".join(f"{k}={v}" for k, v in terms.items() if not math.isfinite(v))
        super().__init__(f"diverged at step {step}: {bad}")
        self.step = step
        self.terms = terms


def defers(device: torch.device) -> bool:
    """Whether checks on ``device`` are deferred (everything but the CPU)."""
    return device.type != "cpu"


class LossWatch:
    """Per-step loss checks: immediate (``defer`` False) or kept on the device until :meth:`look`."""

    def __init__(self, defer: bool) -> None:
        self.defer = defer
        self._steps: list[int] = []
        self._flags: list[torch.Tensor] = []
        self._terms: list[torch.Tensor] = []
        self._names: list[str] = []

    def check(self, step: int, terms: dict[str, torch.Tensor]) -> None:
        """Check step ``step``'s loss (``terms["loss"]``): raise :class:`Diverged` now when not
        deferring, else keep its finiteness flag and its terms on the device."""
        loss = terms["loss"]
        if not self.defer:
            if not bool(torch.isfinite(loss)):
                raise Diverged(step, {k: float(v.detach()) for k, v in terms.items()})
            return
        self._names = list(terms)
        self._steps.append(step)
        self._flags.append(torch.isfinite(loss.detach()).reshape(()))
        self._terms.append(torch.stack([v.detach().float().reshape(()) for v in terms.values()]))

    @property
    def pending(self) -> int:
        return len(self._steps)

    def look(self) -> None:
        """Check every step kept since the last look (one synchronisation); raise
        :class:`Diverged` for the first step whose loss was not finite."""
        if not self._flags:
            return
        flags = torch.stack(self._flags)
        steps, rows = self._steps, self._terms
        self._steps, self._flags, self._terms = [], [], []
        if bool(flags.all()):
            return
        first = int((~flags).nonzero()[0, 0])
        values = rows[first].tolist()
        raise Diverged(steps[first], dict(zip(self._names, values)))


def as_floats(values: dict[str, torch.Tensor], scale: float = 1.0) -> dict[str, float]:
    """Each 0-d tensor of ``values`` as a float divided by ``scale``, read in one transfer (a stack
    and one ``.tolist()``) rather than one ``float()`` per term; the same numbers."""
    if not values:
        return {}
    read = torch.stack([v.detach().reshape(()) for v in values.values()]).tolist()
    return {k: v / scale for k, v in zip(values, read)}


class AugmentTimer:
    """Seconds spent augmenting: a host clock on CPU, CUDA events on CUDA (read when the loop looks,
    i.e. when it synchronises anyway). ``event`` makes an event (tests pass a fake)."""

    def __init__(self, device: torch.device, event: Callable[[], Any] | None = None) -> None:
        self.events = device.type == "cuda" or event is not None
        self._event = event or (lambda: torch.cuda.Event(enable_timing=True))
        self._pairs: list[tuple[Any, Any]] = []
        self._host = 0.0
        self._t0 = 0.0
        self._start: Any = None

    def start(self) -> None:
        if self.events:
            self._start = self._event()
            self._start.record()
        else:
            self._t0 = time.perf_counter()

    def stop(self) -> None:
        if self.events:
            end = self._event()
            end.record()
            self._pairs.append((self._start, end))
        else:
            self._host += time.perf_counter() - self._t0

    def take(self) -> float:
        """The seconds timed since the last take (waits for the recorded events to complete)."""
        seconds, self._host = self._host, 0.0
        for start, end in self._pairs:
            end.synchronize()
            seconds += start.elapsed_time(end) / 1000.0
        self._pairs = []
        return seconds


__all__ = ["AugmentTimer", "Diverged", "LossWatch", "as_floats", "defers"]

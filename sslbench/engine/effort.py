"""Training effort: budgets in units of effort, and what a run's training cost.

A budget may be given in epochs, optimiser steps, views or training FLOPs (``--epochs 2``,
``--steps 10000``, ``--views 1e7``, ``--flops 1.2e16``). Everything but epochs is converted to
optimiser steps before training (:func:`resolve_steps`), and a run stores both the budget as given and
the steps it became. Training FLOPs are counted, not estimated: one training step (forward, loss and
backward; not the optimiser update, not the augmentation) runs under
:class:`torch.utils.flop_counter.FlopCounterMode` on a copy of the method (:func:`count_step_flops`),
and a run's ``train_flops`` is that count times its steps. Every step of a run has the same shapes
(the loop drops the last incomplete batch), so the product is exact for what the counter counts:
matrix multiplications and convolutions, the bulk of the work.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass
from typing import Any, Mapping

import torch

from sslbench.sdk.api import ImageData, Method
from sslbench.sdk.protocol import Protocol
from sslbench.engine.limits import MAX_EPOCHS

#: the units a budget may be given in
BUDGET_UNITS = ("epochs", "steps", "views", "flops")
#: the largest budget accepted per unit (a typo's extra zeros fail before any work)
BUDGET_LIMITS = {"epochs": MAX_EPOCHS, "steps": 10**9, "views": 1e13, "flops": 1e24}
#: how much two runs' effort may differ before comparisons say so (relative to the smaller)
EFFORT_TOLERANCE = 0.10


class BudgetError(ValueError):
    """A budget that is not a positive number in a known unit, or beyond its limit."""


@dataclass(frozen=True)
class Budget:
    unit: str
    value: float

    def check(self) -> "Budget":
        if self.unit not in BUDGET_UNITS:
            raise BudgetError(f"unknown budget unit {self.unit!r}: give one of {', '.join(BUDGET_UNITS)}")
        if not (isinstance(self.value, (int, float)) and math.isfinite(self.value) and self.value > 0):
            raise BudgetError(f"a budget of {self.value!r} {self.unit}: give a positive number")
        if self.value > BUDGET_LIMITS[self.unit]:
            raise BudgetError(f"a budget of {self.value:g} {self.unit} is beyond the limit of {BUDGET_LIMITS[self.unit]:g}: check the number")
        if self.unit in ("epochs", "steps") and self.value != int(self.value):
            raise BudgetError(f"{self.unit} must be a whole number, not {self.value:g}")
        return self

    def to_dict(self) -> dict[str, Any]:
        value: float | int = int(self.value) if self.unit in ("epochs", "steps") else float(self.value)
        return {"unit": self.unit, "value": value}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "Budget":
        return cls(str(d["unit"]), d["value"])

    @property
    def label(self) -> str:
        unit = {"flops": "FLOPs"}.get(self.unit, self.unit)
        return f"{self.value:g} {unit}" if self.unit in ("views", "flops") else f"{int(self.value)} {unit}"


def pick_budget(epochs: int | None, steps: int | None, views: float | None, flops: float | None) -> Budget | None:
    """The steps, views or FLOPs budget given on a command line, or None when the budget is the
    command's epochs (checked with the seeds, :mod:`sslbench.engine.limits`). Two at once is an error."""
    given = [Budget(unit, value) for unit, value in (("epochs", epochs), ("steps", steps), ("views", views), ("flops", flops)) if value is not None]
    if len(given) > 1:
        raise BudgetError(f"give one budget, not {' and '.join('--' + b.unit for b in given)}")
    return given[0].check() if given and given[0].unit != "epochs" else None


def views_per_image(method: Method, data: ImageData) -> int:
    """How many views of each image one step feeds the method (its augmentations, plus the
    un-augmented image when it asks for it; 2 for data sets of frame pairs)."""
    if data.train_next is not None:
        return 2
    return max(1, int(method.views) + int(bool(method.original)))


def step_shape(method: Method, data: ImageData, protocol: Protocol) -> tuple[int, int]:
    """(images per step, the training set size the loop draws from) for ``method`` on ``data``."""
    n = int((data.train_next >= 0).sum()) if data.train_next is not None else int(data.train_x.shape[0])
    per_step = protocol.images_per_step(method.name, method.family, views_per_image(method, data))
    return min(per_step, n), n


def count_step_flops(method: Method, data: ImageData, protocol: Protocol) -> float:
    """FLOPs of one training step of ``method`` (forward, loss, backward) at the run's batch shape,
    counted by ``FlopCounterMode`` on a deep copy, so the method, its buffers (BatchNorm statistics, a
    MoCo queue) and every random generator are left exactly as they were."""
    from torch.utils.flop_counter import FlopCounterMode

    from sslbench.engine.augment import make_views

    images, _ = step_shape(method, data, protocol)
    device = data.train_x.device
    clone = copy.deepcopy(method)
    clone.train()
    x = data.train_x[:images]
    if data.train_next is not None:
        both = make_views(torch.cat([x, x]), protocol.augment, views=1, original=False, g=torch.Generator(device=device).manual_seed(0))
        views = both.view(2, images, *both.shape[2:]).transpose(0, 1).contiguous()
    else:
        views = make_views(x, protocol.augment, clone.views, clone.original, torch.Generator(device=device).manual_seed(0))
    devices = [device] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices), FlopCounterMode(display=False) as counter:
        clone.loss(views)["loss"].backward()
    return float(counter.get_total_flops())


def resolve_steps(budget: Budget, images_per_step: int, views_per_image: int, flops_per_step: float) -> int:
    """The optimiser steps a steps, views or FLOPs budget buys: views and FLOPs round to the nearest
    whole step (so two methods given the same FLOPs differ by at most one step's worth), at least 1."""
    if budget.unit == "steps":
        return int(budget.value)
    if budget.unit == "views":
        return max(1, round(budget.value / (images_per_step * views_per_image)))
    if budget.unit == "flops":
        if flops_per_step <= 0:
            raise BudgetError("a FLOPs budget needs a method whose training step does counted work; this one counted 0 FLOPs")
        return max(1, round(budget.value / flops_per_step))
    raise BudgetError(f"a {budget.unit} budget is not converted to steps")


def effort_figures(steps: int, images: int, views_per_image: int, flops_per_step: float, budget: Budget | None, epochs: int) -> dict[str, Any]:
    """The effort keys every run stores beside its steps and images."""
    given = budget.to_dict() if budget is not None else {"unit": "epochs", "value": epochs}
    return {
        "views_seen": images * views_per_image, "views_per_image": views_per_image, "flops_per_step": flops_per_step,
        "train_flops": flops_per_step * steps, "budget": {**given, "steps": steps},
    }


def differs(a: float | None, b: float | None, tolerance: float = EFFORT_TOLERANCE) -> bool:
    """Whether two efforts differ by more than ``tolerance`` of the smaller (unknown: False)."""
    if a is None or b is None:
        return False
    lo, hi = sorted((float(a), float(b)))
    return hi > lo * (1 + tolerance) if lo > 0 else hi > 0


__all__ = [
    "BUDGET_LIMITS", "BUDGET_UNITS", "EFFORT_TOLERANCE", "Budget", "BudgetError", "count_step_flops", "differs",
    "effort_figures", "pick_budget", "resolve_steps", "step_shape", "views_per_image",
]

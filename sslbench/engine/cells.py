"""Cells: the units of work of a grid (method, data set, seed, protocol, budget), how a run id is
derived from one, and how a grid of them is built and validated from names and ``-p`` parameters.

A :class:`Cell` is a plain, JSON-serialisable description of one unit of work; the runner
(:mod:`sslbench.engine.runner`) executes it.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field, replace
from typing import Any, Iterable, Sequence, Sized

from sslbench.sdk.api import ParamError
from sslbench.sdk.protocol import Protocol
from sslbench.engine.effort import Budget, BudgetError
from sslbench.engine.limits import LimitError, check_budget
from sslbench.engine.dataroot import resolve_data_dir
from sslbench.engine.checkpoint import CheckpointPolicy, PolicyError
from sslbench.engine.plugins import Registry
from sslbench.engine.precision import check_precision
from sslbench.engine.train import pick_device


def digest(obj: Any, n: int = 16) -> str:
    """The first ``n`` hex digits of the SHA-256 of ``obj`` as sorted JSON. A run id is the digest
    of :meth:`Cell.key`; changing this function changes every run id."""
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=list).encode()).hexdigest()[:n]


@dataclass
class Cell:
    """One unit of work. Everything that changes the trained model is in :meth:`key`; where the data
    live, which device runs it and which evaluators follow are not."""

    method: str
    dataset: str
    seed: int
    epochs: int
    protocol: dict[str, Any]
    method_params: dict[str, Any] = field(default_factory=dict)
    dataset_params: dict[str, Any] = field(default_factory=dict)
    precision: str = "fp32"
    evaluators: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    selection: str = "val"
    data_dir: str | None = None
    device: str | None = None
    force: bool = False
    suite: str | None = None
    #: reuse a stored result even when the code or data that made it have changed (``--reuse-stale``)
    reuse_stale: bool = False
    #: when to write training checkpoints (:class:`sslbench.engine.checkpoint.CheckpointPolicy`)
    checkpoint_every: str = "auto"
    #: torch.compile the method's loss (``--compile``); in the run's provenance, not its key
    compile: bool = False
    #: deterministic algorithms, cuDNN and cuBLAS (``--deterministic``); in the provenance on CUDA
    deterministic: bool = False
    #: a budget in optimiser steps, views or training FLOPs (:class:`~sslbench.engine.effort.Budget`
    #: as a dict), converted to steps before training; None: ``epochs`` is the budget
    budget: dict[str, Any] | None = None

    def key(self) -> dict[str, Any]:
        key = {
            "method": self.method,
            "method_params": self.method_params,
            "dataset": self.dataset,
            "dataset_params": self.dataset_params,
            "seed": self.seed,
            "epochs": self.epochs,
            "protocol": self.protocol,
            "precision": self.precision,
        }
        if self.budget is not None:  # absent for an epoch budget, so those run ids are unchanged
            key["budget"] = self.budget
        return key

    @property
    def budget_label(self) -> str:
        """The budget as a user wrote it: "2 epochs", "2000 steps", "1.2e+16 FLOPs"."""
        return Budget.from_dict(self.budget).label if self.budget else f"{self.epochs} epochs"

    @property
    def run_id(self) -> str:
        return digest(self.key())

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> "Cell":
        d = json.loads(text)
        d["evaluators"] = [(name, opts) for name, opts in d["evaluators"]]
        return cls(**d)


@dataclass
class Outcome:
    """What happened to a cell: ``status`` is done, failed (diverged) or error (crashed, or its
    stored checkpoint could not be loaded); ``busy`` while another live process trains it. ``errors`` are the evaluators (or the embedding) that
    failed on a run that is otherwise done; ``stale`` says why a stored result was retrained."""

    run_id: str
    method: str
    dataset: str
    seed: int
    status: str
    reused: bool = False
    message: str = ""
    evaluated: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    stale: list[str] = field(default_factory=list)

    @property
    def failed(self) -> bool:
        """Whether anything about this cell failed (the exit code of a grid says so)."""
        return self.status == "error" or bool(self.errors)


class GridError(ValueError):
    """The requested grid is invalid (unknown name, bad parameter); nothing was run."""


def split_params(assignments: Sequence[str]) -> dict[str, dict[str, str]]:
    """``["simvae.views=4", "knn.k_max=20"]`` -> ``{"simvae": {"views": "4"}, "knn": {"k_max": "20"}}``."""
    out: dict[str, dict[str, str]] = {}
    for item in assignments:
        owner_key, sep, value = item.partition("=")
        owner, dot, key = owner_key.partition(".")
        if not sep or not dot or not owner or not key:
            raise GridError(f"-p {item!r}: write OWNER.NAME=VALUE, e.g. -p simvae.views=4 or -p knn.k_max=20")
        out.setdefault(owner.strip(), {})[key.strip()] = value.strip()
    return out


def build_grid(
    registry: Registry,
    methods: Sequence[str],
    dataset: str,
    seeds: Iterable[int],
    epochs: int,
    evaluators: Sequence[str],
    params: dict[str, dict[str, Any]] | None = None,
    batch_size: int | None = None,
    precision: str = "fp32",
    selection: str = "val",
    data_dir: str | None = None,
    device: str | None = None,
    force: bool = False,
    suite: str | None = None,
    reuse_stale: bool = False,
    checkpoint_every: str = "auto",
    compile: bool = False,
    deterministic: bool = False,
    protocol: str = "uniform",
    budget: Budget | None = None,
) -> list[Cell]:
    """Validate names, parameters, seeds, epochs (:mod:`sslbench.engine.limits`) and the device up
    front (so a typo fails before any training) and return the cells, methods outermost. A device
    this machine lacks raises :class:`~sslbench.engine.train.SetupError`, the rest :class:`GridError`.

    ``protocol`` names a registered preset (``uniform``, ``paper``; an unknown name raises
    :class:`~sslbench.engine.plugins.UnknownNameError` with close matches): its method and evaluator
    settings are defaults a ``-p`` overrides. ``budget`` (steps, views or FLOPs) replaces ``epochs`` as the budget."""
    params = dict(params or {})
    seeds = seeds if isinstance(seeds, Sized) else list(seeds)
    if device:
        pick_device(device)
    ds_cls = registry.lookup("datasets", dataset)
    preset = registry.lookup("protocols", protocol)
    method_classes = [registry.lookup("methods", m) for m in methods]
    eval_classes = [registry.lookup("evaluators", e) for e in evaluators]
    if selection not in ("val", "test"):
        raise GridError(f"--select {selection!r}: choose val (validation split from train) or test")
    try:
        check_precision(precision)
    except ValueError as exc:
        raise GridError(str(exc)) from None
    try:
        CheckpointPolicy.parse(checkpoint_every)
    except PolicyError as exc:
        raise GridError(str(exc)) from None
    known = {dataset, *methods, *evaluators}
    stray = sorted(set(params) - known)
    if stray:
        raise GridError(f"-p names {', '.join(stray)}, which is not a method, dataset or evaluator of this run ({', '.join(sorted(known))})")
    try:
        named: Protocol = ds_cls.protocol_for(preset)
        if budget is not None:
            budget.check()
        ds_params = ds_cls.resolve(params.get(dataset, {}))
        ev = [(cls.name, cls.resolve({**named.evaluators.get(cls.name, {}), **params.get(cls.name, {})})) for cls in eval_classes]
        mparams = {
            cls.name: cls.resolve({**named.method_params(cls.name, cls.family, cls.declared_params()), **params.get(cls.name, {})})
            for cls in method_classes
        }
        check_budget(seeds, 0 if budget is not None else epochs)
    except (ParamError, LimitError, BudgetError) as exc:
        raise GridError(str(exc)) from None
    if batch_size:
        named = named.replace(batch_size=batch_size)
    folder = resolve_data_dir(ds_cls, data_dir)  # --data-dir, else the [data] config, else the data root
    cells = []
    for cls in method_classes:
        for seed in seeds:
            cells.append(Cell(
                method=cls.name, dataset=dataset, seed=seed, epochs=epochs if cls.trainable and budget is None else 0,
                budget=budget.to_dict() if budget is not None and cls.trainable else None, protocol=named.to_dict(), method_params=mparams[cls.name], dataset_params=ds_params,
                precision=precision, evaluators=ev, selection=selection, data_dir=folder, device=device,
                force=force, suite=suite, reuse_stale=reuse_stale, checkpoint_every=checkpoint_every,
                compile=compile, deterministic=deterministic,
            ))
    return cells


def with_numerics(cells: Sequence[Cell], compile: bool = False, deterministic: bool = False) -> list[Cell]:
    """``cells`` with ``--compile`` / ``--deterministic`` set (for grids built elsewhere, e.g. suites)."""
    return [replace(c, compile=compile or c.compile, deterministic=deterministic or c.deterministic) for c in cells]


def with_picture_evaluators(registry: Registry, evaluators: Sequence[str]) -> list[str]:
    """``evaluators`` plus every installed evaluator that writes pictures (``--save-images``)."""
    pictures = sorted(name for name, cls in registry.evaluators.items() if cls.on_save_images)
    if not pictures:
        raise GridError("--save-images needs an evaluator that writes pictures (such as 'samples'); no installed plugin registers one")
    return [*evaluators, *(name for name in pictures if name not in evaluators)]


__all__ = ["Cell", "Outcome", "GridError", "build_grid", "digest", "split_params", "with_numerics", "with_picture_evaluators"]

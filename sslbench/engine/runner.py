"""The runner: a grid of cells (method, dataset, seed, protocol, budget), each trained, embedded,
evaluated and stored.

A :class:`Cell` is a plain, JSON-serialisable description of one unit of work. The runner hands cells
to an executor; :class:`InProcessExecutor` runs them here, one after the other. A distributed executor
only has to accept the same JSON and call :func:`execute_cell` against the same store.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import traceback
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

import torch

from sslbench import __version__
from sslbench.sdk.api import BuildContext, DataError, EvalInputs, ImageData, Method, ParamError
from sslbench.sdk.data import validation_index
from sslbench.sdk.files import atomic_path
from sslbench.engine.plugins import Registry
from sslbench.sdk.protocol import Protocol
from sslbench.engine.decoding import train_frozen_decoder
from sslbench.engine.store import Store
from sslbench.engine.train import Diverged, Reporter, embed_all, pick_device, train


def _hash(obj: Any, n: int = 16) -> str:
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

    def key(self) -> dict[str, Any]:
        return {
            "method": self.method,
            "method_params": self.method_params,
            "dataset": self.dataset,
            "dataset_params": self.dataset_params,
            "seed": self.seed,
            "epochs": self.epochs,
            "protocol": self.protocol,
            "precision": self.precision,
        }

    @property
    def run_id(self) -> str:
        return _hash(self.key())

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> "Cell":
        d = json.loads(text)
        d["evaluators"] = [(name, opts) for name, opts in d["evaluators"]]
        return cls(**d)


@dataclass
class Outcome:
    """What happened to a cell: ``status`` is done, failed (diverged) or error (crashed)."""

    run_id: str
    method: str
    dataset: str
    seed: int
    status: str
    reused: bool = False
    message: str = ""
    evaluated: list[str] = field(default_factory=list)


class GridError(ValueError):
    """The requested grid is invalid (unknown name, bad parameter); nothing was run."""


def environment(device: torch.device) -> dict[str, Any]:
    import sklearn
    import torchvision

    env = {
        "sslbench": __version__,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "torchvision": torchvision.__version__,
        "scikit-learn": sklearn.__version__,
        "device": str(device),
        "threads": torch.get_num_threads(),
        "machine": platform.machine(),
    }
    if device.type == "cuda":
        env["gpu"] = torch.cuda.get_device_name(device)
    try:
        env["load_average"] = list(os.getloadavg())
    except OSError:
        pass
    return env


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
) -> list[Cell]:
    """Validate names and parameters up front (so a typo fails before any training) and return the
    cells, methods outermost."""
    params = dict(params or {})
    ds_cls = registry.lookup("datasets", dataset)
    method_classes = [registry.lookup("methods", m) for m in methods]
    eval_classes = [registry.lookup("evaluators", e) for e in evaluators]
    if selection not in ("val", "test"):
        raise GridError(f"--select {selection!r}: choose val (validation split from train) or test")
    if precision not in ("fp32", "bf16"):
        raise GridError(f"--precision {precision!r}: choose fp32 or bf16")
    known = {dataset, *methods, *evaluators}
    stray = sorted(set(params) - known)
    if stray:
        raise GridError(f"-p names {', '.join(stray)}, which is not a method, dataset or evaluator of this run ({', '.join(sorted(known))})")
    try:
        ds_params = ds_cls.resolve(params.get(dataset, {}))
        ev = [(cls.name, cls.resolve(params.get(cls.name, {}))) for cls in eval_classes]
        mparams = {cls.name: cls.resolve(params.get(cls.name, {})) for cls in method_classes}
    except ParamError as exc:
        raise GridError(str(exc)) from None
    protocol: Protocol = ds_cls.protocol
    if batch_size:
        protocol = protocol.replace(batch_size=batch_size)
    cells = []
    for cls in method_classes:
        for seed in seeds:
            cells.append(Cell(
                method=cls.name, dataset=dataset, seed=seed, epochs=epochs if cls.trainable else 0,
                protocol=protocol.to_dict(), method_params=mparams[cls.name], dataset_params=ds_params,
                precision=precision, evaluators=ev, selection=selection, data_dir=data_dir, device=device,
                force=force, suite=suite,
            ))
    return cells


class DataCache:
    """Data sets loaded once per process, moved to the device once."""

    def __init__(self) -> None:
        self._cache: dict[str, ImageData] = {}

    def get(self, registry: Registry, cell: Cell, device: torch.device) -> ImageData:
        key = _hash([cell.dataset, cell.dataset_params, cell.data_dir, str(device)])
        if key not in self._cache:
            plugin = registry.lookup("datasets", cell.dataset)()
            data = plugin.load(cell.data_dir, **cell.dataset_params)
            self._cache[key] = data.to(device)
        return self._cache[key]


def _build_method(registry: Registry, cell: Cell, data: ImageData, device: torch.device) -> Method:
    protocol = Protocol.from_dict(cell.protocol)
    ctx = BuildContext(
        protocol=protocol, image_shape=data.image_shape, num_train=data.train_x.shape[0],
        num_classes=data.num_classes, device=device, architectures=registry.architectures,
    )
    torch.manual_seed(cell.seed)
    cls = registry.lookup("methods", cell.method)
    return cls(ctx, **cell.method_params).to(device)


def _save_checkpoint(method: Method, path: Path) -> None:
    with atomic_path(path) as tmp:
        torch.save(method.state_dict(), tmp)


def execute_cell(cell: Cell, store: Store, registry: Registry, data_cache: DataCache | None = None, report: Reporter | None = None) -> Outcome:
    """Train (or reuse), checkpoint, embed, evaluate and store one cell. Never raises for a run that
    diverges or crashes: the outcome says so and the store records it."""
    device = pick_device(cell.device)
    data_cache = data_cache or DataCache()
    run_id = cell.run_id
    outcome = Outcome(run_id, cell.method, cell.dataset, cell.seed, status="done")
    data = data_cache.get(registry, cell, device)
    record = store.get_run(run_id)
    run_dir = store.run_dir(run_id)
    ckpt = store.checkpoint_path(run_id)
    protocol = Protocol.from_dict(cell.protocol)
    reusable = record is not None and not cell.force and (
        record.status == "failed" or (record.status == "done" and ckpt.is_file())
    )
    if reusable:
        assert record is not None
        outcome.reused = True
        if record.status == "failed":
            outcome.status, outcome.message = "failed", record.error or ""
            if cell.suite:
                store.set_suite(run_id, cell.suite)
            return outcome
        method = _build_method(registry, cell, data, device)
        method.load_state_dict(torch.load(ckpt, map_location=device, weights_only=True))
    else:
        env = environment(device)
        if data.note:  # what the data really are (e.g. "a lossy JPEG copy, not CIFAR-10") travels with the run
            env["data_note"] = data.note
        store.start_run(run_id, json.loads(cell.to_json()), cell.protocol, protocol.hash(), env, cell.suite)
        method = _build_method(registry, cell, data, device)
        try:
            result = train(method, data, protocol, cell.epochs, cell.seed, cell.precision, report)
        except Diverged as exc:
            store.finish_run(run_id, status="failed", error=str(exc), failed_step=exc.step)
            outcome.status, outcome.message = "failed", str(exc)
            return outcome
        except Exception as exc:  # noqa: BLE001 - one broken run must not stop the grid
            store.finish_run(run_id, status="error", error=f"{type(exc).__name__}: {exc}\n{traceback.format_exc(limit=8)}")
            outcome.status, outcome.message = "error", f"{type(exc).__name__}: {exc}"
            return outcome
        _save_checkpoint(method, ckpt)
        # evaluate the model as stored: load the checkpoint back with weights_only=True
        method = _build_method(registry, cell, data, device)
        method.load_state_dict(torch.load(ckpt, map_location=device, weights_only=True))
        store.finish_run(
            run_id, status="done", train_seconds=result.seconds, images_per_s=result.images_per_s,
            augment_share=result.augment_share, peak_memory_mb=result.peak_memory_mb, history=result.history,
        )
    outcome.evaluated = evaluate_cell(cell, method, data, store, registry, run_dir, device)
    return outcome


def evaluate_cell(cell: Cell, method: Method, data: ImageData, store: Store, registry: Registry, run_dir: Path, device: torch.device) -> list[str]:
    """Run each evaluator whose metrics (for these options and this selection rule) are not stored
    yet. An evaluator that does not apply, or crashes, is stored as a note; the others go on."""
    todo = [(n, o) for n, o in cell.evaluators if cell.force or not store.has_metrics(cell.run_id, n, o, cell.selection)]
    if not todo:
        return []
    train_z = embed_all(method, data.train_x)
    test_z = embed_all(method, data.test_x)
    inputs = EvalInputs(
        train_z=train_z, test_z=test_z, data=data, method=method, device=device, seed=cell.seed,
        selection=cell.selection, val_index=validation_index(data.train_y).to(device), run_dir=str(run_dir),
        decoder_factory=train_frozen_decoder,
    )
    done = []
    for name, options in todo:
        evaluator = registry.lookup("evaluators", name)()
        reason = evaluator.applies(inputs)
        if reason is None and not torch.isfinite(train_z).all():
            reason = "the representation contains NaN/inf"
        if reason is not None:
            store.put_metrics(cell.run_id, name, options, cell.selection, {}, note=f"skipped: {reason}")
            continue
        torch.manual_seed(cell.seed)
        try:
            values = evaluator.evaluate(inputs, **options)
        except Exception as exc:  # noqa: BLE001 - report, keep the other evaluators
            store.put_metrics(cell.run_id, name, options, cell.selection, {}, note=f"error: {type(exc).__name__}: {exc}")
            continue
        store.put_metrics(cell.run_id, name, options, cell.selection, values)
        done.append(name)
    return done


class InProcessExecutor:
    """Runs cells one after another in this process, sharing loaded data between them."""

    def __init__(self, store: Store, registry: Registry) -> None:
        self.store = store
        self.registry = registry
        self.data_cache = DataCache()

    def submit(self, cell: Cell, report: Reporter | None = None) -> Outcome:
        # the cell crosses the executor boundary as JSON, as it would to a remote worker
        return execute_cell(Cell.from_json(cell.to_json()), self.store, self.registry, self.data_cache, report)


def run_grid(cells: Sequence[Cell], executor: InProcessExecutor, on_start: Callable[[Cell], Reporter | None] | None = None, on_done: Callable[[Outcome], None] | None = None) -> list[Outcome]:
    """Submit every cell; a data error stops the grid (every later cell needs the same data)."""
    outcomes = []
    for cell in cells:
        report = on_start(cell) if on_start else None
        outcome = executor.submit(cell, report)
        outcomes.append(outcome)
        if on_done:
            on_done(outcome)
    return outcomes


__all__ = ["Cell", "Outcome", "GridError", "DataError", "build_grid", "execute_cell", "run_grid", "split_params", "InProcessExecutor"]

"""GPU benchmark: training throughput of every method under fp32, tf32 and bf16, eager and compiled,
then the aggregate throughput of 1, 2, 4 and 8 runs sharing one GPU through the local executor.

    python benchmarks/bench_gpu.py [--device cuda:0] [--budget 280] [--json bench_gpu.json]
    python benchmarks/bench_gpu.py --device cpu --quick        # the tiny form CI runs

Data are generated (random uint8 images shaped like MNIST, 1x28x28, under the ``mnist-mlp`` protocol,
and like CIFAR-10, 3x32x32, under ``colour-conv``): nothing is downloaded. Every installed trainable
method (the plugin registry) is built under each protocol with its default parameters; a method whose
constructor refuses the data is listed as not fitting. Each configuration -- data, method, precision
(fp32 = full IEEE fp32, tf32 = TF32 matmul/conv, bf16 = autocast), compiled or not -- first trains a
fresh model for two warm-up batches (cuDNN autotuning, the allocator, torch.compile), then a fresh
model for ``--steps`` steps through sslbench's own loop (:func:`sslbench.engine.train.train`), whose
figures are printed: steps/s, images/s, views/s (augmented views per second, the un-augmented first
view included) and peak memory (CUDA: max allocated during training; CPU: the process's peak RSS so
far, not per row). On CUDA the whole call is also timed with CUDA events (JSON ``event_seconds``).

The run stays within ``--budget`` seconds (default 280, under 5 minutes on any CUDA machine): eager
configurations first, then the executor table, then compiled configurations (bf16 first) while time
is left; each configuration not reached says so. ``--budget 0`` runs everything (a compile costs
10-60 s per configuration). The executor table trains ``--executor-method`` on 60,000 generated
MNIST-shaped images (fake IDX files in a temporary folder, loaded as ``--dataset mnist``) with
the local executor (``--executor local --jobs N``) for N runs at once on the one device, and reports their
aggregate images/s: all images trained over the span from the first run's start of training to the
last run's end (taken from the store), and its ratio to one run. It calls the engine's local executor
directly (what the command line's ``--executor local`` runs), so it needs no typer or rich.

Needs only PyTorch (2.4 or later), numpy and pluggy (sslbench's plugin manager) once sslbench is
installed with ``pip install --no-deps -e .``: Ray, pytorch-fid, tabulate, TensorBoard, matplotlib,
typer and rich are never imported. Exits 1 when a configuration or an executor grid failed (a crash
or a non-finite loss), 0 otherwise. ``--device cpu --quick``: two methods, three steps, fp32 only (CPUs have
no TF32, and bf16 autocast is an emulation there), one compiled configuration, and 1 and 2 runs of
``digits`` for the executor table.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import inspect
import json
import os
import platform
import shutil
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Iterator

import torch

PRECISIONS = ("fp32", "tf32", "bf16")
QUICK_METHODS = ("simclr", "vae")
WARMUP_BATCHES = 2
#: the executor grid: fake MNIST sizes (the mnist plugin checks the official counts)
MNIST_TRAIN, MNIST_TEST = 60000, 10000


@dataclass
class Row:
    """One configuration of the method table."""

    data: str
    method: str
    family: str
    precision: str
    compile: bool
    status: str = "ok"  # ok, error, skipped, n/a, unfit
    note: str = ""
    steps: int = 0
    images: int = 0
    seconds: float = 0.0
    event_seconds: float | None = None
    #: compiled rows: the warm-up's wall time (compiling forward and backward) plus a recompile of the timed model
    compile_seconds: float | None = None
    #: what the loop itself reported as compile time of the warm-up (its first forward call)
    loop_compile_seconds: float | None = None
    steps_per_s: float = 0.0
    images_per_s: float = 0.0
    views_per_s: float = 0.0
    peak_memory_mb: float = 0.0
    memory_kind: str = ""


@dataclass
class Report:
    """Everything printed, as written to ``--json``."""

    device: str
    machine: dict[str, Any]
    quick: bool
    budget_s: float
    steps: int
    rows: list[Row] = field(default_factory=list)
    executor: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    seconds: float = 0.0


# --- what this installation offers ------------------------------------------------------------------


def installed(module: str) -> bool:
    """Whether ``module`` can be imported here (without importing it)."""
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError, AttributeError):  # e.g. blocked with sys.modules[module] = None
        return False


def preflight() -> None:
    """Exit 2 with the missing package named when sslbench itself cannot be imported."""
    for module, why in (("pluggy", "sslbench's plugin manager"), ("numpy", "sslbench's data helpers")):
        if not installed(module):
            sys.exit(f"bench_gpu: cannot run: {module} ({why}) is not installed; install it (pip install {module}) and run again")
    try:
        import sslbench  # noqa: F401
    except ImportError as exc:
        sys.exit(f"bench_gpu: cannot import sslbench ({exc}); install it first: pip install --no-deps --no-build-isolation -e .")


def train_options() -> set[str]:
    """The keyword parameters :func:`sslbench.engine.train.train` accepts (``compile`` among them when
    the loop can compile)."""
    from sslbench.engine.train import train

    return set(inspect.signature(train).parameters)


def machine(device: torch.device) -> dict[str, Any]:
    info: dict[str, Any] = {"python": platform.python_version(), "torch": torch.__version__, "threads": torch.get_num_threads()}
    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        info.update(gpu=props.name, memory_gb=round(props.total_memory / 2**30, 1), capability=f"{props.major}.{props.minor}",
                    cuda=torch.version.cuda, cudnn=torch.backends.cudnn.version())
    else:
        info["cpu"] = platform.processor() or platform.machine()
    return info


def unsupported(device: torch.device, precision: str, quick: bool) -> str | None:
    """Why ``precision`` is not measured on ``device``, or None."""
    if device.type == "cpu":
        if precision == "tf32":
            return "CPUs have no TF32"
        if precision == "bf16" and quick:
            return "bf16 on CPU is not timed by --quick"
        return None
    if device.type == "cuda":
        major, _ = torch.cuda.get_device_capability(device)
        if precision == "tf32" and major < 8:
            return f"TF32 needs compute capability 8.0 (this GPU: {major}.x)"
        if precision == "bf16" and not torch.cuda.is_bf16_supported():
            return "this GPU has no bf16"
    return None


@contextlib.contextmanager
def float32_mode(tf32: bool) -> Iterator[None]:
    """TF32 on or off for float32 matmuls and convolutions during the block (restored after). The loop
    sets the same flags itself when it knows ``--precision tf32``; setting them here as well makes the
    tf32 column right with a loop that does not."""
    before = (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32, torch.get_float32_matmul_precision())
    torch.backends.cuda.matmul.allow_tf32 = tf32
    torch.backends.cudnn.allow_tf32 = tf32
    torch.set_float32_matmul_precision("high" if tf32 else "highest")
    try:
        yield
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = before[0], before[1]
        torch.set_float32_matmul_precision(before[2])


# --- the method table -------------------------------------------------------------------------------


def shaped_data(kind: str, n: int, device: torch.device):  # type: ignore[no-untyped-def]
    """Random uint8 images shaped like MNIST or CIFAR-10, on ``device``, and their protocol."""
    from sslbench.sdk.api import ImageData
    from sslbench.sdk.protocol import COLOUR_CONV, MNIST_MLP

    shape, protocol = ((1, 28, 28), MNIST_MLP) if kind == "mnist" else ((3, 32, 32), COLOUR_CONV)
    g = torch.Generator().manual_seed(0)
    x = torch.randint(0, 256, (n, *shape), generator=g, dtype=torch.uint8)
    y = torch.randint(0, 10, (n,), generator=g)
    y[:10] = torch.arange(10)  # every class present
    data = ImageData(name=f"{kind}-shaped", train_x=x, train_y=y, test_x=x[:256].clone(), test_y=y[:256].clone())
    return data.to(device), protocol


def subset(data, n: int):  # type: ignore[no-untyped-def]
    return data.__class__(**{**data.__dict__, "train_x": data.train_x[:n], "train_y": data.train_y[:n]})


def build(registry, name: str, protocol, data, device: torch.device):  # type: ignore[no-untyped-def]
    from sslbench.sdk.api import BuildContext

    cls = registry.lookup("methods", name)
    ctx = BuildContext(protocol=protocol, image_shape=data.image_shape, num_train=data.train_x.shape[0],
                       num_classes=10, device=device, architectures=registry.architectures)
    torch.manual_seed(0)
    return cls(ctx, **cls.resolve({})).to(device)


def views_per_image(method) -> int:  # type: ignore[no-untyped-def]
    return int(method.views) + (1 if method.original else 0)


def time_config(registry, row: Row, data, protocol, device: torch.device, options: set[str]) -> None:  # type: ignore[no-untyped-def]
    """Warm up, then time ``row``'s configuration; fills the row (status error with the message on a crash)."""
    from sslbench.engine.train import train

    kwargs: dict[str, Any] = {"compile": True} if row.compile else {}
    warm = subset(data, WARMUP_BATCHES * protocol.batch_size)
    if row.compile and hasattr(torch, "_dynamo"):
        torch._dynamo.reset()  # a fresh compile cache: no recompile limit reached, no graph of another row
    with float32_mode(row.precision == "tf32"):
        t0 = time.perf_counter()
        warm_result = train(build(registry, row.method, protocol, warm, device), warm, protocol, epochs=1, seed=0, precision=row.precision, **kwargs)
        warm_seconds = time.perf_counter() - t0
        method = build(registry, row.method, protocol, data, device)
        if device.type == "cuda":
            torch.cuda.synchronize(device)
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
        result = train(method, data, protocol, epochs=1, seed=0, precision=row.precision, **kwargs)
        if device.type == "cuda":
            end.record()
            torch.cuda.synchronize(device)
            row.event_seconds = start.elapsed_time(end) / 1000.0
    if row.compile:  # the warm-up compiled (forward and backward); a recompile of the timed model adds to it
        row.compile_seconds = warm_seconds + float(getattr(result, "compile_seconds", 0.0) or 0.0)
        row.loop_compile_seconds = float(getattr(warm_result, "compile_seconds", 0.0) or 0.0)
    row.steps, row.images, row.seconds = result.steps, result.images, result.seconds
    per = row.seconds if row.seconds > 0 else float("nan")
    row.steps_per_s, row.images_per_s = row.steps / per, row.images / per
    row.views_per_s = row.images_per_s * views_per_image(method)
    row.peak_memory_mb, row.memory_kind = result.peak_memory_mb, result.memory_kind


def method_rows(registry, names: list[str]) -> list[Row]:  # type: ignore[no-untyped-def]
    """Every configuration in the order it is timed: eager ones first, then compiled ones, bf16 first."""
    rows = []
    for compiled in (False, True):
        for precision in (PRECISIONS if not compiled else ("bf16", "tf32", "fp32")):
            for data in ("mnist", "cifar"):
                for name in names:
                    family = getattr(registry.lookup("methods", name), "family", "")
                    rows.append(Row(data, name, family, precision, compiled))
    return rows


def run_table(registry, report: Report, names: list[str], device: torch.device, args: argparse.Namespace,
              deadline_eager: float, deadline: float, between: Any) -> None:  # type: ignore[no-untyped-def]
    """Fill ``report.rows``; ``between()`` runs after the eager rows (the executor table)."""
    options = train_options()
    can_compile = "compile" in options
    if not can_compile:
        report.notes.append("compiled rows skipped: sslbench.engine.train.train() has no `compile` option in this version")
    from sslbench.sdk.protocol import COLOUR_CONV, MNIST_MLP

    sizes = {"mnist": MNIST_MLP.batch_size, "cifar": COLOUR_CONV.batch_size}
    datasets = {kind: shaped_data(kind, args.steps * batch, device) for kind, batch in sizes.items()}
    unfit: dict[tuple[str, str], str] = {}
    rows = method_rows(registry, names)
    broken = ""  # a sticky CUDA error ends the table: the process's GPU context is unusable after it
    estimate: dict[tuple[str, bool], float] = {}
    compiled_left_in_quick = 1
    between_done = False
    for row in rows:
        if row.compile and not between_done:
            if not broken:
                between()
            between_done = True
        report.rows.append(row)
        data, protocol = datasets[row.data]
        if broken:
            row.status, row.note = "skipped", broken
            continue
        reason = unsupported(device, row.precision, args.quick)
        if reason:
            row.status, row.note = "n/a", reason
            continue
        if (row.data, row.method) in unfit:
            row.status, row.note = "unfit", unfit[(row.data, row.method)]
            continue
        if row.compile and not can_compile:
            row.status, row.note = "skipped", "train() cannot compile yet"
            continue
        if row.compile and args.no_compile:
            row.status, row.note = "skipped", "--no-compile"
            continue
        if row.compile and args.quick:
            if compiled_left_in_quick == 0 or row.precision != "fp32":
                row.status, row.note = "skipped", "--quick compiles one configuration"
                continue
            compiled_left_in_quick -= 1
        limit = deadline if row.compile else deadline_eager
        guess = estimate.get((row.data, row.compile), 0.0)
        if not args.quick and args.budget > 0 and time.monotonic() + guess > limit:
            row.status, row.note = "skipped", f"--budget {args.budget:g}s reached (--budget 0 runs everything)"
            continue
        try:
            build(registry, row.method, protocol, subset(data, protocol.batch_size), device)
        except Exception as exc:  # noqa: BLE001 - a method that refuses this data does not fit it
            unfit[(row.data, row.method)] = f"does not fit: {type(exc).__name__}: {str(exc).splitlines()[0][:100] if str(exc) else ''}"
            row.status, row.note = "unfit", unfit[(row.data, row.method)]
            continue
        t0 = time.monotonic()
        try:
            time_config(registry, row, data, protocol, device, options)
        except Exception as exc:  # noqa: BLE001 - report the configuration, time the others
            row.status, row.note = "error", f"{type(exc).__name__}: {str(exc).splitlines()[0][:160] if str(exc) else ''}"
            if device.type == "cuda" and (type(exc).__name__ == "DeviceAssert" or "device-side assert" in str(exc)):
                broken = f"not run after the CUDA error of {row.data} {row.method} {row.precision}"
                report.notes.append(f"{broken}: the GPU context of this process is unusable after it; run the rest with --methods")
        estimate[(row.data, row.compile)] = time.monotonic() - t0
        progress(describe(row))
    if not between_done and not broken:
        between()


# --- the executor table -----------------------------------------------------------------------------


def write_fake_mnist(folder: Path) -> None:
    """Random images and labels in the four IDX files the mnist plugin reads (official sizes)."""
    import numpy as np

    rng = np.random.default_rng(0)
    for stem, n in (("train", MNIST_TRAIN), ("t10k", MNIST_TEST)):
        images = rng.integers(0, 256, size=(n, 28, 28), dtype=np.uint8)
        labels = (np.arange(n) % 10).astype(np.uint8)
        (folder / f"{stem}-images-idx3-ubyte").write_bytes(np.array([2051, n, 28, 28], dtype=">i4").tobytes() + images.tobytes())
        (folder / f"{stem}-labels-idx1-ubyte").write_bytes(np.array([2049, n], dtype=">i4").tobytes() + labels.tobytes())


def local_executor():  # type: ignore[no-untyped-def]
    """(the local executor class, None) -- what ``sslbench run --executor local --jobs N`` runs -- or
    (None, why it is not here)."""
    try:
        from sslbench.engine.executors import LocalExecutor
    except ImportError as exc:
        return None, f"skipped: this sslbench has no local executor (`--executor local --jobs N`) yet ({exc})"
    return LocalExecutor, None


def visible_device(device: torch.device) -> tuple[str, dict[str, str]]:
    """The device the executor's workers use and the environment that shows them only that GPU (so that
    N runs share this one GPU rather than spread over all)."""
    if device.type != "cuda":
        return str(device), {}
    index = device.index if device.index is not None else torch.cuda.current_device()
    visible = [v.strip() for v in os.environ.get("CUDA_VISIBLE_DEVICES", "").split(",") if v.strip()]
    return "cuda:0", {"CUDA_VISIBLE_DEVICES": visible[index] if index < len(visible) else str(index)}


@contextlib.contextmanager
def environment(changes: dict[str, str]) -> Iterator[None]:
    before = {k: os.environ.get(k) for k in changes}
    os.environ.update(changes)
    try:
        yield
    finally:
        for k, v in before.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def aggregate(store, run_ids: list[str]) -> tuple[int, float, float, list[str]]:  # type: ignore[no-untyped-def]
    """(runs done, images trained, their span in seconds, problems) of ``run_ids`` in ``store``: the
    span runs from the first run's start of training (its end minus its training seconds) to the
    last run's end."""
    runs = store.runs(ids=run_ids)
    done = [r for r in runs if r.status == "done" and r.finished and r.train_seconds]
    problems = [f"{r.method} seed {r.seed}: {r.status}: {(r.error or '').splitlines()[0] if r.error else ''}" for r in runs if r not in done]
    if not done:
        return 0, 0.0, 0.0, problems
    images = sum(int(r.effort.get("images_seen") or (r.images_per_s or 0) * (r.train_seconds or 0)) for r in done)
    span = max(r.finished for r in done) - min(r.finished - r.train_seconds for r in done)  # type: ignore[operator]
    return len(done), float(images), float(span), problems


def one_grid(registry, executor_class, n: int, dataset: str, data_dir: str | None, epochs: int, method: str,  # type: ignore[no-untyped-def]
             device: str, home: Path) -> dict[str, Any]:
    """Train ``n`` seeds of ``method`` on ``n`` local workers at once; the row of the executor table."""
    from sslbench.engine.cells import build_grid
    from sslbench.engine.runner import run_grid
    from sslbench.engine.store import Store

    store = Store(home)
    cells = build_grid(registry, [method], dataset, range(n), epochs, ["knn"], {}, data_dir=data_dir, device=device, checkpoint_every="off")
    t0 = time.monotonic()
    threads = max(1, torch.get_num_threads() // n)  # this process's threads divided between the runs, as the method table used them
    grid = run_grid(cells, executor_class(store, registry, jobs=n, threads=threads))
    wall = time.monotonic() - t0
    done, images, span, problems = aggregate(store, [c.run_id for c in cells])
    problems += [f"{o.method} seed {o.seed}: {o.status}: {o.message or '; '.join(o.errors)}" for o in grid.outcomes if o.failed]
    problems += [f"data set {name}: {exc}" for name, exc in grid.data_errors.items()]
    row: dict[str, Any] = {"jobs": n, "threads_per_run": threads, "runs": done, "wall_seconds": round(wall, 2),
                           "span_seconds": round(span, 3), "images": images}
    if done != n or problems:
        row.update(status="error", note=f"{done} of {n} runs done: {'; '.join(problems)[:300] or 'no result stored'}")
    else:
        row.update(status="ok", aggregate_images_per_s=images / span if span > 0 else 0.0)
    return row


def run_executor(report: Report, registry, device: torch.device, args: argparse.Namespace, deadline: float) -> None:  # type: ignore[no-untyped-def]
    """Fill ``report.executor``: the aggregate images/s of N runs at once through the local executor."""
    jobs = [1, 2] if args.quick else args.jobs
    table: dict[str, Any] = {"method": args.executor_method, "jobs": jobs, "rows": []}
    report.executor = table
    executor_class, why = local_executor()
    if args.no_executor:
        why = "skipped: --no-executor"
    if why:
        table["status"], table["note"] = "skipped", why
        progress(f"executor: {why}")
        return
    work = Path(tempfile.mkdtemp(prefix="sslbench_bench_gpu_"))
    worker_device, env = visible_device(device)
    env["SSLBENCH_CACHE"] = str(work / "cache")
    try:
        if args.quick:
            dataset, data_dir, epochs, shown = "digits", None, 2, "digits"
        else:
            (work / "mnist").mkdir()
            write_fake_mnist(work / "mnist")
            dataset, data_dir, epochs, shown = "mnist", str(work / "mnist"), args.executor_epochs, "60,000 random MNIST-shaped images"
        table.update(dataset=shown, epochs=epochs)
        progress(f"executor: {args.executor_method} on {shown}, {epochs} epoch(s) per run, N runs at once")
        last_wall = 0.0
        for n in jobs:
            if not args.quick and args.budget > 0 and time.monotonic() + last_wall * 1.5 > deadline:
                table["rows"].append({"jobs": n, "status": "skipped", "note": f"--budget {args.budget:g}s reached"})
                progress(f"executor: {n} runs: skipped, --budget reached")
                continue
            try:
                with environment(env):
                    row = one_grid(registry, executor_class, n, dataset, data_dir, epochs, args.executor_method, worker_device, work / f"home{n}")
            except Exception as exc:  # noqa: BLE001 - the executor table fails, the method table stands
                row = {"jobs": n, "status": "error", "note": f"{type(exc).__name__}: {str(exc).splitlines()[0][:200] if str(exc) else ''}"}
            last_wall = row.get("wall_seconds", 0.0)
            table["rows"].append(row)
            progress(f"executor: {n} runs: {row['status']} {row.get('note', '')}".rstrip())
        single = next((r["aggregate_images_per_s"] for r in table["rows"] if r.get("status") == "ok"), None)
        for r in table["rows"]:
            if r.get("status") == "ok":
                r["per_run_images_per_s"] = r["aggregate_images_per_s"] / r["jobs"]
                r["scaling"] = r["aggregate_images_per_s"] / single if single else None
        table["status"] = "error" if any(r.get("status") == "error" for r in table["rows"]) else "ok"
    finally:
        shutil.rmtree(work, ignore_errors=True)


# --- printing ---------------------------------------------------------------------------------------


def progress(text: str) -> None:
    """A line on stderr while the benchmark runs (stdout carries only the tables)."""
    print(text, file=sys.stderr, flush=True)


def describe(row: Row) -> str:
    what = f"{row.data} {row.method} {row.precision} {'compiled' if row.compile else 'eager'}"
    if row.status != "ok":
        return f"{what}: {row.status}: {row.note}"
    return f"{what}: {row.images_per_s:,.0f} img/s, {row.steps} steps in {row.seconds:.2f} s"


def _cells(row: Row | None, compiled: bool) -> str:
    width = 46 if compiled else 36
    if row is None or row.status != "ok":
        return f"{'-':>{width}}"
    cells = f"{row.steps_per_s:>8.1f} {row.images_per_s:>9,.0f} {row.views_per_s:>9,.0f} {row.peak_memory_mb:>8,.0f}"
    if compiled:
        cells += f" {row.compile_seconds:>9.1f}" if row.compile_seconds is not None else f" {'-':>9}"
    return cells


def table_lines(report: Report) -> list[str]:
    """The method table: one line per data, method and precision, eager and compiled side by side."""
    order = {p: i for i, p in enumerate(PRECISIONS)}
    groups: dict[tuple[str, str, str], dict[bool, Row]] = {}
    for row in sorted(report.rows, key=lambda r: (r.data != "mnist", r.method, order[r.precision])):
        groups.setdefault((row.data, row.method, row.precision), {})[row.compile] = row
    head = (f"{'data':<6} {'method':<13} {'prec':<5} | {'steps/s':>8} {'img/s':>9} {'views/s':>9} {'peak MB':>8} | "
            f"{'steps/s':>8} {'img/s':>9} {'views/s':>9} {'peak MB':>8} {'compile s':>9} | note")
    over = f"{'':<27}| {'eager':<36} | {'torch.compile':<46} |"
    lines = [over, head, "-" * len(head)]
    # a precision that is n/a for every row for one reason gets one line
    blanket: dict[str, str] = {}
    for precision in PRECISIONS:
        notes = {r.note for r in report.rows if r.precision == precision and r.status == "n/a"}
        if len(notes) == 1 and all(r.status == "n/a" for r in report.rows if r.precision == precision):
            blanket[precision] = notes.pop()
    for (data, method, precision), pair in groups.items():
        if precision in blanket:
            continue
        eager, compiled = pair.get(False), pair.get(True)
        notes = []
        for label, row in (("eager", eager), ("compiled", compiled)):
            if row is not None and row.status != "ok":
                notes.append(f"{label} {row.status}: {row.note}")
        if len(notes) == 2 and notes[0].split(" ", 1)[1] == notes[1].split(" ", 1)[1]:
            notes = [notes[0].split(" ", 1)[1]]  # the same reason for both
        lines.append(f"{data:<6} {method:<13} {precision:<5} | {_cells(eager, False)} | {_cells(compiled, True)} | {'; '.join(notes)}")
    for precision, note in blanket.items():
        lines.append(f"{'all':<6} {'all':<13} {precision:<5} | {'-':>36} | {'-':>46} | n/a: {note}")
    return lines


def executor_lines(report: Report) -> list[str]:
    table = report.executor
    if table.get("status") == "skipped" or not table:
        return [f"executor table {table.get('note', 'skipped')}"]
    title = (f"{table['method']} on {table['dataset']}, {table['epochs']} epoch(s) per run, N runs at once on {report.device} "
             f"through the local executor (what `sslbench run --executor local --jobs N` runs), this process's torch threads "
             f"divided between the runs; aggregate = images trained / span of training")
    lines = [title,
             f"{'runs':>5} {'agg img/s':>10} {'per run':>9} {'x 1 run':>8} {'span s':>7} {'wall s':>7}  note"]
    for row in table["rows"]:
        if row.get("status") != "ok":
            lines.append(f"{row['jobs']:>5} {'-':>10} {'-':>9} {'-':>8} {'-':>7} {row.get('wall_seconds', '-'):>7}  {row['status']}: {row.get('note', '')}")
            continue
        scaling = f"{row['scaling']:.2f}" if row.get("scaling") else "-"
        lines.append(f"{row['jobs']:>5} {row['aggregate_images_per_s']:>10,.0f} {row['per_run_images_per_s']:>9,.0f} {scaling:>8} "
                     f"{row['span_seconds']:>7.1f} {row['wall_seconds']:>7.1f}")
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--device", default=None, help="cuda, cuda:N or cpu (default: CUDA when present, else CPU)")
    parser.add_argument("--quick", action="store_true", help="the tiny form: two methods, three steps, fp32 only on CPU")
    parser.add_argument("--methods", nargs="*", help="methods to time (default: every installed trainable method; --quick: simclr vae)")
    parser.add_argument("--steps", type=int, default=None, help="timed steps per configuration (default 40; --quick 3)")
    parser.add_argument("--budget", type=float, default=280.0, help="seconds the whole benchmark may take (default 280); 0: no limit")
    parser.add_argument("--no-compile", action="store_true", help="leave out the compiled configurations")
    parser.add_argument("--no-executor", action="store_true", help="leave out the executor table")
    parser.add_argument("--jobs", type=int, nargs="*", default=[1, 2, 4, 8], help="runs at once in the executor table (default 1 2 4 8)")
    parser.add_argument("--executor-method", default="simclr", help="the method of the executor table (default simclr)")
    parser.add_argument("--executor-epochs", type=int, default=3, help="epochs per executor run over 60,000 images (default 3)")
    parser.add_argument("--executor-timeout", type=float, default=900.0, help="seconds one executor grid may take before it is stopped")
    parser.add_argument("--threads", type=int, default=None, help="torch threads of this process (default: torch's choice)")
    parser.add_argument("--json", metavar="PATH", help="also write the tables as JSON to PATH")
    args = parser.parse_args(argv)
    start = time.monotonic()
    preflight()

    from sslbench.engine.plugins import get_registry
    from sslbench.engine.train import SetupError, pick_device

    if args.threads:
        torch.set_num_threads(args.threads)
    try:
        device = pick_device(args.device)
    except SetupError as exc:
        print(f"bench_gpu: {exc}", file=sys.stderr)
        return 2
    if device.type == "cuda" and device.index is None:
        device = torch.device("cuda", torch.cuda.current_device())
    args.steps = args.steps or (3 if args.quick else 40)
    if args.steps < 1:
        parser.error("--steps: time at least one step")
    registry = get_registry()
    trainable = sorted(n for n, cls in registry.methods.items() if getattr(cls, "trainable", True) and ":" not in n)
    names = args.methods or ([m for m in QUICK_METHODS if m in trainable] if args.quick else trainable)
    unknown = [n for n in names if n not in registry.methods]
    if unknown:
        parser.error(f"--methods: {', '.join(unknown)} not installed (installed: {', '.join(trainable)})")
    report = Report(str(device), machine(device), args.quick, args.budget, args.steps)
    where = report.machine.get("gpu") or report.machine.get("cpu")
    print(f"sslbench GPU benchmark on {device} ({where}); torch {torch.__version__}, python {platform.python_version()}, "
          f"{torch.get_num_threads()} threads; {args.steps} timed steps per configuration after {WARMUP_BATCHES} warm-up batches")
    print(f"data: random uint8, mnist = 1x28x28 under mnist-mlp, cifar = 3x32x32 under colour-conv (batch 128); "
          f"budget {'none' if args.quick or args.budget <= 0 else f'{args.budget:g}s'}")
    if device.type == "cpu":
        print("peak MB on CPU is the process's peak RSS so far (not per row); tf32 does not exist on CPUs"
              + ("; --quick times fp32 only" if args.quick else ""))
    budget = args.budget if args.budget > 0 else float("inf")
    deadline = start + budget
    run_table(registry, report, names, device, args, deadline_eager=start + 0.4 * budget, deadline=deadline,
              between=lambda: run_executor(report, registry, device, args, start + 0.8 * budget))
    print("\n".join(table_lines(report)))
    print()
    print("\n".join(executor_lines(report)))
    for note in report.notes:
        print(f"note: {note}")
    report.seconds = round(time.monotonic() - start, 1)
    failed = [r for r in report.rows if r.status == "error"]
    print(f"{len([r for r in report.rows if r.status == 'ok'])} configurations timed, {len(failed)} failed, "
          f"executor {report.executor.get('status', 'skipped')}; {report.seconds:.0f} s in all")
    if args.json:
        Path(args.json).write_text(json.dumps({**asdict(report), "rows": [asdict(r) for r in report.rows]}, indent=2) + "\n")
        print(f"JSON written to {args.json}")
    return 1 if failed or report.executor.get("status") == "error" else 0


if __name__ == "__main__":
    raise SystemExit(main())

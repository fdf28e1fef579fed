"""The one training loop every method goes through.

Data are already on the device as uint8; each step indexes a batch there, makes the method's views in
one batched augmentation pass, computes the method's named loss terms, checks them for NaN/inf, and
steps the optimiser. The loop measures what a user needs to spot regressions: images/s, the share of
step time spent augmenting, and peak memory.
"""

from __future__ import annotations

import math
import resource
import signal
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Protocol as TypingProtocol

import torch

from sslbench.sdk.api import ImageData, Method
from sslbench.engine.augment import lay_out, make_views
from sslbench.engine.checkpoint import Checkpointer, rng_state, set_rng_state
from sslbench.engine import precision as numerics_
from sslbench.sdk.numerics import strict
from sslbench.engine.stepwatch import AugmentTimer, Diverged, LossWatch, as_floats, defers
from sslbench.sdk.protocol import Protocol
from sslbench.engine.device import THREADS_VARIABLE, SetupError, available_devices, configure_threads, pick_device  # noqa: F401 - re-exported
from sslbench.engine.effort import step_shape, views_per_image


class DeviceAssert(RuntimeError):
    """A CUDA device-side assert (or another sticky accelerator error) ended training. The CUDA
    context of this process is unusable afterwards: every later cell would fail with misleading
    errors, so the grid should stop here (the same command, in a new process, goes on)."""


def is_device_assert(exc: BaseException) -> bool:
    """Whether ``exc`` is a sticky CUDA error: ``torch.AcceleratorError`` (torch >= 2.8) or a
    RuntimeError saying "device-side assert"."""
    accelerator = getattr(torch, "AcceleratorError", None)
    if accelerator is not None and isinstance(exc, accelerator):
        return True
    return isinstance(exc, RuntimeError) and "device-side assert" in str(exc)


#: a training curve has at least this many points, however few epochs the budget has
HISTORY_POINTS = 20


class Reporter(TypingProtocol):
    """Called every few steps with the step, the total steps and each loss term's running mean."""

    def __call__(self, step: int, total: int, terms: dict[str, float]) -> None: ...


@dataclass
class TrainResult:
    steps: int = 0
    seconds: float = 0.0
    images: int = 0
    augment_seconds: float = 0.0
    peak_memory_mb: float = 0.0
    memory_kind: str = ""
    #: each loss term's mean over successive intervals of training (at least ``HISTORY_POINTS`` over
    #: a run, and at least one per epoch); ``history["_epoch"]`` is where each interval ends, in epochs
    history: dict[str, list[float]] = field(default_factory=dict)
    #: training checkpoints written in this segment, and the seconds spent writing them (not in ``seconds``)
    checkpoints: int = 0
    checkpoint_seconds: float = 0.0
    #: (epoch, step) this segment resumed from, when it continued an interrupted run
    resumed_from: tuple[int, int] | None = None
    #: how many processes trained this run (1 + the times it was resumed)
    segments: int = 1
    #: seconds of the first compiled step, forward and backward compilation included (not in ``seconds``); 0 uncompiled
    compile_seconds: float = 0.0
    #: which optimiser ran (:func:`optimizer_name`: "adam (fused)", "adam" when fused was unavailable, "sgd")
    optimizer: str = ""
    #: the numerics training ran under (:func:`sslbench.engine.precision.settings`), for the environment
    numerics: dict[str, Any] = field(default_factory=dict)
    #: whether the model and views were laid out channels-last (convolutions on CUDA)
    channels_last: bool = False

    @property
    def images_per_s(self) -> float:
        return self.images / self.seconds if self.seconds > 0 else 0.0

    @property
    def augment_share(self) -> float:
        return self.augment_seconds / self.seconds if self.seconds > 0 else 0.0


def make_optimizer(method: Method, protocol: Protocol) -> torch.optim.Optimizer:
    """Adam (fused where the build supports it) or plain SGD, as the protocol declares."""
    lr = method.learning_rate()
    params = [p for p in method.parameters() if p.requires_grad]
    if protocol.optimizer == "sgd":
        return torch.optim.SGD(params, lr=lr, weight_decay=protocol.weight_decay)
    if protocol.optimizer != "adam":
        raise ValueError(f"protocol {protocol.name!r}: unknown optimizer {protocol.optimizer!r} (adam or sgd)")
    eps = float(protocol.training(method.name, method.family)["adam_eps"])
    try:
        return torch.optim.Adam(params, lr=lr, eps=eps, weight_decay=protocol.weight_decay, fused=True)
    except (RuntimeError, TypeError):  # fused kernels unavailable for this device/build
        return torch.optim.Adam(params, lr=lr, eps=eps, weight_decay=protocol.weight_decay)


def optimizer_name(optimizer: torch.optim.Optimizer) -> str:
    """Which optimiser :func:`make_optimizer` made: "adam (fused)", "adam" (the fused kernels were
    unavailable here, or a plain Adam) or "sgd"."""
    name = type(optimizer).__name__.lower()
    return f"{name} (fused)" if optimizer.defaults.get("fused") else name


def wants_channels_last(method: Method, device: torch.device) -> bool:
    """Channels-last pays on CUDA for convolutional encoders (cuDNN's NHWC kernels); elsewhere the
    layout stays as it is."""
    return device.type == "cuda" and any(isinstance(m, torch.nn.Conv2d) for m in method.modules())


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _peak_memory(device: torch.device) -> tuple[float, str]:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20, "cuda max allocated"
    # ru_maxrss is in KiB on Linux: the process's peak resident set, all runs so far included
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, "process peak RSS"


class Interrupted(KeyboardInterrupt):
    """Ctrl-C stopped training after a whole step; ``epoch``/``step`` say where, ``saved`` whether a
    training checkpoint was written there (the same command then resumes from it)."""

    def __init__(self, epoch: int, epochs: int, step: int, saved: bool) -> None:
        super().__init__(f"interrupted at epoch {epoch} of {epochs}, step {step}" + (" (training checkpoint saved)" if saved else ""))
        self.epoch, self.step, self.saved = epoch, step, saved


class _StopOnSigint:
    """While active (main thread only), the first Ctrl-C asks the loop to stop after the current
    step; a second one interrupts at once, as usual."""

    def __init__(self) -> None:
        self.requested = False
        self._previous: Any = None

    def __enter__(self) -> "_StopOnSigint":
        if threading.current_thread() is threading.main_thread():
            self._previous = signal.getsignal(signal.SIGINT)
            signal.signal(signal.SIGINT, self._handle)
        return self

    def _handle(self, signum: int, frame: Any) -> None:
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True

    def __exit__(self, *exc: Any) -> None:
        if self._previous is not None:
            signal.signal(signal.SIGINT, self._previous)


def train(
    method: Method,
    data: ImageData,
    protocol: Protocol,
    epochs: int,
    seed: int,
    precision: str = "fp32",
    report: Reporter | None = None,
    report_every: int = 10,
    checkpointer: Checkpointer | None = None,
    resume: dict[str, Any] | None = None,
    compile: bool = False,
    deterministic: bool = False,
    steps: int | None = None,
) -> TrainResult:
    """Train ``method`` on ``data`` (already on the method's device) for ``epochs`` epochs, or, when
    ``steps`` is given, for exactly that many optimiser steps (the last epoch stops part-way).

    Raises :class:`Diverged` on the first non-finite loss (on CUDA found when the loop next looks,
    see :mod:`sslbench.engine.stepwatch`) and :class:`DeviceAssert` after a sticky CUDA error. Same
    seed on CPU gives the same numbers: model initialisation happened under
    ``torch.manual_seed(seed)`` in the runner, and the batch order and augmentation draw from a
    generator seeded here. With ``checkpointer``, the whole training state is written as its policy
    says (and when Ctrl-C stops the loop, which then raises :class:`Interrupted`); ``resume`` (a
    state it wrote, see :func:`sslbench.engine.checkpoint.load_state`) continues that run exactly
    where it stopped. ``precision``, ``deterministic``: see :mod:`sslbench.engine.precision`;
    ``compile``: ``torch.compile`` the method's ``loss`` (its compile time is reported apart).
    """
    numerics = numerics_.Numerics(precision, deterministic, compile)
    numerics_.check_precision(precision)
    try:
        with numerics_.training(numerics) as applied:
            result = _train(method, data, protocol, epochs, seed, numerics, report, report_every, checkpointer, resume, steps)
    except RuntimeError as exc:
        if is_device_assert(exc) and not isinstance(exc, DeviceAssert):
            raise DeviceAssert(
                f"CUDA error during training ({str(exc).splitlines()[0] if str(exc) else type(exc).__name__}); the GPU context of "
                "this process cannot be used any more: fix the cause (run with CUDA_LAUNCH_BLOCKING=1 to find it) and run the "
                "same command again, which resumes the grid"
            ) from exc
        raise
    result.numerics = applied
    return result


def compile_loss(method: Method) -> Any:
    """``torch.compile`` of ``method.loss`` (the method's forward passes and loss terms)."""
    return torch.compile(method.loss)


def _train(
    method: Method, data: ImageData, protocol: Protocol, epochs: int, seed: int, numerics: numerics_.Numerics,
    report: Reporter | None, report_every: int, checkpointer: Checkpointer | None, resume: dict[str, Any] | None,
    steps: int | None = None,
) -> TrainResult:
    device = data.train_x.device
    result = TrainResult()
    if not method.trainable or (epochs <= 0 and not steps):
        return result
    g = torch.Generator(device=device).manual_seed(seed)
    optimizer = make_optimizer(method, protocol)
    result.optimizer = optimizer_name(optimizer)
    spec = protocol.augment
    pairs = data.train_next is not None
    if pairs and (method.views != 2 or method.original):
        wants = f"{method.views} view(s)" + (" with the un-augmented image first" if method.original else "")
        raise ValueError(
            f"{data.name} yields pairs of consecutive frames (train_next) as the two views of each sample, but "
            f"{method.name} asks for {wants}; train a two-view method on it, or a data set without frame pairs"
        )
    pool = (data.train_next >= 0).nonzero().squeeze(1) if pairs else None  # type: ignore[operator]
    batch, n = step_shape(method, data, protocol)  # images per step: the protocol says whether its batch counts images or views
    per_epoch = max(1, n // batch)  # drop the last incomplete batch, as SSL training usually does
    if steps:  # a budget in steps: as many epochs as it takes, the last one stopped part-way
        epochs = math.ceil(steps / per_epoch)
    total = steps or per_epoch * epochs
    # "sum": the method's mean loss times the views in the batch, the batch-summed loss of the official code
    loss_scale = float(batch * views_per_image(method, data)) if protocol.training(method.name, method.family)["loss_reduction"] == "sum" else 1.0
    autocast = torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=numerics.precision == "bf16")
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    # steps per history point: at least HISTORY_POINTS over the run and one per epoch (a step budget: over its steps)
    interval = max(1, min(per_epoch, total // HISTORY_POINTS)) if steps else max(1, per_epoch // max(1, math.ceil(HISTORY_POINTS / epochs)))
    view_major = bool(getattr(method, "view_major", False))
    channels_last = result.channels_last = wants_channels_last(method, device)
    if channels_last:
        method.to(memory_format=torch.channels_last)
    method.train()
    step, first_epoch, first_batch, elapsed = 0, 0, 0, 0.0
    perm: torch.Tensor | None = None
    sums: dict[str, torch.Tensor] = {}
    window: dict[str, torch.Tensor] = {}
    window_steps = 0
    if resume is not None:
        method.load_state_dict(resume["model"])
        optimizer.load_state_dict(resume["optimizer"])
        g.set_state(resume["generator"])
        set_rng_state(resume["rng"], device)
        step, first_epoch, first_batch = resume["step"], resume["epoch"], resume["batch"]
        perm = resume["perm"].to(device) if resume["perm"] is not None else None
        sums = {k: v.to(device) for k, v in resume["sums"].items()}
        window = {k: v.to(device) for k, v in resume["window"].items()}
        window_steps, elapsed = resume["window_steps"], resume["seconds"]
        result.images, result.augment_seconds, result.history = resume["images"], resume["augment_seconds"], resume["history"]
        result.resumed_from = (first_epoch, step)
        result.segments = resume.get("segments", 1) + 1
    watch = LossWatch(defers(device))
    timer = AugmentTimer(device)
    loss_fn = compile_loss(method) if numerics.compile else method.loss
    compiling = numerics.compile

    def look() -> None:
        """Check the deferred loss flags (raises Diverged) and collect the augmentation time."""
        watch.look()
        result.augment_seconds += timer.take()

    def state(epoch: int, next_batch: int) -> dict[str, Any]:
        return {
            "model": method.state_dict(), "optimizer": optimizer.state_dict(), "generator": g.get_state(),
            "rng": rng_state(device), "step": step, "epoch": epoch, "batch": next_batch,
            "perm": perm.cpu() if perm is not None and next_batch > 0 else None,
            "sums": {k: v.cpu() for k, v in sums.items()} if next_batch > 0 else {},
            "window": {k: v.cpu() for k, v in window.items()}, "window_steps": window_steps,
            "seconds": elapsed + (time.perf_counter() - start), "images": result.images,
            "augment_seconds": result.augment_seconds, "history": result.history, "segments": result.segments,
        }

    start = time.perf_counter()
    with _StopOnSigint() as stop:
        for epoch in range(first_epoch, epochs):
            if epoch > first_epoch or first_batch == 0:
                sums = {}
                perm = torch.randperm(n, generator=g, device=device)
            assert perm is not None
            for b in range(first_batch if epoch == first_epoch else 0, per_epoch):
                idx = perm[b * batch : (b + 1) * batch]
                timer.start()
                if pool is not None:
                    idx = pool[idx]
                    both = torch.cat([data.train_x[idx], data.train_x[data.train_next[idx]]])  # type: ignore[index]
                    v = make_views(both, spec, views=1, original=False, g=g)  # (2B, 1, C, H, W): frames, then next frames
                    views = v.view(2, len(idx), *v.shape[2:]).transpose(0, 1)  # (B, 2, ...), view-major memory
                    if channels_last or not view_major:
                        views = lay_out(views, view_major, channels_last)
                else:
                    views = make_views(data.train_x[idx], spec, method.views, method.original, g, view_major, channels_last)
                timer.stop()
                t1 = time.perf_counter()
                with autocast:
                    terms = loss_fn(views)
                loss = terms["loss"]
                step += 1
                watch.check(step, terms)
                optimizer.zero_grad(set_to_none=True)
                (loss * loss_scale if loss_scale != 1.0 else loss).backward()
                optimizer.step()
                method.after_step()
                if compiling:  # the first compiled step compiles forward and backward: not training time
                    compiling = False
                    _sync(device)
                    result.compile_seconds = time.perf_counter() - t1
                    start += result.compile_seconds
                for k, v in terms.items():
                    v = v.detach().float()
                    sums[k] = sums[k] + v if k in sums else v
                    window[k] = window[k] + v if k in window else v
                window_steps += 1
                result.images += len(idx)
                last = b == per_epoch - 1 or step == total
                reporting = report is not None and (step % report_every == 0 or step == total)
                history = window_steps == interval or last
                # read once: a Ctrl-C landing after this line stops the next step, after its checkpoint, never
                # between the decision to checkpoint and the stop (which would say "saved" with nothing saved)
                stopping = stop.requested
                checkpoint = checkpointer is not None and step < total and (stopping or checkpointer.due(step, last, epoch + 1))
                if reporting or history or checkpoint or last or watch.pending >= report_every:
                    look()
                if reporting:
                    report(step, total, as_floats(sums, b + 1))  # type: ignore[misc]
                if history:
                    for k, val in as_floats(window, window_steps).items():
                        result.history.setdefault(k, []).append(val)
                    result.history.setdefault("_epoch", []).append(round(epoch + (b + 1) / per_epoch, 4))
                    window, window_steps = {}, 0
                if checkpoint:
                    t2 = time.perf_counter()
                    checkpointer.write(state(epoch + 1, 0) if last else state(epoch, b + 1))  # type: ignore[union-attr]
                    start += time.perf_counter() - t2  # writing a checkpoint is not training time
                if stopping and step < total:
                    raise Interrupted(epoch + 1, epochs, step, checkpointer is not None)
                if step == total:
                    break
    look()
    _sync(device)
    result.seconds = elapsed + time.perf_counter() - start
    result.steps = step
    if checkpointer is not None:
        result.checkpoints, result.checkpoint_seconds = checkpointer.writes, checkpointer.write_seconds
    result.peak_memory_mb, result.memory_kind = _peak_memory(device)
    return result


@torch.no_grad()
def embed_all(method: Method, x_uint8: torch.Tensor, batch_size: int = 1024) -> torch.Tensor:
    """Frozen representations of un-augmented images, in eval mode, batched on the device."""
    method.eval()
    with strict():  # evaluation in full fp32, whatever the training allowed
        out = [method.embed(x_uint8[i : i + batch_size].float().div_(255)) for i in range(0, x_uint8.shape[0], batch_size)]
    return torch.cat(out).float()


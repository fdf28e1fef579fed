"""The one training loop every method goes through.

Data are already on the device as uint8; each step indexes a batch there, makes the method's views in
one batched augmentation pass, computes the method's named loss terms, checks them for NaN/inf, and
steps the optimiser. The loop measures what a user needs to spot regressions: images/s, the share of
step time spent augmenting, and peak memory.
"""

from __future__ import annotations

import math
import os
import resource
import time
from dataclasses import dataclass, field
from typing import Protocol as TypingProtocol

import torch

from sslbench.sdk.api import ImageData, Method
from sslbench.engine.augment import make_views
from sslbench.sdk.protocol import Protocol


class Diverged(RuntimeError):
    """A loss term became NaN or infinite; ``step`` says when (1-based)."""

    def __init__(self, step: int, terms: dict[str, float]) -> None:
        bad = ", ".join(f"{k}={v}" for k, v in terms.items() if not math.isfinite(v))
        super().__init__(f"diverged at step {step}: {bad}")
        self.step = step
        self.terms = terms


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
    try:
        return torch.optim.Adam(params, lr=lr, weight_decay=protocol.weight_decay, fused=True)
    except (RuntimeError, TypeError):  # fused kernels unavailable for this device/build
        return torch.optim.Adam(params, lr=lr, weight_decay=protocol.weight_decay)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _peak_memory(device: torch.device) -> tuple[float, str]:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20, "cuda max allocated"
    # ru_maxrss is in KiB on Linux: the process's peak resident set, all runs so far included
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, "process peak RSS"


def train(
    method: Method,
    data: ImageData,
    protocol: Protocol,
    epochs: int,
    seed: int,
    precision: str = "fp32",
    report: Reporter | None = None,
    report_every: int = 10,
) -> TrainResult:
    """Train ``method`` on ``data`` (already on the method's device) for ``epochs`` epochs.

    Raises :class:`Diverged` on the first non-finite loss term. Same seed on CPU gives the same
    numbers: model initialisation happened under ``torch.manual_seed(seed)`` in the runner, and the
    batch order and augmentation draw from a generator seeded here.
    """
    device = data.train_x.device
    result = TrainResult()
    if not method.trainable or epochs <= 0:
        return result
    g = torch.Generator(device=device).manual_seed(seed)
    optimizer = make_optimizer(method, protocol)
    spec = protocol.augment
    pairs = data.train_next is not None
    if pairs and (method.views != 2 or method.original):
        wants = f"{method.views} view(s)" + (" with the un-augmented image first" if method.original else "")
        raise ValueError(
            f"{data.name} yields pairs of consecutive frames (train_next) as the two views of each sample, but "
            f"{method.name} asks for {wants}; train a two-view method on it, or a data set without frame pairs"
        )
    pool = (data.train_next >= 0).nonzero().squeeze(1) if pairs else None  # type: ignore[operator]
    n = int(pool.numel()) if pool is not None else data.train_x.shape[0]
    batch = min(protocol.batch_size, n)
    per_epoch = max(1, n // batch)  # drop the last incomplete batch, as SSL training usually does
    total = per_epoch * epochs
    autocast = torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=precision == "bf16")
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    interval = max(1, per_epoch // max(1, math.ceil(HISTORY_POINTS / epochs)))  # steps per history point
    method.train()
    step = 0
    start = time.perf_counter()
    for epoch in range(epochs):
        sums: dict[str, torch.Tensor] = {}
        window: dict[str, torch.Tensor] = {}
        window_steps = 0
        perm = torch.randperm(n, generator=g, device=device)
        for b in range(per_epoch):
            idx = perm[b * batch : (b + 1) * batch]
            t0 = time.perf_counter()
            if pool is not None:
                idx = pool[idx]
                both = torch.cat([data.train_x[idx], data.train_x[data.train_next[idx]]])  # type: ignore[index]
                v = make_views(both, spec, views=1, original=False, g=g)  # (2B, 1, C, H, W)
                views = torch.cat([v[: len(idx)], v[len(idx) :]], 1)
            else:
                views = make_views(data.train_x[idx], spec, method.views, method.original, g)
            _sync(device)
            result.augment_seconds += time.perf_counter() - t0
            with autocast:
                terms = method.loss(views)
            loss = terms["loss"]
            step += 1
            if not bool(torch.isfinite(loss)):
                raise Diverged(step, {k: float(v.detach()) for k, v in terms.items()})
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            method.after_step()
            for k, v in terms.items():
                v = v.detach().float()
                sums[k] = sums[k] + v if k in sums else v
                window[k] = window[k] + v if k in window else v
            window_steps += 1
            result.images += len(idx)
            if report is not None and (step % report_every == 0 or step == total):
                report(step, total, {k: float(v) / (b + 1) for k, v in sums.items()})
            if window_steps == interval or b == per_epoch - 1:
                for k, v in window.items():
                    result.history.setdefault(k, []).append(float(v) / window_steps)
                result.history.setdefault("_epoch", []).append(round(epoch + (b + 1) / per_epoch, 4))
                window, window_steps = {}, 0
    _sync(device)
    result.seconds = time.perf_counter() - start
    result.steps = step
    result.peak_memory_mb, result.memory_kind = _peak_memory(device)
    return result


def configure_threads() -> None:
    """Set torch's thread count from ``SSLBENCH_THREADS`` when it is set."""
    threads = os.environ.get("SSLBENCH_THREADS")
    if threads:
        torch.set_num_threads(int(threads))


def pick_device(requested: str | None = None) -> torch.device:
    """CUDA when present, else CPU; ``requested`` ("cpu", "cuda", "cuda:1") overrides."""
    if requested:
        device = torch.device(requested)
        if device.type == "cuda" and not torch.cuda.is_available():
            raise ValueError(f"--device {requested}: CUDA is not available on this machine; use --device cpu")
        return device
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


@torch.no_grad()
def embed_all(method: Method, x_uint8: torch.Tensor, batch_size: int = 1024) -> torch.Tensor:
    """Frozen representations of un-augmented images, in eval mode, batched on the device."""
    method.eval()
    out = [method.embed(x_uint8[i : i + batch_size].float().div_(255)) for i in range(0, x_uint8.shape[0], batch_size)]
    return torch.cat(out).float()


"""Benchmark: what training checkpoints cost, as a share of training, and what resuming costs.

    python benchmarks/bench_checkpoint.py [--threads 2] [--steps 30] [--quick]

For the MLP protocol (MNIST-shaped, 28x28) and the conv protocol (CIFAR-shaped, 32x32), with VAE and
SimCLR on generated uint8 images (no download), it measures one training step, one checkpoint write
(model, optimiser, generators, history: ``sslbench.engine.checkpoint``, fsync'd and renamed) and one
resume (load with weights_only and restore), and prints the checkpoint cost as a share of training
under each policy: a checkpoint at every epoch end of the real data set's size (MNIST 468 steps,
CIFAR-10 390), every 10 minutes, and ``auto`` (bounded by its rule at 1%). Prints; not a test.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import torch

from sslbench.engine.checkpoint import AUTO_COST_RATIO, CheckpointPolicy, Checkpointer, load_state
from sslbench.engine.plugins import get_registry
from sslbench.engine.train import make_optimizer, train
from sslbench.sdk.api import BuildContext, ImageData

#: (label, data set whose protocol is used, image shape, steps per epoch of the real data set)
SETUPS = (("MLP (MNIST protocol)", "mnist", (1, 28, 28), 468), ("conv (CIFAR-10 protocol)", "cifar10", (3, 32, 32), 390))


def fake_data(shape: tuple[int, int, int], n: int) -> ImageData:
    g = torch.Generator().manual_seed(0)
    x = torch.randint(0, 256, (n, *shape), generator=g, dtype=torch.uint8)
    y = torch.randint(0, 10, (n,), generator=g)
    return ImageData("generated", x, y, x[:256], y[:256], classes=[str(i) for i in range(10)])


def measure(method_name: str, dataset: str, shape: tuple[int, int, int], steps: int, folder: Path) -> dict[str, float]:
    reg = get_registry()
    protocol = reg.datasets[dataset].protocol
    data = fake_data(shape, protocol.batch_size * steps)
    ctx = BuildContext(protocol=protocol, image_shape=shape, num_train=len(data.train_x), num_classes=10,
                       device=torch.device("cpu"), architectures=reg.architectures)
    torch.manual_seed(0)
    cls = reg.methods[method_name]
    method = cls(ctx, **cls.resolve({}))
    train(method, data, protocol, 1, 0)  # warm up
    t0 = time.perf_counter()
    result = train(method, data, protocol, 1, 0)
    step_s = (time.perf_counter() - t0) / max(1, result.steps)
    # the real path: the loop writes its whole state (Adam moments included) after every step
    ckpt = Checkpointer(folder / f"{method_name}-{dataset}.pt", CheckpointPolicy.parse("1steps"), {"run_id": "bench"})
    train(method, data, protocol, 1, 0, checkpointer=ckpt)
    write_s = ckpt.write_seconds / max(1, ckpt.writes)
    t0 = time.perf_counter()
    loaded = load_state(ckpt.path, {"run_id": "bench"}, torch.device("cpu"))
    assert loaded is not None
    optimizer = make_optimizer(method, protocol)
    method.load_state_dict(loaded["model"])
    optimizer.load_state_dict(loaded["optimizer"])
    load_s = time.perf_counter() - t0
    return {"step_s": step_s, "write_s": write_s, "load_s": load_s, "mb": ckpt.path.stat().st_size / 2**20}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--steps", type=int, default=30, help="training steps timed per method")
    parser.add_argument("--quick", action="store_true", help="fewer steps and methods (CI)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    methods = ("vae",) if args.quick else ("vae", "simclr")
    steps = 5 if args.quick else args.steps
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {steps} timed steps per method, generated data")
    header = f"{'protocol':26} {'method':8} {'step ms':>8} {'ckpt MB':>8} {'write ms':>9} {'resume ms':>10} {'every epoch':>12} {'every 10 min':>13} {'auto':>7}"
    print(header)
    print("-" * len(header))
    with tempfile.TemporaryDirectory() as tmp:
        for label, dataset, shape, per_epoch in SETUPS:
            for name in methods:
                m = measure(name, dataset, shape, steps, Path(tmp))
                epoch_s = per_epoch * m["step_s"]
                per_epoch_share = m["write_s"] / (epoch_s + m["write_s"])
                ten_min_share = m["write_s"] / 600.0
                # auto writes at an epoch end once AUTO_COST_RATIO x the write time has passed (and every 10 min)
                auto_share = min(per_epoch_share, 1.0 / (1.0 + AUTO_COST_RATIO)) + ten_min_share
                print(f"{label:26} {name:8} {1e3 * m['step_s']:8.1f} {m['mb']:8.1f} {1e3 * m['write_s']:9.1f} {1e3 * m['load_s']:10.1f} "
                      f"{100 * per_epoch_share:11.2f}% {100 * ten_min_share:12.3f}% {100 * auto_share:6.2f}%")
    print("shares: checkpoint write time / (training time between checkpoints + write time); resume: load + restore once")


if __name__ == "__main__":
    main()

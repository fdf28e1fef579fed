"""Benchmark: training throughput and augmentation share of every registered method, MNIST protocol.

    python benchmarks/bench_methods.py [--data-dir ../shared/data] [--images 5120] [--threads 2]
                                       [--methods vae simclr moco ...] [--precision fp32|bf16] [--compile]

Each method is built under the MNIST protocol (MLP 784-500-500-2000-10, batch 128, its declared
augmentations) with its default parameters and trained through the core loop
(:func:`sslbench.engine.train.train`) for one epoch over ``--images`` images -- random uint8 28x28 images,
or the first ``--images`` of real MNIST with ``--data-dir``. A short warm-up epoch on two batches comes
first and is not timed. Printed per method: images/s (images, not views, per second of training
step), views/s, the share of step time spent making views, seconds, steps and the loss at the end.
The header gives the torch threads used and the load average before and after, because on a shared
machine other processes change the figures (README, "Threads": two 2-thread processes on 2 cores slow each
other 3x or more). A method that cannot train on this data is listed with its error; the others go
on. With ``--compile`` each method is also trained with ``torch.compile`` of its loss (the loop's
``--compile``), after its own warm-up, and the row adds the compiled images/s, the speed-up over eager
and the seconds the first compiled step took (compilation; not in the timed epoch). Prints its
figures; it is not a test, and it stores nothing.
"""

from __future__ import annotations

import argparse
import os
import sys

import torch


def load_average() -> str:
    try:
        return " ".join(f"{v:.2f}" for v in os.getloadavg())
    except OSError:
        return "n/a"


def mnist_like(data_dir: str | None, n: int):  # type: ignore[no-untyped-def]
    """(ImageData, description): real MNIST's first ``n`` train images or ``n`` random uint8 images."""
    from sslbench.sdk.api import ImageData

    if data_dir:
        from sslbench.engine.plugins import get_registry

        data = get_registry().datasets["mnist"]().load(data_dir)
        x, y = data.train_x[:n].contiguous(), data.train_y[:n].contiguous()
        where = f"real MNIST from {data_dir}"
    else:
        g = torch.Generator().manual_seed(0)
        x = torch.randint(0, 256, (n, 1, 28, 28), generator=g, dtype=torch.uint8)
        y = torch.randint(0, 10, (n,), generator=g)
        where = "random uint8 28x28"
    return ImageData(name="bench", train_x=x, train_y=y, test_x=x[:128], test_y=y[:128]), where


def build(registry, name: str, protocol, data, device: torch.device, seed: int):  # type: ignore[no-untyped-def]
    from sslbench.sdk.api import BuildContext, resolve_params

    cls = registry.lookup("methods", name)
    ctx = BuildContext(
        protocol=protocol, image_shape=data.image_shape, num_train=data.train_x.shape[0],
        num_classes=10, device=device, architectures=registry.architectures,
    )
    torch.manual_seed(seed)
    return cls(ctx, **resolve_params(name, cls.params, {})).to(device)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", help="folder with the MNIST IDX files (default: random uint8 images)")
    parser.add_argument("--images", type=int, default=5120, help="images in the timed epoch (default 5120 = 40 batches)")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's own choice)")
    parser.add_argument("--methods", nargs="*", help="methods to time (default: every registered trainable method)")
    parser.add_argument("--precision", choices=("fp32", "bf16"), default="fp32")
    parser.add_argument("--device", default=None, help="cpu, cuda or cuda:N (default: CUDA when present)")
    parser.add_argument("--compile", action="store_true", help="also time each method with torch.compile of its loss")
    args = parser.parse_args(argv)

    from sslbench.engine.plugins import get_registry
    from sslbench.sdk.protocol import MNIST_MLP
    from sslbench.engine.train import pick_device, train

    if args.threads:
        torch.set_num_threads(args.threads)
    registry = get_registry()
    names = args.methods or sorted(n for n, cls in registry.methods.items() if cls.trainable)
    protocol = MNIST_MLP
    if args.images < 2 * protocol.batch_size:
        parser.error(f"--images {args.images}: time at least two batches ({2 * protocol.batch_size} images)")
    device = pick_device(args.device)
    data, where = mnist_like(args.data_dir, args.images)
    data = data.to(device)
    warm = data.__class__(**{**data.__dict__, "train_x": data.train_x[: 2 * protocol.batch_size], "train_y": data.train_y[: 2 * protocol.batch_size]})

    print(f"sslbench method benchmark: protocol {protocol.name} ({protocol.hash()}), batch {protocol.batch_size}, "
          f"{args.images} images ({where}), {args.precision}, device {device}")
    print(f"torch {torch.__version__}, threads {torch.get_num_threads()}, load average before {load_average()}")
    header = f"{'method':<12} {'family':<14} {'img/s':>8} {'views/s':>8} {'aug %':>6} {'seconds':>8} {'steps':>6} {'loss':>10}"
    if args.compile:
        header += f" {'compiled img/s':>14} {'speed-up':>8} {'compile s':>9}"
    print(header)
    print("-" * len(header))
    failures = 0
    peak = ""
    for name in names:
        cls = registry.lookup("methods", name)
        try:
            train(build(registry, name, protocol, warm, device, 0), warm, protocol, epochs=1, seed=0, precision=args.precision)
            method = build(registry, name, protocol, data, device, 0)
            result = train(method, data, protocol, epochs=1, seed=0, precision=args.precision)
        except Exception as exc:  # noqa: BLE001 - report the method, time the others
            failures += 1
            print(f"{name:<12} {cls.family:<14} error: {type(exc).__name__}: {str(exc).splitlines()[0][:120]}")
            continue
        per_image = method.views + (1 if method.original else 0)
        if data.train_next is not None:
            per_image = 2
        loss = result.history.get("loss", [float("nan")])[-1]
        row = (f"{name:<12} {cls.family:<14} {result.images_per_s:>8,.0f} {result.images_per_s * per_image:>8,.0f} "
               f"{100 * result.augment_share:>6.1f} {result.seconds:>8.2f} {result.steps:>6} {loss:>10.4g}")
        if args.compile:
            try:
                compiled = train(build(registry, name, protocol, data, device, 0), data, protocol, epochs=1, seed=0,
                                 precision=args.precision, compile=True)
                row += (f" {compiled.images_per_s:>14,.0f} {compiled.images_per_s / max(result.images_per_s, 1e-9):>7.2f}x"
                        f" {compiled.compile_seconds:>9.1f}")
            except Exception as exc:  # noqa: BLE001 - a method torch.compile cannot take is reported, not fatal
                row += f" compile failed: {type(exc).__name__}: {str(exc).splitlines()[0][:80]}"
        print(row)
        sys.stdout.flush()
        peak = f"; peak memory {result.peak_memory_mb:,.0f} MB ({result.memory_kind})"
    print(f"load average after {load_average()}{peak}")
    return 1 if names and failures == len(names) else 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Benchmark: SimVAE training throughput on the MNIST protocol (a script, not a test).

Runs sslbench's own training loop (:func:`sslbench.engine.train.train`) on the MNIST protocol (28x28 grey,
MLP 784-500-500-2000-10, batch 128) with SimVAE at J = 10 views, after a short warm-up, and prints
images/s, views/s (images/s x J), milliseconds per step, the share of step time spent in the batched
augmentation, peak memory, the number of torch threads and the load average seen before and after
(another busy process on 2 cores slows this 3x or more: read the load before the numbers).

Data: random uint8 images of MNIST's shape (the step costs the same), or the real training set with
``--data-dir DIR`` (the official IDX files, as for ``sslbench run --dataset mnist``).

    OMP_NUM_THREADS=2 python benchmarks/bench_simvae.py --threads 2
    python benchmarks/bench_simvae.py --views 4 --precision bf16 --steps 20
"""

from __future__ import annotations

import argparse
import os
import platform

import torch


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--views", type=int, default=10, help="J, SimVAE views per image (default 10)")
    parser.add_argument("--batch", type=int, default=128, help="images per step (default 128, the protocol's)")
    parser.add_argument("--steps", type=int, default=30, help="measured steps (default 30)")
    parser.add_argument("--warmup", type=int, default=3, help="steps run first and not measured (default 3)")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (default: torch's choice)")
    parser.add_argument("--precision", choices=("fp32", "bf16"), default="fp32", help="training arithmetic")
    parser.add_argument("--data-dir", default=None, help="folder with the MNIST IDX files; default: random uint8 data of MNIST's shape")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    if args.views < 1 or args.batch < 1 or args.steps < 1 or args.warmup < 0:
        parser.error("--views, --batch and --steps must be >= 1 and --warmup >= 0")

    if args.threads:
        torch.set_num_threads(args.threads)

    from sslbench.sdk.api import BuildContext, ImageData, resolve_params
    from sslbench.engine.plugins import get_registry
    from sslbench.sdk.protocol import MNIST_MLP
    from sslbench.engine.train import train

    registry = get_registry()
    protocol = MNIST_MLP.replace(batch_size=args.batch)
    device = torch.device("cpu")

    def data_for(steps: int) -> ImageData:
        n = steps * args.batch
        if args.data_dir:
            full = registry.datasets["mnist"]().load(args.data_dir)
            if full.train_x.shape[0] < n:
                raise SystemExit(f"--steps {args.steps} x --batch {args.batch} needs {n} images; MNIST has {full.train_x.shape[0]}")
            return ImageData(name="mnist", train_x=full.train_x[:n], train_y=full.train_y[:n], test_x=full.test_x[:1], test_y=full.test_y[:1])
        g = torch.Generator().manual_seed(args.seed)
        x = torch.randint(0, 256, (n, 1, 28, 28), dtype=torch.uint8, generator=g)
        y = torch.randint(0, 10, (n,), generator=g)
        return ImageData(name="random-mnist-shape", train_x=x, train_y=y, test_x=x[:1], test_y=y[:1])

    cls = registry.methods["simvae"]
    ctx = BuildContext(protocol=protocol, image_shape=(1, 28, 28), num_train=args.steps * args.batch, num_classes=10, device=device, architectures=registry.architectures)
    torch.manual_seed(args.seed)
    method = cls(ctx, **resolve_params("simvae", cls.params, {"views": args.views})).to(device)

    load_before = os.getloadavg()
    if args.warmup:
        train(method, data_for(args.warmup), protocol, epochs=1, seed=args.seed, precision=args.precision)
    data = data_for(args.steps)
    result = train(method, data, protocol, epochs=1, seed=args.seed + 1, precision=args.precision)
    load_after = os.getloadavg()

    print(f"SimVAE J={args.views}, MNIST protocol (MLP {protocol.arch_options['hidden']}, latent {protocol.latent_dim}), batch {args.batch}, {args.precision}, data: {data.name}")
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs; torch {torch.__version__}, threads {torch.get_num_threads()} (OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', 'unset')})")
    print(f"load average (1/5/15 min): before {load_before[0]:.2f}/{load_before[1]:.2f}/{load_before[2]:.2f}, after {load_after[0]:.2f}/{load_after[1]:.2f}/{load_after[2]:.2f}")
    print(f"steps measured: {result.steps} (after {args.warmup} warm-up), {result.seconds:.2f} s, {1000 * result.seconds / result.steps:.1f} ms/step")
    print(f"throughput: {result.images_per_s:,.0f} images/s, {result.images_per_s * args.views:,.0f} views/s")
    print(f"augmentation: {100 * result.augment_share:.1f}% of step time ({result.images * args.views / max(result.augment_seconds, 1e-9):,.0f} views/s augmented)")
    print(f"peak memory: {result.peak_memory_mb:,.0f} MB ({result.memory_kind})")


if __name__ == "__main__":
    main()

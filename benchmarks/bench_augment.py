"""Benchmark: batched on-device augmentation against a per-sample torchvision DataLoader pipeline, and
the augmentation share of the training step (MNIST protocol).

    python benchmarks/bench_augment.py [--data-dir ../shared/data] [--images 20000] [--threads 2]

Prints its figures; it is not a test. Both augmentation pipelines produce the MNIST protocol's views
(random resized crop scale [0.4, 1], ratio [0.75, 1.3], vertical flip 0.5, output float in [0, 1]) in
batches of 128 images x J views.
"""

from __future__ import annotations

import argparse
import os
import time

import torch
from torch.utils.data import DataLoader, Dataset


def mnist_like(data_dir: str | None, n: int) -> tuple[torch.Tensor, str]:
    if data_dir:
        from sslbench.engine.plugins import get_registry

        data = get_registry().datasets["mnist"]().load(data_dir)
        return data.train_x[:n].contiguous(), f"real MNIST from {data_dir}"
    g = torch.Generator().manual_seed(0)
    return (torch.rand(n, 1, 28, 28, generator=g) * 255).to(torch.uint8), "random uint8 28x28"


class PerSample(Dataset):
    """The usual pipeline: one image at a time through torchvision.transforms, J times."""

    def __init__(self, x: torch.Tensor, views: int, tensor_api: bool) -> None:
        from torchvision.transforms import v2

        self.x, self.views, self.tensor_api = x, views, tensor_api
        ops = [
            v2.RandomResizedCrop(28, scale=(0.4, 1.0), ratio=(0.75, 1.3), antialias=True),
            v2.RandomVerticalFlip(0.5),
        ]
        if tensor_api:
            self.t = v2.Compose([*ops, v2.ToDtype(torch.float32, scale=True)])
        else:  # PIL images, the classic torchvision path
            self.t = v2.Compose([*ops, v2.PILToTensor(), v2.ToDtype(torch.float32, scale=True)])
        self.pil = None
        if not tensor_api:
            from PIL import Image

            self.pil = [Image.fromarray(img[0].numpy()) for img in x]

    def __len__(self) -> int:
        return self.x.shape[0]

    def __getitem__(self, i: int) -> torch.Tensor:
        img = self.x[i] if self.tensor_api else self.pil[i]  # type: ignore[index]
        return torch.stack([self.t(img) for _ in range(self.views)])


def time_dataloader(x: torch.Tensor, views: int, workers: int, tensor_api: bool) -> float:
    loader = DataLoader(PerSample(x, views, tensor_api), batch_size=128, shuffle=True, num_workers=workers, drop_last=True)
    n = 0
    start = time.perf_counter()
    for batch in loader:
        n += batch.shape[0]
    return n / (time.perf_counter() - start)


def time_batched(x: torch.Tensor, views: int, device: torch.device) -> float:
    from sslbench.engine.augment import make_views
    from sslbench.sdk.protocol import MNIST_MLP

    x = x.to(device)
    g = torch.Generator(device=device).manual_seed(0)
    make_views(x[:128], MNIST_MLP.augment, views, False, g)  # warm-up
    n = 0
    start = time.perf_counter()
    perm = torch.randperm(x.shape[0], generator=g, device=device)
    for b in range(x.shape[0] // 128):
        v = make_views(x[perm[b * 128 : (b + 1) * 128]], MNIST_MLP.augment, views, False, g)
        n += v.shape[0]
    if device.type == "cuda":
        torch.cuda.synchronize()
    return n / (time.perf_counter() - start)


def step_share(x: torch.Tensor, method_name: str, device: torch.device) -> tuple[float, float]:
    """Train one epoch of ``method_name`` on ``x`` through the core loop; (images/s, aug share)."""
    from sslbench.sdk.api import BuildContext, ImageData
    from sslbench.engine.plugins import get_registry
    from sslbench.sdk.protocol import MNIST_MLP
    from sslbench.engine.train import train

    reg = get_registry()
    y = torch.zeros(x.shape[0], dtype=torch.long)
    data = ImageData("bench", x, y, x[:256], y[:256]).to(device)
    ctx = BuildContext(MNIST_MLP, (1, 28, 28), x.shape[0], 10, device, reg.architectures)
    torch.manual_seed(0)
    method = reg.methods[method_name](ctx, **{k: p.default for k, p in reg.methods[method_name].params.items()}).to(device)
    result = train(method, data, MNIST_MLP, epochs=1, seed=0)
    return result.images_per_s, result.augment_share


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-dir", default=None, help="folder with MNIST IDX files (else random data)")
    parser.add_argument("--images", type=int, default=20000, help="images per measurement")
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--views", type=int, default=2, help="views per image (SimCLR 2, SimVAE 10)")
    parser.add_argument("--methods", default="vae,simclr", help="methods whose step share is measured")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    x, source = mnist_like(args.data_dir, args.images)
    print(f"data: {source}, {x.shape[0]} images; device {device}; torch threads {torch.get_num_threads()}; "
          f"load average before {os.getloadavg()[0]:.2f}; torch {torch.__version__}")
    print(f"\n== augmentation throughput, MNIST protocol, {args.views} views per image (views/s) ==")
    batched = time_batched(x, args.views, device) 
    print(f"batched on-device (sampling grid + grid_sample): {batched:12,.0f} views/s")
    small = x[: max(2560, args.images // 4)]
    rows = []
    for workers, tensor_api in ((0, True), (2, True), (0, False)):
        rate = time_dataloader(small, args.views, workers, tensor_api)
        label = f"per-sample DataLoader, {'tensor' if tensor_api else 'PIL'} transforms.v2, workers={workers}"
        rows.append((label, rate))
        print(f"{label:55s}: {rate:12,.0f} views/s   (batched is {batched / rate:5.1f}x faster)")
    best_label, best = max(rows, key=lambda r: r[1])
    print(f"speed-up over the fastest per-sample pipeline ({best_label}): {batched / best:.1f}x (target >= 5x)")
    print("\n== augmentation share of the training step (core loop, MNIST protocol, batch 128) ==")
    for name in args.methods.split(","):
        rate, share = step_share(x, name, device)
        print(f"{name:10s}: {rate:10,.0f} images/s, augmentation {100 * share:5.1f}% of step time (target < 20%)")
    print(f"\nload average after {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()

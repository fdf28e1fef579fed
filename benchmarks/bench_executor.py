"""Benchmark: one grid run by each executor on the same cores, wall time against in-process.

    python benchmarks/bench_executor.py --data-dir DIR/mnist [--methods vae simclr] [--seeds 4] [--epochs 1]
    python benchmarks/bench_executor.py --quick          # digits, to try it (no files needed)

The grid (default: vae and simclr x 4 seeds, 1 epoch, kNN; at least 8 cells on MNIST) is run by
``sslbench run`` in a fresh process and a fresh results folder, four ways:

- in-process, 2 torch threads;
- ``--executor local --jobs 2``, 1 thread per worker;
- ``--executor ray --cpus-per-run 2`` on a local Ray instance of 2 CPUs: 1 worker x 2 threads;
- ``--executor ray --cpus-per-run 1``: 2 workers x 1 thread.

Each wall time includes the start-up (Python, torch, Ray's instance), as a user sees it. It prints
the times, their ratios to in-process, and whether the runs of the same thread count stored the
same numbers. Targets on 2 cores: Ray 1 x 2 within 10% of in-process; 2 jobs or 2 Ray workers x 1
thread at least as fast as in-process. Prints (and ``--json FILE`` writes); not a test. Run it on a
quiet machine: other load on the cores makes every figure noisy.
"""

from __future__ import annotations

import argparse
import json
import os
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

#: (label, extra command-line options, torch threads per run); Ray starts a local instance of this machine's CPUs
CONFIGS = (
    ("in-process, 2 threads", [], 2),
    ("local --jobs 2, 1 thread each", ["--executor", "local", "--jobs", "2"], 1),
    ("ray 1 worker x 2 threads", ["--executor", "ray", "--cpus-per-run", "2"], 2),
    ("ray 2 workers x 1 thread", ["--executor", "ray", "--cpus-per-run", "1"], 1),
)


def stored_numbers(home: Path) -> dict[str, list[tuple[str, float]]]:
    """Each stored run's metric values, by run id (to compare executors of the same thread count)."""
    db = sqlite3.connect(home / "results.sqlite")
    out: dict[str, list[tuple[str, float]]] = {}
    for run_id, name, value in db.execute("SELECT run_id, name, value FROM metrics ORDER BY run_id, evaluator, name"):
        out.setdefault(run_id, []).append((name, value))
    db.close()
    return out


def run_one(label: str, options: list[str], threads: int, grid: list[str], root: Path) -> dict[str, object]:
    home = root / label.split(",")[0].replace(" ", "-")
    env = {**os.environ, "SSLBENCH_THREADS": str(threads), "OMP_NUM_THREADS": str(threads), "RAY_DISABLE_USAGE_STATS": "1"}
    env.pop("RAY_ADDRESS", None)  # a local instance: the same two cores for every executor
    command = [sys.executable, "-m", "sslbench", "run", *grid, "--home", str(home), "--format", "json", *options]
    t0 = time.perf_counter()
    done = subprocess.run(command, env=env, capture_output=True, text=True)
    seconds = time.perf_counter() - t0
    if done.returncode != 0:
        raise SystemExit(f"{label}: `{' '.join(command)}` exited {done.returncode}:\n{done.stderr[-3000:]}")
    return {"label": label, "seconds": seconds, "threads": threads, "numbers": stored_numbers(home)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data-dir", help="the MNIST folder (IDX files); not needed with --quick")
    parser.add_argument("--dataset", default="mnist")
    parser.add_argument("--methods", nargs="+", default=["vae", "simclr"])
    parser.add_argument("--seeds", type=int, default=4)
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--only", nargs="+", type=int, help="run only these configurations (1-4, in the order above)")
    parser.add_argument("--quick", action="store_true", help="digits (bundled with scikit-learn), to try the script")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args()
    dataset = "digits" if args.quick else args.dataset
    if dataset != "digits" and not args.data_dir:
        parser.error(f"--data-dir DIR: the folder of {dataset}'s files (or --quick for digits)")
    grid = [*args.methods, "--dataset", dataset, "--seeds", str(args.seeds), "--epochs", str(args.epochs), "-e", "knn"]
    if dataset != "digits":
        grid += ["--data-dir", args.data_dir]
    cells = len(args.methods) * args.seeds
    print(f"grid: {' '.join(args.methods)} x {args.seeds} seeds on {dataset}, {args.epochs} epoch(s), kNN: {cells} cells; "
          f"{os.cpu_count()} CPUs, load {os.getloadavg()[0]:.1f}")
    chosen = [c for i, c in enumerate(CONFIGS, 1) if not args.only or i in args.only]
    results = []
    with tempfile.TemporaryDirectory(prefix="bench-executor-") as tmp:
        for label, options, threads in chosen:
            result = run_one(label, options, threads, grid, Path(tmp))
            results.append(result)
            print(f"  {label:34s} {result['seconds']:8.1f} s", flush=True)
    base = next((r for r in results if r["label"].startswith("in-process")), None)
    print()
    print(f"{'executor':34s} {'wall s':>8s} {'vs in-process':>14s}")
    for r in results:
        ratio = f"{r['seconds'] / base['seconds']:.3f}x" if base else "-"
        print(f"{r['label']:34s} {r['seconds']:8.1f} {ratio:>14s}")
    by_threads: dict[int, list[dict[str, object]]] = {}
    for r in results:
        by_threads.setdefault(int(r["threads"]), []).append(r)
    for threads, group in sorted(by_threads.items()):
        if len(group) > 1:
            same = all(g["numbers"] == group[0]["numbers"] for g in group[1:])
            print(f"{threads} thread(s): {', '.join(str(g['label']) for g in group)} stored {'the same' if same else 'DIFFERENT'} numbers")
    if args.json:
        args.json.write_text(json.dumps([{k: v for k, v in r.items() if k != "numbers"} for r in results], indent=2))


if __name__ == "__main__":
    main()

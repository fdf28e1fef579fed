"""The GPU benchmark and the GPU check keep working: their CPU forms run here as CI runs them.

``benchmarks/bench_gpu.py --device cpu --quick`` runs in a process where the optional packages
(Ray, pytorch-fid, tabulate, TensorBoard, matplotlib) and the command line's typer and rich cannot
be imported, as on a GPU machine that only has PyTorch and sslbench installed with ``--no-deps``;
``benchmarks/gpu_check.sh --device cpu`` runs as a person runs it.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import REPO

BENCH = REPO / "benchmarks" / "bench_gpu.py"
CHECK = REPO / "benchmarks" / "gpu_check.sh"
#: what a bare GPU machine may lack: the benchmark must not import any of these
ABSENT = ("ray", "pytorch_fid", "tabulate", "tensorboard", "torch.utils.tensorboard", "matplotlib", "typer", "rich")
#: runs ``BENCH`` with ``ABSENT`` unimportable (``sys.modules[name] = None`` makes ``import name`` fail)
WITHOUT_OPTIONAL = (
    "import runpy, sys; sys.modules.update(dict.fromkeys({absent!r})); sys.argv = {argv!r}; "
    "runpy.run_path({path!r}, run_name='__main__')"
)


def _env() -> dict[str, str]:
    return {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore"}


def test_bench_gpu_quick_on_cpu_without_optional_packages(tmp_path: Path) -> None:
    out = tmp_path / "bench.json"
    argv = [str(BENCH), "--device", "cpu", "--quick", "--json", str(out)]
    code = WITHOUT_OPTIONAL.format(absent=ABSENT, argv=argv, path=str(BENCH))
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, env=_env(), cwd=tmp_path)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    report = json.loads(out.read_text())
    rows = {(r["data"], r["method"], r["precision"], r["compile"]): r for r in report["rows"]}
    for data in ("mnist", "cifar"):
        for method in ("simclr", "vae"):
            row = rows[(data, method, "fp32", False)]
            assert row["status"] == "ok", row
            assert row["steps"] == 3 and row["images"] == 3 * 128
            assert row["steps_per_s"] > 0 and row["images_per_s"] > 0
            assert row["views_per_s"] == pytest.approx(row["images_per_s"] * (2 if method == "simclr" else 1))
            assert rows[(data, method, "tf32", False)]["status"] == "n/a"  # said so in the table, not timed
            assert rows[(data, method, "bf16", False)]["status"] == "n/a"
    compiled = [r for r in report["rows"] if r["compile"] and r["status"] == "ok"]
    assert len(compiled) == 1 and compiled[0]["compile_seconds"] > 0  # the loop can compile: one row proves it
    assert "n/a: CPUs have no TF32" in done.stdout
    assert "| eager" in done.stdout and "torch.compile" in done.stdout
    executor = report["executor"]
    assert executor["status"] == "ok", executor
    assert [r["jobs"] for r in executor["rows"]] == [1, 2]
    for row in executor["rows"]:
        assert row["status"] == "ok" and row["runs"] == row["jobs"] and row["aggregate_images_per_s"] > 0
    assert executor["rows"][0]["scaling"] == pytest.approx(1.0)
    assert "agg img/s" in done.stdout


def test_bench_gpu_refuses_a_missing_device(tmp_path: Path) -> None:
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    done = subprocess.run([sys.executable, str(BENCH), "--device", "cuda", "--quick"], capture_output=True, text=True,
                          timeout=120, env=_env(), cwd=tmp_path)
    assert done.returncode == 2
    assert "CUDA is not available" in done.stderr and "available here: cpu" in done.stderr


@pytest.mark.slow  # about 2.5 minutes on 2 busy cores: two small grids with every evaluator, then the quick benchmark
def test_gpu_check_on_cpu(tmp_path: Path) -> None:
    done = subprocess.run(["bash", str(CHECK), "--device", "cpu"], capture_output=True, text=True, timeout=900,
                          env={**_env(), "TMPDIR": str(tmp_path)}, cwd=tmp_path)
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:]
    summary = done.stdout.split("summary (cpu")[1]
    lines = [line for line in summary.splitlines() if line.startswith(("PASS", "FAIL"))]
    names = [line.split()[1] for line in lines]
    assert names == ["setup", "digits", "digits/vae", "digits/simclr", "shapes", "shapes/vae", "shapes/simclr", "bench_gpu"]
    assert all(line.startswith("PASS") for line in lines)
    assert "fid left out" in done.stdout  # needs Inception weights: not run on a CPU
    assert "all checks passed" in done.stdout
    assert list(tmp_path.glob("sslbench_gpu_check.*")) == []  # its temporary --home is removed


def test_gpu_check_fails_on_a_missing_device(tmp_path: Path) -> None:
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    done = subprocess.run(["bash", str(CHECK), "--device", "cuda:7"], capture_output=True, text=True, timeout=300,
                          env={**_env(), "TMPDIR": str(tmp_path)}, cwd=tmp_path)
    assert done.returncode == 1
    assert done.stdout.startswith("FAIL setup") and "CUDA is not available" in done.stdout
    bad = subprocess.run(["bash", str(CHECK), "--bogus"], capture_output=True, text=True, timeout=60, cwd=tmp_path)
    assert bad.returncode == 2 and "unknown option --bogus" in bad.stderr

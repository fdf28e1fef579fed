"""Packaging: ``sslbench --version``, the shipped suites as package data, and a wheel built from the
repository that installs into a fresh virtual environment and lists the suites from outside it."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
from typer.testing import CliRunner

import sslbench
from sslbench.bench.suites import SHIPPED_SUITES, default_suite_file, load_suites
from sslbench.cli import app

from conftest import REPO

SHIPPED = {"quick", "table1-mnist", "table1-fashion", "linear-gmm", "ari-nmi", "mse-fid-mnist", "style-shapes", "vi-simsiam", "ssvae-balls"}


def test_version_prints_the_version_and_exits_0() -> None:
    result = CliRunner().invoke(app, ["--version"])
    assert result.exit_code == 0, result.output
    assert result.output.strip() == f"sslbench {sslbench.__version__}"


def test_the_default_suites_are_package_data_not_the_working_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "benchmarks.toml").write_text("[suites.mine]\nmethods = ['random']\ndatasets = ['digits']\n"
                                              "[suites.mine.budgets.cpu]\nepochs = 0\n", encoding="utf-8")
    monkeypatch.chdir(tmp_path)
    path = default_suite_file()
    assert path == Path(sslbench.__file__).resolve().parent / "bench" / SHIPPED_SUITES
    assert SHIPPED <= set(load_suites(path).suites)
    assert (REPO / "benchmarks.toml").resolve() == path.resolve()  # the top-level file links to the packaged one
    assert "mine" in load_suites(tmp_path / "benchmarks.toml").suites  # a user's own file is read with --file


def _source_copy(dest: Path) -> Path:
    """The files a build reads, copied out of the repository (so building leaves no build/ in it)."""
    ignore = shutil.ignore_patterns("__pycache__", "*.egg-info", "*.pyc")
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(REPO / name, dest / name)
    for name in ("sslbench", "plugins"):
        shutil.copytree(REPO / name, dest / name, ignore=ignore)
    return dest


def _setuptools_builds() -> bool:
    """Whether the installed setuptools meets pyproject.toml's build requirement (setuptools >= 77)."""
    try:
        from importlib.metadata import version

        return int(version("setuptools").split(".")[0]) >= 77
    except Exception:  # not installed, or a version string without a leading number
        return False


def test_wheel_installs_into_a_clean_venv_and_lists_the_shipped_suites(tmp_path: Path) -> None:
    (tmp_path / "src").mkdir()
    src = _source_copy(tmp_path / "src")
    out, outside = tmp_path / "wheels", tmp_path / "elsewhere"
    outside.mkdir()
    # run everything outside the repository, without PYTHONPATH: nothing may see the source tree
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env["COLUMNS"] = "200"
    # offline with the installed setuptools when it is recent enough, else pip fetches it (build isolation)
    offline = ["--no-build-isolation", "--no-index"] if _setuptools_builds() else []
    build = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", *offline, "-q", "-w", str(out), str(src)],
        cwd=outside, env=env, capture_output=True, text=True, check=False, timeout=300,
    )
    assert build.returncode == 0, build.stdout + build.stderr
    (wheel,) = out.glob("sslbench-*.whl")
    with zipfile.ZipFile(wheel) as zf:
        names = set(zf.namelist())
        assert f"sslbench/bench/{SHIPPED_SUITES}" in names
        assert zf.read(f"sslbench/bench/{SHIPPED_SUITES}") == default_suite_file().read_bytes()  # real content, not a link
        assert any(n.startswith("sslbench_plugins/methods/") for n in names)

    venv = tmp_path / "venv"
    # system site packages: torch and the other dependencies are not installed again
    subprocess.run([sys.executable, "-m", "venv", "--system-site-packages", str(venv)], cwd=outside, env=env, check=True, timeout=120)
    bindir = venv / ("Scripts" if os.name == "nt" else "bin")
    install = subprocess.run(
        [str(bindir / "python"), "-m", "pip", "install", "--no-deps", "--no-index", "--force-reinstall", "-q", str(wheel)],
        cwd=outside, env=env, capture_output=True, text=True, check=False, timeout=300,
    )
    assert install.returncode == 0, install.stdout + install.stderr
    where = subprocess.run([str(bindir / "python"), "-c", "import sslbench.bench.suites as s; print(s.default_suite_file())"],
                           cwd=outside, env=env, capture_output=True, text=True, check=False, timeout=120)
    assert where.returncode == 0, where.stderr
    assert Path(where.stdout.strip()).is_relative_to(venv), where.stdout  # the installed copy, not the repository's
    listed = subprocess.run([str(bindir / "sslbench"), "bench", "--list"], cwd=outside, env=env, capture_output=True, text=True, check=False, timeout=300)
    assert listed.returncode == 0, listed.stdout + listed.stderr
    for name in SHIPPED:
        assert name in listed.stdout, (name, listed.stdout)
    version = subprocess.run([str(bindir / "sslbench"), "--version"], cwd=outside, env=env, capture_output=True, text=True, check=False, timeout=120)
    assert version.returncode == 0 and version.stdout.strip() == f"sslbench {sslbench.__version__}"

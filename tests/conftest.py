"""Shared fixtures: every test gets its own results home and cache, and torch uses one thread so
parallel test processes do not slow each other down."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

torch.set_num_threads(1)
os.environ.setdefault("OMP_NUM_THREADS", "1")

REPO = Path(__file__).resolve().parent.parent
SHARED = REPO.parent / "shared"


@pytest.fixture(autouse=True)
def _isolated_home(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> Path:
    home = tmp_path_factory.mktemp("sslbench-home")
    monkeypatch.setenv("SSLBENCH_HOME", str(home))
    monkeypatch.setenv("SSLBENCH_CACHE", str(tmp_path_factory.mktemp("sslbench-cache")))
    monkeypatch.setenv("SSLBENCH_THREADS", "1")
    # no data root and no user config file: a test sees only the data folders it names
    monkeypatch.delenv("SSLBENCH_DATA", raising=False)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path_factory.mktemp("sslbench-config")))
    return home


@pytest.fixture
def registry():  # type: ignore[no-untyped-def]
    from sslbench.engine.plugins import build_registry

    return build_registry()

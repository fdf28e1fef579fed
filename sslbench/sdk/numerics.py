"""Float32 arithmetic settings that plugins may rely on: :func:`strict` runs a block with full IEEE
fp32 matrix products and convolutions (no TF32), as evaluation needs (kNN distances, FID's
Inception), whatever the training around it allowed. The training settings themselves are set in
one place, :mod:`sslbench.engine.precision`, with these same helpers."""

from __future__ import annotations

import contextlib
from typing import Any, Iterator

import torch


def flag_state() -> dict[str, Any]:
    """torch's global matmul/convolution precision and determinism flags, to restore later."""
    return {
        "matmul": torch.backends.cuda.matmul.allow_tf32,
        "cudnn_tf32": torch.backends.cudnn.allow_tf32,
        "float32_matmul_precision": torch.get_float32_matmul_precision(),
        "deterministic": torch.are_deterministic_algorithms_enabled(),
        "deterministic_warn_only": torch.is_deterministic_algorithms_warn_only_enabled(),
        "cudnn_deterministic": torch.backends.cudnn.deterministic,
        "cudnn_benchmark": torch.backends.cudnn.benchmark,
    }


def restore_flags(state: dict[str, Any]) -> None:
    """Put back what :func:`flag_state` read."""
    torch.backends.cuda.matmul.allow_tf32 = state["matmul"]
    torch.backends.cudnn.allow_tf32 = state["cudnn_tf32"]
    torch.set_float32_matmul_precision(state["float32_matmul_precision"])
    torch.use_deterministic_algorithms(state["deterministic"], warn_only=state["deterministic_warn_only"])
    torch.backends.cudnn.deterministic = state["cudnn_deterministic"]
    torch.backends.cudnn.benchmark = state["cudnn_benchmark"]


def set_tf32(allowed: bool) -> None:
    """Allow TF32 for float32 matmuls and cuDNN convolutions, or not (full IEEE fp32)."""
    torch.backends.cuda.matmul.allow_tf32 = allowed
    torch.backends.cudnn.allow_tf32 = allowed
    torch.set_float32_matmul_precision("high" if allowed else "highest")


@contextlib.contextmanager
def strict() -> Iterator[None]:
    """Full IEEE fp32 matmuls and convolutions for the block; the flags are restored after it."""
    before = flag_state()
    set_tf32(False)
    try:
        yield
    finally:
        restore_flags(before)


__all__ = ["flag_state", "restore_flags", "set_tf32", "strict"]

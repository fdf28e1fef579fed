"""Numerics: the one place that sets how float32 matrix products and convolutions are computed
(TF32 or full IEEE fp32), whether cuDNN/cuBLAS must be deterministic, and what of it becomes part
of a run's identity.

Declared defaults, by ``--precision`` (the precision is in the run key):

* ``fp32``: full IEEE fp32 for Linear layers *and* convolutions (TF32 off). PyTorch's own default
  runs "fp32" convolutions in TF32 on Ampere and later while keeping Linear layers in fp32; here
  both are what the name says.
* ``tf32``: TF32 allowed for matmuls and convolutions (about 10 mantissa bits, much faster on
  tensor cores).
* ``bf16``: bf16 autocast; what stays in fp32 (loss reductions, contrastive logits) is full fp32.

Evaluation (embedding for kNN, FID's Inception) runs under :func:`sslbench.sdk.numerics.strict` (TF32 off): a
metric must not depend on the speed settings of the training that made the model. On CPU none of
these flags changes a number; they are still recorded.

``deterministic`` turns on ``torch.use_deterministic_algorithms`` and cuDNN's deterministic mode
(no benchmark autotuning), and sets ``CUBLAS_WORKSPACE_CONFIG`` when unset (cuBLAS needs it to be
repeatable); ops without a deterministic implementation then raise instead of varying.
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass
from typing import Any, Iterator

import torch

from sslbench.sdk.numerics import flag_state, restore_flags, set_tf32, strict

#: the precisions a run may ask for (``--precision``)
PRECISIONS = ("fp32", "tf32", "bf16")

#: the cuBLAS workspace setting that makes cuBLAS deterministic (NVIDIA's documented value)
CUBLAS_WORKSPACE = ":4096:8"


@dataclass(frozen=True)
class Numerics:
    """How a run computes: precision, TF32 for matmul/conv, determinism, and torch.compile."""

    precision: str = "fp32"
    deterministic: bool = False
    compile: bool = False

    @property
    def tf32(self) -> bool:
        """Whether float32 matmuls and convolutions may use TF32 (only ``--precision tf32``)."""
        return self.precision == "tf32"

    @property
    def autocast_dtype(self) -> torch.dtype | None:
        return torch.bfloat16 if self.precision == "bf16" else None


def check_precision(precision: str) -> None:
    """Raise ValueError naming the choices when ``precision`` is not one of :data:`PRECISIONS`."""
    if precision not in PRECISIONS:
        raise ValueError(f"--precision {precision!r}: choose fp32 (full IEEE), tf32 (TF32 matmul/conv on CUDA) or bf16 (autocast)")


def _set(tf32: bool, deterministic: bool) -> None:
    set_tf32(tf32)
    torch.use_deterministic_algorithms(deterministic)
    torch.backends.cudnn.deterministic = deterministic
    torch.backends.cudnn.benchmark = False


def settings(numerics: Numerics) -> dict[str, Any]:
    """What :func:`training` sets, as stored in a run's environment."""
    return {
        "precision": numerics.precision,
        "tf32_matmul": numerics.tf32,
        "tf32_conv": numerics.tf32,
        "float32_matmul_precision": "high" if numerics.tf32 else "highest",
        "deterministic": numerics.deterministic,
        "cudnn_benchmark": False,
        "cublas_workspace_config": os.environ.get("CUBLAS_WORKSPACE_CONFIG") or (CUBLAS_WORKSPACE if numerics.deterministic else None),
        "compile": numerics.compile,
    }


@contextlib.contextmanager
def training(numerics: Numerics) -> Iterator[dict[str, Any]]:
    """Set the training numerics of ``numerics`` for the block (restored after it); yields
    :func:`settings`."""
    if numerics.deterministic and not os.environ.get("CUBLAS_WORKSPACE_CONFIG"):
        os.environ["CUBLAS_WORKSPACE_CONFIG"] = CUBLAS_WORKSPACE  # read when cuBLAS makes its handle
    before = flag_state()
    _set(numerics.tf32, numerics.deterministic)
    try:
        yield settings(numerics)
    finally:
        restore_flags(before)


def device_identity(device: torch.device | str, numerics: Numerics) -> dict[str, Any]:
    """The ``device`` part of a run's provenance: what, besides code and data, changes its numbers.

    On CPU just ``{"type": "cpu"}`` (the flags above change nothing there); on CUDA also the
    TF32 and determinism settings. ``"compile": True`` is added wherever the run was compiled
    (inductor fuses and reorders float operations). A result stored before this part existed is
    read as ``{"type": "cpu"}`` (sslbench had not run on a GPU before; see
    :func:`sslbench.engine.provenance.stale_reasons`)."""
    kind = device.type if isinstance(device, torch.device) else str(device).split(":")[0]
    out: dict[str, Any] = {"type": kind}
    if kind == "cuda":
        out.update(tf32_matmul=numerics.tf32, tf32_conv=numerics.tf32, deterministic=numerics.deterministic)
    if numerics.compile:
        out["compile"] = True
    return out


__all__ = ["CUBLAS_WORKSPACE", "Numerics", "PRECISIONS", "check_precision", "device_identity", "settings", "strict", "training"]

"""Which device and how many threads: CUDA when present, else CPU; ``SSLBENCH_THREADS``."""

from __future__ import annotations

import os

import torch


class SetupError(ValueError):
    """The machine setup asked for (a device, a thread count) is not available here; nothing was run."""


#: the environment variable that sets torch's thread count
THREADS_VARIABLE = "SSLBENCH_THREADS"


def configure_threads() -> None:
    """Set torch's thread count from ``SSLBENCH_THREADS`` when it is set (a whole number >= 1)."""
    threads = os.environ.get(THREADS_VARIABLE, "").strip()
    if not threads:
        return
    try:
        count = int(threads)
    except ValueError:
        count = 0
    if count < 1:
        raise SetupError(
            f"{THREADS_VARIABLE}={threads!r} is not a thread count: write a whole number >= 1 "
            f"(e.g. {THREADS_VARIABLE}=2), or unset it to let torch choose"
        )
    torch.set_num_threads(count)


def available_devices() -> list[str]:
    """The devices this machine can train on: ``cpu``, each ``cuda:N``, and ``mps`` where present."""
    devices = ["cpu"]
    if torch.cuda.is_available():
        devices += [f"cuda:{i}" for i in range(torch.cuda.device_count())]
    mps = getattr(torch.backends, "mps", None)
    if mps is not None and mps.is_available():
        devices.append("mps")
    return devices


def pick_device(requested: str | None = None) -> torch.device:
    """CUDA when present, else CPU; ``requested`` ("cpu", "cuda", "cuda:1", "mps") overrides. A CUDA
    device always comes with its index (``cuda`` is the current device, ``cuda:0`` unless set), so
    the stored environment says which GPU ran. Raises :class:`SetupError` listing the available
    devices when ``requested`` is not one of them."""
    if not requested:
        return _indexed(torch.device("cuda")) if torch.cuda.is_available() else torch.device("cpu")
    available = available_devices()
    choose = f"available here: {', '.join(available)}"
    try:
        device = torch.device(requested.strip())
    except (RuntimeError, ValueError):
        raise SetupError(f"--device {requested!r} is not a device name; write cpu, cuda, cuda:N or mps ({choose})") from None
    if device.type not in ("cpu", "cuda", "mps"):
        raise SetupError(f"--device {requested}: sslbench trains on cpu, cuda or mps, not {device.type} ({choose})")
    if device.type == "cpu":
        return device
    if device.type == "mps":
        if "mps" not in available:
            raise SetupError(f"--device {requested}: Apple MPS is not available on this machine ({choose})")
        return device
    if not any(d.startswith("cuda") for d in available):
        raise SetupError(f"--device {requested}: CUDA is not available on this machine ({choose})")
    if device.index is not None and f"cuda:{device.index}" not in available:
        raise SetupError(f"--device {requested}: this machine has no CUDA device {device.index} ({choose})")
    return _indexed(device)


def _indexed(device: torch.device) -> torch.device:
    """``cuda`` -> ``cuda:N`` with N the current CUDA device."""
    return device if device.index is not None else torch.device("cuda", torch.cuda.current_device())

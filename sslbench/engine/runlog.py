"""Each run's loss curves as files other tools read: ``losses.csv`` and, when TensorBoard is
installed, TensorBoard event files, both in the run's folder (``HOME/runs/<run id>/``).

``losses.csv`` has one row per point of the training curve (:attr:`sslbench.engine.train.TrainResult.history`:
each loss term's mean over an interval of training) with the columns ``point``, ``epoch`` (where the
interval ends, in epochs), ``step`` (the training step it ends at) and one column per loss term. The
event files sit in ``runs/<run id>/tensorboard/`` with one scalar per term under ``loss/<term>`` at
that step, so ``tensorboard --logdir HOME`` shows every run. TensorBoard is optional (the extra
``sslbench[tensorboard]``); without it only the CSV is written.
"""

from __future__ import annotations

import csv
import importlib.util
import io
import os
import shutil
import tempfile
from pathlib import Path
from typing import Mapping, Sequence

from sslbench.sdk.files import atomic_write_text

#: the CSV file and the event-file folder in a run's folder
LOSSES_CSV = "losses.csv"
TENSORBOARD_DIR = "tensorboard"
#: the history key that holds each point's position in epochs (not a loss term)
EPOCH_KEY = "_epoch"


def tensorboard_available() -> bool:
    """Whether ``torch.utils.tensorboard`` can write event files (the ``tensorboard`` package is installed)."""
    return importlib.util.find_spec("tensorboard") is not None


def curve_rows(history: Mapping[str, Sequence[float]], steps: int | None = None) -> tuple[list[str], list[list[float | int]]]:
    """The header and rows of ``losses.csv``: point, epoch, step and each loss term. ``steps`` (the
    run's training steps) places each point at a step; without it the step is the point's number."""
    terms = [t for t in history if not t.startswith("_")]
    n = max((len(history[t]) for t in terms), default=0)
    epochs = list(history.get(EPOCH_KEY, []))
    last = epochs[-1] if epochs else 0.0
    rows: list[list[float | int]] = []
    for i in range(n):
        epoch = epochs[i] if i < len(epochs) else float(i + 1)
        step = round(epoch / last * steps) if steps and last else i + 1
        rows.append([i + 1, epoch, step, *[history[t][i] if i < len(history[t]) else float("nan") for t in terms]])
    return ["point", "epoch", "step", *terms], rows


def write_losses_csv(run_dir: Path, history: Mapping[str, Sequence[float]], steps: int | None = None) -> Path:
    """``run_dir/losses.csv`` (written atomically); see :func:`curve_rows`."""
    header, rows = curve_rows(history, steps)
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(rows)
    return atomic_write_text(Path(run_dir) / LOSSES_CSV, buf.getvalue())


def write_tensorboard(run_dir: Path, history: Mapping[str, Sequence[float]], tag: str, steps: int | None = None) -> Path:
    """Event files in ``run_dir/tensorboard/``: each term as scalar ``loss/<term>`` at its step, and
    ``tag`` (what the run is: method, data set, seed) as the text ``run``. The folder is written
    beside and renamed into place, replacing an older one (a retrained run)."""
    from torch.utils.tensorboard import SummaryWriter

    header, rows = curve_rows(history, steps)
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{TENSORBOARD_DIR}.{os.getpid()}.", dir=run_dir))
    try:
        writer = SummaryWriter(log_dir=str(staging))
        try:
            writer.add_text("run", tag, 0)
            for row in rows:
                for term, value in zip(header[3:], row[3:]):
                    writer.add_scalar(f"loss/{term}", float(value), int(row[2]))
        finally:
            writer.close()
        target = run_dir / TENSORBOARD_DIR
        if target.exists():
            shutil.rmtree(target)
        os.replace(staging, target)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return target


def write_run_logs(run_dir: Path, history: Mapping[str, Sequence[float]], tag: str, steps: int | None = None) -> list[Path]:
    """Write a finished run's loss curves into its folder: ``losses.csv`` always, TensorBoard event
    files when TensorBoard is installed. ``history`` is :attr:`TrainResult.history`, ``tag`` names
    the run in TensorBoard (e.g. ``"vicreg on digits, seed 0"``), ``steps`` is
    :attr:`TrainResult.steps`. Returns the paths written; nothing for a run without a curve."""
    if not any(values for term, values in history.items() if not term.startswith("_")):
        return []
    written = [write_losses_csv(run_dir, history, steps)]
    if tensorboard_available():
        written.append(write_tensorboard(run_dir, history, tag, steps))
    return written


__all__ = ["EPOCH_KEY", "LOSSES_CSV", "TENSORBOARD_DIR", "curve_rows", "tensorboard_available", "write_losses_csv", "write_run_logs", "write_tensorboard"]

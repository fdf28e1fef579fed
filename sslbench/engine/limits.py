"""The bounds a grid's numbers are checked against before any work starts: how many seeds, which seed
values, how many epochs, and a batch size against the training set it batches.

A grid of a billion seeds or 10^20 epochs is a typo, not a benchmark: it would exhaust memory while
the grid is built or overflow the store's integer columns much later. :func:`check_budget` refuses it
up front (``run`` and ``build_grid`` call it; the suite parser checks the same limits at the file's
line); :func:`check_batch` refuses a batch size larger than the loaded training set.
"""

from __future__ import annotations

from typing import Sized

from sslbench.sdk.api import DataError
from sslbench.sdk.protocol import Protocol

#: the most seeds one method may have in a grid (``--seeds``, a suite's ``seeds``)
MAX_SEEDS = 1000
#: the largest seed value (fits a signed 32-bit integer: NumPy, torch and SQLite all take it)
MAX_SEED = 2**31 - 1
#: the most training epochs of one run (``--epochs``, a budget's ``epochs``)
MAX_EPOCHS = 100_000


class LimitError(ValueError):
    """A number of seeds, a seed or a number of epochs is outside the bounds above; nothing was run."""


class BatchSizeError(DataError):
    """The batch size is larger than the training set of the loaded data set (a :class:`DataError`:
    every cell of that data set has the same problem, so the runner skips them all)."""


def check_seed_count(count: int) -> None:
    """Refuse more than :data:`MAX_SEEDS` seeds."""
    if count > MAX_SEEDS:
        raise LimitError(f"{count} seeds per method is more than the limit of {MAX_SEEDS}; give fewer seeds (e.g. 3 or 5)")


def check_seed(seed: int) -> None:
    """Refuse a seed outside 0 .. :data:`MAX_SEED`."""
    if not 0 <= seed <= MAX_SEED:
        raise LimitError(f"seed {seed} is outside 0 .. {MAX_SEED}; choose a smaller seed")


def check_epochs(epochs: int) -> None:
    """Refuse epochs outside 0 .. :data:`MAX_EPOCHS`."""
    if not 0 <= epochs <= MAX_EPOCHS:
        raise LimitError(f"{epochs} epochs is outside 0 .. {MAX_EPOCHS}; give a number of epochs in that range")


def check_budget(seeds: Sized, epochs: int) -> None:
    """Check a grid's seeds (a sized collection, counted before it is listed) and epochs."""
    check_seed_count(len(seeds))
    for seed in seeds:  # type: ignore[attr-defined]
        check_seed(seed)
    check_epochs(epochs)


def check_batch(protocol: Protocol, num_train: int, dataset: str, default: Protocol | None = None) -> None:
    """Refuse a batch size larger than the ``num_train`` training images of ``dataset``. With
    ``default`` (the data set's own protocol), a batch size equal to the default passes: the training
    loop takes the whole set as one batch when the protocol's own batch size does not fit a small set;
    only a batch size the user asked for is refused."""
    if default is not None and protocol.batch_size == default.batch_size:
        return
    if protocol.batch_size > num_train:
        raise BatchSizeError(
            f"batch size {protocol.batch_size} is larger than {dataset}'s training set ({num_train} images); "
            f"give --batch-size (or a suite's batch_size) of at most {num_train}"
        )


__all__ = [
    "BatchSizeError", "LimitError", "MAX_EPOCHS", "MAX_SEED", "MAX_SEEDS", "check_batch", "check_budget",
    "check_epochs", "check_seed", "check_seed_count",
]

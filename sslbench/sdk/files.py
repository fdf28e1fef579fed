"""Atomic file writes: a reader sees the old file or the new one, never half of one.

Every file sslbench or a plugin writes that another process (or a later run) may read -- checkpoints,
cached decoders, unpacked or decoded data, picture grids -- goes through :func:`atomic_path`: the
content is written to a temporary file in the same folder, named after this process (so two processes
never share one), flushed to disk, then renamed over the target in one step.
"""

from __future__ import annotations

import os
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator


@contextmanager
def atomic_path(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; when the block ends without error, fsync it and rename
    it over ``path``. On an error the temporary file is removed and ``path`` is left as it was.

    ``with atomic_path(target) as tmp: torch.save(obj, tmp)``
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix=f".{target.name}.{os.getpid()}.", suffix=".part", dir=target.parent)
    os.close(fd)
    tmp = Path(name)
    try:
        yield tmp
        with open(tmp, "rb") as written:
            os.fsync(written.fileno())
        os.replace(tmp, target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def atomic_write_text(path: str | os.PathLike[str], text: str) -> Path:
    """Write ``text`` (UTF-8) to ``path`` atomically; returns the path."""
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return Path(path)


__all__ = ["atomic_path", "atomic_write_text"]

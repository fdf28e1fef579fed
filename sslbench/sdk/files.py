"""Safe file writes: atomic writes, and the checks that keep user strings and paths in their folder.

Every file sslbench or a plugin writes that another process (or a later run) may read -- checkpoints,
cached decoders, unpacked or decoded data, picture grids -- goes through :func:`atomic_path`: the
content is written to a temporary file in the same folder, named after this process (so two processes
never share one), flushed to disk, then renamed over the target in one step.

A user string that becomes a path component (a suite or budget name, a run id, a plugin's name) goes
through :func:`safe_name` (letters, digits, ``.``, ``_``, ``-``; no separators, no ``..``), and a path
assembled for writing can be checked with :func:`inside` to lie inside the folder it belongs to.
"""

from __future__ import annotations

import os
import re
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


class UnsafePathError(ValueError):
    """A user string that cannot be a path component, or a path that leaves its folder."""


#: what a name that becomes a path component may hold: starts with a letter or digit, then letters,
#: digits, ``.``, ``_`` and ``-``; at most 100 characters (so never ``..``, ``/``, ``\\`` or a space)
SAFE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}")


def safe_name(text: object, what: str = "name") -> str:
    """``text`` if it is a safe path component (:data:`SAFE_NAME`), else :class:`UnsafePathError`
    saying which ``what`` ("suite name", "run id") was wrong and what is allowed."""
    if isinstance(text, str) and SAFE_NAME.fullmatch(text):
        return text
    raise UnsafePathError(
        f"{what} {text!r} is not allowed: it becomes part of a file name, so use only letters, digits, "
        "'.', '_' and '-', starting with a letter or digit (at most 100 characters)"
    )


def inside(root: str | os.PathLike[str], path: str | os.PathLike[str]) -> Path:
    """``path`` resolved (links followed, ``..`` removed) if it lies inside ``root`` (also resolved),
    else :class:`UnsafePathError`. A relative ``path`` is taken relative to ``root``."""
    base = Path(root).resolve()
    target = (base / path).resolve()
    if target != base and base not in target.parents:
        raise UnsafePathError(f"{path} resolves to {target}, which is outside {base}; sslbench writes only inside that folder")
    return target


__all__ = ["SAFE_NAME", "UnsafePathError", "atomic_path", "atomic_write_text", "inside", "safe_name"]

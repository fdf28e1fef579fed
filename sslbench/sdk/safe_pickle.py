"""A restricted unpickler for data files: plain data and numpy arrays, never code.

A pickle is a program: each global it names (``module.name``) is imported and may be called while the
file loads, so ``pickle.load`` of a file from a download runs whatever the file's author chose.
:func:`load_data_pickle` admits only the globals the official CIFAR-10 python batches need -- the
builtins ``dict``, ``list``, ``str``, ``bytes``, ``int``, the latin-1 ``_codecs.encode`` that Python 3
writes for bytes under protocol 2, and numpy's array reconstruction (``ndarray``, ``dtype``,
``_reconstruct``, ``_frombuffer``; object dtypes refused) -- and answers any other global with an
:class:`UnsafePickleError` (a :class:`~sslbench.sdk.api.DataError`) naming the file, before that
global is imported or called. The admitted globals are looked up in a fixed table, never imported by
name.
"""

from __future__ import annotations

import os
import pickle
from pathlib import Path
from typing import Any, Callable

import numpy as np

try:  # numpy >= 2 (``numpy.core`` is a deprecated alias there)
    from numpy._core import multiarray as _multiarray
    from numpy._core import numeric as _numeric
except ImportError:  # pragma: no cover - numpy 1.x
    from numpy.core import multiarray as _multiarray  # type: ignore[no-redef]
    from numpy.core import numeric as _numeric  # type: ignore[no-redef]

from sslbench.sdk.api import DataError


class UnsafePickleError(DataError):
    """A data pickle named a global outside the admitted table; nothing of it was run."""


def _dtype(*args: Any, **kwargs: Any) -> np.dtype:
    """``numpy.dtype`` for plain (non-object) types only."""
    made = np.dtype(*args, **kwargs)
    if made.hasobject:
        raise pickle.UnpicklingError(f"an object dtype ({made}) in a data pickle")
    return made


def _latin1(text: str = "", encoding: str = "latin1", *rest: Any) -> bytes:
    """``_codecs.encode`` as protocol 2 uses it for bytes: a str encoded as latin-1, nothing else."""
    if rest or not isinstance(text, str) or encoding.replace("-", "").lower() != "latin1":
        raise pickle.UnpicklingError("_codecs.encode with anything but (str, 'latin1')")
    return text.encode("latin1")


def _bytes(*args: Any) -> bytes:
    """``bytes`` from nothing, bytes or (str, encoding); never ``bytes(n)``, which allocates n bytes."""
    if args and isinstance(args[0], int):
        raise pickle.UnpicklingError("bytes(n) in a data pickle")
    return bytes(*args)


#: (module, name) -> the object that stands for it; numpy's module was ``numpy.core`` before 2.0
ADMITTED: dict[tuple[str, str], Callable[..., Any]] = {
    ("builtins", "dict"): dict,
    ("builtins", "list"): list,
    ("builtins", "str"): str,
    ("builtins", "bytes"): _bytes,
    ("builtins", "int"): int,
    ("_codecs", "encode"): _latin1,
    ("numpy", "ndarray"): np.ndarray,
    ("numpy", "dtype"): _dtype,
    **{(f"{core}.multiarray", "_reconstruct"): _multiarray._reconstruct for core in ("numpy.core", "numpy._core")},
    **{(f"{core}.numeric", "_frombuffer"): _numeric._frombuffer for core in ("numpy.core", "numpy._core")},
}


#: Python 2 module names a protocol-2 pickle may carry (the stock unpickler maps them the same way)
_PY2_NAMES = {"__builtin__": "builtins"}


class _Restricted(pickle.Unpickler):
    """An unpickler whose every global comes from :data:`ADMITTED`; persistent ids are refused too."""

    def __init__(self, file: Any, path: Path, what: str, encoding: str) -> None:
        super().__init__(file, encoding=encoding)
        self._path = path
        self._what = what

    def find_class(self, module: str, name: str) -> Any:
        found = ADMITTED.get((_PY2_NAMES.get(module, module), name))
        if found is None:
            raise UnsafePickleError(
                f"{self._path} is not a plain data file: it asks for {module}.{name}, which could run code "
                f"as the file loads, so it was refused and nothing of it ran. The file should be {self._what}, "
                "which holds only dicts, lists, strings, bytes, ints and numpy arrays. Delete the file and use the official one."
            )
        return found

    def persistent_load(self, pid: Any) -> Any:
        raise UnsafePickleError(f"{self._path} uses pickle persistent ids, which {self._what} never does; use the official file")


def load_data_pickle(path: str | os.PathLike[str], what: str = "a data pickle", encoding: str = "latin1") -> Any:
    """Unpickle ``path`` admitting only :data:`ADMITTED`. ``what`` names the expected file in errors
    ("a CIFAR-10 batch"). Raises :class:`UnsafePickleError` for a refused global; a damaged file
    raises what :mod:`pickle` raises (``UnpicklingError``, ``EOFError``, ...), for the caller to word."""
    target = Path(path)
    with open(target, "rb") as f:
        return _Restricted(f, target, what, encoding).load()


__all__ = ["ADMITTED", "UnsafePickleError", "load_data_pickle"]

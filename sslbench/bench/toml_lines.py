"""Where a key is in a TOML text, so a suite file's errors name the file, the line and the key.

:class:`KeyLocator` scans the text once; :func:`located` and :func:`check_keys` build the
:class:`SuiteError` messages every part of the suite parser raises (``benchmarks.toml:12: suites.x.methods[3]: ...``).
"""

from __future__ import annotations

import bisect
import difflib
import re
from typing import Any, Mapping, Protocol, Sequence

from sslbench.engine.limits import LimitError, check_budget


class SuiteError(ValueError):
    """A suite file or suite is malformed or names something that is not installed. The message
    starts with ``FILE:LINE: KEY:`` and says what to do."""


class Locates(Protocol):
    """Anything that turns a key path into ``FILE:LINE: KEY`` (a :class:`~sslbench.bench.suites.SuiteFile`)."""

    def where(self, keys: Sequence[Any]) -> str: ...


def located(sf: Locates, keys: Sequence[Any], message: str) -> SuiteError:
    """A :class:`SuiteError` that starts with where ``keys`` is in the file."""
    return SuiteError(f"{sf.where(keys)}: {message}")


def check_keys(sf: Locates, keys: Sequence[Any], body: Mapping[str, Any], allowed: set[str], what: str) -> None:
    """Refuse a key of ``body`` that is not in ``allowed``, naming the closest allowed one."""
    for key in body:
        if key not in allowed:
            close = difflib.get_close_matches(key, sorted(allowed), n=1, cutoff=0.6)
            hint = f" Did you mean {close[0]!r}?" if close else ""
            raise located(sf, [*keys, key], f"unknown key in {what}.{hint} Allowed: {', '.join(sorted(allowed))}")


class KeyLocator:
    """Line numbers of keys in a (syntactically valid) TOML text.

    A small structural scan: table headers, ``[[array tables]]``, dotted keys, inline tables and
    arrays (each element gets the path ``(..., index)``). ``line(path)`` gives the line of the
    longest recorded prefix of ``path``, so an error deep inside an inline table still points at
    its line.
    """

    def __init__(self, text: str) -> None:
        self.text = text
        self.lines: dict[tuple[Any, ...], int] = {}
        self._newlines = [i for i, c in enumerate(text) if c == "\n"]
        self._pos = 0
        try:
            self._scan()
        except (IndexError, ValueError):  # a shape the scan does not follow: keep what it found
            pass

    def line(self, path: Sequence[Any]) -> int | None:
        path = tuple(path)
        for end in range(len(path), 0, -1):
            if path[:end] in self.lines:
                return self.lines[path[:end]]
        return None

    # -- the scan ----------------------------------------------------------------------------
    def _line_at(self, pos: int) -> int:
        return bisect.bisect_left(self._newlines, pos) + 1

    def _record(self, path: tuple[Any, ...], pos: int) -> None:
        self.lines.setdefault(path, self._line_at(pos))

    def _peek(self, k: int = 1) -> str:
        return self.text[self._pos : self._pos + k]

    def _skip_space(self, newlines: bool) -> None:
        t = self.text
        while self._pos < len(t):
            c = t[self._pos]
            if c in " \t\r" or (newlines and c == "\n"):
                self._pos += 1
            elif c == "#":
                while self._pos < len(t) and t[self._pos] != "\n":
                    self._pos += 1
            else:
                return

    def _string(self) -> str:
        t = self.text
        quote = t[self._pos]
        if t.startswith(quote * 3, self._pos):
            end = t.index(quote * 3, self._pos + 3)
            while t.startswith(quote, end + 3):  # up to two quotes may close the content
                end += 1
            value = t[self._pos + 3 : end]
            self._pos = end + 3
            return value
        i = self._pos + 1
        out = []
        while t[i] != quote:
            if quote == '"' and t[i] == "\\":
                out.append(t[i : i + 2])
                i += 2
                continue
            out.append(t[i])
            i += 1
        self._pos = i + 1
        return "".join(out)

    def _key(self) -> tuple[str, ...]:
        parts = []
        while True:
            self._skip_space(False)
            if self._peek() in ("'", '"'):
                parts.append(self._string())
            else:
                m = re.compile(r"[A-Za-z0-9_\-]+").match(self.text, self._pos)
                if not m:
                    raise ValueError("no key")
                parts.append(m.group())
                self._pos = m.end()
            self._skip_space(False)
            if self._peek() == ".":
                self._pos += 1
                continue
            return tuple(parts)

    def _value(self, path: tuple[Any, ...]) -> None:
        self._skip_space(False)
        c = self._peek()
        if c == "{":
            self._pos += 1
            while True:
                self._skip_space(True)
                if self._peek() == "}":
                    self._pos += 1
                    return
                start = self._pos
                key = path + self._key()
                self._record(key, start)
                self._pos += 1  # '='
                self._value(key)
                self._skip_space(True)
                if self._peek() == ",":
                    self._pos += 1
        elif c == "[":
            self._pos += 1
            index = 0
            while True:
                self._skip_space(True)
                if self._peek() == "]":
                    self._pos += 1
                    return
                self._record(path + (index,), self._pos)
                self._value(path + (index,))
                index += 1
                self._skip_space(True)
                if self._peek() == ",":
                    self._pos += 1
        elif c in ("'", '"'):
            self._string()
        else:
            m = re.compile(r"[^,\]\}\n#]*").match(self.text, self._pos)
            self._pos = m.end() if m else self._pos + 1

    def _scan(self) -> None:
        t = self.text
        table: tuple[Any, ...] = ()
        counts: dict[tuple[Any, ...], int] = {}
        while True:
            self._skip_space(True)
            if self._pos >= len(t):
                return
            start = self._pos
            if t[self._pos] == "[":
                array = t.startswith("[[", self._pos)
                self._pos += 2 if array else 1
                path = self._key()
                self._pos += 2 if array else 1
                self._record(path, start)
                if array:
                    index = counts.get(path, 0)
                    counts[path] = index + 1
                    path = path + (index,)
                    self._record(path, start)
                table = path
                continue
            key = table + self._key()
            self._record(key, start)
            self._pos += 1  # '='
            self._value(key)


# --- value checks shared by the suite parser (each raises at the file, line and key) ---


def _names(sf: Locates, keys: Sequence[Any], value: Any, what: str) -> list[str]:
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not value or not all(isinstance(v, str) and v for v in value):
        raise located(sf, keys, f"must be a non-empty list of {what} names, e.g. [\"a\", \"b\"]")
    dup = sorted({v for v in value if value.count(v) > 1})
    if dup:
        raise located(sf, keys, f"{dup[0]!r} is listed twice")
    return list(value)


def _seeds(sf: Locates, keys: Sequence[Any], value: Any) -> list[int]:
    if isinstance(value, int) and not isinstance(value, bool):
        if value < 1:
            raise located(sf, keys, "must be at least 1 (the number of seeds, 0..N-1) or a list of seeds")
        _within_limits(sf, keys, range(value))  # counted before any list is made
        return list(range(value))
    if isinstance(value, list) and value and all(isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in value):
        if len(set(value)) != len(value):
            raise located(sf, keys, "lists a seed twice")
        _within_limits(sf, keys, value)
        return list(value)
    raise located(sf, keys, "must be a number of seeds (e.g. 3 for seeds 0, 1, 2) or a list of seeds >= 0")


def _params(sf: Locates, keys: Sequence[Any], value: Any) -> dict[str, dict[str, Any]]:
    if not isinstance(value, dict):
        raise located(sf, keys, "must be a table OWNER = { NAME = VALUE }, e.g. params = { simvae = { views = 4 } }")
    for owner, table in value.items():
        if not isinstance(table, dict):
            raise located(sf, [*keys, owner], f"must be a table of {owner}'s parameters, e.g. {owner} = {{ name = 1 }}")
    return {owner: dict(table) for owner, table in value.items()}


def _merge(base: Mapping[str, Mapping[str, Any]], over: Mapping[str, Mapping[str, Any]]) -> dict[str, dict[str, Any]]:
    out = {k: dict(v) for k, v in base.items()}
    for owner, table in over.items():
        out.setdefault(owner, {}).update(table)
    return out


def _within_limits(sf: Locates, keys: Sequence[Any], seeds: Sequence[int]) -> None:
    try:
        check_budget(seeds, 0)
    except LimitError as exc:
        raise located(sf, keys, str(exc)) from None


def _int(sf: Locates, keys: Sequence[Any], value: Any, minimum: int, maximum: int | None = None) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < minimum or (maximum is not None and value > maximum):
        raise located(sf, keys, f"must be a whole number >= {minimum}" + (f" and <= {maximum}" if maximum is not None else ""))
    return value

"""Low-level pieces of the parser: bracket balancing that respects strings, lenient literals.

Nothing here raises on any input (the parser promises never to raise).
"""

from __future__ import annotations

import ast
import json
import math
import re
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

_CLOSER = {"{": "}", "[": "]", "(": ")"}
_OUT = re.compile(r"[][{}()\"'\\]")
_VALUE_START = frozenset("{[(,:=")


def _no_constant(name: str) -> Any:
    # NaN and Infinity are not JSON values: arguments holding them could not be sent on.
    raise ValueError(name)


_DECODER = json.JSONDecoder(strict=False, parse_constant=_no_constant)
"""strict=False: models write raw newlines inside strings."""
_SEPARATORS = re.compile(r"[\s,;]*")
_NAMES = {"true": True, "false": False, "null": None, "True": True, "False": False, "None": None}


class Balance:
    """Finds where a bracketed span closes, fed a growing buffer (O(n) over all calls).

    `feed` is given the whole buffer, which must still hold the span from its opening bracket,
    and the index to resume from. A quote opens a string only where a value can start (after
    `{[(,:=` or right after the opener), so apostrophes and quotes in prose inside brackets do
    not derail it. Backslash escapes inside strings are honoured. `open_at` holds the
    positions of the brackets still open.
    """

    __slots__ = ("_quote", "_stack", "failed", "open_at")

    def __init__(self, opener: str, at: int) -> None:
        self._stack = [_CLOSER[opener]]
        self.open_at = [at]
        self._quote = ""
        self.failed = False

    def feed(self, text: str, start: int) -> int | None:
        """Scan `text[start:]`; return the index just past the closing bracket, or None.

        After a mismatched closer, `failed` is True and the index past it is returned.
        """
        i = start
        n = len(text)
        while i < n:
            if self._quote:
                j = _skip_string(text, i, self._quote)
                if j < 0:
                    return None
                self._quote = ""
                i = j
                continue
            m = _OUT.search(text, i)
            if m is None:
                return None
            j = m.start()
            ch = text[j]
            if ch in "\"'":
                if _previous(text, j) in _VALUE_START:
                    self._quote = ch
            elif ch in _CLOSER:
                self._stack.append(_CLOSER[ch])
                self.open_at.append(j)
            elif ch in "}])":
                if ch != self._stack[-1]:
                    self.failed = True
                    return j + 1
                self._stack.pop()
                self.open_at.pop()
                if not self._stack:
                    return j + 1
            i = j + 1
        return None

    @property
    def in_string(self) -> bool:
        """True while the scan is inside a quoted string."""
        return bool(self._quote)


def json_end(text: str, at: int) -> int | None:
    """Where the JSON value opening at `text[at]` ends, when it is valid JSON; else None.

    For valid JSON this is where `Balance` finds the closer (a JSON string only ever starts
    where a value can, and both honour escapes), found in C: a shortcut when the whole span
    is already there, as after the python tag. It stops at the first error, so it never reads
    further than `Balance` would.
    """
    try:
        return _DECODER.raw_decode(text, at)[1]
    except (ValueError, RecursionError):
        return None


def _previous(text: str, j: int) -> str:
    # The span's opener is never whitespace, so this stops inside the span.
    k = j - 1
    while k >= 0 and text[k] in " \t\r\n":
        k -= 1
    return text[k] if k >= 0 else ""


def _skip_string(text: str, i: int, quote: str) -> int:
    """Index past the closing `quote` of a string whose body continues at `i`, or -1."""
    while True:
        q = text.find(quote, i)
        if q < 0:
            return -1
        backslashes = 0
        k = q - 1
        while k >= 0 and text[k] == "\\":
            backslashes += 1
            k -= 1
        if backslashes % 2 == 0:
            return q + 1
        i = q + 1


class Missing:
    """Marks a value that could not be read."""


MISSING = Missing()


def loads(text: str) -> Any:
    """JSON, or failing that a Python literal (single quotes, True/None, trailing commas).

    Returns `MISSING` when neither reads the whole text.
    """
    stripped = text.strip()
    try:
        value, end = _DECODER.raw_decode(stripped)
        if end == len(stripped):
            return value
    except (ValueError, RecursionError):
        pass
    try:
        node = _parse_eval(stripped)
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        return MISSING
    return literal(node, bare_keys=True)


def loads_objects(text: str) -> list[Any] | Missing:
    """Two or more JSON objects one after the other, separated by nothing, whitespace, `,` or
    `;` (Llama 3.2 writes `[{...} {...}]`, forgetting the commas); else `MISSING`."""
    items: list[Any] = []
    i = _skip_separators(text, 0)
    while i < len(text):
        if text[i] != "{":
            return MISSING
        try:
            value, i = _DECODER.raw_decode(text, i)
        except (ValueError, RecursionError):
            return MISSING
        items.append(value)
        i = _skip_separators(text, i)
    return items if len(items) > 1 else MISSING


def _skip_separators(text: str, i: int) -> int:
    m = _SEPARATORS.match(text, i)
    return m.end() if m is not None else i


def literal(node: ast.AST, *, bare_keys: bool = False) -> Any:
    """The JSON-like value of a literal expression node, or `MISSING`.

    `bare_keys`: accept `{name: "x"}` (JavaScript-style keys), as models write in JSON; in a
    Python call such a key is a variable, so it is refused there.
    """
    try:
        return _literal(node, bare_keys=bare_keys)
    except (_NotLiteral, RecursionError, ValueError, TypeError):
        return MISSING


class _NotLiteral(Exception):
    pass


def _literal(node: ast.AST, *, bare_keys: bool) -> Any:
    if isinstance(node, ast.Constant):
        if isinstance(node.value, float) and not math.isfinite(node.value):
            raise _NotLiteral  # 1e999: JSON has no infinity
        if isinstance(node.value, str | int | float | bool) or node.value is None:
            return node.value
        raise _NotLiteral
    if isinstance(node, ast.Name) and node.id in _NAMES:
        return _NAMES[node.id]
    if isinstance(node, ast.List | ast.Tuple | ast.Set):
        return [_literal(e, bare_keys=bare_keys) for e in node.elts]
    if isinstance(node, ast.Dict):
        out: dict[str, Any] = {}
        for key, value in zip(node.keys, node.values, strict=True):
            if key is None:
                raise _NotLiteral
            # {name: "x"}: models sometimes leave keys unquoted, as in JavaScript.
            k = (
                key.id
                if bare_keys and isinstance(key, ast.Name)
                else _literal(key, bare_keys=bare_keys)
            )
            out[k if isinstance(k, str) else json.dumps(k)] = _literal(value, bare_keys=bare_keys)
        return out
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub | ast.UAdd):
        value = _literal(node.operand, bare_keys=bare_keys)
        if isinstance(value, int | float) and not isinstance(value, bool):
            return -value if isinstance(node.op, ast.USub) else value
    raise _NotLiteral


def parse_expression(text: str) -> ast.expr | None:
    """The expression `text` holds, or None."""
    try:
        return _parse_eval(text.strip())
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        return None


def is_python(text: str) -> bool:
    """True when `text` is syntactically valid Python (a module)."""
    try:
        with _quiet():
            ast.parse(text)
    except (SyntaxError, ValueError, RecursionError, MemoryError, OverflowError):
        return False
    return True


def _parse_eval(text: str) -> ast.expr:
    with _quiet():
        return ast.parse(text, mode="eval").body


@contextmanager
def _quiet() -> Iterator[None]:
    """Model text is not our code: its oddities (`1_000x`, `"\\d"`) must not print warnings."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        yield

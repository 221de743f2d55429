"""Read one candidate span as tool calls: JSON objects, `<function=...>` tags, built-in
`name.call(...)` calls, bare `name(k=v)` calls and python lists, with the lenient literal
decoding under them (JSON, or Python literals as models also write).

Each reader answers with a `Reading`: calls (maybe with botched siblings in `bad`), a botched
call (`broken`, with a reason for the model), or `None` when the span is not a call at all.
Whether the names are tools is decided by the scanner, which knows the tools and the context.
"""

from __future__ import annotations

import ast
import json
import math
import re
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from itertools import pairwise
from typing import Any, Literal

from agent._frozen import stored_at_once
from agent.llama3._types import BUILTIN_NAMES, ToolCall

# --- lenient literals and bracket balancing ---------------------------------------------------
#
# Low-level pieces of the parser: bracket balancing that respects strings, lenient literals.
#
# Nothing here raises on any input (the parser promises never to raise).

_CLOSER = {"{": "}", "[": "]", "(": ")"}
_OUT = re.compile(r"[][{}()\"'\\]")
_VALUE_START = frozenset("{[(,:=")
MAX_DEPTH = 512
"""Brackets nested deeper than this open no call (JSON's own decoder stops near 1,000): such a
span is taken as never closing, like one cut off by the end of the text, and not scanned on.
Hostile nesting (`[{(` a million times) then costs a bounded scan, not one per bracket."""


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
    positions of the brackets still open. Past `MAX_DEPTH` open brackets the span never closes
    (`endless`): `feed` answers None at once from then on.
    """

    __slots__ = ("_quote", "_stack", "endless", "failed", "open_at")

    def __init__(self, opener: str, at: int) -> None:
        self._stack = [_CLOSER[opener]]
        self.open_at = [at]
        self._quote = ""
        self.failed = False
        self.endless = False

    def feed(self, text: str, start: int) -> int | None:
        """Scan `text[start:]`; return the index just past the closing bracket, or None.

        After a mismatched closer, `failed` is True and the index past it is returned.
        """
        if self.endless:
            return None
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
                if len(self._stack) > MAX_DEPTH:
                    self.endless = True
                    return None
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


def json_value(text: str) -> Any:
    """The JSON value that is all of `text` (no blanks around it), or `MISSING`: what `loads`
    answers for such text when it is JSON, decoded once."""
    try:
        value, end = _DECODER.raw_decode(text)
    except (ValueError, RecursionError):
        return MISSING
    return value if end == len(text) else MISSING


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


Form = Literal["json", "function_tag", "python_list", "builtin", "bare", "code"]
Shape = Literal["call", "name_only", "mixed"]

NAME_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_\-]*")
# Names other runtimes give the built-ins (llama.cpp: python.call(code=...)); they mean the
# built-in unless a tool of that very name is offered.
ALIASES = {"python": "code_interpreter", "web_search": "brave_search"}
CALL_NAMES = frozenset(BUILTIN_NAMES | ALIASES.keys())
"""Names that `name.call(...)` is read for even when no tool list is given."""
_CALL_KEYS = frozenset({"type", "name", "function", "parameters", "arguments", "id", "call_id"})
_ENVELOPE_KEYS = frozenset({"type", "function", "id", "index", "call_id"})
_NAME_IN_TEXT = re.compile(r"""["']?(?:name|function)["']?\s*[:=]\s*["']\s*([A-Za-z_][\w\-]*)""")
_UNESCAPED_QUERY = re.compile(r"""^\s*(\w+)\s*=\s*(["'])(.*)\2\s*$""", re.DOTALL)


Call = ToolCall
"""A call as read (before the tool list is consulted) is already the `ToolCall` a parse
returns, its id left empty: nothing is copied into a new object at the end of a parse."""


@stored_at_once
@dataclass(frozen=True, kw_only=True)
class Reading:
    """What a span holds: calls, or one botched call."""

    form: Form
    calls: tuple[Call, ...] = ()
    broken: str = ""
    name: str | None = None
    names: tuple[str, ...] = field(default=())
    bad: tuple[tuple[str, str | None], ...] = ()
    """Botched siblings of `calls` (reason, name): the good ones still run."""
    shape: Shape = "call"
    """JSON: `call` when every object has the strict call shape (a name and `parameters` or
    `arguments`), `name_only` when none carries arguments (`{"name": "x"}`, which may be data)."""
    listed: bool = False
    """JSON: the objects came in a list (or a `tool_calls` wrapper), not as one object."""

    @property
    def is_broken(self) -> bool:
        """True when the span was meant as a call but cannot be used."""
        return bool(self.broken)


def botched(form: Form, reason: str, name: str | None = None) -> Reading:
    """A span meant as a call that cannot be used."""
    return Reading(form=form, broken=reason, name=name)


def calls_of(
    form: Form, calls: list[Call], bad: tuple[tuple[str, str | None], ...] = ()
) -> Reading:
    """A span holding these calls (and maybe botched siblings)."""
    return Reading(form=form, calls=tuple(calls), names=tuple(c.name for c in calls), bad=bad)


# --- JSON ----------------------------------------------------------------------------------


def read_json(span: str, *, complete: bool) -> Reading | None:
    """A JSON (or Python-literal) object or array of calls; None when it is just data."""
    value = loads(span) if complete else MISSING
    if value is MISSING and complete and span.endswith("]"):
        value = loads_objects(span[1:-1])
    if value is MISSING:
        if _looks_like_call(span):
            name = _name_in(span)
            why = "is cut off" if not complete else "is not valid JSON"
            return botched("json", f"the JSON tool call {why}", name)
        return None
    return json_reading(value)


def json_reading(value: Any) -> Reading | None:
    """`read_json` of a span whose value is already decoded (`value`, never `MISSING`)."""
    items = _items(value)
    if not items:
        return None
    calls: list[Call] = []
    for item in items:
        got = call_from_object(item)
        if got is None:
            return None
        if isinstance(got, str):
            return botched("json", got, _name_of(item))
        calls.append(got)
    with_arguments = sum(map(_has_arguments, items))
    shape: Shape = (
        "call" if with_arguments == len(items) else "mixed" if with_arguments else "name_only"
    )
    listed = not (isinstance(value, dict) and items[0] is value)
    return Reading(
        form="json",
        calls=tuple(calls),
        names=tuple(c.name for c in calls),
        shape=shape,
        listed=listed,
    )


def json_calls(value: Any) -> list[Call] | None:
    """The calls of `json_reading(value)` when it reads as calls with nothing botched; else
    None (then only `json_reading` knows). Builds no `Reading`: after the python tag, the
    usual payload needs its calls and nothing else."""
    calls: list[Call] = []
    for item in _items(value):
        got = call_from_object(item)
        if not isinstance(got, Call):
            return None
        calls.append(got)
    return calls or None


def _items(value: Any) -> list[Any]:
    if isinstance(value, dict):
        inner = value.get("tool_calls")
        return inner if isinstance(inner, list) and len(value) == 1 else [value]
    return value if isinstance(value, list) else [value]


def _has_arguments(obj: Any) -> bool:
    inner = obj.get("function") if isinstance(obj, dict) else None
    keys = inner if isinstance(inner, dict) else obj
    return isinstance(keys, dict) and ("parameters" in keys or "arguments" in keys)


def call_from_object(obj: Any) -> Call | str | None:
    """A call from `{"name": ..., "parameters"|"arguments": ...}` or OpenAI's envelope.

    None when the object is not shaped like a call; a reason string when it is one but broken.
    """
    if not isinstance(obj, dict):
        return None
    inner = obj.get("function")
    if isinstance(inner, dict):
        if not _ENVELOPE_KEYS.issuperset(obj) or obj.get("type", "function") != "function":
            return None
        obj = inner
    if not _CALL_KEYS.issuperset(obj) or obj.get("type", "function") != "function":
        return None
    name = obj.get("name", obj.get("function"))
    if not isinstance(name, str) or not NAME_RE.fullmatch(name.strip()):
        return None
    name = name.strip()
    raw = obj["parameters"] if "parameters" in obj else obj.get("arguments")
    if raw is None or raw == "":
        return Call(name=name, arguments={})
    if isinstance(raw, str):
        decoded = loads(raw)
        if not isinstance(decoded, dict):
            return f"the arguments of '{name}' are a string that is not a JSON object"
        raw = decoded
    if not isinstance(raw, dict):
        return f"the arguments of '{name}' must be a JSON object, not {_kind(raw)}"
    return Call(name=name, arguments=raw)


def _kind(value: Any) -> str:
    return {list: "an array", str: "a string", bool: "a boolean"}.get(type(value), "a number")


def _name_of(obj: Any) -> str | None:
    if isinstance(obj, dict):
        inner = obj.get("function")
        name = inner.get("name") if isinstance(inner, dict) else obj.get("name", inner)
        return name.strip() if isinstance(name, str) else None
    return None


def _looks_like_call(span: str) -> bool:
    """A prefix like `{"name": "x"` or `[{"type": "function"`: meant as a call."""
    head = span[:400]
    if '"type": "function"' in head:
        return True
    # The regex has no literal to skip ahead by: only run it where its words are.
    return ("name" in head or "function" in head) and bool(_NAME_IN_TEXT.search(head))


def _name_in(span: str) -> str | None:
    m = _NAME_IN_TEXT.search(span[:400])
    return m.group(1) if m else None


# --- bare calls, built-in .call ----------------------------------------------------------------


def read_bare(span: str, *, complete: bool) -> Reading | None:
    """`get_weather(city="Paris")` with no brackets. None when it is not one call."""
    node = parse_expression(span) if complete else None
    if not isinstance(node, ast.Call):
        return None
    got = call_node(node)
    if got is None:
        return None
    if isinstance(got, str):
        return botched("bare", got, func_name(node))
    return calls_of("bare", [got])


def read_builtin(span: str, allowed: frozenset[str] | None, *, complete: bool) -> Reading:
    """`brave_search.call(query="...")` (or any offered tool's `name.call(k=v)`), whatever the
    quoting; always meant as a call."""
    name = span.split(".", 1)[0].strip()
    if name in ALIASES and (allowed is None or name not in allowed):
        name = ALIASES[name]
    if not complete:
        return botched("builtin", f"the {name} call is cut off", name)
    node = parse_expression(span)
    if isinstance(node, ast.Call):
        args: dict[str, Any] = {}
        for kw in node.keywords:
            value = literal(kw.value)
            if kw.arg is None or value is MISSING:
                why = f"the {name} call has an argument that is not a plain value"
                return botched("builtin", why, name)
            args[kw.arg] = value
        if node.args:
            first = literal(node.args[0])
            if len(node.args) > 1 or first is MISSING or args or name not in BUILTIN_NAMES:
                return botched("builtin", _how(name), name)
            return calls_of("builtin", [_positional(name, first)])
        return calls_of("builtin", [Call(name=name, arguments=args)])
    # Meta writes queries unescaped in history (query="say "hi""), and the model copies it.
    inner = span[span.index("(") + 1 : -1]
    m = _UNESCAPED_QUERY.match(inner)
    if m:
        return calls_of("builtin", [Call(name=name, arguments={m.group(1): m.group(3)})])
    return botched("builtin", f"the {name} call is not valid Python; {_how(name)}", name)


def _positional(name: str, value: Any) -> Call:
    """A built-in's one positional argument, under its trained name. Named arguments are kept
    as written: a wrong name is the toolkit's to report (only the README's repairs happen)."""
    return Call(name=name, arguments={"code" if name == "code_interpreter" else "query": value})


def _how(name: str) -> str:
    if name not in BUILTIN_NAMES:
        return f"write it as {name}.call(name=value, ...)"
    arg = "code" if name == "code_interpreter" else "query"
    return f'write it as {name}.call({arg}="...")'


def func_name(node: ast.Call) -> str | None:
    return node.func.id if isinstance(node.func, ast.Name) else None


def call_node(node: ast.Call) -> Call | str | None:
    """A call from `name(k=v, ...)`; None for dotted or computed names; a reason if broken."""
    if not isinstance(node.func, ast.Name) or not NAME_RE.fullmatch(node.func.id):
        return None
    name = node.func.id
    args: dict[str, Any] = {}
    for kw in node.keywords:
        if kw.arg is None:
            return f"the call to '{name}' uses **kwargs; write each argument as name=value"
        value = literal(kw.value)
        if value is MISSING:
            return f"argument '{kw.arg}' of '{name}' is not a plain value (string, number, list...)"
        args[kw.arg] = value
    if node.args:
        first = literal(node.args[0])
        if name in BUILTIN_NAMES and len(node.args) == 1 and not args and first is not MISSING:
            return _positional(name, first)
        return f"the call to '{name}' has positional arguments; write each one as name=value"
    return Call(name=name, arguments=args)


# --- <function=name>{...}</function> ---------------------------------------------------------


def read_function_tag(name: str, body: str | None, *, complete: bool) -> Reading:
    """`<function=name>{json}</function>`; `body` is the JSON text (None when there is none)."""
    name = name.strip()
    if not NAME_RE.fullmatch(name):
        return botched("function_tag", f"'{name}' is not a valid function name", None)
    if body is None:
        return calls_of("function_tag", [Call(name=name, arguments={})])
    if not complete:
        return botched("function_tag", f"the call to '{name}' is cut off", name)
    value = loads(body)
    if isinstance(value, dict):
        return calls_of("function_tag", [Call(name=name, arguments=value)])
    return botched("function_tag", f"the arguments of '{name}' are not a JSON object", name)


# --- python lists -----------------------------------------------------------------------------
#
# Read a Llama 3.2 / 3.3 python-list call: `[f(a=1), g(b="x")]`.
#
# Beyond what Python itself parses, models write:
# - hyphenated names (MCP tools such as `add-note`): `[add-note(name='x')]`, which Python reads
#   as a subtraction; it is taken as the name when written without spaces;
# - one botched call among good ones (a bytes value, `1e999`, a stray quote): the good ones are
#   kept and the botched one is reported (`Reading.bad`), so one typo does not cost every call.

HEAD = re.compile(r"\[\s*([A-Za-z_][\w\-]*)\s*\(")
"""How a python-list call starts."""
# Where one call of a list ends and the next begins: `), name(`.
_NEXT_CALL = re.compile(r"\)\s*,\s*(?=[A-Za-z_][\w\-]*\s*\()")
_HYPHENATED = re.compile(r"[A-Za-z_][\w\-]*")
_MAX_PIECES = 64


def read_python_list(span: str, *, complete: bool) -> Reading | None:
    """`[f(a=1), g(b="x")]`: its calls; a botched call; or None when it is just a list."""
    head = HEAD.match(span)
    if head is None:
        return None
    if not complete:
        return botched("python_list", "the python-list tool call is cut off", head.group(1))
    text = span.strip()
    node = parse_expression(text)
    if node is None:
        return _salvage(text, head.group(1))
    if not isinstance(node, ast.List | ast.Tuple) or not node.elts:
        return None
    calls: list[Call] = []
    bad: list[tuple[str, str | None]] = []
    for element in node.elts:
        call = _as_call(element, text)
        if call is None:
            return None
        got = call_node(call)
        if got is None:
            return None
        if isinstance(got, str):
            bad.append((got, func_name(call)))
        else:
            calls.append(got)
    if not calls:
        reason, name = bad[0]
        return botched("python_list", reason, name)
    return calls_of("python_list", calls, tuple(bad))


def _as_call(node: ast.expr, text: str) -> ast.Call | None:
    """The call an element holds, reading `a-b(x=1)` (no spaces) as a call to `a-b`."""
    if isinstance(node, ast.Call):
        return node
    names: list[str] = []
    current: ast.expr = node
    while isinstance(current, ast.BinOp) and isinstance(current.op, ast.Sub):
        right = current.right
        if names:
            if not isinstance(right, ast.Name):
                return None
            names.append(right.id)
        elif isinstance(right, ast.Call) and isinstance(right.func, ast.Name):
            names.append(right.func.id)
        else:
            return None
        current = current.left
    if not names or not isinstance(current, ast.Name):
        return None
    name = "-".join([current.id, *reversed(names)])
    segment = ast.get_source_segment(text, node) or ""
    m = _HYPHENATED.match(segment)
    if m is None or m.group() != name:
        return None
    call = node.right if isinstance(node, ast.BinOp) else None
    if not isinstance(call, ast.Call) or call.args:
        return None  # `[x-f(2)]` is arithmetic, not a call to `x-f`
    return ast.Call(func=ast.Name(id=name), args=[], keywords=call.keywords)


def _salvage(text: str, first: str) -> Reading:
    """A list that is not valid Python: keep each call that reads on its own."""
    why = "the python-list tool call is not valid Python"
    if not text.endswith("]"):
        return botched("python_list", why, first)
    inner = text[1:-1]
    cuts = [0, *(m.start() + 1 for m in _NEXT_CALL.finditer(inner)), len(inner)]
    if len(cuts) > _MAX_PIECES:
        return botched("python_list", why, first)  # re-parsing would grow quadratically
    calls: list[Call] = []
    bad: list[tuple[str, str | None]] = []
    pending = ""
    for a, b in pairwise(cuts):
        piece = inner[a:b]
        pending += piece
        node = parse_expression(pending.lstrip(" \t\r\n,"))
        call = _as_call(node, pending.lstrip(" \t\r\n,")) if node is not None else None
        if call is None:
            continue
        got = call_node(call)
        if isinstance(got, Call):
            calls.append(got)
        else:
            bad.append((got or why, func_name(call)))
        pending = ""
    if pending.strip():
        head = _HYPHENATED.match(pending.lstrip(" \t\r\n,"))
        bad.append((why, head.group() if head else None))
    if not calls:
        return botched("python_list", why, first)
    return calls_of("python_list", calls, tuple(bad))

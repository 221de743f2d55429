"""Read one candidate span as tool calls: JSON objects, `<function=...>` tags, built-in
`name.call(...)` calls and bare `name(k=v)` calls (python lists: `_pylist`).

Each reader answers with a `Reading`: calls (maybe with botched siblings in `bad`), a botched
call (`broken`, with a reason for the model), or `None` when the span is not a call at all.
Whether the names are tools is decided by the scanner, which knows the tools and the context.
"""

from __future__ import annotations

import ast
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any, Literal

from agent.llama3._literal import MISSING, literal, loads, loads_objects, parse_expression
from agent.llama3._types import BUILTIN_NAMES

Form = Literal["json", "function_tag", "python_list", "builtin", "bare", "code"]
Shape = Literal["call", "name_only", "mixed"]

NAME_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_\-]*")
QUERY_BUILTINS = frozenset({"brave_search", "wolfram_alpha", "photogen"})
# Names other runtimes give the built-ins (llama.cpp: python.call(code=...)); they mean the
# built-in unless a tool of that very name is offered.
ALIASES = {"python": "code_interpreter", "web_search": "brave_search"}
CALL_NAMES = frozenset(BUILTIN_NAMES | ALIASES.keys())
"""Names that `name.call(...)` is read for even when no tool list is given."""
_CALL_KEYS = frozenset({"type", "name", "function", "parameters", "arguments", "id", "call_id"})
_ENVELOPE_KEYS = frozenset({"type", "function", "id", "index", "call_id"})
_NAME_IN_TEXT = re.compile(r"""["']?(?:name|function)["']?\s*[:=]\s*["']\s*([A-Za-z_][\w\-]*)""")
_UNESCAPED_QUERY = re.compile(r"""^\s*(\w+)\s*=\s*(["'])(.*)\2\s*$""", re.DOTALL)


@dataclass(frozen=True, kw_only=True)
class Call:
    """A call as read, before the tool list is consulted."""

    name: str
    arguments: dict[str, Any]


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


def normalize(name: str, arguments: dict[str, Any]) -> Call:
    """Built-ins get their trained argument names: `query`, or `code` for code_interpreter."""
    if name in QUERY_BUILTINS and arguments and "query" not in arguments:
        arguments = {"query": next(iter(arguments.values()))}
    elif name == "code_interpreter" and arguments and "code" not in arguments:
        arguments = {"code": next(iter(arguments.values()))}
    return Call(name=name, arguments=arguments)


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
    items = value if isinstance(value, list) else [value]
    if isinstance(value, dict) and isinstance(value.get("tool_calls"), list) and len(value) == 1:
        items = value["tool_calls"]
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
    return replace(calls_of("json", calls), shape=shape, listed=listed)


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
        if set(obj) - _ENVELOPE_KEYS or obj.get("type", "function") != "function":
            return None
        obj = inner
    if set(obj) - _CALL_KEYS or obj.get("type", "function") != "function":
        return None
    name = obj.get("name", obj.get("function"))
    if not isinstance(name, str) or not NAME_RE.fullmatch(name.strip()):
        return None
    name = name.strip()
    raw = obj["parameters"] if "parameters" in obj else obj.get("arguments")
    if raw is None or raw == "":
        return normalize(name, {})
    if isinstance(raw, str):
        decoded = loads(raw)
        if not isinstance(decoded, dict):
            return f"the arguments of '{name}' are a string that is not a JSON object"
        raw = decoded
    if not isinstance(raw, dict):
        return f"the arguments of '{name}' must be a JSON object, not {_kind(raw)}"
    return normalize(name, raw)


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
    return bool(_NAME_IN_TEXT.search(head)) or '"type": "function"' in head


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
            args = {"query" if name != "code_interpreter" else "code": first}
        return calls_of("builtin", [normalize(name, args)])
    # Meta writes queries unescaped in history (query="say "hi""), and the model copies it.
    inner = span[span.index("(") + 1 : -1]
    m = _UNESCAPED_QUERY.match(inner)
    if m:
        return calls_of("builtin", [normalize(name, {m.group(1): m.group(3)})])
    return botched("builtin", f"the {name} call is not valid Python; {_how(name)}", name)


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
            return normalize(name, {"query" if name != "code_interpreter" else "code": first})
        return f"the call to '{name}' has positional arguments; write each one as name=value"
    return normalize(name, args)


# --- <function=name>{...}</function> ---------------------------------------------------------


def read_function_tag(name: str, body: str | None, *, complete: bool) -> Reading:
    """`<function=name>{json}</function>`; `body` is the JSON text (None when there is none)."""
    name = name.strip()
    if not NAME_RE.fullmatch(name):
        return botched("function_tag", f"'{name}' is not a valid function name", None)
    if body is None:
        return calls_of("function_tag", [normalize(name, {})])
    if not complete:
        return botched("function_tag", f"the call to '{name}' is cut off", name)
    value = loads(body)
    if isinstance(value, dict):
        return calls_of("function_tag", [normalize(name, value)])
    return botched("function_tag", f"the arguments of '{name}' are not a JSON object", name)


def dumps(arguments: Mapping[str, Any]) -> str:
    """Arguments as compact JSON, for messages."""
    return json.dumps(arguments, ensure_ascii=False)

"""Pydantic validation errors as config problems: `file:line: key: what is wrong`.

Pydantic's own messages ("Input should be a valid integer") say neither the key in YAML terms
nor what was written; these say both, and suggest the closest allowed value for a misspelling.
"""

from __future__ import annotations

from typing import Any

from pydantic import ValidationError
from pydantic_core import ErrorDetails

from agent.config._spec import TOOL_TAGS, suggest
from agent.config._yaml import KeyPath, SourceMap

__all__ = ["describe_value", "problems_from_validation"]

_EXPECTED = {
    "int_type": "an integer",
    "int_from_float": "a whole number",
    "float_type": "a number",
    "bool_type": "true or false",
    "string_type": "a string",
    "list_type": "a list",
    "dict_type": "a mapping",
    "model_type": "a mapping",
    "model_attributes_type": "a mapping",
    "none_required": "nothing (null)",
}

_BOUNDS = {
    "greater_than": ("gt", "must be greater than {}"),
    "greater_than_equal": ("ge", "must be at least {}"),
    "less_than": ("lt", "must be less than {}"),
    "less_than_equal": ("le", "must be at most {}"),
}


def describe_value(value: Any) -> str:
    """A written YAML value, as a message shows it."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        shown = value if len(value) <= 60 else value[:57] + "..."
        return repr(shown)
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    return str(value)


def problems_from_validation(exc: ValidationError, data: Any, source: SourceMap) -> list[str]:
    """One message per problem, in file order; a union's branches make one message."""
    explained: list[tuple[KeyPath, str]] = []
    expected: dict[KeyPath, tuple[list[str], Any]] = {}
    for error in exc.errors():
        path = _clean(error["loc"], data, missing=error["type"] == "missing")
        kind = error["type"]
        if kind in _EXPECTED:
            # `str | float` fails once per branch: say "expected a string or a number" once.
            wanted, _ = expected.setdefault(path, ([], error.get("input")))
            if path not in [p for p, _ in explained]:
                explained.append((path, ""))
            if _EXPECTED[kind] not in wanted:
                wanted.append(_EXPECTED[kind])
            continue
        explained.extend(_explain(error, path))
    found: list[tuple[int, str]] = []
    for path, message in explained:
        if not message:
            wanted, value = expected[path]
            message = f"expected {' or '.join(wanted)}, got {describe_value(value)}"
        where = source.where(path)
        text = f"{where}: {message}" if where else message
        if all(text != seen for _, seen in found):
            found.append((source.line(path) or 0, text))
    found.sort(key=lambda item: item[0])
    return [text for _, text in found]


def _clean(loc: tuple[str | int, ...], data: Any, *, missing: bool) -> KeyPath:
    """The part of pydantic's location that names keys and items actually written."""
    # A `tools` entry's location carries the union tag that picked its form; YAML has no such key.
    if len(loc) >= 3 and loc[0] == "tools" and isinstance(loc[1], int) and loc[2] in TOOL_TAGS:
        loc = loc[:2] + loc[3:]
    path: list[str | int] = []
    node = data
    for i, part in enumerate(loc):
        found, child = _child(node, part)
        if found:
            node = child
        elif not (missing and i == len(loc) - 1):  # the missing key itself is not written
            break  # a union branch's name, not a key
        path.append(part)
    return tuple(path)


def _child(node: Any, part: str | int) -> tuple[bool, Any]:
    if isinstance(node, dict) and part in node:
        return True, node[part]
    if isinstance(node, list) and isinstance(part, int) and 0 <= part < len(node):
        return True, node[part]
    return False, None


def _explain(error: ErrorDetails, path: KeyPath) -> list[tuple[KeyPath, str]]:
    kind = error["type"]
    ctx = error.get("ctx") or {}
    value = error.get("input")
    if kind == "unknown_keys":
        allowed = list(ctx["allowed"])
        out = []
        for key in ctx["keys"]:
            hint = suggest(str(key), allowed)
            why = f" (did you mean '{hint}'?)" if hint else f"; allowed: {', '.join(allowed)}"
            out.append(((*path, key), f"unknown key '{key}'{why}"))
        return out
    if kind == "missing":
        return [(path[:-1], f"missing required key '{path[-1]}'")]
    if kind == "literal_error":
        choices = _literal_choices(ctx.get("expected", ""))
        hint = suggest(value, choices) if isinstance(value, str) else None
        listed = ", ".join(choices) if choices else str(ctx.get("expected", ""))
        why = f" (did you mean '{hint}'?)" if hint else f"; allowed: {listed}"
        return [(path, f"{describe_value(value)} is not allowed{why}")]
    if kind in _BOUNDS:
        key, template = _BOUNDS[kind]
        bound = ctx[key]
        if isinstance(bound, float) and bound.is_integer():
            bound = int(bound)
        return [(path, f"{template.format(bound)}, got {describe_value(value)}")]
    if kind == "string_too_short":
        return [(path, "must not be empty")]
    message = error["msg"]
    if not kind.startswith(("unknown_", "import_", "duration", "tool_")):
        message = message[:1].lower() + message[1:]
    return [(path, message)]


def _literal_choices(expected: str) -> list[str]:
    # pydantic writes them as "'bwrap' or 'none'" / "'a', 'b' or 'c'"
    return [part.strip().strip("'") for part in expected.replace(" or ", ", ").split(",") if part]

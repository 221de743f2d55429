r"""Type notes for the parameter descriptions the model reads.

Meta's JSON tool template shows each parameter as `"name": {"type": "object", "description":
"..."}`: no type, no allowed values, no default, no nested fields, and `"None"` for a parameter
without a description. The renderer stays Meta-exact, so the contract travels in the description
instead: `Tool.spec` carries `The city's name. (string)`, `Temperature unit. (one of 'C', 'F',
optional, default 'C')`, `Items to order. (list of {sku: string, qty: integer at least 1})`, or
just `(integer, optional, default 5)` for an undocumented parameter.

Two choices follow from how Meta's templates paste descriptions. The JSON and python-list ones
paste them unescaped, where a double quote would end the JSON string early: strings are written
in single quotes, JavaScript-style, with JSON's escapes inside (`\"`, `\\`, `\n`, and `\u0027` for
a single quote), so the JSON around them stays valid. The function-tag one escapes `<`, `>`, `&`
and `'` (`\u003e`...): bounds are written in words (`at least 1`), not `>=`. Nested types are
written TypeScript-like and cut at `MAX_NOTE` characters.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

MAX_NOTE = 300  # characters of type text per parameter; the rest becomes "..."
_MAX_LITERAL = 60  # characters of one default or allowed value
_MAX_DEPTH = 8  # nesting levels written out before "..."
_CUT = "..."  # ASCII: Meta's function-tag template would show "…" as \u2026
_PARTIAL_ESCAPE = re.compile(r"(\\+)(u[0-9a-fA-F]{0,3})?$")
_NUMBER_BOUNDS = (
    ("minimum", "at least"),
    ("exclusiveMinimum", "greater than"),
    ("maximum", "at most"),
    ("exclusiveMaximum", "less than"),
)


def shown_parameters(parameters: Mapping[str, Any]) -> dict[str, Any]:
    """A copy of a tool's JSON schema whose top-level parameter descriptions end with a type
    note. Still a valid JSON schema that accepts exactly the same arguments."""
    shown = dict(parameters)
    properties = parameters.get("properties")
    if not isinstance(properties, Mapping):
        return shown
    required = parameters.get("required")
    required_names = set(required) if isinstance(required, Sequence) else set()
    described: dict[str, Any] = {}
    for name, prop in properties.items():
        if not isinstance(prop, Mapping):
            described[name] = prop
            continue
        note = parameter_note(prop, required=name in required_names, root=parameters)
        text = prop.get("description")
        description = f"{text} ({note})" if isinstance(text, str) and text.strip() else f"({note})"
        rest = {k: v for k, v in prop.items() if k not in ("type", "description")}
        first = {"type": prop["type"]} if "type" in prop else {}
        described[name] = first | {"description": description} | rest
    shown["properties"] = described
    return shown


def parameter_note(
    schema: Mapping[str, Any], *, required: bool, root: Mapping[str, Any] | None = None
) -> str:
    """`integer at least 1`, `one of 'C', 'F', optional, default 'C'`: one parameter's type, then
    `optional` and its default. `root` holds the `$defs` that `$ref`s point to."""
    writer = _Writer(root=root if root is not None else schema)
    choices = _choices(schema, writer)
    if choices is not None and len(choices) > 1:
        kind = "one of " + ", ".join(_literal(v) for v in choices)
    else:
        kind = writer.type_text(schema, depth=0, expanding=())
    parts = [_cut(kind, MAX_NOTE)]
    if not required:
        parts.append("optional")
    if "default" in schema:
        parts.append(f"default {_literal(schema['default'])}")
    return ", ".join(parts)


@dataclass(frozen=True, kw_only=True)
class _Writer:
    root: Mapping[str, Any]

    def type_text(self, schema: Any, *, depth: int, expanding: tuple[str, ...]) -> str:
        if schema is True or schema == {}:
            return "any"
        if schema is False:
            return "nothing"
        if not isinstance(schema, Mapping):
            return "any"
        if depth > _MAX_DEPTH:
            return _CUT
        ref = _ref_name(schema)
        if ref is not None:
            return self._ref(ref, depth=depth, expanding=expanding)
        if "const" in schema:
            return _literal(schema["const"])
        if isinstance(schema.get("enum"), list):
            return " | ".join(_literal(v) for v in schema["enum"])
        for key in ("anyOf", "oneOf"):
            members = schema.get(key)
            if isinstance(members, list) and members:
                texts = [self.type_text(m, depth=depth + 1, expanding=expanding) for m in members]
                return " | ".join(_distinct(_atom(t) for t in texts))
        members = schema.get("allOf")
        if isinstance(members, list) and members:
            merged = _merged(schema, members)
            if merged is not None:  # `{"allOf": [{"type": "integer"}, {"minimum": 0}]}`
                return self.type_text(merged, depth=depth, expanding=expanding)
            texts = [self.type_text(m, depth=depth + 1, expanding=expanding) for m in members]
            return " and ".join(_distinct(_atom(t) for t in texts))
        kind = schema.get("type")
        if isinstance(kind, list) and kind:
            texts = [self._typed(schema, str(k), depth=depth, expanding=expanding) for k in kind]
            return " | ".join(_atom(t) for t in texts) if len(texts) > 1 else texts[0]
        if isinstance(kind, str):
            return self._typed(schema, kind, depth=depth, expanding=expanding)
        if "properties" in schema or "additionalProperties" in schema:
            return self._object(schema, depth=depth, expanding=expanding)
        if "items" in schema or "prefixItems" in schema:
            return self._array(schema, depth=depth, expanding=expanding)
        return "any"

    def _ref(self, name: str, *, depth: int, expanding: tuple[str, ...]) -> str:
        defs = self.root.get("$defs")
        target = defs.get(name) if isinstance(defs, Mapping) else None
        if target is None or name in expanding:
            return name  # a recursive type: named where it is written out
        body = self.type_text(target, depth=depth, expanding=(*expanding, name))
        return f"{name} {body}"

    def _typed(
        self, schema: Mapping[str, Any], kind: str, *, depth: int, expanding: tuple[str, ...]
    ) -> str:
        if kind == "object":
            return self._object(schema, depth=depth, expanding=expanding)
        if kind == "array":
            return self._array(schema, depth=depth, expanding=expanding)
        if kind in ("integer", "number"):
            return _number_text(kind, schema)
        if kind == "string":
            return _string(schema)
        return kind

    def _object(self, schema: Mapping[str, Any], *, depth: int, expanding: tuple[str, ...]) -> str:
        properties = schema.get("properties")
        extra = schema.get("additionalProperties")
        fields: list[str] = []
        if isinstance(properties, Mapping):
            required = schema.get("required")
            needed = set(required) if isinstance(required, Sequence) else set()
            for name, prop in properties.items():
                text = self.type_text(prop, depth=depth + 1, expanding=expanding)
                mark = "" if name in needed else "?"
                if isinstance(prop, Mapping) and "default" in prop:
                    text += f" (default {_literal(prop['default'])})"
                fields.append(f"{name}{mark}: {text}")
        if isinstance(extra, Mapping) and extra:
            value = self.type_text(extra, depth=depth + 1, expanding=expanding)
            fields.append(f"[key: string]: {value}")
        if not fields:
            return "{}" if isinstance(properties, Mapping) and extra is False else "object"
        return "{" + ", ".join(fields) + "}"

    def _array(self, schema: Mapping[str, Any], *, depth: int, expanding: tuple[str, ...]) -> str:
        prefix = schema.get("prefixItems")
        items = schema.get("items")
        low, high = schema.get("minItems"), schema.get("maxItems")
        if isinstance(prefix, list) and prefix:
            texts = [self.type_text(p, depth=depth + 1, expanding=expanding) for p in prefix]
            if items is not False and not (high is not None and high <= len(prefix)):
                more = (
                    ""
                    if items in (None, True, {})
                    else ": " + _atom(self.type_text(items, depth=depth + 1, expanding=expanding))
                )
                texts.append(f"...{more}")
            text = "[" + ", ".join(texts) + "]"
            if low == high == len(prefix):
                return text  # a fixed-size tuple says its size already
        elif items in (None, True, {}):
            text = "list"
        else:
            text = "list of " + _atom(self.type_text(items, depth=depth + 1, expanding=expanding))
        extras = []
        count = _count(low, high, "item")
        if count:
            extras.append(count)
        if schema.get("uniqueItems") is True:
            extras.append("no duplicates")
        return text + (" with " + " and ".join(extras) if extras else "")


def _merged(schema: Mapping[str, Any], members: list[Any]) -> dict[str, Any] | None:
    """`allOf` members folded into one schema, when they are objects that share no keyword."""
    merged = {k: v for k, v in schema.items() if k != "allOf"}
    for member in members:
        if not isinstance(member, Mapping) or merged.keys() & member.keys():
            return None
        merged.update(member)
    return merged


def _number_text(kind: str, schema: Mapping[str, Any]) -> str:
    inclusive = "exclusiveMinimum" not in schema and "exclusiveMaximum" not in schema
    if "minimum" in schema and "maximum" in schema and inclusive:
        bounds = [f"from {_number(schema['minimum'])} to {_number(schema['maximum'])}"]
    else:
        bounds = [
            f"{words} {_number(schema[key])}" for key, words in _NUMBER_BOUNDS if key in schema
        ]
    if "multipleOf" in schema:
        bounds.append(f"a multiple of {_number(schema['multipleOf'])}")
    return (f"{kind} " + " and ".join(bounds)) if bounds else kind


def _string(schema: Mapping[str, Any]) -> str:
    form = schema.get("format")
    text = f"{form} string" if isinstance(form, str) else "string"
    length = _count(schema.get("minLength"), schema.get("maxLength"), "character")
    if length:
        text += f" of {length}"
    pattern = schema.get("pattern")
    if isinstance(pattern, str):
        text += f" matching {pattern}"
    return text


def _count(low: Any, high: Any, noun: str) -> str:
    """`2 to 8 characters`, `at least 1 item`, `at most 5 items`, or "" without bounds."""
    if low is not None and high is not None:
        text = f"{low}" if low == high else f"{low} to {high}"
        last = high
    elif low is not None and low != 0:
        text, last = f"at least {low}", low
    elif high is not None:
        text, last = f"at most {high}", high
    else:
        return ""
    return f"{text} {noun}" + ("" if last == 1 else "s")


def _choices(schema: Mapping[str, Any], writer: _Writer) -> list[Any] | None:
    """The allowed values when the schema is a closed set (enums, consts, null), else None."""
    ref = _ref_name(schema)
    if ref is not None:
        defs = writer.root.get("$defs")
        target = defs.get(ref) if isinstance(defs, Mapping) else None
        return _choices(target, writer) if isinstance(target, Mapping) else None
    if isinstance(schema.get("enum"), list):
        return list(schema["enum"])
    if "const" in schema:
        return [schema["const"]]
    if schema.get("type") == "null" and len(schema) == 1:
        return [None]
    for key in ("anyOf", "oneOf"):
        members = schema.get(key)
        if isinstance(members, list) and members:
            values: list[Any] = []
            for member in members:
                found = _choices(member, writer) if isinstance(member, Mapping) else None
                if found is None:
                    return None
                values.extend(v for v in found if v not in values)
            return values
    return None


def _ref_name(schema: Mapping[str, Any]) -> str | None:
    ref = schema.get("$ref")
    if isinstance(ref, str) and ref.startswith("#/$defs/"):
        return ref.removeprefix("#/$defs/")
    return None


def _literal(value: Any) -> str:
    """A JSON value for a note, JavaScript-like: strings in single quotes (`'C'`)."""
    if isinstance(value, str):
        # Only JSON's escapes (\\, \", \n, \u0027): Meta's JSON templates stay valid around them.
        escaped = json.dumps(value, ensure_ascii=False)[1:-1].replace("'", "\\u0027")
        return _cut(f"'{escaped}'", _MAX_LITERAL)
    if isinstance(value, bool) or value is None:
        return json.dumps(value)
    if isinstance(value, int | float):
        return _number(value)
    if isinstance(value, Mapping):
        inner = ", ".join(f"{_literal(str(k))}: {_literal(v)}" for k, v in value.items())
        return _cut("{" + inner + "}", _MAX_LITERAL)
    if isinstance(value, list | tuple):
        return _cut("[" + ", ".join(_literal(v) for v in value) + "]", _MAX_LITERAL)
    return _cut(json.dumps(value, default=str), _MAX_LITERAL)


def _number(value: Any) -> str:
    if isinstance(value, float) and math.isfinite(value) and value.is_integer():
        return str(int(value)) if abs(value) < 1e15 else repr(value)
    return json.dumps(value) if isinstance(value, int | float) else str(value)


def _atom(text: str) -> str:
    """`text` in parentheses when it has a space outside brackets and quotes, so `list of X`
    and unions read one way only: `list of (string | null)`."""
    depth = 0
    quote = ""
    escaped = False
    for char in text:
        if quote:
            if escaped:
                escaped = False
            elif char == "\\":
                escaped = True
            elif char == quote:
                quote = ""
        elif char in "'\"":
            quote = char
        elif char in "([{":
            depth += 1
        elif char in ")]}":
            depth -= 1
        elif char == " " and depth == 0:
            return f"({text})"
    return text


def _distinct(texts: Any) -> list[str]:
    out: list[str] = []
    for text in texts:
        if text not in out:
            out.append(text)
    return out


def _cut(text: str, limit: int) -> str:
    if len(text) <= limit:
        return text
    head = text[: limit - len(_CUT)]
    # Half an escape (`\`, `\u00`) before the marker would break Meta's JSON: drop it.
    partial = _PARTIAL_ESCAPE.search(head)
    if partial and len(partial.group(1)) % 2:
        head = head[: partial.end(1) - 1]
    return head + _CUT

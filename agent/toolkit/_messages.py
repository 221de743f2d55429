"""Short, precise problem lines for the model: which argument, what was given, what is allowed.

`argument 'b' must be an integer, got "ten"`; `argument 'unit' must be one of "C", "F", got "K"`;
`missing required argument 'a' (an integer)`; `unexpected argument 'c' (allowed: 'a', 'b')`.
`InvalidArgumentsError` prefixes each line with the tool's name.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any

from jsonschema import ValidationError as SchemaError
from pydantic import ValidationError as PydanticError

_NOUN = {
    "string": "a string",
    "integer": "an integer",
    "number": "a number",
    "boolean": "a boolean (true or false)",
    "null": "null",
    "array": "an array",
    "object": "an object",
}
_PLURAL = {
    "string": "strings",
    "integer": "integers",
    "number": "numbers",
    "boolean": "booleans",
    "array": "arrays",
    "object": "objects",
}
_BOUND = {
    "minimum": "at least {}",
    "maximum": "at most {}",
    "exclusiveMinimum": "greater than {}",
    "exclusiveMaximum": "less than {}",
    "multipleOf": "a multiple of {}",
}
_SIZE = {
    "minLength": "at least {} characters long",
    "maxLength": "at most {} characters long",
    "minItems": "an array of at least {} items",
    "maxItems": "an array of at most {} items",
    "minProperties": "an object with at least {} entries",
    "maxProperties": "an object with at most {} entries",
}
_SHOWN = 60  # characters of a given value echoed back


def show(value: Any) -> str:
    """A value as compact JSON, shortened."""
    text = json.dumps(value, ensure_ascii=False, separators=(",", ":"), default=repr)
    return text if len(text) <= _SHOWN else text[: _SHOWN - 1] + "…"


def path_text(path: Iterable[Any]) -> str:
    """`items[0].qty` from ("items", 0, "qty")."""
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def json_type(value: Any) -> str:
    """The JSON Schema type name of a JSON value."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, Mapping):
        return "object"
    return "array"


def resolve(schema: Any, root: Mapping[str, Any]) -> Any:
    """Follow a local `$ref` (`#/$defs/Name`); anything else is returned unchanged."""
    seen = 0
    while isinstance(schema, Mapping) and isinstance(schema.get("$ref"), str) and seen < 32:
        ref: str = schema["$ref"]
        if not ref.startswith("#/"):
            return schema
        target: Any = root
        for part in ref[2:].split("/"):
            if not isinstance(target, Mapping) or part not in target:
                return schema
            target = target[part]
        schema = {**target, **{k: v for k, v in schema.items() if k != "$ref"}}
        seen += 1
    return schema


def describe(schema: Any, root: Mapping[str, Any]) -> str:
    """What a schema allows, as a noun phrase: `an integer or null`, `one of "C", "F"`."""
    schema = resolve(schema, root)
    if not isinstance(schema, Mapping):
        return "any value" if schema is not False else "nothing"
    if "const" in schema:
        return show(schema["const"])
    if "enum" in schema:
        values = [show(v) for v in schema["enum"]]
        return values[0] if len(values) == 1 else "one of " + ", ".join(values)
    for key in ("anyOf", "oneOf"):
        if key in schema:
            return _join_or(_unique(describe(s, root) for s in schema[key]))
    kind = schema.get("type")
    if isinstance(kind, list):
        return _join_or(_unique(_NOUN.get(str(k), str(k)) for k in kind))
    if kind == "array":
        items = resolve(schema.get("items"), root)
        if isinstance(items, Mapping) and set(items) <= {"type", "description"}:
            item_kind = items.get("type")
            if isinstance(item_kind, str) and item_kind in _PLURAL:
                return f"an array of {_PLURAL[item_kind]}"
    if isinstance(kind, str):
        return _NOUN.get(kind, kind)
    return "any value"


def _unique(items: Iterable[str]) -> list[str]:
    return list(dict.fromkeys(items))


def _join_or(parts: Sequence[str]) -> str:
    if len(parts) <= 1:
        return parts[0] if parts else "any value"
    return ", ".join(parts[:-1]) + " or " + parts[-1]


def _accepts_type(schema: Any, kind: str, root: Mapping[str, Any]) -> bool:
    schema = resolve(schema, root)
    if not isinstance(schema, Mapping):
        return schema is not False
    declared = schema.get("type")
    if declared is None:
        return True
    allowed = {declared} if isinstance(declared, str) else set(declared)
    return kind in allowed or (kind == "integer" and "number" in allowed)


def leaf_errors(error: SchemaError, root: Mapping[str, Any]) -> Iterator[SchemaError]:
    """The errors worth reporting. For a union (`anyOf`/`oneOf`) whose one branch has the given
    value's type, that branch's own errors (`item.qty must be...`, not `item must be an object or
    null`); otherwise the union error itself."""
    branches = error.validator_value
    if error.validator in ("anyOf", "oneOf") and error.context and isinstance(branches, list):
        kind = json_type(error.instance)
        matching = [i for i, branch in enumerate(branches) if _accepts_type(branch, kind, root)]
        if len(matching) == 1:
            branch_errors = [e for e in error.context if e.relative_schema_path[0] == matching[0]]
            if branch_errors:
                for sub in branch_errors:
                    yield from leaf_errors(sub, root)
                return
    yield error


def schema_problems(errors: Iterable[SchemaError], root: Mapping[str, Any]) -> list[str]:
    """One line per problem, in schema order, without repeats."""
    lines: list[str] = []
    for error in errors:
        for leaf in leaf_errors(error, root):
            lines.extend(_lines(leaf, root))
    return _unique(lines)


def _lines(error: SchemaError, root: Mapping[str, Any]) -> list[str]:
    path = list(error.absolute_path)
    where = f"argument '{path_text(path)}'" if path else "the arguments"
    got = f", got {show(error.instance)}"
    kind = error.validator
    value = error.validator_value
    schema = error.schema if isinstance(error.schema, Mapping) else {}
    if kind == "required" and isinstance(error.instance, Mapping) and isinstance(value, list):
        properties = schema.get("properties", {})
        return [
            f"missing required argument '{path_text([*path, name])}' "
            f"({describe(properties.get(name, True), root)})"
            for name in value
            if name not in error.instance
        ]
    if kind == "additionalProperties" and isinstance(error.instance, Mapping):
        allowed = list(schema.get("properties", {}))
        listed = ", ".join(f"'{a}'" for a in allowed) if allowed else "none"
        patterns = schema.get("patternProperties", {})
        extras = [k for k in error.instance if k not in allowed and not _matches_any(k, patterns)]
        return [
            f"unexpected argument '{path_text([*path, k])}' (allowed: {listed})" for k in extras
        ]
    if kind in ("type", "enum", "const", "anyOf", "oneOf"):
        if kind == "oneOf" and error.validator_value and not error.context:
            return [f"{where} matches more than one of the allowed forms{got}"]
        return [f"{where} must be {describe(schema, root)}{got}"]
    if kind in _BOUND:
        return [f"{where} must be {_BOUND[kind].format(show(value))}{got}"]
    if kind in _SIZE:
        return [f"{where} must be {_SIZE[kind].format(value)}{got}"]
    if kind == "pattern":
        return [f"{where} must match the pattern {show(value)}{got}"]
    if kind == "uniqueItems":
        return [f"{where} must not contain duplicate items{got}"]
    if kind == "format":
        return [f"{where} must be a valid {value}{got}"]
    if kind is None or error.schema is False:  # a `false` schema: nothing is allowed here
        return [f"{where} is not allowed{got}"]
    return [f"{where}: {error.message}"]


def _matches_any(key: str, patterns: Mapping[str, Any]) -> bool:
    return any(re.search(p, key) for p in patterns)


def pydantic_problems(exc: PydanticError) -> list[str]:
    """Lines for what pydantic refused after the schema accepted it (formats, custom validators)."""
    lines: list[str] = []
    for err in exc.errors(include_url=False):
        path = path_text(err["loc"])
        where = f"argument '{path}'" if path else "the arguments"
        message = err["msg"]
        for prefix in ("Value error, ", "Assertion failed, "):
            message = message.removeprefix(prefix)
        if message.startswith("Input should be "):
            phrase = "must be " + message.removeprefix("Input should be ")
        else:
            phrase = "is invalid: " + message[:1].lower() + message[1:]
        lines.append(f"{where} {phrase}, got {show(err.get('input'))}")
    return _unique(lines)

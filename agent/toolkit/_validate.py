"""Check model-written arguments against the schema the model was shown, then convert them; say
what is wrong in short, precise lines.

The JSON schema is the contract (Draft 2020-12, one compiled validator per tool). A few safe
coercions repair common model slips, each recorded: a digit string where a number is expected
(`"10"` -> 10, `"2.5"` -> 2.5), `"true"`/`"false"` where a boolean is expected, and a JSON string
where an object or array is expected. They apply only where a string is not allowed; nothing
else is guessed.

Most calls are valid: jsonschema-rs says so first (`fast_check`, about a microsecond), and
python-jsonschema, which finds the coercions and words the messages, runs only when it does not.

Problems come back one line each, naming the argument, what was given and what is allowed:
`argument 'b' must be an integer, got "ten"`; `argument 'unit' must be one of "C", "F", got "K"`;
`missing required argument 'a' (an integer)`; `unexpected argument 'c' (allowed: 'a', 'b')`.
`InvalidArgumentsError` prefixes each line with the tool's name.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from fractions import Fraction
from typing import Any, NamedTuple

import jsonschema_rs
from jsonschema import Draft202012Validator
from jsonschema import ValidationError as SchemaError
from pydantic import ValidationError as PydanticError

from agent.errors import InvalidArgumentsError

_INTEGER = re.compile(r"-?[0-9]{1,30}")
_DECIMAL = re.compile(r"-?[0-9]{1,30}\.[0-9]{1,30}")
_ROUNDS = 4  # a JSON string may hold digit strings: parse it, then coerce inside


class Checked(NamedTuple):
    """Arguments that passed: the JSON-level dict, the coercions made, the Python values (a
    tuple: one is made per call)."""

    arguments: dict[str, Any]
    coercions: tuple[str, ...]
    values: dict[str, Any]


class ArgumentChecker:
    """Validates (and converts) the arguments of one tool; built once, used for every call."""

    def __init__(
        self,
        tool: str,
        schema: Mapping[str, Any],
        convert: Callable[[dict[str, Any]], dict[str, Any]] | None,
        *,
        direct: Callable[[dict[str, Any]], dict[str, Any] | None] | None = None,
    ) -> None:
        self._tool = tool
        self._schema = schema
        self._validator = Draft202012Validator(schema)
        self._fast = fast_check(schema)  # None: a schema it does not cover, python-only
        self._convert = convert
        # A flat signature's one-pass check and conversion (see `_schema.make_direct`).
        self._direct = direct

    def check(self, arguments: Mapping[str, Any]) -> Checked:
        """Validate, coerce, convert; raise `InvalidArgumentsError` listing every problem."""
        current: Any = arguments
        if type(arguments) is dict or isinstance(arguments, Mapping):  # a dict: no ABC check
            current = dict(arguments)
        if self._direct is not None and type(current) is dict:
            values = self._direct(current)
            if values is not None:  # valid as it is: the values are what pydantic would make
                return Checked(current, (), values)
        if self._fast is not None and self._fast(current):
            # The usual case, one pass: valid as it is, nothing to coerce.
            return self._converted(current, ())
        # JSON has no infinity or NaN: `1e999` parses as inf, and no tool means that.
        odd = [
            f"argument '{path_text(p)}' must be a finite number, got {v}"
            for p, v in _non_finite(current, ())
        ]
        if odd:
            raise InvalidArgumentsError(self._tool, odd)
        coercions: list[str] = []
        for _ in range(_ROUNDS):
            # The fast check said no to the arguments as given; ask it again only after a fix.
            errors = self._errors(current, fast=bool(coercions))
            if not errors:
                break
            current, made = self._coerce(current, errors)
            if not made:
                raise InvalidArgumentsError(self._tool, schema_problems(errors, self._schema))
            coercions.extend(made)
        else:
            errors = self._errors(current)
            if errors:
                raise InvalidArgumentsError(self._tool, schema_problems(errors, self._schema))
        return self._converted(current, tuple(coercions))

    def _converted(self, arguments: Any, coercions: tuple[str, ...]) -> Checked:
        values = arguments
        if self._convert is not None:
            try:
                values = self._convert(arguments)
            except PydanticError as exc:
                raise InvalidArgumentsError(self._tool, pydantic_problems(exc)) from exc
        return Checked(arguments, coercions, values)

    def _errors(self, instance: Any, *, fast: bool = True) -> list[SchemaError]:
        """python-jsonschema's errors, unless the fast check (`fast`) knows there are none."""
        if fast and self._fast is not None and self._fast(instance):
            return []
        try:
            return list(self._validator.iter_errors(instance))
        except OverflowError as exc:  # e.g. a float `multipleOf` against an integer past 1e308
            raise InvalidArgumentsError(
                self._tool, ["a number is too large to check; use a smaller value"]
            ) from exc

    def _coerce(self, root: Any, errors: list[SchemaError]) -> tuple[Any, list[str]]:
        made: list[str] = []
        done: set[tuple[Any, ...]] = set()
        for error in errors:
            for leaf in leaf_errors(error, self._schema):
                path = tuple(leaf.absolute_path)
                if not path or path in done or not isinstance(leaf.instance, str):
                    continue
                replaced, ok = _coerced(leaf.instance, _allowed_types(leaf.schema, self._schema))
                if ok:
                    root = _replace(root, path, replaced)
                    done.add(path)
                    given, now = show(leaf.instance), show(replaced)
                    made.append(f"argument '{path_text(path)}': {given} -> {now}")
        return root, made


def _non_finite(value: Any, path: tuple[Any, ...]) -> Iterator[tuple[tuple[Any, ...], str]]:
    """Where `value` holds an infinite or NaN float, and how it was written (`1e999`: Infinity)."""
    if isinstance(value, float) and not math.isfinite(value):
        yield path, "NaN" if math.isnan(value) else ("-Infinity" if value < 0 else "Infinity")
    elif isinstance(value, Mapping):
        for key, item in value.items():
            yield from _non_finite(item, (*path, key))
    elif isinstance(value, list | tuple):
        for index, item in enumerate(value):
            yield from _non_finite(item, (*path, index))


def _allowed_types(schema: Any, root: Mapping[str, Any]) -> set[str]:
    """The JSON types a schema admits (an empty set: no restriction by type)."""
    schema = resolve(schema, root)
    if not isinstance(schema, Mapping):
        return set()
    kinds: set[str] = set()
    declared = schema.get("type")
    if isinstance(declared, str):
        kinds.add(declared)
    elif isinstance(declared, list):
        kinds.update(declared)
    if isinstance(schema.get("enum"), list):
        kinds.update(json_type(v) for v in schema["enum"])
    if "const" in schema:
        kinds.add(json_type(schema["const"]))
    for key in ("anyOf", "oneOf"):
        for branch in schema.get(key, ()):
            sub = _allowed_types(branch, root)
            if not sub:
                return set()
            kinds |= sub
    return kinds


def _coerced(text: str, allowed: set[str]) -> tuple[Any, bool]:
    """The value a string stands for, when the schema admits that value's type and no string."""
    if not allowed or "string" in allowed:
        return None, False
    if ("integer" in allowed or "number" in allowed) and _INTEGER.fullmatch(text):
        return int(text), True
    if "number" in allowed and _DECIMAL.fullmatch(text):
        number = float(text)
        return (number, True) if math.isfinite(number) else (None, False)
    if "boolean" in allowed and text in ("true", "false"):
        return text == "true", True
    stripped = text.strip()
    if stripped[:1] in ("{", "[") and ({"object", "array"} & allowed):
        try:
            parsed = json.loads(stripped)
        except ValueError:
            return None, False
        if json_type(parsed) in allowed:
            return parsed, True
    return None, False


def _replace(root: Any, path: tuple[Any, ...], value: Any) -> Any:
    """A copy of `root` with the value at `path` replaced (only the containers on the path are
    copied: the caller's arguments are never changed)."""
    if not path:
        return value
    head, rest = path[0], path[1:]
    if isinstance(root, dict):
        return {**root, head: _replace(root[head], rest, value)}
    copied = list(root)
    copied[head] = _replace(copied[head], rest, value)
    return copied


# --- the fast check -------------------------------------------------------------------------------
#
# A fast "these arguments are valid" from jsonschema-rs, trusted only where it cannot disagree
# with python-jsonschema.
#
# `ArgumentChecker` asks it first: most calls are valid, and jsonschema-rs answers in about a
# microsecond where python-jsonschema's `iter_errors` takes a hundred or more. Only a yes is
# trusted; on a no the checker runs python-jsonschema, which makes the coercions and the messages.
# So the one rule is: a yes here means python-jsonschema finds no error. It holds because
#
# - a tool gets a fast check only if its schema is built of the keywords in `_KEYWORDS`, the
#   ones `tests/toolkit/test_fastcheck.py` tests agreement on, and `$ref`s within the schema
#   (neither engine fetches anything: `offline=True`);
# - `format` is asserted by neither (python-jsonschema runs without a format checker);
# - `pattern` and `multipleOf` run python-jsonschema's own rules, as custom keywords: the
#   engines differ there (Rust regex vs `re.search`: `$` before a final newline, `\d`, `\w`,
#   `\s`; exact decimal vs float arithmetic: `0.3` is not a `multipleOf` `0.1` in Python);
# - only plain JSON values are checked (what `json.loads` makes: dicts with string keys, lists,
#   strings, ints, finite floats, booleans, None, no subclasses): jsonschema-rs takes a tuple for
#   an array and a Decimal for a number, python-jsonschema does not, and NaN is a number only in
#   Python; anything else gets a no, as does any exception from jsonschema-rs (a lone surrogate).
#
# Integers beyond 64 bits need nothing special: jsonschema-rs compares them exactly.

FastCheck = Callable[[Any], bool]

# Keywords whose value is data (or an annotation), a subschema, a list of subschemas, or a
# name -> subschema map. A schema using any other keyword gets no fast check.
_DATA = frozenset(
    {"type", "enum", "const", "required", "format", "pattern", "multipleOf"}
    | {"minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum", "minLength", "maxLength"}
    | {"minItems", "maxItems", "uniqueItems", "minProperties", "maxProperties"}
    | {"title", "description", "default", "examples", "deprecated", "readOnly", "writeOnly"}
    | {"$comment", "discriminator"}  # pydantic's (OpenAPI) discriminator: ignored by both
)
_ONE = frozenset({"items", "additionalProperties", "not", "propertyNames"})
_MANY = frozenset({"anyOf", "oneOf", "allOf", "prefixItems"})
_NAMED = frozenset({"properties", "$defs"})
_KEYWORDS = _DATA | _ONE | _MANY | _NAMED | {"$ref"}


class _Pattern:
    """`pattern` as python-jsonschema checks it: `re.search`, on strings only."""

    def __init__(self, parent_schema: Any, value: str, schema_path: Any) -> None:
        self._search = re.compile(value).search

    def validate(self, instance: Any) -> None:
        if isinstance(instance, str) and self._search(instance) is None:
            raise ValueError("no match")


class _MultipleOf:
    """`multipleOf` as python-jsonschema checks it (`jsonschema._keywords.multipleOf`)."""

    def __init__(self, parent_schema: Any, value: int | float, schema_path: Any) -> None:
        self._divisor = value

    def validate(self, instance: Any) -> None:
        if isinstance(instance, bool) or not isinstance(instance, int | float):
            return
        divisor = self._divisor
        if isinstance(divisor, float):
            quotient = instance / divisor
            try:
                failed = int(quotient) != quotient
            except OverflowError:
                failed = (Fraction(instance) / Fraction(divisor)).denominator != 1
        else:
            failed = bool(instance % divisor)
        if failed:
            raise ValueError("not a multiple")


_SCALARS = frozenset({str, int, bool, type(None)})
_OVERRIDES: dict[str, Any] = {"pattern": _Pattern, "multipleOf": _MultipleOf}


def fast_check(schema: Mapping[str, Any]) -> FastCheck | None:
    """A function telling whether an instance is certainly valid against `schema` (False: not
    known, ask python-jsonschema), or None when the schema is outside what it covers."""
    if not _covered(schema):
        return None
    try:
        validator = jsonschema_rs.Draft202012Validator(
            dict(schema), validate_formats=False, offline=True, keywords=_OVERRIDES
        )
    except Exception:  # e.g. a $ref to nowhere: python-jsonschema reports it on each call
        return None
    is_valid = validator.is_valid

    def check(instance: Any) -> bool:
        if not is_plain_json(instance):
            return False
        try:
            return is_valid(instance)
        except Exception:  # a value it cannot take (a lone surrogate): python-jsonschema decides
            return False

    return check


def _covered(schema: Any) -> bool:
    """True when every (sub)schema uses only the keywords the fast check is tested on."""
    if isinstance(schema, bool):
        return True
    if not isinstance(schema, Mapping):
        return False
    for key, value in schema.items():
        if key not in _KEYWORDS:
            return False
        if key == "$ref":
            if not (isinstance(value, str) and value.startswith("#")):
                return False
        elif key in _ONE:
            if not _covered(value):
                return False
        elif key in _MANY:
            if not (isinstance(value, list) and all(_covered(v) for v in value)):
                return False
        elif key in _NAMED and not (
            isinstance(value, Mapping) and all(_covered(v) for v in value.values())
        ):
            return False
    return True


def is_plain_json(value: Any) -> bool:
    """True for the values `json.loads` makes, exactly those types, floats finite: values that
    any JSON writer (json, orjson, pydantic) writes alike."""
    kind = type(value)
    if kind in _SCALARS:
        return True
    # Loops, not all(): this runs on every call, and a generator costs 60% more here.
    if kind is dict:
        for key, item in value.items():
            if type(key) is not str or not is_plain_json(item):
                return False
        return True
    if kind is list:
        for item in value:  # noqa: SIM110
            if not is_plain_json(item):
                return False
        return True
    return kind is float and math.isfinite(value)


# --- problem lines --------------------------------------------------------------------------------

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

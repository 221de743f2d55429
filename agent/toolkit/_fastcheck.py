"""A fast "these arguments are valid" from jsonschema-rs, trusted only where it cannot disagree
with python-jsonschema.

`ArgumentChecker` asks it first: most calls are valid, and jsonschema-rs answers in about a
microsecond where python-jsonschema's `iter_errors` takes a hundred or more. Only a yes is
trusted; on a no the checker runs python-jsonschema, which makes the coercions and the messages.
So the one rule is: a yes here means python-jsonschema finds no error. It holds because

- a tool gets a fast check only if its schema is built of the keywords in `_KEYWORDS`, the
  ones `tests/toolkit/test_fastcheck.py` tests agreement on, and `$ref`s within the schema
  (neither engine fetches anything: `offline=True`);
- `format` is asserted by neither (python-jsonschema runs without a format checker);
- `pattern` and `multipleOf` run python-jsonschema's own rules, as custom keywords: the
  engines differ there (Rust regex vs `re.search`: `$` before a final newline, `\\d`, `\\w`,
  `\\s`; exact decimal vs float arithmetic: `0.3` is not a `multipleOf` `0.1` in Python);
- only plain JSON values are checked (what `json.loads` makes: dicts with string keys, lists,
  strings, ints, finite floats, booleans, None, no subclasses): jsonschema-rs takes a tuple for
  an array and a Decimal for a number, python-jsonschema does not, and NaN is a number only in
  Python; anything else gets a no, as does any exception from jsonschema-rs (a lone surrogate).

Integers beyond 64 bits need nothing special: jsonschema-rs compares them exactly.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping
from fractions import Fraction
from typing import Any

import jsonschema_rs

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
        if not _plain(instance):
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


def _plain(value: Any) -> bool:
    """True for the values `json.loads` makes, exactly those types, floats finite."""
    kind = type(value)
    if kind in _SCALARS:
        return True
    # Loops, not all(): this runs on every call, and a generator costs 60% more here.
    if kind is dict:
        for key, item in value.items():  # noqa: SIM110
            if type(key) is not str or not _plain(item):
                return False
        return True
    if kind is list:
        for item in value:  # noqa: SIM110
            if not _plain(item):
                return False
        return True
    return kind is float and math.isfinite(value)

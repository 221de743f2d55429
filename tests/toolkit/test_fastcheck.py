"""The fast check (jsonschema-rs) must agree with python-jsonschema, which words the messages.

The checker trusts a fast "valid" and skips python-jsonschema, so a disagreement would let a
bad call through. The property tests draw instances near each schema (valid ones, and ones
broken at one spot: a wrong type, a bound crossed, a key added or dropped) over the 43 signature
schemas of `schemas.json` and the extra schemas below, which add the keywords pydantic makes
that those do not show, and the corners where the engines differ (regex dialects, float
arithmetic, big integers, 1.0 as an integer). For a longer search, set FASTCHECK_EXAMPLES
(examples per schema; default 40).
"""

from __future__ import annotations

import copy
import functools
import json
import os
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path
from typing import Annotated, Any, Literal

import pytest
from hypothesis import HealthCheck, Phase, find, given, settings
from hypothesis import strategies as st
from jsonschema import Draft202012Validator
from pydantic import BaseModel, Field

from agent.errors import InvalidArgumentsError
from agent.toolkit import Tool, tool
from agent.toolkit._validate import fast_check, resolve
from tests.toolkit.signatures import SIGNATURES, make

SIGNATURE_SCHEMAS: dict[str, dict[str, Any]] = {
    name: entry["parameters"]
    for name, entry in json.loads(Path(__file__).with_name("schemas.json").read_text()).items()
}


class Cat(BaseModel):
    kind: Literal["cat"]
    lives: int = 9


class Dog(BaseModel):
    kind: Literal["dog"]
    good: bool = True


@tool
def pets(
    pet: Annotated[Cat | Dog, Field(discriminator="kind")], mode: Literal["only"] = "only"
) -> str:
    return ""


@tool
def numbers(
    step: Annotated[float, Field(multiple_of=0.1)],
    n: Annotated[int, Field(multiple_of=3)] = 3,
    big: Annotated[int, Field(ge=2**64, lt=2**70)] = 2**64,
) -> str:
    return ""


@tool
def maps(
    scores: Annotated[dict[str, int], Field(min_length=1, max_length=2)],
    keyed: dict[Literal["a", "b"], int] | None = None,
) -> str:
    return ""


def _object(**properties: Any) -> dict[str, Any]:
    return {"type": "object", "properties": properties, "additionalProperties": False}


EXTRA_SCHEMAS: dict[str, dict[str, Any]] = {
    "pets": pets.parameters,  # oneOf, const, discriminator
    "numbers": numbers.parameters,  # multipleOf, bounds beyond 64 bits
    "maps": maps.parameters,  # minProperties, maxProperties, propertyNames
    "regex": _object(
        digits={"type": "string", "pattern": r"^\d+$"},
        word={"type": "string", "pattern": r"^\w+$"},
        space={"type": "string", "pattern": r"^\s+$"},
        upper={"type": "string", "pattern": "^[A-Z]+$"},
        search={"type": "string", "pattern": "colou?r"},
        keys={"type": "object", "propertyNames": {"pattern": "^[a-z]$"}},
    ),
    "logic": _object(
        both={"allOf": [{"type": "integer"}, {"minimum": 0}], "not": {"const": 3}},
        kinds={"type": ["integer", "string", "null"], "maxLength": 2, "maximum": 2},
        same={"enum": [0, False, 1.0, "1", None, [1], {"a": 1}]},
        pair={"const": [1, True]},
        distinct={"type": "array", "uniqueItems": True},
        point={"$ref": "#/properties/both"},
        decimal={"type": "number", "multipleOf": 0.01, "exclusiveMaximum": 10**30},
        bounded={"type": "number", "minimum": 2**53, "maximum": 1e30},
    ),
}
SCHEMAS = {**SIGNATURE_SCHEMAS, **EXTRA_SCHEMAS}
EXAMPLES = int(os.environ.get("FASTCHECK_EXAMPLES", "40"))

_INTERESTING = st.sampled_from(
    [
        *(0, 1, -1, 3, 2**53, 2**53 + 1, 2**63, 2**64, 2**70, -(2**63) - 1, 10**30, 10**40),
        *(0.0, -0.0, 1.0, 3.0, 0.1, 0.3, 1.13, 2.5, 1e30, 2.0**53, 2.0**64, 1e300),
        *("", "1", "10", "-2", "1.5", "true", "AB", "AB\n", "٣", "é", "\ufeff", " ", "colour"),
        *("2024-05-01", '{"a": 1}', "[1, 2]", "x" * 9, True, False, None),
    ]
)
_SCALARS = st.one_of(
    _INTERESTING,
    st.none(),
    st.booleans(),
    st.integers(),
    st.integers(min_value=-(2**80), max_value=2**80),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=6),
)
ANY_JSON = st.recursive(
    _SCALARS,
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=4), inner, max_size=3)
    ),
    max_leaves=6,
)


def near(draw: st.DrawFn, schema: Any, root: dict[str, Any], depth: int = 0) -> Any:
    """A value shaped by `schema` at every level, now and then any JSON value instead."""
    schema = resolve(schema, root)
    if depth > 5 or not isinstance(schema, dict) or draw(st.integers(0, 11)) == 0:
        return draw(ANY_JSON)
    choices: list[Callable[[], Any]] = []
    if "enum" in schema:
        choices.append(lambda: draw(st.sampled_from(schema["enum"])))
    if "const" in schema:
        choices.append(lambda: schema["const"])
    for key in ("anyOf", "oneOf", "allOf"):
        for branch in schema.get(key, ()):
            choices.append(lambda b=branch: near(draw, b, root, depth + 1))
    kinds = schema.get("type", [])
    for kind in [kinds] if isinstance(kinds, str) else kinds:
        choices.append(lambda k=kind: _of_type(draw, k, schema, root, depth))
    return draw(st.sampled_from(choices))() if choices else draw(ANY_JSON)


def _of_type(
    draw: st.DrawFn, kind: str, schema: dict[str, Any], root: dict[str, Any], depth: int
) -> Any:
    if kind == "object":
        return _object_value(draw, schema, root, depth)
    if kind == "array":
        return _array_value(draw, schema, root, depth)
    if kind == "string":
        if "pattern" in schema and draw(st.booleans()):
            return draw(st.from_regex(schema["pattern"]))
        lo, hi = schema.get("minLength", 0), schema.get("maxLength", 8)
        return draw(st.text(min_size=max(0, lo - 1), max_size=hi + 1))
    if kind in ("integer", "number"):
        return draw(_numbers(schema, integral=kind == "integer"))
    return draw(st.booleans()) if kind == "boolean" else None


def _numbers(schema: dict[str, Any], *, integral: bool) -> st.SearchStrategy[Any]:
    edges: list[Any] = []
    for key in ("minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum"):
        if key in schema:
            bound = schema[key]
            edges += [bound, bound + 1, bound - 1, float(bound), bound + 0.5, bound - 0.5]
    step = schema.get("multipleOf")
    options: list[st.SearchStrategy[Any]] = [st.integers(-(2**70), 2**70), st.integers(-5, 12)]
    if edges:
        options.append(st.sampled_from(edges))
    if step is not None:
        options.append(st.integers(-30, 30).map(lambda k: k * step))
    if not integral:
        options.append(st.floats(allow_nan=False, allow_infinity=False))
    return st.one_of(options)


def _object_value(draw: st.DrawFn, schema: dict[str, Any], root: dict[str, Any], depth: int) -> Any:
    properties = schema.get("properties", {})
    required = schema.get("required", ())
    value = {k: near(draw, properties.get(k, True), root, depth + 1) for k in required}
    for key, sub in properties.items():
        if key not in value and draw(st.booleans()):
            value[key] = near(draw, sub, root, depth + 1)
    extra = schema.get("additionalProperties", True)
    # Keys the schema does not name: often where it allows them, now and then where it does not.
    if draw(st.integers(0, 1 if extra is not False and not properties else 7)) == 0:
        for _ in range(draw(st.integers(1, 2))):
            if "propertyNames" in schema:
                key = near(draw, schema["propertyNames"], root, depth + 1)
                if not isinstance(key, str):
                    continue
            else:
                key = draw(st.text(max_size=3))
            value[key] = near(draw, extra, root, depth + 1)
    if value and draw(st.integers(0, 7)) == 0:  # drop a key, required or not
        value.pop(draw(st.sampled_from(sorted(value))))
    return value


def _array_value(draw: st.DrawFn, schema: dict[str, Any], root: dict[str, Any], depth: int) -> Any:
    lo = schema.get("minItems", 0)
    hi = schema.get("maxItems", lo + 3)
    head = [near(draw, s, root, depth + 1) for s in schema.get("prefixItems", ())]
    size = draw(st.integers(max(0, lo - 1), hi + 1))
    items = schema.get("items", True)
    value = (head + [near(draw, items, root, depth + 1) for _ in range(max(0, size - len(head)))])[
        :size
    ]
    if value and draw(st.integers(0, 5)) == 0:  # a duplicate, for uniqueItems
        value.append(copy.deepcopy(value[0]))
    return value


@st.composite
def instances(draw: st.DrawFn, name: str) -> Any:
    return near(draw, SCHEMAS[name], SCHEMAS[name])


def test_every_schema_here_gets_a_fast_check() -> None:
    assert len(SIGNATURE_SCHEMAS) == 43
    assert [name for name, schema in SCHEMAS.items() if fast_check(schema) is None] == []


@pytest.mark.parametrize("name", list(SCHEMAS))
def test_the_instances_drawn_are_both_valid_and_invalid(name: str) -> None:
    python = Draft202012Validator(SCHEMAS[name])
    quick = settings(
        max_examples=500,
        database=None,
        phases=[Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    find(instances(name), python.is_valid, settings=quick)
    find(instances(name), lambda v: not python.is_valid(v), settings=quick)


@pytest.mark.parametrize("name", list(SCHEMAS))
@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck))
@given(data=st.data())
def test_fast_check_agrees_with_python_jsonschema(name: str, data: st.DataObject) -> None:
    schema = SCHEMAS[name]
    fast = fast_check(schema)
    assert fast is not None
    instance = data.draw(instances(name))
    assert fast(instance) is Draft202012Validator(schema).is_valid(instance)


@functools.cache
def _checkers(name: str) -> tuple[Any, Any]:
    """The tool's checker, and a copy of it without the fast check and the direct route."""
    checker = make(name)._checker
    slow = copy.copy(checker)
    slow._fast = None
    slow._direct = None
    return checker, slow


def _outcome(checker: Any, instance: Any) -> Any:
    try:
        checked = checker.check(instance)
    except InvalidArgumentsError as exc:
        return ("invalid", str(exc))
    return ("valid", checked.arguments, checked.coercions, checked.values)


@pytest.mark.parametrize("name", list(SIGNATURES))
@settings(max_examples=EXAMPLES // 2, deadline=None, suppress_health_check=list(HealthCheck))
@given(data=st.data())
def test_a_call_ends_the_same_with_or_without_the_fast_check(
    name: str, data: st.DataObject
) -> None:
    checker, slow = _checkers(name)
    instance = data.draw(instances(name))
    assert _outcome(checker, instance) == _outcome(slow, instance)


NOT_JSON = [
    ("list_str", {"tags": ("a", "b")}, False),  # a tuple is no JSON array to python-jsonschema
    ("one_int", {"n": Decimal(1)}, False),  # nor a Decimal an integer
    ("one_float", {"x": float("nan")}, True),  # NaN is a number to python-jsonschema only
    ("one_float", {"x": float("inf")}, True),
    ("one_int", {1: 2}, False),
    ("one_str", {"text": type("Text", (str,), {})("x")}, True),
]  # fmt: skip


@pytest.mark.parametrize(("name", "instance", "valid"), NOT_JSON)
def test_values_json_does_not_make_are_left_to_python_jsonschema(
    name: str, instance: Any, valid: bool
) -> None:
    fast = fast_check(SCHEMAS[name])
    assert fast is not None
    assert fast(instance) is False
    assert Draft202012Validator(SCHEMAS[name]).is_valid(instance) is valid


@pytest.mark.parametrize(
    "instance", [{"text": "\ud800"}, {"upper": "\ud800"}, {"keys": {"\udc00": 1}}]
)
def test_lone_surrogates_never_get_a_wrong_yes(instance: dict[str, Any]) -> None:
    name = "one_str" if "text" in instance else "regex"
    fast = fast_check(SCHEMAS[name])
    assert fast is not None
    python = Draft202012Validator(SCHEMAS[name]).is_valid(instance)
    assert fast(instance) in (python, False)  # jsonschema-rs cannot always take them


def test_python_rules_for_pattern_and_multiple_of() -> None:
    fast = fast_check(SCHEMAS["regex"])
    assert fast is not None
    assert fast({"upper": "AB\n"})  # re.search: `$` also matches before a final newline
    assert fast({"digits": "٣", "word": "é"})  # Unicode digits and letters
    assert not fast({"space": "\ufeff"})  # not whitespace to Python
    assert fast({"search": "the colour red"})  # search, not match
    numbers_check = fast_check(numbers.parameters)
    assert numbers_check is not None
    assert not numbers_check({"step": 0.3})  # 0.3 / 0.1 is not a whole number in floats
    assert numbers_check({"step": 0.5, "big": 2**69 + 1})
    with pytest.raises(InvalidArgumentsError, match=r"'step' must be a multiple of 0.1, got 0.3"):
        numbers.validate({"step": 0.3})
    with pytest.raises(InvalidArgumentsError, match=r"'big' must be less than"):
        numbers.validate({"step": 0.5, "big": 2**70})


UNCOVERED = [
    {"type": "object", "patternProperties": {"^x": {"type": "integer"}}},
    {"type": "object", "properties": {"a": {"if": {"type": "string"}, "then": {"minLength": 2}}}},
    {"type": "object", "properties": {"a": {"$ref": "https://example.com/a.json"}}},
    {"type": "object", "$schema": "http://json-schema.org/draft-07/schema#"},
    {"type": "object", "unevaluatedProperties": False},
    {"type": "object", "properties": {"a": {"$id": "urn:a", "type": "integer"}}},
    {"type": "object", "properties": {"x-note": {"x-vendor": 1}}},
]


@pytest.mark.parametrize("schema", UNCOVERED)
def test_schemas_outside_the_tested_keywords_get_no_fast_check(schema: dict[str, Any]) -> None:
    assert fast_check(schema) is None


def test_a_schema_tool_outside_the_tested_keywords_still_validates() -> None:
    def f(**kwargs: Any) -> str:
        return ""

    schema = {"type": "object", "patternProperties": {"^n_": {"type": "integer"}}}
    counts = Tool.from_schema(name="counts", description="", parameters=schema, function=f)
    assert counts.validate({"n_a": "3"}).arguments == {"n_a": 3}
    with pytest.raises(InvalidArgumentsError, match="'n_a' must be an integer"):
        counts.validate({"n_a": "x"})


def test_valid_calls_skip_python_jsonschema_and_invalid_ones_use_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    calls: list[Any] = []
    real = Draft202012Validator.iter_errors

    def counted(self: Any, instance: Any) -> Any:
        calls.append(instance)
        return real(self, instance)

    monkeypatch.setattr(Draft202012Validator, "iter_errors", counted)
    order = make("nested_model")
    valid = {
        "order": {"items": [{"name": "pen", "qty": 2**70}], "ship_to": {"street": "1", "city": "X"}}
    }
    assert order.validate(valid).arguments == valid
    assert calls == []
    with pytest.raises(
        InvalidArgumentsError, match=r"'order.items\[0\].qty' must be at least 1, got 0"
    ):
        order.validate(
            {
                "order": {
                    "items": [{"name": "pen", "qty": 0}],
                    "ship_to": {"street": "1", "city": "X"},
                }
            }
        )
    assert len(calls) == 1
    calls.clear()
    # One slip: python-jsonschema finds it, the coerced result passes the fast check.
    assert make("one_int").validate({"n": "7"}).arguments == {"n": 7}
    assert len(calls) == 1

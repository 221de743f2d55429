# ruff: noqa: E501  (tables of exact messages read best one case per line)
"""Validation: the accept/reject table with the exact messages the model gets, and coercions."""

from __future__ import annotations

import datetime
import enum
from typing import Annotated, Any, Literal

import pytest
from pydantic import BaseModel, Field, field_validator

from agent.errors import InvalidArgumentsError
from agent.toolkit import Tool, tool


class Item(BaseModel):
    name: str
    qty: int = Field(1, ge=1)


class Even(BaseModel):
    n: int

    @field_validator("n")
    @classmethod
    def _even(cls, v: int) -> int:
        if v % 2:
            raise ValueError("n must be even")
        return v


class Color(enum.Enum):
    RED = "red"
    BLUE = "blue"


@tool
def add(a: int, b: int) -> int:
    return a + b


@tool
def convert(value: float, unit: Literal["C", "F"] = "C") -> str:
    return f"{value}{unit}"


@tool
def order(item: Item, note: str | None = None) -> str:
    return item.name


@tool
def maybe(item: Item | None = None, ids: list[int] | None = None) -> str:
    return ""


@tool
def shop(items: list[Item]) -> int:
    return len(items)


@tool
def tags(tags: list[str], limit: Annotated[int, Field(ge=1, le=10)] = 5) -> str:
    return ",".join(tags[:limit])


@tool
def setting(flag: bool, level: Literal[1, 2, 3] = 1) -> str:
    return ""


@tool
def lookup(key: int | str) -> str:
    return str(key)


@tool
def shapes(
    code: Annotated[str, Field(min_length=2, pattern=r"^[A-Z]+$")] = "AB",
    pair: tuple[int, str] = (1, "a"),
    labels: frozenset[str] = frozenset(),
    color: Color = Color.RED,
) -> str:
    return ""


@tool
def when(day: datetime.date, even: Even | None = None) -> str:
    return day.isoformat()


TOOLS: dict[str, Tool[..., Any]] = {
    t.name: t for t in (add, convert, order, maybe, shop, tags, setting, lookup, shapes, when)
}

REJECTED: list[tuple[str, Any, list[str]]] = [
    ("add", {"a": 1, "b": "ten"}, ["""add: argument 'b' must be an integer, got "ten\""""]),
    ("convert", {"value": 1, "unit": "K"}, ["""convert: argument 'unit' must be one of "C", "F", got "K\""""]),
    ("add", {"a": 1}, ["add: missing required argument 'b' (an integer)"]),
    ("add", {}, ["add: missing required argument 'a' (an integer)", "add: missing required argument 'b' (an integer)"]),
    ("add", {"a": 1, "b": 2, "c": 3}, ["add: unexpected argument 'c' (allowed: 'a', 'b')"]),
    ("add", {"a": 1.5, "b": 2}, ["add: argument 'a' must be an integer, got 1.5"]),
    ("add", {"a": True, "b": 2}, ["add: argument 'a' must be an integer, got true"]),
    ("add", {"a": None, "b": 2}, ["add: argument 'a' must be an integer, got null"]),
    ("add", {"a": "1.0", "b": 2}, ["""add: argument 'a' must be an integer, got "1.0\""""]),
    ("add", {"a": " 1", "b": 2}, ["""add: argument 'a' must be an integer, got " 1\""""]),
    ("add", {"a": "1e3", "b": 2}, ["""add: argument 'a' must be an integer, got "1e3\""""]),
    (
        "add",
        {"a": "x", "b": [2], "c": 0},
        [
            """add: argument 'a' must be an integer, got "x\"""",
            "add: argument 'b' must be an integer, got [2]",
            "add: unexpected argument 'c' (allowed: 'a', 'b')",
        ],
    ),
    ("add", [1, 2], ["add: the arguments must be an object, got [1,2]"]),
    ("convert", {"value": "warm"}, ["""convert: argument 'value' must be a number, got "warm\""""]),
    ("order", {"item": {"name": "pen", "qty": "many"}}, ["""order: argument 'item.qty' must be an integer, got "many\""""]),
    ("order", {"item": {"name": "pen", "qty": 0}}, ["order: argument 'item.qty' must be at least 1, got 0"]),
    ("order", {"item": {"qty": 2}}, ["order: missing required argument 'item.name' (a string)"]),
    ("order", {"item": {"name": "pen", "colour": "red"}}, ["order: unexpected argument 'item.colour' (allowed: 'name', 'qty')"]),
    ("order", {"item": "pen"}, ["""order: argument 'item' must be an object, got "pen\""""]),
    ("order", {"item": "{not json"}, ["""order: argument 'item' must be an object, got "{not json\""""]),
    ("order", {"item": {"name": "pen"}, "note": 5}, ["order: argument 'note' must be a string or null, got 5"]),
    ("maybe", {"item": {"name": "pen", "qty": -1}}, ["maybe: argument 'item.qty' must be at least 1, got -1"]),
    ("maybe", {"item": {"name": "pen", "size": 2}}, ["maybe: unexpected argument 'item.size' (allowed: 'name', 'qty')"]),
    ("maybe", {"item": 3}, ["maybe: argument 'item' must be an object or null, got 3"]),
    ("maybe", {"ids": [1, "x"]}, ["""maybe: argument 'ids[1]' must be an integer, got "x\""""]),
    ("shop", {"items": [{"name": "a"}, {"name": "b", "qty": "x"}]}, ["""shop: argument 'items[1].qty' must be an integer, got "x\""""]),
    ("shop", {"items": [{"name": "a"}, 7]}, ["shop: argument 'items[1]' must be an object, got 7"]),
    ("tags", {"tags": "a,b"}, ["""tags: argument 'tags' must be an array of strings, got "a,b\""""]),
    ("tags", {"tags": ["a", 2]}, ["tags: argument 'tags[1]' must be a string, got 2"]),
    ("tags", {"tags": [], "limit": 11}, ["tags: argument 'limit' must be at most 10, got 11"]),
    ("tags", {"tags": [], "limit": "0"}, ["tags: argument 'limit' must be at least 1, got 0"]),
    ("setting", {"flag": "yes"}, ["""setting: argument 'flag' must be a boolean (true or false), got "yes\""""]),
    ("setting", {"flag": "True"}, ["""setting: argument 'flag' must be a boolean (true or false), got "True\""""]),
    ("setting", {"flag": 1}, ["setting: argument 'flag' must be a boolean (true or false), got 1"]),
    ("setting", {"flag": True, "level": 4}, ["setting: argument 'level' must be one of 1, 2, 3, got 4"]),
    ("lookup", {"key": [1]}, ["lookup: argument 'key' must be an integer or a string, got [1]"]),
    ("lookup", {"key": None}, ["lookup: argument 'key' must be an integer or a string, got null"]),
    ("shapes", {"code": "A"}, ["""shapes: argument 'code' must be at least 2 characters long, got "A\""""]),
    ("shapes", {"code": "ab"}, ["""shapes: argument 'code' must match the pattern "^[A-Z]+$", got "ab\""""]),
    ("shapes", {"pair": [1]}, ["shapes: argument 'pair' must be an array of at least 2 items, got [1]"]),
    ("shapes", {"pair": [1, 2]}, ["shapes: argument 'pair[1]' must be a string, got 2"]),
    ("shapes", {"labels": ["a", "a"]}, ["""shapes: argument 'labels' must not contain duplicate items, got ["a","a"]"""]),
    ("shapes", {"color": "green"}, ["""shapes: argument 'color' must be one of "red", "blue", got "green\""""]),
    ("when", {"day": "yesterday"}, ["""when: argument 'day' must be a valid date or datetime, input is too short, got "yesterday\""""]),
    ("when", {"day": "2024-02-30"}, ["""when: argument 'day' must be a valid date or datetime, day value is outside expected range, got "2024-02-30\""""]),
    ("when", {"day": "2024-01-01", "even": {"n": 3}}, ["when: argument 'even.n' is invalid: n must be even, got 3"]),
]  # fmt: skip


@pytest.mark.parametrize(("name", "arguments", "problems"), REJECTED)
def test_rejected_with_exact_messages(name: str, arguments: Any, problems: list[str]) -> None:
    with pytest.raises(InvalidArgumentsError) as caught:
        TOOLS[name].validate(arguments)
    assert str(caught.value) == "\n".join(problems)
    assert caught.value.tool == name
    assert [f"{name}: {p}" for p in caught.value.problems] == problems


ACCEPTED: list[tuple[str, dict[str, Any], dict[str, Any], list[str]]] = [
    ("add", {"a": 1, "b": 2}, {"a": 1, "b": 2}, []),
    ("add", {"a": "10", "b": "-2"}, {"a": 10, "b": -2}, ["""argument 'a': "10" -> 10""", """argument 'b': "-2" -> -2"""]),
    ("add", {"a": 10.0, "b": 2}, {"a": 10.0, "b": 2}, []),  # 10.0 is an integer in JSON Schema
    ("convert", {"value": "36.6"}, {"value": 36.6}, ["""argument 'value': "36.6" -> 36.6"""]),
    ("convert", {"value": "-4", "unit": "F"}, {"value": -4, "unit": "F"}, ["""argument 'value': "-4" -> -4"""]),
    ("setting", {"flag": "true", "level": "2"}, {"flag": True, "level": 2}, ["""argument 'flag': "true" -> true""", """argument 'level': "2" -> 2"""]),
    ("setting", {"flag": "false"}, {"flag": False}, ["""argument 'flag': "false" -> false"""]),
    (
        "order",
        {"item": '{"name": "pen", "qty": "3"}'},
        {"item": {"name": "pen", "qty": 3}},
        ["""argument 'item': "{\\"name\\": \\"pen\\", \\"qty\\": \\"3\\"}" -> {"name":"pen","qty":"3"}""", """argument 'item.qty': "3" -> 3"""],
    ),
    ("order", {"item": {"name": "pen"}, "note": None}, {"item": {"name": "pen"}, "note": None}, []),
    ("tags", {"tags": '["a", "b"]'}, {"tags": ["a", "b"]}, ["""argument 'tags': "[\\"a\\", \\"b\\"]" -> ["a","b"]"""]),
    ("shop", {"items": [{"name": "a", "qty": "2"}]}, {"items": [{"name": "a", "qty": 2}]}, ["""argument 'items[0].qty': "2" -> 2"""]),
    ("maybe", {"ids": "[1, 2]"}, {"ids": [1, 2]}, ["""argument 'ids': "[1, 2]" -> [1,2]"""]),
    ("maybe", {"ids": ["7"]}, {"ids": [7]}, ["""argument 'ids[0]': "7" -> 7"""]),
    # A string is allowed here, so nothing is guessed: "10" stays a string.
    ("lookup", {"key": "10"}, {"key": "10"}, []),
]  # fmt: skip


@pytest.mark.parametrize(("name", "arguments", "expected", "coercions"), ACCEPTED)
def test_accepted_and_coercions_recorded(
    name: str, arguments: dict[str, Any], expected: dict[str, Any], coercions: list[str]
) -> None:
    call = TOOLS[name].validate(arguments)
    assert call.tool is TOOLS[name]
    assert call.arguments == expected
    assert list(call.coercions) == coercions


def test_coercion_does_not_touch_the_callers_arguments() -> None:
    arguments = {"items": [{"name": "a", "qty": "2"}]}
    shop.validate(arguments)
    assert arguments == {"items": [{"name": "a", "qty": "2"}]}


def test_values_are_python_objects() -> None:
    call = order.validate({"item": {"name": "pen", "qty": "2"}})
    assert call.values == {"item": Item(name="pen", qty=2)}
    call = shapes.validate({"pair": [3, "x"], "labels": ["b", "a"], "color": "blue"})
    assert call.values == {"pair": (3, "x"), "labels": frozenset({"a", "b"}), "color": Color.BLUE}
    assert when.validate({"day": "2024-05-01"}).values == {"day": datetime.date(2024, 5, 1)}
    assert add.validate({"a": 10.0, "b": 2}).values == {"a": 10, "b": 2}
    values = add.validate({"a": 10.0, "b": 2}).values
    assert values is not None
    assert type(values["a"]) is int


def test_only_given_arguments_are_passed_so_function_defaults_apply() -> None:
    assert convert.validate({"value": 1}).values == {"value": 1.0}


def test_long_values_are_shortened_in_messages() -> None:
    with pytest.raises(InvalidArgumentsError) as caught:
        add.validate({"a": "x" * 500, "b": 1})
    (line,) = str(caught.value).splitlines()
    assert line.startswith("""add: argument 'a' must be an integer, got "xxx""")
    assert line.endswith("…")
    assert len(line) < 120


SCHEMA = {
    "type": "object",
    "properties": {
        "city": {"type": "string", "description": "City name."},
        "days": {"type": "integer", "minimum": 1, "maximum": 7},
        "units": {"enum": ["metric", "imperial"]},
    },
    "required": ["city"],
    "additionalProperties": False,
}


def _forecast(city: str, days: int = 1, units: str = "metric") -> str:
    return f"{city}:{days}:{units}"


def test_schema_tools_validate_with_the_same_rules() -> None:
    forecast = Tool.from_schema(
        name="forecast", description="Forecast.", parameters=SCHEMA, function=_forecast
    )
    call = forecast.validate({"city": "Oslo", "days": "3"})
    assert call.arguments == {"city": "Oslo", "days": 3}
    assert call.values == {"city": "Oslo", "days": 3}
    assert call.coercions == ("""argument 'days': "3" -> 3""",)
    with pytest.raises(InvalidArgumentsError) as caught:
        forecast.validate({"city": "Oslo", "days": 9, "units": "kelvin", "x": 1})
    assert str(caught.value).splitlines() == [
        "forecast: argument 'days' must be at most 7, got 9",
        """forecast: argument 'units' must be one of "metric", "imperial", got "kelvin\"""",
        "forecast: unexpected argument 'x' (allowed: 'city', 'days', 'units')",
    ]


def test_the_validator_is_compiled_once_per_tool(monkeypatch: pytest.MonkeyPatch) -> None:
    import agent.toolkit._validate as module

    made: list[object] = []
    real = module.Draft202012Validator  # type: ignore[attr-defined]

    def counting(schema: Any) -> Any:
        made.append(schema)
        return real(schema)

    monkeypatch.setattr(module, "Draft202012Validator", counting)
    fast: list[object] = []
    real_fast = module.fast_check

    def counting_fast(schema: Any) -> Any:
        fast.append(schema)
        return real_fast(schema)

    monkeypatch.setattr(module, "fast_check", counting_fast)

    @tool
    def mul(a: int, b: int) -> int:
        return a * b

    for _ in range(3):
        mul.validate({"a": "2", "b": 3})
        mul.validate({"a": 2, "b": 3})
    assert made == [mul.parameters]
    assert fast == [mul.parameters]


def test_a_number_too_large_to_check_is_an_invalid_argument_not_a_crash() -> None:
    from agent import Tool
    from agent.errors import InvalidArgumentsError

    step = Tool.from_schema(
        name="step",
        description="Steps.",
        parameters={
            "type": "object",
            "properties": {"x": {"type": "number", "multipleOf": 0.5}},
            "required": ["x"],
        },
        function=lambda x: x,
    )
    with pytest.raises(InvalidArgumentsError, match="too large to check"):
        step.validate({"x": 10**400})

"""The direct route: a flat signature's calls checked and converted in one pass, with exactly the
outcome of the full route (the fast check or python-jsonschema, then pydantic).

`test_fastcheck.py` compares the two routes on drawn instances over every signature of the
table; here, the signatures that get the route, those that do not, and the corners where the
direct route must hand over (1.0 for an integer, big integers for a float, NaN, a subclass).
"""

from __future__ import annotations

import copy
from typing import Annotated, Any, Literal, Optional

import pytest
from pydantic import Field

from agent.errors import InvalidArgumentsError
from agent.toolkit import Tool, tool


@tool
def flat(
    a: int,
    x: float,
    s: str,
    b: bool,
    unit: Literal["C", "F"] = "C",
    note: str | None = None,
    mode: Optional[Literal["fast", "slow"]] = None,  # noqa: UP045 - the old spelling works too
    ratio: float | None = None,
    tags: list[str] | None = None,
    weights: list[float] | None = None,
    grid: list[list[int]] | None = None,
    picks: list[Literal["a", "b"] | None] | None = None,
) -> str:
    return ""


def _full(t: Tool[..., Any]) -> Tool[..., Any]:
    """The same tool without the direct route."""
    slow = copy.copy(t)
    checker = copy.copy(t._checker)
    checker._direct = None
    object.__setattr__(slow, "_checker", checker)
    return slow


FLAT_SLOW = _full(flat)


def _outcome(t: Tool[..., Any], arguments: Any) -> Any:
    try:
        bound = t.validate(arguments)
    except InvalidArgumentsError as exc:
        return ("invalid", str(exc))
    return ("valid", bound.arguments, bound.coercions, dict(bound.values or {}))


def _typed(outcome: Any) -> Any:
    """The outcome with each value's type beside it (3 == 3.0, but a float was asked for)."""
    if outcome[0] != "valid":
        return outcome
    return (*outcome[:3], {k: _with_types(v) for k, v in outcome[3].items()})


def _with_types(value: Any) -> Any:
    if isinstance(value, list):
        return ([_with_types(v) for v in value], list)
    return (value, type(value))


BASE = {"a": 1, "x": 2.5, "s": "q", "b": True}
CASES = [
    BASE,
    {**BASE, "x": 2},
    {**BASE, "x": 2**53},
    {**BASE, "x": -(2**53)},
    {**BASE, "x": 2**53 + 1},
    {**BASE, "x": 2**70},
    {**BASE, "x": 10**400},
    {**BASE, "x": -0.0},
    {**BASE, "x": float("nan")},
    {**BASE, "x": float("inf")},
    {**BASE, "x": True},
    {**BASE, "x": "2.5"},
    {**BASE, "a": 1.0},
    {**BASE, "a": 2**80},
    {**BASE, "a": True},
    {**BASE, "a": "10"},
    {**BASE, "b": 1},
    {**BASE, "b": "true"},
    {**BASE, "s": 5},
    {**BASE, "s": "\ud800"},
    {**BASE, "s": type("Text", (str,), {})("x")},
    {**BASE, "unit": "F"},
    {**BASE, "unit": "K"},
    {**BASE, "unit": None},
    {**BASE, "note": None},
    {**BASE, "note": "n"},
    {**BASE, "mode": "fast"},
    {**BASE, "mode": None},
    {**BASE, "mode": "medium"},
    {**BASE, "ratio": None},
    {**BASE, "ratio": 3},
    {**BASE, "ratio": 0.5},
    {**BASE, "extra": 1},
    {**BASE, "tags": []},
    {**BASE, "tags": ["x", "y"]},
    {**BASE, "tags": ("x", "y")},
    {**BASE, "tags": ["x", 1]},
    {**BASE, "tags": [None]},
    {**BASE, "tags": None},
    {**BASE, "tags": "x"},
    {**BASE, "tags": '["x"]'},
    {**BASE, "weights": [1, 2.5, -0.0, 2**53]},
    {**BASE, "weights": [2**53 + 1]},
    {**BASE, "weights": [float("nan")]},
    {**BASE, "weights": [True]},
    {**BASE, "grid": [[1, 2], [], [3]]},
    {**BASE, "grid": [[1.0]]},
    {**BASE, "grid": [1]},
    {**BASE, "grid": [[[1]]]},
    {**BASE, "picks": ["a", None, "b"]},
    {**BASE, "picks": ["c"]},
    {"a": 1, "x": 2.5, "s": "q"},
    {},
    {**BASE, 1: 2},
    {**BASE, "p0": 1},
]


@pytest.mark.parametrize("arguments", CASES, ids=range(len(CASES)))
def test_the_direct_route_ends_as_the_full_route(arguments: dict[str, Any]) -> None:
    assert flat._checker._direct is not None
    assert _typed(_outcome(flat, arguments)) == _typed(_outcome(FLAT_SLOW, arguments))


def test_the_direct_route_leaves_the_arguments_given_alone() -> None:
    arguments = {**BASE, "x": 2, "weights": [1, 2.5]}
    bound = flat.validate(arguments)
    assert bound.arguments == arguments
    assert bound.arguments is not arguments
    assert bound.values == {**BASE, "x": 2.0, "weights": [1.0, 2.5]}
    assert arguments["x"] == 2
    assert type(arguments["x"]) is int
    assert [type(w) for w in arguments["weights"]] == [int, float]
    assert bound.values["weights"] is not arguments["weights"]  # a new list, as pydantic's


@tool
def no_params() -> str:
    return ""


@tool
def all_defaults(n: int = 3, on: bool = False) -> str:
    return ""


@pytest.mark.parametrize("t", [no_params, all_defaults])
def test_signatures_without_required_parameters_get_the_route(t: Tool[..., Any]) -> None:
    assert t._checker._direct is not None
    assert t.validate({}).values == {}


@tool
def constrained(n: Annotated[int, Field(ge=1)]) -> str:
    return ""


@tool
def field_default(n: int = Field(5, ge=1)) -> str:
    return ""


@tool
def one_choice(mode: Literal["only"]) -> str:
    return ""


@tool
def int_choices(level: Literal[1, 2]) -> str:
    return ""


@tool
def listed(tags: Annotated[list[str], Field(max_length=3)]) -> str:
    return ""


@tool
def bare_list(items: list) -> str:  # type: ignore[type-arg]
    return ""


@tool
def list_of_models(items: list[dict[str, int]]) -> str:
    return ""


@tool
def either(key: int | str) -> str:
    return ""


@pytest.mark.parametrize("t", [constrained, field_default, one_choice, int_choices, listed, either])
def test_other_signatures_take_the_full_route(t: Tool[..., Any]) -> None:
    assert t._checker._direct is None


def test_tools_from_a_schema_take_the_full_route() -> None:
    t = Tool.from_schema(
        name="echo",
        description="Echo.",
        parameters={
            "type": "object",
            "properties": {"text": {"type": "string"}},
            "required": ["text"],
            "additionalProperties": False,
        },
        function=lambda text: text,
    )
    assert t._checker._direct is None

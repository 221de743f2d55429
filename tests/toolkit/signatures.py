"""The signature table: typed functions whose JSON schemas are pinned in `schemas.json`.

This module uses `from __future__ import annotations` on purpose: every annotation is a string
that the toolkit must resolve.
"""

from __future__ import annotations

import dataclasses
import datetime
import enum
from collections.abc import Callable
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field
from typing_extensions import TypedDict  # pydantic needs it on Python < 3.12

from agent import toolkit as tk
from agent.toolkit import RunContext


class Color(enum.Enum):
    """A primary colour."""

    RED = "red"
    GREEN = "green"
    BLUE = "blue"


class Priority(enum.IntEnum):
    LOW = 1
    HIGH = 2


class Item(BaseModel):
    """One line of an order."""

    name: str = Field(description="Product name.")
    qty: int = Field(1, ge=1)


class Address(BaseModel):
    street: str
    city: str
    zip: str | None = None


class Order(BaseModel):
    items: list[Item]
    ship_to: Address
    express: bool = False


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")

    key: str


@dataclasses.dataclass
class Point:
    x: float
    y: float


@dataclasses.dataclass
class Segment:
    start: Point
    end: Point
    label: str = ""


class Node(BaseModel):
    value: int
    children: list[Node] = []


class Movie(TypedDict):
    title: str
    year: int


def no_params() -> str:
    """Say pong."""
    return "pong"


def one_str(text: str) -> str:
    return text


def one_int(n: int) -> int:
    return n


def one_float(x: float) -> float:
    return x


def one_bool(flag: bool) -> bool:
    return flag


def defaults(a: int, b: int = 3, name: str = "x", ratio: float = 0.5, on: bool = True) -> str:
    return ""


def literal_str(value: float, unit: Literal["C", "F"] = "C") -> str:
    return ""


def literal_int(level: Literal[1, 2, 3]) -> str:
    return ""


def enum_param(color: Color) -> str:
    return ""


def enum_default(color: Color = Color.GREEN, priority: Priority = Priority.LOW) -> str:
    return ""


def list_str(tags: list[str]) -> str:
    return ""


def list_optional(ids: list[int] | None = None) -> str:
    return ""


def tuple_fixed(pair: tuple[int, str]) -> str:
    return ""


def tuple_var(values: tuple[float, ...]) -> str:
    return ""


def dict_param(counts: dict[str, int]) -> str:
    return ""


def dict_nested(groups: dict[str, list[int]]) -> str:
    return ""


def set_param(labels: set[str]) -> str:
    return ""


def optional_required(n: int | None) -> str:
    return ""


def optional_default(query: str | None = None) -> str:
    return ""


def union_param(key: int | str) -> str:
    return ""


def literal_optional(mode: Literal["fast", "slow"] | None = None) -> str:
    return ""


def model_param(item: Item) -> str:
    return ""


def nested_model(order: Order) -> str:
    return ""


def model_list(items: list[Item]) -> str:
    return ""


def strict_model(spec: Strict) -> str:
    return ""


def dataclass_param(point: Point) -> str:
    return ""


def nested_dataclass(segment: Segment) -> str:
    return ""


def recursive_model(tree: Node) -> str:
    return ""


def typed_dict(movie: Movie) -> str:
    return ""


def constrained(
    n: Annotated[int, Field(ge=1, le=10)],
    code: Annotated[str, Field(min_length=2, max_length=8, pattern=r"^[A-Z]+$")],
    ratio: Annotated[float, Field(gt=0, lt=1)] = 0.5,
) -> str:
    return ""


def field_default(limit: int = Field(5, ge=1, description="How many results.")) -> str:
    return ""


def annotated_description(
    city: Annotated[str, Field(description="From Field.")], days: int = 1
) -> str:
    """Weather forecast.

    Args:
        city: From the docstring (Field wins).
        days: How many days ahead.
    """
    return ""


def google_doc(city: str, unit: Literal["C", "F"] = "C") -> str:
    """Get the current weather
    for a city (the summary wraps).

    Longer text that is not the summary.

    Args:
        city: The city, e.g. "Paris". The description
            continues on a second line.
        unit: Temperature unit.

    Returns:
        The weather.
    """
    return ""


def numpy_doc(city: str, days: int = 1) -> str:
    """Forecast for a city.

    Parameters
    ----------
    city : str
        The city name.
    days : int, optional
        Number of days.
    """
    return ""


def sphinx_doc(city: str, days: int = 1) -> str:
    """Forecast for a city.

    :param city: The city name.
    :param days: Number of days.
    :returns: The forecast.
    """
    return ""


def with_context(ctx: RunContext[str], query: str) -> str:
    """Search the user's notes.

    Args:
        ctx: Injected, never shown.
        query: What to look for.
    """
    return ""


def optional_context(query: str, ctx: RunContext[Any] | None = None) -> str:
    return ""


def dates(day: datetime.date, at: datetime.datetime | None = None) -> str:
    return ""


def any_param(payload: Any) -> str:
    return ""


def bare_containers(items: list, mapping: dict, row: tuple) -> str:  # type: ignore[type-arg]
    return ""


def kinds(a: int, /, b: str, *, c: bool = False) -> str:
    return ""


def awkward_names(json: str, schema: int = 0, model_config: bool = False) -> str:
    return ""


async def async_tool(url: str, retries: int = 2) -> str:
    """Fetch a URL."""
    return ""


_FUNCTIONS: list[Callable[..., Any]] = [
    no_params,
    one_str,
    one_int,
    one_float,
    one_bool,
    defaults,
    literal_str,
    literal_int,
    enum_param,
    enum_default,
    list_str,
    list_optional,
    tuple_fixed,
    tuple_var,
    dict_param,
    dict_nested,
    set_param,
    optional_required,
    optional_default,
    union_param,
    literal_optional,
    model_param,
    nested_model,
    model_list,
    strict_model,
    dataclass_param,
    nested_dataclass,
    recursive_model,
    typed_dict,
    constrained,
    field_default,
    annotated_description,
    google_doc,
    numpy_doc,
    sphinx_doc,
    with_context,
    optional_context,
    dates,
    any_param,
    bare_containers,
    kinds,
    awkward_names,
    async_tool,
]
SIGNATURES: dict[str, Callable[..., Any]] = {f.__name__: f for f in _FUNCTIONS}


def make(name: str) -> tk.Tool[..., Any]:
    return tk.Tool.from_function(SIGNATURES[name])

"""String annotations (`from __future__ import annotations`, as in this module): every way of
making a tool from a function resolves them the same way, against the function's globals and an
explicit `localns=`, never by looking at the caller's frame."""

from __future__ import annotations

import dataclasses
from typing import Literal

import pytest
from pydantic import BaseModel

from agent import Agent
from agent.errors import ToolDefinitionError
from agent.toolkit import RunContext, Tool, Toolbox, tool


class Point(BaseModel):
    x: float
    y: float


@dataclasses.dataclass
class Size:
    width: int
    height: int = 1


def place(point: Point, size: Size, ctx: RunContext[str] | None = None) -> str:
    """Place a box.

    Args:
        point: Where its corner goes.
        size: How big it is.
    """
    return f"{point.x},{point.y} {size.width}x{size.height}"


def test_every_path_gives_the_same_tool() -> None:
    decorated = tool(place)
    factory = Tool.from_function(place)
    boxed = Toolbox([place]).resolve("place")
    agent = Agent(tools=[place]).tools[0]
    assert decorated == factory == boxed == agent
    assert decorated.parameters == boxed.parameters == agent.parameters
    assert decorated.spec == agent.spec
    assert decorated.calling == agent.calling  # the run context found on every path
    point = decorated.parameters["properties"]["point"]
    assert (point["type"], list(point["properties"])) == ("object", ["x", "y"])
    assert decorated.parameters["required"] == ["point", "size"]
    values = agent.validate({"point": {"x": 1, "y": "2"}, "size": {"width": 3}}).values
    assert values is not None
    assert values["point"] == Point(x=1, y=2)
    assert values["size"] == Size(width=3)


def test_a_type_defined_in_a_function_needs_localns() -> None:
    class Local(BaseModel):
        size: Literal["S", "M"]

    def pick(choice: Local) -> str:
        return choice.size

    with pytest.raises(ToolDefinitionError, match=r"'Local' of parameter 'choice'.*localns="):
        Tool.from_function(pick)
    with pytest.raises(ToolDefinitionError, match="localns="):
        Toolbox([pick])

    made = Tool.from_function(pick, localns=locals())
    assert made.parameters["properties"]["choice"]["properties"]["size"]["enum"] == ["S", "M"]
    assert tool(localns={"Local": Local})(pick) == made
    assert Toolbox([made]).resolve("pick") is made
    assert made.validate({"choice": {"size": "M"}}).values == {"choice": Local(size="M")}


def test_localns_comes_before_the_globals() -> None:
    class Point(BaseModel):  # shadows the module's Point
        label: str

    def mark(point: Point) -> str:
        return point.label

    local = Tool.from_function(mark, localns={"Point": Point})
    assert list(local.parameters["properties"]["point"]["properties"]) == ["label"]
    # Without localns=, the function's globals decide: the module-level Point.
    assert list(tool(mark).parameters["properties"]["point"]["properties"]) == ["x", "y"]

"""Toolbox: lookup by name and by built-in, unknown tools, duplicates."""

from __future__ import annotations

import pytest

from agent.errors import ToolDefinitionError, UnknownToolError
from agent.llama3 import ToolSpec
from agent.toolkit import Tool, Toolbox, tool


@tool
def add(a: int, b: int) -> int:
    """Add two integers."""
    return a + b


@tool(builtin="brave_search")
async def web_search(query: str) -> str:
    """Search the web."""
    return query


def multiply(a: int, b: int) -> int:
    """Multiply two integers."""
    return a * b


def test_resolve_by_name_and_by_built_in() -> None:
    box = Toolbox([add, web_search])
    assert box.resolve("add") is add
    assert box.resolve("brave_search") is web_search  # what the parser calls it
    assert box.resolve("web_search") is web_search
    assert "brave_search" in box
    assert "add" in box
    assert "nope" not in box


def test_unknown_tool_lists_what_the_model_can_call() -> None:
    box = Toolbox([add, web_search])
    with pytest.raises(UnknownToolError) as caught:
        box.resolve("subtract")
    assert str(caught.value) == "unknown tool 'subtract'; the tools are: add, brave_search"
    assert caught.value.available == ("add", "brave_search")
    with pytest.raises(UnknownToolError, match="the tools are: none"):
        Toolbox().resolve("add")


def test_order_names_specs_len_iter() -> None:
    box = Toolbox([web_search, add])
    assert box.names == ("web_search", "add")
    assert box.callable_names == ("brave_search", "add")
    assert box.specs == (web_search.spec, add.spec)
    assert all(isinstance(s, ToolSpec) for s in box.specs)
    assert box.tools == (web_search, add)
    assert len(box) == 2
    assert list(box) == [web_search, add]


def test_plain_functions_are_wrapped() -> None:
    box = Toolbox([multiply, add])
    made = box.resolve("multiply")
    assert isinstance(made, Tool)
    assert made.description == "Multiply two integers."
    assert made.validate({"a": "2", "b": 3}).arguments == {"a": 2, "b": 3}


def test_plain_functions_are_checked_like_decorated_ones() -> None:
    def untyped(x):  # type: ignore[no-untyped-def]
        return x

    with pytest.raises(ToolDefinitionError, match="parameter 'x' has no type annotation"):
        Toolbox([untyped])


def test_duplicates_are_refused() -> None:
    with pytest.raises(ToolDefinitionError) as caught:
        Toolbox([add, Tool.from_function(multiply, name="add")])
    assert str(caught.value) == (
        "two tools are named 'add'; tool names must be unique: rename one with name=..."
    )


def test_two_tools_for_one_built_in_are_refused() -> None:
    @tool(builtin="brave_search")
    def ddg(query: str) -> str:
        return query

    with pytest.raises(ToolDefinitionError) as caught:
        Toolbox([web_search, ddg])
    assert str(caught.value) == (
        "tools 'web_search' and 'ddg' both serve the built-in 'brave_search'; keep one"
    )


def test_each_built_in_reaches_its_own_tool() -> None:
    @tool(builtin="wolfram_alpha")
    def maths(query: str) -> str:
        return query

    box = Toolbox([add, web_search, maths])
    assert box.resolve("wolfram_alpha") is maths
    assert box.resolve("brave_search") is web_search
    with pytest.raises(UnknownToolError, match="the tools are: add, brave_search, wolfram_alpha"):
        box.resolve("code_interpreter")

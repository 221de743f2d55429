"""A built-in's arguments stay as the model named them (issue 12): only the repairs the README
lists may happen, so a wrong name reaches the toolkit and the model is told, end to end."""

from __future__ import annotations

import pytest

from agent import tool
from agent.llama3 import parse_completion
from agent.testing import ScriptRequest
from tests.loop.helpers import running

queries: list[str] = []


@tool(builtin="brave_search")
def web_search(query: str) -> str:
    """Search the web.

    Args:
        query: What to look for.
    """
    queries.append(query)
    return f"results for {query}"


@pytest.mark.parametrize(
    "text",
    [
        '<|python_tag|>brave_search.call(q="llama")',
        '[brave_search(q="llama")]',
        '{"name": "brave_search", "parameters": {"q": "llama"}}',
        '<function=brave_search>{"q": "llama"}</function>',
    ],
)
def test_a_wrong_argument_name_is_kept_in_every_syntax(text: str) -> None:
    (call,) = parse_completion(text, tools=["brave_search"]).tool_calls
    assert (call.name, call.arguments) == ("brave_search", {"q": "llama"})


@pytest.mark.parametrize(
    ("text", "arguments"),
    [
        ('<|python_tag|>brave_search.call("llama")', {"query": "llama"}),
        ("[brave_search('llama')]", {"query": "llama"}),
        ('<|python_tag|>code_interpreter.call("print(1)")', {"code": "print(1)"}),
    ],
)
def test_a_positional_argument_still_gets_its_trained_name(
    text: str, arguments: dict[str, str]
) -> None:
    (call,) = parse_completion(text).tool_calls
    assert call.arguments == arguments


@pytest.mark.anyio
async def test_the_model_is_told_about_a_wrong_argument_name() -> None:
    queries.clear()
    seen: list[str] = []

    def script(request: ScriptRequest) -> str:
        if request.tool_results:
            seen.extend(request.tool_results)
            return "Sorry.<|eot_id|>"
        return '<|python_tag|>brave_search.call(q="llama")<|eom_id|>'

    async with running(script, tools=[web_search]) as (_, agent):
        result = await agent.run("Search for llama.")
    assert queries == []
    assert result.status == "answered"
    (feedback,) = seen
    assert "missing required argument 'query'" in feedback
    assert "unexpected argument 'q'" in feedback

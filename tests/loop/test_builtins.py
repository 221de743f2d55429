"""Llama's built-in call styles reach the tools that declare those built-ins (DESIGN decision 7)."""

from __future__ import annotations

import pytest

from agent import ToolCallValidated, tool
from agent.testing import Script, ScriptRequest

from .helpers import collect, running

pytestmark = pytest.mark.anyio

queries: list[str] = []
snippets: list[str] = []


@tool(builtin="brave_search")
def web_search(query: str) -> str:
    """Search the web.

    Args:
        query: What to look for.
    """
    queries.append(query)
    return f"Llama 3.1 was released in July 2024 ({query})."


@tool(builtin="code_interpreter")
def run_python(code: str) -> str:
    """Run Python code.

    Args:
        code: The program.
    """
    snippets.append(code)
    return "completed\n[stdout]4.0[/stdout]"


def _builtin_then_answer(call_text: str) -> Script:
    def script(request: ScriptRequest) -> str:
        if request.tool_results:
            return f"Result: {request.tool_results[-1]}<|eot_id|>"
        return call_text

    return script


@pytest.mark.parametrize("version", ["0.12.6", "0.30.0"])  # python tag shown / not shown
async def test_brave_search_call_reaches_the_tool_serving_brave_search(version: str) -> None:
    queries.clear()
    text = '<|python_tag|>brave_search.call(query="llama 3.1 release")<|eom_id|>'
    async with running(
        _builtin_then_answer(text),
        emulator={"version": version},
        tools=[web_search, run_python],
    ) as (emu, agent):
        events = await collect(agent.stream("When was Llama 3.1 released?"))
    result = events[-1].result  # type: ignore[union-attr]
    assert result.status == "answered"
    assert queries == ["llama 3.1 release"]
    validated = next(e for e in events if isinstance(e, ToolCallValidated))
    assert validated.name == "brave_search"
    assert validated.tool == "web_search"
    assert result.answer.startswith("Result: Llama 3.1 was released in July 2024")
    # Built-ins are declared the native way, custom JSON definitions are not needed for them.
    first = emu.completions[0].prompt or ""
    assert "Environment: ipython\nTools: brave_search\n" in first
    assert '"name": "web_search"' not in first
    assert result.messages[2].name == "web_search"


async def test_python_tag_code_reaches_the_code_interpreter_tool() -> None:
    snippets.clear()
    code = "import math\nprint(math.sqrt(16))"
    async with running(
        _builtin_then_answer(f"<|python_tag|>{code}<|eom_id|>"),
        tools=[web_search, run_python],
    ) as (emu, agent):
        result = await agent.run("What is the square root of 16? Use Python.")
    assert result.status == "answered"
    assert snippets == [code]
    assert result.messages[2].content == "completed\n[stdout]4.0[/stdout]"
    assert result.answer == "Result: completed\n[stdout]4.0[/stdout]"
    # The call goes back into the next prompt exactly as the model wrote it, eom included.
    second = emu.completions[1].prompt or ""
    assert f"<|python_tag|>{code}<|eom_id|><|start_header_id|>ipython<|end_header_id|>" in second

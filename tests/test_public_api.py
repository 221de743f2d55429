"""The public names users and acceptance checks rely on (DESIGN.md, "Public names")."""

import inspect
import subprocess
import sys

import pytest

import agent

EXPECTED = [
    "Agent",
    "Backend",
    "Event",
    "GenerateOptions",
    "Limits",
    "MalformedCall",
    "Message",
    "OllamaBackend",
    "RunContext",
    "RunFinished",
    "RunResult",
    "RunStarted",
    "RunStatus",
    "RunStream",
    "RunUsage",
    "StepFinished",
    "TextDelta",
    "Tool",
    "ToolCall",
    "ToolCallFinished",
    "ToolCallParsed",
    "ToolCallRejected",
    "ToolCallStarted",
    "ToolCallValidated",
    "ToolResult",
    "Toolbox",
    "Usage",
    "event_to_dict",
    "load_agent",
    "tool",
]


def test_all_is_pinned_and_sorted() -> None:
    assert agent.__all__ == EXPECTED
    assert sorted(agent.__all__) == agent.__all__


def test_every_name_resolves_and_is_documented() -> None:
    for name in agent.__all__:
        value = getattr(agent, name)
        assert value is not None, name
        if inspect.isclass(value) or inspect.isfunction(value):
            assert inspect.getdoc(value), f"{name} has no docstring"
    assert set(agent.__all__) <= set(dir(agent))


def test_design_names_exist_with_their_signatures() -> None:
    from agent.llama3 import parse_completion, render_prompt
    from agent.testing import OllamaEmulator

    assert callable(OllamaEmulator)
    render = inspect.signature(render_prompt)
    for keyword in ("model", "today", "tool_format", "tool_choice"):
        assert render.parameters[keyword].kind is inspect.Parameter.KEYWORD_ONLY
    assert "tools" in inspect.signature(parse_completion).parameters

    params = inspect.signature(agent.Agent).parameters
    assert params["model"].default == "llama3.1"
    for keyword in (
        "tools",
        "system",
        "host",
        "backend",
        "options",
        "limits",
        "tool_format",
        "tool_choice",
        "today",
        "resources",
    ):
        assert params[keyword].kind is inspect.Parameter.KEYWORD_ONLY, keyword
    for method in ("run", "stream", "render"):
        assert "history" in inspect.signature(getattr(agent.Agent, method)).parameters

    @agent.tool
    def add(a: int, b: int) -> int:
        """Add two numbers.

        Args:
            a: The first number.
            b: The second number.
        """
        return a + b

    assert isinstance(add, agent.Tool)
    assert add.name == "add"
    assert add.description.startswith("Add two numbers")
    assert add.parameters["properties"]["a"]["type"] == "integer"


def test_unknown_names_raise_attribute_error() -> None:
    with pytest.raises(AttributeError, match="NoSuchThing"):
        agent.NoSuchThing  # noqa: B018


def test_the_format_layer_imports_without_the_http_client() -> None:
    code = "import sys, agent.llama3; sys.exit('ollama' in sys.modules or 'httpx' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], check=False).returncode == 0

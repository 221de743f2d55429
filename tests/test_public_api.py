"""The public names users and acceptance checks rely on (DESIGN.md, "Public names")."""

import inspect
import subprocess
import sys
from typing import Any

import pytest

import agent
import agent.loop

EXPECTED = [
    "Agent",
    "ApprovalRequested",
    "Backend",
    "CallMalformed",
    "Event",
    "GenerateOptions",
    "Limits",
    "LlamaCppBackend",
    "MCPTools",
    "Message",
    "OllamaBackend",
    "PoolBackend",
    "RunContext",
    "RunFinished",
    "RunResult",
    "RunStarted",
    "RunStatus",
    "RunStream",
    "RunUsage",
    "SGLangBackend",
    "SQLiteStore",
    "StepFinished",
    "Store",
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
    "VLLMBackend",
    "event_to_dict",
    "load_agent",
    "tool",
]


def test_all_is_pinned_and_sorted() -> None:
    assert agent.__all__ == EXPECTED
    assert sorted(set(agent.__all__)) == agent.__all__


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


@pytest.mark.parametrize("module", ["agent.llama3", "agent"])
def test_the_http_stack_loads_only_when_a_backend_is_used(module: str) -> None:
    # The format layer (and `import agent`, which every submodule import runs) stays light:
    # only `agent.OllamaBackend`, looked up on first use, brings in ollama, httpx and aiohttp.
    code = (
        f"import sys, {module}\n"
        "http = ('ollama', 'httpx', 'aiohttp', 'orjson')\n"
        "assert not [m for m in http if m in sys.modules], [m for m in http if m in sys.modules]\n"
        "import agent\n"
        "agent.OllamaBackend\n"
        "assert all(m in sys.modules for m in http)\n"
    )
    run = subprocess.run([sys.executable, "-c", code], check=False, capture_output=True, text=True)
    assert run.returncode == 0, run.stderr


@pytest.mark.parametrize("module", [agent, agent.loop])
def test_the_old_event_name_still_works_and_warns(module: Any) -> None:
    with pytest.warns(DeprecationWarning, match="CallMalformed"):
        old = module.MalformedCall
    assert old is agent.CallMalformed
    assert "MalformedCall" not in module.__all__
    assert agent.CallMalformed(step=1, id="x", text="<", reason="cut").type == "malformed_call"


def test_the_errors_tree_in_the_docstring_is_the_class_tree() -> None:
    import agent.errors as errors

    drawn: dict[str, str] = {}  # class -> its parent, as the docstring draws it
    parents: list[tuple[int, str]] = []
    tree = errors.__doc__.split("```")[1] if errors.__doc__ else ""
    for line in tree.strip().splitlines():
        name = line.lstrip("│├└─ ").split()[0]
        depth = len(line) - len(line.lstrip("│├└─ "))
        while parents and parents[-1][0] >= depth:
            parents.pop()
        drawn[name] = parents[-1][1] if parents else "Exception"
        parents.append((depth, name))
    actual = {
        name: getattr(errors, name).__bases__[0].__name__
        for name in errors.__all__
        if isinstance(getattr(errors, name), type)
    }
    assert drawn == actual


def test_the_errors_module_imports_nothing_of_the_project_at_run_time() -> None:
    # Every layer imports it, so it sits below them all: project imports are for types only.
    import ast

    import agent.errors

    module = ast.parse(inspect.getsource(agent.errors))
    for node in module.body:  # imports under `if TYPE_CHECKING:` are not at this level
        if isinstance(node, ast.Import | ast.ImportFrom):
            names = [node.module or ""] if isinstance(node, ast.ImportFrom) else []
            names += [alias.name for alias in node.names]
            assert not any(n == "agent" or n.startswith("agent.") for n in names), ast.unparse(node)
        elif isinstance(node, ast.If):
            assert ast.unparse(node.test) == "TYPE_CHECKING", ast.unparse(node.test)

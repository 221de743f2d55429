"""`approval:` in YAML: on custom tools and built-in entries; the code tools ask by default when
the sandbox is off."""

from __future__ import annotations

import contextlib
import textwrap
from pathlib import Path

import pytest

from agent import load_agent

TOOLS_PY = '''
def wipe(path: str) -> str:
    """Wipe a disk.

    Args:
        path: The device.
    """
    return "wiped"
'''


def agent_tools(tmp_path: Path, text: str) -> dict[str, bool]:
    (tmp_path / "mytools.py").write_text(TOOLS_PY)
    path = tmp_path / "config.yaml"
    path.write_text(textwrap.dedent(text))
    agent = load_agent(path)
    return {t.name: t.approval for t in agent.tools}


def test_approval_on_a_custom_tool_and_on_a_built_in_entry(tmp_path: Path) -> None:
    text = """\
        model: llama3.1
        tools:
          - import: mytools:wipe
            approval: true
          - math: {approval: true}
          - search
        """
    assert agent_tools(tmp_path, text) == {
        "wipe": True,
        "wolfram_alpha": True,
        "brave_search": False,
    }


@pytest.mark.parametrize(
    ("sandbox", "entry", "expected"),
    [
        ("bwrap", "code", False),
        ("none", "code", True),  # unisolated code asks first
        ("none", "code: {approval: false}", False),  # unless the config says not to
        ("bwrap", "code: {approval: true}", True),
    ],
)
def test_the_code_tool_asks_by_default_only_without_a_sandbox(
    tmp_path: Path, sandbox: str, entry: str, expected: bool
) -> None:
    text = f"model: llama3.1\nsandbox: {sandbox}\ntools:\n  - {entry}\n"
    with pytest.warns(RuntimeWarning) if sandbox == "none" else contextlib.nullcontext():
        tools = agent_tools(tmp_path, text)
    assert tools == {"code_interpreter": expected}

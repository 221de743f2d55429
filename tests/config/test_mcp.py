"""`- mcp:` entries: an MCP server's tools from YAML, checked when loaded, started when opened."""

from __future__ import annotations

import sys
import textwrap
from pathlib import Path

import pytest

from agent.config import load_agent, load_config
from agent.config._build import build_tools
from agent.errors import ConfigError, ToolDefinitionError
from agent.toolkit import MCPTools

pytestmark = pytest.mark.anyio


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "agent.yaml"
    path.write_text(textwrap.dedent(text))
    return path


def test_both_transports_with_every_setting_and_variables(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TOKEN", "s3cret")
    path = write(
        tmp_path,
        """\
        model: llama3.1
        tools:
          - math
          - mcp:
              command: uvx
              args: [mcp-server-git, --repository, .]
              env: {GIT_PAGER: cat}
              cwd: repo
          - mcp:
              url: http://127.0.0.1:8931/mcp
              headers: {Authorization: "Bearer ${TOKEN}"}
              include: [browser_navigate, browser_snapshot]
              prefix: web
              timeout: 5
        """,
    )
    built = build_tools(load_config(path))
    git, web = (t for t in built if isinstance(t, MCPTools))
    assert (git.command, git.args, git.env) == (
        "uvx",
        ("mcp-server-git", "--repository", "."),
        {"GIT_PAGER": "cat"},
    )
    assert git.cwd == str(tmp_path / "repo")
    assert web.url == "http://127.0.0.1:8931/mcp"
    assert web.headers == {"Authorization": "Bearer s3cret"}
    assert (web.include, web.prefix, web.timeout) == (
        ("browser_navigate", "browser_snapshot"),
        "web",
        5,
    )


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        ("mcp: {args: [x]}", "needs a command (stdio) or a url"),
        ("mcp: {command: a, url: 'http://x/mcp'}", "needs a command (stdio) or a url"),
        ("mcp: {url: 'ftp://x'}", "must start with http(s)://"),
        ("mcp: {command: a, include: [x], exclude: [y]}", "include or exclude, not both"),
        ("mcp: {command: a, timeout: 0}", "timeout"),
        ("mcp: {command: a, prefx: web}", "prefx"),
        ("mcp: {command: a, prefix: web.x}", "prefix"),
        ("mcq: {command: a}", "did you mean 'mcp'?"),
    ],
)
def test_mistakes_name_the_line(tmp_path: Path, entry: str, message: str) -> None:
    path = write(tmp_path, f"model: llama3.1\ntools:\n  - math\n  - {entry}\n")
    with pytest.raises(ConfigError) as error:
        build_tools(load_config(path))  # some are found when the entry is built
    assert "agent.yaml:4" in str(error.value)
    assert message in str(error.value)


async def test_a_collision_with_a_server_s_tool_names_both(tmp_path: Path) -> None:
    (tmp_path / "mine.py").write_text(
        "def convert_time(t: str) -> str:\n    '''Mine.'''\n    return t\n"
    )
    path = write(
        tmp_path,
        f"""\
        model: llama3.1
        tools:
          - mine:convert_time
          - mcp:
              command: {sys.executable}
              args: [-m, mcp_server_time]
              name: time
        """,
    )
    agent = load_agent(path)
    with pytest.raises(ToolDefinitionError) as error:
        await agent.open()
    assert "tool 'convert_time' of MCP server 'time'" in str(error.value)
    assert "tool 'convert_time' given to the agent" in str(error.value)

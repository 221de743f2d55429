"""Tools from MCP servers no one here wrote: `mcp-server-time` and `mcp-server-git` over stdio,
and a Streamable HTTP server built with the official SDK, driven by scripted models."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import anyio
import mcp_types
import pytest

from agent import Agent, MCPTools, Tool
from agent.errors import DeveloperError, MCPServerError, ToolDefinitionError
from agent.testing import OllamaEmulator, ScriptRequest, call_tool, call_tools, tool_call_text
from agent.toolkit._mcp import result_text, safe_name, usable_schema
from tests.tools.procs import descendants

pytestmark = pytest.mark.anyio

HERE = Path(__file__).parent
TIME_ARGS = ["-m", "mcp_server_time", "--local-timezone", "UTC"]


def time_tools(**options: Any) -> MCPTools:
    return MCPTools(command=sys.executable, args=TIME_ARGS, **options)


def servers_running(marker: str) -> list[int]:
    return [pid for pid, command in descendants().items() if marker in command]


@contextmanager
def http_server() -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    """The SDK-built Streamable HTTP server, in a process of its own on 127.0.0.1."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    process = subprocess.Popen(
        [sys.executable, str(HERE / "mcp_http_server.py"), str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if time.monotonic() > deadline or process.poll() is not None:
                    raise RuntimeError("the test MCP server did not start") from None
                time.sleep(0.1)
        yield f"http://127.0.0.1:{port}/mcp", process
    finally:
        process.kill()
        process.wait(10)


@pytest.fixture(scope="module")
def http_url() -> Iterator[str]:
    with http_server() as (url, _):
        yield url


# --- stdio: mcp-server-time -----------------------------------------------------------------


async def test_a_stdio_server_s_tools_are_listed_called_and_their_result_is_in_the_next_prompt(
    ollama_emulator: OllamaEmulator, scripted_agent: Any
) -> None:
    script = call_tool("time_get_current_time", {"timezone": "Europe/Paris"}, then="Noted.")
    agent = scripted_agent(script, tools=[time_tools(prefix="time")])
    async with agent:
        assert [t.name for t in agent.tools] == ["time_get_current_time", "time_convert_time"]
        assert "timezone" in agent.tools[0].parameters["properties"]
        result = await agent.run("What time is it in Paris?")
    assert result.status == "answered"
    first, second = ollama_emulator.completions
    assert '"name": "time_get_current_time"' in first.prompt  # the schema, in the native prompt
    shown = json.loads(result.messages[-2].content)
    assert shown["timezone"] == "Europe/Paris"
    assert shown["datetime"] in second.prompt  # the server's answer, read by the model next
    assert not servers_running("mcp_server_time")


async def test_an_error_result_reaches_the_model_as_an_error(scripted_agent: Any) -> None:
    script = call_tool("get_current_time", {"timezone": "Mars/Olympus"}, then="Sorry.")
    agent = scripted_agent(script, tools=[time_tools()])
    async with agent, agent.stream("Time on Mars?") as events:
        finished = [e async for e in events if type(e).__name__ == "ToolCallFinished"]
    (event,) = finished
    assert event.is_error  # type: ignore[attr-defined]
    assert event.result.startswith("get_current_time failed: ")  # type: ignore[attr-defined]
    assert "Mars/Olympus" in event.result  # type: ignore[attr-defined]


async def test_a_server_killed_between_calls_fails_one_call_then_is_started_again(
    scripted_agent: Any,
) -> None:
    def kill_the_server(request: ScriptRequest) -> str:
        step = len(request.tool_results)
        if step == 1:  # after the first result: the server dies under the agent
            for pid in servers_running("mcp_server_time"):
                os.kill(pid, signal.SIGKILL)
        if step < 3:
            zone = ("UTC", "Europe/Paris", "Asia/Tokyo")[step]
            return tool_call_text("get_current_time", {"timezone": zone})
        return "Done.<|eot_id|>"

    async with scripted_agent(kill_the_server, tools=[time_tools()]) as agent:
        before = servers_running("mcp_server_time")
        result = await agent.run("Time, three times.")
        after = servers_running("mcp_server_time")
    assert result.status == "answered"
    ok, failed, again = (m.content for m in result.messages if m.role == "tool")
    assert '"timezone": "UTC"' in ok
    assert failed.startswith("get_current_time failed: the tool's server stopped during the call")
    assert '"timezone": "Asia/Tokyo"' in again
    assert len(before) == len(after) == 1
    assert before != after  # a new process
    assert not servers_running("mcp_server_time")


async def test_one_session_serves_concurrent_runs(scripted_agent: Any) -> None:
    script = call_tool("get_current_time", {"timezone": "UTC"}, then="Done.")
    results: list[str] = []
    async with scripted_agent(script, tools=[time_tools()]) as agent:

        async def one() -> None:
            results.append((await agent.run("Time?")).status)

        async with anyio.create_task_group() as group:
            for _ in range(5):
                group.start_soon(one)
        assert len(servers_running("mcp_server_time")) == 1
    assert results == ["answered"] * 5


async def test_cancelling_leaves_no_server_process(ollama_emulator: OllamaEmulator) -> None:
    async def never_answers(request: ScriptRequest) -> str:
        await anyio.sleep(30)
        return "Too late.<|eot_id|>"

    ollama_emulator.script = never_answers
    with anyio.move_on_after(3) as scope:
        async with Agent(host=ollama_emulator.url, tools=[time_tools()]) as agent:
            assert servers_running("mcp_server_time")
            await agent.run("Time?")
    assert scope.cancelled_caught
    assert not servers_running("mcp_server_time")


async def test_an_agent_never_opened_starts_its_servers_at_its_first_run(
    scripted_agent: Any,
) -> None:
    agent = scripted_agent(call_tool("get_current_time", {"timezone": "UTC"}), tools=[time_tools()])
    assert agent.tools == ()  # not known yet
    result = await agent.run("Time?")
    assert result.status == "answered"
    assert [t.name for t in agent.tools] == ["get_current_time", "convert_time"]
    await agent.aclose()
    assert not servers_running("mcp_server_time")


async def test_include_exclude_and_collisions_naming_both_sources() -> None:
    async with time_tools(include=["convert_time"]) as only:
        assert [t.name for t in await only.tools()] == ["convert_time"]
    async with time_tools(exclude=["convert_time"]) as rest:
        assert [t.name for t in await rest.tools()] == ["get_current_time"]
    with pytest.raises(ToolDefinitionError, match="has no tool 'nope'"):
        await time_tools(include=["nope"]).open()

    def get_current_time() -> str:
        """Mine."""
        return "noon"

    agent = Agent(tools=[get_current_time, time_tools(name="time")])
    with pytest.raises(ToolDefinitionError) as error:
        await agent.open()
    assert "tool 'get_current_time' of MCP server 'time'" in str(error.value)
    assert "tool 'get_current_time' given to the agent" in str(error.value)
    twice = Agent(tools=[time_tools(name="a"), time_tools(name="b", include=["convert_time"])])
    with pytest.raises(ToolDefinitionError, match=r"MCP server 'b'.*MCP server 'a'"):
        await twice.open()
    assert not servers_running("mcp_server_time")  # what was started was stopped


async def test_a_server_that_does_not_start_is_reported_with_its_stderr() -> None:
    crash = "import sys; print('config file missing: /etc/x.toml', file=sys.stderr); sys.exit(3)"
    source = MCPTools(command=sys.executable, args=["-c", crash], name="broken")
    with pytest.raises(MCPServerError) as error:
        await Agent(tools=[source]).open()
    assert "MCP server 'broken' did not start" in str(error.value)
    assert "config file missing: /etc/x.toml" in str(error.value)
    with pytest.raises(MCPServerError, match="FileNotFoundError"):
        await MCPTools(command="/nonexistent/mcp-server").open()


def test_bad_options_are_refused_when_made() -> None:
    with pytest.raises(DeveloperError, match=r"needs a command \(stdio\) or a url"):
        MCPTools()
    with pytest.raises(DeveloperError, match="include or exclude, not both"):
        MCPTools(command="x", include=["a"], exclude=["b"])
    with pytest.raises(DeveloperError, match="prefix"):
        MCPTools(command="x", prefix="web.tools")


# --- stdio: mcp-server-git ------------------------------------------------------------------


async def test_mcp_server_git_reports_a_repository(tmp_path: Path, scripted_agent: Any) -> None:
    def git(*args: str) -> None:
        subprocess.run(["git", *args], cwd=tmp_path, check=True, capture_output=True)

    git("init", "-q")
    git(
        "-c",
        "user.name=T",
        "-c",
        "user.email=t@example.org",
        "commit",
        "-q",
        "--allow-empty",
        "-m",
        "first commit",
    )
    (tmp_path / "notes.txt").write_text("hello\n")
    source = MCPTools(
        command=sys.executable,
        args=["-m", "mcp_server_git", "--repository", str(tmp_path)],
        env={"GIT_PAGER": "cat"},
    )
    script = call_tools(
        [("git_status", {"repo_path": str(tmp_path)}), ("git_log", {"repo_path": str(tmp_path)})]
    )
    async with scripted_agent(script, tools=[source]) as agent:
        assert {"git_status", "git_log", "git_diff"} <= {t.name for t in agent.tools}
        result = await agent.run("What is the state of the repository?")
    status, log = (m.content for m in result.messages if m.role == "tool")
    assert "notes.txt" in status
    assert "first commit" in log
    assert not servers_running("mcp_server_git")


# --- Streamable HTTP: a server built with the SDK -------------------------------------------


async def test_an_http_server_with_headers_a_prefix_and_every_kind_of_result(
    http_url: str, scripted_agent: Any
) -> None:
    web = MCPTools(url=http_url, headers={"Authorization": "Bearer s3cret"}, prefix="web")
    script = call_tools(
        [
            ("web_files_read", {"path": "a.txt"}),
            ("web_chart", {}),
            ("web_whoami", {}),
            ("web_broken", {}),
        ]
    )
    async with scripted_agent(script, tools=[web]) as agent:
        names = [t.name for t in agent.tools]
        result = await agent.run("Go.")
    assert "web_files_read" in names  # `files.read` on the server: no `.` for the model
    read, chart, whoami, broken = (m.content for m in result.messages if m.role == "tool")
    assert read.startswith("contents of a.txt")
    assert re.fullmatch(r"Sales by month\n\[image \(image/png, \d+ bytes\): not shown\]", chart)
    assert whoami.startswith("Bearer s3cret")
    assert broken.startswith("web_broken failed: ")
    assert broken.endswith("the disk is on fire")


async def test_a_per_call_timeout_stops_a_slow_call(http_url: str, scripted_agent: Any) -> None:
    slow = MCPTools(url=http_url, include=["slow", "files.read"], timeout=0.5)
    script = call_tools([("slow", {"seconds": 5}), ("files_read", {"path": "b"})])
    async with scripted_agent(script, tools=[slow]) as agent:
        started = time.monotonic()
        result = await agent.run("Go.")
    timed_out, after = (m.content for m in result.messages if m.role == "tool")
    assert timed_out == "slow timed out after 0.5 s"
    assert after.startswith("contents of b")  # the session survived the cancelled call
    assert time.monotonic() - started < 5


async def test_a_changed_tool_list_is_seen_by_the_next_run(
    http_url: str, scripted_agent: Any
) -> None:
    async with scripted_agent(call_tool("grow"), tools=[MCPTools(url=http_url)]) as agent:
        assert "fresh" not in {t.name for t in agent.tools}
        await agent.run("Grow.")
        for _ in range(50):  # the change notice arrives on its own stream
            await anyio.sleep(0.05)
            await agent.run("Again.")
            if "fresh" in {t.name for t in agent.tools}:
                break
        assert "fresh" in {t.name for t in agent.tools}


async def test_a_killed_http_server_fails_the_call_cleanly(
    ollama_emulator: OllamaEmulator, scripted_agent: Any
) -> None:
    with http_server() as (url, process):
        source = MCPTools(url=url, timeout=20)
        async with scripted_agent(call_tool("slow", {"seconds": 10}), tools=[source]) as agent:

            async def kill_soon() -> None:
                await anyio.sleep(1)
                process.kill()

            async with anyio.create_task_group() as group:
                group.start_soon(kill_soon)
                started = time.monotonic()
                result = await agent.run("Go.")
        (message,) = (m.content for m in result.messages if m.role == "tool")
        assert result.status == "answered"
        assert message.startswith("slow failed: the tool's server stopped during the call")
        assert time.monotonic() - started < 10


# --- names, schemas, results ------------------------------------------------------------------


def test_safe_names() -> None:
    assert safe_name("fs.read") == "fs_read"
    assert safe_name("read-file", "fs") == "fs_read_file"
    assert safe_name("2fa") == "_2fa"
    long = safe_name("x" * 100)
    assert len(long) == 64
    assert long != safe_name("x" * 99)


def test_schemas_as_servers_send_them_become_usable() -> None:
    sent = {
        "properties": {
            "where": {"$ref": "#/definitions/Place"},
            "when": {"anyOf": [{"type": "string"}, {"type": "null"}], "default": None},
        },
        "definitions": {"Place": {"type": "object", "properties": {"city": {"type": "string"}}}},
        "required": ["where"],
    }
    schema = usable_schema(sent)
    assert schema["type"] == "object"
    assert schema["properties"]["where"] == {"$ref": "#/$defs/Place"}

    async def call(**arguments: Any) -> str:
        return json.dumps(arguments)

    made = Tool.from_schema(name="t", description="", parameters=schema, function=call)
    assert made.validate({"where": {"city": "Oslo"}}).arguments == {"where": {"city": "Oslo"}}
    description = made.spec.parameters["properties"]["where"]["description"]
    assert "city?: string" in description
    assert usable_schema(None) == {"type": "object", "properties": {}}
    with pytest.raises(ValueError, match="not an object"):
        usable_schema({"type": "string"})


def test_result_text() -> None:
    structured_only = mcp_types.CallToolResult(content=[], structured_content={"a": 1})
    assert result_text(structured_only) == '{"a":1}'
    both = mcp_types.CallToolResult(
        content=[mcp_types.TextContent(type="text", text="a is 1")], structured_content={"a": 1}
    )
    assert result_text(both) == "a is 1"
    resource = mcp_types.EmbeddedResource(
        type="resource",
        resource=mcp_types.TextResourceContents(
            uri="file:///x.md", text="hello", mime_type="text/markdown"
        ),
    )
    link = mcp_types.ResourceLink(type="resource_link", uri="file:///y", name="y")
    mixed = mcp_types.CallToolResult(content=[resource, link])
    assert result_text(mixed) == (
        "[resource: file:///x.md (text/markdown), 5 characters]\n[resource link: file:///y (y)]"
    )

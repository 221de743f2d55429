"""`llama-agent mcp`, tested with the official SDK's client: the agent as one MCP tool over
stdio and over Streamable HTTP, its events as progress notifications."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import anyio
import pytest
from mcp import Client
from mcp.client.stdio import StdioServerParameters

from agent.testing import OllamaEmulator, call_tool, sequence, tool_call_text

pytestmark = pytest.mark.anyio

COMMAND = str(Path(sys.executable).with_name("llama-agent"))


@pytest.fixture
def config(tmp_path: Path) -> Path:
    (tmp_path / "mine.py").write_text(
        textwrap.dedent(
            '''\
            def add(a: int, b: int) -> int:
                """Add two integers."""
                return a + b
            '''
        )
    )
    path = tmp_path / "helper.yaml"
    path.write_text(
        textwrap.dedent(
            """\
            model: llama3.1
            name: adder
            description: Adds numbers with care.
            tools: [mine:add]
            limits: {max_steps: 3}
            """
        )
    )
    return path


async def test_over_stdio_one_tool_its_answer_and_its_events_as_progress(
    config: Path, ollama_emulator: OllamaEmulator
) -> None:
    ollama_emulator.script = call_tool("add", {"a": 2, "b": 3}, then=lambda r: f"It is {r}.")
    server = StdioServerParameters(
        command=COMMAND, args=["mcp", str(config)], env={"OLLAMA_HOST": ollama_emulator.url}
    )
    progress: list[str] = []

    async def on_progress(done: float, total: float | None, message: str | None) -> None:
        progress.append(message or "")

    async with Client(server) as client:
        (tool,) = (await client.list_tools()).tools
        assert (tool.name, tool.description) == ("adder", "Adds numbers with care.")
        assert tool.input_schema["required"] == ["task"]
        result = await client.call_tool(
            "adder", {"task": "What is 2 + 3?"}, progress_callback=on_progress
        )
    assert not result.is_error
    assert result.content[0].text == "It is 5."  # type: ignore[union-attr]
    types = [json.loads(message)["type"] for message in progress]
    assert types[0] == "run_started"
    assert "tool_call_finished" in types
    assert types[-1] == "run_finished"


async def test_a_run_without_an_answer_is_an_error_result(
    config: Path, ollama_emulator: OllamaEmulator
) -> None:
    ollama_emulator.script = sequence(*(tool_call_text("add", {"a": i, "b": 1}) for i in range(5)))
    server = StdioServerParameters(
        command=COMMAND, args=["mcp", str(config)], env={"OLLAMA_HOST": ollama_emulator.url}
    )
    async with Client(server) as client:
        result = await client.call_tool("adder", {"task": "Loop."})
    assert result.is_error
    assert "step_limit" in result.content[0].text  # type: ignore[union-attr]


async def test_over_streamable_http(config: Path, ollama_emulator: OllamaEmulator) -> None:
    ollama_emulator.script = call_tool("add", {"a": 1, "b": 1}, then=lambda r: f"It is {r}.")
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    process = _start([COMMAND, "mcp", str(config), "--http", str(port)], ollama_emulator.url)
    try:
        for _ in range(300):
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                await anyio.sleep(0.1)
        async with Client(f"http://127.0.0.1:{port}/mcp") as client:
            result = await client.call_tool("adder", {"task": "1 + 1?"})
        assert result.content[0].text == "It is 2."  # type: ignore[union-attr]
    finally:
        process.terminate()
        process.wait(10)


def _start(command: list[str], ollama: str) -> subprocess.Popen[bytes]:
    """`llama-agent mcp --http` in a process of its own (a sync helper: Popen does not block)."""
    return subprocess.Popen(
        command,
        env={**os.environ, "OLLAMA_HOST": ollama},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )

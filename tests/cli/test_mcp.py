"""`llama-agent tools` and `check` with MCP servers: their tools listed, a broken one reported with
the last lines of its stderr."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import anyio
from typer.testing import CliRunner

from agent.cli import app
from agent.testing import OllamaEmulator, ScriptRequest
from tests.tools.procs import with_marker

runner = CliRunner()


def test_tools_lists_an_mcp_server_s_tools(write_config: Callable[[str], Path]) -> None:
    path = write_config(
        f"""\
        model: llama3.1
        tools:
          - math
          - mcp:
              command: {sys.executable}
              args: [-m, mcp_server_time]
              prefix: time
        """
    )
    result = runner.invoke(app, ["tools", str(path), "--json"])
    assert result.exit_code == 0, result.output
    listed = {item["name"]: item for item in json.loads(result.stdout)}
    assert {"time_get_current_time", "time_convert_time", "wolfram_alpha"} <= set(listed)
    assert "timezone" in listed["time_get_current_time"]["parameters"]["properties"]


def test_check_reports_a_server_that_does_not_start_with_its_stderr(
    write_config: Callable[[str], Path],
) -> None:
    crash = "import sys; print('missing API key: set BROWSER_TOKEN', file=sys.stderr); sys.exit(2)"
    path = write_config(
        f"""\
        model: llama3.1
        tools:
          - mcp:
              command: {sys.executable}
              args: [-c, "{crash}"]
              name: browser
        """
    )
    result = runner.invoke(app, ["check", str(path), "--host", "http://127.0.0.1:9"])
    assert result.exit_code != 0
    assert "MCP server 'browser' did not start" in result.output
    assert "missing API key: set BROWSER_TOKEN" in result.output
    listed = runner.invoke(app, ["tools", str(path)])
    assert listed.exit_code != 0
    assert "missing API key: set BROWSER_TOKEN" in listed.output


def test_ctrl_c_during_a_run_leaves_no_server_process(
    write_config: Callable[[str], Path], ollama_emulator: OllamaEmulator
) -> None:
    async def never_answers(request: ScriptRequest) -> str:
        await anyio.sleep(60)
        return "Too late.<|eot_id|>"

    ollama_emulator.script = never_answers
    marker = "America/Cayenne"  # picks this test's server out of the process table
    path = write_config(
        f"""\
        model: llama3.1
        tools:
          - mcp:
              command: {sys.executable}
              args: [-m, mcp_server_time, --local-timezone, {marker}]
        """
    )
    process = subprocess.Popen(
        [sys.executable, "-m", "agent", "run", str(path), "What time is it?"],
        env={**os.environ, "OLLAMA_HOST": ollama_emulator.url},
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 30
        while not (with_marker(marker) and ollama_emulator.requests):
            assert time.monotonic() < deadline, "the agent did not start its MCP server"
            time.sleep(0.1)
        process.send_signal(signal.SIGINT)
        _, stderr = process.communicate(timeout=30)
    finally:
        process.kill()
    assert process.returncode == 130, stderr
    assert not with_marker(marker)

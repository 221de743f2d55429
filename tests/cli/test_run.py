"""`run`, `chat` and `check` against the Ollama emulator (in-process, through typer's runner)."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest
from typer.testing import CliRunner

from agent.cli import ExitCode, app
from agent.testing import OllamaEmulator, answer, call_tool, call_tools, sequence
from tests.cli.conftest import NAMESPACES_BLOCKED, StartEmulator

runner = CliRunner()


def prompts(emu: OllamaEmulator) -> list[str]:
    """The prompts of the generate requests, in order."""
    return [r.prompt or "" for r in emu.requests if r.path == "/api/generate"]


def test_run_streams_the_answer_to_stdout(config: Path, emulator: StartEmulator) -> None:
    emu = emulator(answer("Four."))
    result = runner.invoke(app, ["run", str(config), "What is 2+2?", "--host", emu.url])
    assert result.exit_code == 0, result.output
    assert result.stdout == "Four.\n"
    assert result.stderr == ""  # not a terminal: no spinner, no decoration


def test_run_shows_tool_calls_and_results_compactly(config: Path, emulator: StartEmulator) -> None:
    emu = emulator(call_tool("calculate", {"expression": "2**10"}, then=lambda r: f"It is {r}."))
    result = runner.invoke(app, ["run", str(config), "2**10?", "--host", emu.url])
    assert result.exit_code == 0, result.output
    assert result.stdout == "It is 1024.\n"
    lines = result.stderr.splitlines()
    assert lines[0] == '-> calculate(expression="2**10")'
    assert lines[1].startswith("<- calculate ")
    assert lines[1].endswith("s 1024")


def test_run_json_prints_the_whole_result(config: Path, emulator: StartEmulator) -> None:
    emu = emulator(call_tool("calculate", {"expression": "6*7"}, then="42."))
    result = runner.invoke(app, ["run", str(config), "6*7?", "--host", emu.url, "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["status"] == "answered"
    assert data["answer"] == "42."
    assert data["steps"] == 2
    assert [m["role"] for m in data["messages"]] == [
        "system",
        "user",
        "assistant",
        "tool",
        "assistant",
    ]


def test_run_verbose_shows_the_prompts(config: Path, emulator: StartEmulator) -> None:
    emu = emulator(call_tool("calculate", {"expression": "1+1"}, then="2."))
    result = runner.invoke(app, ["run", str(config), "1+1?", "--host", emu.url, "-v"])
    assert result.exit_code == 0, result.output
    assert result.stdout == "2.\n"
    first, second = prompts(emu)
    # The first prompt in full, then only what the next request added (the completion and the
    # tool result): the prefix is unchanged, so Ollama's cache holds it.
    assert "<|begin_of_text|>" + first in result.stderr
    added = second[len(first) :]
    assert second.startswith(first)
    assert "<|start_header_id|>ipython<|end_header_id|>" in added
    assert added in result.stderr
    assert result.stderr.count("You are terse.") == 1


def test_run_stops_at_the_step_limit_with_its_exit_code(
    write_config: Callable[[str], Path], emulator: StartEmulator
) -> None:
    path = write_config("model: llama3.1\ntools: [math]\nlimits: {max_steps: 2, max_repeats: 0}\n")
    emu = emulator(call_tools([("calculate", {"expression": f"{i}+1"}) for i in range(5)]))
    result = runner.invoke(app, ["run", str(path), "count", "--host", emu.url])
    assert result.exit_code == ExitCode.LIMIT, result.output
    assert "stopped (step_limit) after 2 steps" in result.stderr


def test_dead_ollama_is_one_message_and_its_exit_code(config: Path, dead_url: str) -> None:
    result = runner.invoke(app, ["run", str(config), "hi", "--host", dead_url])
    assert result.exit_code == ExitCode.OLLAMA_UNREACHABLE, result.output
    assert result.stdout == ""
    message = result.stderr.strip()
    assert message.startswith(f"error: cannot reach Ollama at {dead_url}")
    assert len(message.splitlines()) == 1
    assert "Traceback" not in result.output


def test_missing_model_is_its_own_exit_code(config: Path, emulator: StartEmulator) -> None:
    emu = emulator(answer("x"))
    result = runner.invoke(app, ["run", str(config), "hi", "--host", emu.url, "-m", "llama3.1:70b"])
    assert result.exit_code == ExitCode.MODEL_MISSING, result.output
    assert result.stderr.strip().startswith("error: model 'llama3.1:70b' is not available")
    assert "--pull" in result.stderr


def test_pull_fetches_a_missing_model_then_runs(config: Path, emulator: StartEmulator) -> None:
    emu = emulator(answer("Pulled and ready."))
    result = runner.invoke(
        app, ["run", str(config), "hi", "--host", emu.url, "-m", "llama3.1:70b", "--pull"]
    )
    assert result.exit_code == 0, result.output
    assert result.stdout == "Pulled and ready.\n"
    assert "pulled llama3.1:70b" in result.stderr


def test_ollama_host_is_honoured_and_host_overrides_it(
    config: Path, emulator: StartEmulator, dead_url: str
) -> None:
    emu = emulator(answer("From the emulator."))
    via_env = runner.invoke(app, ["run", str(config), "hi"], env={"OLLAMA_HOST": emu.url})
    assert via_env.stdout == "From the emulator.\n"
    overridden = runner.invoke(
        app, ["run", str(config), "hi", "--host", dead_url], env={"OLLAMA_HOST": emu.url}
    )
    assert overridden.exit_code == ExitCode.OLLAMA_UNREACHABLE


def test_chat_keeps_the_conversation(config: Path, emulator: StartEmulator) -> None:
    emu = emulator(sequence("Hello!", "You said your name is Ada."))
    result = runner.invoke(
        app,
        ["chat", str(config), "--host", emu.url],
        input="I am Ada.\nWho am I?\n/exit\n",
    )
    assert result.exit_code == 0, result.output
    assert result.stdout == "Hello!\nYou said your name is Ada.\n"
    second = prompts(emu)[1]
    for part in ("I am Ada.", "Hello!", "Who am I?"):
        assert part in second


def test_chat_reset_starts_over(config: Path, emulator: StartEmulator) -> None:
    emu = emulator(sequence("One.", "Two."))
    result = runner.invoke(
        app, ["chat", str(config), "--host", emu.url], input="first\n/reset\nsecond\n"
    )
    assert result.exit_code == 0, result.output
    assert "first" not in prompts(emu)[1]


def test_check_reports_each_part(config: Path, emulator: StartEmulator) -> None:
    emu = emulator(answer("x"), version="0.12.6")
    result = runner.invoke(app, ["check", str(config), "--host", emu.url])
    assert result.exit_code == 0, result.output
    lines = result.stderr.splitlines()
    assert lines[0] == f"ok   config: {config} is valid (model llama3.1)"
    assert lines[1] == "ok   tools: 2: wolfram_alpha, calculate"
    assert lines[2] == f"ok   ollama: {emu.url} answers, version 0.12.6"
    assert lines[3].startswith("ok   model: llama3.1")
    assert "context" in lines[3]
    assert lines[4].startswith("ok   tool calling")
    assert lines[5] == "ok   sandbox: not needed (no code tool)"
    assert lines[6] == "ok   web search: not needed (no search tool)"


def test_check_with_dead_ollama(config: Path, dead_url: str) -> None:
    result = runner.invoke(app, ["check", str(config), "--host", dead_url])
    assert result.exit_code == ExitCode.OLLAMA_UNREACHABLE
    assert f"FAIL ollama: cannot reach Ollama at {dead_url}" in result.stderr


def test_check_with_missing_model_then_pull(
    write_config: Callable[[str], Path], emulator: StartEmulator
) -> None:
    path = write_config("model: llama3.3:70b\n")
    emu = emulator(answer("x"))
    missing = runner.invoke(app, ["check", str(path), "--host", emu.url])
    assert missing.exit_code == ExitCode.MODEL_MISSING
    assert "FAIL model: model 'llama3.3:70b' is not available" in missing.stderr
    pulled = runner.invoke(app, ["check", str(path), "--host", emu.url, "--pull"])
    assert pulled.exit_code == 0, pulled.output
    assert "pulled llama3.3:70b" in pulled.stderr


def test_check_reports_the_sandbox(
    write_config: Callable[[str], Path], emulator: StartEmulator
) -> None:
    emu = emulator(answer("x"))
    unsafe = write_config("model: llama3.1\ntools: [code]\nsandbox: none\n")
    result = runner.invoke(app, ["check", str(unsafe), "--host", emu.url])
    assert result.exit_code == 0, result.output
    assert "warn sandbox: NO SANDBOX (sandbox: none)" in result.stderr
    assert "warning:" not in result.stderr  # said once, by the report

    isolated = write_config("model: llama3.1\ntools: [code]\n")
    result = runner.invoke(app, ["check", str(isolated), "--host", emu.url])
    if result.exit_code == ExitCode.CONFIG:  # no usable bubblewrap here: the check says why
        assert "FAIL sandbox: bubblewrap" in result.stderr
    else:
        assert result.exit_code == 0, result.output
        assert "ok   sandbox: bubblewrap" in result.stderr


def test_check_builds_the_agent(
    write_config: Callable[[str], Path], emulator: StartEmulator
) -> None:
    # The config is valid YAML, but `run` could not build the agent: neither may `check`.
    emu = emulator(answer("x"))
    path = write_config("model: llama3.1\ntools: [math]\ntool_choice: calculatr\n")
    result = runner.invoke(app, ["check", str(path), "--host", emu.url])
    assert result.exit_code == ExitCode.CONFIG
    lines = result.stderr.splitlines()
    assert lines[1].startswith(
        f"FAIL tools: {path}:3: tool_choice: no tool is named 'calculatr' (did you mean "
        "'calculate'?"
    )
    assert lines[2].startswith("ok   ollama:")  # the rest is still checked
    assert runner.invoke(app, ["run", str(path), "hi", "--host", emu.url]).exit_code == (
        ExitCode.CONFIG
    )


DEFAULT_TOOLS = "model: llama3.1\ntools: [search, code, math]\n"


@pytest.mark.usefixtures("probe_fails")
def test_check_fails_without_a_working_sandbox_and_says_how_to_install_it(
    write_config: Callable[[str], Path], emulator: StartEmulator
) -> None:
    emu = emulator(answer("x"))
    result = runner.invoke(app, ["check", str(write_config(DEFAULT_TOOLS)), "--host", emu.url])
    assert result.exit_code == ExitCode.CONFIG
    lines = result.stderr.splitlines()
    assert lines[1] == "ok   tools: 3: brave_search, code_interpreter, wolfram_alpha"
    [sandbox] = [line for line in lines if "sandbox:" in line]
    assert sandbox.startswith("FAIL sandbox: bubblewrap cannot start a sandbox here: ")
    assert NAMESPACES_BLOCKED in sandbox
    assert "apt-get install bubblewrap" in result.stderr
    assert "warning:" not in result.stderr  # said once, by the report


@pytest.mark.usefixtures("probe_fails")
def test_without_a_working_sandbox_the_agent_still_runs(
    write_config: Callable[[str], Path], emulator: StartEmulator
) -> None:
    path = write_config(DEFAULT_TOOLS)
    tools = runner.invoke(app, ["tools", str(path), "--json"])
    assert tools.exit_code == 0, tools.output
    names = [t["name"] for t in json.loads(tools.stdout)]
    assert names == ["brave_search", "code_interpreter", "wolfram_alpha"]
    assert tools.stderr.count("warning:") == 1
    assert "the Python sandbox is unavailable, so running code will fail" in tools.stderr

    prompt = runner.invoke(app, ["prompt", str(path), "hi"])
    assert prompt.exit_code == 0, prompt.output
    assert "Tools: brave_search, wolfram_alpha" in prompt.stdout

    # Math works; code is refused with how to install bubblewrap, and the model is told.
    script = call_tools(
        [("wolfram_alpha", {"query": "6*7"}), ("code_interpreter", {"code": "print(42)"})],
        then="42.",
    )
    emu = emulator(script)
    run = runner.invoke(app, ["run", str(path), "6*7?", "--host", emu.url])
    assert run.exit_code == 0, run.output
    assert run.stdout == "42.\n"
    last = prompts(emu)[-1]
    assert "42<|eot_id|>" in last  # the calculator's result
    assert "code_interpreter failed: the Python sandbox is unavailable" in last
    assert "apt-get install bubblewrap" in last


@pytest.mark.parametrize(("why", "verdict"), [(None, "ok  "), ("ConnectError: no route", "warn")])
def test_check_reports_web_search(
    write_config: Callable[[str], Path],
    emulator: StartEmulator,
    monkeypatch: pytest.MonkeyPatch,
    why: str | None,
    verdict: str,
) -> None:
    probed: list[str] = []

    async def probe(url: str) -> str | None:
        probed.append(url)
        return why

    monkeypatch.setattr("agent.cli._check.probe_web_search", probe)
    config = write_config("model: llama3.1\ntools: [{search: {backend: bing}}, math]\n")
    emu = emulator(answer("x"))
    result = runner.invoke(app, ["check", str(config), "--host", emu.url])
    assert result.exit_code == 0, result.output  # a warning: the agent still runs
    assert probed == ["https://www.bing.com"]
    line = next(x for x in result.stderr.splitlines() if "web search" in x)
    assert line.startswith(f"{verdict} web search: https://www.bing.com is ")
    if why:
        assert "unreachable (ConnectError: no route)" in line

"""Commands that need no server: schema, tools, prompt, config errors, help and exit codes."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest
from typer.testing import CliRunner

from agent.cli import ExitCode, app
from agent.cli._app import exit_code_for_error, exit_code_for_result
from agent.config import config_json_schema, load_agent
from agent.errors import (
    ConfigError,
    ContextOverflowError,
    ModelNotFoundError,
    OllamaUnreachableError,
    SandboxUnavailableError,
    StreamError,
)
from agent.loop import RunResult

runner = CliRunner()


def test_schema_prints_the_json_schema() -> None:
    result = runner.invoke(app, ["schema"])
    assert result.exit_code == 0
    assert json.loads(result.stdout) == config_json_schema()


def test_help_lists_commands_and_exit_codes() -> None:
    result = runner.invoke(app, ["--help"])
    assert result.exit_code == 0
    for command in ("run", "chat", "prompt", "tools", "check", "schema"):
        assert command in result.stdout
    flat = " ".join(result.stdout.split())
    assert "3 config error" in flat
    assert "4 Ollama unreachable" in flat
    run_help = " ".join(runner.invoke(app, ["run", "--help"]).stdout.split())
    assert "6 limit reached" in run_help
    for option in ("--pull", "--host", "--json", "--verbose", "--model"):
        assert option in run_help


def test_no_arguments_shows_help() -> None:
    result = runner.invoke(app, [])
    assert "Usage" in result.output
    assert result.exit_code == ExitCode.USAGE


def test_config_error_is_one_clear_message(write_config: Callable[[str], Path]) -> None:
    path = write_config("model: llama3.1\ntools:\n  - search\n  - serch\n")
    result = runner.invoke(app, ["tools", str(path)])
    assert result.exit_code == ExitCode.CONFIG
    assert result.stdout == ""
    assert result.stderr.strip() == (
        f"{path}:4: tools[1]: unknown built-in 'serch' (did you mean 'search'?)"
    )
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize("command", ["run", "prompt", "tools", "check", "chat"])
def test_every_command_reports_config_errors_the_same_way(
    command: str, write_config: Callable[[str], Path]
) -> None:
    path = write_config("model: llama3.1\nlimits: {max_steps: 0}\n")
    args = [command, str(path)] + (["a task"] if command in ("run", "prompt") else [])
    result = runner.invoke(app, args)
    assert result.exit_code == ExitCode.CONFIG, result.output
    message = f"{path}:2: limits.max_steps: must be at least 1, got 0"
    if command == "check":  # a line of its report
        message = f"FAIL config: {message}"
    assert result.stderr.strip() == message


def test_missing_config_file(tmp_path: Path) -> None:
    result = runner.invoke(app, ["tools", str(tmp_path / "nope.yaml")])
    assert result.exit_code == ExitCode.CONFIG
    assert result.stderr.strip() == f"{tmp_path / 'nope.yaml'}: no such file"


def test_tools_lists_names_descriptions_and_schemas(config: Path) -> None:
    result = runner.invoke(app, ["tools", str(config), "--json"])
    assert result.exit_code == 0
    listed = json.loads(result.stdout)
    assert [t["name"] for t in listed] == ["wolfram_alpha", "calculate"]
    assert listed[0]["builtin"] == "wolfram_alpha"
    assert listed[1]["parameters"]["type"] == "object"
    assert "expression" in listed[1]["parameters"]["properties"]

    plain = runner.invoke(app, ["tools", str(config)])
    assert plain.exit_code == 0
    assert "calculate" in plain.stdout
    assert "serves Llama's built-in wolfram_alpha" in plain.stdout
    assert '"expression"' in plain.stdout  # the schema, as JSON


def test_prompt_prints_the_exact_native_prompt(config: Path) -> None:
    result = runner.invoke(app, ["prompt", str(config), "What is 2+2?"])
    assert result.exit_code == 0
    expected = load_agent(config).render("What is 2+2?")
    assert result.stdout == expected
    assert expected.startswith("<|begin_of_text|><|start_header_id|>system<|end_header_id|>")
    assert "You are terse." in expected
    assert expected.endswith("<|start_header_id|>assistant<|end_header_id|>\n\n")


def test_prompt_reads_the_task_from_stdin(config: Path) -> None:
    result = runner.invoke(app, ["prompt", str(config), "-"], input="from stdin\n")
    assert result.exit_code == 0
    assert "from stdin" in result.stdout


def test_empty_task_is_a_usage_error(config: Path) -> None:
    result = runner.invoke(app, ["prompt", str(config), "  "])
    assert result.exit_code == ExitCode.USAGE
    assert "the task is empty" in result.output


def test_model_option_overrides_the_config(config: Path) -> None:
    result = runner.invoke(app, ["prompt", str(config), "hi", "--model", "llama3.2"])
    assert result.exit_code == 0
    # Llama 3.2's default tool format is the pythonic list
    assert result.stdout == load_agent(config, model="llama3.2").render("hi")
    assert result.stdout != load_agent(config).render("hi")


def test_version() -> None:
    result = runner.invoke(app, ["--version"])
    assert result.exit_code == 0
    assert result.stdout.startswith("llama-agent 0.")


@pytest.mark.parametrize(
    ("error", "code"),
    [
        (ConfigError("x"), ExitCode.CONFIG),
        (SandboxUnavailableError("x"), ExitCode.CONFIG),
        (OllamaUnreachableError("http://h"), ExitCode.OLLAMA_UNREACHABLE),
        (ModelNotFoundError("m"), ExitCode.MODEL_MISSING),
        (StreamError("x"), ExitCode.ERROR),
        (ContextOverflowError(needed=2, available=1, model="m"), ExitCode.ERROR),
        (KeyboardInterrupt(), ExitCode.INTERRUPTED),
    ],
)
def test_exit_codes_for_errors(error: BaseException, code: ExitCode) -> None:
    assert exit_code_for_error(error) == code


@pytest.mark.parametrize(
    ("status", "code"),
    [
        ("answered", ExitCode.OK),
        ("step_limit", ExitCode.LIMIT),
        ("retry_limit", ExitCode.LIMIT),
        ("repeat_limit", ExitCode.LIMIT),
        ("timeout", ExitCode.LIMIT),
        ("token_budget", ExitCode.LIMIT),
        ("length", ExitCode.LIMIT),
        ("cancelled", ExitCode.INTERRUPTED),
        ("error", ExitCode.ERROR),
    ],
)
def test_exit_codes_for_run_statuses(status: str, code: ExitCode) -> None:
    result = RunResult(answer="", messages=(), status=status)  # type: ignore[arg-type]
    assert exit_code_for_result(result) == code


def test_exit_code_of_a_run_error_follows_its_exception() -> None:
    result = RunResult(answer="", messages=(), status="error", exception=ModelNotFoundError("m"))
    assert exit_code_for_result(result) == ExitCode.MODEL_MISSING


def test_exit_codes_are_distinct() -> None:
    assert len({c.value for c in ExitCode}) == len(ExitCode)

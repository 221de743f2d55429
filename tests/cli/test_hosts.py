"""`--engine` and `--host` given several times (a pool), and `check` per host."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from agent.cli import ExitCode, app
from agent.testing import answer
from tests.cli.conftest import StartEmulator

runner = CliRunner()


def test_run_over_two_hosts_moves_off_a_dead_one(
    config: Path, emulator: StartEmulator, dead_url: str
) -> None:
    emu = emulator(answer("Four."))
    result = runner.invoke(
        app,
        ["run", str(config), "2+2?", "--host", dead_url, "--host", emu.url, "--json"],
    )
    assert result.exit_code == 0, result.output
    payload = json.loads(result.stdout)
    assert payload["answer"] == "Four."
    # The run's first call (the model's description) found the dead host and took it out.
    assert payload["warnings"] == []
    assert len(emu.completions) == 1


def test_runs_over_a_pool_spread_over_its_hosts(config: Path, emulator: StartEmulator) -> None:
    first, second = emulator(answer("A.")), emulator(answer("B."))
    result = runner.invoke(
        app,
        ["chat", str(config), "--host", first.url, "--host", second.url],
        input="one\ntwo\n",
    )
    assert result.exit_code == 0, result.output
    # Each turn is a run of its own: the idle pool takes them in turn.
    assert len(first.completions) == 1
    assert len(second.completions) == 1


def test_engine_ollama_is_explicit_and_an_unknown_engine_is_a_usage_error(
    config: Path, emulator: StartEmulator
) -> None:
    emu = emulator(answer("Hi."))
    result = runner.invoke(app, ["run", str(config), "hi", "--engine", "ollama", "--host", emu.url])
    assert result.exit_code == 0, result.output
    bad = runner.invoke(app, ["run", str(config), "hi", "--engine", "tgi"])
    assert bad.exit_code == ExitCode.USAGE
    assert "--engine: unknown engine 'tgi'; write one of ollama, vllm, sglang, llamacpp" in (
        bad.stderr
    )


def test_a_host_given_twice_is_a_usage_error(config: Path) -> None:
    result = runner.invoke(app, ["check", str(config), "--host", "a:1", "--host", "a:1"])
    assert result.exit_code == ExitCode.USAGE
    assert "a host is given twice" in result.stderr


def test_check_reports_every_host_of_a_pool(
    config: Path, emulator: StartEmulator, dead_url: str
) -> None:
    emu = emulator(answer("x"), version="0.12.6")
    args = ["check", str(config), "--host", emu.url, "--host", dead_url]
    result = runner.invoke(app, args)
    # The pool still works (runs go to the live host): a warning, not a failure.
    assert result.exit_code == 0, result.output
    assert "warn ollama: 1 of 2 hosts answer with the model; runs go to the others" in (
        result.stderr
    )
    assert f"{dead_url}: cannot reach Ollama at {dead_url}" in result.stderr
    table = [line.split() for line in result.stderr.splitlines() if "127.0.0.1" in line]
    assert [emu.url, "yes", "0.12.6", "yes", "131072"] in table
    assert [dead_url, "no", "-", "?", "-"] in table

    as_json = runner.invoke(app, [*args, "--json"])
    assert as_json.exit_code == 0, as_json.output
    assert as_json.stderr == ""
    payload = json.loads(as_json.stdout)
    assert payload["ok"] is True
    live, dead = payload["hosts"]
    assert live == {
        "url": emu.url,
        "reachable": True,
        "version": "0.12.6",
        "model_present": True,
        "context_length": 131072,
        "family": "3.1",
        "error": None,
    }
    assert dead["reachable"] is False
    assert dead["model_present"] is None
    assert "cannot reach Ollama" in dead["error"]
    [model] = [f for f in payload["findings"] if f["what"] == "model"]
    assert model["verdict"] == "ok"
    assert "context 131072 tokens" in model["detail"]


def test_check_fails_when_every_host_is_down(config: Path, dead_url: str) -> None:
    other = dead_url.rsplit(":", 1)[0] + ":9"
    result = runner.invoke(app, ["check", str(config), "--host", dead_url, "--host", other])
    assert result.exit_code == ExitCode.OLLAMA_UNREACHABLE
    assert "FAIL ollama: 0 of 2 hosts answer with the model" in result.stderr


def test_check_json_of_a_single_host(config: Path, emulator: StartEmulator) -> None:
    emu = emulator(answer("x"), version="0.12.6")
    result = runner.invoke(app, ["check", str(config), "--host", emu.url, "--json"])
    assert result.exit_code == 0, result.output
    payload = json.loads(result.stdout)
    assert [h["url"] for h in payload["hosts"]] == [emu.url]
    assert [f["what"] for f in payload["findings"]][:4] == ["config", "tools", "ollama", "model"]


def test_pull_fills_in_the_hosts_of_a_pool_that_lack_the_model(
    config: Path, emulator: StartEmulator
) -> None:
    has, lacks = emulator(answer("Yes.")), emulator(answer("Yes."), models=[])
    args = ["run", str(config), "hi", "--host", has.url, "--host", lacks.url]
    result = runner.invoke(app, [*args, "--pull"])
    assert result.exit_code == 0, result.output
    assert [r.path for r in has.requests].count("/api/pull") == 0
    assert [r.path for r in lacks.requests].count("/api/pull") == 1
    assert lacks.find_model("llama3.1") is not None

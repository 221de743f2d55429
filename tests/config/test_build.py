"""`load_agent`: a config becomes an `Agent` with the options, limits and tools it names."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from agent import Agent, GenerateOptions, Limits, load_agent
from agent.errors import ConfigError, SandboxUnavailableError
from agent.testing import OllamaEmulator, call_tool

ROOT = Path(__file__).resolve().parents[2]


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "config.yaml"
    path.write_text(textwrap.dedent(text))
    return path


FULL = """\
model: llama3.1:70b
system: Be brief.
tools: [math]
tool_format: function_tag
tool_choice: required
ollama:
  host: http://gpu-box:11434
  keep_alive: 30m
  options:
    num_ctx: 8192
    temperature: 0.2
    seed: 7
    top_p: 0.9
    top_k: 40
    num_predict: 512
    stop: ["###"]
limits:
  max_steps: 4
  max_retries: 1
  max_repeats: 2
  run_timeout: 60
  max_tokens: 10000
"""


@pytest.mark.anyio
async def test_every_setting_reaches_the_agent(tmp_path: Path) -> None:
    async with load_agent(write(tmp_path, FULL)) as agent:
        assert isinstance(agent, Agent)
        assert agent.model == "llama3.1:70b"
        assert agent.system == "Be brief."
        assert [t.name for t in agent.tools] == ["wolfram_alpha", "calculate"]
        assert agent.options == GenerateOptions(
            temperature=0.2,
            seed=7,
            top_p=0.9,
            top_k=40,
            num_predict=512,
            stop=("###",),
            keep_alive="30m",
            num_ctx_max=8192,
        )
        assert agent.limits == Limits(
            max_steps=4, max_retries=1, max_repeats=2, run_timeout=60, max_tokens=10000
        )
        assert agent.backend.url == "http://gpu-box:11434"  # type: ignore[attr-defined]
        # function_tag instead of Llama 3.1's default JSON tool format
        prompt = agent.render("hi")
        assert "You have access to the following functions" in prompt
        assert "Here is a list of functions in JSON format" not in prompt


@pytest.mark.anyio
async def test_overrides_win_over_the_file(tmp_path: Path) -> None:
    path = write(tmp_path, FULL)
    overrides = {"model": "llama3.3", "host": "http://127.0.0.1:1", "tools": []}
    async with load_agent(path, **overrides) as agent:
        assert agent.model == "llama3.3"
        assert agent.backend.url == "http://127.0.0.1:1"  # type: ignore[attr-defined]
        assert agent.tools == ()


def test_unset_sections_keep_the_library_defaults(tmp_path: Path) -> None:
    agent = load_agent(write(tmp_path, "model: llama3.1\n"))
    assert agent.options == GenerateOptions()
    assert agent.limits == Limits()
    assert agent.tools == ()


def test_tool_choice_naming_no_tool_points_at_the_line(tmp_path: Path) -> None:
    path = write(tmp_path, "model: llama3.1\ntools: [math]\ntool_choice: web_search\n")
    with pytest.raises(ConfigError) as caught:
        load_agent(path)
    assert str(caught.value).startswith(f"{path}:3: tool_choice: tool_choice 'web_search' is not")


@pytest.mark.anyio
async def test_a_loaded_agent_runs_against_ollama(tmp_path: Path) -> None:
    path = write(tmp_path, "model: llama3.1\ntools: [math]\n")
    script = call_tool("calculate", {"expression": "2**100"}, then=lambda r: f"2**100 = {r}")
    async with OllamaEmulator(script) as emu, load_agent(path, host=emu.url) as agent:
        result = await agent.run("What is 2**100?")
    assert result.status == "answered"
    assert result.answer == f"2**100 = {2**100}"


def test_the_default_config_builds(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("LLAMA_AGENT_MODEL", raising=False)
    try:
        agent = load_agent(ROOT / "config.yaml")
    except SandboxUnavailableError:
        pytest.skip("bubblewrap cannot run here")
    assert agent.model == "llama3.1"
    assert [t.name for t in agent.tools] == [
        "brave_search",
        "web_search",
        "code_interpreter",
        "run_python",
        "wolfram_alpha",
        "calculate",
    ]
    assert agent.limits.run_timeout == 300
    assert agent.options.num_ctx_max == 16384

"""`load_agent`: a config becomes an `Agent` with the options, limits and tools it names."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from agent import Agent, GenerateOptions, Limits, load_agent
from agent.errors import ConfigError
from agent.testing import OllamaEmulator, call_tool

ROOT = Path(__file__).resolve().parents[2]


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "config.yaml"
    path.write_text(textwrap.dedent(text))
    return path


FULL = """\
model: llama3.1:70b
system: Be brief.
tools:
  - math: {names: both}
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
            num_ctx=8192,
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


@pytest.mark.parametrize(
    ("tools", "choice", "expected"),
    [
        (
            "[{math: {names: both}}]",
            "calculatr",
            "no tool is named 'calculatr' (did you mean 'calculate'?); write auto, required, "
            "none or one of the tools (wolfram_alpha, calculate)",
        ),
        (
            "[math]",  # Llama 3.1: only the trained name is offered
            "calculatr",
            "no tool is named 'calculatr' (did you mean 'calculate'? The math tools offer "
            "'calculate' with `names: custom` or `both`; now they offer 'wolfram_alpha'); "
            "write auto, required, none or one of the tools (wolfram_alpha)",
        ),
        (
            "[math]",
            "web_search",
            "no tool is named 'web_search'; write auto, required, none or one of the tools "
            "(wolfram_alpha)",
        ),
        (
            "[]",
            "anything",
            "no tool is named 'anything'; write auto, required, none or one of "
            "the tools (there are none)",
        ),
    ],
)
def test_tool_choice_naming_no_tool_points_at_the_line(
    tmp_path: Path, tools: str, choice: str, expected: str
) -> None:
    path = write(tmp_path, f"model: llama3.1\ntools: {tools}\ntool_choice: {choice}\n")
    with pytest.raises(ConfigError) as caught:
        load_agent(path)
    assert str(caught.value) == f"{path}:3: tool_choice: {expected}"


@pytest.mark.anyio
async def test_tool_choice_may_name_a_tool_or_the_built_in_it_serves(tmp_path: Path) -> None:
    for choice in ("wolfram_alpha", "calculate", "required"):
        text = f"model: llama3.1\ntools: [{{math: {{names: both}}}}]\ntool_choice: {choice}\n"
        async with load_agent(write(tmp_path, text)) as agent:
            assert len(agent.tools) == 2


@pytest.mark.anyio
async def test_a_loaded_agent_runs_against_ollama(tmp_path: Path) -> None:
    path = write(tmp_path, "model: llama3.1\ntools: [math]\n")
    script = call_tool("wolfram_alpha", {"query": "2**100"}, then=lambda r: f"2**100 = {r}")
    async with OllamaEmulator(script) as emu, load_agent(path, host=emu.url) as agent:
        result = await agent.run("What is 2**100?")
    assert result.status == "answered"
    assert result.answer == f"2**100 = {2**100}"


@pytest.mark.filterwarnings("ignore:tools.code:RuntimeWarning")  # without bubblewrap too
def test_the_default_config_builds(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("LLAMA_AGENT_MODEL", raising=False)
    agent = load_agent(ROOT / "config.yaml")
    assert agent.model == "llama3.1"
    # Llama 3.1's trained names only: `Tools: brave_search, wolfram_alpha`, `Environment: ipython`
    assert [t.name for t in agent.tools] == ["brave_search", "code_interpreter", "wolfram_alpha"]
    prompt = agent.render("hi")
    assert prompt.startswith(
        "<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\n"
        "Environment: ipython\nTools: brave_search, wolfram_alpha\n"
    )
    assert "Here is a list of functions in JSON format" not in prompt  # no custom tools
    assert agent.limits.run_timeout == 300
    assert agent.options.num_ctx == 16384


@pytest.mark.anyio
async def test_sessions_and_name_from_yaml(tmp_path: Path) -> None:
    config = write(tmp_path, "model: llama3.1\nname: helper\nsessions: kept/sessions.db\n")
    (tmp_path / "kept").mkdir()
    async with OllamaEmulator() as emu:
        async with load_agent(config, host=emu.url) as agent:
            assert agent.name == "helper"
            await agent.run("remember me", session="s1")
        # The file is where the config said, relative to the config's folder, and reloads.
        async with load_agent(config, host=emu.url) as again:
            stored = await again.store.load("s1")
            assert stored is not None
            assert [m.role for m in stored.messages] == ["user", "assistant"]
    assert (tmp_path / "kept" / "sessions.db").exists()

"""The prompt format follows what the server says the model is, not only its name."""

from __future__ import annotations

import dataclasses

import pytest

from agent import Agent
from agent.testing import EmulatedModel, sequence

from .helpers import TODAY, add, running

pytestmark = pytest.mark.anyio

PYTHON_LIST = "[func_name1(params_name1=params_value1"


async def test_a_custom_name_built_on_llama_3_2_gets_the_python_list_format() -> None:
    models = [EmulatedModel.llama("myassistant", family="3.2")]
    script = sequence("[add(a=1, b=2)]", "3.<|eot_id|>")
    async with running(script, emulator={"models": models}, model="myassistant", tools=[add]) as (
        emu,
        agent,
    ):
        result = await agent.run("1 + 2?")
        by_name = agent.render("1 + 2?")
    sent = "<|begin_of_text|>" + (emu.completions[0].prompt or "")
    # The server said 3.2: the request used 3.2's prompt, the one `llama3.2` gets.
    as_llama32 = Agent("llama3.2", tools=[add], today=TODAY).render("1 + 2?")
    assert sent == as_llama32
    assert PYTHON_LIST in sent
    # Without a server, `render` can only go by the name, which says nothing: 3.1's format.
    assert by_name != sent
    assert PYTHON_LIST not in by_name
    assert result.status == "answered"
    assert result.answer == "3."
    assert result.family == "3.2"
    assert result.warnings == ()
    # Given a run's result, `render` takes the family from it: after step 1, the conversation
    # renders exactly as the second request (bare messages carry no family: 3.1 again).
    second = "<|begin_of_text|>" + (emu.completions[1].prompt or "")
    after_step_1 = dataclasses.replace(result, messages=result.messages[:3])
    assert agent.render(None, history=after_step_1) == second
    assert agent.render(None, history=after_step_1.messages) != second


async def test_a_model_the_server_does_not_know_as_llama_is_rendered_by_its_name() -> None:
    models = [EmulatedModel(name="mystery:latest", family=None)]
    async with running(sequence("Hi.<|eot_id|>"), emulator={"models": models}, model="mystery") as (
        emu,
        agent,
    ):
        result = await agent.run("Hello?")
        expected = agent.render("Hello?")
    assert "<|begin_of_text|>" + (emu.completions[0].prompt or "") == expected
    assert result.family is None
    assert result.status == "answered"
    assert any("does not identify model 'mystery'" in w for w in result.warnings)


async def test_tools_are_offered_even_when_ollama_says_the_model_has_none() -> None:
    # Ollama derives "tools" from its own template, which raw mode never uses.
    models = [EmulatedModel.llama("llama3.1", capabilities=("completion",))]
    script = sequence('{"name": "add", "parameters": {"a": 1, "b": 2}}', "3.<|eot_id|>")
    async with running(script, emulator={"models": models}, tools=[add]) as (emu, agent):
        result = await agent.run("1 + 2?")
    assert result.status == "answered"
    assert [m.content for m in result.messages if m.role == "tool"] == ["3"]
    assert '"name": "add"' in (emu.completions[0].prompt or "")
    assert any("does not support tools" in w for w in result.warnings)


async def test_no_warning_about_tools_when_the_agent_has_none() -> None:
    models = [EmulatedModel.llama("llama3.1", capabilities=("completion",))]
    async with running(sequence("Hi.<|eot_id|>"), emulator={"models": models}) as (_, agent):
        result = await agent.run("Hello?")
    assert result.warnings == ()
    assert result.family == "3.1"

"""How to test your own agent with `OllamaEmulator`: a template to copy.

Copy this file and `conftest.py` beside your tests, point the imports at your agent, and keep the
tests that fit. Run them with `pytest examples/testing` (they take about a second).

What to test, in the order below:
1. the model's calls reach your tools with the right arguments, and the results come back;
2. the prompt says what you mean (system prompt, tool descriptions), byte for byte;
3. mistakes: a tool error or an invalid call goes back to the model, and it can recover;
4. your application's fallbacks: a model that loops, Ollama down, a model not pulled.

A script says what the model writes. Ready-made ones: `answer(text)`, `call_tool(name, args,
then=...)`, `call_tools([...])`, `sequence(reply, reply, ...)` (replies in Llama's native
format; `tool_call_text` writes a call). For anything else write a function of the
`ScriptRequest`: it sees the prompt the model would see, and what the tools returned.
"""

from __future__ import annotations

import pytest
from my_agent import FALLBACK, SYSTEM, Forecasts, build_agent, plan_day

from agent import Agent, RunResult, ToolCallRejected
from agent.errors import ModelNotFoundError, OllamaUnreachableError
from agent.testing import (
    OllamaEmulator,
    ScriptRequest,
    answer,
    call_tool,
    sequence,
    tool_call_text,
)

pytestmark = pytest.mark.anyio


def tool_calls(result: RunResult) -> list[tuple[str, dict[str, object]]]:
    """Every call the model made in a run, as (tool name, arguments), in order."""
    return [(c.name, dict(c.arguments)) for m in result.messages for c in m.tool_calls]


# --- 1. calls and results ------------------------------------------------------------------


async def test_the_forecast_is_checked_and_used(
    emu: OllamaEmulator, agent: Agent, forecasts: Forecasts
) -> None:
    emu.script = call_tool(
        "get_forecast", {"city": "Paris"}, then=lambda forecast: f"It will be {forecast}: go out!"
    )
    result = await agent.run("Should I picnic in Paris today?", deps=forecasts)

    assert result.status == "answered"
    assert tool_calls(result) == [("get_forecast", {"city": "Paris"})]
    assert result.answer == "It will be sunny, 24 °C: go out!"
    assert result.steps == 2  # the call, then the answer


async def test_a_script_function_sees_what_the_model_would_see(
    emu: OllamaEmulator, agent: Agent, forecasts: Forecasts
) -> None:
    # A function gives full control: here, one call per city the user names, then a summary.
    def model(request: ScriptRequest) -> str:
        cities = [c for c in ("Paris", "Oslo") if c in request.last_user]
        done = len(request.tool_results)
        if done < len(cities):
            return tool_call_text("get_forecast", {"city": cities[done]})
        return " / ".join(request.tool_results) + "<|eot_id|>"

    emu.script = model
    answer_text = await plan_day(agent, "Paris or Oslo for a walk?", forecasts)

    assert answer_text == "sunny, 24 °C / rain all day, 9 °C"
    assert len(emu.completions) == 3


# --- 2. the prompt -------------------------------------------------------------------------


async def test_the_prompt_has_the_system_prompt_and_the_tool(
    emu: OllamaEmulator, agent: Agent, forecasts: Forecasts
) -> None:
    emu.script = answer("Take an umbrella.")
    await agent.run("Plans for Oslo?", deps=forecasts)

    [request] = emu.completions
    prompt = request.prompt or ""
    assert SYSTEM in prompt
    assert '"name": "get_forecast"' in prompt
    assert "Get today's weather forecast for a city." in prompt
    assert prompt.endswith(
        "Plans for Oslo?<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n"
    )
    # `agent.render()` builds the same prompt offline (plus the BOS token Ollama adds itself):
    # pin it in a golden file to see every change to what your model is told.
    assert agent.render("Plans for Oslo?") == "<|begin_of_text|>" + prompt


async def test_the_tool_result_is_fed_back_to_the_model(
    emu: OllamaEmulator, agent: Agent, forecasts: Forecasts
) -> None:
    emu.script = call_tool("get_forecast", {"city": "Oslo"}, then="Stay in.")
    await agent.run("Walk in Oslo?", deps=forecasts)

    second = emu.completions[1].prompt or ""
    assert "<|start_header_id|>ipython<|end_header_id|>\n\nrain all day, 9 °C<|eot_id|>" in second
    # Each request continues the previous one exactly, so Ollama reuses its prompt cache.
    first = emu.completions[0]
    assert second.startswith((first.prompt or "") + first.completion)


# --- 3. mistakes ---------------------------------------------------------------------------


async def test_a_tool_error_goes_back_and_the_model_recovers(
    emu: OllamaEmulator, agent: Agent, forecasts: Forecasts
) -> None:
    emu.script = sequence(
        tool_call_text("get_forecast", {"city": "Montmartre"}),
        tool_call_text("get_forecast", {"city": "Paris"}),
        "Sunny in Paris.<|eot_id|>",
    )
    result = await agent.run("Weather in Montmartre?", deps=forecasts)

    assert result.answer == "Sunny in Paris."
    first_result, second_result = [m.content for m in result.messages if m.role == "tool"]
    assert "no forecast for 'Montmartre'; try the nearest large city" in first_result
    assert second_result == "sunny, 24 °C"


async def test_an_invalid_call_is_rejected_with_a_reason_the_model_can_use(
    emu: OllamaEmulator, agent: Agent, forecasts: Forecasts
) -> None:
    emu.script = sequence(
        tool_call_text("get_forecast", {"town": "Paris"}),  # wrong argument name
        tool_call_text("get_forecast", {"city": "Paris"}),
        "Sunny.<|eot_id|>",
    )
    async with agent.stream("Paris?", deps=forecasts) as events:
        rejected = [e async for e in events if isinstance(e, ToolCallRejected)]

    [rejection] = rejected
    assert rejection.reason == "invalid_arguments"
    assert "city" in rejection.error
    assert rejection.error in (emu.completions[1].prompt or "")
    assert events.result.answer == "Sunny."


# --- 4. your application's fallbacks -------------------------------------------------------


async def test_a_model_that_keeps_calling_gets_the_fallback(
    emu: OllamaEmulator, agent: Agent, forecasts: Forecasts
) -> None:
    emu.script = lambda request: tool_call_text("get_forecast", {"city": "Paris"})  # never stops

    assert await plan_day(agent, "Paris?", forecasts) == FALLBACK
    assert len(emu.completions) <= 4  # the agent's max_steps


async def test_ollama_down_is_raised_to_the_caller(
    emu: OllamaEmulator, agent: Agent, forecasts: Forecasts
) -> None:
    await emu.refuse_connections()
    with pytest.raises(OllamaUnreachableError):
        await plan_day(agent, "Paris?", forecasts)


async def test_a_model_that_is_not_pulled_says_how_to_get_it(forecasts: Forecasts) -> None:
    async with (
        OllamaEmulator(answer("Hi."), models=["llama3.2:3b"]) as emu,
        build_agent(host=emu.url) as agent,
    ):
        with pytest.raises(ModelNotFoundError, match=r"ollama pull llama3\.1"):
            await plan_day(agent, "Paris?", forecasts)

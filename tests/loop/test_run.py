"""Whole runs through the emulator: tool chains, events, streaming, multi-turn, `render`."""

from __future__ import annotations

import json
from typing import Any

import anyio
import pytest

from agent import (
    Message,
    RunContext,
    RunFinished,
    RunStarted,
    StepFinished,
    TextDelta,
    ToolCallFinished,
    ToolCallValidated,
    event_to_dict,
    tool,
)
from agent.backends import GenerateOptions
from agent.testing import ScriptRequest, answer, sequence

from .helpers import add, by_results, call, collect, running, types

pytestmark = pytest.mark.anyio


def _chain(results: list[str]) -> str:
    # Adds 1, 2, 3, 4, 5 to a running total, feeding each result into the next call.
    if len(results) < 5:
        total = int(results[-1]) if results else 0
        return call("add", a=total, b=len(results) + 1)
    return f"The total is {results[-1]}.<|eot_id|>"


async def test_a_five_step_tool_chain_feeds_each_result_into_the_next_call() -> None:
    async with running(by_results(_chain), tools=[add], system="Add things up.") as (emu, agent):
        result = await agent.run("Add 1 to 5 one at a time.")

    assert result.status == "answered"
    assert result.ok
    assert result.answer == "The total is 15."
    assert result.steps == 6
    assert len(emu.completions) == 6
    roles = [m.role for m in result.messages]
    assert roles == ["system", "user", *["assistant", "tool"] * 5, "assistant"]
    assert [m.content for m in result.messages if m.role == "tool"] == ["1", "3", "6", "10", "15"]
    calls = [m.tool_calls[0] for m in result.messages if m.role == "assistant" and m.tool_calls]
    assert [dict(c.arguments) for c in calls] == [
        {"a": 0, "b": 1},
        {"a": 1, "b": 2},
        {"a": 3, "b": 3},
        {"a": 6, "b": 4},
        {"a": 10, "b": 5},
    ]
    tool_messages = [m for m in result.messages if m.role == "tool"]
    assert [m.tool_call_id for m in tool_messages] == [c.id for c in calls]
    assert all(m.name == "add" for m in tool_messages)
    assert result.messages[0].trusted
    # Usage: one entry per request, and totals that add up.
    assert len(result.usage.steps) == 6
    assert result.usage.total.eval_count == sum(r.eval_count or 0 for r in emu.completions)
    assert result.usage.total.prompt_eval_count == sum(
        r.prompt_eval_count or 0 for r in emu.completions
    )
    assert all(u.total_duration > 0 for u in result.usage.steps)


async def test_events_come_in_order_and_serialize() -> None:
    script = sequence(call("add", a=2, b="40"), "It is 42.<|eot_id|>")
    async with running(script, tools=[add]) as (_, agent):
        events = await collect(agent.stream("What is 2 + 40?"))

    kinds = types(events)
    assert kinds[0] == "run_started"
    assert kinds[-1] == "run_finished"
    assert kinds[1:6] == [
        "tool_call_parsed",
        "tool_call_validated",
        "tool_call_started",
        "tool_call_finished",
        "step_finished",
    ]
    assert kinds[6:-1] == ["text_delta"] * (len(kinds) - 8) + ["step_finished"]
    validated = next(e for e in events if isinstance(e, ToolCallValidated))
    assert validated.arguments == {"a": 2, "b": 40}
    assert len(validated.coercions) == 1
    assert "'b'" in validated.coercions[0]
    finished = next(e for e in events if isinstance(e, ToolCallFinished))
    assert finished.result == "42"
    assert not finished.is_error
    assert finished.duration >= 0
    text = "".join(e.text for e in events if isinstance(e, TextDelta))
    assert text == "It is 42."
    last = events[-1]
    assert isinstance(last, RunFinished)
    assert last.result.answer == "It is 42."
    steps = [e for e in events if isinstance(e, StepFinished)]
    assert [s.usage for s in steps] == list(last.result.usage.steps)
    for event in events:
        json.dumps(event_to_dict(event))


async def test_a_quiet_run_yields_only_its_start_its_steps_and_its_end() -> None:
    # What `Agent.run` reads (and a session under it commits on): nothing per chunk or call.
    script = sequence(call("add", a=2, b="40"), "It is 42.<|eot_id|>")
    async with running(script, tools=[add]) as (_, agent):
        stream = agent._stream("What is 2 + 40?", history=None, deps=None, session=None, quiet=True)
        events = await collect(stream)
    assert types(events) == ["run_started", "step_finished", "step_finished", "run_finished"]
    result = events[-1].result  # type: ignore[union-attr]
    assert (result.status, result.answer, result.steps) == ("answered", "It is 42.", 2)
    assert result.messages[2].content == "42"


async def test_a_streamed_answer_reaches_the_caller_while_it_is_generated() -> None:
    words = " ".join(f"word{i}" for i in range(40))
    async with running(answer(words), emulator={"token_rate": 200.0}) as (emu, agent):
        seen_before_end = []
        async with agent.stream("Talk.") as events:
            async for event in events:
                if isinstance(event, TextDelta):
                    # The emulator has not finished the response when the first words arrive.
                    seen_before_end.append(not emu.completions[-1].finished)
        assert events.result.answer == words
    assert len(seen_before_end) > 10
    assert seen_before_end[0]


async def test_a_conversation_continues_from_an_earlier_result() -> None:
    def script(request: ScriptRequest) -> str:
        if request.tool_results:
            return f"That makes {request.tool_results[-1]}.<|eot_id|>"
        if "double" in request.last_user:
            return call("add", a=5, b=5)
        return call("add", a=2, b=3)

    async with running(script, tools=[add], system="Be brief.") as (emu, agent):
        first = await agent.run("Add 2 and 3.")
        second = await agent.run("Now double it.", history=first)

    assert first.answer == "That makes 5."
    assert second.answer == "That makes 10."
    assert second.messages[: len(first.messages)] == first.messages
    assert second.new_from == len(first.messages)
    assert second.new_messages[0].content == "Now double it."
    assert [m.role for m in second.messages].count("system") == 1
    # The next conversation turn still extends the previous prompt byte for byte.
    before, after = emu.completions[1], emu.completions[2]
    assert after.prompt is not None
    assert before.prompt is not None
    assert after.prompt.startswith(before.prompt + before.completion)
    assert after.cached_tokens >= before.prompt_tokens


async def test_run_started_counts_the_history_given_not_the_system_prompt() -> None:
    script = sequence("Hi.<|eot_id|>", "Bye.<|eot_id|>")
    async with running(script, system="Be brief.") as (_, agent):
        fresh = await collect(agent.stream("Hello?"))
        first = fresh[-1].result  # type: ignore[union-attr]
        continued = await collect(agent.stream("Goodbye?", history=first))
    started = fresh[0]
    assert isinstance(started, RunStarted)
    assert started.history == 0
    assert first.new_from == 1  # the task's index does count the system prompt
    again = continued[0]
    assert isinstance(again, RunStarted)
    assert again.history == len(first.messages) == 3
    assert again.task == "Goodbye?"


async def test_render_is_the_first_request_prompt() -> None:
    async with running(answer("Hi."), tools=[add], system="Be brief.") as (emu, agent):
        prompt = agent.render("Hello?")
        await agent.run("Hello?")
    assert prompt.startswith("<|begin_of_text|><|start_header_id|>system<|end_header_id|>")
    assert "Today Date: 21 September 2024\nBe brief." in prompt
    assert prompt == "<|begin_of_text|>" + (emu.completions[0].prompt or "")


async def test_render_of_a_run_in_progress_is_its_next_request_prompt() -> None:
    script = sequence(call("add", a=1, b=2), "Three.<|eot_id|>")
    async with running(script, tools=[add], system="Be brief.") as (emu, agent):
        upcoming = []
        async with agent.stream("1 + 2?") as events:
            async for event in events:
                if isinstance(event, StepFinished) and event.step == 1:
                    upcoming.append(agent.render(None, history=events.result))
    assert upcoming == ["<|begin_of_text|>" + (emu.completions[1].prompt or "")]


async def test_history_can_be_plain_messages_read_back_from_json() -> None:
    script = sequence("Hi.<|eot_id|>", "Bye.<|eot_id|>")
    async with running(script, system="Be brief.") as (emu, agent):
        first = await agent.run("Hello?")
        saved = json.loads(json.dumps(first.to_dict()))["messages"]
        history = [Message.from_dict(m) for m in saved]
        second = await agent.run("Goodbye?", history=history)
    assert second.answer == "Bye."
    assert second.messages[: len(first.messages)] == first.messages
    before, after = emu.completions
    assert (after.prompt or "").startswith((before.prompt or "") + before.completion)


async def test_an_answer_cut_by_the_length_limit_is_reported_as_cut() -> None:
    long = " ".join(["blah"] * 50)
    options = GenerateOptions(num_predict=8)
    async with running(answer(long), options=options) as (emu, agent):
        result = await agent.run("Ramble.")
    assert result.status == "length"
    assert not result.ok
    assert result.done_reason == "length"
    assert result.answer
    assert long.startswith(result.answer)
    assert result.answer != long
    assert emu.completions[0].options["num_predict"] == 8


async def test_a_call_cut_by_the_length_limit_ends_the_run_as_cut() -> None:
    cut_call = call("add", a=1, b=2)
    async with running(sequence(cut_call), tools=[add], options=GenerateOptions(num_predict=6)) as (
        _,
        agent,
    ):
        result = await agent.run("Add.")
    assert result.status == "length"
    assert result.steps == 1
    assert result.messages[-1].role == "assistant"


async def test_tools_get_the_run_context_and_deps() -> None:
    seen: list[Any] = []

    @tool
    async def whoami(context: RunContext[dict[str, str]]) -> str:
        """Say who the user is."""
        seen.append(context)
        return context.deps["user"]

    script = sequence(call("whoami"), "Hello.<|eot_id|>")
    async with running(script, tools=[whoami]) as (_, agent):
        result = await agent.run("Who am I?", deps={"user": "ada"})
    assert result.messages[-2].content == "ada"
    assert seen[0].run_id == result.run_id
    assert seen[0].step == 1


async def test_runs_share_one_agent_without_sharing_state() -> None:
    def script(request: ScriptRequest) -> str:
        if request.tool_results:
            return f"{request.tool_results[-1]}<|eot_id|>"
        n = int(request.last_user.split()[-1])
        return call("add", a=n, b=n)

    async with running(script, tools=[add]) as (_, agent):
        results: dict[int, str] = {}

        async def one(n: int) -> None:
            results[n] = (await agent.run(f"Double {n}")).answer

        async with anyio.create_task_group() as group:
            for n in range(10):
                group.start_soon(one, n)
    assert results == {n: str(2 * n) for n in range(10)}

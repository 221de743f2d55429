"""When the model gets it wrong, and when a limit ends the run: each ends with a clear status,
and what happened so far is kept."""

from __future__ import annotations

from typing import Any

import anyio
import pytest

from agent import CallMalformed, Limits, TextDelta, ToolCallRejected, ToolCallValidated, tool
from agent.backends import GenerateOptions
from agent.llama3 import Message
from agent.testing import Script, ScriptRequest, sequence

from .helpers import add, by_results, call, collect, divide, running

pytestmark = pytest.mark.anyio


def _fix_after_error(results: list[str]) -> str:
    if not results:
        return call("add", a="ten", b=2)
    if results[-1].startswith("Error"):
        return call("add", a=10, b=2)
    return f"It is {results[-1]}.<|eot_id|>"


async def test_invalid_arguments_go_back_to_the_model_which_corrects_them() -> None:
    async with running(by_results(_fix_after_error), tools=[add]) as (emu, agent):
        events = await collect(agent.stream("What is ten plus two?"))
    result = events[-1].result  # type: ignore[union-attr]
    assert result.status == "answered"
    assert result.answer == "It is 12."
    error = result.messages[2].content
    assert result.messages[2].role == "tool"
    assert error.startswith("Error: invalid arguments for add")
    assert "'a'" in error
    assert "ten" in error
    assert "Call add again" in error
    rejected = [e for e in events if isinstance(e, ToolCallRejected)]
    assert [(e.reason, e.step) for e in rejected] == [("invalid_arguments", 1)]
    assert rejected[0].error == error
    validated = [e for e in events if isinstance(e, ToolCallValidated)]
    assert [e.step for e in validated] == [2]
    # The model saw exactly that error as the call's ipython result.
    assert ScriptRequest(
        endpoint="generate", model="", prompt=emu.completions[1].prompt or "", raw=True
    ).tool_results == [error]


async def test_an_unknown_tool_is_named_with_the_tools_that_exist() -> None:
    script = by_results(
        lambda results: call("multiply", a=6, b=7) if not results else "42, I think.<|eot_id|>"
    )
    async with running(script, tools=[add, divide]) as (_, agent):
        events = await collect(agent.stream("6 times 7?"))
    result = events[-1].result  # type: ignore[union-attr]
    assert result.status == "answered"
    message = result.messages[2]
    assert message.role == "tool"
    assert message.name == "multiply"
    assert "unknown tool 'multiply'" in message.content
    assert "add, divide" in message.content
    assert [e.reason for e in events if isinstance(e, ToolCallRejected)] == ["unknown_tool"]


async def test_a_malformed_call_is_reported_to_the_model() -> None:
    broken = '<|python_tag|>{"name": "add", "parameters": {"a": 1 "b": 2}}<|eom_id|>'
    script = sequence(broken, call("add", a=1, b=2), "3.<|eot_id|>")
    async with running(script, tools=[add]) as (_, agent):
        events = await collect(agent.stream("1 + 2?"))
    result = events[-1].result  # type: ignore[union-attr]
    assert result.status == "answered"
    assert result.answer == "3."
    bad = [e for e in events if isinstance(e, CallMalformed)]
    assert len(bad) == 1
    assert bad[0].step == 1
    feedback = result.messages[2]
    assert feedback.role == "tool"
    assert feedback.tool_call_id == bad[0].id
    assert feedback.content.startswith("Error: your tool call could not be used:")
    assert bad[0].reason.rstrip(".") in feedback.content
    assert result.messages[1].raw == broken.removesuffix("<|eom_id|>")


BROKEN_JSON = '{"name": "add", "parameters": {"a": 1 "b": 2}}'


@pytest.mark.parametrize(
    ("completion", "prose"),
    [
        pytest.param(f"<|python_tag|>{BROKEN_JSON}<|eom_id|>", "", id="garbled-after-tag"),
        pytest.param(BROKEN_JSON, "", id="garbled-untagged"),
        pytest.param(
            'Let me add.\n<|python_tag|>{"name": "add", "parameters": {"a": 1<|eom_id|>',
            "Let me add.",
            id="cut-off-at-eom",
        ),
        pytest.param(
            'I will add. <function=add>{"a": 1, "b": 2', "I will add.", id="cut-off-function-tag"
        ),
    ],
)
async def test_a_botched_call_is_never_shown_as_answer_text(completion: str, prose: str) -> None:
    script = sequence(completion, call("add", a=1, b=2), "3.<|eot_id|>")
    async with running(script, tools=[add]) as (_, agent):
        events = await collect(agent.stream("1 + 2?"))
    bad = [e for e in events if isinstance(e, CallMalformed)]
    assert len(bad) == 1
    assert bad[0].text  # the botched text is reported where it belongs
    shown = [e.text for e in events if isinstance(e, TextDelta) and e.step == 1]
    assert "".join(shown) == prose
    assert not any("{" in text or '"a"' in text for text in shown)
    result = events[-1].result  # type: ignore[union-attr]
    first = result.messages[1]
    # The message holds the prose only; the completion stays verbatim in `raw`.
    assert first.content == prose
    assert first.raw == completion.removesuffix("<|eom_id|>")
    assert result.status == "answered"
    assert result.answer == "3."


@pytest.mark.parametrize(
    "completion",
    [
        f"<|python_tag|>{BROKEN_JSON}<|eom_id|>",
        'Let me add.\n<|python_tag|>{"name": "add", "parameters": {"a": 1<|eom_id|>',
        'I will add. <function=add>{"a": 1, "b": 2',
        'Sure. <function=add>{"a": 1, "b": 2}</function><|eom_id|>',
        "  The answer, in prose.  <|eot_id|>",
    ],
)
async def test_run_parses_each_completion_whole_as_the_stream_does(completion: str) -> None:
    # `Agent.run` reads no TextDeltas, so it parses a completion once it is whole instead of
    # as it streams: the conversation must come out the same.
    def script() -> Script:
        return sequence(completion, call("add", a=1, b=2), "3.<|eot_id|>")

    async with running(script(), tools=[add]) as (_, agent):
        streamed = await collect(agent.stream("1 + 2?"))
    async with running(script(), tools=[add]) as (_, agent):
        result = await agent.run("1 + 2?")
    expected = streamed[-1].result  # type: ignore[union-attr]

    def seen(message: Message) -> tuple[Any, ...]:  # call ids name the run: left out
        calls = [(c.name, c.arguments) for c in message.tool_calls]
        return (message.role, message.content, message.raw, message.stop_reason, calls)

    assert [seen(m) for m in result.messages] == [seen(m) for m in expected.messages]
    assert (result.status, result.answer, result.steps) == (
        expected.status,
        expected.answer,
        expected.steps,
    )


async def test_a_call_cut_off_by_the_length_limit_is_not_the_answer() -> None:
    options = GenerateOptions(num_predict=6)
    async with running(sequence(call("add", a=1, b=2)), tools=[add], options=options) as (
        emu,
        agent,
    ):
        events = await collect(agent.stream("Add."))
    result = events[-1].result  # type: ignore[union-attr]
    assert result.status == "length"
    assert result.answer == ""
    assert not [e for e in events if isinstance(e, TextDelta)]
    raw = result.messages[-1].raw
    assert raw
    assert raw == emu.completions[0].completion
    assert any("in the middle of a tool call" in w for w in result.warnings)


async def test_a_repeated_call_does_not_spend_the_retry_budget() -> None:
    # Limits.max_retries counts failures; a repeat has its own limit (max_repeats), so with no
    # retries allowed at all, repeats still end the run by the repeat limit, not the retry one.
    script = by_results(lambda results: call("add", a=1, b=1))
    limits = Limits(max_retries=0, max_repeats=2)
    async with running(script, tools=[add], limits=limits) as (_, agent):
        result = await agent.run("1 + 1?")
    assert result.status == "repeat_limit"
    assert result.steps == 3


async def test_the_retry_budget_ends_the_run_when_spent() -> None:
    # divide has retries=1: one failure is retried, the second in a row ends the run.
    script = by_results(lambda results: call("divide", a=1, b=0))
    async with running(script, tools=[divide]) as (emu, agent):
        result = await agent.run("1 / 0?")
    assert result.status == "retry_limit"
    assert result.steps == 2
    assert len(emu.completions) == 2
    errors = [m.content for m in result.messages if m.role == "tool"]
    assert len(errors) == 2
    assert all("ZeroDivisionError" in e for e in errors)


async def test_limits_max_retries_overrides_each_tools_budget() -> None:
    script = by_results(lambda results: call("add", a="x", b=1))
    async with running(script, tools=[add], limits=Limits(max_retries=0)) as (_, agent):
        result = await agent.run("x + 1?")
    assert result.status == "retry_limit"
    assert result.steps == 1


async def test_a_success_resets_the_retry_count() -> None:
    # fail, succeed, fail, succeed, answer: never two failures in a row.
    plan = [call("divide", a=1, b=0), call("divide", a=4, b=2)] * 2 + ["Done.<|eot_id|>"]
    async with running(sequence(*plan), tools=[divide]) as (_, agent):
        result = await agent.run("Divide.")
    assert result.status == "answered"
    assert result.steps == 5


async def test_a_repeated_call_is_not_run_again_and_the_model_is_told() -> None:
    runs: list[int] = []

    @tool
    def lookup(key: str) -> str:
        """Look a key up.

        Args:
            key: The key.
        """
        runs.append(1)
        return "nothing"

    def script(request: ScriptRequest) -> str:
        if any("not run again" in r for r in request.tool_results):
            return "I could not find it.<|eot_id|>"
        return call("lookup", key="x")

    async with running(script, tools=[lookup]) as (_, agent):
        events = await collect(agent.stream("Find x."))
    result = events[-1].result  # type: ignore[union-attr]
    assert result.status == "answered"
    assert len(runs) == 2  # the third identical call was not run
    rejected = [e for e in events if isinstance(e, ToolCallRejected)]
    assert [(e.reason, e.step) for e in rejected] == [("repeated_call", 3)]
    assert "call number 3 to lookup" in rejected[0].error


async def test_repeating_after_being_told_ends_the_run() -> None:
    script = by_results(lambda results: call("add", a=1, b=1))
    async with running(script, tools=[add], limits=Limits(max_repeats=2)) as (_, agent):
        result = await agent.run("1 + 1?")
    assert result.status == "repeat_limit"
    assert result.steps == 3
    assert [m.content for m in result.messages if m.role == "tool"][:1] == ["2"]


async def test_the_step_limit_ends_the_run_with_every_result_kept() -> None:
    script = by_results(lambda results: call("add", a=len(results), b=1))
    async with running(script, tools=[add], limits=Limits(max_steps=3)) as (emu, agent):
        result = await agent.run("Count forever.")
    assert result.status == "step_limit"
    assert result.steps == 3
    assert len(emu.completions) == 3
    assert result.answer == ""
    assert [m.content for m in result.messages if m.role == "tool"] == ["1", "2", "3"]
    assert result.messages[-1].role == "tool"


async def test_the_token_budget_ends_the_run() -> None:
    script = by_results(lambda results: call("add", a=len(results), b=1))
    async with running(script, tools=[add], limits=Limits(max_tokens=400)) as (_, agent):
        result = await agent.run("Count forever.")
    assert result.status == "token_budget"
    assert result.usage.tokens >= 400
    assert result.steps >= 1
    # It stopped at the first step past the budget.
    before_last = sum(u.prompt_eval_count + u.eval_count for u in result.usage.steps[:-1])
    assert before_last < 400


async def test_the_run_timeout_stops_a_slow_tool() -> None:
    @tool(timeout=60)
    async def slow() -> str:
        """Take a long time."""
        await anyio.sleep(30)
        return "late"

    script = by_results(lambda results: call("slow"))
    async with running(script, tools=[slow], limits=Limits(run_timeout=0.5)) as (_, agent):
        with anyio.fail_after(10):
            result = await agent.run("Be slow.")
    assert result.status == "timeout"
    assert result.steps == 1
    last = result.messages[-1]
    assert last.role == "tool"
    assert "time limit" in last.content


async def test_the_run_timeout_stops_a_slow_generation() -> None:
    emulator = {"token_rate": 10.0}
    long = " ".join(["word"] * 200)
    async with running(sequence(long), emulator=emulator, limits=Limits(run_timeout=0.5)) as (
        emu,
        agent,
    ):
        with anyio.fail_after(10):
            result = await agent.run("Talk slowly.")
        with anyio.fail_after(10):
            await emu.wait_idle()
    assert result.status == "timeout"
    assert result.steps == 0
    assert [m.role for m in result.messages] == ["user"]
    assert emu.completions[0].cancelled


async def test_an_agent_without_tools_takes_a_call_shaped_reply_as_its_answer() -> None:
    # With nothing to call, "unknown tool" would only send the model round in circles.
    reply = '{"name": "lookup", "parameters": {"id": 7}}'
    async with running(sequence(f"<|python_tag|>{reply}<|eom_id|>")) as (emu, agent):
        events = await collect(agent.stream("Give me the lookup call as JSON."))
    result = events[-1].result  # type: ignore[union-attr]
    assert result.status == "answered"
    assert result.steps == 1
    assert result.answer == reply
    assert "".join(e.text for e in events if isinstance(e, TextDelta)) == reply
    assert len(emu.completions) == 1

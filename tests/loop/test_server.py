"""The server side of a run: a missing model, Ollama down or busy, dropped streams, the context
size. Backend errors raise from `run()` with the conversation so far on `.result`, and end
`stream()` with a `RunFinished` of status "error"."""

from __future__ import annotations

import anyio
import pytest

from agent import Agent, OllamaBackend, RunFinished, tool
from agent.backends import Retries
from agent.errors import (
    ContextOverflowError,
    ModelNotFoundError,
    OllamaUnreachableError,
    RunError,
)
from agent.testing import (
    Busy,
    DropConnection,
    EmulatedModel,
    OllamaEmulator,
    ScriptRequest,
    answer,
    sequence,
)

from .helpers import TODAY, add, by_results, call, collect, running

pytestmark = pytest.mark.anyio


async def test_a_missing_model_raises_model_not_found_with_the_conversation() -> None:
    async with running(answer("Hi."), model="llama3.1:404b") as (emu, agent):
        with pytest.raises(ModelNotFoundError) as info:
            await agent.run("Hello?")
        events = await collect(agent.stream("Hello?"))
    assert "ollama pull llama3.1:404b" in str(info.value)
    result = info.value.result
    assert result is not None
    assert result.status == "error"
    assert result.error == str(info.value)
    assert [m.content for m in result.messages] == ["Hello?"]
    assert emu.completions == []
    # The stream reports the same thing as its last event instead of raising.
    last = events[-1]
    assert isinstance(last, RunFinished)
    assert last.result.status == "error"
    assert isinstance(last.result.exception, ModelNotFoundError)
    assert last.result.to_dict()["error_type"] == "ModelNotFoundError"


async def test_ollama_down_raises_unreachable_and_keeps_earlier_history() -> None:
    async with running(answer("Hi.")) as (emu, agent):
        first = await agent.run("Hello?")
        await emu.refuse_connections()
        with pytest.raises(OllamaUnreachableError) as info:
            await agent.run("Still there?", history=first)
        url = emu.url
    assert url in str(info.value)
    assert "ollama serve" in str(info.value)
    assert isinstance(info.value, RunError)
    result = info.value.result
    assert result is not None
    assert [m.content for m in result.messages] == ["Hello?", "Hi.", "Still there?"]


async def test_an_agent_that_gets_a_backend_does_not_close_it() -> None:
    async with OllamaEmulator(answer("Hi.")) as emu:
        backend = OllamaBackend(emu.url)
        async with Agent(backend=backend, today=TODAY) as agent:
            assert (await agent.run("Hello?")).answer == "Hi."
        # Still usable by another agent after the first one closed.
        async with Agent(backend=backend, today=TODAY) as other:
            assert (await other.run("Hello?")).answer == "Hi."
        await backend.aclose()


async def test_busy_then_fine() -> None:
    async with OllamaEmulator(answer("Hi."), faults=[Busy(times=2)]) as emu:
        backend = OllamaBackend(emu.url, retries=Retries(backoff_base=0.01, backoff_max=0.05))
        async with backend, Agent(backend=backend, today=TODAY) as agent:
            result = await agent.run("Hello?")
    assert result.answer == "Hi."
    assert result.steps == 1
    assert [r.status for r in emu.completions] == [503, 503, 200]


async def test_a_stream_dropped_before_any_text_is_sent_again() -> None:
    faults = [DropConnection(after_chunks=0)]
    script = sequence(call("add", a=1, b=2), "Three.<|eot_id|>")
    async with running(script, tools=[add], emulator={"faults": faults}) as (emu, agent):
        result = await agent.run("1 + 2?")
    assert result.answer == "Three."
    assert result.steps == 2
    assert len(emu.completions) == 3
    assert emu.completions[0].fault is not None
    assert emu.completions[0].body["prompt"] == emu.completions[1].prompt


def _big_output(results: list[str]) -> str:
    if len(results) < 3:
        return call("read", page=len(results))
    return "Read it all.<|eot_id|>"


@tool
def read(page: int) -> str:
    """Read a page of a long document.

    Args:
        page: The page number.
    """
    return f"page {page}: " + "lorem ipsum dolor sit amet " * 500


async def test_num_ctx_is_always_sent_and_grows_with_the_conversation() -> None:
    async with running(by_results(_big_output), tools=[read]) as (emu, agent):
        result = await agent.run("Read the document.")
    assert result.answer == "Read it all."
    sizes = [r.num_ctx for r in emu.completions]
    assert all(isinstance(s, int) for s in sizes)
    assert [r.options.get("num_ctx") for r in emu.completions] == sizes
    assert sizes == sorted(sizes)  # it never shrinks (a change reloads the model)
    assert sizes[-1] > sizes[0]
    for request in emu.completions:
        assert request.num_ctx is not None
        assert request.prompt_tokens < request.num_ctx
        assert not request.truncated
    assert [u.num_ctx for u in result.usage.steps] == sizes
    assert result.usage.total.num_ctx == sizes[-1]


async def test_a_conversation_too_long_for_the_context_is_an_error_not_a_truncation() -> None:
    small = EmulatedModel.llama("llama3.1:8b", context_length=6000)
    emulator = {"models": [small]}
    async with running(
        by_results(_big_output), emulator=emulator, model="llama3.1:8b", tools=[read]
    ) as (emu, agent):
        with pytest.raises(ContextOverflowError) as info:
            await agent.run("Read the document.")
    error = info.value
    assert error.available == 6000
    assert error.needed > 6000
    assert "Start a new conversation" in str(error)
    result = error.result
    assert result is not None
    # The steps that fitted are kept, tool results included.
    assert result.steps == len(emu.completions) >= 1
    assert [m.role for m in result.messages][-2:] == ["assistant", "tool"]
    assert all(not r.truncated for r in emu.completions)


async def test_a_concurrency_limit_keeps_the_servers_queue_short() -> None:
    peak = 0
    emu: OllamaEmulator

    def script(request: ScriptRequest) -> str:
        nonlocal peak
        peak = max(peak, emu.in_flight)
        return "Hi.<|eot_id|>"

    async with OllamaEmulator(script, latency=0.01) as emu:
        backend = OllamaBackend(emu.url, concurrency=3)
        async with (
            backend,
            Agent(backend=backend, today=TODAY) as agent,
            anyio.create_task_group() as group,
        ):
            for _ in range(30):
                group.start_soon(agent.run, "Hello?")
    assert len(emu.completions) == 30
    assert 1 <= peak <= 3

"""`LlamaCppBackend` against a REAL `llama-server` (issue 15, "A real engine in the tests").

The server is the one `python -m agent.testing llama-server build` caches (or `LLAMA_SERVER`);
without it these tests skip, saying how to build it, and fail under `CI=true`. The model is
written here: the real Llama 3 vocabulary and two layers of random weights, with a few fixed
successors (`agent.testing._llama_server.SUCCESSORS`) so that greedy answers are known: what
is checked is the engine's treatment of the protocol, not the words.
"""

from __future__ import annotations

import datetime as dt
import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest

from agent import Agent
from agent.backends import Done, GenerateOptions, LlamaCppBackend, TextChunk
from agent.errors import ContextOverflowError, ModelNotFoundError
from agent.llama3 import (
    BEGIN_OF_TEXT,
    SPECIAL_TOKENS,
    Message,
    ToolCall,
    ToolSpec,
    parse_completion,
    render_prompt,
)
from agent.testing import LlamaCppEmulator, answer
from agent.testing._llama_server import (
    CALL_TEXT,
    CALL_TOKENS,
    HELLO_TEXT,
    HELLO_TOKENS,
    TRIGGER_CALL,
    Installed,
    LlamaServer,
    find_installed,
    missing_reason,
    write_tiny_model,
)

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(120)]

CONTEXT = 1024
GREEDY = GenerateOptions(temperature=0, num_predict=32)


@pytest.fixture(scope="session")
def installed() -> Installed:
    found = find_installed()
    if found is None:
        if os.environ.get("CI") == "true":
            pytest.fail(missing_reason())
        pytest.skip(missing_reason())
    return found


@pytest.fixture(scope="session")
def tiny_model(installed: Installed, tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory: Path = tmp_path_factory.mktemp("llama-server")
    return write_tiny_model(directory / "tiny-llama-3.1.gguf", installed.vocab)


@pytest.fixture(scope="session")
def llama_server(installed: Installed, tiny_model: Path) -> Iterator[LlamaServer]:
    with LlamaServer(installed.server, tiny_model, context=CONTEXT) as server:
        yield server


async def server_call(server: LlamaServer, path: str, body: dict[str, Any]) -> Any:
    async with (
        aiohttp.ClientSession() as session,
        session.post(server.url + path, json=body) as response,
    ):
        assert response.status == 200, await response.text()
        return await response.json()


def conversation() -> str:
    """A native prompt with every kind of turn: system with tools, a built-in call ending in
    `<|eom_id|>`, its `ipython` result, a custom JSON call, and the open assistant header."""
    messages = [
        Message(role="system", content="You are terse."),
        Message(role="user", content="Search llamas, then add 1 and 2."),
        Message(
            role="assistant",
            raw='<|python_tag|>brave_search.call(query="llamas")',
            stop_reason="end_of_message",
        ),
        Message(role="tool", content='{"results": ["llamas are camelids"]}'),
        Message(
            role="assistant",
            tool_calls=(ToolCall(name="add", arguments={"a": 1, "b": 2}),),
            stop_reason="end_of_message",
        ),
        Message(role="tool", content="3"),
        Message(role="user", content="Thanks."),
    ]
    tools = [
        ToolSpec(name="brave_search", builtin="brave_search"),
        ToolSpec(
            name="add",
            description="Add two numbers.",
            parameters={
                "type": "object",
                "properties": {"a": {"type": "integer"}, "b": {"type": "integer"}},
            },
        ),
    ]
    return render_prompt(messages, tools, model="llama3.1", today=dt.date(2026, 1, 2))


async def test_every_special_token_of_a_rendered_prompt_is_one_special_token(
    llama_server: LlamaServer,
) -> None:
    prompt = conversation()
    expected = re.findall("|".join(map(re.escape, SPECIAL_TOKENS)), prompt)
    assert {"<|python_tag|>", "<|eom_id|>", "<|eot_id|>", "<|start_header_id|>"} <= set(expected)
    answer = await server_call(
        llama_server, "/tokenize", {"content": prompt, "with_pieces": True, "add_special": False}
    )
    specials = [t["piece"] for t in answer["tokens"] if t["id"] >= 128000]
    assert specials == expected
    # And no special token's text was split into ordinary tokens.
    ordinary = "".join(t["piece"] for t in answer["tokens"] if t["id"] < 128000)
    assert "<|" not in ordinary


async def test_the_tiny_models_fixed_successors_are_the_real_tokens(
    llama_server: LlamaServer,
) -> None:
    for text, tokens in ((HELLO_TEXT, HELLO_TOKENS), (CALL_TEXT, CALL_TOKENS)):
        answer = await server_call(llama_server, "/tokenize", {"content": text})
        assert tuple(answer["tokens"]) == tokens


async def test_one_bos_not_two(llama_server: LlamaServer) -> None:
    prompt = conversation()
    # What the backend sends (the prompt without the BOS text) as the server tokenizes it.
    sent = await server_call(
        llama_server,
        "/tokenize",
        {"content": prompt.removeprefix(BEGIN_OF_TEXT), "add_special": True},
    )
    intended = await server_call(
        llama_server, "/tokenize", {"content": prompt, "add_special": False}
    )
    assert sent["tokens"].count(128000) == 1
    assert sent["tokens"] == intended["tokens"]
    async with LlamaCppBackend(llama_server.url) as backend:
        assert await backend.count_tokens(prompt.removeprefix(BEGIN_OF_TEXT)) == len(
            intended["tokens"]
        )
        events = [e async for e in backend.generate(prompt, model="llama3.1", options=GREEDY)]
    done = events[-1]
    assert isinstance(done, Done)
    assert done.usage.prompt_tokens_sent == len(intended["tokens"])


async def test_a_greedy_answer_streams_and_ends_with_eot(llama_server: LlamaServer) -> None:
    prompt = conversation()
    async with LlamaCppBackend(llama_server.url) as backend:
        events = [e async for e in backend.generate(prompt, model="llama3.1", options=GREEDY)]
    chunks = [e.text for e in events if isinstance(e, TextChunk)]
    done = events[-1]
    assert chunks == ["Hello", " there", "<|eot_id|>"]  # one event per token
    assert isinstance(done, Done)
    assert done.done_reason == "stop"
    assert done.usage.eval_count == 3  # two words and the end token
    assert done.usage.num_ctx == CONTEXT
    assert done.usage.eval_duration > 0
    parsed = parse_completion("".join(chunks))
    assert (parsed.content, parsed.stop_reason) == (HELLO_TEXT, "end_of_turn")


async def test_python_tag_and_eom_come_back_from_the_token_ids(llama_server: LlamaServer) -> None:
    # The server runs without --special: both tokens arrive as empty text with their ids.
    prompt = BEGIN_OF_TEXT + "Look it up." + TRIGGER_CALL
    async with LlamaCppBackend(llama_server.url) as backend:
        events = [e async for e in backend.generate(prompt, model="llama3.1", options=GREEDY)]
    text = "".join(e.text for e in events if isinstance(e, TextChunk))
    assert text == f"<|python_tag|>{CALL_TEXT}<|eom_id|>"
    done = events[-1]
    assert isinstance(done, Done)
    assert done.done_reason == "stop"
    parsed = parse_completion(text, tools=["brave_search"])
    assert parsed.stop_reason == "end_of_message"
    assert parsed.tool_calls == (ToolCall(name="brave_search", arguments={"query": "llama"}),)


async def test_a_server_with_special_gives_the_same_text(
    installed: Installed, tiny_model: Path
) -> None:
    # With --special the server writes the control tokens' text itself: not doubled.
    prompt = BEGIN_OF_TEXT + "Look it up." + TRIGGER_CALL
    with LlamaServer(installed.server, tiny_model, context=CONTEXT, args=["--special"]) as server:
        async with LlamaCppBackend(server.url) as backend:
            events = [e async for e in backend.generate(prompt, model="llama3.1", options=GREEDY)]
            _, raw = await sse_events(
                server.url, {"prompt": "x" + TRIGGER_CALL, "n_predict": 2, "temperature": 0}
            )
    assert raw[0]["content"] == "<|python_tag|>"  # the server did write it
    text = "".join(e.text for e in events if isinstance(e, TextChunk))
    assert text == f"<|python_tag|>{CALL_TEXT}<|eom_id|>"


async def test_the_length_limit_ends_as_length(llama_server: LlamaServer) -> None:
    prompt = BEGIN_OF_TEXT + "Once upon a time"  # no fixed successor: random tokens
    options = GenerateOptions(temperature=1.0, seed=7, num_predict=5)
    async with LlamaCppBackend(llama_server.url) as backend:
        events = [e async for e in backend.generate(prompt, model="llama3.1", options=options)]
    done = events[-1]
    assert isinstance(done, Done)
    assert (done.done_reason, done.usage.eval_count) == ("length", 5)


async def test_a_stop_word_ends_as_stop(llama_server: LlamaServer) -> None:
    options = GenerateOptions(temperature=0, num_predict=32, stop=(" there",))
    async with LlamaCppBackend(llama_server.url) as backend:
        events = [
            e async for e in backend.generate(conversation(), model="llama3.1", options=options)
        ]
    assert "".join(e.text for e in events if isinstance(e, TextChunk)) == "Hello"
    done = events[-1]
    assert isinstance(done, Done)
    assert done.done_reason == "stop"


async def test_the_servers_context_overflow_is_a_context_overflow_error(
    llama_server: LlamaServer,
) -> None:
    long = BEGIN_OF_TEXT + "llama " * (CONTEXT + 100)
    # The backend refuses before sending...
    async with LlamaCppBackend(llama_server.url) as backend:
        with pytest.raises(ContextOverflowError) as refused:
            async for _ in backend.generate(long, model="llama3.1", options=GREEDY):
                pass
    assert refused.value.available == CONTEXT
    # ...and the server's own 400, read the way the backend reads it, is the same error.
    from agent.backends._llamacpp_api import ServerAnswer, answer_error

    async with (
        aiohttp.ClientSession() as session,
        session.post(
            llama_server.url + "/completion",
            json={"prompt": long.removeprefix(BEGIN_OF_TEXT), "n_predict": 4, "stream": True},
        ) as response,
    ):
        status, body = response.status, await response.read()
    error = answer_error(ServerAnswer(status, body), model="llama3.1", url=llama_server.url)
    assert status == 400
    assert isinstance(error, ContextOverflowError)
    assert error.available == CONTEXT
    text = long.removeprefix(BEGIN_OF_TEXT)
    counted = await server_call(llama_server, "/tokenize", {"content": text, "add_special": True})
    assert error.needed == len(counted["tokens"]) > CONTEXT


async def test_step_two_prefills_only_the_new_tokens(llama_server: LlamaServer) -> None:
    first = conversation()
    async with LlamaCppBackend(llama_server.url) as backend:
        one = [e async for e in backend.generate(first, model="llama3.1", options=GREEDY)]
        completion = "".join(e.text for e in one if isinstance(e, TextChunk))
        second = (
            first
            + completion
            + "<|start_header_id|>user<|end_header_id|>\n\nAnd then?<|eot_id|>"
            + "<|start_header_id|>assistant<|end_header_id|>\n\n"
        )
        two = [e async for e in backend.generate(second, model="llama3.1", options=GREEDY)]
    done_one, done_two = one[-1], two[-1]
    assert isinstance(done_one, Done)
    assert isinstance(done_two, Done)
    # The slot holds the first prompt and what was generated, but the end token (sampled,
    # never decoded): step 2 evaluates only what comes after that.
    cached = done_one.usage.prompt_tokens_sent + done_one.usage.eval_count - 1
    assert done_two.usage.prompt_eval_count == done_two.usage.prompt_tokens_sent - cached
    assert done_two.usage.prompt_eval_count < 20 < cached


async def test_an_unserved_model_name_is_model_not_found(llama_server: LlamaServer) -> None:
    async with LlamaCppBackend(llama_server.url) as backend:
        info = await backend.model_info("llama3.1")
        assert (info.context_length, info.family) == (CONTEXT, "3.1")
        assert info.server_version
        with pytest.raises(ModelNotFoundError, match=r"--alias llama3\.3"):
            await backend.model_info("llama3.3")


async def test_an_agent_runs_end_to_end(llama_server: LlamaServer) -> None:
    backend = LlamaCppBackend(llama_server.url)
    options = GenerateOptions(temperature=0, num_predict=16)
    async with Agent(backend=backend, options=options, system="Be brief.") as agent:
        first = await agent.run("Hi")
        second = await agent.run("Again", history=first.messages)
    assert (first.status, first.answer) == ("answered", HELLO_TEXT)
    assert (second.status, second.answer) == ("answered", HELLO_TEXT)
    # The loop kept the end token the server's ids gave back; the next prompt repeated the
    # first exchange byte for byte, so the server reused it from its cache.
    assert first.messages[-1].raw == HELLO_TEXT + "<|eot_id|>"
    step = second.usage.steps[-1]
    assert step.prompt_eval_count < step.prompt_tokens_sent // 2


async def sse_events(url: str, body: dict[str, Any]) -> tuple[int, list[dict[str, Any]]]:
    async with (
        aiohttp.ClientSession() as session,
        session.post(url + "/completion", json={"stream": True, **body}) as response,
    ):
        raw = await response.read()
    lines = raw.split(b"\n")
    assert b"data: [DONE]" not in lines
    parsed = [orjson.loads(line[6:]) for line in lines if line.startswith(b"data: ")]
    return response.status, parsed


async def test_the_emulator_speaks_like_the_real_server(llama_server: LlamaServer) -> None:
    """The fields and special token ids of every event, and the context error, are the real
    server's (ordinary token ids are the emulator's stand-ins)."""
    prompt = conversation().removeprefix(BEGIN_OF_TEXT)
    body = {"prompt": prompt, "n_predict": 8, "stream": True, "temperature": 0}
    long = {"prompt": "llama " * (CONTEXT + 10), "n_predict": 2, "stream": True}
    async with LlamaCppEmulator(answer(HELLO_TEXT), n_ctx=CONTEXT) as emu:
        shapes = []
        for url in (llama_server.url, emu.url):
            status, events = await sse_events(url, body)
            async with (
                aiohttp.ClientSession() as session,
                session.post(url + "/completion", json=long) as response,
            ):
                error = await response.json()
            shapes.append(
                (
                    status,
                    # Ordinary ids are the emulator's stand-ins; special ids are the real ones.
                    [
                        (e["content"], [t if t >= 128000 else 0 for t in e["tokens"]])
                        for e in events[:-1]
                    ],
                    set(events[0]),
                    events[-1]["stop_type"],
                    response.status,
                    set(error["error"]),
                    error["error"]["type"],
                )
            )
            final_keys = {"stop_type", "stopping_word", "tokens_cached", "timings", "prompt"}
            assert final_keys <= set(events[-1])
            assert {"prompt_n", "cache_n", "predicted_n", "predicted_ms"} <= set(
                events[-1]["timings"]
            )
    real, emulated = shapes
    assert real == emulated

"""`SGLangBackend` against `SGLangEmulator` (and, for answers the emulator never gives, a fake
server): the wire format, eom vs eot, sizing, errors, retries, deadlines, caps, resumption."""

from __future__ import annotations

import contextlib
import itertools
import time
from collections.abc import AsyncIterator, Mapping
from typing import Any

import anyio
import orjson
import pytest
from aiohttp import web

from agent import Agent, tool
from agent.backends import Done, GenerateOptions, Retries, SGLangBackend, TextChunk, Timeouts
from agent.backends._sglang_api import context_overflow
from agent.errors import (
    BackendResponseError,
    BackendTimeoutError,
    BackendUnreachableError,
    ContextOverflowError,
    ModelNotFoundError,
    ServerBusyError,
    StreamError,
)
from agent.llama3 import count_tokens
from agent.testing import (
    Busy,
    DropConnection,
    ErrorLine,
    GarbageLine,
    ServerError,
    SGLangEmulator,
    Stall,
    answer,
    call_tool,
    call_tools,
    sequence,
)
from tests.backends.fake_server import Handler, fake_ollama

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(30)]

MODEL = "meta-llama/Llama-3.1-8B-Instruct"
PROMPT = (
    "<|begin_of_text|><|start_header_id|>user<|end_header_id|>\n\nHi<|eot_id|>"
    "<|start_header_id|>assistant<|end_header_id|>\n\n"
)
FAST = Retries(backoff_base=0.01, backoff_max=0.02)


async def collect(
    backend: SGLangBackend,
    options: GenerateOptions | None = None,
    *,
    prompt: str = PROMPT,
    model: str = MODEL,
    deadline: float | None = None,
) -> tuple[list[str], Done]:
    chunks: list[str] = []
    done: Done | None = None
    events = backend.generate(
        prompt, model=model, options=options or GenerateOptions(), deadline=deadline
    )
    async for event in events:
        if isinstance(event, TextChunk):
            chunks.append(event.text)
        else:
            done = event
    assert done is not None
    return chunks, done


@pytest.fixture
async def emu() -> AsyncIterator[SGLangEmulator]:
    async with SGLangEmulator(answer("Hello there.")) as emulator:
        yield emulator


# --- the wire format ------------------------------------------------------------------------------


@pytest.mark.parametrize("incremental", [False, True])
async def test_a_tool_call_keeps_its_python_tag_and_ends_with_eom(incremental: bool) -> None:
    script = call_tool("get_weather", {"city": "Paris"})
    async with (
        SGLangEmulator(script, incremental_streaming_output=incremental) as emu,
        SGLangBackend(emu.url) as backend,
    ):
        chunks, done = await collect(backend)
    text = "".join(chunks)
    assert (
        text == '<|python_tag|>{"name": "get_weather", "parameters": {"city": "Paris"}}<|eom_id|>'
    )
    assert chunks[-1] == "<|eom_id|>"  # the trimmed stop token, told by finish_reason.matched
    assert done.done_reason == "stop"


@pytest.mark.parametrize("incremental", [False, True])
async def test_an_answer_streams_in_pieces_and_ends_with_eot(incremental: bool) -> None:
    async with (
        SGLangEmulator(
            answer("It is sunny in Paris."), incremental_streaming_output=incremental
        ) as emu,
        SGLangBackend(emu.url) as backend,
    ):
        chunks, done = await collect(backend)
    assert chunks[-1] == "<|eot_id|>"
    assert len(chunks) > 3
    assert "".join(chunks) == "It is sunny in Paris.<|eot_id|>"
    sent = emu.completions[-1]
    assert done.usage.eval_count == 7  # six pieces and the stop token, as SGLang counts them
    assert done.usage.prompt_tokens_sent == sent.prompt_tokens == 1 + count_tokens(PROMPT[17:])
    assert done.usage.num_ctx == 131072


@pytest.mark.parametrize("incremental", [False, True])
async def test_events_of_several_tokens_are_read_in_either_mode(incremental: bool) -> None:
    script = answer("one two three four five six seven")
    async with (
        SGLangEmulator(script, incremental_streaming_output=incremental, stream_interval=3) as emu,
        SGLangBackend(emu.url) as backend,
    ):
        chunks, _ = await collect(backend)
    assert chunks == ["one two three", " four five six", " seven", "<|eot_id|>"]


async def test_the_request_sends_one_bos_and_every_option(emu: SGLangEmulator) -> None:
    async with SGLangBackend(emu.url) as backend:
        options = GenerateOptions(temperature=0.2, top_p=0.9, top_k=40, seed=7, stop=["###"])
        await collect(backend, options)
    sent = emu.completions[-1]
    assert sent.prompt == PROMPT.removeprefix("<|begin_of_text|>")  # SGLang adds the BOS
    assert sent.stream is True
    params = dict(sent.options)
    assert params.pop("max_new_tokens") == 2048  # explicit: SGLang's default is 128
    assert params.pop("stop_token_ids") == [128001, 128006, 128007, 128008, 128009]
    assert params == {
        "skip_special_tokens": False,
        "spaces_between_special_tokens": False,
        "temperature": 0.2,
        "top_p": 0.9,
        "top_k": 40,
        "sampling_seed": 7,
        "stop": ["###"],
    }


async def test_max_new_tokens_is_num_predict_or_what_fits() -> None:
    async with SGLangEmulator(answer("ok"), context_length=1000) as emu:
        async with SGLangBackend(emu.url) as backend:
            await collect(backend, GenerateOptions(num_predict=5))
            await collect(backend)
        prompt_tokens = emu.completions[-1].prompt_tokens
        assert [c.options["max_new_tokens"] for c in emu.completions] == [5, 1000 - prompt_tokens]


async def test_length_is_reported(emu: SGLangEmulator) -> None:
    async with SGLangBackend(emu.url) as backend:
        chunks, done = await collect(backend, GenerateOptions(num_predict=2))
    assert "".join(chunks) == "Hello there"
    assert done.done_reason == "length"


async def test_the_prefix_cache_counts_as_cached_not_evaluated(emu: SGLangEmulator) -> None:
    async with SGLangBackend(emu.url) as backend:
        first, done1 = await collect(backend)
        follow = PROMPT + "".join(first) + "<|start_header_id|>user<|end_header_id|>\n\nMore"
        _, done2 = await collect(backend, prompt=follow)
    assert done1.usage.prompt_eval_count == done1.usage.prompt_tokens_sent
    cached = emu.completions[-1].cached_tokens
    assert cached > done1.usage.prompt_tokens_sent  # the first prompt and its whole answer
    assert done2.usage.prompt_eval_count == done2.usage.prompt_tokens_sent - cached
    assert (done1.usage.cached_tokens, done2.usage.cached_tokens) == (0, cached)


# --- the model, counting ----------------------------------------------------------------------


async def test_model_info_describes_the_served_model_and_is_asked_once() -> None:
    async with (
        SGLangEmulator(
            model_path="/models/Llama-3.3-70B-Instruct", served_model_name="llama3.3",
            context_length=65536, version="0.5.4",
        ) as emu,
        SGLangBackend(emu.url) as backend,
    ):  # fmt: skip
        for name in ("llama3.3", "/models/Llama-3.3-70B-Instruct"):
            info = await backend.ensure_model(name, tools=True)
            assert (info.context_length, info.family, info.server_version) == (
                65536,
                "3.3",
                "0.5.4",
            )
        await backend.model_info("llama3.3")
        assert await backend.version() == "0.5.4"
        asked = [r.path for r in emu.requests]
    assert asked.count("/server_info") == 1
    assert asked.count("/v1/models") == 2  # once per name


async def test_capabilities_are_claimed_for_llama_only() -> None:
    async with (
        SGLangEmulator(model_path="Qwen/Qwen2.5-7B-Instruct") as emu,
        SGLangBackend(emu.url) as backend,
    ):
        info = await backend.ensure_model("Qwen/Qwen2.5-7B-Instruct", tools=True)
    assert (info.family, info.capabilities) == ("unknown", ())  # SGLang does not say: unchecked


async def test_a_kv_pool_smaller_than_the_context_bounds_it() -> None:
    async with (
        SGLangEmulator(max_total_num_tokens=5000) as emu,
        SGLangBackend(emu.url) as backend,
    ):
        assert (await backend.model_info(MODEL)).context_length == 5000


async def test_older_servers_answer_on_their_old_paths() -> None:
    async with (
        SGLangEmulator(answer("ok"), legacy_endpoints=True, tokenize_endpoint=False) as emu,
        SGLangBackend(emu.url) as backend,
    ):
        await collect(backend)
        await collect(backend)
        paths = [(r.path, r.status) for r in emu.requests]
    assert ("/server_info", 404) in paths
    assert ("/get_server_info", 200) in paths
    assert ("/get_model_info", 200) in paths
    assert paths.count(("/tokenize", 404)) == 1  # then counted locally, never asked again
    assert emu.completions[-1].options["max_new_tokens"] == 2048


async def test_an_unknown_model_names_the_served_one_and_how_to_serve_it(
    emu: SGLangEmulator,
) -> None:
    async with SGLangBackend(emu.url) as backend:
        with pytest.raises(ModelNotFoundError) as caught:
            await collect(backend, model="llama3.1:70b")
    message = str(caught.value)
    assert f"serves '{MODEL}'" in message
    assert "python -m sglang.launch_server --model-path llama3.1:70b" in message
    assert "ollama pull" not in message
    assert not emu.completions


async def test_the_api_key_is_a_bearer_token() -> None:
    async with SGLangEmulator(answer("ok"), api_key="s3cret") as emu:
        async with SGLangBackend(emu.url, api_key="s3cret") as backend:
            chunks, _ = await collect(backend)
        assert emu.completions[-1].headers["authorization"] == "Bearer s3cret"
        assert "".join(chunks) == "ok<|eot_id|>"
        async with SGLangBackend(emu.url) as backend:
            with pytest.raises(BackendResponseError, match=r"answered 401.*--api-key"):
                await collect(backend)


# --- the context -------------------------------------------------------------------------------


async def test_a_prompt_that_does_not_fit_is_refused_before_sending() -> None:
    async with SGLangEmulator(context_length=300) as emu, SGLangBackend(emu.url) as backend:
        long_prompt = PROMPT.replace("Hi", "word " * 400)
        with pytest.raises(ContextOverflowError) as caught:
            await collect(backend, prompt=long_prompt)
        assert not emu.completions
    assert caught.value.available == 300
    assert caught.value.prompt_tokens == 1 + count_tokens(long_prompt[17:])


@pytest.mark.parametrize("stream_rejects", ["input", "total"])
async def test_the_servers_context_error_is_the_same_error(stream_rejects: str) -> None:
    # The server's context shrank after it was described (a restart with --context-length).
    async with (
        SGLangEmulator(answer("ok"), context_length=4096) as emu,
        SGLangBackend(emu.url) as backend,
    ):
        await backend.model_info(MODEL)
        emu.context_length = 10 if stream_rejects == "input" else 100
        with pytest.raises(ContextOverflowError) as caught:
            await collect(backend, GenerateOptions(num_predict=200))
    assert caught.value.available == emu.context_length
    assert emu.completions[-1].status == 200  # in-band: the stream had started


@pytest.mark.parametrize(
    ("message", "numbers"),
    [
        (
            "The input (5000 tokens) is longer than the model's context length (4096 tokens).",
            (5001, 4096, 5000),
        ),
        (
            "Requested token count exceeds the model's maximum context length of 4096 tokens. "
            "You requested a total of 4200 tokens: 2152 tokens from the input messages and "
            "2048 tokens for the completion. Please reduce the number of tokens in the input "
            "messages or the completion to fit within the limit.",
            (4200, 4096, 2152),
        ),
        (
            "Input length (9000 tokens) exceeds the maximum allowed length (8191 tokens). Use a "
            "shorter input or enable --allow-auto-truncate.",
            (9000, 8191, 9000),
        ),
    ],
)
def test_sglang_context_messages_are_read(message: str, numbers: tuple[int, int, int]) -> None:
    error = context_overflow(message, model="m", needed=1, available=1, prompt_tokens=1)
    assert error is not None
    assert (error.needed, error.available, error.prompt_tokens) == numbers
    assert context_overflow("top_p must be in (0, 1]", model="m", needed=1, available=1,
                            prompt_tokens=1) is None  # fmt: skip


# --- busy, failures, resumption --------------------------------------------------------------


@pytest.mark.parametrize(
    "fault", [Busy(times=2), ServerError(status=503, times=2), ServerError(status=429, times=2)]
)
async def test_a_full_server_is_retried(fault: Busy | ServerError) -> None:
    async with (
        SGLangEmulator(answer("ok"), faults=[fault]) as emu,
        SGLangBackend(emu.url, retries=FAST) as backend,
    ):
        chunks, _ = await collect(backend)
    assert "".join(chunks) == "ok<|eot_id|>"
    assert len(emu.completions) == 3


async def test_a_server_that_stays_full_is_server_busy() -> None:
    async with (
        SGLangEmulator(answer("ok"), faults=[Busy(times=None)]) as emu,
        SGLangBackend(emu.url, retries=FAST) as backend,
    ):
        with pytest.raises(ServerBusyError, match=r"request queue is full.*5 attempts"):
            await collect(backend)


async def test_a_dropped_stream_is_resumed_seamlessly() -> None:
    text = "One two three four five six seven."
    async with (
        SGLangEmulator(sequence(text), faults=[DropConnection(after_chunks=3)]) as emu,
        SGLangBackend(emu.url) as backend,
    ):
        chunks, done = await collect(backend)
    assert "".join(chunks) == text + "<|eot_id|>"
    first, second = emu.completions
    assert second.prompt == first.prompt + "One two three"
    assert second.options["max_new_tokens"] < first.options["max_new_tokens"]
    assert "resumed" in " ".join(done.warnings)


async def test_a_stream_that_keeps_breaking_is_a_stream_error() -> None:
    async with (
        SGLangEmulator(answer("ok"), faults=[DropConnection(after_chunks=0, times=None)]) as emu,
        SGLangBackend(emu.url) as backend,
    ):
        with pytest.raises(StreamError, match="broke off 2 times"):
            await collect(backend)


@pytest.mark.parametrize(
    ("fault", "says"),
    [
        (ErrorLine(after_chunks=2), "aborted the generation .* after"),
        (GarbageLine(after_chunks=1), "not a server-sent event"),
        (ServerError(status=500, message="boom"), "answered 500 .*boom"),
    ],
)
async def test_failures_are_clear_errors(fault: Any, says: str) -> None:
    async with (
        SGLangEmulator(answer("a b c d e"), faults=[fault]) as emu,
        SGLangBackend(emu.url) as backend,
    ):
        with pytest.raises((StreamError, BackendResponseError), match=says):
            await collect(backend)


async def test_nothing_listening_is_unreachable() -> None:
    async with SGLangEmulator() as emu:
        url = emu.url
    async with SGLangBackend(url) as backend:
        with pytest.raises(BackendUnreachableError, match=r"connection refused.*sglang"):
            await backend.model_info(MODEL)


async def test_concurrency_limits_requests_in_flight() -> None:
    async with (
        SGLangEmulator(answer("a b c d"), token_rate=50) as emu,
        SGLangBackend(emu.url, concurrency=2) as backend,
        anyio.create_task_group() as group,
    ):
        for _ in range(5):
            group.start_soon(collect, backend)
    assert emu.max_in_flight == 2
    assert len(emu.completions) == 5


async def test_leaving_early_closes_the_stream() -> None:
    async with (
        SGLangEmulator(answer("word " * 100), token_rate=20) as emu,
        SGLangBackend(emu.url) as backend,
    ):
        events = backend.generate(PROMPT, model=MODEL, options=GenerateOptions())
        async with contextlib.aclosing(events):
            async for _ in events:
                break
        with anyio.fail_after(5):
            while not emu.completions[-1].cancelled:  # noqa: ASYNC110
                await anyio.sleep(0.02)
        assert emu.in_flight == 0


# --- deadlines ----------------------------------------------------------------------------------


async def test_silence_mid_answer_is_the_between_chunks_deadline() -> None:
    timeouts = Timeouts(between_chunks=0.3)
    async with (
        SGLangEmulator(answer("a b c"), faults=[Stall(after_chunks=1)]) as emu,
        SGLangBackend(emu.url, timeouts=timeouts) as backend,
    ):
        started = time.monotonic()
        with pytest.raises(BackendTimeoutError, match=r"between_chunks = 0\.3 s"):
            await collect(backend)
    assert time.monotonic() - started < 2


async def test_the_callers_deadline_holds() -> None:
    async with (
        SGLangEmulator(answer("a b c"), faults=[Stall(after_chunks=1)]) as emu,
        SGLangBackend(emu.url) as backend,
    ):
        started = time.monotonic()
        with pytest.raises(BackendTimeoutError):
            await collect(backend, deadline=anyio.current_time() + 0.3)
    assert time.monotonic() - started < 2


# --- answers no SGLang gives (a fake server) --------------------------------------------------


async def _json(payload: Any) -> Handler:
    async def handler(request: web.Request) -> web.StreamResponse:
        return web.json_response(payload)

    return handler


@contextlib.asynccontextmanager
async def fake_sglang(
    generate: Handler, extra: Mapping[str, Handler] | None = None
) -> AsyncIterator[str]:
    routes: Mapping[str, Handler] = {
        "/server_info": await _json({"version": "0.5.5", "max_req_input_len": 8191}),
        "/v1/models": await _json({"data": [{"id": MODEL, "max_model_len": 8192}]}),
        "/model_info": await _json({"model_path": MODEL, "is_generation": True}),
        "/generate": generate,
        **(extra or {}),
    }
    async with fake_ollama(routes) as url:
        yield url


def sse(*events: Any, done: bool = True, forever: bool = False) -> Handler:
    async def handler(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        lines = [
            e if isinstance(e, bytes) else b"data: " + orjson.dumps(e) + b"\n\n" for e in events
        ]
        try:
            while True:
                for line in lines:
                    await response.write(line)
                if not forever:
                    break
            if done:
                await response.write(b"data: [DONE]\n\n")
        except (ConnectionError, RuntimeError):
            pass  # the client went away
        return response

    return handler


def event(
    text: str, tokens: int, finish: Any = None, *, delta: bool = False, **meta: Any
) -> dict[str, Any]:
    """An event as SGLang streams it: the ids of all tokens so far, or of the new one."""
    info = {"finish_reason": finish, "prompt_tokens": 10, "completion_tokens": tokens, **meta}
    return {"text": text, "output_ids": [7] * (1 if delta else tokens), "meta_info": info}


async def test_the_total_deadline_holds_on_a_fast_endless_stream() -> None:
    async with (
        fake_sglang(sse(event("", 1), forever=True)) as url,
        SGLangBackend(url, timeouts=Timeouts(total=0.5)) as backend,
    ):
        started = time.monotonic()
        with pytest.raises(BackendTimeoutError, match=r"Timeouts\.total = 0\.5 s"):
            await collect(backend)
    assert time.monotonic() - started < 1.5


async def test_max_new_tokens_is_enforced_on_the_client() -> None:
    events = [event("x" * (n + 1), n + 1) for n in range(100)]
    async with fake_sglang(sse(*events)) as url, SGLangBackend(url) as backend:
        chunks, done = await collect(backend, GenerateOptions(num_predict=50))
    assert "".join(chunks) == "x" * 50
    assert done.done_reason == "length"
    assert "past its max_new_tokens" in " ".join(done.warnings)


async def test_the_completion_size_is_capped() -> None:
    events = [event("y" * 1000, n + 1, delta=True) for n in range(30)]  # each starts the last
    async with (
        fake_sglang(sse(*events)) as url,
        SGLangBackend(url, max_completion_chars=10_000) as b,
    ):
        chunks, done = await collect(b)
    assert len("".join(chunks)) <= 10_000
    assert done.done_reason == "length"
    assert "the size cap" in " ".join(done.warnings)


@pytest.mark.parametrize(
    ("lines", "says"),
    [
        ([b"data: {not json\n\n"], "not JSON"),
        ([b"data: [1, 2]\n\n"], "not a JSON object"),
        ([b'data: {"text": 7, "meta_info": {}}\n\n'], "not a string"),
        ([b"<html>502</html>\n\n"], "not a server-sent event"),
        ([], r"ended \(\[DONE\]\) without a finish_reason"),
        ([b'data: {"error": {"message": "top_p must be in (0, 1]"}}\n\n'], "rejected .*top_p"),
    ],
)
async def test_malformed_events_are_stream_errors(lines: list[bytes], says: str) -> None:
    async with fake_sglang(sse(event("ok", 1), *lines)) as url, SGLangBackend(url) as backend:
        with pytest.raises(StreamError, match=says):
            await collect(backend)


async def test_a_tokenize_that_refuses_the_request_falls_back_to_local_counts() -> None:
    asked: list[str] = []

    async def refuse(request: web.Request) -> web.StreamResponse:
        asked.append(request.path)
        return web.json_response({"object": "error", "message": "bad", "code": 400}, status=400)

    finish = {"type": "stop", "matched": 128009}
    generate = sse(event("ok", 2, finish, prompt_tokens=11))
    async with (
        fake_sglang(generate, {"/tokenize": refuse}) as url,
        SGLangBackend(url) as backend,
    ):
        for _ in range(2):
            chunks, done = await collect(backend)
            assert "".join(chunks) == "ok<|eot_id|>"
    assert asked == ["/tokenize"]  # not asked again
    assert done.usage.prompt_tokens_sent == 1 + count_tokens(PROMPT[17:])


async def test_a_truncated_prompt_is_a_warning() -> None:
    # --allow-auto-truncate: SGLang evaluates fewer tokens than were sent, and says nothing.
    finish = {"type": "stop", "matched": 128009}
    tokenize = await _json({"tokens": [], "count": 11, "max_model_len": 131072})
    async with (
        fake_sglang(sse(event("ok", 2, finish, prompt_tokens=3)), {"/tokenize": tokenize}) as url,
        SGLangBackend(url) as backend,
    ):
        _, done = await collect(backend)
    assert "--allow-auto-truncate" in " ".join(done.warnings)


# --- end to end -----------------------------------------------------------------------------


async def test_an_agent_runs_a_tool_through_sglang() -> None:
    @tool
    def add(a: int, b: int) -> int:
        """Add two numbers.

        Args:
            a: The first number.
            b: The second number.
        """
        return a + b

    script = call_tool("add", {"a": 2, "b": 40}, then=lambda result: f"It is {result}.")
    async with SGLangEmulator(script) as emu:
        async with Agent(MODEL, tools=[add], backend=SGLangBackend(emu.url)) as agent:
            result = await agent.run("What is 2 + 40?")
        assert result.status == "answered"
        assert result.answer == "It is 42."
        second = emu.completions[-1]
        # The call went back exactly as generated, eom and all: one step's prompt is the last
        # one's plus the completion, so SGLang's radix cache holds all but the new turn.
        call = '<|python_tag|>{"name": "add", "parameters": {"a": 2, "b": 40}}<|eom_id|>'
        assert second.prompt is not None
        assert second.prompt.startswith(emu.completions[0].prompt + call)
        assert second.prompt.count("<|eom_id|>") == 1
        assert second.cached_tokens > emu.completions[0].prompt_tokens


async def test_each_step_extends_the_last_and_is_served_from_the_cache() -> None:
    @tool
    def add(a: int, b: int) -> int:
        """Add two numbers.

        Args:
            a: The first number.
            b: The second number.
        """
        return a + b

    script = call_tools([("add", {"a": 1, "b": 2}), ("add", {"a": 3, "b": 4})], then="3 and 7.")
    async with SGLangEmulator(script) as emu:
        async with Agent(MODEL, tools=[add], backend=SGLangBackend(emu.url)) as agent:
            result = await agent.run("Add twice.")
        assert result.answer == "3 and 7."
        steps = emu.completions
    assert len(steps) == 3
    for before, after in itertools.pairwise(steps):
        assert before.prompt is not None
        assert after.prompt is not None
        assert after.prompt.startswith(before.prompt + before.completion + "<|eom_id|>")
        assert after.cached_tokens > before.prompt_tokens
    later = result.usage.steps[1:]
    assert all(u.prompt_eval_count < u.prompt_tokens_sent / 4 for u in later)

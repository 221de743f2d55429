"""`LlamaCppBackend` against `LlamaCppEmulator`: the protocol, the quirks, the failures."""

from __future__ import annotations

import anyio
import pytest

from agent import Agent, tool
from agent.backends import Done, GenerateOptions, LlamaCppBackend, Retries, TextChunk, Timeouts
from agent.errors import (
    BackendResponseError,
    BackendTimeoutError,
    BackendUnreachableError,
    ContextOverflowError,
    ModelNotFoundError,
    ServerBusyError,
    StreamError,
)
from agent.testing import (
    Busy,
    DropConnection,
    ErrorLine,
    Fault,
    GarbageLine,
    LlamaCppEmulator,
    Stall,
    answer,
    call_tool,
    sequence,
)
from agent.testing._llamacpp import tokenize

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(30)]

PROMPT = (
    "<|begin_of_text|><|start_header_id|>user<|end_header_id|>\n\nHi<|eot_id|>"
    "<|start_header_id|>assistant<|end_header_id|>\n\n"
)
OPTIONS = GenerateOptions()
FAST = Retries(backoff_base=0.01, backoff_max=0.02)


async def collect(
    backend: LlamaCppBackend, prompt: str = PROMPT, options: GenerateOptions = OPTIONS
) -> tuple[str, Done]:
    events = [e async for e in backend.generate(prompt, model="llama3.1", options=options)]
    done = events[-1]
    assert isinstance(done, Done)
    assert all(isinstance(e, TextChunk) for e in events[:-1])
    return "".join(e.text for e in events[:-1] if isinstance(e, TextChunk)), done


async def test_streams_the_answer_with_its_end_token_and_usage() -> None:
    async with LlamaCppEmulator(answer("Hello there.")) as emu, LlamaCppBackend(emu.url) as b:
        text, done = await collect(b)
    assert text == "Hello there.<|eot_id|>"
    assert done.done_reason == "stop"
    sent = len(tokenize(PROMPT.removeprefix("<|begin_of_text|>"), add_special=True))
    assert done.usage.prompt_tokens_sent == sent
    assert done.usage.prompt_eval_count == sent  # a cold cache
    assert done.usage.eval_count == emu.completions[-1].eval_count == 4  # with the end token
    assert done.usage.num_ctx == 8192


async def test_sends_one_bos_cache_prompt_tokens_and_an_explicit_n_predict() -> None:
    async with LlamaCppEmulator(answer("Hi.")) as emu, LlamaCppBackend(emu.url) as b:
        await collect(b)
        await collect(b, options=GenerateOptions(num_predict=7, temperature=0.2, stop=("X",)))
    first, second = emu.completions
    assert not first.body["prompt"].startswith("<|begin_of_text|>")
    assert first.prompt is not None
    assert first.prompt.count("<|begin_of_text|>") == 1  # the server's own
    assert first.body["cache_prompt"] is True
    assert first.body["return_tokens"] is True
    assert first.body["stream"] is True
    assert first.body["model"] == "llama3.1"
    assert first.body["n_predict"] == 2048  # what is left of 8192, at most completion_reserve
    assert (second.body["n_predict"], second.body["temperature"]) == (7, 0.2)
    assert second.body["stop"] == ["X"]
    assert "num_ctx" not in first.body


async def test_n_predict_never_runs_past_the_context() -> None:
    async with (
        LlamaCppEmulator(answer("Hi."), n_ctx=600) as emu,
        LlamaCppBackend(emu.url) as b,
    ):
        await collect(b)
    sent = len(tokenize(PROMPT.removeprefix("<|begin_of_text|>"), add_special=True))
    assert emu.completions[-1].body["n_predict"] == 600 - sent


@pytest.mark.parametrize("special", [False, True])
async def test_python_tag_and_eom_reach_the_loop_once(special: bool) -> None:
    # Without --special both come as empty text with their ids; with it, as text: never twice.
    script = call_tool("brave_search", {"query": "x"})
    async with (
        LlamaCppEmulator(script, special=special) as emu,
        LlamaCppBackend(emu.url) as b,
    ):
        text, done = await collect(b)
    assert text == '<|python_tag|>{"name": "brave_search", "parameters": {"query": "x"}}<|eom_id|>'
    assert done.done_reason == "stop"


async def test_a_new_header_from_the_model_ends_the_answer() -> None:
    script = answer("Hi.<|start_header_id|>user<|end_header_id|>\n\nMore")
    async with LlamaCppEmulator(script) as emu, LlamaCppBackend(emu.url) as b:
        text, done = await collect(b)
    assert (text, done.done_reason) == ("Hi.", "stop")


async def test_length_and_stop_word() -> None:
    async with LlamaCppEmulator(answer("one two three four")) as emu, LlamaCppBackend(emu.url) as b:
        text, done = await collect(b, options=GenerateOptions(num_predict=2))
        assert (text, done.done_reason, done.usage.eval_count) == ("one two", "length", 2)
        text, done = await collect(b, options=GenerateOptions(stop=(" three",)))
        assert (text, done.done_reason) == ("one two", "stop")


async def test_prefix_reuse_is_reported() -> None:
    async with LlamaCppEmulator(answer("Hi.")) as emu, LlamaCppBackend(emu.url) as b:
        text, first = await collect(b)
        second_prompt = PROMPT + text + "<|start_header_id|>user<|end_header_id|>\n\nAnd?<|eot_id|>"
        _, second = await collect(
            b, second_prompt + "<|start_header_id|>assistant<|end_header_id|>\n\n"
        )
    assert second.usage.prompt_eval_count < second.usage.prompt_tokens_sent
    assert emu.completions[-1].cached_tokens > first.usage.prompt_tokens_sent


async def test_api_key_is_sent_as_bearer() -> None:
    async with LlamaCppEmulator(answer("Hi."), api_key="sekret") as emu:
        async with LlamaCppBackend(emu.url, api_key="sekret") as b:
            text, _ = await collect(b)
        assert text == "Hi.<|eot_id|>"
        assert emu.completions[-1].headers["authorization"] == "Bearer sekret"
        async with LlamaCppBackend(emu.url) as b:
            with pytest.raises(BackendResponseError, match="--api-key"):
                await collect(b)


async def test_a_prompt_that_does_not_fit_is_refused_before_sending() -> None:
    async with (
        LlamaCppEmulator(answer("Hi."), n_ctx=300) as emu,
        LlamaCppBackend(emu.url) as b,
    ):
        with pytest.raises(ContextOverflowError) as caught:
            await collect(b, PROMPT + "word " * 400)
    assert caught.value.available == 300
    assert not emu.completions


async def test_the_servers_context_error_is_a_context_overflow_error() -> None:
    # The server was restarted with a smaller context since the backend asked (/props).
    async with LlamaCppEmulator(answer("Hi.")) as emu, LlamaCppBackend(emu.url) as b:
        await collect(b)
        emu.n_ctx = 10
        with pytest.raises(ContextOverflowError) as caught:
            await collect(b)
    assert caught.value.available == 10
    assert caught.value.needed == emu.completions[-1].prompt_tokens


async def test_an_unserved_model_says_how_to_serve_it() -> None:
    async with LlamaCppEmulator(answer("Hi.")) as emu, LlamaCppBackend(emu.url) as b:
        with pytest.raises(ModelNotFoundError, match=r"--alias llama3\.3"):
            await b.model_info("llama3.3")
        info = await b.model_info("llama3.1")
        assert (info.context_length, info.family, info.server_version) == (8192, "3.1", emu_build())
        assert await b.version() == emu_build()


def emu_build() -> str:
    from agent.testing._llamacpp import BUILD_INFO

    return BUILD_INFO


async def test_503_is_retried_then_busy() -> None:
    async with LlamaCppEmulator(answer("Hi."), faults=[Busy(times=2)]) as emu:
        async with LlamaCppBackend(emu.url, retries=FAST) as b:
            text, _ = await collect(b)
        assert text == "Hi.<|eot_id|>"
        assert [r.status for r in emu.completions] == [503, 503, 200]
        emu.inject(Busy(times=None))
        async with LlamaCppBackend(
            emu.url, retries=Retries(busy_attempts=3, backoff_base=0.01)
        ) as b:
            with pytest.raises(ServerBusyError, match="busy"):
                await collect(b)


async def test_a_loading_server_is_waited_for() -> None:
    faults = [Busy(paths=("/props", "/tokenize"), times=3)]
    async with LlamaCppEmulator(answer("Hi."), faults=faults) as emu:
        async with LlamaCppBackend(emu.url, retries=FAST) as b:
            text, _ = await collect(b)
        assert text == "Hi.<|eot_id|>"
        assert [r.status for r in emu.requests][:4] == [503, 503, 503, 200]
        emu.inject(Busy(paths=("/props",), times=None))
        async with LlamaCppBackend(emu.url, retries=FAST) as b:
            with pytest.raises(ServerBusyError, match="loading"):
                await b.version()


async def test_unreachable() -> None:
    async with LlamaCppEmulator(answer("Hi.")) as emu:
        url = emu.url
    async with LlamaCppBackend(url) as b:
        with pytest.raises(BackendUnreachableError, match="llama-server"):
            await collect(b)


async def test_deadlines() -> None:
    async with LlamaCppEmulator(answer("one two three"), faults=[Stall(after_chunks=1)]) as emu:
        timeouts = Timeouts(between_chunks=0.3)
        async with LlamaCppBackend(emu.url, timeouts=timeouts) as b:
            with pytest.raises(BackendTimeoutError, match="between_chunks"):
                await collect(b)
        emu.latency = 5.0
        async with LlamaCppBackend(emu.url, timeouts=Timeouts(first_chunk=0.3)) as b:
            with pytest.raises(BackendTimeoutError, match="first_chunk"):
                await collect(b)
        async with LlamaCppBackend(emu.url) as b:
            with pytest.raises(BackendTimeoutError, match="total"):
                async for _ in b.generate(
                    PROMPT, model="llama3.1", options=OPTIONS, deadline=anyio.current_time() + 0.3
                ):
                    pass


async def test_the_completion_size_cap_cuts_the_answer() -> None:
    async with (
        LlamaCppEmulator(answer("word " * 50)) as emu,
        LlamaCppBackend(emu.url, max_completion_chars=20) as b,
    ):
        text, done = await collect(b)
    assert len(text) <= 20
    assert done.done_reason == "length"
    assert "cut" in done.warnings[0]


@pytest.mark.parametrize(
    ("fault", "message"),
    [(GarbageLine(after_chunks=1), "not an SSE event"), (ErrorLine(after_chunks=1), "error")],
)
async def test_malformed_streams_are_stream_errors(fault: Fault, message: str) -> None:
    async with (
        LlamaCppEmulator(answer("one two"), faults=[fault]) as emu,
        LlamaCppBackend(emu.url) as b,
    ):
        with pytest.raises(StreamError, match=message):
            await collect(b)


async def test_a_dropped_stream_is_resumed() -> None:
    script = sequence("one two three four<|eot_id|>")
    async with (
        LlamaCppEmulator(script, faults=[DropConnection(after_chunks=2)]) as emu,
        LlamaCppBackend(emu.url) as b,
    ):
        text, done = await collect(b)
    assert text == "one two three four<|eot_id|>"
    assert "resumed" in done.warnings[0]
    first, second = emu.completions
    assert second.body["prompt"].endswith("one two")
    assert second.body["n_predict"] == first.body["n_predict"] - 2


async def test_an_agent_calls_a_tool_end_to_end() -> None:
    @tool
    def add(a: int, b: int) -> int:
        """Add two numbers."""
        return a + b

    script = call_tool("add", {"a": 1, "b": 2}, then=lambda result: f"It is {result}.")
    async with LlamaCppEmulator(script) as emu:
        backend = LlamaCppBackend(emu.url)
        async with Agent(backend=backend, tools=[add]) as agent:
            result = await agent.run("What is 1 + 2?")
    assert (result.status, result.answer) == ("answered", "It is 3.")
    assert len(emu.completions) == 2
    # Step 2 repeats step 1's prompt and completion byte for byte: the slot reuses it all.
    first, second = emu.completions
    assert first.prompt is not None
    assert second.prompt is not None
    call = '<|python_tag|>{"name": "add", "parameters": {"a": 1, "b": 2}}<|eom_id|>'
    assert second.prompt.startswith(first.prompt + call)
    assert second.cached_tokens >= first.prompt_tokens


async def test_the_family_comes_from_the_served_file_then_the_name() -> None:
    path = "/models/Llama-3.2-3B-Instruct-Q8_0.gguf"
    async with (
        LlamaCppEmulator(alias="default", model_path=path) as emu,
        LlamaCppBackend(emu.url) as b,
    ):
        assert (await b.model_info("default")).family == "3.2"
    async with (
        LlamaCppEmulator(alias="meta-llama/Llama-3.3-70B-Instruct", model_path="/m.gguf") as emu,
        LlamaCppBackend(emu.url) as b,
    ):
        info = await b.ensure_model("meta-llama/Llama-3.3-70B-Instruct", tools=True)
        assert (info.family, info.supports_tools) == ("3.3", True)


async def test_concurrency_gate_and_no_connection_left_open() -> None:
    in_flight = peak = 0

    async def slow(request: object) -> str:
        nonlocal in_flight, peak
        in_flight += 1
        peak = max(peak, in_flight)
        await anyio.sleep(0.05)
        in_flight -= 1
        return "Hi.<|eot_id|>"

    async with LlamaCppEmulator(slow) as emu:
        backend = LlamaCppBackend(emu.url, concurrency=2)
        async with anyio.create_task_group() as group:
            for _ in range(6):
                group.start_soon(collect, backend)
        assert (peak, len(emu.completions)) == (2, 6)
        await backend.aclose()
        with anyio.fail_after(5):
            while emu.open_connections:  # noqa: ASYNC110 - nothing to wait on but the count
                await anyio.sleep(0.01)


def test_the_emulator_runs_in_a_thread_for_synchronous_code() -> None:
    import httpx

    with LlamaCppEmulator(answer("Hi.")).start_in_thread() as emu:
        assert httpx.get(emu.url + "/health").json() == {"status": "ok"}
        emu.portal.call(emu.refuse_connections)
        with pytest.raises(httpx.ConnectError):
            httpx.get(emu.url + "/health")
        emu.portal.call(emu.accept_connections)
        assert httpx.get(emu.url + "/health").status_code == 200

"""`VLLMBackend` over real loopback HTTP, against `VLLMEmulator` (and, for the answers the
emulator does not give, a scripted aiohttp server)."""

from __future__ import annotations

import contextlib
import socket
from collections.abc import AsyncIterator, Mapping
from typing import Any

import anyio
import orjson
import pytest
from aiohttp import web

from agent import Agent, tool
from agent.backends import Done, GenerateOptions, Retries, TextChunk, Timeouts, VLLMBackend
from agent.backends._vllm_api import context_numbers
from agent.errors import (
    BackendResponseError,
    BackendTimeoutError,
    BackendUnreachableError,
    ContextOverflowError,
    ModelNotFoundError,
    ServerBusyError,
    StreamError,
)
from agent.llama3 import PYTHON_TAG, count_tokens, parse_completion
from agent.testing import (
    Busy,
    DropConnection,
    ErrorLine,
    GarbageLine,
    ScriptRequest,
    Stall,
    VLLMEmulator,
    answer,
    call_tool,
    sequence,
)

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(60)]

BOT = "<|begin_of_text|>"
BODY = (
    "<|start_header_id|>user<|end_header_id|>\n\nHi<|eot_id|>"
    "<|start_header_id|>assistant<|end_header_id|>\n\n"
)
PROMPT = BOT + BODY
MODEL = "meta-llama/Llama-3.1-8B-Instruct"


async def collect(
    backend: VLLMBackend, prompt: str = PROMPT, model: str = MODEL, **options: Any
) -> tuple[str, Done]:
    chunks: list[str] = []
    done: Done | None = None
    async for event in backend.generate(prompt, model=model, options=GenerateOptions(**options)):
        if isinstance(event, TextChunk):
            assert done is None
            chunks.append(event.text)
        else:
            done = event
    assert done is not None
    return "".join(chunks), done


# --- the request --------------------------------------------------------------------------------


async def test_the_request_keeps_one_bos_special_tokens_and_an_explicit_max_tokens() -> None:
    async with VLLMEmulator(answer("Hello there.")) as emu, VLLMBackend(emu.url) as backend:
        text, done = await collect(backend, temperature=0.0, seed=7, top_p=0.9, top_k=20)
        body = emu.completions[-1].body
        tokenized = next(r for r in emu.requests if r.path == "/tokenize")
    assert text == "Hello there.<|eot_id|>"
    assert body["prompt"] == PROMPT
    assert body["add_special_tokens"] is False
    assert body["skip_special_tokens"] is False
    assert body["stream"] is True
    assert body["stream_options"] == {"include_usage": True}
    assert (body["temperature"], body["seed"], body["top_p"], body["top_k"]) == (0.0, 7, 0.9, 20)
    # The model saw one BOS (the prompt's own), and /tokenize counted exactly what was sent.
    assert emu.completions[-1].prompt.count(BOT) == 1
    assert tokenized.body["add_special_tokens"] is False
    assert done.usage.prompt_tokens_sent == emu.completions[-1].prompt_tokens
    assert body["max_tokens"] == 2048  # unset num_predict: the completion reserve
    assert done.usage.num_ctx == 131072
    assert done.usage.eval_count == emu.completions[-1].eval_count


async def test_a_prompt_without_its_bos_text_still_gets_exactly_one() -> None:
    async with VLLMEmulator(answer("Hi.")) as emu, VLLMBackend(emu.url) as backend:
        await collect(backend, prompt=BODY)
        assert emu.completions[-1].prompt == PROMPT


async def test_max_tokens_is_num_predict_or_what_is_left_of_the_context() -> None:
    async with VLLMEmulator(answer("one two three four five six")) as emu:
        async with VLLMBackend(emu.url) as backend:
            text, done = await collect(backend, num_predict=3)
            assert emu.completions[-1].body["max_tokens"] == 3
            assert (text, done.done_reason) == ("one two three", "length")
        async with VLLMBackend(emu.url, completion_reserve=1 << 20) as backend:
            await collect(backend)
            sent = emu.completions[-1].prompt_tokens
            assert emu.completions[-1].body["max_tokens"] == 131072 - sent


async def test_stop_strings_go_to_vllm_and_end_the_text_without_an_end_token() -> None:
    async with VLLMEmulator(answer("Hello there. General Kenobi.")) as emu:
        async with VLLMBackend(emu.url) as backend:
            text, done = await collect(backend, stop=["Kenobi", "Kenobi"])
        assert emu.completions[-1].body["stop"] == ["Kenobi"]
    assert (text, done.done_reason) == ("Hello there. General ", "stop")


# --- what comes back ---------------------------------------------------------------------------


async def test_a_builtin_call_keeps_its_python_tag_and_ends_as_end_of_message() -> None:
    script = call_tool("brave_search", {"query": "x"})
    async with VLLMEmulator(script) as emu, VLLMBackend(emu.url) as backend:
        text, done = await collect(backend)
    assert text.startswith(PYTHON_TAG)
    assert text.endswith("<|eom_id|>")
    assert parse_completion(text).stop_reason == "end_of_message"
    assert done.done_reason == "stop"


async def test_the_models_own_eos_ends_the_turn_exactly() -> None:
    # A JSON call ended by <|eot_id|> (as Llama 3.1 ends custom tool calls) stays end_of_turn:
    # the stop_reason says so, where Ollama's path has to infer it from the call's form.
    reply = '{"name": "add", "parameters": {"a": 1}}<|eot_id|>'
    async with VLLMEmulator(sequence(reply)) as emu, VLLMBackend(emu.url) as backend:
        text, _ = await collect(backend)
    assert text == reply
    parsed = parse_completion(text, tools=["add"])
    assert parsed.stop_reason == "end_of_turn"
    assert parsed.tool_calls[0].name == "add"


async def test_end_of_text_and_a_length_cut_add_no_end_token() -> None:
    async with VLLMEmulator(sequence("Bye.<|end_of_text|>")) as emu, VLLMBackend(emu.url) as b:
        assert (await collect(b))[0] == "Bye."
    async with VLLMEmulator(answer("a b c d")) as emu, VLLMBackend(emu.url) as backend:
        text, done = await collect(backend, num_predict=2)
    assert (text, done.done_reason) == ("a b", "length")


async def test_cached_prompt_tokens_are_reported_apart_from_the_evaluated_ones() -> None:
    script = sequence("First.", "Second.")
    async with (
        VLLMEmulator(script, enable_prompt_tokens_details=True) as emu,
        VLLMBackend(emu.url) as backend,
    ):
        long = BOT + "<|start_header_id|>user<|end_header_id|>\n\n" + "Say more. " * 40
        prompt = long + "<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n"
        first, _ = await collect(backend, prompt=prompt)
        follow = prompt + first + "<|start_header_id|>user<|end_header_id|>\n\nMore<|eot_id|>"
        _, done = await collect(backend, prompt=follow + "<|start_header_id|>assistant")
        record = emu.completions[-1]
    assert record.cached_tokens > 0
    assert done.usage.cached_tokens == record.cached_tokens
    assert done.usage.prompt_eval_count == record.prompt_tokens - record.cached_tokens


# --- the model ---------------------------------------------------------------------------------


async def test_model_info_reads_max_model_len_and_the_family_from_the_loaded_path() -> None:
    async with VLLMEmulator(
        model="meta-llama/Llama-3.3-70B-Instruct",
        served_model_names=["llama", "default"],
        max_model_len=65536,
        version="0.11.2",
    ) as emu:
        async with VLLMBackend(emu.url) as backend:
            info = await backend.model_info("default")
            assert await backend.model_info("default") is info
            await backend.ensure_model("default", tools=True)
            assert await backend.version() == "0.11.2"
        assert [r.path for r in emu.requests] == ["/v1/models", "/version"]
    assert (info.context_length, info.family, info.server_version) == (65536, "3.3", "0.11.2")
    assert info.supports_tools


async def test_an_unknown_model_names_the_served_ones_and_how_to_serve_it() -> None:
    async with VLLMEmulator(served_model_names=["llama"]) as emu, VLLMBackend(emu.url) as b:
        with pytest.raises(ModelNotFoundError, match="serves: llama") as caught:
            await collect(b, model="meta-llama/Llama-3.1-70B-Instruct")
    assert "vllm serve" in str(caught.value)
    assert "ollama pull" not in str(caught.value)


async def test_a_server_restarted_with_another_model_is_model_not_found() -> None:
    async with VLLMEmulator(answer("Hi.")) as emu, VLLMBackend(emu.url) as backend:
        await collect(backend)
        emu.served_model_names = ("meta-llama/Llama-3.2-3B-Instruct",)
        with pytest.raises(ModelNotFoundError, match=r"Llama-3\.2-3B-Instruct"):
            await collect(backend)


# --- auth --------------------------------------------------------------------------------------


async def test_the_api_key_goes_as_a_bearer_token() -> None:
    async with VLLMEmulator(answer("Hi."), api_key="s3cret") as emu:
        async with VLLMBackend(emu.url, api_key="s3cret") as backend:
            assert (await collect(backend))[0] == "Hi.<|eot_id|>"
        assert emu.completions[-1].headers["authorization"] == "Bearer s3cret"


async def test_vllm_api_key_from_the_environment_is_the_default(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("VLLM_API_KEY", "from-env")
    async with VLLMEmulator(answer("Hi."), api_key="from-env") as emu, VLLMBackend(emu.url) as b:
        assert (await collect(b))[0] == "Hi.<|eot_id|>"


@pytest.mark.parametrize("key", [None, "wrong"])
async def test_a_401_says_to_pass_the_key(key: str | None, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("VLLM_API_KEY", raising=False)
    async with VLLMEmulator(api_key="s3cret") as emu, VLLMBackend(emu.url, api_key=key) as b:
        with pytest.raises(BackendResponseError, match="VLLM_API_KEY") as caught:
            await collect(b)
    assert caught.value.status_code == 401
    assert ("rejected" in str(caught.value)) == (key is not None)


# --- the context -------------------------------------------------------------------------------


async def test_a_prompt_that_does_not_fit_is_refused_before_it_is_sent() -> None:
    async with VLLMEmulator(max_model_len=64) as emu, VLLMBackend(emu.url) as backend:
        with pytest.raises(ContextOverflowError) as caught:
            await collect(backend, prompt=PROMPT + "word " * 100)
        assert not emu.completions
    assert caught.value.available == 64
    assert "--max-model-len" in str(caught.value)
    assert "ollama" not in str(caught.value)
    assert caught.value.prompt_tokens is not None
    assert caught.value.prompt_tokens > 100


WORDINGS = [
    # ≤ 0.9
    "This model's maximum context length is 8192 tokens. However, you requested 9000 tokens "
    "(7000 in the messages, 2000 in the completion). Please reduce the length of the messages "
    "or completion.",
    # 0.10-0.11
    "'max_tokens' or 'max_completion_tokens' is too large: 2000. This model's maximum context "
    "length is 8192 tokens and your request has 7000 input tokens (2000 > 8192 - 7000).",
    # 0.11-0.12
    "This model's maximum context length is 8192 tokens. However, you requested 2000 output "
    "tokens and your prompt contains at least 7000 input tokens, for a total of at least 9000 "
    "tokens. Please reduce the length of the input prompt or the number of requested output "
    "tokens. (parameter=input_tokens, value=7000)",
    # renderers/params.py
    "You passed 7000 input tokens and requested 2000 output tokens. However, the model's "
    "context length is only 8192 tokens, resulting in a maximum input length of 6192 tokens. "
    "Please reduce the length of the input prompt.",
]


@pytest.mark.parametrize("message", WORDINGS)
def test_every_context_wording_gives_its_numbers(message: str) -> None:
    assert context_numbers(message) == (8192, 7000, 2000)


@pytest.mark.parametrize(
    ("message", "expected"),
    [
        (
            "This model's maximum context length is 8192 tokens. However, your request has 9000 "
            "input tokens. Please reduce the length of the input messages.",
            (8192, 9000, None),
        ),
        (
            "The decoder prompt (length 9000) is longer than the maximum model length of 8192. "
            "Make sure that `max_model_len` is no smaller than the number of text tokens.",
            (8192, 9000, None),
        ),
        (
            "You passed 70000 input characters and requested 2000 output tokens. However, the "
            "model's context length is only 8192 tokens, resulting in a maximum input length of "
            "6192 tokens (at most 61920 characters).",
            (8192, None, 2000),
        ),
    ],
)
def test_the_other_context_wordings(message: str, expected: tuple[int | None, ...]) -> None:
    assert context_numbers(message) == expected


@contextlib.asynccontextmanager
async def fake_vllm(
    completions: Any, *, context: int = 131072, extra: Mapping[str, Any] | None = None
) -> AsyncIterator[str]:
    """vLLM's small endpoints as the emulator answers them, and `completions` as given."""

    async def models(request: web.Request) -> web.StreamResponse:
        data = [{"id": MODEL, "object": "model", "root": MODEL, "max_model_len": context}]
        return web.json_response({"object": "list", "data": data})

    async def version(request: web.Request) -> web.StreamResponse:
        return web.json_response({"version": "0.11.0"})

    async def tokenize(request: web.Request) -> web.StreamResponse:
        return web.json_response({"count": 20, "max_model_len": context, "tokens": [0] * 20})

    app = web.Application()
    routes = {"/v1/models": models, "/version": version, "/tokenize": tokenize}
    routes.update({"/v1/completions": completions, **(extra or {})})
    for path, handler in routes.items():
        if handler is not None:
            app.router.add_route("*", path, handler)
    runner = web.AppRunner(app, shutdown_timeout=0.1)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        await runner.cleanup()


def respond(status: int, payload: Any) -> Any:
    async def handler(request: web.Request) -> web.StreamResponse:
        return web.json_response(payload, status=status)

    return handler


@pytest.mark.parametrize("shape", ["nested", "flat"])
async def test_the_servers_context_400_is_the_same_error_as_ollamas(shape: str) -> None:
    info = {"message": WORDINGS[0], "type": "BadRequestError", "param": None, "code": 400}
    payload = {"error": info} if shape == "nested" else {"object": "error", **info}
    async with fake_vllm(respond(400, payload)) as url, VLLMBackend(url) as backend:
        with pytest.raises(ContextOverflowError) as caught:
            await collect(backend)
    error = caught.value
    assert (error.needed, error.available, error.prompt_tokens) == (9000, 8192, 7000)
    assert error.model == MODEL


async def test_a_400_without_numbers_falls_back_on_the_backends_own() -> None:
    payload = {"error": {"message": "maximum context length is exceeded", "code": 400}}
    async with fake_vllm(respond(400, payload)) as url, VLLMBackend(url) as backend:
        with pytest.raises(ContextOverflowError) as caught:
            await collect(backend, num_predict=100)
    assert (caught.value.prompt_tokens, caught.value.needed) == (20, 120)


async def test_other_error_statuses_keep_the_servers_message() -> None:
    payload = {"error": {"message": "temperature must be non-negative", "code": 400}}
    async with fake_vllm(respond(400, payload)) as url, VLLMBackend(url) as backend:
        with pytest.raises(BackendResponseError, match="temperature must be non-negative"):
            await collect(backend)


async def test_without_tokenize_prompts_are_counted_locally() -> None:
    async def stream(request: web.Request) -> web.StreamResponse:
        return await sse(request, choice("Hi.", "stop", None), "[DONE]")

    async with fake_vllm(stream, extra={"/tokenize": None}) as url, VLLMBackend(url) as backend:
        text, done = await collect(backend)
        await collect(backend)
    assert text == "Hi.<|eot_id|>"
    assert done.usage.prompt_tokens_sent == count_tokens(PROMPT)  # its BOS text counts as one


# --- busy, drops, faults -----------------------------------------------------------------------


FAST = Retries(busy_attempts=3, backoff_base=0.01, backoff_max=0.02)


async def test_503_is_retried_with_backoff() -> None:
    async with VLLMEmulator(answer("Hi."), faults=[Busy(times=2)]) as emu:
        async with VLLMBackend(emu.url, retries=FAST) as backend:
            assert (await collect(backend))[0] == "Hi.<|eot_id|>"
        assert [r.status for r in emu.completions] == [503, 503, 200]


async def test_a_server_that_stays_busy_is_server_busy_error() -> None:
    async with VLLMEmulator(faults=[Busy(times=None)]) as emu:
        async with VLLMBackend(emu.url, retries=FAST) as backend:
            with pytest.raises(ServerBusyError, match="503"):
                await collect(backend)
        assert len(emu.completions) == 3


async def test_a_dropped_stream_is_resumed_from_the_text_already_sent() -> None:
    reply = "One two three four five."
    async with VLLMEmulator(sequence(reply), faults=[DropConnection(after_chunks=3)]) as emu:
        async with VLLMBackend(emu.url) as backend:
            text, done = await collect(backend)
        first, second = emu.completions
    assert text == reply + "<|eot_id|>"
    assert second.body["prompt"] == PROMPT + "One two three"
    assert second.body["max_tokens"] == first.body["max_tokens"] - 3
    assert any("resumed" in w for w in done.warnings)


async def test_a_stream_that_keeps_dropping_is_a_stream_error() -> None:
    async with (
        VLLMEmulator(answer("a b c"), faults=[DropConnection(after_chunks=1, times=None)]) as emu,
        VLLMBackend(emu.url) as backend,
    ):
        with pytest.raises(StreamError, match="broke off 2 times"):
            await collect(backend)


@pytest.mark.parametrize(
    ("fault", "match"),
    [(GarbageLine(after_chunks=1), "not JSON"), (ErrorLine(after_chunks=1), "error in the middle")],
)
async def test_malformed_or_error_events_are_stream_errors(fault: Any, match: str) -> None:
    async with VLLMEmulator(answer("a b c"), faults=[fault]) as emu, VLLMBackend(emu.url) as b:
        with pytest.raises(StreamError, match=match):
            await collect(b)


async def test_a_stall_between_tokens_hits_between_chunks() -> None:
    timeouts = Timeouts(between_chunks=0.2)
    async with (
        VLLMEmulator(answer("a b c"), faults=[Stall(after_chunks=1)]) as emu,
        VLLMBackend(emu.url, timeouts=timeouts) as backend,
    ):
        with pytest.raises(BackendTimeoutError, match="between_chunks"):
            await collect(backend)


async def test_a_slow_first_token_hits_first_chunk() -> None:
    async with (
        VLLMEmulator(answer("a"), latency=5) as emu,
        VLLMBackend(emu.url, timeouts=Timeouts(first_chunk=0.2)) as backend,
    ):
        with pytest.raises(BackendTimeoutError, match="first_chunk"):
            await collect(backend)


def choice(text: str, finish: str | None = None, stop: Any = None) -> bytes:
    event = {"id": "cmpl-1", "object": "text_completion", "created": 0, "model": MODEL}
    event["choices"] = [{"index": 0, "text": text, "finish_reason": finish, "stop_reason": stop}]
    return b"data: " + orjson.dumps(event) + b"\n\n"


async def sse(
    request: web.Request, *events: bytes | str, forever: bytes = b""
) -> web.StreamResponse:
    response = web.StreamResponse(headers={"Content-Type": "text/event-stream; charset=utf-8"})
    await response.prepare(request)
    for event in events:
        await response.write(event if isinstance(event, bytes) else f"data: {event}\n\n".encode())
    with contextlib.suppress(ConnectionError, RuntimeError):
        while forever:
            await response.write(forever * 200)
    return response


async def test_the_callers_deadline_holds_against_a_server_that_streams_too_fast() -> None:
    async def endless(request: web.Request) -> web.StreamResponse:
        return await sse(request, forever=choice("x"))

    options = GenerateOptions(num_predict=10**8)  # no cap before the deadline
    async with fake_vllm(endless, context=10**9) as url, VLLMBackend(url) as backend:
        deadline = anyio.current_time() + 0.5
        with pytest.raises(BackendTimeoutError):
            async for _ in backend.generate(
                PROMPT, model=MODEL, options=options, deadline=deadline
            ):
                pass


async def test_a_server_that_ignores_max_tokens_is_cut_as_length() -> None:
    async def endless(request: web.Request) -> web.StreamResponse:
        return await sse(request, forever=choice("x"))

    async with fake_vllm(endless) as url, VLLMBackend(url) as backend:
        text, done = await collect(backend, num_predict=5)
    assert (text, done.done_reason) == ("xxxxx", "length")
    assert "past its max_tokens" in done.warnings[0]


async def test_the_completion_size_cap_cuts_as_length() -> None:
    async with (
        VLLMEmulator(answer("word " * 200)) as emu,
        VLLMBackend(emu.url, max_completion_chars=50) as backend,
    ):
        text, done = await collect(backend)
    assert len(text) <= 50
    assert done.done_reason == "length"


async def test_an_overlong_event_line_is_a_stream_error() -> None:
    async with (
        VLLMEmulator(sequence(("y" * 5000,))) as emu,
        VLLMBackend(emu.url, max_line_bytes=1024) as backend,
    ):
        with pytest.raises(StreamError, match="longer than 1024 bytes"):
            await collect(backend)


@pytest.mark.parametrize(
    "events",
    [
        [choice("a")],  # ends without a finish_reason: dropped, then again
        [b"<html>502</html>\n"],
        [b'data: {"object": "text_completion"}\n\n'],
        ["[DONE]"],
    ],
)
async def test_answers_vllm_would_not_send_are_stream_errors(events: list[Any]) -> None:
    async def handler(request: web.Request) -> web.StreamResponse:
        return await sse(request, *events)

    async with fake_vllm(handler) as url, VLLMBackend(url) as backend:
        with pytest.raises(StreamError):
            await collect(backend)


async def test_a_refused_connection_is_backend_unreachable() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    async with VLLMBackend(f"127.0.0.1:{port}") as backend:
        with pytest.raises(BackendUnreachableError, match="vllm serve"):
            await collect(backend)


def test_hosts_take_vllms_port_and_an_openai_base_url() -> None:
    assert VLLMBackend("gpu-box").url == "http://gpu-box:8000"
    assert VLLMBackend().url == "http://127.0.0.1:8000"
    assert VLLMBackend("http://gpu-box:8000/v1").url == "http://gpu-box:8000"
    with pytest.raises(ValueError, match="invalid vLLM host"):
        VLLMBackend("ftp://gpu-box")


# --- the loop ----------------------------------------------------------------------------------


@tool
def add(a: int, b: int) -> int:
    """Add two numbers."""
    return a + b


async def test_an_agent_runs_a_tool_call_through_vllm() -> None:
    def script(request: ScriptRequest) -> str:
        if request.tool_results:
            return f"The sum is {request.tool_results[-1]}.<|eot_id|>"
        return '<|python_tag|>{"name": "add", "parameters": {"a": 2, "b": 3}}<|eom_id|>'

    async with VLLMEmulator(script, enable_prompt_tokens_details=True) as emu:
        async with VLLMBackend(emu.url) as backend:
            agent = Agent(backend=backend, model=emu.model, tools=[add])
            result = await agent.run("What is 2 + 3?")
        first, second = emu.completions
    assert result.status == "answered"
    assert result.answer == "The sum is 5."
    # The second prompt holds the call exactly as the model wrote it, with its one <|eom_id|>.
    call = '<|python_tag|>{"name": "add", "parameters": {"a": 2, "b": 3}}<|eom_id|>'
    assert second.body["prompt"].startswith(first.body["prompt"] + call + "<|start_header_id|>")
    assert second.body["prompt"].count("<|eom_id|>") == 1
    assert second.cached_tokens > 0  # the prefix cache served the first prompt again


async def test_a_stream_that_breaks_after_its_finish_is_not_sent_again() -> None:
    async def handler(request: web.Request) -> web.StreamResponse:
        response = await sse(request, choice("Hi.", "stop", 128008))
        request.transport.abort()  # type: ignore[union-attr]  # no usage, no [DONE]: a reset
        return response

    calls = 0

    async def counted(request: web.Request) -> web.StreamResponse:
        nonlocal calls
        calls += 1
        return await handler(request)

    async with fake_vllm(counted) as url, VLLMBackend(url) as backend:
        text, done = await collect(backend)
    assert (text, done.done_reason, calls) == ("Hi.<|eom_id|>", "stop", 1)


async def test_leaving_the_stream_early_aborts_the_request_on_the_server() -> None:
    async with VLLMEmulator(answer("a b c d e f g h"), token_rate=20) as emu:
        async with VLLMBackend(emu.url) as backend:
            stream = backend.generate(PROMPT, model=MODEL, options=GenerateOptions())
            async with contextlib.aclosing(stream) as events:
                async for event in events:
                    assert isinstance(event, TextChunk)
                    break
        with anyio.fail_after(10):
            while not emu.completions[-1].cancelled:  # noqa: ASYNC110 - the emulator has no event for it
                await anyio.sleep(0.01)
        assert not emu.completions[-1].finished


async def test_concurrency_bounds_the_requests_in_flight() -> None:
    in_flight = peak = 0

    async def script(request: ScriptRequest) -> str:
        nonlocal in_flight, peak
        in_flight += 1
        peak = max(peak, in_flight)
        await anyio.sleep(0.05)
        in_flight -= 1
        return "Hi.<|eot_id|>"

    async with (
        VLLMEmulator(script) as emu,
        VLLMBackend(emu.url, concurrency=2) as backend,
        anyio.create_task_group() as group,
    ):
        for _ in range(6):
            group.start_soon(collect, backend)
    assert len(emu.completions) == 6
    assert peak == 2

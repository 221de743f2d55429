"""Every error path of `OllamaBackend`, through real loopback HTTP (and MockTransport where a
real server cannot easily produce the case)."""

from __future__ import annotations

import json
import socket
from collections.abc import AsyncIterator

import anyio
import httpx
import pytest
from aiohttp import web

from agent.backends import (
    Done,
    GenerateOptions,
    OllamaBackend,
    Retries,
    TextChunk,
    Timeouts,
)
from agent.errors import (
    BackendResponseError,
    BackendTimeoutError,
    OllamaBusyError,
    OllamaUnreachableError,
    StreamError,
)
from agent.testing import (
    Busy,
    DropConnection,
    ErrorLine,
    GarbageLine,
    OllamaEmulator,
    ServerError,
    Stall,
    answer,
)
from tests.backends.fake_server import fake_ollama, ndjson

pytestmark = pytest.mark.anyio

BODY = (
    "<|start_header_id|>user<|end_header_id|>\n\nHi<|eot_id|>"
    "<|start_header_id|>assistant<|end_header_id|>\n\n"
)
PROMPT = "<|begin_of_text|>" + BODY
REPLY = "one two three four five"
FAST = Retries(backoff_base=0.001, backoff_max=0.005)


@pytest.fixture(params=["aiohttp", "httpx"])
def transport(request: pytest.FixtureRequest) -> str:
    """Error translation must hold on our transport and on httpx's default one."""
    return str(request.param)


def make_backend(url: str, transport: str, **kwargs: object) -> OllamaBackend:
    if transport == "httpx":
        kwargs["transport"] = httpx.AsyncHTTPTransport()
    return OllamaBackend(url, retries=kwargs.pop("retries", FAST), **kwargs)  # type: ignore[arg-type]


async def collect(
    backend: OllamaBackend, prompt: str = PROMPT, *, chunked: bool = True
) -> tuple[list[str], Done]:
    chunks: list[str] = []
    done: Done | None = None
    events = backend.generate(prompt, model="llama3.1", options=GenerateOptions(), chunked=chunked)
    async for event in events:
        if isinstance(event, TextChunk):
            chunks.append(event.text)
        else:
            done = event
    assert done is not None
    return chunks, done


@pytest.fixture
async def emu() -> AsyncIterator[OllamaEmulator]:
    async with OllamaEmulator(answer(REPLY)) as emulator:
        yield emulator


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def test_unreachable_server(transport: str) -> None:
    url = f"http://127.0.0.1:{free_port()}"
    async with make_backend(url, transport) as backend:
        with pytest.raises(OllamaUnreachableError) as caught:
            await collect(backend)
    message = str(caught.value)
    assert url in message
    assert "(connection refused)" in message  # the real cause, not the transport's wrapper type
    assert "ollama serve" in message
    assert "OLLAMA_HOST" in message


async def test_server_gone_while_streaming_calls(transport: str, emu: OllamaEmulator) -> None:
    async with make_backend(emu.url, transport) as backend:
        await collect(backend)
        await emu.refuse_connections()
        with pytest.raises(OllamaUnreachableError):
            await collect(backend)


async def test_busy_is_retried_then_succeeds(transport: str, emu: OllamaEmulator) -> None:
    emu.inject(Busy(times=2))
    async with make_backend(emu.url, transport) as backend:
        chunks, _ = await collect(backend)
    assert "".join(chunks) == REPLY
    assert [r.status for r in emu.completions] == [503, 503, 200]


async def test_busy_too_long_is_an_error(transport: str, emu: OllamaEmulator) -> None:
    emu.inject(Busy(times=None))
    async with make_backend(
        emu.url, transport, retries=Retries(busy_attempts=3, backoff_base=0.001)
    ) as backend:
        with pytest.raises(OllamaBusyError, match="concurrency"):
            await collect(backend)
    assert len(emu.completions) == 3


async def test_drop_before_text_is_retried_transparently(
    transport: str, emu: OllamaEmulator
) -> None:
    emu.inject(DropConnection(after_chunks=0))
    async with make_backend(emu.url, transport) as backend:
        chunks, done = await collect(backend)
    assert "".join(chunks) == REPLY
    assert done.warnings == ()
    assert len(emu.completions) == 2


async def test_drop_after_text_resumes_where_it_broke(transport: str, emu: OllamaEmulator) -> None:
    emu.inject(DropConnection(after_chunks=2))
    async with make_backend(emu.url, transport) as backend:
        chunks, done = await collect(backend)
    assert "".join(chunks) == REPLY  # nothing repeated, nothing lost
    assert chunks[:2] == ["one", " two"]
    assert len(done.warnings) == 1
    assert "resumed" in done.warnings[0]
    _first, second = emu.completions
    assert second.body["prompt"] == BODY + "one two"  # the model continues its own text
    assert done.usage.eval_count == 2 + (second.eval_count or 0)


async def test_unchunked_text_comes_whole_before_done_resumed_or_not(
    transport: str, emu: OllamaEmulator
) -> None:
    # `chunked=False` (Agent.run reads no chunk): one TextChunk, the whole text, then Done.
    async with make_backend(emu.url, transport) as backend:
        assert backend.takes_chunked
        chunks, done = await collect(backend, chunked=False)
        assert chunks == [REPLY]
        assert done.warnings == ()
        emu.inject(DropConnection(after_chunks=2))
        chunks, done = await collect(backend, chunked=False)
    assert chunks == [REPLY]  # what came before the break and after it, once
    assert "resumed" in done.warnings[0]
    assert emu.completions[-1].body["prompt"] == BODY + "one two"


async def test_second_drop_is_a_stream_error(transport: str, emu: OllamaEmulator) -> None:
    emu.inject(DropConnection(after_chunks=1, times=2))
    async with make_backend(emu.url, transport) as backend:
        with pytest.raises(StreamError, match="broke off 2 times"):
            await collect(backend)


async def test_error_line_mid_stream(transport: str, emu: OllamaEmulator) -> None:
    emu.inject(ErrorLine(after_chunks=2))
    async with make_backend(emu.url, transport) as backend:
        seen: list[str] = []

        async def consume() -> None:
            async for event in backend.generate(
                PROMPT, model="llama3.1", options=GenerateOptions()
            ):
                assert isinstance(event, TextChunk)
                seen.append(event.text)

        with pytest.raises(StreamError, match="unexpected EOF from llama runner"):
            await consume()
    assert seen == ["one", " two"]
    assert len(emu.completions) == 1  # not retried


async def test_garbage_line(transport: str, emu: OllamaEmulator) -> None:
    emu.inject(GarbageLine(after_chunks=1))
    async with make_backend(emu.url, transport) as backend:
        with pytest.raises(StreamError, match="not JSON"):
            await collect(backend)


async def test_server_error_status(transport: str, emu: OllamaEmulator) -> None:
    emu.inject(ServerError())
    async with make_backend(emu.url, transport) as backend:
        with pytest.raises(BackendResponseError) as caught:
            await collect(backend)
    assert caught.value.status_code == 500
    assert "model runner has unexpectedly stopped" in str(caught.value)


async def test_stall_before_the_first_chunk(transport: str, emu: OllamaEmulator) -> None:
    emu.inject(Stall(after_chunks=0))
    timeouts = Timeouts(first_chunk=0.3)
    async with make_backend(emu.url, transport, timeouts=timeouts) as backend:
        with pytest.raises(BackendTimeoutError, match="first chunk"):
            await collect(backend)
    with anyio.fail_after(10):
        await emu.wait_idle()
    assert emu.completions[0].cancelled  # the request was abandoned, not left running


async def test_stall_between_chunks(transport: str, emu: OllamaEmulator) -> None:
    emu.inject(Stall(after_chunks=2))
    timeouts = Timeouts(between_chunks=0.3)
    async with make_backend(emu.url, transport, timeouts=timeouts) as backend:
        with pytest.raises(BackendTimeoutError, match="next chunk"):
            await collect(backend)


async def test_total_deadline(emu: OllamaEmulator) -> None:
    emu.inject(Stall(after_chunks=1, seconds=5))
    timeouts = Timeouts(total=0.3)
    async with OllamaBackend(emu.url, timeouts=timeouts) as backend:
        with pytest.raises(BackendTimeoutError, match="end of the answer") as caught:
            await collect(backend)
    # The configured deadline, not the 0.0 s that was left of it.
    assert "Timeouts.total = 0.3 s" in str(caught.value)


async def test_total_deadline_holds_across_busy_retries(emu: OllamaEmulator) -> None:
    emu.inject(Busy(times=None))
    patient = Retries(busy_attempts=50, backoff_base=0.1, backoff_max=0.1)  # waits of 0.05-0.1 s
    async with OllamaBackend(emu.url, timeouts=Timeouts(total=0.4), retries=patient) as backend:
        with pytest.raises(BackendTimeoutError, match=r"Timeouts\.total = 0\.4 s.*busy \(503\)"):
            await collect(backend)
    # Stopped at the deadline (about 5-9 tries), not after all 50 tries (2.5-5 s of waits).
    assert 2 <= len(emu.completions) < 20


# --- what a real server cannot easily produce: a scripted server ------------------------------


async def test_show_without_model_info_is_reported() -> None:
    async def bare_show(request: web.Request) -> web.StreamResponse:
        return web.json_response({"capabilities": ["completion"]})

    async with fake_ollama({"/api/show": bare_show}) as url, OllamaBackend(url) as backend:
        with pytest.raises(BackendResponseError, match="unexpected answer"):
            await backend.model_info("llama3.1")


async def test_stream_without_a_final_line_counts_as_dropped() -> None:
    calls = 0

    async def no_final_line(request: web.Request) -> web.StreamResponse:
        nonlocal calls
        calls += 1
        line = json.dumps({"model": "llama3.1", "response": "x", "done": False})
        return await ndjson(request, (line + "\n").encode())

    routes = {"/api/generate": no_final_line}
    async with fake_ollama(routes) as url, OllamaBackend(url, retries=FAST) as backend:
        with pytest.raises(StreamError, match="without its final line"):
            await collect(backend)
    assert calls == 2  # retried once (resumed), then given up

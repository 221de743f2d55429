"""`LlamaCppBackend` against a server that streams as fast as the loop lets it, forever, or
sends what llama-server would not: the deadlines and caps hold (as issue 14's for Ollama)."""

from __future__ import annotations

import time

import anyio
import orjson
import pytest
from aiohttp import web

from agent.backends import Done, GenerateOptions, LlamaCppBackend, TextChunk, Timeouts
from agent.errors import BackendResponseError, BackendTimeoutError, StreamError
from tests.backends.fake_server import fake_ollama

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(30)]

PROMPT = "<|begin_of_text|><|start_header_id|>user<|end_header_id|>\n\nHi<|eot_id|>"


def event(content: str, token: int = 1000) -> bytes:
    payload = {"index": 0, "content": content, "tokens": [token], "stop": False}
    return b"data: " + orjson.dumps(payload) + b"\n\n"


async def props(request: web.Request) -> web.StreamResponse:
    return web.json_response(
        {"default_generation_settings": {"n_ctx": 4096}, "model_path": "m.gguf", "build_info": "b1"}
    )


async def models(request: web.Request) -> web.StreamResponse:
    return web.json_response({"data": [{"id": "llama3.1", "aliases": []}]})


async def tokenize(request: web.Request) -> web.StreamResponse:
    return web.json_response({"tokens": [128000, 1, 2, 3]})


def endless(data: bytes) -> web.RequestHandler:  # type: ignore[type-arg]
    async def handler(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        burst = data * 500
        try:
            while True:
                await response.write(burst)
        except (ConnectionError, RuntimeError):
            pass  # the client went away
        return response

    return handler


def routes(completion: web.RequestHandler) -> dict[str, web.RequestHandler]:  # type: ignore[type-arg]
    return {"/props": props, "/v1/models": models, "/tokenize": tokenize, "/completion": completion}


async def collect(backend: LlamaCppBackend, options: GenerateOptions) -> tuple[int, Done]:
    chunks = 0
    done: Done | None = None
    async for item in backend.generate(PROMPT, model="llama3.1", options=options):
        if isinstance(item, TextChunk):
            chunks += 1
        else:
            done = item
    assert done is not None
    return chunks, done


async def test_the_total_deadline_holds_on_a_fast_endless_stream() -> None:
    # Empty events: no text, so neither n_predict nor the size cap ends it first.
    async with (
        fake_ollama(routes(endless(b": ping\n\n" + event("")))) as url,
        LlamaCppBackend(url, timeouts=Timeouts(total=0.5)) as backend,
    ):
        started = time.monotonic()
        with pytest.raises(BackendTimeoutError, match=r"Timeouts\.total = 0\.5 s"):
            await collect(backend, GenerateOptions())
    assert time.monotonic() - started < 1.5


async def test_a_server_past_n_predict_is_cut_at_it() -> None:
    async with (
        fake_ollama(routes(endless(event("x")))) as url,
        LlamaCppBackend(url) as backend,
    ):
        chunks, done = await collect(backend, GenerateOptions(num_predict=50))
    assert (chunks, done.done_reason) == (50, "length")
    assert "past its n_predict" in done.warnings[0]


async def test_a_line_without_end_is_capped() -> None:
    async with (
        fake_ollama(routes(endless(b"data: {" + b"x" * 4096))) as url,
        LlamaCppBackend(url, max_line_bytes=65536) as backend,
    ):
        with pytest.raises(StreamError, match="longer than 65536 bytes"):
            await collect(backend, GenerateOptions())


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"data: [1, 2]\n\n", "not a JSON object"),
        (b"data: {oops\n\n", "not JSON"),
        (b'data: {"content": 5, "tokens": [1]}\n\n', "content that is not text"),
        (event("Hi"), "ended without its final event"),  # then the body ends: a drop, twice
    ],
)
async def test_what_llama_server_would_not_send(body: bytes, message: str) -> None:
    async def handler(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        await response.write(body)
        return response

    async with fake_ollama(routes(handler)) as url, LlamaCppBackend(url) as backend:
        with pytest.raises(StreamError, match=message):
            await collect(backend, GenerateOptions())


async def test_not_a_llama_server() -> None:
    async def html(request: web.Request) -> web.StreamResponse:
        return web.Response(text="<html>hello</html>", content_type="text/html")

    async with (
        fake_ollama({"/props": html, "/v1/models": html}) as url,
        LlamaCppBackend(url) as backend,
    ):
        with pytest.raises(BackendResponseError, match=r"Is the host a llama\.cpp llama-server"):
            await backend.model_info("llama3.1")
    async with fake_ollama({}) as url, LlamaCppBackend(url) as backend:
        with pytest.raises(BackendResponseError, match="no such endpoint"):
            await backend.model_info("llama3.1")


async def test_an_outer_cancel_scope_ends_a_fast_endless_stream() -> None:
    async with (
        fake_ollama(routes(endless(event("")))) as url,
        LlamaCppBackend(url) as backend,
    ):
        started = time.monotonic()
        with anyio.move_on_after(0.3) as scope:
            await collect(backend, GenerateOptions())
    assert scope.cancelled_caught
    assert time.monotonic() - started < 1.0
